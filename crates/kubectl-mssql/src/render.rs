//! The table (human) form of every report, and `--watch` lines (pure).

use std::fmt::Write as _;

use mssql_api::steps::{FAILED, SKIPPED};

use crate::ops::{Change, OpsDetail, OpsRow, Restarts};
use crate::replicas::{DatabaseStatus, Replica};
use crate::status::{CertificateStatus, TlsStatus};
use crate::text::{age, bar, list, table};

/// Width of the restart bar, in cells.
const BAR: usize = 20;

pub fn tls_status(s: &TlsStatus) -> String {
    let mut out = String::new();
    let db = format!("{}/{}", s.namespace, s.database);
    let issuer = s
        .issuer
        .as_ref()
        .map_or_else(|| "no issuer".to_owned(), |i| format!("issuer {i}"));
    if s.tls_enabled {
        let _ = writeln!(out, "MSSQLServer {db}: TLS enabled ({issuer})");
    } else {
        let _ = writeln!(
            out,
            "MSSQLServer {db}: TLS is not enabled (spec.tls.clientTLS is not true): SQL Server does not encrypt connections.\n\
             Enable it with: kubectl mssql tls add {} -n {} --issuer <issuer>",
            s.database, s.namespace
        );
        if !s.certificates.is_empty() {
            let _ = writeln!(
                out,
                "The certificates below are issued ({issuer}) but SQL Server does not use them while TLS is off."
            );
        }
    }
    for certificate in &s.certificates {
        out.push('\n');
        out.push_str(&certificate_block(certificate));
    }
    out.push('\n');
    let rows: Vec<Vec<String>> = s
        .pods
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                yes_no(p.current),
                yes_no(p.ready),
                p.revision.clone().unwrap_or_else(|| "-".to_owned()),
                p.update_revision.clone().unwrap_or_else(|| "-".to_owned()),
                p.restart_hash
                    .as_deref()
                    .map_or_else(|| "-".to_owned(), short_hash),
                p.serves.as_ref().map_or_else(
                    || "-".to_owned(),
                    |s| match s.outdated {
                        true => format!("{} (old)", s.serial),
                        false => s.serial.clone(),
                    },
                ),
            ]
        })
        .collect();
    if rows.is_empty() {
        out.push_str("No pods.\n");
    } else {
        out.push_str(&table(
            &[
                "POD",
                "CURRENT",
                "READY",
                "REVISION",
                "UPDATE REVISION",
                "RESTART HASH",
                "SERVES SERIAL",
            ],
            &rows,
        ));
        let _ = writeln!(
            out,
            "{} of {} pods run the current certificate material.",
            s.pods_current,
            s.pods.len()
        );
        match &s.rollout {
            Some(rollout) => {
                let _ = writeln!(
                    out,
                    "Renewal rollout pending ({}): {}",
                    rollout.reason, rollout.message
                );
            }
            None if s.pods_outdated > 0 => {
                let _ = writeln!(
                    out,
                    "{} pods serve an older server certificate than its Secret holds (SQL Server \
                     reads it only at start-up): a Restart MSSQLServerOpsRequest of {} restarts \
                     them onto it.",
                    s.pods_outdated, s.database
                );
            }
            None => {}
        }
    }
    let policy: Vec<String> = s
        .renewal_policy
        .iter()
        .map(|(key, value)| {
            let key = key.strip_prefix("mssql-operator.dev/").unwrap_or(key);
            format!("{key}={value}")
        })
        .collect();
    if s.certificates.is_empty() {
        return out;
    }
    let _ = writeln!(
        out,
        "Renewal policy: {}",
        match policy.is_empty() {
            true => "the operator's defaults (no annotation on the database)".to_owned(),
            false => format!(
                "{} (annotations; the operator's defaults for the rest)",
                policy.join(", ")
            ),
        }
    );
    out
}

pub fn database_status(s: &DatabaseStatus) -> String {
    let phase = s.phase.as_deref().unwrap_or("no status yet");
    let shape = match s.availability_group {
        true => "availability group",
        false => "standalone: one server, no replicas",
    };
    let mut out = format!(
        "MSSQLServer {}/{}: {phase} ({shape})\n",
        s.namespace, s.database
    );
    if let Some(why) = &s.no_primary {
        let _ = writeln!(out, "No primary: {why}");
    }
    if !s.availability_group {
        return out;
    }
    out.push('\n');
    if s.replicas.is_empty() {
        out.push_str("No replicas reported yet.\n");
        return out;
    }
    let dash = |value: &Option<String>| value.clone().unwrap_or_else(|| "-".to_owned());
    let rows: Vec<Vec<String>> = s
        .replicas
        .iter()
        .map(|Replica { status: r, age }| {
            let since = match (&r.since, age) {
                (Some(since), Some(age)) => format!("{since} ({age})"),
                (since, _) => dash(since),
            };
            vec![
                r.pod.clone(),
                dash(&r.role),
                dash(&r.sql_role),
                yes_no(r.synchronized),
                yes_no(r.connected),
                since,
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "POD",
            "ROLE",
            "SQL ROLE",
            "SYNCHRONIZED",
            "CONNECTED",
            "SINCE",
        ],
        &rows,
    ));
    let synchronized = s.replicas.iter().filter(|r| r.status.synchronized).count();
    let _ = writeln!(
        out,
        "{synchronized} of {} replicas synchronized.",
        s.replicas.len()
    );
    out
}

fn certificate_block(c: &CertificateStatus) -> String {
    let mut out = format!(
        "Certificate {} (alias {}, secret {})\n",
        c.certificate, c.alias, c.secret
    );
    let mut field = |label: &str, value: String| {
        let _ = writeln!(out, "  {label:<11}{value}");
    };
    let dash = || "-".to_owned();
    field(
        "Issuer:",
        c.issuer.as_ref().map_or_else(dash, ToString::to_string),
    );
    let ready = match (&c.ready, &c.ready_message) {
        (Some(status), Some(message)) => format!("{status} ({message})"),
        (Some(status), None) => status.clone(),
        (None, _) => "-".to_owned(),
    };
    field("Ready:", ready);
    field("Revision:", c.revision.map_or_else(dash, |r| r.to_string()));
    field("Serial:", c.serial.clone().unwrap_or_else(dash));
    field("Subject:", c.subject.clone().unwrap_or_else(dash));
    field("DNS names:", list(&c.dns_names));
    field("IPs:", list(&c.ip_addresses));
    let not_after = match (&c.not_after, c.days_left) {
        (Some(at), Some(days)) if days < 0 => format!("{at} (EXPIRED {} days ago)", -days),
        (Some(at), Some(days)) => format!("{at} ({days} days left)"),
        _ => "-".to_owned(),
    };
    field("Not after:", not_after);
    for problem in &c.problems {
        field("Problem:", problem.clone());
    }
    out
}

fn yes_no(value: bool) -> String {
    if value { "yes" } else { "no" }.to_owned()
}

/// The first 12 characters of a hash, as git shows commits.
fn short_hash(hash: &str) -> String {
    hash.chars().take(12).collect()
}

pub fn ops_rows(rows: &[OpsRow], all_namespaces: bool) -> String {
    if rows.is_empty() {
        return "No MSSQLServerOpsRequests found.\n".to_owned();
    }
    let dash = |s: &str| if s.is_empty() { "-" } else { s }.to_owned();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut row = vec![
                r.name.clone(),
                r.type_.clone(),
                r.operation.clone(),
                r.database.clone(),
                dash(&r.phase),
                r.age.clone(),
            ];
            if all_namespaces {
                row.insert(0, r.namespace.clone());
            }
            row
        })
        .collect();
    let mut header = vec!["NAME", "TYPE", "OPERATION", "DATABASE", "PHASE", "AGE"];
    if all_namespaces {
        header.insert(0, "NAMESPACE");
    }
    table(&header, &cells)
}

pub fn ops_detail(d: &OpsDetail) -> String {
    let r = &d.row;
    let mut out = String::new();
    let dash = |s: Option<&str>| s.filter(|s| !s.is_empty()).unwrap_or("-").to_owned();
    for (label, value) in [
        ("Name:", r.name.clone()),
        ("Namespace:", r.namespace.clone()),
        ("Type:", r.type_.clone()),
        ("Operation:", r.operation.clone()),
        ("Database:", r.database.clone()),
        ("Phase:", dash(Some(&r.phase))),
        (
            "Created:",
            format!("{} ({} ago)", dash(r.created.as_deref()), r.age),
        ),
        ("Timeout:", dash(d.timeout.as_deref())),
        ("Apply:", dash(d.apply.as_deref())),
    ] {
        let _ = writeln!(out, "{label:<11}{value}");
    }
    if let Some(restarts) = &d.restarts {
        let _ = writeln!(out, "{:<11}{}", "Restarts:", restart_text(restarts));
    }
    if d.conditions.is_empty() {
        out.push_str("Conditions: none yet (the ops-manager has not picked the request up)\n");
    } else {
        out.push_str("Conditions:\n");
        let rows: Vec<Vec<String>> = d
            .conditions
            .iter()
            .map(|c| {
                vec![
                    c.time.clone(),
                    c.type_.clone(),
                    c.status.clone(),
                    dash(Some(&c.reason)),
                    c.message.clone(),
                ]
            })
            .collect();
        for line in table(&["TIME", "TYPE", "STATUS", "REASON", "MESSAGE"], &rows).lines() {
            let _ = writeln!(out, "  {line}");
        }
    }
    out
}

/// `[##########----------] 1/2 pods restarted (restarting db-0)`.
pub fn restart_text(r: &Restarts) -> String {
    let mut text = format!("{} pods restarted", bar(r.done, r.total, BAR));
    if let Some(pod) = &r.current {
        let _ = write!(text, " (restarting {pod})");
    }
    text
}

/// `[ 2m5s] ` before each `--watch` line.
pub fn elapsed(seconds: u64) -> String {
    format!("[{:>6}] ", age(i64::try_from(seconds).unwrap_or(i64::MAX)))
}

/// The `--watch` line of one change.
pub fn change(change: &Change) -> String {
    match change {
        Change::Phase(phase) => format!("phase {phase}"),
        Change::Step(c) => {
            let mark = match (c.type_.as_str(), c.status.as_str()) {
                (FAILED, _) => "FAILED",
                (SKIPPED, _) => "skipped",
                (_, "True") => "ok",
                (_, "False") => "waiting",
                _ => "?",
            };
            format!("{mark:<7} {}: {}", c.type_, c.message)
        }
        Change::Restarts(r) => format!("restart {}", restart_text(r)),
    }
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::*;
    use crate::ops::ConditionRow;
    use crate::status::{IssuerName, PendingRollout, PodStatus, ServedCertificate};
    use std::collections::BTreeMap;

    fn certificate() -> CertificateStatus {
        CertificateStatus {
            alias: "server".to_owned(),
            certificate: "db-server-cert".to_owned(),
            secret: "db-server-cert".to_owned(),
            issuer: Some(IssuerName {
                kind: "Issuer".to_owned(),
                name: "ca".to_owned(),
            }),
            ready: Some("True".to_owned()),
            ready_message: Some("up to date".to_owned()),
            revision: Some(2),
            serial: Some("0A1B".to_owned()),
            subject: Some("CN=db,O=kubedb".to_owned()),
            dns_names: vec!["db".to_owned(), "db.demo.svc".to_owned()],
            ip_addresses: vec!["127.0.0.1".to_owned()],
            not_after: Some("2026-04-01T00:00:00Z".to_owned()),
            days_left: Some(90),
            problems: vec![],
        }
    }

    fn status(enabled: bool) -> TlsStatus {
        TlsStatus {
            namespace: "demo".to_owned(),
            database: "db".to_owned(),
            tls_enabled: enabled,
            issuer: Some(IssuerName {
                kind: "Issuer".to_owned(),
                name: "ca".to_owned(),
            }),
            certificates: vec![certificate()],
            pods: vec![PodStatus {
                name: "db-0".to_owned(),
                ready: true,
                revision: Some("db-abc".to_owned()),
                update_revision: Some("db-abc".to_owned()),
                restart_hash: Some("0123456789abcdef".to_owned()),
                current: true,
                serves: Some(ServedCertificate {
                    serial: "0A1B".to_owned(),
                    not_after: "2026-04-01T00:00:00Z".to_owned(),
                    outdated: false,
                }),
            }],
            pods_current: 1,
            pods_outdated: 0,
            renewal_policy: BTreeMap::new(),
            rollout: None,
        }
    }

    fn replica(pod: &str, role: Option<&str>, sql_role: Option<&str>, synced: bool) -> Replica {
        Replica {
            status: mssql_api::ReplicaStatus {
                pod: pod.to_owned(),
                role: role.map(str::to_owned),
                sql_role: sql_role.map(str::to_owned),
                synchronized: synced,
                connected: synced,
                since: synced.then(|| "2026-01-01T00:00:00Z".to_owned()),
            },
            age: synced.then(|| "5m0s".to_owned()),
        }
    }

    fn group() -> DatabaseStatus {
        DatabaseStatus {
            namespace: "demo".to_owned(),
            database: "ag".to_owned(),
            phase: Some("Critical".to_owned()),
            availability_group: true,
            no_primary: None,
            replicas: vec![
                replica("ag-0", Some("primary"), Some("PRIMARY"), true),
                replica("ag-1", Some("secondary"), Some("SECONDARY"), true),
                replica("ag-2", None, None, false),
            ],
        }
    }

    #[test]
    fn database_status_shows_each_replica_of_a_group() {
        assert_eq!(
            database_status(&group()),
            "MSSQLServer demo/ag: Critical (availability group)

POD    ROLE        SQL ROLE    SYNCHRONIZED   CONNECTED   SINCE
ag-0   primary     PRIMARY     yes            yes         2026-01-01T00:00:00Z (5m0s)
ag-1   secondary   SECONDARY   yes            yes         2026-01-01T00:00:00Z (5m0s)
ag-2   -           -           no             no          -
2 of 3 replicas synchronized.
"
        );
    }

    #[test]
    fn database_status_says_why_there_is_no_primary_and_when_nothing_is_reported() {
        let s = DatabaseStatus {
            phase: Some("NotReady".to_owned()),
            no_primary: Some("No ready primary replica for MSSQL demo/ag".to_owned()),
            replicas: vec![],
            ..group()
        };
        assert_eq!(
            database_status(&s),
            "MSSQLServer demo/ag: NotReady (availability group)
No primary: No ready primary replica for MSSQL demo/ag

No replicas reported yet.
"
        );
        let standalone = DatabaseStatus {
            database: "ms".to_owned(),
            phase: None,
            availability_group: false,
            no_primary: None,
            ..s
        };
        assert_eq!(
            database_status(&standalone),
            "MSSQLServer demo/ms: no status yet (standalone: one server, no replicas)\n"
        );
    }

    #[test]
    fn tls_status_shows_every_certificate_fact_and_the_pods() {
        assert_eq!(
            tls_status(&status(true)),
            "MSSQLServer demo/db: TLS enabled (issuer Issuer/ca)

Certificate db-server-cert (alias server, secret db-server-cert)
  Issuer:    Issuer/ca
  Ready:     True (up to date)
  Revision:  2
  Serial:    0A1B
  Subject:   CN=db,O=kubedb
  DNS names: db, db.demo.svc
  IPs:       127.0.0.1
  Not after: 2026-04-01T00:00:00Z (90 days left)

POD    CURRENT   READY   REVISION   UPDATE REVISION   RESTART HASH   SERVES SERIAL
db-0   yes       yes     db-abc     db-abc            0123456789ab   0A1B
1 of 1 pods run the current certificate material.
Renewal policy: the operator's defaults (no annotation on the database)
"
        );
    }

    #[test]
    fn pods_serving_an_older_certificate_are_marked_and_counted() {
        let mut s = status(true);
        s.pods[0].serves.as_mut().unwrap().outdated = true;
        s.pods_outdated = 1;
        let text = tls_status(&s);
        assert!(text.contains("0123456789ab   0A1B (old)\n"), "{text}");
        assert!(
            text.contains(
                "1 pods serve an older server certificate than its Secret holds (SQL Server reads it \
                 only at start-up): a Restart MSSQLServerOpsRequest of db restarts them onto it.\n"
            ),
            "{text}"
        );
        // The operator's own account of the rollout, and the policy, when there is one.
        s.rollout = Some(PendingRollout {
            reason: "WaitingForMaintenanceWindow".to_owned(),
            message: "pods run … which opens at 2026-12-05T22:00:00Z".to_owned(),
        });
        s.renewal_policy = [(
            "mssql-operator.dev/maintenance-window".to_owned(),
            "Sat 22:00-02:00 UTC".to_owned(),
        )]
        .into();
        let text = tls_status(&s);
        assert!(
            text.ends_with(
                "Renewal rollout pending (WaitingForMaintenanceWindow): pods run … which opens at \
                 2026-12-05T22:00:00Z\nRenewal policy: maintenance-window=Sat 22:00-02:00 UTC \
                 (annotations; the operator's defaults for the rest)\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_database_without_tls_says_so_first() {
        let mut s = status(false);
        s.pods.clear();
        s.pods_current = 0;
        s.certificates[0].days_left = Some(-3);
        s.certificates[0].problems =
            vec!["Certificate db-server-cert does not exist (yet)".to_owned()];
        let text = tls_status(&s);
        assert!(
            text.starts_with(
                "MSSQLServer demo/db: TLS is not enabled (spec.tls.clientTLS is not true): SQL Server does not encrypt connections.\n\
                 Enable it with: kubectl mssql tls add db -n demo --issuer <issuer>\n\
                 The certificates below are issued (issuer Issuer/ca) but SQL Server does not use them while TLS is off.\n"
            ),
            "{text}"
        );
        assert!(text.contains("(EXPIRED 3 days ago)"), "{text}");
        assert!(
            text.contains("  Problem:   Certificate db-server-cert does not exist (yet)\n"),
            "{text}"
        );
        assert!(
            text.ends_with("\nNo pods.\nRenewal policy: the operator's defaults (no annotation on the database)\n"),
            "{text}"
        );
        s.certificates.clear();
        s.issuer = None;
        assert!(!tls_status(&s).contains("The certificates below"));
    }

    fn row(namespace: &str, phase: &str) -> OpsRow {
        OpsRow {
            namespace: namespace.to_owned(),
            name: "db-tls-rotate-x1".to_owned(),
            type_: "ReconfigureTLS".to_owned(),
            operation: "rotate certificates".to_owned(),
            database: "db".to_owned(),
            phase: phase.to_owned(),
            created: Some("2026-01-01T00:00:00Z".to_owned()),
            age: "5s".to_owned(),
        }
    }

    #[test]
    fn ops_lists_show_the_namespace_only_for_all_namespaces() {
        assert_eq!(
            ops_rows(&[row("demo", "Successful")], false),
            "NAME               TYPE             OPERATION             DATABASE   PHASE        AGE\n\
             db-tls-rotate-x1   ReconfigureTLS   rotate certificates   db         Successful   5s\n"
        );
        let all = ops_rows(&[row("demo", "")], true);
        assert!(all.starts_with("NAMESPACE   NAME"), "{all}");
        assert!(all.contains("demo        db-tls-rotate-x1"), "{all}");
        assert!(all.contains("   -       5s"), "{all}");
        assert_eq!(ops_rows(&[], false), "No MSSQLServerOpsRequests found.\n");
    }

    #[test]
    fn ops_detail_shows_each_condition_with_time_reason_and_message() {
        let detail = OpsDetail {
            row: row("demo", "Progressing"),
            timeout: Some("5m".to_owned()),
            apply: Some("IfReady".to_owned()),
            restarts: Some(Restarts {
                done: 1,
                total: 2,
                current: Some("db-0".to_owned()),
            }),
            conditions: vec![ConditionRow {
                time: "2026-01-01T00:00:01Z".to_owned(),
                type_: "EvictPod--db-0".to_owned(),
                status: "False".to_owned(),
                reason: String::new(),
                message: "evict pod; ConditionStatus:False; PodName:db-0".to_owned(),
            }],
        };
        assert_eq!(
            ops_detail(&detail),
            "Name:      db-tls-rotate-x1
Namespace: demo
Type:      ReconfigureTLS
Operation: rotate certificates
Database:  db
Phase:     Progressing
Created:   2026-01-01T00:00:00Z (5s ago)
Timeout:   5m
Apply:     IfReady
Restarts:  [##########----------] 1/2 pods restarted (restarting db-0)
Conditions:
  TIME                   TYPE             STATUS   REASON   MESSAGE
  2026-01-01T00:00:01Z   EvictPod--db-0   False    -        evict pod; ConditionStatus:False; PodName:db-0
"
        );
        let empty = OpsDetail {
            conditions: vec![],
            restarts: None,
            timeout: None,
            ..detail
        };
        let text = ops_detail(&empty);
        assert!(text.contains("Timeout:   -\n"), "{text}");
        assert!(
            text.ends_with(
                "Conditions: none yet (the ops-manager has not picked the request up)\n"
            )
        );
    }

    #[test]
    fn watch_lines() {
        let step = |status: &str| {
            Change::Step(ConditionRow {
                time: String::new(),
                type_: "UpdatePetSets".to_owned(),
                status: status.to_owned(),
                reason: "UpdatePetSets".to_owned(),
                message: "reconciled".to_owned(),
            })
        };
        assert_eq!(change(&step("True")), "ok      UpdatePetSets: reconciled");
        assert_eq!(change(&step("False")), "waiting UpdatePetSets: reconciled");
        assert_eq!(
            change(&step("Unknown")),
            "?       UpdatePetSets: reconciled"
        );
        assert_eq!(change(&Change::Phase("Failed".to_owned())), "phase Failed");
        let end = |type_: &str| {
            Change::Step(ConditionRow {
                time: String::new(),
                type_: type_.to_owned(),
                status: "False".to_owned(),
                reason: String::new(),
                message: "why".to_owned(),
            })
        };
        assert_eq!(change(&end("Failed")), "FAILED  Failed: why");
        assert_eq!(change(&end("Skipped")), "skipped Skipped: why");
        assert_eq!(
            change(&Change::Restarts(Restarts {
                done: 2,
                total: 2,
                current: None
            })),
            "restart [####################] 2/2 pods restarted"
        );
        assert_eq!(elapsed(65), "[   65s] ");
        assert_eq!(elapsed(125), "[  2m5s] ");
        assert_eq!(elapsed(3), "[    3s] ");
    }
}

//! Renewed certificates rolled out by themselves. cert-manager renews a certificate before it
//! expires, but SQL Server reads it only at start-up and the StatefulSet restarts nothing
//! (`OnDelete`): without a restart the pods would serve the old certificate until it expired.
//!
//! When pods run older certificates than their Secrets hold, and no ops request of the database
//! is open, the provisioner applies the database's policy (`mssql_api::renewal`): it creates a
//! `Restart` request — named after the new certificates, so a second pass or a restarted operator
//! finds that request instead of creating another —, waits for the maintenance window, or, when
//! the rollout is `Manual`, says what a person must do. The request runs like any other.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::runtime::events::EventType;
use kube::{Api, Client, Resource, ResourceExt};
use mssql_api::ops::{APPLY_IF_READY, DatabaseRef, TYPE_RESTART};
use mssql_api::renewal::{Decision, Policy, Why, decide};
use mssql_api::{MssqlServer, MssqlServerOpsRequest, OpsRequestSpec};

use mssql_api::{annotations, labels};

use super::status::Observed;

/// Pods that run older certificates than their Secrets hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stale {
    /// Pod → alias → the serial it runs, for the aliases whose Secret moved on.
    pub pods: BTreeMap<String, BTreeMap<String, String>>,
    /// Alias → the serial its Secret holds.
    pub current: BTreeMap<String, String>,
    /// When the earliest of the old certificates the pods serve expires (Unix seconds).
    pub earliest_expiry: i64,
}

impl Stale {
    /// The stale pods of `observed`, if any.
    pub fn of(observed: &Observed) -> Option<Self> {
        let mut pods: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        let mut earliest_expiry = i64::MAX;
        for (pod, alias, running, outdated) in observed.each() {
            if outdated {
                pods.entry(pod.clone())
                    .or_default()
                    .insert(alias.clone(), running.serial.clone());
                earliest_expiry = earliest_expiry.min(running.not_after);
            }
        }
        let current = observed
            .secrets
            .iter()
            .map(|(alias, now)| (alias.clone(), now.serial.clone()))
            .collect();
        (!pods.is_empty()).then_some(Self {
            pods,
            current,
            earliest_expiry,
        })
    }

    /// The name of the request that rolls out these Secrets on database `db`: the same for the
    /// same certificates, whoever computes it and however often.
    pub fn request_name(&self, db: &str) -> String {
        let material = serde_json::to_string(&self.current).unwrap_or_default();
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, material.as_bytes());
        let short: String = digest.as_ref()[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("{db}-renewal-{short}")
    }

    /// "server 0A (secret now 0B) on db-0, db-1": each old certificate and the pods running it.
    pub fn describe(&self) -> String {
        let mut running: BTreeMap<(&str, &str), Vec<&str>> = BTreeMap::new();
        for (pod, aliases) in &self.pods {
            for (alias, serial) in aliases {
                running.entry((alias, serial)).or_default().push(pod);
            }
        }
        let mut text = String::new();
        for ((alias, serial), pods) in running {
            if !text.is_empty() {
                text.push_str("; ");
            }
            let now = self.current.get(alias).map_or("?", String::as_str);
            let _ = write!(
                text,
                "{alias} certificate {serial} (its secret now holds {now}) on {}",
                pods.join(", ")
            );
        }
        text
    }

    fn expiry(&self) -> Timestamp {
        Timestamp::from_second(self.earliest_expiry).unwrap_or(Timestamp::MAX)
    }
}

/// What happens to the stale pods.
#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    /// Request `request` restarts them (created now or on an earlier pass).
    Requested { request: String },
    /// The maintenance window `window` opens at `opens`; nothing forces an earlier restart.
    Waiting { window: String, opens: Timestamp },
    /// Request `request` of the database (the user's) is open: it runs first.
    AfterRequest { request: String },
    /// The rollout is `Manual`.
    Manual,
    /// The request that was to restart them ended `phase`, and they still run the old ones.
    Ended { request: String, phase: String },
    /// An ops request has paused the database; its end is looked at again.
    Paused,
}

/// The stale pods and what happens to them: the database's condition.
#[derive(Clone, Debug, PartialEq)]
pub struct Rollout {
    pub stale: Stale,
    pub plan: Plan,
}

impl Rollout {
    pub fn reason(&self) -> &'static str {
        match self.plan {
            Plan::Requested { .. } => "RestartRequested",
            Plan::Waiting { .. } => "WaitingForMaintenanceWindow",
            Plan::AfterRequest { .. } => "WaitingForOpsRequest",
            Plan::Manual => "ManualRollout",
            Plan::Ended { .. } => "RestartEnded",
            Plan::Paused => "OpsRequestRunning",
        }
    }

    pub fn message(&self) -> String {
        let stale = self.stale.describe();
        let next = match &self.plan {
            Plan::Requested { request } => {
                format!("MSSQLServerOpsRequest {request} restarts them")
            }
            Plan::Waiting { window, opens } => format!(
                "they are restarted in the maintenance window {window}, which opens at {opens}"
            ),
            Plan::AfterRequest { request } => format!(
                "they are restarted once MSSQLServerOpsRequest {request} of this database has ended"
            ),
            Plan::Manual => format!(
                "the rollout is Manual ({}): restart them with an MSSQLServerOpsRequest of type \
                 Restart before {}",
                mssql_api::annotations::RENEWAL_ROLLOUT,
                self.stale.expiry()
            ),
            Plan::Ended { request, phase } => format!(
                "MSSQLServerOpsRequest {request}, which was to restart them, ended {phase}: see \
                 its conditions, then delete it to try again or restart them with a new Restart \
                 request before {}",
                self.stale.expiry()
            ),
            Plan::Paused => "an ops request runs on this database: the pods it restarts start \
                             on the new certificates, and any it leaves behind are restarted after it"
                .to_owned(),
        };
        format!("pods run older certificates than their secrets hold: {stale}; {next}")
    }

    /// The Event that announces this plan, when it is new: a Warning when a person must act.
    pub fn event(&self, why: Option<&Why>) -> Option<(EventType, &'static str, String)> {
        let stale = self.stale.describe();
        match &self.plan {
            Plan::Requested { request } => Some((
                EventType::Normal,
                "RenewalRollout",
                format!(
                    "created MSSQLServerOpsRequest {request} to restart the pods running renewed \
                     certificates ({stale}){}",
                    why.map(|why| format!(": {why}")).unwrap_or_default()
                ),
            )),
            Plan::Waiting { .. } => {
                Some((EventType::Normal, "RenewalRolloutScheduled", self.message()))
            }
            Plan::Manual | Plan::Ended { .. } => {
                Some((EventType::Warning, "RenewalRolloutNeeded", self.message()))
            }
            Plan::AfterRequest { .. } | Plan::Paused => None,
        }
    }
}

/// What to do about `stale` pods of database `db` under `policy`, given the ops requests of its
/// namespace: keep a plan, or create the request (and why now).
#[derive(Clone, Debug, PartialEq)]
pub enum Next {
    Keep(Plan),
    Create(Why),
}

pub fn next(
    db: &str,
    stale: &Stale,
    policy: &Policy,
    requests: &[MssqlServerOpsRequest],
    now: Timestamp,
) -> Next {
    let name = stale.request_name(db);
    if let Some(ours) = requests.iter().find(|r| r.name_any() == name) {
        return Next::Keep(if ours.is_finished() {
            Plan::Ended {
                request: name,
                phase: ours.phase().to_owned(),
            }
        } else {
            Plan::Requested { request: name }
        });
    }
    if let Some(open) = requests
        .iter()
        .find(|r| r.spec.database_ref.name == db && !r.is_finished())
    {
        return Next::Keep(Plan::AfterRequest {
            request: open.name_any(),
        });
    }
    match decide(policy, now, stale.expiry()) {
        Decision::Manual => Next::Keep(Plan::Manual),
        Decision::Wait { opens } => Next::Keep(Plan::Waiting {
            window: policy
                .window
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            opens,
        }),
        Decision::Now(why) => Next::Create(why),
    }
}

/// The `Restart` request that rolls out `stale` on `db`, owned by the database.
pub fn restart_request(db: &MssqlServer, stale: &Stale, why: &Why) -> MssqlServerOpsRequest {
    let name = db.name_any();
    let annotations = [
        (
            annotations::RENEWAL_REASON,
            format!("certificate renewal rolled out: {why}"),
        ),
        (
            annotations::RENEWAL_OLD_SERIALS,
            serde_json::to_string(&stale.pods).unwrap_or_default(),
        ),
        (
            annotations::RENEWAL_NEW_SERIALS,
            serde_json::to_string(&stale.current).unwrap_or_default(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let mut request = MssqlServerOpsRequest::new(
        &stale.request_name(&name),
        OpsRequestSpec {
            type_: TYPE_RESTART.to_owned(),
            database_ref: DatabaseRef { name: name.clone() },
            apply: Some(APPLY_IF_READY.to_owned()),
            ..OpsRequestSpec::default()
        },
    );
    request.metadata = ObjectMeta {
        namespace: db.namespace(),
        labels: Some(labels::selector(&name)),
        annotations: Some(annotations),
        owner_references: db.controller_owner_ref(&()).map(|owner| vec![owner]),
        ..request.metadata
    };
    request
}

/// Decides and, when it is time, creates the request. Returns the plan and, for a new request,
/// why it was created now. Lists the namespace's requests only when pods are stale.
pub async fn roll_out(
    client: &Client,
    db: &MssqlServer,
    stale: Stale,
    policy: &Policy,
) -> kube::Result<(Rollout, Option<Why>)> {
    let namespace = db.namespace().unwrap_or_default();
    let api: Api<MssqlServerOpsRequest> = Api::namespaced(client.clone(), &namespace);
    let requests = api.list(&Default::default()).await?.items;
    let (plan, why) = match next(&db.name_any(), &stale, policy, &requests, Timestamp::now()) {
        Next::Keep(plan) => (plan, None),
        Next::Create(why) => {
            let request = restart_request(db, &stale, &why);
            match api.create(&PostParams::default(), &request).await {
                Ok(_) => {}
                // Created by an earlier pass whose status write was lost: the same request.
                Err(kube::Error::Api(status)) if status.code == 409 => {}
                Err(error) => return Err(error),
            }
            let plan = Plan::Requested {
                request: request.name_any(),
            };
            (plan, Some(why))
        }
    };
    Ok((Rollout { stale, plan }, why))
}

/// The request as an Event's related object.
pub fn reference(db: &MssqlServer, request: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some(MssqlServerOpsRequest::api_version(&()).into_owned()),
        kind: Some(MssqlServerOpsRequest::kind(&()).into_owned()),
        name: Some(request.to_owned()),
        namespace: db.namespace(),
        ..ObjectReference::default()
    }
}

#[cfg(test)]
mod tests {
    use mssql_api::OpsRequestStatus;
    use mssql_api::renewal::{Rollout as Mode, Window};

    use super::*;
    use mssql_api::pods::StartedCertificate;

    fn cert(serial: &str, not_after: i64) -> StartedCertificate {
        StartedCertificate {
            serial: serial.to_owned(),
            not_after,
        }
    }

    const EXPIRY: i64 = 1_800_000_000; // 2027-01-15T08:00:00Z

    /// A 3-replica group: db-0 and db-1 run server 0A, db-2 already runs 0B; client is current.
    fn observed() -> Observed {
        let pod = |server: StartedCertificate| -> BTreeMap<String, StartedCertificate> {
            [
                ("server".to_owned(), server),
                ("client".to_owned(), cert("C1", EXPIRY + 500)),
            ]
            .into()
        };
        Observed {
            replicas: 3,
            ready_replicas: 3,
            started: [
                ("db-0".to_owned(), pod(cert("0A", EXPIRY))),
                ("db-1".to_owned(), pod(cert("0A", EXPIRY))),
                ("db-2".to_owned(), pod(cert("0B", EXPIRY + 9000))),
            ]
            .into(),
            secrets: [
                ("server".to_owned(), cert("0B", EXPIRY + 9000)),
                ("client".to_owned(), cert("C1", EXPIRY + 500)),
            ]
            .into(),
            ..Observed::default()
        }
    }

    fn stale() -> Stale {
        Stale::of(&observed()).expect("two pods are stale")
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn request(name: &str, db: &str, phase: Option<&str>) -> MssqlServerOpsRequest {
        let mut request = MssqlServerOpsRequest::new(
            name,
            OpsRequestSpec {
                type_: TYPE_RESTART.to_owned(),
                database_ref: DatabaseRef {
                    name: db.to_owned(),
                },
                ..OpsRequestSpec::default()
            },
        );
        request.status = phase.map(|p| OpsRequestStatus {
            phase: Some(p.to_owned()),
            ..OpsRequestStatus::default()
        });
        request
    }

    #[test]
    fn stale_pods_are_those_whose_secret_moved_on() {
        let stale = stale();
        assert_eq!(
            stale.pods,
            BTreeMap::from([
                (
                    "db-0".to_owned(),
                    [("server".to_owned(), "0A".to_owned())].into()
                ),
                (
                    "db-1".to_owned(),
                    [("server".to_owned(), "0A".to_owned())].into()
                ),
            ]),
            "only the moved-on alias, only the pods behind"
        );
        assert_eq!(stale.earliest_expiry, EXPIRY);
        assert_eq!(
            stale.describe(),
            "server certificate 0A (its secret now holds 0B) on db-0, db-1"
        );
        let mut current = observed();
        current.started.retain(|pod, _| pod == "db-2");
        assert_eq!(Stale::of(&current), None);
        assert_eq!(
            Stale::of(&Observed::default()),
            None,
            "no TLS, nothing stale"
        );
    }

    #[test]
    fn the_request_name_follows_the_new_material_only() {
        let name = stale().request_name("db");
        assert!(name.starts_with("db-renewal-") && name.len() == "db-renewal-".len() + 8);
        // Whichever pods are still behind, and however often it is computed: the same name.
        let mut fewer = observed();
        fewer.started.remove("db-1");
        assert_eq!(Stale::of(&fewer).unwrap().request_name("db"), name);
        // Renewed again: another name.
        let mut again = observed();
        again
            .secrets
            .insert("server".to_owned(), cert("0C", EXPIRY + 20000));
        assert_ne!(Stale::of(&again).unwrap().request_name("db"), name);
    }

    #[test]
    fn the_restart_request_is_owned_annotated_and_if_ready() {
        let mut db = MssqlServer::new("db", Default::default());
        db.metadata.namespace = Some("demo".to_owned());
        db.metadata.uid = Some("uid-1".to_owned());
        let stale = stale();
        let request = restart_request(&db, &stale, &Why::NoWindow);
        assert_eq!(request.name_any(), stale.request_name("db"));
        assert_eq!(request.namespace().as_deref(), Some("demo"));
        assert_eq!(request.spec.type_, "Restart");
        assert_eq!(request.spec.database_ref.name, "db");
        assert_eq!(request.spec.apply.as_deref(), Some("IfReady"));
        let owner = &request.owner_references()[0];
        assert_eq!((owner.name.as_str(), owner.uid.as_str()), ("db", "uid-1"));
        let annotations = request.annotations();
        assert_eq!(
            annotations[annotations::RENEWAL_REASON],
            "certificate renewal rolled out: no maintenance window is set, so any time is fine"
        );
        assert_eq!(
            annotations[annotations::RENEWAL_OLD_SERIALS],
            r#"{"db-0":{"server":"0A"},"db-1":{"server":"0A"}}"#
        );
        assert_eq!(
            annotations[annotations::RENEWAL_NEW_SERIALS],
            r#"{"client":"C1","server":"0B"}"#
        );
    }

    #[test]
    fn the_policy_decides_when_no_request_is_there() {
        let stale = stale();
        let now = at("2026-12-01T12:00:00Z"); // a Tuesday
        let auto = Policy::default();
        assert_eq!(
            next("db", &stale, &auto, &[], now),
            Next::Create(Why::NoWindow)
        );
        let manual = Policy {
            rollout: Mode::Manual,
            ..Policy::default()
        };
        assert_eq!(
            next("db", &stale, &manual, &[], now),
            Next::Keep(Plan::Manual)
        );
        let weekend = Policy {
            window: Some(Window::parse("Sat,Sun 22:00-02:00 UTC").unwrap()),
            ..Policy::default()
        };
        assert_eq!(
            next("db", &stale, &weekend, &[], now),
            Next::Keep(Plan::Waiting {
                window: "Sat,Sun 22:00-02:00 UTC".to_owned(),
                opens: at("2026-12-05T22:00:00Z"),
            })
        );
        // The old certificate expires before the window opens plus a day: now.
        let close = Observed {
            started: observed()
                .started
                .into_iter()
                .map(|(pod, mut certs)| {
                    if pod != "db-2" {
                        certs.insert(
                            "server".to_owned(),
                            cert("0A", at("2026-12-06T12:00:00Z").as_second()),
                        );
                    }
                    (pod, certs)
                })
                .collect(),
            ..observed()
        };
        assert!(matches!(
            next("db", &Stale::of(&close).unwrap(), &weekend, &[], now),
            Next::Create(Why::Margin { .. })
        ));
    }

    #[test]
    fn requests_already_there_are_respected() {
        let stale = stale();
        let now = at("2026-12-01T12:00:00Z");
        let ours = stale.request_name("db");
        let policy = Policy::default();
        for phase in [None, Some("Pending"), Some("Progressing")] {
            assert_eq!(
                next("db", &stale, &policy, &[request(&ours, "db", phase)], now),
                Next::Keep(Plan::Requested {
                    request: ours.clone()
                }),
                "{phase:?}: never a second request"
            );
        }
        for phase in ["Failed", "Skipped", "Successful"] {
            assert_eq!(
                next(
                    "db",
                    &stale,
                    &policy,
                    &[request(&ours, "db", Some(phase))],
                    now
                ),
                Next::Keep(Plan::Ended {
                    request: ours.clone(),
                    phase: phase.to_owned()
                }),
                "{phase}: a person decides"
            );
        }
        // The user's open request of this database runs first; ended ones and other databases'
        // do not matter.
        let user = request("user-rotate", "db", Some("Progressing"));
        assert_eq!(
            next("db", &stale, &policy, &[user], now),
            Next::Keep(Plan::AfterRequest {
                request: "user-rotate".to_owned()
            })
        );
        let others = [
            request("old", "db", Some("Successful")),
            request("theirs", "other-db", Some("Progressing")),
        ];
        assert_eq!(
            next("db", &stale, &policy, &others, now),
            Next::Create(Why::NoWindow)
        );
    }

    #[test]
    fn the_condition_and_events_say_what_happens_and_what_a_person_does() {
        let rollout = |plan| Rollout {
            stale: stale(),
            plan,
        };
        let waiting = rollout(Plan::Waiting {
            window: "Sat 22:00-02:00 UTC".to_owned(),
            opens: at("2026-12-05T22:00:00Z"),
        });
        assert_eq!(waiting.reason(), "WaitingForMaintenanceWindow");
        assert_eq!(
            waiting.message(),
            "pods run older certificates than their secrets hold: server certificate 0A (its \
             secret now holds 0B) on db-0, db-1; they are restarted in the maintenance window \
             Sat 22:00-02:00 UTC, which opens at 2026-12-05T22:00:00Z"
        );
        let manual = rollout(Plan::Manual);
        assert!(
            manual.message().ends_with(
                "the rollout is Manual (mssql-operator.dev/renewal-rollout): restart them with \
                 an MSSQLServerOpsRequest of type Restart before 2027-01-15T08:00:00Z"
            ),
            "{}",
            manual.message()
        );
        let (type_, reason, _) = manual.event(None).unwrap();
        assert_eq!(
            (type_, reason),
            (EventType::Warning, "RenewalRolloutNeeded")
        );
        let requested = rollout(Plan::Requested {
            request: "db-renewal-1".to_owned(),
        });
        let (type_, reason, note) = requested.event(Some(&Why::NoWindow)).unwrap();
        assert_eq!((type_, reason), (EventType::Normal, "RenewalRollout"));
        assert_eq!(
            note,
            "created MSSQLServerOpsRequest db-renewal-1 to restart the pods running renewed \
             certificates (server certificate 0A (its secret now holds 0B) on db-0, db-1): no \
             maintenance window is set, so any time is fine"
        );
        assert_eq!(rollout(Plan::Paused).event(None), None);
        assert_eq!(
            rollout(Plan::AfterRequest {
                request: "x".to_owned()
            })
            .event(None),
            None,
            "waiting for the user's request needs no Event"
        );
    }
}

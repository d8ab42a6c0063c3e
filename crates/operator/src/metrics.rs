//! The operator's Prometheus metrics: what it reconciles, the ops requests it runs and how long
//! each step takes, the databases it has paused, when each certificate expires, the pods
//! whose renewed certificate is not rolled out yet, and each availability group's replicas and
//! failovers.
//! Everything is kept in memory and rendered in the text format on each scrape of `/metrics`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use crate::build::start::RunningCertificate;
use crate::provisioner::replicas::labelled_primary;
use mssql_api::ReplicaStatus;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The content type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The two controllers, as the `controller` label spells them.
pub const PROVISIONER: &str = "provisioner";
pub const OPS_MANAGER: &str = "ops-manager";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabels {
    controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    controller: &'static str,
    /// The step that failed (`crate::controller::ReconcileError::category`).
    category: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpsLabels {
    r#type: String,
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabels {
    r#type: String,
    step: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CertificateLabels {
    namespace: String,
    database: String,
    pod: String,
    alias: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct DatabaseLabels {
    namespace: String,
    database: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct ReplicaLabels {
    namespace: String,
    database: String,
    pod: String,
    /// The pod's `kubedb.com/role` label; empty when it has none.
    role: String,
    /// What its SQL Server says (PRIMARY, SECONDARY, RESOLVING); empty when nothing.
    sql_role: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RolloutLabels {
    namespace: String,
    database: String,
    reason: String,
}

/// What the gauges are computed from: the last thing seen of each request and database.
#[derive(Default)]
struct Seen {
    /// Request (`namespace/name`) → (type, phase).
    requests: BTreeMap<String, (String, String)>,
    /// Every (type, phase) pair a request has been seen in.
    request_series: BTreeSet<(String, String)>,
    /// Databases (`namespace/name`) that are paused.
    paused: BTreeSet<String>,
    /// Database (`namespace/name`) → the (pod, alias) pairs it has certificate gauges for.
    certificates: BTreeMap<String, BTreeSet<(String, String)>>,
    /// Database → when the earliest certificate its pods serve expires (Unix seconds); the
    /// seconds left are computed on each scrape.
    earliest_served: BTreeMap<DatabaseLabels, i64>,
    /// Database → the reason its rollout is pending for.
    rollouts: BTreeMap<DatabaseLabels, String>,
    /// Database → the series of its replicas' roles.
    replicas: BTreeMap<DatabaseLabels, BTreeSet<ReplicaLabels>>,
    /// Database → the pod last seen labelled primary.
    primaries: BTreeMap<DatabaseLabels, String>,
}

/// Histograms per label set, each made with its own buckets.
type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    reconciliations: Family<ControllerLabels, Counter>,
    reconcile_errors: Family<ErrorLabels, Counter>,
    reconcile_duration: Histograms<ControllerLabels>,
    ops_requests: Family<OpsLabels, Gauge>,
    ops_step_duration: Histograms<StepLabels>,
    paused_databases: Gauge,
    certificate_expiry: Family<CertificateLabels, Gauge>,
    certificate_outdated: Family<CertificateLabels, Gauge>,
    pods_outdated: Family<DatabaseLabels, Gauge>,
    served_expiry: Family<DatabaseLabels, Gauge>,
    rollout_pending: Family<RolloutLabels, Gauge>,
    replica_role: Family<ReplicaLabels, Gauge>,
    replicas_not_synchronized: Family<DatabaseLabels, Gauge>,
    failovers: Family<DatabaseLabels, Counter>,
    leader: Gauge,
    seen: Mutex<Seen>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        // 1 ms to about 30 s: a reconcile is a few API calls.
        let reconcile_duration: Histograms<_> =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.001, 2.0, 16)));
        // 0.1 s to about 55 min: a step may wait for cert-manager or a pod to restart.
        let ops_step_duration: Histograms<_> =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.1, 2.0, 16)));
        let metrics = Self {
            registry: Registry::with_prefix("mssql_operator"),
            reconciliations: Family::default(),
            reconcile_errors: Family::default(),
            reconcile_duration,
            ops_requests: Family::default(),
            ops_step_duration,
            paused_databases: Gauge::default(),
            certificate_expiry: Family::default(),
            certificate_outdated: Family::default(),
            pods_outdated: Family::default(),
            served_expiry: Family::default(),
            rollout_pending: Family::default(),
            replica_role: Family::default(),
            replicas_not_synchronized: Family::default(),
            failovers: Family::default(),
            leader: Gauge::default(),
            seen: Mutex::default(),
        };
        metrics.register()
    }

    fn register(mut self) -> Self {
        let r = &mut self.registry;
        r.register(
            "reconciliations",
            "Reconciliations run, per controller",
            self.reconciliations.clone(),
        );
        r.register(
            "reconcile_errors",
            "Reconciliations that failed and will be retried, per controller",
            self.reconcile_errors.clone(),
        );
        r.register(
            "reconcile_duration_seconds",
            "How long one reconciliation took, per controller",
            self.reconcile_duration.clone(),
        );
        r.register(
            "ops_requests",
            "MSSQLServerOpsRequests by type and phase",
            self.ops_requests.clone(),
        );
        r.register(
            "ops_step_duration_seconds",
            "How long each step of an ops request took, from the previous step to its condition",
            self.ops_step_duration.clone(),
        );
        r.register(
            "paused_databases",
            "Databases paused by an ops request",
            self.paused_databases.clone(),
        );
        r.register(
            "certificate_expiry_timestamp_seconds",
            "When the certificate a database pod runs expires (Unix time), per alias: the one \
             its SQL Server loaded at start-up",
            self.certificate_expiry.clone(),
        );
        r.register(
            "certificate_outdated",
            "1 while a pod runs another certificate than the alias's Secret holds (renewed, not \
             yet restarted into)",
            self.certificate_outdated.clone(),
        );
        r.register(
            "pods_outdated_certificates",
            "Pods of a database that run an older certificate than their Secret holds",
            self.pods_outdated.clone(),
        );
        r.register(
            "served_certificate_expiry_seconds",
            "Seconds until the earliest certificate a database's pods serve expires (negative once \
             expired)",
            self.served_expiry.clone(),
        );
        r.register(
            "certificate_rollout_pending",
            "1 while a database's renewed certificates wait to be rolled out, by reason \
             (WaitingForMaintenanceWindow, ManualRollout, RestartEnded, ...)",
            self.rollout_pending.clone(),
        );
        r.register(
            "replica_role",
            "1 per replica of an availability group, with its pod's role label and the role its \
             SQL Server reports",
            self.replica_role.clone(),
        );
        r.register(
            "replicas_not_synchronized",
            "Replicas of an availability group that do not report themselves synchronized",
            self.replicas_not_synchronized.clone(),
        );
        r.register(
            "failovers",
            "Changes of the pod labelled primary from one pod to another, as the operator saw \
             them",
            self.failovers.clone(),
        );
        r.register(
            "leader",
            "1 while this process holds the leader-election Lease and reconciles",
            self.leader.clone(),
        );
        self
    }

    /// The metrics in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let now = k8s_openapi::jiff::Timestamp::now().as_second();
        for (database, expiry) in &self.lock().earliest_served {
            self.served_expiry.get_or_create(database).set(expiry - now);
        }
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("writing to a String does not fail");
        text
    }

    /// One reconcile of `controller`; `error`: the category of the error it ended with.
    pub fn reconciled(
        &self,
        controller: &'static str,
        took: Duration,
        error: Option<&'static str>,
    ) {
        let labels = ControllerLabels { controller };
        self.reconciliations.get_or_create(&labels).inc();
        if let Some(category) = error {
            let labels = ErrorLabels {
                controller,
                category,
            };
            self.reconcile_errors.get_or_create(&labels).inc();
        }
        self.reconcile_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// Records the type and phase (empty before the first step) of request `key`.
    pub fn ops_request(&self, key: &str, type_: &str, phase: &str) {
        let mut seen = self.lock();
        seen.requests
            .insert(key.to_owned(), (type_.to_owned(), phase.to_owned()));
        self.count_requests(&mut seen);
    }

    pub fn ops_request_gone(&self, key: &str) {
        let mut seen = self.lock();
        seen.requests.remove(key);
        self.count_requests(&mut seen);
    }

    /// Sets every (type, phase) series ever seen to its current count, so a phase no request is
    /// in any more shows 0 instead of its last value.
    fn count_requests(&self, seen: &mut Seen) {
        let current: Vec<(String, String)> = seen.requests.values().cloned().collect();
        seen.request_series.extend(current.iter().cloned());
        for (type_, phase) in &seen.request_series {
            let count = current
                .iter()
                .filter(|(t, p)| t == type_ && p == phase)
                .count();
            self.ops_requests
                .get_or_create(&OpsLabels {
                    r#type: type_.clone(),
                    phase: phase.clone(),
                })
                .set(count as i64);
        }
    }

    pub fn ops_step_done(&self, type_: &str, step: &str, took: Duration) {
        self.ops_step_duration
            .get_or_create(&StepLabels {
                r#type: type_.to_owned(),
                step: step.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// Records whether database `namespace/name` is paused.
    pub fn database_paused(&self, namespace: &str, name: &str, paused: bool) {
        let key = format!("{namespace}/{name}");
        let mut seen = self.lock();
        if paused {
            seen.paused.insert(key);
        } else {
            seen.paused.remove(&key);
        }
        self.paused_databases.set(seen.paused.len() as i64);
    }

    /// Records, per pod and alias of database `namespace/name`, when the certificate the pod runs
    /// expires and whether its Secret moved on; pairs not given lose their gauges.
    pub fn certificates(&self, namespace: &str, name: &str, running: &[RunningCertificate]) {
        let key = format!("{namespace}/{name}");
        let mut seen = self.lock();
        let labels = |(pod, alias): &(String, String)| CertificateLabels {
            namespace: namespace.to_owned(),
            database: name.to_owned(),
            pod: pod.clone(),
            alias: alias.clone(),
        };
        let now: BTreeSet<(String, String)> = running
            .iter()
            .map(|r| (r.pod.clone(), r.alias.clone()))
            .collect();
        for gone in seen
            .certificates
            .remove(&key)
            .unwrap_or_default()
            .difference(&now)
        {
            self.certificate_expiry.remove(&labels(gone));
            self.certificate_outdated.remove(&labels(gone));
        }
        for certificate in running {
            let labels = labels(&(certificate.pod.clone(), certificate.alias.clone()));
            self.certificate_expiry
                .get_or_create(&labels)
                .set(certificate.not_after);
            self.certificate_outdated
                .get_or_create(&labels)
                .set(i64::from(certificate.outdated));
        }
        if !now.is_empty() {
            seen.certificates.insert(key, now);
        }
        let database = DatabaseLabels {
            namespace: namespace.to_owned(),
            database: name.to_owned(),
        };
        let outdated: BTreeSet<&str> = running
            .iter()
            .filter(|r| r.outdated)
            .map(|r| r.pod.as_str())
            .collect();
        match running.iter().map(|r| r.not_after).min() {
            Some(earliest) => {
                self.pods_outdated
                    .get_or_create(&database)
                    .set(outdated.len() as i64);
                seen.earliest_served.insert(database, earliest);
            }
            None => {
                self.pods_outdated.remove(&database);
                self.served_expiry.remove(&database);
                seen.earliest_served.remove(&database);
            }
        }
    }

    /// Records why the rollout of database `namespace/name`'s renewed certificates waits, or
    /// (`None`) that nothing waits.
    pub fn rollout(&self, namespace: &str, name: &str, pending: Option<&str>) {
        let database = DatabaseLabels {
            namespace: namespace.to_owned(),
            database: name.to_owned(),
        };
        let mut seen = self.lock();
        let series = |reason: &str| RolloutLabels {
            namespace: namespace.to_owned(),
            database: name.to_owned(),
            reason: reason.to_owned(),
        };
        if let Some(before) = seen.rollouts.remove(&database) {
            self.rollout_pending.remove(&series(&before));
        }
        if let Some(reason) = pending {
            self.rollout_pending.get_or_create(&series(reason)).set(1);
            seen.rollouts.insert(database, reason.to_owned());
        }
    }

    /// Records the replicas of availability group `namespace/name` (none: it has no pods, or is
    /// no group); `recorded` are those its status held before, which tell a primary that changed
    /// while no operator looked (it was restarting).
    pub fn replicas(
        &self,
        namespace: &str,
        name: &str,
        replicas: &[ReplicaStatus],
        recorded: &[ReplicaStatus],
    ) {
        let database = DatabaseLabels {
            namespace: namespace.to_owned(),
            database: name.to_owned(),
        };
        let series: BTreeSet<ReplicaLabels> = replicas
            .iter()
            .map(|r| ReplicaLabels {
                namespace: namespace.to_owned(),
                database: name.to_owned(),
                pod: r.pod.clone(),
                role: r.role.clone().unwrap_or_default(),
                sql_role: r.sql_role.clone().unwrap_or_default(),
            })
            .collect();
        let mut seen = self.lock();
        for gone in seen
            .replicas
            .remove(&database)
            .unwrap_or_default()
            .difference(&series)
        {
            self.replica_role.remove(gone);
        }
        if replicas.is_empty() {
            // Nothing to compare a later primary with: a group brought back from no pods at all
            // (halted, every pod deleted) has not failed over.
            self.replicas_not_synchronized.remove(&database);
            seen.primaries.remove(&database);
            return;
        }
        for labels in &series {
            self.replica_role.get_or_create(labels).set(1);
        }
        seen.replicas.insert(database.clone(), series);
        let behind = replicas.iter().filter(|r| !r.synchronized).count();
        self.replicas_not_synchronized
            .get_or_create(&database)
            .set(behind as i64);
        // Made at 0 with the group, so that its first failover is an increase.
        let failovers = self.failovers.get_or_create(&database);
        let before = seen
            .primaries
            .get(&database)
            .map(String::as_str)
            .or_else(|| labelled_primary(recorded));
        let now = labelled_primary(replicas);
        if failed_over(before, now) {
            failovers.inc();
        }
        // Kept through a moment without a primary label, even if only the status knew it.
        if let Some(last) = now.or(before).map(str::to_owned) {
            seen.primaries.insert(database, last);
        }
    }

    pub fn database_gone(&self, namespace: &str, name: &str) {
        self.database_paused(namespace, name, false);
        self.certificates(namespace, name, &[]);
        self.rollout(namespace, name, None);
        self.replicas(namespace, name, &[], &[]);
        self.failovers.remove(&DatabaseLabels {
            namespace: namespace.to_owned(),
            database: name.to_owned(),
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        // The maps stay consistent even if a holder panicked: every update is one insert/remove.
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A failover: the primary label has moved from one pod to another. A moment with no pod
/// labelled (the old one loses its label before the new one gets it) is not one; what counts is
/// the last pod seen labelled.
fn failed_over(before: Option<&str>, now: Option<&str>) -> bool {
    matches!((before, now), (Some(before), Some(now)) if before != now)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rendered lines starting with `prefix`, sorted (series are kept in a hash map).
    fn lines_with(metrics: &Metrics, prefix: &str) -> Vec<String> {
        let mut lines: Vec<String> = metrics
            .render()
            .lines()
            .filter(|l| l.starts_with(prefix))
            .map(str::to_owned)
            .collect();
        lines.sort();
        lines
    }

    #[test]
    fn reconciliations_and_errors_are_counted_per_controller() {
        let m = Metrics::new();
        m.reconciled(PROVISIONER, Duration::from_millis(3), None);
        m.reconciled(PROVISIONER, Duration::from_millis(5), Some("apply"));
        m.reconciled(OPS_MANAGER, Duration::from_millis(1), None);
        assert_eq!(
            lines_with(&m, "mssql_operator_reconciliations_total"),
            [
                "mssql_operator_reconciliations_total{controller=\"ops-manager\"} 1",
                "mssql_operator_reconciliations_total{controller=\"provisioner\"} 2",
            ]
        );
        let text = m.render();
        assert!(text.contains(
            "mssql_operator_reconcile_errors_total{controller=\"provisioner\",category=\"apply\"} 1"
        ));
        assert!(!text.contains("mssql_operator_reconcile_errors_total{controller=\"ops-manager\""));
        assert!(text.contains(
            "mssql_operator_reconcile_duration_seconds_count{controller=\"provisioner\"} 2"
        ));
    }

    #[test]
    fn ops_requests_are_counted_by_type_and_phase_and_forgotten_when_deleted() {
        let m = Metrics::new();
        m.ops_request("demo/a", "ReconfigureTLS", "Progressing");
        m.ops_request("demo/b", "ReconfigureTLS", "Progressing");
        m.ops_request("demo/c", "Restart", "Successful");
        let text = m.render();
        assert!(text.contains(
            "mssql_operator_ops_requests{type=\"ReconfigureTLS\",phase=\"Progressing\"} 2"
        ));
        assert!(
            text.contains("mssql_operator_ops_requests{type=\"Restart\",phase=\"Successful\"} 1")
        );

        m.ops_request("demo/a", "ReconfigureTLS", "Successful");
        m.ops_request_gone("demo/c");
        let text = m.render();
        assert!(text.contains(
            "mssql_operator_ops_requests{type=\"ReconfigureTLS\",phase=\"Progressing\"} 1"
        ));
        assert!(text.contains(
            "mssql_operator_ops_requests{type=\"ReconfigureTLS\",phase=\"Successful\"} 1"
        ));
        assert!(
            text.contains("mssql_operator_ops_requests{type=\"Restart\",phase=\"Successful\"} 0")
        );
    }

    #[test]
    fn step_durations_are_histograms_per_type_and_step() {
        let m = Metrics::new();
        m.ops_step_done("ReconfigureTLS", "RestartNodes", Duration::from_secs(7));
        m.ops_step_done("ReconfigureTLS", "RestartNodes", Duration::from_secs(3));
        let text = m.render();
        assert!(text.contains(
            "mssql_operator_ops_step_duration_seconds_count{type=\"ReconfigureTLS\",step=\"RestartNodes\"} 2"
        ));
        assert!(text.contains(
            "mssql_operator_ops_step_duration_seconds_sum{type=\"ReconfigureTLS\",step=\"RestartNodes\"} 10.0"
        ));
    }

    #[test]
    fn paused_databases_and_certificate_expiry_follow_each_database() {
        let m = Metrics::new();
        m.database_paused("demo", "a", true);
        let running = |pod: &str, alias: &str, not_after, outdated| RunningCertificate {
            pod: pod.to_owned(),
            alias: alias.to_owned(),
            not_after,
            outdated,
        };
        m.certificates(
            "demo",
            "a",
            &[
                running("a-0", "server", 100, true),
                running("a-0", "client", 200, false),
            ],
        );
        m.database_paused("demo", "b", true);
        let text = m.render();
        assert!(text.contains("mssql_operator_paused_databases 2"));
        assert!(text.contains(
            "mssql_operator_certificate_expiry_timestamp_seconds{namespace=\"demo\",database=\"a\",pod=\"a-0\",alias=\"server\"} 100"
        ));
        assert!(text.contains(
            "mssql_operator_certificate_expiry_timestamp_seconds{namespace=\"demo\",database=\"a\",pod=\"a-0\",alias=\"client\"} 200"
        ));
        assert!(text.contains(
            "mssql_operator_certificate_outdated{namespace=\"demo\",database=\"a\",pod=\"a-0\",alias=\"server\"} 1"
        ));

        // TLS removed from a, resumed: its gauges go; b is deleted.
        m.database_paused("demo", "a", false);
        m.certificates("demo", "a", &[running("a-0", "server", 300, false)]);
        m.database_gone("demo", "b");
        let text = m.render();
        assert!(text.contains("mssql_operator_paused_databases 0"));
        assert!(text.contains(
            "mssql_operator_certificate_expiry_timestamp_seconds{namespace=\"demo\",database=\"a\",pod=\"a-0\",alias=\"server\"} 300"
        ));
        assert!(text.contains(
            "mssql_operator_certificate_outdated{namespace=\"demo\",database=\"a\",pod=\"a-0\",alias=\"server\"} 0"
        ));
        assert!(!text.contains("alias=\"client\""), "{text}");
    }

    #[test]
    fn stale_pods_the_earliest_served_expiry_and_a_pending_rollout_per_database() {
        let m = Metrics::new();
        let running = |pod: &str, not_after, outdated| RunningCertificate {
            pod: pod.to_owned(),
            alias: "server".to_owned(),
            not_after,
            outdated,
        };
        let in_an_hour = k8s_openapi::jiff::Timestamp::now().as_second() + 3600;
        m.certificates(
            "demo",
            "a",
            &[
                running("a-0", in_an_hour, true),
                running("a-1", in_an_hour, true),
                running("a-2", in_an_hour + 7200, false),
            ],
        );
        m.rollout("demo", "a", Some("WaitingForMaintenanceWindow"));
        let text = m.render();
        assert!(text.contains(
            "mssql_operator_pods_outdated_certificates{namespace=\"demo\",database=\"a\"} 2"
        ));
        let left = scraped(&text, "mssql_operator_served_certificate_expiry_seconds");
        assert!((3590..=3600).contains(&left), "{left}");
        assert!(text.contains(
            "mssql_operator_certificate_rollout_pending{namespace=\"demo\",database=\"a\",reason=\"WaitingForMaintenanceWindow\"} 1"
        ));

        m.rollout("demo", "a", Some("ManualRollout"));
        let text = m.render();
        assert!(
            !text.contains("reason=\"WaitingForMaintenanceWindow\""),
            "{text}"
        );
        assert!(text.contains("reason=\"ManualRollout\"} 1"));

        // Rolled out, then deleted.
        m.certificates("demo", "a", &[running("a-0", in_an_hour + 7200, false)]);
        m.rollout("demo", "a", None);
        let text = m.render();
        assert!(text.contains(
            "mssql_operator_pods_outdated_certificates{namespace=\"demo\",database=\"a\"} 0"
        ));
        assert!(
            !text.contains("mssql_operator_certificate_rollout_pending{"),
            "{text}"
        );
        m.database_gone("demo", "a");
        let text = m.render();
        assert!(!text.contains("database=\"a\""), "{text}");
    }

    /// The value of the one series of `name` in `text`.
    fn scraped(text: &str, name: &str) -> i64 {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{name}{{")))
            .unwrap_or_else(|| panic!("no {name} in {text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    }

    fn replica(
        pod: &str,
        role: Option<&str>,
        sql_role: Option<&str>,
        synced: bool,
    ) -> ReplicaStatus {
        ReplicaStatus {
            pod: pod.to_owned(),
            role: role.map(str::to_owned),
            sql_role: sql_role.map(str::to_owned),
            synchronized: synced,
            connected: synced,
            since: None,
        }
    }

    /// A group of three with `primary` labelled and PRIMARY, the others secondary and synchronized.
    fn group(primary: &str) -> Vec<ReplicaStatus> {
        ["ag-0", "ag-1", "ag-2"]
            .into_iter()
            .map(|pod| match pod == primary {
                true => replica(pod, Some("primary"), Some("PRIMARY"), true),
                false => replica(pod, Some("secondary"), Some("SECONDARY"), true),
            })
            .collect()
    }

    const FAILOVERS: &str = "mssql_operator_failovers_total{namespace=\"demo\",database=\"ag\"}";

    #[test]
    fn each_replica_has_its_roles_and_a_group_counts_those_not_synchronized() {
        let m = Metrics::new();
        let mut replicas = group("ag-0");
        replicas[2] = replica("ag-2", None, None, false);
        m.replicas("demo", "ag", &replicas, &[]);
        assert_eq!(
            lines_with(&m, "mssql_operator_replica"),
            [
                "mssql_operator_replica_role{namespace=\"demo\",database=\"ag\",pod=\"ag-0\",role=\"primary\",sql_role=\"PRIMARY\"} 1",
                "mssql_operator_replica_role{namespace=\"demo\",database=\"ag\",pod=\"ag-1\",role=\"secondary\",sql_role=\"SECONDARY\"} 1",
                "mssql_operator_replica_role{namespace=\"demo\",database=\"ag\",pod=\"ag-2\",role=\"\",sql_role=\"\"} 1",
                "mssql_operator_replicas_not_synchronized{namespace=\"demo\",database=\"ag\"} 1",
            ]
        );
        assert_eq!(
            scraped(&m.render(), "mssql_operator_failovers_total"),
            0,
            "made with the group"
        );
        // ag-2 joins: its old series goes.
        m.replicas("demo", "ag", &group("ag-0"), &[]);
        let text = m.render();
        assert!(!text.contains("sql_role=\"\""), "{text}");
        assert!(text.contains("pod=\"ag-2\",role=\"secondary\",sql_role=\"SECONDARY\"} 1"));
        assert!(text.contains(
            "mssql_operator_replicas_not_synchronized{namespace=\"demo\",database=\"ag\"} 0"
        ));
        // Halted: no pods, no series; the counter stays until the database goes.
        m.replicas("demo", "ag", &[], &[]);
        let text = m.render();
        assert!(!text.contains("mssql_operator_replica"), "{text}");
        assert!(text.contains(FAILOVERS), "{text}");
        m.database_gone("demo", "ag");
        assert!(!m.render().contains("database=\"ag\""));
    }

    #[test]
    fn a_failover_is_a_move_of_the_primary_label_to_another_pod() {
        let m = Metrics::new();
        let failovers = |m: &Metrics| scraped(&m.render(), "mssql_operator_failovers_total");
        m.replicas("demo", "ag", &group("ag-0"), &[]);
        m.replicas("demo", "ag", &group("ag-0"), &[]);
        assert_eq!(failovers(&m), 0, "formed, then steady");
        // The old primary loses its label before the new one gets it: one failover, not two.
        let mut between = group("ag-0");
        between[0] = replica("ag-0", Some("secondary"), Some("RESOLVING"), false);
        m.replicas("demo", "ag", &between, &[]);
        assert_eq!(failovers(&m), 0);
        m.replicas("demo", "ag", &group("ag-1"), &[]);
        assert_eq!(failovers(&m), 1);
        m.replicas("demo", "ag", &group("ag-2"), &[]);
        m.replicas("demo", "ag", &group("ag-2"), &[]);
        assert_eq!(failovers(&m), 2);
    }

    #[test]
    fn a_failover_while_no_operator_looked_is_found_in_the_status() {
        // A new operator process: the status its predecessor wrote says ag-0 was the primary.
        let m = Metrics::new();
        m.replicas("demo", "ag", &group("ag-1"), &group("ag-0"));
        assert_eq!(scraped(&m.render(), "mssql_operator_failovers_total"), 1);
        // Its own status now says ag-1; what it remembers counts from here.
        m.replicas("demo", "ag", &group("ag-1"), &group("ag-1"));
        assert_eq!(scraped(&m.render(), "mssql_operator_failovers_total"), 1);

        // Started in the middle of one: no pod labelled primary yet; the status's is kept.
        let m = Metrics::new();
        let mut between = group("ag-0");
        between[0].role = Some("secondary".to_owned());
        m.replicas("demo", "ag", &between, &group("ag-0"));
        m.replicas("demo", "ag", &group("ag-2"), &between);
        assert_eq!(scraped(&m.render(), "mssql_operator_failovers_total"), 1);
    }

    #[test]
    fn only_a_primary_seen_on_both_sides_can_have_moved() {
        for (before, now, moved) in [
            (None, None, false),
            (None, Some("ag-0"), false),
            (Some("ag-0"), None, false),
            (Some("ag-0"), Some("ag-0"), false),
            (Some("ag-0"), Some("ag-1"), true),
        ] {
            assert_eq!(failed_over(before, now), moved, "{before:?} → {now:?}");
        }
    }

    #[test]
    fn leadership_is_a_gauge() {
        let m = Metrics::new();
        assert!(m.render().contains("mssql_operator_leader 0"));
        m.set_leader(true);
        assert!(m.render().contains("mssql_operator_leader 1"));
    }
}

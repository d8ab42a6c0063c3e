//! What a client of an availability group sees while a change restarts its pods: the writer of
//! [`Group::traffic`] commits a row through the primary Service every 100 ms (reconnecting on
//! error, as a pooled application would) during one change, from a quiet moment before it to a
//! quiet moment after the group settled again. Used by `real_node_switchover.rs` and
//! `hack/bench-switchover`.

use std::fmt;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{DeleteParams, EvictParams};
use mssql_api::{MssqlServer, MssqlServerOpsRequest};
use serde_json::{Value, json};

use mssql_sqlserver_double::startup::DEFAULT_STARTUP_DELAY;

use crate::cluster::{ca_issuer, eventually};
use crate::fixture::{READY_TIMEOUT, Setup, create_ops, summary, wait_ops};
use crate::group::{DB, Group, Traffic, Written, connect, ids_in, run, service_address};
use crate::real_node::on_the_node;
use crate::renewal::{renew_server_certificate, renewal_requests, wait_renewal_request};

/// How long a change may take, restarts of pods that take SQL Server's time to start included.
pub const CHANGE_TIMEOUT: Duration = Duration::from_secs(600);

/// The Issuer KubeDB's guide changes to; the test or benchmark creates it.
pub const NEW_ISSUER: &str = "mssqlserver-new-ca-issuer";

/// The writer runs this long before a change and after the group settled.
const QUIET: Duration = Duration::from_secs(2);

/// A change that restarts pods, as a user makes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// `ReconfigureTLS` adding client TLS (KubeDB's `msops-ag-add-tls`).
    AddTls,
    /// `ReconfigureTLS` rotating every certificate (`msops-ag-rotate`).
    Rotate,
    /// `ReconfigureTLS` to another Issuer: new server and endpoint certificates from another CA
    /// (`msops-ag-change-issuer`; the Issuer `mssqlserver-new-ca-issuer` must exist).
    ChangeIssuer,
    /// A `Restart` request.
    Restart,
    /// cert-manager renews the server certificate (as `cmctl renew`), and the operator's own
    /// Restart request rolls it out.
    Renewal,
    /// The primary's pod is evicted, as a node drain does.
    PrimaryEvicted,
}

impl Change {
    /// Every change, in an order each can follow the one before (TLS is added first).
    pub const ALL: [Self; 6] = [
        Self::AddTls,
        Self::Rotate,
        Self::ChangeIssuer,
        Self::Restart,
        Self::Renewal,
        Self::PrimaryEvicted,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::AddTls => "add TLS",
            Self::Rotate => "rotate",
            Self::ChangeIssuer => "change issuer",
            Self::Restart => "Restart",
            Self::Renewal => "renewal rollout",
            Self::PrimaryEvicted => "primary evicted",
        }
    }
}

/// What the writer saw during one change.
#[derive(Clone, Debug)]
pub struct Seen {
    /// [`Change::name`], or [`STANDALONE_RESTART`].
    pub change: &'static str,
    /// From the change to the database settled again.
    pub took: Duration,
    pub longest_gap: Duration,
    pub unavailable: Duration,
    pub failed: u64,
    pub acknowledged: usize,
    /// The primary before and after (a standalone's pod, twice).
    pub primaries: (String, String),
    /// Each gap longer than three times the writer's pace: when (from the writer's start) and
    /// how long.
    pub stalls: Vec<(Duration, Duration)>,
    /// A group's longest replication break: a secondary Ready but disconnected or not
    /// synchronized ([`Sampled::longest_replication_break`]).
    pub replication_break: Duration,
    /// Each replica's state each time it changed: when, the pod, the state.
    pub replication: Vec<(Duration, String, String)>,
}

/// What [`Standalone::restart`] reports as its change.
pub const STANDALONE_RESTART: &str = "standalone Restart";

impl Seen {
    fn of(
        change: &'static str,
        took: Duration,
        written: &Written,
        primaries: (String, String),
    ) -> Self {
        Self {
            change,
            took,
            longest_gap: written.longest_gap(),
            unavailable: written.unavailable(),
            failed: written.failed,
            acknowledged: written.acknowledged.len(),
            primaries,
            stalls: written.stalls(),
            replication_break: Duration::ZERO,
            replication: Vec::new(),
        }
    }
}

impl fmt::Display for Seen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: took {:.1?}, longest write gap {:.2?}, no write for {:.2?} in all, {} failed \
             attempts, {} writes acknowledged; primary {} → {}",
            self.change,
            self.took,
            self.longest_gap,
            self.unavailable,
            self.failed,
            self.acknowledged,
            self.primaries.0,
            self.primaries.1
        )?;
        for (at, gap) in &self.stalls {
            write!(f, "\n  no write for {gap:.2?} from {at:.1?}")?;
        }
        if !self.replication.is_empty() {
            write!(
                f,
                "\n  longest replication break (a Ready secondary disconnected or not \
                 synchronized): {:.2?}; each replica's state as it changed:",
                self.replication_break
            )?;
        }
        for (at, pod, state) in &self.replication {
            write!(f, "\n    {at:>7.1?} {pod}: {state}")?;
        }
        Ok(())
    }
}

/// KubeDB's three-replica group whose doubles take SQL Server's time to start, with the Issuer
/// a change of issuer moves to.
pub async fn realistic_group(name: &str) -> Group {
    let group = Group::form(name, 3, DEFAULT_STARTUP_DELAY).await;
    ca_issuer(
        &group.t.client,
        &group.t.ns.name,
        NEW_ISSUER,
        "mssqlserver-new",
    )
    .await;
    group
}

/// Makes `change` on `group` with the writer running, waits until it ended Successful (or the
/// evicted pod is back) and every replica is synchronized again, and checks that no
/// acknowledged write is missing on any replica and that no sample saw two primaries.
pub async fn during(group: &Group, change: Change) -> Seen {
    let before = group.primary(None).await;
    let traffic = group.traffic().await;
    tokio::time::sleep(QUIET).await;
    let began = Instant::now();
    make(group, change, &before).await;
    let after = group.primary(None).await;
    group.status_shows(&after).await;
    let took = began.elapsed();
    tokio::time::sleep(QUIET).await;
    let (written, sampled) = traffic.finish().await;
    group.assert_nothing_lost(&written, &sampled).await;
    Seen {
        replication_break: sampled.longest_replication_break,
        replication: sampled.replication,
        ..Seen::of(change.name(), took, &written, (before, after))
    }
}

async fn make(group: &Group, change: Change, primary: &str) {
    let t = &group.t;
    let name = match change {
        Change::AddTls => create_ops(t, "msops-ag-add-tls", prepare).await,
        Change::Rotate => create_ops(t, "msops-ag-rotate", prepare).await,
        Change::ChangeIssuer => {
            // To the guide's new issuer, or back from it when a change before moved there.
            let db = t.api::<MssqlServer>().get(DB).await.unwrap();
            let now = db.spec.tls.and_then(|tls| tls.issuer_ref).map(|i| i.name);
            let to = match now.as_deref() {
                Some(NEW_ISSUER) => "mssqlserver-ca-issuer",
                _ => NEW_ISSUER,
            };
            create_ops(t, "msops-ag-change-issuer", |ops| {
                ops["spec"]["tls"]["issuerRef"]["name"] = json!(to);
                prepare(ops);
            })
            .await
        }
        Change::Restart => restart_request(t, DB).await,
        Change::Renewal => {
            let known: Vec<String> = renewal_requests(t, DB)
                .await
                .iter()
                .map(|r| r.name_any())
                .collect();
            renew_server_certificate(t, DB).await;
            wait_renewal_request(t, DB, &known, Duration::from_secs(120))
                .await
                .name_any()
        }
        Change::PrimaryEvicted => {
            let uid = group.uid(primary).await;
            evict(group, primary).await;
            group.ready_pod(primary, Some(&uid)).await;
            return;
        }
    };
    let ops = wait_ops(t, &name, "Successful", CHANGE_TIMEOUT).await;
    let new_endpoint = [Change::Rotate, Change::ChangeIssuer].contains(&change);
    assert_handed_over(&ops, primary, new_endpoint);
}

/// A request that restarted a group's `primary` handed its role over first; one that gave the
/// group a new endpoint certificate (`new_endpoint`) had every replica trust it before any
/// presented it, and retired the old one after.
pub fn assert_handed_over(ops: &MssqlServerOpsRequest, primary: &str, new_endpoint: bool) {
    let name = ops.name_any();
    let conditions = ops.status.as_ref().map(|s| s.conditions.as_slice());
    let conditions = conditions.unwrap_or_default();
    let done = |type_: &str| conditions.iter().any(|c| c.type_ == type_ && c.is_true());
    assert!(
        done(&format!("SwitchoverPrimary--{primary}"))
            && done(&format!("CheckPrimarySwitched--{primary}")),
        "{name}: the primary {primary} restarted without a switchover: {:#?}",
        summary(conditions)
    );
    assert!(
        !new_endpoint || (done("EndpointCertificateTrusted") && done("EndpointCertificateRetired")),
        "{name}: the endpoint certificate changed without a trust overlap: {:#?}",
        summary(conditions)
    );
}

/// Creates a Restart request of `db`; returns its name.
async fn restart_request(t: &Setup, db: &str) -> String {
    // Any request example will do: its spec is replaced.
    create_ops(t, "msops-rotate", |ops| {
        ops["metadata"]["name"] = json!("restart");
        ops["spec"] = json!({"type": "Restart", "databaseRef": {"name": db}, "restart": {}});
        prepare(ops);
    })
    .await
}

/// A request's timeout long enough for pods that take SQL Server's time to start, and a name of
/// its own: a change made again (the benchmark's next round) is another request.
fn prepare(ops: &mut Value) {
    static MADE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    let made = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = ops["metadata"]["name"]
        .as_str()
        .unwrap_or("change")
        .to_owned();
    ops["metadata"]["name"] = json!(format!("{name}-{made}"));
    ops["spec"]["timeout"] = json!("10m");
}

/// Evicts `pod` as a node drain does (through its disruption budget), retrying while the budget
/// says not now.
async fn evict(group: &Group, pod: &str) {
    let pods = group.t.api::<Pod>();
    eventually(&format!("{pod} to be evicted"), CHANGE_TIMEOUT, || async {
        pods.evict(pod, &EvictParams::default())
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await;
}

/// KubeDB's standalone TLS guide (`mssql-standalone-tls`) on the node, its double taking SQL
/// Server's time to start: what a restart costs clients when there is no secondary to hand over
/// to.
pub struct Standalone<'a> {
    t: &'a Setup,
    password: String,
}

const STANDALONE: &str = "mssql-standalone-tls";
const STANDALONE_WRITES: &str = "[writes].[dbo].[writes]";

impl<'a> Standalone<'a> {
    /// Creates it in `t`'s namespace (whose operator serves it), Ready, with a table to write.
    pub async fn create(t: &'a Setup) -> Self {
        let _: MssqlServer = t
            .create_example(STANDALONE, |db| on_the_node(db, DEFAULT_STARTUP_DELAY))
            .await;
        t.wait_phase(STANDALONE, "Ready", READY_TIMEOUT).await;
        let password = t
            .secret_text(&format!("{STANDALONE}-auth"), "password")
            .await;
        let service = service_address(&t.api(), STANDALONE).await;
        // kube-proxy routes the Service a moment after its endpoint is ready.
        let admin = eventually(
            "a login through the standalone's Service",
            Duration::from_secs(30),
            || connect(service, &password),
        )
        .await;
        let mut admin = Some(admin);
        for sql in [
            "CREATE DATABASE [writes]".to_owned(),
            format!("CREATE TABLE {STANDALONE_WRITES} (id BIGINT NOT NULL PRIMARY KEY)"),
        ] {
            run(&mut admin, &sql).await.unwrap();
        }
        Self { t, password }
    }

    /// A Restart request with the writer running through the database's Service; checks that
    /// every acknowledged write is on the server after it.
    pub async fn restart(&self) -> Seen {
        let service = service_address(&self.t.api(), STANDALONE).await;
        let traffic = Traffic::write(service, &self.password, STANDALONE_WRITES);
        tokio::time::sleep(QUIET).await;
        let began = Instant::now();
        let name = restart_request(self.t, STANDALONE).await;
        wait_ops(self.t, &name, "Successful", CHANGE_TIMEOUT).await;
        let took = began.elapsed();
        tokio::time::sleep(QUIET).await;
        let (written, _) = traffic.finish().await;
        let pod = format!("{STANDALONE}-0");
        let acknowledged: Vec<u64> = written.acknowledged.iter().map(|a| a.id).collect();
        eventually(
            "every acknowledged write on the server",
            Duration::from_secs(30),
            || async {
                let addr = self.t.sql_addr(&pod).await?;
                let held = ids_in(addr, &self.password, STANDALONE_WRITES).await?;
                let missing = acknowledged.iter().filter(|id| !held.contains(id)).count();
                (missing == 0)
                    .then_some(())
                    .ok_or(format!("{missing} acknowledged writes missing"))
            },
        )
        .await;
        Seen::of(STANDALONE_RESTART, took, &written, (pod.clone(), pod))
    }

    /// Deletes it, waiting until it is gone.
    pub async fn delete(self) {
        let api = self.t.api::<MssqlServer>();
        api.delete(STANDALONE, &DeleteParams::default())
            .await
            .unwrap();
        self.t.wait_gone::<MssqlServer>(STANDALONE).await;
    }
}

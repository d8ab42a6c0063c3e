//! Two operator processes on one Lease: only the leader reconciles; when it is killed in the
//! middle of a ReconfigureTLS rotation (held at its first eviction by the PodDisruptionBudget),
//! the standby takes the Lease within its duration and finishes the request. Both are watched
//! through their `/metrics`, `/healthz` and `/readyz`.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use mssql_api::MssqlServerOpsRequest;
use mssql_e2e::Scratch;
use mssql_e2e::cluster::{eventually, wait_ready_replicas};
use mssql_e2e::fixture::{SHORT, Setup, create_ops, wait_ops};
use mssql_e2e::operator::Operator;
use mssql_e2e::scrape::{free_port, get, value};

const AG: &str = "mssql-ag-cluster";
/// The operator's Lease duration (`mssql_operator::leader::LEASE_DURATION_SECONDS`).
const LEASE: Duration = Duration::from_secs(mssql_operator::leader::LEASE_DURATION_SECONDS);

/// One replica of the operator: a process with its own identity and metrics port.
struct Replica {
    _process: Operator,
    port: u16,
    _log: Scratch,
}

impl Replica {
    fn start(identity: &str, t: &Setup) -> Self {
        let log_path = Scratch::new(&format!("{}-{identity}.log", t.ns.name));
        let log = std::fs::File::create(log_path.path()).unwrap();
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let process = Operator::start(
            &["run", "--listen", &listen, "--lease-namespace", &t.ns.name],
            &[("POD_NAME", identity)],
            &log,
        );
        Self {
            _process: process,
            port,
            _log: log_path,
        }
    }

    fn metrics(&self) -> Result<String, String> {
        match get(self.port, "/metrics")? {
            (200, body) => Ok(body),
            (code, body) => Err(format!("/metrics answered {code}: {body}")),
        }
    }

    /// The value of `series` once the process serves it (0 when the series is not there yet).
    async fn metric(&self, series: &str) -> f64 {
        let text = eventually("the metrics endpoint", SHORT, || async { self.metrics() }).await;
        value(&text, series).unwrap_or(0.0)
    }

    async fn wait_metric(&self, series: &str, expected: f64, timeout: Duration) {
        eventually(&format!("{series} = {expected}"), timeout, || async {
            let text = self.metrics()?;
            match value(&text, series) {
                Some(v) if v == expected => Ok(()),
                other => Err(format!("{series} is {other:?}")),
            }
        })
        .await;
    }
}

/// Pod 2 is the primary, so it is restarted last; a coordinator would set these labels.
async fn label_roles(t: &Setup) {
    for (i, role) in ["secondary", "secondary", "primary"].iter().enumerate() {
        t.set_role(&format!("{AG}-{i}"), role).await;
    }
    t.wait_phase(AG, "Ready", SHORT).await;
}

/// Marks pod `name` Ready or not, as its kubelet would (kwok leaves a running pod's status
/// alone). The database's PodDisruptionBudget (one pod may be unavailable) then allows no
/// eviction while it is not Ready. (Editing the budget itself would not do: the operator puts
/// back an edit of an object it owns.)
async fn set_ready(t: &Setup, name: &str, ready: bool) {
    let status = if ready { "True" } else { "False" };
    let patch = serde_json::json!({"status": {"conditions": [
        {"type": "Ready", "status": status},
        {"type": "ContainersReady", "status": status},
    ]}});
    t.api::<Pod>()
        .patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .expect("the pod's status is patched");
}

fn conditions(ops: &MssqlServerOpsRequest) -> Vec<String> {
    ops.status
        .iter()
        .flat_map(|s| s.conditions.iter().map(|c| c.type_.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_standby_takes_over_a_rotation_when_the_leader_dies() {
    let t = Setup::without_operator("leader").await;

    let first = Replica::start("replica-a", &t);
    first.wait_metric("mssql_operator_leader", 1.0, SHORT).await;
    let second = Replica::start("replica-b", &t);
    eventually("the standby to be ready", SHORT, || async {
        match get(second.port, "/readyz")? {
            (200, _) => Ok(()),
            (code, body) => Err(format!("/readyz answered {code}: {body}")),
        }
    })
    .await;
    assert_eq!(get(second.port, "/healthz"), Ok((200, "ok\n".to_owned())));
    assert_eq!(second.metric("mssql_operator_leader").await, 0.0);

    // Only the leader provisions.
    t.create_example(AG, |_| {}).await;
    wait_ready_replicas(&t.client, &t.ns.name, AG, 3).await;
    label_roles(&t).await;
    let reconciled = "mssql_operator_reconciliations_total{controller=\"provisioner\"}";
    assert!(first.metric(reconciled).await > 0.0);
    assert_eq!(
        second.metric(reconciled).await,
        0.0,
        "a standby does not reconcile"
    );
    let server_expiry = format!(
        "mssql_operator_certificate_expiry_timestamp_seconds{{namespace=\"{}\",database=\"{AG}\",pod=\"{AG}-0\",alias=\"server\"}}",
        t.ns.name
    );
    let issued = mssql_certs::inspect::parse_certificate(
        t.secret_text(&format!("{AG}-server-cert"), "tls.crt")
            .await
            .as_bytes(),
    )
    .unwrap();
    assert_eq!(first.metric(&server_expiry).await, issued.not_after as f64);

    // A rotation, held at its first eviction: another pod of the group is down, so the
    // PodDisruptionBudget allows no disruption. The leader dies there.
    set_ready(&t, &format!("{AG}-1"), false).await;
    let name = create_ops(&t, "msops-ag-rotate", |_| {}).await;
    let requests = t.api::<MssqlServerOpsRequest>();
    let refused = eventually("a refused eviction", Duration::from_secs(120), || async {
        let ops = requests.get(&name).await.map_err(|e| e.to_string())?;
        let refused = ops
            .status
            .iter()
            .flat_map(|s| &s.conditions)
            .any(|c| c.type_ == format!("EvictPod--{AG}-0") && c.status == "False");
        if refused {
            Ok(conditions(&ops))
        } else {
            Err(format!("{:?}", conditions(&ops)))
        }
    })
    .await;
    first
        .wait_metric("mssql_operator_paused_databases", 1.0, SHORT)
        .await;
    drop(first);
    let killed = Instant::now();
    second
        .wait_metric(
            "mssql_operator_leader",
            1.0,
            LEASE + Duration::from_secs(10),
        )
        .await;
    let takeover = killed.elapsed();
    eprintln!("the standby leads {takeover:?} after the leader was killed");
    assert!(
        takeover <= LEASE + Duration::from_secs(3),
        "the standby took {takeover:?} to lead; the Lease lasts {LEASE:?}"
    );
    let holder = mssql_e2e::kubectl_ok(
        &[
            "get",
            "lease",
            "mssql-operator",
            "-n",
            &t.ns.name,
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ],
        None,
    );
    assert_eq!(holder, "replica-b");

    // The pod is back, so the budget allows one pod again; the new leader restarts all three.
    // On the fake nodes a restarted pod is back at once, and the disruption controller may hold
    // the budget for up to two minutes.
    set_ready(&t, &format!("{AG}-1"), true).await;
    let done = wait_ops(&t, &name, "Successful", Duration::from_secs(300)).await;
    let after = conditions(&done);
    for i in 0..3 {
        assert!(
            after.contains(&format!("CheckPodRunning--{AG}-{i}")),
            "the new leader restarted pod {i}: {refused:?} then {after:?}"
        );
    }
    // The restarted pods lost their role labels; a coordinator would set them again.
    label_roles(&t).await;
    let db = t.wait_phase(AG, "Ready", SHORT).await;
    assert!(
        mssql_api::condition::find(&db.status.unwrap().conditions, "Paused").is_none(),
        "the database is resumed"
    );

    // What the new leader exposes about it.
    let successful =
        "mssql_operator_ops_requests{type=\"ReconfigureTLS\",phase=\"Successful\"}".to_owned();
    second.wait_metric(&successful, 1.0, SHORT).await;
    second
        .wait_metric("mssql_operator_paused_databases", 0.0, SHORT)
        .await;
    let text = second.metrics().unwrap();
    for step in ["RestartNodes", "Successful"] {
        let series = format!(
            "mssql_operator_ops_step_duration_seconds_count{{type=\"ReconfigureTLS\",step=\"{step}\"}}"
        );
        assert_eq!(value(&text, &series), Some(1.0), "{series} in\n{text}");
    }
    assert!(
        value(
            &text,
            "mssql_operator_reconciliations_total{controller=\"ops-manager\"}"
        ) > Some(0.0)
    );
    let rotated = mssql_certs::inspect::parse_certificate(
        t.secret_text(&format!("{AG}-server-cert"), "tls.crt")
            .await
            .as_bytes(),
    )
    .unwrap();
    assert_ne!(rotated.serial, issued.serial, "the certificate was rotated");
    second
        .wait_metric(&server_expiry, rotated.not_after as f64, SHORT)
        .await;
}

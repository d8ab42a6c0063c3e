//! Renewed certificates rolled out by the operator itself, on kwok's pods with real cert-manager:
//! a closed maintenance window makes the rollout wait, the safety margin forces it, `Manual`
//! only warns, an operator killed as it creates the request still yields exactly one, and a
//! user's ReconfigureTLS already open goes first (and leaves nothing to restart). The operator
//! runs as a process, started with the renewal flags, so it can be killed.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::{Timestamp, ToSpan};
use kube::ResourceExt;
use mssql_api::annotations::{
    MAINTENANCE_WINDOW as WINDOW, RENEWAL_NEW_SERIALS, RENEWAL_OLD_SERIALS, RENEWAL_REASON,
    RENEWAL_ROLLOUT, RENEWAL_SAFETY_MARGIN as MARGIN,
};
use mssql_api::condition;
use mssql_api::phase::CERTIFICATE_ROLLOUT_PENDING as CONDITION;
use mssql_api::{MssqlServer, MssqlServerOpsRequest};
use mssql_e2e::Scratch;
use mssql_e2e::cluster::eventually;
use mssql_e2e::fixture::{
    PodHold, READY_TIMEOUT, Setup, create_ops, evicted, summary, wait_ops, wait_step,
};
use mssql_e2e::operator::Operator;
use mssql_e2e::renewal::{
    renew_server_certificate, renewal_requests, serial, wait_renewal_request,
};
use mssql_e2e::scrape::{self, free_port};
use serde_json::{Value, json};

const DB: &str = "mssql-standalone-tls";
const POD: &str = "mssql-standalone-tls-0";
const SECRET: &str = "mssql-standalone-tls-server-cert";
// On fake nodes a restart can wait for a PodDisruptionBudget (docs/testing.md).
const OPS_TIMEOUT: Duration = Duration::from_secs(300);

struct Running {
    _operator: Operator,
    port: u16,
}

fn start_operator(t: &Setup, log: &std::fs::File) -> Running {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let operator = Operator::start(
        &[
            "run",
            "--listen",
            &listen,
            "--lease-namespace",
            &t.ns.name,
            // Each test's operator leads on its own Lease: it keeps to its test's namespace.
            "--watch-namespaces",
            &t.ns.name,
            "--renewal-safety-margin",
            "24h",
        ],
        // One identity, as a restarted container has: the Lease is taken back at once.
        &[("POD_NAME", "renewal-test-operator")],
        log,
    );
    Running {
        _operator: operator,
        port,
    }
}

/// A window on a day three days from now: closed now, and the next one opens in two to three days.
fn closed_window() -> String {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let day = Timestamp::now()
        .checked_add(72.hours())
        .unwrap()
        .to_zoned(k8s_openapi::jiff::tz::TimeZone::UTC)
        .weekday()
        .to_monday_zero_offset();
    format!("{} 00:00-01:00 UTC", DAYS[day as usize])
}

async fn annotate(t: &Setup, annotations: Value) {
    t.patch_database(DB, &json!({"metadata": {"annotations": annotations}}))
        .await;
}

async fn pod_uid(t: &Setup) -> String {
    t.api::<Pod>().get(POD).await.unwrap().uid().unwrap()
}

/// Waits for the database's rollout condition with `reason`; returns its message.
async fn wait_rollout(t: &Setup, reason: &str) -> String {
    eventually(
        &format!("{DB}'s {CONDITION} to be {reason}"),
        Duration::from_secs(60),
        || async {
            let db = t.api::<MssqlServer>().get(DB).await.unwrap();
            let conditions = db.status.unwrap_or_default().conditions;
            match condition::find(&conditions, CONDITION) {
                Some(c) if c.is_true() && c.reason.as_deref() == Some(reason) => {
                    Ok(c.message.clone().unwrap_or_default())
                }
                _ => Err(format!("{:?}", summary(&conditions))),
            }
        },
    )
    .await
}

/// Waits until the database's pod runs the certificate its secret holds: no rollout condition,
/// and the status lists the secret's serial for the pod.
async fn wait_current(t: &Setup) {
    let want = serial(t, SECRET).await;
    eventually(
        &format!("{POD} to run serial {want}"),
        Duration::from_secs(60),
        || async {
            let db = t.api::<MssqlServer>().get(DB).await.unwrap();
            let status = db.status.unwrap_or_default();
            let runs: Vec<_> = status
                .certificates
                .iter()
                .filter(|c| c.alias == "server")
                .map(|c| (c.serial.clone(), c.outdated))
                .collect();
            let pending = condition::find(&status.conditions, CONDITION).is_some();
            if runs == [(want.clone(), false)] && !pending {
                Ok(())
            } else {
                Err(format!("runs {runs:?}, rollout pending {pending}"))
            }
        },
    )
    .await;
}

async fn metric(running: &Running, series: &str) -> Option<f64> {
    let (_, text) = scrape::get(running.port, "/metrics").expect("the operator serves /metrics");
    scrape::value(&text, series)
}

/// The (type, message) of the database's Events with `reason`.
async fn events(t: &Setup, reason: &str) -> Vec<(String, String)> {
    let all = t.typed_events_of(DB).await;
    all.into_iter()
        .filter(|(_, r, _)| r == reason)
        .map(|(type_, _, message)| (type_, message))
        .collect()
}

async fn renewal_names(t: &Setup) -> Vec<String> {
    let requests = renewal_requests(t, DB).await;
    requests.iter().map(ResourceExt::name_any).collect()
}

/// The evictions a request recorded, by pod.
fn evictions(ops: &MssqlServerOpsRequest) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for pod in evicted(ops) {
        *counts.entry(pod).or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread")]
async fn renewed_certificates_are_rolled_out_by_policy() {
    let t = Setup::without_operator("renewal").await;
    let log_path = Scratch::new(&format!("{}-operator.log", t.ns.name));
    let log = std::fs::File::create(log_path.path()).unwrap();
    let mut operator = start_operator(&t, &log);
    let window = closed_window();
    t.create_example(DB, |db| {
        db["metadata"]["annotations"] = json!({ WINDOW: window });
    })
    .await;
    t.wait_phase(DB, "Ready", READY_TIMEOUT).await;
    let series = |name: &str, extra: &str| {
        format!(
            "mssql_operator_{name}{{namespace=\"{}\",database=\"{DB}\"{extra}}}",
            t.ns.name
        )
    };

    // 1. A renewal outside the window: it waits, says until when, restarts nothing.
    let uid = pod_uid(&t).await;
    let renewed = renew_server_certificate(&t, DB).await;
    let message = wait_rollout(&t, "WaitingForMaintenanceWindow").await;
    assert!(
        message.contains(&format!("(its secret now holds {renewed}) on {POD}"))
            && message.contains(&format!(
                "in the maintenance window {window}, which opens at"
            )),
        "{message}"
    );
    assert!(renewal_requests(&t, DB).await.is_empty());
    assert_eq!(
        pod_uid(&t).await,
        uid,
        "nothing restarted outside the window"
    );
    assert_eq!(
        metric(
            &operator,
            &series(
                "certificate_rollout_pending",
                ",reason=\"WaitingForMaintenanceWindow\""
            )
        )
        .await,
        Some(1.0)
    );
    assert_eq!(
        metric(&operator, &series("pods_outdated_certificates", "")).await,
        Some(1.0)
    );
    let left = metric(&operator, &series("served_certificate_expiry_seconds", ""))
        .await
        .expect("the seconds until the served certificate expires");
    assert!(left > 80.0 * 86400.0, "a fresh 90-day certificate: {left}");
    assert_eq!(
        events(&t, "RenewalRolloutScheduled").await.len(),
        1,
        "one Event for the schedule"
    );

    // 2. A safety margin longer than the certificate's life forces the rollout now.
    annotate(&t, json!({ MARGIN: "2400h" })).await;
    let request = wait_renewal_request(&t, DB, &[], Duration::from_secs(60)).await;
    let name = request.name_any();
    let annotations = request.annotations();
    assert!(
        annotations[RENEWAL_REASON].contains("plus the safety margin"),
        "{annotations:?}"
    );
    let new: BTreeMap<String, String> =
        serde_json::from_str(&annotations[RENEWAL_NEW_SERIALS]).unwrap();
    assert_eq!(new["server"], renewed);
    let old: BTreeMap<String, BTreeMap<String, String>> =
        serde_json::from_str(&annotations[RENEWAL_OLD_SERIALS]).unwrap();
    assert_ne!(old[POD]["server"], renewed);
    assert_eq!(request.spec.type_, "Restart");
    assert_eq!(
        request.owner_references()[0].name,
        DB,
        "owned by the database"
    );
    let created = events(&t, "RenewalRollout").await;
    assert!(
        created.iter().any(|(type_, note)| type_ == "Normal"
            && note.contains(&name)
            && note.contains("safety margin")),
        "{created:?}"
    );
    let done = wait_ops(&t, &name, "Successful", OPS_TIMEOUT).await;
    assert_eq!(evictions(&done), BTreeMap::from([(POD.to_owned(), 1)]));
    assert_ne!(pod_uid(&t).await, uid);
    wait_current(&t).await;
    assert_eq!(
        metric(&operator, &series("pods_outdated_certificates", "")).await,
        Some(0.0)
    );

    // 3. Manual: a Warning, the condition and the metric; no request, no restart.
    annotate(
        &t,
        json!({ RENEWAL_ROLLOUT: "Manual", MARGIN: null, WINDOW: null }),
    )
    .await;
    let uid = pod_uid(&t).await;
    let renewed = renew_server_certificate(&t, DB).await;
    let message = wait_rollout(&t, "ManualRollout").await;
    assert!(
        message.contains(&renewed) && message.contains("the rollout is Manual"),
        "{message}"
    );
    let db = t.api::<MssqlServer>().get(DB).await.unwrap();
    let conditions = db.status.unwrap().conditions;
    let manual = condition::find(&conditions, CONDITION).unwrap();
    assert_eq!(manual.severity.as_deref(), Some("Warning"));
    let warnings = events(&t, "RenewalRolloutNeeded").await;
    assert!(
        warnings.iter().any(|(type_, _)| type_ == "Warning"),
        "{warnings:?}"
    );
    assert_eq!(
        metric(
            &operator,
            &series("certificate_rollout_pending", ",reason=\"ManualRollout\"")
        )
        .await,
        Some(1.0)
    );
    assert_eq!(renewal_requests(&t, DB).await.len(), 1);
    assert_eq!(pod_uid(&t).await, uid);

    // 4. Back to Auto with the operator stopped. It is killed soon after it starts, twice (the
    // kill may fall between its decision and the request's creation, or after it), then the
    // moment its request appears.
    drop(operator);
    annotate(&t, json!({ RENEWAL_ROLLOUT: "Auto" })).await;
    for after in [Duration::from_millis(300), Duration::from_millis(700)] {
        let started = start_operator(&t, &log);
        tokio::time::sleep(after).await;
        drop(started);
    }
    let started = start_operator(&t, &log);
    let request =
        wait_renewal_request(&t, DB, std::slice::from_ref(&name), Duration::from_secs(60)).await;
    drop(started);
    operator = start_operator(&t, &log);
    let second = request.name_any();
    let done = wait_ops(&t, &second, "Successful", OPS_TIMEOUT).await;
    assert_eq!(evictions(&done), BTreeMap::from([(POD.to_owned(), 1)]));
    wait_current(&t).await;
    let names = renewal_names(&t).await;
    assert_eq!(
        names,
        [name.clone(), second.clone()],
        "exactly one request per renewal"
    );

    // 5. A renewal while the user's ReconfigureTLS is open: it goes first; its rotation leaves
    // the pod current, so no renewal request follows and the pod is restarted once.
    drop(operator);
    let uid = pod_uid(&t).await;
    renew_server_certificate(&t, DB).await;
    let rotate = create_ops(&t, "msops-rotate", |ops| {
        ops["metadata"]["name"] = json!("user-rotate");
        ops["spec"]["databaseRef"]["name"] = json!(DB);
    })
    .await;
    let operator = start_operator(&t, &log);
    let done = wait_ops(&t, &rotate, "Successful", OPS_TIMEOUT).await;
    assert_eq!(evictions(&done), BTreeMap::from([(POD.to_owned(), 1)]));
    assert_ne!(pod_uid(&t).await, uid);
    wait_current(&t).await;
    let names = renewal_names(&t).await;
    assert_eq!(
        names,
        [name, second],
        "the rotation left nothing to roll out"
    );
    drop(operator);
}

/// A request ends true: the server certificate's Secret deleted (and re-issued by cert-manager)
/// while a rotation runs leaves the pod started for a certificate the Secret no longer holds, so
/// the request fails saying so, and the operator's rollout then puts the pod on the new one.
/// A finalizer holds the evicted pod Terminating across the deletion, so the request is mid-way
/// (its StatefulSet already on the rotated certificate) whatever the operator's speed.
#[tokio::test(flavor = "multi_thread")]
async fn a_secret_replaced_mid_request_fails_it_truthfully_and_the_rollout_finishes() {
    let t = Setup::without_operator("stale-secret").await;
    let log_path = Scratch::new(&format!("{}-operator.log", t.ns.name));
    let log = std::fs::File::create(log_path.path()).unwrap();
    let operator = start_operator(&t, &log);
    t.create_example(DB, |_| {}).await;
    t.wait_phase(DB, "Ready", READY_TIMEOUT).await;
    let before = serial(&t, SECRET).await;
    let mut hold = PodHold::on(&t.ns.name, POD);

    let name = create_ops(&t, "msops-rotate", |ops| {
        ops["spec"]["databaseRef"]["name"] = json!(DB);
    })
    .await;
    wait_step(&t, &name, &format!("EvictPod--{POD}"), OPS_TIMEOUT).await;
    let rotated = serial(&t, SECRET).await;
    assert_ne!(rotated, before, "the rotation re-issued the certificate");
    let secrets = t.api::<k8s_openapi::api::core::v1::Secret>();
    secrets.delete(SECRET, &Default::default()).await.unwrap();
    let reissued = eventually(
        "cert-manager to re-issue the deleted secret",
        Duration::from_secs(60),
        || async {
            match secrets.get_opt(SECRET).await.map_err(|e| e.to_string())? {
                Some(_) => {
                    let now = serial(&t, SECRET).await;
                    if now == rotated {
                        Err(format!("still {now}"))
                    } else {
                        Ok(now)
                    }
                }
                None => Err("not re-created yet".to_owned()),
            }
        },
    )
    .await;
    let held = t.api::<MssqlServerOpsRequest>().get(&name).await.unwrap();
    assert_eq!(
        held.phase(),
        "Progressing",
        "the request waits for the held pod"
    );
    hold.release();

    let failed = wait_ops(&t, &name, "Failed", OPS_TIMEOUT).await;
    let conditions = failed.status.unwrap().conditions;
    let failure = condition::find(&conditions, "Failed").expect("a Failed condition");
    assert_eq!(
        failure.reason.as_deref(),
        Some("CheckPodsCurrent"),
        "{:?}",
        summary(&conditions)
    );
    let message = failure.message.clone().unwrap_or_default();
    assert!(
        message.contains(&format!(
            "pod {POD} was started for server certificate serial {rotated}, its Secret holds {reissued}"
        )),
        "{message}"
    );

    // The operator rolls the pod onto the re-issued certificate by itself.
    wait_current(&t).await;
    let renewals = renewal_requests(&t, DB).await;
    assert_eq!(
        renewals.len(),
        1,
        "one renewal request: {:?}",
        renewal_names(&t).await
    );
    wait_ops(&t, &renewals[0].name_any(), "Successful", OPS_TIMEOUT).await;
    drop(operator);
}

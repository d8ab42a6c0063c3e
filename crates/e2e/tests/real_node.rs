//! Real containers on the real node `real-1` (`hack/cluster/up --real-node`): the operator
//! installed by its Helm chart from an image built here, running in-cluster with its
//! ServiceAccount and its Lease; KubeDB's TLS guide on a standalone server and on a 3-replica
//! availability group whose pods run the SQL Server test double (crates/sqlserver-double), which
//! reads `mssql.conf` and the TLS files as SQL Server does and speaks TDS.
//!
//! After every request, in each pod: the init container put the TLS files in the memory volume,
//! mode 0400, owned by 10001; another uid cannot read the key; the server serves exactly the
//! certificate of its Secret (the operator's probe, in TDS 7.x and TDS 8.0 strict), over TLS 1.2,
//! and forces encryption; its data file survived. Through the database's Service an independent
//! client (tiberius, as `sqlcmd`) logs in trusting only the CA and checking the Service's name,
//! and OpenSSL's TLS 1.1 handshake is refused. Each request records the operator's own check of
//! each restarted pod. A pod that keeps serving the old certificate fails its request, before any
//! later pod is restarted, with the database resumed. The operator's pod is evicted during a
//! rotation; the audit log shows every request of the operator came from its pods. Renewals, made
//! as `cmctl renew` makes them or by cert-manager itself on a 1-hour certificate, are rolled out by
//! the operator's own Restart request.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, EvictParams, ListParams};
use kube::{Api, ResourceExt};
use mssql_api::annotations::RENEWAL_ROLLOUT as ROLLOUT;
use mssql_api::condition::find;
use mssql_api::labels::ROLE;
use mssql_api::phase::CERTIFICATE_ROLLOUT_PENDING;
use mssql_api::phase::PAUSED;
use mssql_api::{MssqlServer, MssqlServerOpsRequest};
use mssql_certs::inspect::{parse_certificate, parse_der};
use mssql_e2e::audit::audited;
use mssql_e2e::cluster::{ca_issuer, eventually, wait_ready_replicas};
use mssql_e2e::fixture::{READY_TIMEOUT, SHORT, Setup, create_ops, summary};
use mssql_e2e::real_node::{
    DOUBLE_VERSION, NODE, QUICK_START, Release, assert_node_ready, double_version, exec, exec_ok,
    load_images, on_the_node, operator_values, probe_counts, wait_leader,
};
use mssql_e2e::renewal::{
    renew_server_certificate, renewal_requests, serial, wait_new_serial, wait_renewal_request,
};
use mssql_e2e::tds::{encryption_answer, leaf_der, login, served};
use mssql_e2e::{example_in, kubectl, kubectl_ok};
use mssql_sqlserver_double::datafile::{self, DataFile};
use mssql_sqlserver_double::faults;
use mssql_sqlserver_double::openssl;
use mssql_tds::prelogin::Encryption;
use mssql_tds::probe::Mode;
use rustls::ProtocolVersion;
use serde_json::{Value, json};

const TLS_DIR: &str = "/var/opt/mssql/tls";
const DATA_DIR: &str = "/var/opt/mssql/data";
const OPS_TIMEOUT: Duration = Duration::from_secs(300);

/// One database of KubeDB's TLS guide, and the names of its requests' examples.
struct Db {
    name: &'static str,
    /// By ordinal.
    pods: &'static [&'static str],
    /// An availability group: its coordinators elect the primary and label the pods.
    group: bool,
    /// The guide's request examples: add TLS, rotate, change issuer, remove.
    requests: [&'static str; 4],
}

const GROUP: Db = Db {
    name: "mssql-ag-cluster",
    pods: &[
        "mssql-ag-cluster-0",
        "mssql-ag-cluster-1",
        "mssql-ag-cluster-2",
    ],
    group: true,
    requests: [
        "msops-ag-add-tls",
        "msops-ag-rotate",
        "msops-ag-change-issuer",
        "msops-ag-remove",
    ],
};

/// Databases whose server certificate lives one hour and is renewed after two minutes.
const SHORT_LIVED: Db = Db {
    name: "ms-short-lived",
    pods: &["ms-short-lived-0"],
    group: false,
    requests: STANDALONE.requests,
};

const SHORT_LIVED_GROUP: Db = Db {
    name: "ag-short-lived",
    pods: &["ag-short-lived-0", "ag-short-lived-1", "ag-short-lived-2"],
    group: true,
    requests: GROUP.requests,
};

const STANDALONE: Db = Db {
    name: "ms-standalone",
    pods: &["ms-standalone-0"],
    group: false,
    requests: [
        "msops-add-tls",
        "msops-rotate",
        "msops-change-issuer",
        "msops-remove",
    ],
};

/// Deletes a cluster-scoped test object when dropped.
struct ClusterObject(&'static str, &'static str);

impl Drop for ClusterObject {
    fn drop(&mut self) {
        let _ = mssql_e2e::kubectl(&["delete", self.0, self.1, "--ignore-not-found"], None);
    }
}

/// A guide database on the real node (`on_the_node`), with a second container of another uid
/// that mounts the TLS volume (it must not read the keys).
fn on_the_real_node(db: &mut Value, busybox: &str) {
    on_the_node(db, QUICK_START);
    let pod = &mut db["spec"]["podTemplate"]["spec"];
    pod["containers"].as_array_mut().unwrap().push(json!({
        "name": "intruder",
        "image": busybox,
        "imagePullPolicy": "Never",
        "command": ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"],
        "securityContext": {"runAsUser": 10002, "runAsGroup": 10002, "runAsNonRoot": true,
                            "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "tls", "mountPath": "/tls", "readOnly": true}],
    }));
}

/// One pod's server container, as its pod's status tells.
struct ServerStart {
    uid: String,
    started: Option<Time>,
    restarts: i32,
}

/// Each pod's server container, and the order a request restarts the pods in.
struct Starts {
    by_pod: BTreeMap<String, ServerStart>,
    /// Secondaries by ordinal, the primary last, as labelled when these were read.
    order: Vec<String>,
}

impl std::ops::Index<&str> for Starts {
    type Output = ServerStart;

    fn index(&self, pod: &str) -> &ServerStart {
        &self.by_pod[pod]
    }
}

/// Each pod's server container: its pod's uid, when it started, how often it restarted; read
/// once the database is Ready and its roles settled.
async fn pod_starts(t: &Setup, db: &Db) -> Starts {
    let order = settled_order(t, db).await;
    let pods = t
        .api::<Pod>()
        .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={}", db.name)))
        .await
        .unwrap();
    let by_pod = pods
        .items
        .iter()
        .map(|p| {
            let server = p
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|c| c.iter().find(|c| c.name == "mssql"));
            let start = ServerStart {
                uid: p.uid().unwrap(),
                started: server
                    .and_then(|c| c.state.as_ref()?.running.as_ref()?.started_at.clone()),
                restarts: server.map_or(-1, |c| c.restart_count),
            };
            (p.name_any(), start)
        })
        .collect();
    Starts { by_pod, order }
}

/// The pods in restart order once the database is Ready and, for a group, its coordinators
/// labelled exactly one pod `primary` and the others `secondary`: the secondaries by ordinal,
/// the primary last.
async fn settled_order(t: &Setup, db: &Db) -> Vec<String> {
    t.wait_phase(db.name, "Ready", READY_TIMEOUT).await;
    if !db.group {
        return db.pods.iter().map(|p| (*p).to_owned()).collect();
    }
    eventually(
        &format!("{}'s coordinators to label one primary", db.name),
        READY_TIMEOUT,
        || async {
            let mut primaries = Vec::new();
            let mut secondaries = Vec::new();
            for pod in db.pods {
                let labels = t
                    .api::<Pod>()
                    .get(pod)
                    .await
                    .map_err(|e| e.to_string())?
                    .metadata
                    .labels
                    .unwrap_or_default();
                match labels.get(ROLE).map(String::as_str) {
                    Some("primary") => primaries.push((*pod).to_owned()),
                    Some("secondary") => secondaries.push((*pod).to_owned()),
                    other => return Err(format!("{pod} is labelled {other:?}")),
                }
            }
            match primaries[..] {
                [_] => Ok(secondaries.into_iter().chain(primaries).collect()),
                _ => Err(format!("primaries {primaries:?}")),
            }
        },
    )
    .await
}

/// Waits until the request ends; returns it, whatever its phase.
async fn wait_done(t: &Setup, name: &str) -> MssqlServerOpsRequest {
    let requests: Api<MssqlServerOpsRequest> = t.api();
    eventually(&format!("{name} to end"), OPS_TIMEOUT, || async {
        let ops = requests.get(name).await.map_err(|e| e.to_string())?;
        let status = ops.status.clone().unwrap_or_default();
        match status.phase.as_deref() {
            Some("Successful" | "Failed" | "Skipped") => Ok(ops),
            phase => Err(format!("{phase:?}: {:?}", summary(&status.conditions))),
        }
    })
    .await
}

fn phase_and_conditions(ops: &MssqlServerOpsRequest) -> (String, Vec<String>) {
    let status = ops.status.clone().unwrap_or_default();
    (
        status.phase.unwrap_or_default(),
        summary(&status.conditions),
    )
}

/// Runs the request to its end; it must succeed.
async fn run_ops(t: &Setup, example: &str, edit: impl FnOnce(&mut Value)) -> MssqlServerOpsRequest {
    let name = create_ops(t, example, edit).await;
    let ops = wait_done(t, &name).await;
    let (phase, conditions) = phase_and_conditions(&ops);
    assert_eq!(phase, "Successful", "{name}: {conditions:#?}");
    ops
}

fn restart(db: &Db, name: &str) -> impl FnOnce(&mut Value) {
    let db = db.name;
    let name = name.to_owned();
    move |ops: &mut Value| {
        ops["metadata"]["name"] = json!(name);
        ops["spec"] =
            json!({"type": "Restart", "databaseRef": {"name": db}, "restart": {}, "timeout": "5m"});
    }
}

/// Every server container was replaced exactly once, in restart order (its new process started
/// after the previous pod's), none of the new ones has restarted since, and, with TLS on, the
/// operator saw each serve its certificate before it touched the next.
async fn assert_restarted_once_primary_last(
    t: &Setup,
    db: &Db,
    before: &Starts,
    ops: &MssqlServerOpsRequest,
    tls: bool,
) {
    let after = pod_starts(t, db).await;
    let order = &before.order;
    let conditions = &ops.status.as_ref().unwrap().conditions;
    let pods_of = |prefix: &str| -> Vec<String> {
        conditions
            .iter()
            .filter(|c| c.is_true())
            .filter_map(|c| c.type_.strip_prefix(prefix).map(str::to_owned))
            .collect()
    };
    assert_eq!(
        &pods_of("EvictPod--"),
        order,
        "each pod evicted once, primary last"
    );
    let verified = pods_of("CheckServedCertificate--");
    match tls {
        true => assert_eq!(
            &verified, order,
            "the operator checked what each pod serves"
        ),
        false => assert!(
            verified.is_empty(),
            "nothing to check without TLS: {verified:?}"
        ),
    }
    let mut previous = None;
    for pod in order {
        let pod = pod.as_str();
        assert_ne!(after[pod].uid, before[pod].uid, "{pod} was not replaced");
        let started = after[pod].started.clone();
        assert!(
            started.is_some() && started > previous,
            "{pod}'s server started at {started:?}, not after {previous:?}"
        );
        previous = started;
        assert_eq!(after[pod].restarts, 0, "{pod}'s server started once");
    }
}

/// The double's data file: its database id, and how often the server started on it.
fn data_file(ns: &str, pod: &str) -> (String, u64) {
    let path = format!("{DATA_DIR}/{}", datafile::FILE_NAME);
    let text = exec_ok(ns, pod, "mssql", &["cat", &path]);
    let data = DataFile::parse(&text).unwrap_or_else(|e| panic!("{pod}: {path}: {e}:\n{text}"));
    (data.database_id, data.starts)
}

async fn pod_addr(t: &Setup, pod: &str) -> SocketAddr {
    let ip = t
        .api::<Pod>()
        .get(pod)
        .await
        .unwrap()
        .status
        .unwrap()
        .pod_ip
        .unwrap();
    SocketAddr::new(ip.parse().unwrap(), 1433)
}

/// What the Secret holds for the server certificate.
struct Issued {
    crt: String,
    ca: String,
}

async fn issued(t: &Setup, db: &Db) -> Issued {
    let secret = format!("{}-server-cert", db.name);
    Issued {
        crt: t.secret_text(&secret, "tls.crt").await,
        ca: t.secret_text(&secret, "ca.crt").await,
    }
}

/// Each pod runs on the node as 10001 with its data file (`ids`: recorded at creation) and, with
/// TLS (`issued`), the TLS files as specified, serving exactly the Secret's certificate over TLS
/// 1.2 and forcing encryption; without, serving SQL Server's self-signed fallback, not forcing.
async fn assert_pods_serve(
    t: &Setup,
    db: &Db,
    issued: Option<&Issued>,
    ids: &BTreeMap<String, String>,
) {
    let ns = &t.ns.name;
    for pod in db.pods {
        let spec = t.api::<Pod>().get(pod).await.unwrap().spec.unwrap();
        assert_eq!(
            spec.node_name.as_deref(),
            Some(NODE),
            "{pod} runs on {NODE}"
        );
        assert_eq!(exec_ok(ns, pod, "mssql", &["id", "-u"]).trim(), "10001");
        assert_eq!(data_file(ns, pod).0, ids[*pod], "{pod}'s data survived");
        let addr = pod_addr(t, pod).await;
        let conf = exec_ok(ns, pod, "mssql", &["cat", "/var/opt/mssql/mssql.conf"]);
        let Some(issued) = issued else {
            assert!(!conf.contains("tlscert"), "{pod}: TLS is off:\n{conf}");
            assert_eq!(
                encryption_answer(addr, Encryption::Off),
                Encryption::Off,
                "{pod}"
            );
            let seen = served(addr, db.name, Mode::Prelogin);
            let fallback = parse_der(&seen.chain[0]).unwrap();
            assert_eq!(fallback.subject, "CN=SSL_Self_Signed_Fallback", "{pod}");
            continue;
        };
        assert!(
            conf.contains(&format!("tlscert = {TLS_DIR}/server.crt"))
                && conf.contains("tlsprotocols = 1.2"),
            "{pod}: mssql.conf points at the copied files:\n{conf}"
        );
        assert_tls_files(ns, pod);
        let expected = leaf_der(&issued.crt);
        for mode in [Mode::Prelogin, Mode::Strict] {
            let seen = served(addr, db.name, mode);
            assert_eq!(
                seen.chain[0].as_ref(),
                expected,
                "{pod} ({mode:?}) serves its Secret's certificate"
            );
            assert_eq!(
                seen.version,
                ProtocolVersion::TLSv1_2,
                "{pod}: tlsprotocols = 1.2"
            );
        }
        assert_eq!(
            encryption_answer(addr, Encryption::Off),
            Encryption::Required,
            "{pod}: forceencryption = 1"
        );
    }
}

/// The init container copied every file into the memory volume, 0400, owned by SQL Server's uid;
/// another uid, even in the pod's fsGroup, cannot read a key.
fn assert_tls_files(ns: &str, pod: &str) {
    let files = [
        "ca.crt",
        "server.crt",
        "server.key",
        "client.crt",
        "client.key",
    ];
    let paths: Vec<String> = files.iter().map(|f| format!("{TLS_DIR}/{f}")).collect();
    let mut stat = vec!["stat", "-c", "%a %u %g %n"];
    stat.extend(paths.iter().map(String::as_str));
    let modes = exec_ok(ns, pod, "mssql", &stat);
    for path in &paths {
        assert!(
            modes
                .lines()
                .any(|l| l == format!("400 10001 10001 {path}")),
            "{pod}: {path} is 0400 10001:10001:\n{modes}"
        );
    }
    let mounts = exec_ok(ns, pod, "mssql", &["cat", "/proc/mounts"]);
    assert!(
        mounts
            .lines()
            .any(|l| l.starts_with("tmpfs ") && l.contains(&format!(" {TLS_DIR} "))),
        "{pod}: {TLS_DIR} is in memory:\n{mounts}"
    );
    let groups = exec_ok(ns, pod, "intruder", &["id", "-G"]);
    assert!(groups.split_whitespace().any(|g| g == "10001"), "{groups}");
    let stolen = exec(ns, pod, "intruder", &["cat", "/tls/server.key"]);
    assert!(
        !stolen.ok && stolen.stderr.contains("Permission denied"),
        "{pod}: uid 10002 must not read the key: {}{}",
        stolen.stdout,
        stolen.stderr
    );
}

/// Through the database's Service, as a client: the served certificate is the Secret's (the
/// operator's probe, and OpenSSL), `sqlcmd` logs in trusting only the CA and checking the
/// Service's name, TLS 1.1 is refused.
async fn assert_service_serves(t: &Setup, db: &Db, issued: &Issued) {
    let service = t.api::<Service>().get(db.name).await.unwrap();
    let ip = service.spec.unwrap().cluster_ip.unwrap();
    let addr = SocketAddr::new(ip.parse().unwrap(), 1433);
    let name = format!("{}.{}.svc", db.name, t.ns.name);
    let seen = served(addr, &name, Mode::Prelogin);
    assert_eq!(
        seen.chain[0].as_ref(),
        leaf_der(&issued.crt),
        "{name} serves the Secret's certificate"
    );

    let ca_file = std::env::temp_dir().join(format!("{}-{}-ca.crt", t.ns.name, db.name));
    std::fs::write(&ca_file, &issued.ca).unwrap();
    let password = t
        .secret_text(&format!("{}-auth", db.name), "password")
        .await;
    let run = login(addr, &name, ca_file.to_str().unwrap(), &password);
    let _ = std::fs::remove_file(&ca_file);
    assert!(
        run.ok && run.stdout.lines().any(|l| l.trim() == "1"),
        "sqlcmd through {name}:\n{}{}",
        run.stdout,
        run.stderr
    );

    let (tls11, text11) = openssl::handshake(addr, "-tls1_1");
    assert!(!tls11, "{name} must refuse TLS 1.1:\n{text11}");
    let (tls12, text12) = openssl::handshake(addr, "-tls1_2");
    assert!(tls12, "{name} accepts TLS 1.2 (the control):\n{text12}");
    // OpenSSL prints the certificate it was served: the Secret's, by a client that is not ours.
    let seen_by_openssl = parse_certificate(text12.as_bytes()).unwrap().serial;
    let in_secret = parse_certificate(issued.crt.as_bytes()).unwrap().serial;
    assert_eq!(
        seen_by_openssl, in_secret,
        "the serial OpenSSL was served through {name}"
    );
}

/// The kubelet ran the server container's startup, readiness and liveness probes, and they passed.
async fn assert_probes_ran(t: &Setup, pod: &str) {
    let ns = t.ns.name.clone();
    eventually(
        &format!("{pod}'s probes to have run"),
        Duration::from_secs(60),
        || async {
            let counts = probe_counts(&ns, pod, "mssql");
            let passed = |probe: &str| {
                counts
                    .get(&(probe.to_owned(), "successful".to_owned()))
                    .copied()
                    .unwrap_or(0.0)
            };
            if ["Startup", "Readiness", "Liveness"]
                .iter()
                .all(|p| passed(p) >= 1.0)
            {
                Ok(())
            } else {
                Err(format!("{counts:?}"))
            }
        },
    )
    .await;
}

fn for_db(db: &Db) -> impl FnOnce(&mut Value) {
    let name = db.name;
    move |ops: &mut Value| ops["spec"]["databaseRef"]["name"] = json!(name)
}

/// After a request: every pod and the Service serve what the Secret holds (or TLS is off).
async fn assert_serves(t: &Setup, db: &Db, tls: bool, ids: &BTreeMap<String, String>) {
    settled_order(t, db).await;
    if tls {
        let issued = issued(t, db).await;
        assert_pods_serve(t, db, Some(&issued), ids).await;
        assert_service_serves(t, db, &issued).await;
    } else {
        assert_pods_serve(t, db, None, ids).await;
    }
}

/// A pod that keeps serving the old certificate after its restart (the double's test-only knob:
/// it serves a saved copy of the certificate it runs now) fails a rotation at that pod, naming it
/// and both serials; no later pod is restarted, and the database is resumed. A Restart then puts
/// the new certificate in place everywhere.
async fn a_stale_pod_fails_the_rotation(t: &Setup, db: &Db, ids: &BTreeMap<String, String>) {
    let ns = &t.ns.name;
    let before = pod_starts(t, db).await;
    let order = before.order.clone();
    let stale = order[1].as_str();
    let later: Vec<&str> = order[2..].iter().map(String::as_str).collect();
    let old_serial = parse_certificate(issued(t, db).await.crt.as_bytes())
        .unwrap()
        .serial;
    let (knob, first_crt, first_key) = (
        format!("{DATA_DIR}/{}", faults::FILE_NAME),
        format!("{DATA_DIR}/{}", faults::FIRST_CERT),
        format!("{DATA_DIR}/{}", faults::FIRST_KEY),
    );
    let script = format!(
        "install -m 0600 {TLS_DIR}/server.crt {first_crt} && install -m 0600 {TLS_DIR}/server.key {first_key} \
         && echo {} > {knob}",
        faults::SERVE_FIRST_CERTIFICATE
    );
    exec_ok(ns, stale, "mssql", &["sh", "-c", &script]);
    // Renewals are rolled out by hand here: the operator must leave the pods the failed rotation
    // did not reach as they are, and say so.
    t.patch_database(
        db.name,
        &json!({"metadata": {"annotations": {ROLLOUT: "Manual"}}}),
    )
    .await;
    let name = create_ops(t, db.requests[1], |ops| {
        for_db(db)(ops);
        ops["metadata"]["name"] = json!(format!("{}-stale", db.requests[1]));
    })
    .await;
    let ops = wait_done(t, &name).await;
    let (phase, conditions) = phase_and_conditions(&ops);
    assert_eq!(phase, "Failed", "{conditions:#?}");
    let new_serial = parse_certificate(issued(t, db).await.crt.as_bytes())
        .unwrap()
        .serial;
    assert_ne!(new_serial, old_serial);
    let failed = find(&ops.status.as_ref().unwrap().conditions, "Failed").unwrap();
    let message = failed.message.clone().unwrap_or_default();
    assert_eq!(
        failed.reason.as_deref(),
        Some(format!("CheckServedCertificate--{stale}").as_str())
    );
    assert!(
        message.starts_with(&format!(
            "pod {stale} serves certificate serial {old_serial} "
        )) && message.contains(&format!("not serial {new_serial} of its secret"))
            && message.ends_with("no further pod was restarted"),
        "{message}"
    );
    let after = pod_starts(t, db).await;
    assert_ne!(
        after[order[0].as_str()].uid,
        before[order[0].as_str()].uid,
        "the first pod was restarted"
    );
    for pod in &later {
        assert_eq!(
            after[*pod].uid, before[*pod].uid,
            "{pod}, after the stale one, was not touched"
        );
    }
    let database = t.api::<MssqlServer>().get(db.name).await.unwrap();
    let status = database.status.unwrap_or_default();
    assert!(
        find(&status.conditions, PAUSED).is_none(),
        "the database was resumed"
    );
    // The database's status tells which pods still run the old certificate.
    let outdated: Vec<&str> = status
        .certificates
        .iter()
        .filter(|c| c.alias == "server" && c.outdated)
        .map(|c| c.pod.as_str())
        .collect();
    assert_eq!(outdated, later, "{:?}", status.certificates);
    // Once resumed, the provisioner's next pass names what waits for a person.
    let message = eventually("the rollout to wait for a person", SHORT, || async {
        let db = t.api::<MssqlServer>().get(db.name).await.unwrap();
        let conditions = db.status.unwrap_or_default().conditions;
        match find(&conditions, CERTIFICATE_ROLLOUT_PENDING) {
            Some(c) if c.reason.as_deref() == Some("ManualRollout") => {
                Ok(c.message.clone().unwrap_or_default())
            }
            _ => Err(format!("{:?}", summary(&conditions))),
        }
    })
    .await;
    assert!(
        message.contains(&format!(
            "{old_serial} (its secret now holds {new_serial}) on {}",
            later.join(", ")
        )),
        "{message}"
    );
    assert!(
        renewal_requests(t, db.name).await.len() == 1,
        "no request while Manual"
    );
    t.patch_database(
        db.name,
        &json!({"metadata": {"annotations": {ROLLOUT: null}}}),
    )
    .await;

    exec_ok(ns, stale, "mssql", &["rm", &knob, &first_crt, &first_key]);
    let before = pod_starts(t, db).await;
    let ops = run_ops(t, "msops-ag-rotate", restart(db, "restart-after-stale")).await;
    assert_restarted_once_primary_last(t, db, &before, &ops, true).await;
    assert_serves(t, db, true, ids).await;
}

/// KubeDB's TLS guide on `db`: add TLS, rotate, change the issuer, (a Restart and a stale pod on
/// the group), remove TLS; after each request every pod and the Service serve what they should.
async fn the_guide(t: &Setup, db: &Db, busybox: &str, evict_operator: Option<&str>) {
    let ns = &t.ns.name;
    t.create_example(db.name, |value| on_the_real_node(value, busybox))
        .await;
    wait_ready_replicas(&t.client, ns, db.name, db.pods.len() as i32).await;
    settled_order(t, db).await;
    let ids: BTreeMap<String, String> = db
        .pods
        .iter()
        .map(|pod| ((*pod).to_owned(), data_file(ns, pod).0))
        .collect();
    for pod in db.pods {
        assert_probes_ran(t, pod).await;
    }
    assert_serves(t, db, false, &ids).await;

    let before = pod_starts(t, db).await;
    let ops = run_ops(t, db.requests[0], for_db(db)).await;
    assert_restarted_once_primary_last(t, db, &before, &ops, true).await;
    assert_serves(t, db, true, &ids).await;

    // A rotation; on the group, with the operator's pod evicted once the first database pod was.
    let before = pod_starts(t, db).await;
    let certificate = issued(t, db).await.crt;
    let name = create_ops(t, db.requests[1], for_db(db)).await;
    if let Some(operator_ns) = evict_operator {
        evict_leader_mid_request(t, operator_ns, &name).await;
    }
    let ops = wait_done(t, &name).await;
    assert_eq!(
        phase_and_conditions(&ops).0,
        "Successful",
        "{:#?}",
        phase_and_conditions(&ops).1
    );
    assert_restarted_once_primary_last(t, db, &before, &ops, true).await;
    assert_ne!(
        issued(t, db).await.crt,
        certificate,
        "the rotation issued a new certificate"
    );
    assert_serves(t, db, true, &ids).await;

    let before = pod_starts(t, db).await;
    let ops = run_ops(t, db.requests[2], for_db(db)).await;
    assert_restarted_once_primary_last(t, db, &before, &ops, true).await;
    let issuer = parse_certificate(issued(t, db).await.crt.as_bytes())
        .unwrap()
        .issuer;
    assert!(
        issuer.contains("mssqlserver-new"),
        "issued by the new CA: {issuer}"
    );
    assert_serves(t, db, true, &ids).await;

    a_renewal_is_rolled_out_by_itself(t, db, &ids).await;

    if db.group {
        let before = pod_starts(t, db).await;
        let ops = run_ops(t, "msops-ag-rotate", restart(db, "restart")).await;
        assert_restarted_once_primary_last(t, db, &before, &ops, true).await;
        assert_serves(t, db, true, &ids).await;
        a_stale_pod_fails_the_rotation(t, db, &ids).await;
    }

    let before = pod_starts(t, db).await;
    let ops = run_ops(t, db.requests[3], for_db(db)).await;
    assert_restarted_once_primary_last(t, db, &before, &ops, false).await;
    assert_serves(t, db, false, &ids).await;
    for pod in db.pods {
        let starts = data_file(ns, pod).1;
        assert!(starts >= 5, "{pod} started on its data {starts} times");
    }
}

/// A renewal made as `cmctl renew` makes one: the operator creates one Restart request by itself,
/// which restarts each pod once, primary last, and sees each serve the new certificate. Prints
/// how long each stage took.
async fn a_renewal_is_rolled_out_by_itself(t: &Setup, db: &Db, ids: &BTreeMap<String, String>) {
    let before = pod_starts(t, db).await;
    let start = Instant::now();
    let serial = renew_server_certificate(t, db.name).await;
    let renewed = start.elapsed();
    let request = wait_renewal_request(t, db.name, &[], SHORT).await;
    let created = start.elapsed();
    let ops = wait_done(t, &request.name_any()).await;
    let rolled_out = start.elapsed();
    assert_eq!(
        phase_and_conditions(&ops).0,
        "Successful",
        "{:#?}",
        phase_and_conditions(&ops).1
    );
    println!(
        "{}: renewal asked → secret renewed {renewed:.1?} → request created {created:.1?} → \
         every pod seen serving serial {serial} {rolled_out:.1?}",
        db.name
    );
    assert_restarted_once_primary_last(t, db, &before, &ops, true).await;
    assert_serves(t, db, true, ids).await;
    assert_eq!(renewal_requests(t, db.name).await.len(), 1);
}

/// A certificate that renews itself two minutes after it is issued (the shortest duration
/// cert-manager accepts, 1h, renewed 58m before it ends): the operator rolls the renewal out with
/// no one asking, and every pod serves the new certificate. `db` is made from KubeDB's `example`.
async fn a_short_lived_certificate_is_rolled_out(t: &Setup, db: &Db, example: &str, busybox: &str) {
    t.create_example(example, |value| {
        value["metadata"]["name"] = json!(db.name);
        value["spec"]["tls"]["certificates"] =
            json!([{"alias": "server", "duration": "1h", "renewBefore": "58m"}]);
        on_the_real_node(value, busybox);
    })
    .await;
    wait_ready_replicas(&t.client, &t.ns.name, db.name, db.pods.len() as i32).await;
    settled_order(t, db).await;
    let ids: BTreeMap<String, String> = db
        .pods
        .iter()
        .map(|pod| ((*pod).to_owned(), data_file(&t.ns.name, pod).0))
        .collect();
    let secret = format!("{}-server-cert", db.name);
    let first = serial(t, &secret).await;
    let before = pod_starts(t, db).await;
    let serial = wait_new_serial(t, &secret, &first, Duration::from_secs(240)).await;
    let start = Instant::now();
    let request = wait_renewal_request(t, db.name, &[], SHORT).await;
    let created = start.elapsed();
    let ops = wait_done(t, &request.name_any()).await;
    let rolled_out = start.elapsed();
    assert_eq!(phase_and_conditions(&ops).0, "Successful");
    println!(
        "{}: renewed by cert-manager → request seen {created:.1?} → every pod seen serving \
         serial {serial} {rolled_out:.1?}",
        db.name
    );
    assert_restarted_once_primary_last(t, db, &before, &ops, true).await;
    assert_serves(t, db, true, &ids).await;
    assert_eq!(renewal_requests(t, db.name).await.len(), 1);
    t.api::<MssqlServer>()
        .delete(db.name, &DeleteParams::default())
        .await
        .unwrap();
    t.wait_gone::<MssqlServer>(db.name).await;
}

/// Evicts the operator's pod once the request `name` evicted its first database pod; waits for
/// the successor to lead.
async fn evict_leader_mid_request(t: &Setup, operator_ns: &str, name: &str) {
    let requests: Api<MssqlServerOpsRequest> = t.api();
    eventually("the rotation's first eviction", OPS_TIMEOUT, || async {
        let ops = requests.get(name).await.map_err(|e| e.to_string())?;
        let status = ops.status.unwrap_or_default();
        assert_ne!(
            status.phase.as_deref(),
            Some("Failed"),
            "{:?}",
            summary(&status.conditions)
        );
        if status
            .conditions
            .iter()
            .any(|c| c.type_.starts_with("EvictPod--"))
        {
            Ok(())
        } else {
            Err(format!("{:?}", summary(&status.conditions)))
        }
    })
    .await;
    let leader = wait_leader(&t.client, operator_ns, None).await;
    let operator_pods_api: Api<Pod> = Api::namespaced(t.client.clone(), operator_ns);
    operator_pods_api
        .evict(&leader, &EvictParams::default())
        .await
        .expect("the operator pod is evicted");
    let successor = wait_leader(&t.client, operator_ns, Some(&leader)).await;
    assert_ne!(successor, leader);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_chart_installed_operator_runs_kubedbs_tls_guide_on_real_containers() {
    assert_node_ready();
    let images = load_images(&["operator", "mssql-double", "busybox"]);

    // The operator, installed as a user installs it, in a container on the node.
    let operator_ns = format!("mssql-operator-{}", std::process::id());
    let _release = Release::install(
        "mssql-operator",
        &operator_ns,
        &operator_values(&images["operator"]),
    );
    let t = Setup::without_operator("real-node").await;
    wait_leader(&t.client, &operator_ns, None).await;
    // Its admission webhook answers through the chart's Service, with the CA bundle it set.
    let unknown =
        example_in("mssql-standalone-tls", &t.ns.name).replace("\"2025-cu0\"", "\"2019-cu1\"");
    eventually("the in-cluster webhook to refuse an unknown version", Duration::from_secs(60), || async {
        let run = kubectl(&["create", "--dry-run=server", "-f", "-"], Some(&unknown));
        let words = "admission webhook \"mssqlservers.validate.mssql-operator.dev\" denied the request: spec.version: mssqlserverversions.catalog.kubedb.com \"2019-cu1\" not found";
        if run.stderr.contains(words) { Ok(()) } else { Err(run.stderr) }
    })
    .await;
    kubectl_ok(
        &["apply", "-f", "-"],
        Some(&double_version(&images["mssql-double"])),
    );
    let _version = ClusterObject("mssqlserverversion", DOUBLE_VERSION);
    let busybox = images["busybox"].clone();
    // The issuer both guides change to.
    ca_issuer(
        &t.client,
        &t.ns.name,
        "mssqlserver-new-ca-issuer",
        "mssqlserver-new",
    )
    .await;

    // Both guides at once: the standalone server's requests run while the group's operator pod is
    // evicted, too; beside them two databases whose certificates renew themselves.
    tokio::join!(
        the_guide(&t, &GROUP, &busybox, Some(&operator_ns)),
        the_guide(&t, &STANDALONE, &busybox, None),
        a_short_lived_certificate_is_rolled_out(&t, &SHORT_LIVED, "mssql-standalone-tls", &busybox),
        a_short_lived_certificate_is_rolled_out(&t, &SHORT_LIVED_GROUP, "mssql-ag-tls", &busybox),
    );

    // The databases go while their operator still runs (it holds their finalizers).
    for db in [GROUP.name, STANDALONE.name] {
        t.api::<MssqlServer>()
            .delete(db, &DeleteParams::default())
            .await
            .unwrap();
        t.wait_gone::<MssqlServer>(db).await;
    }

    // Every request of the operator came from its pods, as its ServiceAccount, and none was refused.
    let user = format!("system:serviceaccount:{operator_ns}:mssql-operator");
    let audited = audited(&user);
    assert!(
        !audited.used.is_empty(),
        "no request of {user} in the audit log"
    );
    assert!(audited.refused.is_empty(), "refused: {:?}", audited.refused);
    assert!(
        audited
            .source_ips
            .iter()
            .all(|ip| ip.starts_with("10.250.0.")),
        "requests of {user} from outside the node's pod network: {:?}",
        audited.source_ips
    );
}

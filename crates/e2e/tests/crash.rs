//! The operator killed (SIGKILL) at every step boundary of a ReconfigureTLS request, a fresh
//! process taking over each time: the request still ends Successful, and every pod is evicted
//! exactly once (seen by a watch on the pods, not by the operator's own records).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::PostParams;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use mssql_api::{MssqlServer, MssqlServerOpsRequest};
use mssql_e2e::cluster::{TestNamespace, ca_issuer, client, eventually, wait_ready_replicas};
use mssql_e2e::fixture;
use mssql_e2e::operator::Operator;
use mssql_e2e::{Scratch, example_in, install_crds_and_catalog};

/// One operator process. Each has the same identity, as the restarted container of one pod
/// has, so it takes the leader-election Lease back at once instead of waiting for it to expire.
fn start_operator(namespace: &str, log: &std::fs::File) -> Operator {
    Operator::start(
        &[
            "run",
            "--listen",
            "127.0.0.1:0",
            "--lease-namespace",
            namespace,
        ],
        &[("POD_NAME", "crash-test-operator")],
        log,
    )
}

fn progress(ops: &MssqlServerOpsRequest) -> (usize, String) {
    let status = ops.status.clone().unwrap_or_default();
    (status.conditions.len(), status.phase.unwrap_or_default())
}

async fn pod_uids(pods: &Api<Pod>) -> BTreeMap<String, String> {
    let list = pods.list(&Default::default()).await.unwrap();
    list.items
        .iter()
        .map(|p| (p.name_any(), p.uid().unwrap_or_default()))
        .collect()
}

/// The API server's mark on a pod the Eviction API is deleting.
fn was_evicted(pod: &Pod) -> bool {
    pod.status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .any(|c| {
            c.type_ == "DisruptionTarget"
                && c.status == "True"
                && c.reason.as_deref() == Some("EvictionByEvictionAPI")
        })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_survives_the_operator_being_killed_at_every_step() {
    install_crds_and_catalog();
    let client = client().await;
    let ns = TestNamespace::new(&client, "crash").await;
    let log_path = Scratch::new(&format!("{}-operator.log", ns.name));
    let log = std::fs::File::create(log_path.path()).unwrap();
    ca_issuer(&client, &ns.name, "mssqlserver-ca-issuer", "mssqlserver").await;
    let databases: Api<MssqlServer> = Api::namespaced(client.clone(), &ns.name);
    let requests: Api<MssqlServerOpsRequest> = Api::namespaced(client.clone(), &ns.name);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);

    // Provision a 3-replica group with one operator, and give it a primary as a coordinator would.
    let operator = start_operator(&ns.name, &log);
    let db: MssqlServer =
        serde_saphyr::from_str(&example_in("mssql-ag-cluster", &ns.name)).unwrap();
    databases.create(&PostParams::default(), &db).await.unwrap();
    wait_ready_replicas(&client, &ns.name, "mssql-ag-cluster", 3).await;
    for i in 0..3 {
        let role = if i == 2 { "primary" } else { "secondary" };
        pods.patch(
            &format!("mssql-ag-cluster-{i}"),
            &Default::default(),
            &kube::api::Patch::Merge(&fixture::role_patch(role)),
        )
        .await
        .unwrap();
    }
    eventually("the group to be Ready", Duration::from_secs(60), || async {
        let phase = databases
            .get("mssql-ag-cluster")
            .await
            .map_err(|e| e.to_string())?
            .status
            .and_then(|s| s.phase);
        if phase.as_deref() == Some("Ready") {
            Ok(())
        } else {
            Err(format!("{phase:?}"))
        }
    })
    .await;
    drop(operator);

    // Every pod the Eviction API evicted, by name: the API server marks each with a
    // `DisruptionTarget` condition (reason `EvictionByEvictionAPI`) before deleting it. (Counting
    // uids would also count the fake nodes' own double deletes.) A watch misses none.
    let original = pod_uids(&pods).await;
    let evicted: Arc<Mutex<BTreeMap<String, BTreeSet<String>>>> = Arc::default();
    let recorder = {
        let evicted = evicted.clone();
        let pods = pods.clone();
        tokio::spawn(async move {
            let mut events = watcher(pods, watcher::Config::default()).boxed();
            while let Some(Ok(event)) = events.next().await {
                if let watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) = event
                    && was_evicted(&pod)
                {
                    evicted
                        .lock()
                        .unwrap()
                        .entry(pod.name_any())
                        .or_default()
                        .insert(pod.uid().unwrap_or_default());
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;

    let request: MssqlServerOpsRequest =
        serde_saphyr::from_str(&example_in("msops-ag-rotate", &ns.name)).unwrap();
    requests
        .create(&PostParams::default(), &request)
        .await
        .unwrap();

    // One operator process per step: start, let it record one more condition, kill it.
    let mut kills = 0;
    loop {
        let before = progress(&requests.get("msops-ag-rotate").await.unwrap());
        if before.1 == "Successful" || before.1 == "Failed" {
            break;
        }
        let operator = start_operator(&ns.name, &log);
        // Polled often, so the kill lands right after the step. Up to three minutes: on fake nodes an
        // evicted pod is back under the same name at once, and the disruption controller may then
        // hold the budget for its 2-minute deletion timeout.
        let deadline = std::time::Instant::now() + Duration::from_secs(180);
        while progress(&requests.get("msops-ag-rotate").await.unwrap()) == before {
            assert!(
                std::time::Instant::now() < deadline,
                "no progress from {before:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(operator);
        kills += 1;
        assert!(kills < 100, "the request does not finish");
    }
    let done = requests.get("msops-ag-rotate").await.unwrap();
    let status = done.status.clone().unwrap();
    assert_eq!(
        status.phase.as_deref(),
        Some("Successful"),
        "{:?}",
        status.conditions
    );
    // Pending, Progressing, paused, re-issue asked, synced, UpdatePetSets, 3 × (evicted, running),
    // RestartNodes: at least 12 steps, each by a new process.
    assert!(
        kills >= 12,
        "the operator was killed at every step ({kills} kills)"
    );

    // Let the recreated primary settle, then check what the watch saw.
    tokio::time::sleep(Duration::from_secs(2)).await;
    recorder.abort();
    let evicted = evicted.lock().unwrap().clone();
    let now = pod_uids(&pods).await;
    for i in 0..3 {
        let pod = format!("mssql-ag-cluster-{i}");
        assert_eq!(
            evicted.get(&pod).map(BTreeSet::len),
            Some(1),
            "{pod} must be evicted exactly once: {evicted:?}"
        );
        assert_ne!(now.get(&pod), original.get(&pod), "{pod} runs a new pod");
    }
    assert_eq!(
        fixture::evicted(&done),
        [
            "mssql-ag-cluster-0",
            "mssql-ag-cluster-1",
            "mssql-ag-cluster-2"
        ],
        "primary last"
    );
    let db = databases.get("mssql-ag-cluster").await.unwrap();
    assert!(
        mssql_api::condition::find(&db.status.unwrap().conditions, "Paused").is_none(),
        "the database is resumed"
    );
}

//! A test's own namespace with a CA Issuer in it, and the waits and reads the tests share.

use std::net::SocketAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Pod, Secret};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use mssql_api::condition::{self, Condition};
use mssql_api::{MssqlServer, MssqlServerOpsRequest};
use serde_json::{Value, json};

use crate::cluster::{TestNamespace, ca_issuer, client, ensure_operator, eventually, unique};
use crate::example_in;

pub const READY_TIMEOUT: Duration = Duration::from_secs(120);
pub const SHORT: Duration = Duration::from_secs(30);

pub struct Setup {
    pub client: Client,
    pub ns: TestNamespace,
}

impl Setup {
    pub async fn new(prefix: &str) -> Self {
        ensure_operator();
        Self::in_namespace(&unique(prefix)).await
    }

    /// For a test that runs the operator itself, as a process: the CRDs, the catalog, bindable
    /// volumes, and a namespace with a CA Issuer.
    pub async fn without_operator(prefix: &str) -> Self {
        Self::without_operator_in(&unique(prefix)).await
    }

    /// [`Setup::without_operator`] in the namespace `name` itself (made here: it must not exist).
    pub async fn without_operator_in(name: &str) -> Self {
        crate::install_crds_and_catalog();
        crate::reclaim_volumes();
        Self::in_namespace(name).await
    }

    async fn in_namespace(name: &str) -> Self {
        let client = client().await;
        let ns = TestNamespace::named(&client, name).await;
        ca_issuer(&client, &ns.name, "mssqlserver-ca-issuer", "mssqlserver").await;
        Self { client, ns }
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.ns.name)
    }

    /// Creates a KubeDB doc example (a database) in this namespace, after `edit`.
    pub async fn create_example(&self, name: &str, edit: impl FnOnce(&mut Value)) -> MssqlServer {
        self.create_from(name, edit).await
    }

    /// Creates the KubeDB doc example `example` in this namespace, after `edit`.
    pub async fn create_from<K>(&self, example: &str, edit: impl FnOnce(&mut Value)) -> K
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::Serialize
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let mut value: Value = serde_saphyr::from_str(&example_in(example, &self.ns.name)).unwrap();
        edit(&mut value);
        let object: K = serde_json::from_value(value).unwrap();
        self.api::<K>()
            .create(&PostParams::default(), &object)
            .await
            .unwrap_or_else(|e| panic!("creating {example}: {e}"))
    }

    pub async fn wait_phase(&self, db: &str, phase: &str, timeout: Duration) -> MssqlServer {
        wait_for_phase(self.api(), db, phase, timeout, |db: &MssqlServer| {
            db.status
                .clone()
                .map(|s| (s.phase, s.conditions))
                .unwrap_or_default()
        })
        .await
    }

    /// `pod`'s address, as the API server says now.
    pub async fn pod_ip(&self, pod: &str) -> Result<String, String> {
        let pod = self
            .api::<Pod>()
            .get(pod)
            .await
            .map_err(|e| e.to_string())?;
        pod.status
            .and_then(|s| s.pod_ip)
            .ok_or_else(|| "no address yet".into())
    }

    /// Where `pod`'s SQL Server listens.
    pub async fn sql_addr(&self, pod: &str) -> Result<SocketAddr, String> {
        let ip = self.pod_ip(pod).await?;
        Ok(SocketAddr::new(ip.parse().map_err(|_| "an address")?, 1433))
    }

    pub async fn secret_text(&self, name: &str, key: &str) -> String {
        let secret = self
            .api::<Secret>()
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("secret {name}: {e}"));
        String::from_utf8(secret.data.unwrap()[key].0.clone()).unwrap()
    }

    pub async fn exists<K>(&self, name: &str) -> bool
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        self.api::<K>()
            .get_opt(name)
            .await
            .expect("the API answers")
            .is_some()
    }

    /// Waits until the object `name` is gone.
    pub async fn wait_gone<K>(&self, name: &str)
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let api = self.api::<K>();
        let what = format!("{} {name} to be gone", K::kind(&()));
        eventually(&what, SHORT, || async {
            match api.get_opt(name).await.map_err(|e| e.to_string())? {
                None => Ok(()),
                Some(object) => Err(format!("still there, finalizers {:?}", object.finalizers())),
            }
        })
        .await;
    }

    /// The (reason, message) of each Event about the object `name` in the namespace.
    pub async fn events_of(&self, name: &str) -> Vec<(String, String)> {
        self.typed_events_of(name)
            .await
            .into_iter()
            .map(|(_, reason, message)| (reason, message))
            .collect()
    }

    /// The (type, reason, message) of each Event about the object `name` in the namespace.
    pub async fn typed_events_of(&self, name: &str) -> Vec<(String, String, String)> {
        let events = self
            .api::<Event>()
            .list(&ListParams::default())
            .await
            .unwrap();
        events
            .items
            .into_iter()
            .filter(|e| e.involved_object.name.as_deref() == Some(name))
            .map(|e| {
                (
                    e.type_.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.message.unwrap_or_default(),
                )
            })
            .collect()
    }

    /// A JSON merge patch of the database `db`.
    pub async fn patch_database(&self, db: &str, patch: &Value) {
        self.api::<MssqlServer>()
            .patch(db, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .unwrap_or_else(|e| panic!("patching {db}: {e}"));
    }

    pub async fn set_role(&self, pod: &str, role: &str) {
        self.api::<Pod>()
            .patch(
                pod,
                &PatchParams::default(),
                &Patch::Merge(&role_patch(role)),
            )
            .await
            .unwrap();
    }
}

/// What a coordinator writes on a kwok pod of a group, where none runs: the role label and its
/// server's report (`mssql-operator.dev/replica`), a `primary` synchronized PRIMARY and a
/// `secondary` synchronized SECONDARY.
pub fn role_patch(role: &str) -> Value {
    let report = json!({
        "role": role.to_uppercase(),
        "synchronized": true,
        "connected": true,
        "since": "2026-01-01T00:00:00Z",
    });
    json!({"metadata": {
        "labels": {mssql_api::labels::ROLE: role},
        "annotations": {mssql_api::annotations::REPLICA: report.to_string()},
    }})
}

/// Creates the KubeDB doc example `example` (an ops request) in the test's namespace, after `edit`;
/// returns its name.
pub async fn create_ops(t: &Setup, example: &str, edit: impl FnOnce(&mut Value)) -> String {
    t.create_from::<MssqlServerOpsRequest>(example, edit)
        .await
        .name_any()
}

/// Waits until the ops request `name` is in `phase`.
pub async fn wait_ops(
    t: &Setup,
    name: &str,
    phase: &str,
    timeout: Duration,
) -> MssqlServerOpsRequest {
    wait_for_phase(
        t.api(),
        name,
        phase,
        timeout,
        |ops: &MssqlServerOpsRequest| {
            ops.status
                .clone()
                .map(|s| (s.phase, s.conditions))
                .unwrap_or_default()
        },
    )
    .await
}

/// Waits until the object `name` is in `phase`, as `status` reads it (with its conditions).
async fn wait_for_phase<K>(
    api: Api<K>,
    name: &str,
    phase: &str,
    timeout: Duration,
    status: impl Fn(&K) -> (Option<String>, Vec<Condition>),
) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    eventually(&format!("{name} to be {phase}"), timeout, || async {
        let current = api.get(name).await.map_err(|e| e.to_string())?;
        match status(&current) {
            (Some(p), _) if p == phase => Ok(current),
            (other, conditions) => Err(format!(
                "phase {other:?}, conditions {:?}",
                summary(&conditions)
            )),
        }
    })
    .await
}

/// Waits until request `name` has condition `type_` True (a step done).
pub async fn wait_step(t: &Setup, name: &str, type_: &str, timeout: Duration) {
    let requests = t.api::<MssqlServerOpsRequest>();
    eventually(
        &format!("request {name} to reach {type_}"),
        timeout,
        || async {
            let ops = requests.get(name).await.map_err(|e| e.to_string())?;
            let conditions = ops.status.unwrap_or_default().conditions;
            match condition::find(&conditions, type_) {
                Some(c) if c.is_true() => Ok(()),
                _ => Err(format!("{:?}", summary(&conditions))),
            }
        },
    )
    .await;
}

/// The pods a request evicted, in the order of its `EvictPod--<pod>` conditions.
pub fn evicted(ops: &MssqlServerOpsRequest) -> Vec<String> {
    let conditions = ops.status.as_ref().map(|s| s.conditions.as_slice());
    conditions
        .unwrap_or_default()
        .iter()
        .filter_map(|c| c.type_.strip_prefix("EvictPod--").map(str::to_owned))
        .collect()
}

pub fn summary(conditions: &[Condition]) -> Vec<String> {
    conditions
        .iter()
        .map(|c| {
            format!(
                "{}={} {}",
                c.type_,
                c.status,
                c.message.clone().unwrap_or_default()
            )
        })
        .collect()
}

/// A ResourceQuota `no-pods` in `namespace` that allows no pod: the StatefulSet controller then
/// cannot create one.
pub fn forbid_pods(namespace: &str) {
    crate::kubectl_ok(
        &[
            "create",
            "quota",
            "no-pods",
            "--hard=pods=0",
            "-n",
            namespace,
        ],
        None,
    );
}

/// Waits until condition `type_` of database `db` (read through `api`) has a message containing
/// `words`; returns the message.
pub async fn wait_condition_says(
    api: &Api<MssqlServer>,
    db: &str,
    type_: &str,
    words: &str,
) -> String {
    eventually(
        &format!("{db}'s {type_} to say {words:?}"),
        SHORT,
        || async {
            let found = api.get(db).await.map_err(|e| e.to_string())?;
            let conditions = found.status.map(|s| s.conditions).unwrap_or_default();
            let message = condition::find(&conditions, type_)
                .and_then(|c| c.message.clone())
                .unwrap_or_default();
            if message.contains(words) {
                Ok(message)
            } else {
                Err(message)
            }
        },
    )
    .await
}

pub fn condition_of<'a>(db: &'a MssqlServer, type_: &str) -> &'a Condition {
    let conditions = &db.status.as_ref().unwrap().conditions;
    condition::find(conditions, type_)
        .unwrap_or_else(|| panic!("no condition {type_} in {:?}", summary(conditions)))
}

/// A finalizer on a pod: evicted, it stays Terminating until `release`, so an ops request that
/// restarts it is held at "waiting for it to terminate" for as long as a test needs, whatever
/// the operator's speed (kwok deletes a terminating pod only once its finalizers are gone).
/// Dropped unreleased (a failed test), it is released so the namespace can be deleted.
pub struct PodHold {
    namespace: String,
    pod: String,
    held: bool,
}

impl PodHold {
    pub fn on(namespace: &str, pod: &str) -> Self {
        let hold = Self {
            namespace: namespace.to_owned(),
            pod: pod.to_owned(),
            held: true,
        };
        let run = hold.set_finalizers(json!(["e2e.mssql-operator.dev/hold"]));
        assert!(run.ok, "holding pod {pod}: {}", run.stderr);
        hold
    }

    /// Lets the pod go.
    pub fn release(&mut self) {
        self.held = false;
        let run = self.set_finalizers(Value::Null);
        assert!(run.ok, "releasing pod {}: {}", self.pod, run.stderr);
    }

    fn set_finalizers(&self, finalizers: Value) -> crate::Run {
        let patch = json!({"metadata": {"finalizers": finalizers}}).to_string();
        let pod = ["patch", "pod", &self.pod, "-n", &self.namespace];
        crate::kubectl(&[&pod[..], &["--type=merge", "-p", &patch]].concat(), None)
    }
}

impl Drop for PodHold {
    fn drop(&mut self) {
        if self.held {
            let _ = self.set_finalizers(Value::Null);
        }
    }
}

//! A test's own namespace with a CA Issuer in it, and the waits and reads the tests share.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Pod, Secret};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use mssql_api::MssqlServer;
use mssql_api::condition::{self, Condition};
use serde_json::{Value, json};

use crate::cluster::{TestNamespace, ca_issuer, client, ensure_operator, eventually};
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
        let client = client().await;
        let ns = TestNamespace::new(&client, prefix).await;
        ca_issuer(&client, &ns.name, "mssqlserver-ca-issuer", "mssqlserver").await;
        Self { client, ns }
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.ns.name)
    }

    /// Creates a KubeDB doc example in this namespace, after `edit`.
    pub async fn create_example(&self, name: &str, edit: impl FnOnce(&mut Value)) -> MssqlServer {
        let mut value: Value = serde_saphyr::from_str(&example_in(name, &self.ns.name)).unwrap();
        edit(&mut value);
        let db: MssqlServer = serde_json::from_value(value).unwrap();
        self.api::<MssqlServer>()
            .create(&PostParams::default(), &db)
            .await
            .expect("the database is created")
    }

    pub async fn wait_phase(&self, db: &str, phase: &str, timeout: Duration) -> MssqlServer {
        let api = self.api::<MssqlServer>();
        eventually(&format!("{db} to be {phase}"), timeout, || async {
            let current = api.get(db).await.map_err(|e| e.to_string())?;
            let status = current.status.clone().unwrap_or_default();
            match status.phase.as_deref() {
                Some(p) if p == phase => Ok(current),
                other => Err(format!(
                    "phase {other:?}, conditions {:?}",
                    summary(&status.conditions)
                )),
            }
        })
        .await
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

    pub async fn events_of(&self, db: &str) -> Vec<(String, String)> {
        let events = self
            .api::<Event>()
            .list(&ListParams::default())
            .await
            .unwrap();
        events
            .items
            .into_iter()
            .filter(|e| e.involved_object.name.as_deref() == Some(db))
            .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
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
        let patch = json!({"metadata": {"labels": {"kubedb.com/role": role}}});
        self.api::<Pod>()
            .patch(pod, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }
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

pub fn condition_of<'a>(db: &'a MssqlServer, type_: &str) -> &'a Condition {
    let conditions = &db.status.as_ref().unwrap().conditions;
    condition::find(conditions, type_)
        .unwrap_or_else(|| panic!("no condition {type_} in {:?}", summary(conditions)))
}

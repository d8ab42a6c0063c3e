//! Wakes a database's open requests when one of its objects changes. The provisioner watches those
//! objects anyway (StatefulSets, pods, Certificates, TLS secrets, disruption budgets), so the
//! ops-manager takes its next step as soon as the StatefulSet controller has caught up, a pod is
//! Ready or cert-manager has issued, without watching them a second time and without polling for
//! them.

use std::sync::Arc;

use futures::channel::mpsc::{self, UnboundedReceiver, UnboundedSender};
use futures::{Stream, StreamExt, stream};
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use mssql_api::{MssqlServer, MssqlServerOpsRequest};

/// Handed to the provisioner's watches: each change of a database's object wakes its requests.
#[derive(Clone)]
pub struct Waker(UnboundedSender<ObjectRef<MssqlServer>>);

/// The databases woken, in the order their objects changed.
pub struct Wakes(UnboundedReceiver<ObjectRef<MssqlServer>>);

pub fn channel() -> (Waker, Wakes) {
    let (sender, receiver) = mpsc::unbounded();
    (Waker(sender), Wakes(receiver))
}

impl Waker {
    pub fn wake(&self, database: &ObjectRef<MssqlServer>) {
        // Fails only once the ops-manager has stopped, when nothing is left to wake.
        let _ = self.0.unbounded_send(database.clone());
    }
}

impl Wakes {
    /// The next database woken, if one is waiting (tests).
    #[cfg(test)]
    pub fn try_next(&mut self) -> Option<ObjectRef<MssqlServer>> {
        self.0.try_recv().ok()
    }

    /// The requests to reconcile for each woken database, looked up in the ops-manager's store.
    pub fn requests(
        self,
        store: Store<MssqlServerOpsRequest>,
    ) -> impl Stream<Item = ObjectRef<MssqlServerOpsRequest>> + Send + 'static {
        self.0
            .flat_map(move |database| stream::iter(open_requests(&store.state(), &database)))
    }
}

/// The requests of `database` that have not ended: the running one, and pending ones that may be
/// waiting for the database to be Ready.
fn open_requests(
    requests: &[Arc<MssqlServerOpsRequest>],
    database: &ObjectRef<MssqlServer>,
) -> Vec<ObjectRef<MssqlServerOpsRequest>> {
    requests
        .iter()
        .filter(|ops| {
            ops.namespace() == database.namespace
                && ops.spec.database_ref.name == database.name
                && !ops.is_finished()
        })
        .map(|ops| ObjectRef::from_obj(ops.as_ref()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(
        namespace: &str,
        name: &str,
        database: &str,
        phase: &str,
    ) -> Arc<MssqlServerOpsRequest> {
        let mut value = json!({
            "apiVersion": "ops.kubedb.com/v1alpha1",
            "kind": "MSSQLServerOpsRequest",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"type": "Restart", "databaseRef": {"name": database}},
        });
        if !phase.is_empty() {
            value["status"] = json!({"phase": phase});
        }
        Arc::new(serde_json::from_value(value).unwrap())
    }

    fn names(refs: Vec<ObjectRef<MssqlServerOpsRequest>>) -> Vec<String> {
        refs.into_iter().map(|r| r.name).collect()
    }

    #[test]
    fn wakes_only_the_open_requests_of_that_database() {
        let requests = [
            request("demo", "new", "db", ""),
            request("demo", "pending", "db", "Pending"),
            request("demo", "running", "db", "Progressing"),
            request("demo", "done", "db", "Successful"),
            request("demo", "failed", "db", "Failed"),
            request("demo", "skipped", "db", "Skipped"),
            request("demo", "other-db", "db2", "Progressing"),
            request("other", "other-namespace", "db", "Progressing"),
        ];
        let database = ObjectRef::new("db").within("demo");
        assert_eq!(
            names(open_requests(&requests, &database)),
            ["new", "pending", "running"]
        );
        assert!(open_requests(&requests, &ObjectRef::new("absent").within("demo")).is_empty());
        assert!(open_requests(&[], &database).is_empty());
    }

    #[tokio::test]
    async fn each_wake_yields_the_requests_open_at_that_moment() {
        let (reader, mut writer) = kube::runtime::reflector::store();
        let running = request("demo", "running", "db", "Progressing");
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(
            running.as_ref().clone(),
        ));
        let (waker, wakes) = channel();
        let mut requests = Box::pin(wakes.requests(reader));
        let database = ObjectRef::new("db").within("demo");
        waker.wake(&database);
        waker.wake(&ObjectRef::new("quiet").within("demo"));
        waker.wake(&database);
        drop(waker);
        let woken: Vec<_> = requests.by_ref().collect().await;
        assert_eq!(names(woken), ["running", "running"]);
    }
}

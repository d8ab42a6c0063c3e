//! Publishing Events. kube's `Recorder` keeps every Event it published, whole, for 6 minutes, to
//! count a repeat into the Event's series instead of creating another: about 3.4 KiB an Event in
//! memory, so some 30 MiB for the 9,000 Events of 1,000 new databases (docs/benchmarks.md, finding
//! 9). Only warnings repeat (a refused deletion, a failing reconcile, a step still waiting); a
//! Normal Event is one per object created or per step done. So warnings go through one lasting
//! Recorder and are counted, and Normal Events through a new one each time, which keeps nothing.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tracing::warn;

pub struct Events {
    client: Client,
    reporter: Reporter,
    warnings: Recorder,
}

impl Events {
    /// Events reported as `mssql-operator`, and this pod when `POD_NAME` is set.
    pub fn of_operator(client: Client) -> Self {
        let reporter = Reporter {
            controller: super::NAME.to_owned(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self::new(client, reporter)
    }

    pub fn new(client: Client, reporter: Reporter) -> Self {
        Self {
            warnings: Recorder::new(client.clone(), reporter.clone()),
            client,
            reporter,
        }
    }

    /// Publishes `event` about `regarding`; a failure is logged, as an Event is never worth
    /// failing a reconcile for.
    pub async fn publish(&self, event: &Event, regarding: &ObjectReference) {
        let result = if event.type_ == EventType::Warning {
            self.warnings.publish(event, regarding).await
        } else {
            Recorder::new(self.client.clone(), self.reporter.clone())
                .publish(event, regarding)
                .await
        };
        if let Err(error) = result {
            warn!(%error, reason = %event.reason, "could not publish an event");
        }
    }
}

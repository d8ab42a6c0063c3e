//! What a coordinator tells people: a Normal Event on the database at each promotion, saying why,
//! and a Warning when the group cannot elect a primary, saying why. Each is told once per change
//! of its words, not every tick.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client, Resource};
use mssql_api::MssqlServer;
use tracing::warn;

use crate::API_DEADLINE;

pub struct Told {
    client: Client,
    reporter: Reporter,
    regarding: ObjectReference,
    last: Option<String>,
}

impl Told {
    /// Events about database `database`, reported as `mssql-coordinator` of `pod`. Its uid (which
    /// `kubectl describe` matches on) is read once; where it cannot be read at once, the Events
    /// name the database without it, so that a coordinator starting while the API server is away
    /// is not held up.
    pub async fn new(client: Client, namespace: &str, database: &str, pod: &str) -> Self {
        let databases: Api<MssqlServer> = Api::namespaced(client.clone(), namespace);
        let read = tokio::time::timeout(API_DEADLINE, databases.get(database)).await;
        let regarding = match read {
            Ok(Ok(db)) => db.object_ref(&()),
            _ => {
                warn!("cannot read the database; its Events carry no uid");
                ObjectReference {
                    api_version: Some(MssqlServer::api_version(&()).into_owned()),
                    kind: Some(MssqlServer::kind(&()).into_owned()),
                    name: Some(database.to_owned()),
                    namespace: Some(namespace.to_owned()),
                    ..ObjectReference::default()
                }
            }
        };
        let reporter = Reporter {
            controller: mssql_api::CONTAINER_COORDINATOR.to_owned(),
            instance: Some(pod.to_owned()),
        };
        Self {
            client,
            reporter,
            regarding,
            last: None,
        }
    }

    /// Tells `note` unless it was the last thing told.
    pub async fn tell(&mut self, type_: EventType, reason: &str, note: String) {
        if self.last.as_deref() == Some(note.as_str()) {
            return;
        }
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note.clone()),
            action: "Coordinate".to_owned(),
            secondary: None,
        };
        // A recorder of its own for each note: kube's counts an Event with the reason of an earlier
        // one as a repeat of it (a series), keeping the earlier note, so a second promotion's
        // reason, or a second replica added, would not be read anywhere.
        let recorder = Recorder::new(self.client.clone(), self.reporter.clone());
        let publish = recorder.publish(&event, &self.regarding);
        match tokio::time::timeout(API_DEADLINE, publish).await {
            Ok(Ok(())) => self.last = Some(note),
            Ok(Err(error)) => warn!(%error, reason, "could not publish an event"),
            Err(_) => warn!(reason, "could not publish an event: no answer in time"),
        }
    }
}

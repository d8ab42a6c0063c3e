//! Observe: what the database's StatefulSets and pods say now — readiness, roles, what each
//! replica's SQL Server says, the certificates each pod started with, and, for a pod that is not
//! Ready, why.

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::{Api, Client};
use mssql_api::names;
use mssql_api::pods::StartedCertificate;
use mssql_api::validated::{Server, Topology};

use super::status::Observed;
use super::{Context, Error, health, replicas};

fn observing(what: &'static str) -> impl FnOnce(kube::Error) -> Error {
    move |source| Error::Observe { what, source }
}

/// What the watches say of the StatefulSet's and the pods' readiness, roles and the certificates
/// they started with (`secrets`: what each alias's Secret holds now); records the certificates'
/// expiry as pods run them in the metrics. Reads the API server only for why a pod the
/// StatefulSet controller should have made is missing.
pub async fn observe(
    context: &Context,
    server: &Server,
    secrets: BTreeMap<String, StartedCertificate>,
) -> Result<Observed, Error> {
    let client = &context.client;
    let known = &context.known;
    let counts = |statefulset: &str| {
        known
            .statefulset(&server.namespace, statefulset)
            .unwrap_or_default()
    };
    let ready_replicas = counts(&server.name).ready;
    let pods = known.pods_of(&server.namespace, &server.name);
    let primary_ready =
        (server.topology != Topology::Standalone).then(|| replicas::primary_ready(&pods));
    let group = match server.group() {
        Some(_) => replicas::of(&server.name, &pods),
        None => Vec::new(),
    };
    let started = pods
        .iter()
        .filter(|p| !p.terminating && !p.started.is_empty())
        .map(|p| (p.name.clone(), p.started.iter().cloned().collect()))
        .collect();
    let mut not_ready = Vec::new();
    let arbiter = server
        .arbiter
        .as_ref()
        .map(|_| names::arbiter(&server.name));
    let workloads = [(server.name.clone(), server.replicas)]
        .into_iter()
        .chain(arbiter.map(|name| (name, 1)));
    for (statefulset, replicas) in workloads {
        let missing = (0..replicas).any(|ordinal| {
            let pod = format!("{statefulset}-{ordinal}");
            !pods.iter().any(|p| p.name == pod)
        });
        // Only a pod the StatefulSet controller failed to create costs a read: what it said. A
        // pod not made yet (the controller has not seen the StatefulSet) costs nothing.
        let made = counts(&statefulset);
        let cannot_create = match missing && made.caught_up && made.created < replicas {
            true => creation_failure(client, &server.namespace, &statefulset).await?,
            false => None,
        };
        not_ready.extend(health::not_ready(
            &statefulset,
            replicas,
            &pods,
            cannot_create.as_deref(),
        ));
    }
    let observed = Observed {
        replicas: server.replicas,
        ready_replicas,
        primary_ready,
        group,
        started,
        secrets,
        rollout: None,
        not_ready,
    };
    context
        .metrics
        .certificates(&server.namespace, &server.name, &observed.running());
    Ok(observed)
}

/// How long a StatefulSet's `FailedCreate` Event tells why a pod is missing: the controller
/// retries with a back-off of up to about 16 minutes, repeating the Event each time.
const CREATION_FAILURE_FRESH: i64 = 20 * 60;

/// The message of the StatefulSet's latest recent `FailedCreate` Event, if any.
async fn creation_failure(
    client: &Client,
    namespace: &str,
    statefulset: &str,
) -> Result<Option<String>, Error> {
    let fields = format!(
        "involvedObject.kind=StatefulSet,involvedObject.name={statefulset},reason=FailedCreate"
    );
    let events = Api::<k8s_openapi::api::core::v1::Event>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().fields(&fields))
        .await
        .map_err(observing("the StatefulSet's events"))?;
    let when = |e: &k8s_openapi::api::core::v1::Event| {
        e.last_timestamp
            .as_ref()
            .map(|t| t.0)
            .or(e.event_time.as_ref().map(|t| t.0))
    };
    let now = Timestamp::now();
    Ok(events
        .items
        .iter()
        .filter(|e| {
            when(e).is_some_and(|t| now.as_second() - t.as_second() < CREATION_FAILURE_FRESH)
        })
        .max_by_key(|e| when(e))
        .and_then(|e| e.message.clone()))
}

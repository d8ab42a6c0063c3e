//! Observe: what the database's StatefulSets and pods say now — readiness, roles, the
//! certificates each pod started with, and, for a pod that is not Ready, why.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use mssql_api::labels::{self, ROLE_PRIMARY, selector_string};
use mssql_api::names;
use mssql_api::pods::{StartedCertificate, is_ready, role, started_with};
use mssql_api::validated::{Server, Topology};

use super::status::Observed;
use super::{Context, Error, health};

fn observing(what: &'static str) -> impl FnOnce(kube::Error) -> Error {
    move |source| Error::Observe { what, source }
}

/// Reads the StatefulSet's and the pods' readiness, roles and the certificates they started with
/// (`secrets`: what each alias's Secret holds now); records the certificates' expiry as pods run
/// them in the metrics.
pub async fn observe(
    context: &Context,
    server: &Server,
    secrets: BTreeMap<String, StartedCertificate>,
) -> Result<Observed, Error> {
    let client = &context.client;
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), &server.namespace);
    let ready_replicas = statefulsets
        .get_opt(&server.name)
        .await
        .map_err(observing("the statefulset"))?
        .and_then(|s| s.status)
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    let pods = Api::<Pod>::namespaced(client.clone(), &server.namespace)
        .list(&ListParams::default().labels(&selector_string(&labels::selector(&server.name))))
        .await
        .map_err(observing("the pods"))?;
    let primary_ready = (server.topology != Topology::Standalone).then(|| {
        pods.items
            .iter()
            .any(|p| role(p) == Some(ROLE_PRIMARY) && is_ready(p))
    });
    let started = pods
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| (p.name_any(), started_with(p)))
        .filter(|(_, started)| !started.is_empty())
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
            !pods.items.iter().any(|p| p.name_any() == pod)
        });
        // Only a missing pod costs a read: what the StatefulSet controller said when it failed.
        let cannot_create = match missing {
            true => creation_failure(client, &server.namespace, &statefulset).await?,
            false => None,
        };
        not_ready.extend(health::not_ready(
            &statefulset,
            replicas,
            &pods.items,
            cannot_create.as_deref(),
        ));
    }
    let observed = Observed {
        replicas: server.replicas,
        ready_replicas,
        primary_ready,
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

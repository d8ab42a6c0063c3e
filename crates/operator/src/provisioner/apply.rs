//! Apply: every object of the database's typed set, in a fixed order (what the pods mount and run
//! as, then their workload), each skipped when it is as last applied; then the objects an earlier
//! shape of the database left behind are deleted.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ObjectReference, Service};
use kube::{Client, Resource};

use super::Error;
use crate::build::resources::{Coordination, Orphans, Resources, Workload};
use crate::controller::apply::{Applied, Namespaced, apply, create_once, delete_if_present};
use crate::controller::owned::Owned;
use crate::controller::store::{Key, Store};

/// What applying the set did.
#[derive(Default)]
pub struct Outcome {
    /// The objects created, in order, for the pass's Event: `(what, reference)`.
    pub created: Vec<(String, ObjectReference)>,
    /// Every object of the set.
    pub objects: Vec<Key>,
}

/// Applies `resources` in `namespace`; deletes `orphans` when the pods' StatefulSet was updated (a
/// new shape of the database is what leaves objects behind; a new or unchanged one costs nothing).
pub async fn apply_all(
    client: &Client,
    known: &Store<Owned>,
    namespace: &str,
    resources: Resources,
    orphans: &Orphans,
) -> Result<Outcome, Error> {
    // Every field, named: a kind added to the set does not compile until it is applied here.
    let Resources {
        auth_secret,
        certificates,
        config_secret,
        service_account,
        services,
        disruption_budget,
        coordination,
        workload,
    } = resources;
    let mut pass = Pass {
        client,
        known,
        namespace,
        outcome: Outcome::default(),
    };
    if let Some(secret) = auth_secret {
        pass.create_once(&secret).await?;
    }
    for certificate in certificates {
        pass.apply(certificate).await?;
    }
    pass.apply(config_secret).await?;
    if let Some(account) = service_account {
        pass.apply(account).await?;
    }
    for service in services {
        pass.apply(service).await?;
    }
    pass.apply(disruption_budget).await?;
    if let Some(Coordination {
        secrets,
        lease,
        role,
        role_binding,
    }) = coordination
    {
        for secret in &secrets {
            pass.create_once(secret).await?;
        }
        pass.create_once(&lease).await?;
        pass.apply(role).await?;
        pass.apply(role_binding).await?;
    }
    if let Some(Workload {
        statefulset,
        arbiter,
    }) = workload
    {
        let updated = pass.apply(statefulset).await? == Applied::Updated;
        if let Some(arbiter) = arbiter {
            pass.apply(arbiter).await?;
        }
        if updated {
            delete_orphans(client, known, namespace, orphans).await?;
        }
    }
    Ok(pass.outcome)
}

/// Deletes those of `orphans` the watches know (they carry the operator's labels, so one that
/// exists is known: one that is not costs no request).
async fn delete_orphans(
    client: &Client,
    known: &Store<Owned>,
    namespace: &str,
    orphans: &Orphans,
) -> Result<(), Error> {
    let Orphans {
        statefulsets,
        services,
    } = orphans;
    let deleting = |what: String| move |source| Error::Apply { what, source };
    for name in statefulsets {
        if known.contains(&Key::of::<StatefulSet>(namespace, name)) {
            delete_if_present::<StatefulSet>(client, namespace, name)
                .await
                .map_err(deleting(format!("deleting statefulset {name}")))?;
        }
    }
    for name in services {
        if known.contains(&Key::of::<Service>(namespace, name)) {
            delete_if_present::<Service>(client, namespace, name)
                .await
                .map_err(deleting(format!("deleting service {name}")))?;
        }
    }
    Ok(())
}

/// `statefulset ms-0`: an object as messages name it.
fn describe<K: Resource<DynamicType = ()>>(object: &K) -> String {
    format!(
        "{} {}",
        K::kind(&()).to_lowercase(),
        object.meta().name.as_deref().unwrap_or_default()
    )
}

fn applying<K: Resource<DynamicType = ()>>(object: &K) -> impl FnOnce(kube::Error) -> Error {
    let what = format!("applying {}", describe(object));
    move |source| Error::Apply { what, source }
}

/// One pass of applies, noting what it created.
struct Pass<'a> {
    client: &'a Client,
    known: &'a Store<Owned>,
    namespace: &'a str,
    outcome: Outcome,
}

impl Pass<'_> {
    fn note<K: Resource<DynamicType = ()>>(&mut self, object: &K, applied: Applied) {
        let name = object.meta().name.as_deref().unwrap_or_default();
        self.outcome
            .objects
            .push(Key::of::<K>(self.namespace, name));
        if applied == Applied::Created {
            self.outcome
                .created
                .push((describe(object), object.object_ref(&())));
        }
    }

    /// Creates `object` once: never written again (a generated password, a Lease that is its
    /// holders' to write).
    async fn create_once<K: Namespaced>(&mut self, object: &K) -> Result<(), Error> {
        let applied = create_once(self.client, self.known, self.namespace, object)
            .await
            .map_err(applying(object))?;
        self.note(object, applied);
        Ok(())
    }

    async fn apply<K: Namespaced>(&mut self, object: K) -> Result<Applied, Error> {
        let applied = apply(self.client, self.known, self.namespace, object.clone())
            .await
            .map_err(applying(&object))?;
        self.note(&object, applied);
        Ok(applied)
    }
}

//! What each database's objects were last built from. Building every object, and hashing it to
//! compare with what was applied, was most of a pass's work, and most passes (a pod became Ready,
//! a Secret was issued for another alias) change none of the inputs. A pass whose inputs are
//! those of the last build, while every object that build applied is still as it applied it
//! (none deleted, none edited by someone else, none applied since by the ops-manager), builds
//! nothing.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Mutex, MutexGuard};

use mssql_api::{MssqlServer, MssqlServerVersion};

use super::dereference::Material;
use crate::controller::known::Known;
use crate::controller::owned::Owned;
use crate::controller::store::{Key, Store};

#[derive(Default)]
pub struct Built {
    /// By database (namespace, name).
    builds: Mutex<HashMap<(String, String), Build>>,
}

struct Build {
    inputs: u64,
    objects: Box<[Key]>,
    /// The objects' applied hashes, as the build left them.
    applied: u64,
}

impl Built {
    /// Whether the last build of `db` was from `inputs` and left objects that are still as it
    /// applied them.
    pub fn unchanged(&self, db: &(String, String), inputs: u64, owned: &Store<Owned>) -> bool {
        let builds = self.lock();
        let Some(build) = builds.get(db) else {
            return false;
        };
        build.inputs == inputs && applied(&build.objects, owned) == Some(build.applied)
    }

    /// A build of `db` from `inputs` applied `objects` (each now as `owned` knows it).
    pub fn record(
        &self,
        db: (String, String),
        inputs: u64,
        objects: Vec<Key>,
        owned: &Store<Owned>,
    ) {
        let mut builds = self.lock();
        match applied(&objects, owned) {
            Some(applied) => {
                let objects = objects.into_boxed_slice();
                builds.insert(
                    db,
                    Build {
                        inputs,
                        objects,
                        applied,
                    },
                );
            }
            None => {
                builds.remove(&db);
            }
        }
    }

    pub fn forget(&self, db: &(String, String)) {
        self.lock().remove(db);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<(String, String), Build>> {
        self.builds.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What a build of `db` is made from, as a digest: its spec and metadata (uid, generation,
/// labels, annotations), its catalog entry, what its pods start with (the restart hash covers
/// the certificates, their CA and `mssql.conf`) or which Secret it waits for, and how many pods
/// it keeps (`provisioner::scale`).
pub fn inputs(db: &MssqlServer, known: &Known, material: &Material, replicas: i32) -> u64 {
    let mut hasher = DefaultHasher::new();
    replicas.hash(&mut hasher);
    db.metadata.uid.hash(&mut hasher);
    db.metadata.generation.hash(&mut hasher);
    db.metadata.labels.hash(&mut hasher);
    db.metadata.annotations.hash(&mut hasher);
    let version = Key::of::<MssqlServerVersion>("", &db.spec.version);
    known.versions.with(&version, |entry| {
        entry
            .and_then(|entry| entry.metadata.resource_version.as_deref())
            .hash(&mut hasher)
    });
    match material {
        Material::Issued(start) => start.restart_hash.hash(&mut hasher),
        Material::Missing { secret } => secret.hash(&mut hasher),
    }
    hasher.finish()
}

/// A digest of the objects' applied hashes; `None` when one is gone or changed by someone else.
fn applied(objects: &[Key], owned: &Store<Owned>) -> Option<u64> {
    let mut hasher = DefaultHasher::new();
    for key in objects {
        owned.with(key, |known| match known {
            Some(known) if !known.drifted() => {
                known.applied_hash.hash(&mut hasher);
                Some(())
            }
            _ => None,
        })?;
    }
    Some(hasher.finish())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, ObjectMeta, Time};
    use k8s_openapi::jiff::Timestamp;
    use mssql_api::annotations::APPLIED_HASH;

    use super::*;
    use crate::controller::apply::FIELD_MANAGER;

    fn written(manager: &str, second: i64, hash: &str) -> Owned {
        let entry = ManagedFieldsEntry {
            manager: Some(manager.to_owned()),
            operation: Some("Apply".to_owned()),
            time: Some(Time(Timestamp::from_second(second).unwrap())),
            ..ManagedFieldsEntry::default()
        };
        let mut entries = vec![ManagedFieldsEntry {
            manager: Some(FIELD_MANAGER.to_owned()),
            ..entry.clone()
        }];
        if manager != FIELD_MANAGER {
            entries.push(entry);
        }
        Owned::of(
            &ObjectMeta {
                resource_version: Some(second.to_string()),
                annotations: Some([(APPLIED_HASH.to_owned(), hash.to_owned())].into()),
                managed_fields: Some(entries),
                ..ObjectMeta::default()
            },
            None,
        )
    }

    #[test]
    fn a_build_is_remembered_while_its_inputs_and_objects_stay_as_they_were() {
        let db = ("ns".to_owned(), "db".to_owned());
        let objects = vec![
            Key::of::<Service>("ns", "db"),
            Key::of::<Service>("ns", "db-pods"),
        ];
        let owned = Store::default();
        for key in &objects {
            owned.insert(key.clone(), written(FIELD_MANAGER, 10, "h1"));
        }
        let built = Built::default();
        assert!(!built.unchanged(&db, 7, &owned), "nothing built yet");
        built.record(db.clone(), 7, objects.clone(), &owned);
        assert!(built.unchanged(&db, 7, &owned));
        assert!(!built.unchanged(&db, 8, &owned), "other inputs");

        // The ops-manager applied another version of one object.
        owned.insert(objects[1].clone(), written(FIELD_MANAGER, 11, "h2"));
        assert!(!built.unchanged(&db, 7, &owned));
        built.record(db.clone(), 7, objects.clone(), &owned);
        assert!(built.unchanged(&db, 7, &owned));

        // Someone else edited it.
        owned.insert(objects[1].clone(), written("kubectl", 12, "h2"));
        assert!(!built.unchanged(&db, 7, &owned));
        owned.insert(objects[1].clone(), written(FIELD_MANAGER, 13, "h2"));
        assert!(built.unchanged(&db, 7, &owned), "put back as it was");

        // It was deleted.
        let gone: Store<Owned> = Store::default();
        owned.with(&objects[0], |o| {
            gone.insert(objects[0].clone(), o.unwrap().clone())
        });
        assert!(!built.unchanged(&db, 7, &gone));

        built.forget(&db);
        assert!(!built.unchanged(&db, 7, &owned));
    }
}

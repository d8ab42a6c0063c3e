//! What the operator knows of an object it applies, from its watch: the hash it last applied, and
//! whether another writer changed the object since. Together they decide whether an apply is
//! needed: one whose object is as applied and untouched costs no request, and a manual edit
//! (a StatefulSet's image, a Service's selector) is answered with an apply that puts it back.
//!
//! Who wrote an object is in its `managedFields`: each writer's entry names the fields it set and
//! the time of its last change (a status written through its subresource is not a change of what
//! the operator applies, and is left out). Another writer's entries that changed since the
//! operator last answered them are drift when they are not older than its own last apply: an
//! apply after an edit has already put back what the operator manages. The API server keeps those
//! times to the second, so an edit in the same second as the apply counts as drift too; the apply
//! that answers it remembers the entries it answered, so an edit that changed nothing of the
//! operator's (a label someone added) costs one apply, not one at every pass.

use std::hash::{DefaultHasher, Hash, Hasher};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use mssql_api::annotations;

use super::apply::FIELD_MANAGER;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Owned {
    /// The `applied-hash` annotation: what the operator last applied.
    pub applied_hash: Option<String>,
    pub generation: Option<i64>,
    resource_version: Option<String>,
    /// The operator's last apply.
    applied_at: Option<Timestamp>,
    /// Other writers' entries: when the latest changed, and a digest of them all.
    others: Option<(Timestamp, u64)>,
    /// The digest of other writers' entries the operator's last apply answered.
    answered: Option<u64>,
}

impl Owned {
    /// From an object as the watch (`known`: what was known of it before) or a create's response
    /// (`known: None`) has it.
    pub fn of(meta: &ObjectMeta, known: Option<&Owned>) -> Self {
        let entries: Vec<&ManagedFieldsEntry> = meta
            .managed_fields
            .iter()
            .flatten()
            .filter(|e| e.subresource.as_deref().unwrap_or_default().is_empty())
            .collect();
        let applied_at = entries
            .iter()
            .filter(|e| {
                e.manager.as_deref() == Some(FIELD_MANAGER)
                    && e.operation.as_deref() == Some("Apply")
            })
            .filter_map(|e| e.time.as_ref().map(|t| t.0))
            .max();
        let others: Vec<&&ManagedFieldsEntry> = entries
            .iter()
            .filter(|e| e.manager.as_deref() != Some(FIELD_MANAGER))
            .collect();
        let latest = others
            .iter()
            .filter_map(|e| e.time.as_ref().map(|t| t.0))
            .max();
        let owned = Self {
            applied_hash: meta
                .annotations
                .as_ref()
                .and_then(|a| a.get(annotations::APPLIED_HASH))
                .cloned(),
            generation: meta.generation,
            resource_version: meta.resource_version.clone(),
            applied_at,
            others: latest.map(|latest| (latest, digest(&others))),
            answered: None,
        };
        match known {
            // A late event from before the operator's own write: what it wrote is newer.
            Some(known) if older(&owned.resource_version, &known.resource_version) => known.clone(),
            Some(known) => Self {
                answered: known.answered,
                ..owned
            },
            None => owned,
        }
    }

    /// From the response to the operator's own apply: every other writer's entry is answered.
    pub fn applied(meta: &ObjectMeta) -> Self {
        let owned = Self::of(meta, None);
        Self {
            answered: owned.others.map(|(_, digest)| digest),
            ..owned
        }
    }

    /// Whether the object is as applied with `hash` and nobody changed it since.
    pub fn is_current(&self, hash: &str) -> bool {
        self.applied_hash.as_deref() == Some(hash) && !self.drifted()
    }

    /// Another writer changed the object, not before the operator's last apply, and the operator
    /// has not answered that change yet.
    pub fn drifted(&self) -> bool {
        match self.others {
            None => false,
            Some((_, digest)) if Some(digest) == self.answered => false,
            Some((latest, _)) => self.applied_at.is_none_or(|applied| latest >= applied),
        }
    }
}

/// A digest of managed-fields entries: who, how, when and which fields.
fn digest(entries: &[&&ManagedFieldsEntry]) -> u64 {
    let mut hasher = DefaultHasher::new();
    for entry in entries {
        entry.manager.hash(&mut hasher);
        entry.operation.hash(&mut hasher);
        entry
            .time
            .as_ref()
            .map(|t| t.0.as_nanosecond())
            .hash(&mut hasher);
        entry
            .fields_v1
            .as_ref()
            .map(|f| f.0.to_string())
            .hash(&mut hasher);
    }
    hasher.finish()
}

/// Whether resourceVersion `a` is older than `b`. Resource versions are etcd revisions; one that
/// is not a number is never taken for older.
fn older(a: &Option<String>, b: &Option<String>) -> bool {
    let number = |v: &Option<String>| v.as_deref().and_then(|v| v.parse::<u64>().ok());
    matches!((number(a), number(b)), (Some(a), Some(b)) if a < b)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    fn entry(manager: &str, operation: &str, second: i64, subresource: &str) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: Some(manager.to_owned()),
            operation: Some(operation.to_owned()),
            time: Some(Time(Timestamp::from_second(second).unwrap())),
            subresource: (!subresource.is_empty()).then(|| subresource.to_owned()),
            ..ManagedFieldsEntry::default()
        }
    }

    fn meta(version: &str, entries: Vec<ManagedFieldsEntry>) -> ObjectMeta {
        ObjectMeta {
            resource_version: Some(version.to_owned()),
            annotations: Some([(annotations::APPLIED_HASH.to_owned(), "h1".to_owned())].into()),
            managed_fields: Some(entries),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn an_object_as_applied_is_current_and_a_status_writer_does_not_change_that() {
        let seen = Owned::of(
            &meta(
                "10",
                vec![
                    entry(FIELD_MANAGER, "Apply", 100, ""),
                    entry("kube-controller-manager", "Update", 200, "status"),
                    entry(FIELD_MANAGER, "Update", 300, "status"),
                ],
            ),
            None,
        );
        assert!(seen.is_current("h1"));
        assert!(!seen.is_current("h2"), "another spec is applied");
    }

    #[test]
    fn an_edit_by_someone_else_after_the_apply_is_drift_until_answered() {
        let edited = meta(
            "11",
            vec![
                entry(FIELD_MANAGER, "Apply", 100, ""),
                entry("kubectl-edit", "Update", 150, ""),
            ],
        );
        let seen = Owned::of(&edited, None);
        assert!(seen.drifted());
        assert!(!seen.is_current("h1"));

        // The apply put the image back: the operator's entry is newer.
        let answered = meta(
            "12",
            vec![
                entry(FIELD_MANAGER, "Apply", 160, ""),
                entry("kubectl-edit", "Update", 150, ""),
            ],
        );
        assert!(Owned::of(&answered, Some(&seen)).is_current("h1"));
    }

    #[test]
    fn an_edit_in_the_same_second_as_the_apply_is_drift_and_answered_once() {
        // A label added in the second the operator applied: it may be later, so it is answered.
        let label = meta(
            "13",
            vec![
                entry(FIELD_MANAGER, "Apply", 100, ""),
                entry("kubectl-label", "Update", 100, ""),
            ],
        );
        assert!(Owned::of(&label, None).drifted());
        // The apply had nothing to put back: the object is as it was, and that is remembered.
        let after_apply = Owned::applied(&label);
        assert!(after_apply.is_current("h1"));
        // A later status change (a new resourceVersion) still finds it answered.
        let status_written = Owned::of(
            &meta("15", label.managed_fields.clone().unwrap()),
            Some(&after_apply),
        );
        assert!(status_written.is_current("h1"));
        // A new edit is drift again, even by the same writer.
        let again = meta(
            "16",
            vec![
                entry(FIELD_MANAGER, "Apply", 100, ""),
                entry("kubectl-label", "Update", 180, ""),
            ],
        );
        assert!(Owned::of(&again, Some(&status_written)).drifted());
    }

    #[test]
    fn a_late_event_from_before_the_operators_write_does_not_undo_what_it_knows() {
        let written = Owned::applied(&meta("20", vec![entry(FIELD_MANAGER, "Apply", 100, "")]));
        let mut stale = meta("19", vec![entry(FIELD_MANAGER, "Apply", 90, "")]);
        stale.annotations = None;
        assert_eq!(Owned::of(&stale, Some(&written)), written);
    }

    #[test]
    fn an_object_nobody_applied_is_never_current() {
        let created = ObjectMeta {
            managed_fields: Some(vec![entry("someone", "Update", 100, "")]),
            ..ObjectMeta::default()
        };
        let seen = Owned::of(&created, None);
        assert!(!seen.is_current("h1"));
        assert!(seen.drifted());
    }
}

//! KubeDB's labels. Users and tools select a database's objects by them, so they are KubeDB's
//! exact keys and values.

use std::collections::BTreeMap;

use crate::validated::Server;

pub type Labels = BTreeMap<String, String>;

pub const NAME: &str = "app.kubernetes.io/name";
pub const INSTANCE: &str = "app.kubernetes.io/instance";
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const COMPONENT: &str = "app.kubernetes.io/component";
/// Set on pods by the coordinator (or, in tests, by hand): `primary`, `secondary`, `arbiter`.
pub const ROLE: &str = "kubedb.com/role";

pub const NAME_VALUE: &str = "mssqlservers.kubedb.com";
pub const MANAGED_BY_VALUE: &str = "kubedb.com";
pub const COMPONENT_DATABASE: &str = "database";
pub const ROLE_PRIMARY: &str = "primary";
pub const ROLE_SECONDARY: &str = "secondary";
pub const ROLE_ARBITER: &str = "arbiter";

/// The labels that select everything of one database (and its pods).
pub fn selector(db: &str) -> Labels {
    [
        (NAME, NAME_VALUE),
        (INSTANCE, db),
        (MANAGED_BY, MANAGED_BY_VALUE),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// Labels of every object the operator creates: the database's own labels, then KubeDB's (which
/// win, so a user label can never break a selector).
pub fn offshoot(server: &Server) -> Labels {
    let mut labels = server.labels.clone();
    labels.extend(selector(&server.name));
    labels.insert(COMPONENT.to_owned(), COMPONENT_DATABASE.to_owned());
    labels
}

/// A label selector string for list calls: `k=v,k=v`.
pub fn selector_string(labels: &Labels) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

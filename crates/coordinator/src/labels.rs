//! The `kubedb.com/role` labels the Lease holder writes once its server is primary, and their
//! order: every other pod labelled `primary` loses it first, then the secondaries are labelled,
//! and the primary last. So no two pods are ever labelled `primary` at once; between the first
//! and the last write the `<db>` Service selects nobody, and clients retry.

use mssql_api::labels::{ROLE_PRIMARY, ROLE_SECONDARY};

/// A pod of the group and its role label now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pod<'a> {
    pub name: &'a str,
    pub role: Option<&'a str>,
}

/// The label writes to make, in order. `secondaries` are the pods whose servers the primary sees
/// as its secondaries; a pod it does not see keeps its label, except that it never keeps
/// `primary`.
pub fn relabel<'a>(
    pods: &[Pod<'a>],
    primary: &'a str,
    secondaries: &[&'a str],
) -> Vec<(&'a str, &'static str)> {
    let mut writes = Vec::new();
    for pod in pods {
        if pod.name != primary && pod.role == Some(ROLE_PRIMARY) {
            writes.push((pod.name, ROLE_SECONDARY));
        }
    }
    for pod in pods {
        let confirmed = secondaries.contains(&pod.name) && pod.name != primary;
        if confirmed
            && pod
                .role
                .is_none_or(|role| role != ROLE_SECONDARY && role != ROLE_PRIMARY)
        {
            writes.push((pod.name, ROLE_SECONDARY));
        }
    }
    if pods
        .iter()
        .any(|pod| pod.name == primary && pod.role != Some(ROLE_PRIMARY))
    {
        writes.push((primary, ROLE_PRIMARY));
    }
    writes
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn pod<'a>(name: &'a str, role: Option<&'a str>) -> Pod<'a> {
        Pod { name, role }
    }

    #[test]
    fn at_a_change_of_primary_the_old_one_loses_its_label_before_the_new_one_gets_it() {
        let pods = [
            pod("ag-0", Some("primary")),
            pod("ag-1", Some("secondary")),
            pod("ag-2", Some("secondary")),
        ];
        assert_eq!(
            relabel(&pods, "ag-1", &["ag-2"]),
            [("ag-0", "secondary"), ("ag-1", "primary")]
        );
    }

    #[test]
    fn a_new_group_labels_its_secondaries_then_its_primary() {
        let pods = [pod("ag-0", None), pod("ag-1", None), pod("ag-2", None)];
        assert_eq!(
            relabel(&pods, "ag-0", &["ag-1", "ag-2"]),
            [
                ("ag-1", "secondary"),
                ("ag-2", "secondary"),
                ("ag-0", "primary")
            ]
        );
    }

    #[test]
    fn nothing_is_written_when_the_labels_are_right() {
        let pods = [pod("ag-0", Some("primary")), pod("ag-1", Some("secondary"))];
        assert!(relabel(&pods, "ag-0", &["ag-1"]).is_empty());
    }

    #[test]
    fn a_pod_the_primary_does_not_see_keeps_its_label_but_never_primary() {
        // ag-2 restarted (no label yet) and has not rejoined: it stays out of the Services.
        let pods = [
            pod("ag-0", Some("secondary")),
            pod("ag-1", Some("primary")),
            pod("ag-2", None),
        ];
        assert_eq!(
            relabel(&pods, "ag-0", &[]),
            [("ag-1", "secondary"), ("ag-0", "primary")]
        );
    }
}

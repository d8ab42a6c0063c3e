//! How many pods an availability group's StatefulSet has while the group is scaled down. The
//! coordinators read `spec.replicas` themselves: a pod the spec no longer wants hands the primary
//! role over, and the primary removes it from the group (docs/coordinator.md, "Scaling"). Only
//! then does the StatefulSet let it go, and its volume with it: no pod is removed while it is the
//! primary or still one of the group's replicas. Scaling up needs no wait.

use mssql_api::labels::ROLE_PRIMARY;
use mssql_api::pods::SQL_PRIMARY;
use mssql_api::validated::Server;

use crate::controller::pods::PodFacts;

/// The StatefulSet's replica count now, and while it keeps pods the spec no longer wants, why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scale {
    pub replicas: i32,
    pub holding: Option<String>,
}

/// The ordinal of a pod of `database`'s StatefulSet (not its arbiter's).
fn ordinal(database: &str, pod: &str) -> Option<i32> {
    pod.strip_prefix(database)?.strip_prefix('-')?.parse().ok()
}

/// The StatefulSet's count for `server`, whose pods are `pods`.
pub fn scale(server: &Server, pods: &[PodFacts]) -> Scale {
    let wanted = server.replicas;
    let to = |replicas, holding: Option<String>| Scale { replicas, holding };
    let db = server.name.as_str();
    let running = pods
        .iter()
        .filter_map(|p| ordinal(db, &p.name))
        .max()
        .map_or(0, |highest| highest + 1);
    if server.group().is_none() || running <= wanted {
        return to(wanted, None);
    }
    let hold = |why: String| to(running, Some(why));
    let primaries: Vec<&PodFacts> = pods
        .iter()
        .filter(|p| ordinal(db, &p.name).is_some() && p.role.as_deref() == Some(ROLE_PRIMARY))
        .collect();
    let [primary] = primaries.as_slice() else {
        return hold(format!(
            "{} pods are labelled primary: the group must have one to let a replica go",
            primaries.len()
        ));
    };
    if ordinal(db, &primary.name).is_some_and(|n| n >= wanted) {
        return hold(format!(
            "{} is the primary: it hands the role to a replica the group keeps first",
            primary.name
        ));
    }
    let Some(report) = primary
        .replica
        .as_ref()
        .filter(|r| r.role.as_deref() == Some(SQL_PRIMARY))
    else {
        return hold(format!(
            "{}'s coordinator has not reported its server primary yet",
            primary.name
        ));
    };
    let leaving: Vec<&str> = report
        .replicas
        .iter()
        .filter(|name| ordinal(db, name).is_some_and(|n| n >= wanted))
        .map(String::as_str)
        .collect();
    if !leaving.is_empty() {
        return hold(format!(
            "the group still has {}: the primary removes them first",
            leaving.join(", ")
        ));
    }
    to(wanted, None)
}

#[cfg(test)]
mod tests {
    use mssql_api::pods::ReplicaReport;
    use pretty_assertions::assert_eq;

    use super::*;
    use crate::build::tests::group_server;

    fn pod(name: &str, role: &str, replicas: &[&str]) -> PodFacts {
        PodFacts {
            name: name.to_owned(),
            role: Some(role.to_owned()),
            replica: Some(ReplicaReport {
                role: Some(
                    if role == ROLE_PRIMARY {
                        "PRIMARY"
                    } else {
                        "SECONDARY"
                    }
                    .to_owned(),
                ),
                synchronized: true,
                connected: true,
                since: String::new(),
                replicas: replicas.iter().map(|r| (*r).to_owned()).collect(),
                endpoint: None,
            }),
            ..PodFacts::default()
        }
    }

    const FIVE: [&str; 5] = ["ag-0", "ag-1", "ag-2", "ag-3", "ag-4"];

    fn group(primary: usize, listed: &[&str]) -> Vec<PodFacts> {
        FIVE.iter()
            .enumerate()
            .map(|(i, name)| {
                if i == primary {
                    pod(name, ROLE_PRIMARY, listed)
                } else {
                    pod(name, "secondary", &[])
                }
            })
            .collect()
    }

    #[test]
    fn scaling_up_or_staying_needs_no_wait() {
        let three = group_server(3);
        assert_eq!(scale(&three, &group(0, &FIVE)[..2]).replicas, 3);
        assert_eq!(scale(&three, &group(0, &FIVE)[..3]).replicas, 3);
    }

    #[test]
    fn a_group_keeps_a_pod_until_it_is_neither_primary_nor_a_replica() {
        let three = group_server(3);
        let held = scale(&three, &group(4, &FIVE));
        assert_eq!(held.replicas, 5);
        assert!(held.holding.unwrap().contains("ag-4 is the primary"));
        let held = scale(&three, &group(1, &FIVE));
        assert_eq!(held.replicas, 5);
        assert_eq!(
            held.holding.unwrap(),
            "the group still has ag-3, ag-4: the primary removes them first"
        );
        assert_eq!(
            scale(&three, &group(1, &FIVE[..3])),
            Scale {
                replicas: 3,
                holding: None
            }
        );
    }

    #[test]
    fn without_one_confirmed_primary_nothing_is_let_go() {
        let three = group_server(3);
        let mut pods = group(1, &FIVE[..3]);
        pods[1].replica.as_mut().unwrap().role = Some("RESOLVING".to_owned());
        assert!(
            scale(&three, &pods)
                .holding
                .unwrap()
                .contains("not reported")
        );
        pods[1].role = Some("secondary".to_owned());
        assert!(scale(&three, &pods).holding.unwrap().contains("0 pods"));
        // The arbiter's pod is not one of the StatefulSet's.
        let mut pods = group(1, &FIVE[..3]);
        pods.push(pod("ag-arbiter-0", "arbiter", &[]));
        assert_eq!(scale(&three, &pods).replicas, 3);
    }

    #[test]
    fn a_standalone_server_follows_its_spec() {
        let mut standalone = group_server(3);
        standalone.topology = mssql_api::validated::Topology::Standalone;
        standalone.replicas = 1;
        assert_eq!(scale(&standalone, &group(0, &FIVE)).replicas, 1);
    }
}

//! Why a database's pods are not Ready, in words a person can act on: a pod the StatefulSet
//! cannot create (quota, admission), or what each pod that exists says of itself
//! (`controller::pods`: the scheduler cannot place it, its image cannot be pulled, a container
//! crashes). The database's `ReplicaReady` condition carries it, and what needs a person is also
//! published as a Warning Event.

pub use crate::controller::pods::NotReady;
use crate::controller::pods::PodFacts;

/// Each pod of the StatefulSet `statefulset` (ordinals below `replicas`) that is not Ready, and
/// why. `cannot_create` is the StatefulSet's latest pod-creation failure, if a recent one exists.
pub fn not_ready(
    statefulset: &str,
    replicas: i32,
    pods: &[PodFacts],
    cannot_create: Option<&str>,
) -> Vec<NotReady> {
    (0..replicas)
        .filter_map(|ordinal| {
            let name = format!("{statefulset}-{ordinal}");
            match pods.iter().find(|p| p.name == name) {
                None => Some(match cannot_create {
                    Some(why) => NotReady::stuck(format!("pod {name} cannot be created: {why}")),
                    None => NotReady::waiting(format!("pod {name} does not exist yet")),
                }),
                Some(pod) => pod.not_ready.clone(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(name: &str) -> PodFacts {
        PodFacts {
            name: name.into(),
            ready: true,
            ..PodFacts::default()
        }
    }

    #[test]
    fn ready_pods_say_nothing() {
        assert_eq!(
            not_ready("db", 2, &[ready("db-0"), ready("db-1")], None),
            []
        );
    }

    #[test]
    fn a_pod_the_statefulset_cannot_create_names_the_reason() {
        let quota = "pods \"db-1\" is forbidden: exceeded quota: pods, requested: pods=1, used: pods=1, limited: pods=1";
        assert_eq!(
            not_ready("db", 2, &[ready("db-0")], Some(quota)),
            [NotReady::stuck(format!(
                "pod db-1 cannot be created: {quota}"
            ))]
        );
        assert_eq!(
            not_ready("db", 1, &[], None),
            [NotReady::waiting("pod db-0 does not exist yet".into())]
        );
    }

    #[test]
    fn a_pod_that_exists_says_why_itself() {
        let starting = PodFacts {
            name: "db-1".into(),
            not_ready: Some(NotReady::waiting("pod db-1 is starting (Pending)".into())),
            ..PodFacts::default()
        };
        assert_eq!(
            not_ready("db", 2, &[ready("db-0"), starting.clone()], None),
            [starting.not_ready.unwrap()]
        );
    }
}

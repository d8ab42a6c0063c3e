//! Why a database's pods are not Ready, in words a person can act on: a pod the StatefulSet
//! cannot create (quota, admission), one the scheduler cannot place, an image that cannot be
//! pulled, a container that crashes. The database's `ReplicaReady` condition carries it, and
//! what needs a person is also published as a Warning Event.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::ResourceExt;

use mssql_api::pods::is_ready;

/// One pod that is not Ready, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotReady {
    pub text: String,
    /// Waiting will not help (the pod cannot be created or placed, its image cannot be pulled,
    /// it crashes): someone must act.
    pub needs_person: bool,
}

/// Container waiting reasons that are only the way up.
const STARTING: [&str; 2] = ["ContainerCreating", "PodInitializing"];

/// Each pod of the StatefulSet `statefulset` (ordinals below `replicas`) that is not Ready, and
/// why. `cannot_create` is the StatefulSet's latest pod-creation failure, if a recent one exists.
pub fn not_ready(
    statefulset: &str,
    replicas: i32,
    pods: &[Pod],
    cannot_create: Option<&str>,
) -> Vec<NotReady> {
    (0..replicas)
        .filter_map(|ordinal| {
            let name = format!("{statefulset}-{ordinal}");
            match pods.iter().find(|p| p.name_any() == name) {
                None => Some(match cannot_create {
                    Some(why) => NotReady {
                        text: format!("pod {name} cannot be created: {why}"),
                        needs_person: true,
                    },
                    None => NotReady {
                        text: format!("pod {name} does not exist yet"),
                        needs_person: false,
                    },
                }),
                Some(pod) if !is_ready(pod) => Some(describe(&name, pod)),
                Some(_) => None,
            }
        })
        .collect()
}

fn describe(name: &str, pod: &Pod) -> NotReady {
    let waiting = |text: String| NotReady {
        text,
        needs_person: false,
    };
    let stuck = |text: String| NotReady {
        text,
        needs_person: true,
    };
    if pod.metadata.deletion_timestamp.is_some() {
        return waiting(format!("pod {name} is terminating"));
    }
    let status = pod.status.clone().unwrap_or_default();
    if let Some(unscheduled) = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")
    {
        return stuck(format!(
            "pod {name} cannot be scheduled: {}",
            unscheduled
                .message
                .as_deref()
                .or(unscheduled.reason.as_deref())
                .unwrap_or("no reason given")
        ));
    }
    let containers = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    for container in containers {
        if let Some(problem) = container_problem(container) {
            return stuck(format!("pod {name}: {problem}"));
        }
    }
    if status.phase.as_deref() == Some("Failed") {
        return stuck(format!(
            "pod {name} failed: {}",
            status.message.or(status.reason).unwrap_or_default()
        ));
    }
    match status.phase.as_deref() {
        Some("Running") => waiting(format!(
            "pod {name} is running but not Ready yet (its readiness probe has not passed)"
        )),
        phase => waiting(format!(
            "pod {name} is starting ({})",
            phase.unwrap_or("no status yet")
        )),
    }
}

/// What is wrong with a container that waits for anything but its start, or keeps failing.
fn container_problem(container: &ContainerStatus) -> Option<String> {
    let state = container.state.as_ref()?;
    let waiting = state
        .waiting
        .as_ref()
        .and_then(|w| {
            w.reason
                .as_deref()
                .map(|reason| (reason, w.message.as_deref()))
        })
        .filter(|(reason, _)| !STARTING.contains(reason));
    let last_exit = container
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .map(|t| {
            let why = t.message.as_deref().or(t.reason.as_deref()).unwrap_or("");
            format!(
                "; last exit code {}{}{why}",
                t.exit_code,
                if why.is_empty() { "" } else { ": " }
            )
        })
        .unwrap_or_default();
    match waiting {
        Some(("CrashLoopBackOff", _)) => Some(format!(
            "container {} crashes (CrashLoopBackOff, restarted {} times{last_exit})",
            container.name, container.restart_count
        )),
        Some((reason, message)) => Some(format!(
            "container {} is waiting: {reason}{}",
            container.name,
            message.map(|m| format!(": {m}")).unwrap_or_default()
        )),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    fn named(name: &str, status: serde_json::Value) -> Pod {
        pod(json!({"metadata": {"name": name}, "status": status}))
    }

    fn ready(name: &str) -> Pod {
        named(
            name,
            json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}),
        )
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
            [NotReady {
                text: format!("pod db-1 cannot be created: {quota}"),
                needs_person: true
            }]
        );
        assert_eq!(
            not_ready("db", 1, &[], None),
            [NotReady {
                text: "pod db-0 does not exist yet".into(),
                needs_person: false
            }]
        );
    }

    #[test]
    fn an_unschedulable_pod_says_what_the_scheduler_says() {
        let pending = named(
            "db-0",
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/3 nodes are available: 3 Insufficient memory."}]}),
        );
        assert_eq!(
            not_ready("db", 1, &[pending], None)[0],
            NotReady {
                text:
                    "pod db-0 cannot be scheduled: 0/3 nodes are available: 3 Insufficient memory."
                        .into(),
                needs_person: true
            }
        );
    }

    #[test]
    fn image_and_crash_problems_name_the_container() {
        let pull = named(
            "db-0",
            json!({"phase": "Pending", "initContainerStatuses": [{"name": "mssql-init", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"x\""}}}]}),
        );
        assert_eq!(
            not_ready("db", 1, &[pull], None)[0].text,
            "pod db-0: container mssql-init is waiting: ImagePullBackOff: Back-off pulling image \"x\""
        );
        let crash = named(
            "db-0",
            json!({"phase": "Running", "containerStatuses": [{"name": "mssql", "image": "x", "imageID": "", "ready": false, "restartCount": 4,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "message": "sqlservr: /var/opt/mssql/tls/server.key is not readable"}}}]}),
        );
        let crashing = &not_ready("db", 1, &[crash], None)[0];
        assert_eq!(
            crashing.text,
            "pod db-0: container mssql crashes (CrashLoopBackOff, restarted 4 times; last exit code 1: sqlservr: /var/opt/mssql/tls/server.key is not readable)"
        );
        assert!(crashing.needs_person);
    }

    #[test]
    fn starting_pods_are_only_waited_for() {
        let creating = named(
            "db-0",
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}],
                "containerStatuses": [{"name": "mssql", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ContainerCreating"}}}]}),
        );
        let running = named("db-1", json!({"phase": "Running"}));
        let found = not_ready("db", 2, &[creating, running], None);
        assert_eq!(
            found
                .iter()
                .map(|n| (n.text.as_str(), n.needs_person))
                .collect::<Vec<_>>(),
            [
                ("pod db-0 is starting (Pending)", false),
                (
                    "pod db-1 is running but not Ready yet (its readiness probe has not passed)",
                    false
                )
            ]
        );
        let mut leaving = ready("db-0");
        leaving.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        leaving.status = None;
        assert_eq!(
            not_ready("db", 1, &[leaving], None)[0].text,
            "pod db-0 is terminating"
        );
    }
}

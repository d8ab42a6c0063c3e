//! What the controllers read of a database's pod, taken from it once, as the watch delivers it:
//! its identity, role and revision, whether it is Ready or being deleted, the certificates it
//! started with, what its coordinator reports of its replica, and, when it is not Ready, why, in words a person can act on (a pod the
//! scheduler cannot place, an image that cannot be pulled, a container that crashes). A thousand
//! pods kept as objects, even without their spec, were the larger part of the operator's memory.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::ResourceExt;
use mssql_api::labels::{INSTANCE, ROLE};
use mssql_api::pods::{ReplicaReport, StartedCertificate, is_ready, replica_report, started_with};

/// One pod of a database.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodFacts {
    pub name: String,
    pub uid: Option<String>,
    /// The database it belongs to: its `app.kubernetes.io/instance` label.
    pub database: Option<String>,
    /// `kubedb.com/role`: `primary`, `secondary` or `arbiter`.
    pub role: Option<String>,
    /// Its `controller-revision-hash`: the StatefulSet revision it runs.
    pub revision: Option<String>,
    pub ready: bool,
    pub terminating: bool,
    /// The certificates it started with, by alias (`mssql_api::pods::started_with`).
    pub started: Vec<(String, StartedCertificate)>,
    /// An availability group's pod: what its coordinator last read of its SQL Server.
    pub replica: Option<ReplicaReport>,
    /// Why it is not Ready; `None` when it is.
    pub not_ready: Option<NotReady>,
}

impl PodFacts {
    pub fn of(pod: &Pod) -> Self {
        let label = |key: &str| pod.labels().get(key).cloned();
        let name = pod.name_any();
        let ready = is_ready(pod);
        Self {
            not_ready: (!ready).then(|| describe(&name, pod)),
            uid: pod.uid(),
            database: label(INSTANCE),
            role: label(ROLE),
            revision: label("controller-revision-hash"),
            ready,
            terminating: pod.metadata.deletion_timestamp.is_some(),
            started: started_with(pod).into_iter().collect(),
            replica: replica_report(pod),
            name,
        }
    }
}

/// Why one pod is not Ready.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotReady {
    pub text: String,
    /// Waiting will not help (the pod cannot be created or placed, its image cannot be pulled,
    /// it crashes): someone must act.
    pub needs_person: bool,
}

impl NotReady {
    pub fn waiting(text: String) -> Self {
        Self {
            text,
            needs_person: false,
        }
    }

    pub fn stuck(text: String) -> Self {
        Self {
            text,
            needs_person: true,
        }
    }
}

/// Container waiting reasons that are only the way up.
const STARTING: [&str; 2] = ["ContainerCreating", "PodInitializing"];

fn describe(name: &str, pod: &Pod) -> NotReady {
    if pod.metadata.deletion_timestamp.is_some() {
        return NotReady::waiting(format!("pod {name} is terminating"));
    }
    let status = pod.status.clone().unwrap_or_default();
    if let Some(unscheduled) = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")
    {
        return NotReady::stuck(format!(
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
            return NotReady::stuck(format!("pod {name}: {problem}"));
        }
    }
    if status.phase.as_deref() == Some("Failed") {
        return NotReady::stuck(format!(
            "pod {name} failed: {}",
            status.message.or(status.reason).unwrap_or_default()
        ));
    }
    match status.phase.as_deref() {
        Some("Running") => NotReady::waiting(format!(
            "pod {name} is running but not Ready yet (its readiness probe has not passed)"
        )),
        phase => NotReady::waiting(format!(
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

    fn facts(name: &str, status: serde_json::Value) -> PodFacts {
        PodFacts::of(
            &serde_json::from_value(json!({"metadata": {"name": name}, "status": status})).unwrap(),
        )
    }

    fn why(name: &str, status: serde_json::Value) -> NotReady {
        facts(name, status).not_ready.expect("not Ready")
    }

    #[test]
    fn a_pod_is_known_by_its_labels_annotation_and_status() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "db-0", "uid": "u-1", "labels": {
                "app.kubernetes.io/instance": "db", "kubedb.com/role": "primary",
                "controller-revision-hash": "db-7f"},
                "annotations": {"mssql-operator.dev/certificates":
                    r#"{"server":{"serial":"0A","notAfter":100}}"#,
                    "mssql-operator.dev/replica":
                    r#"{"role":"PRIMARY","synchronized":true,"connected":true,"since":"2026-01-01T00:00:00Z"}"#}},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .unwrap();
        let known = PodFacts::of(&pod);
        assert_eq!(
            known,
            PodFacts {
                name: "db-0".into(),
                uid: Some("u-1".into()),
                database: Some("db".into()),
                role: Some("primary".into()),
                revision: Some("db-7f".into()),
                ready: true,
                terminating: false,
                started: vec![(
                    "server".into(),
                    StartedCertificate {
                        serial: "0A".into(),
                        not_after: 100
                    }
                )],
                replica: Some(ReplicaReport {
                    role: Some("PRIMARY".into()),
                    synchronized: true,
                    connected: true,
                    since: "2026-01-01T00:00:00Z".into(),
                    replicas: Vec::new(),
                    endpoint: None,
                }),
                not_ready: None,
            }
        );
    }

    #[test]
    fn an_unschedulable_pod_says_what_the_scheduler_says() {
        let pending = json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/3 nodes are available: 3 Insufficient memory."}]});
        assert_eq!(
            why("db-0", pending),
            NotReady::stuck(
                "pod db-0 cannot be scheduled: 0/3 nodes are available: 3 Insufficient memory."
                    .into()
            )
        );
    }

    #[test]
    fn image_and_crash_problems_name_the_container() {
        let pull = json!({"phase": "Pending", "initContainerStatuses": [{"name": "mssql-init", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"x\""}}}]});
        assert_eq!(
            why("db-0", pull).text,
            "pod db-0: container mssql-init is waiting: ImagePullBackOff: Back-off pulling image \"x\""
        );
        let crash = json!({"phase": "Running", "containerStatuses": [{"name": "mssql", "image": "x", "imageID": "", "ready": false, "restartCount": 4,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "message": "sqlservr: /var/opt/mssql/tls/server.key is not readable"}}}]});
        let crashing = why("db-0", crash);
        assert_eq!(
            crashing.text,
            "pod db-0: container mssql crashes (CrashLoopBackOff, restarted 4 times; last exit code 1: sqlservr: /var/opt/mssql/tls/server.key is not readable)"
        );
        assert!(crashing.needs_person);
    }

    #[test]
    fn starting_pods_are_only_waited_for() {
        let creating = json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}],
                "containerStatuses": [{"name": "mssql", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ContainerCreating"}}}]});
        assert_eq!(
            why("db-0", creating),
            NotReady::waiting("pod db-0 is starting (Pending)".into())
        );
        assert_eq!(
            why("db-1", json!({"phase": "Running"})),
            NotReady::waiting(
                "pod db-1 is running but not Ready yet (its readiness probe has not passed)".into()
            )
        );
        let leaving: Pod = serde_json::from_value(json!({"metadata": {"name": "db-0",
            "deletionTimestamp": "2026-01-01T00:00:00Z"}}))
        .unwrap();
        let leaving = PodFacts::of(&leaving);
        assert!(leaving.terminating);
        assert_eq!(
            leaving.not_ready,
            Some(NotReady::waiting("pod db-0 is terminating".into()))
        );
    }
}

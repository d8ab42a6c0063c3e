//! The conditions an ops request records as it runs, one per step: KubeDB's condition types,
//! reasons and messages (users' tooling matches them), plus the few steps of this operator's
//! own, marked as such. The operator writes them and `kubectl mssql` reads them.

pub const RECONFIGURE_TLS_MESSAGE: &str =
    "MSSQLServer ops-request has started to reconfigure tls for mssqlserver nodes";
pub const RESTART_MESSAGE: &str = "MSSQLServerOpsRequest has started to restart MSSQLServer nodes";
pub const PAUSE_SUCCEEDED: &str = "DatabasePauseSucceeded";
pub const PAUSED_MESSAGE: &str = "Successfully paused database";
pub const ISSUED: &str = "IssueCertificatesSucceeded";
pub const ISSUED_MESSAGE: &str = "successfully add issuing condition to all the certificates";
pub const SYNCED: &str = "CertificateSynced";
pub const SYNCED_MESSAGE: &str = "Successfully synced all certificates";
pub const GET_CERTIFICATE: &str = "GetCertificate";
pub const CHECK_READY: &str = "CheckReadyCondition";
pub const ISSUING: &str = "IssuingCondition";
pub const UPDATE_PETSETS: &str = "UpdatePetSets";
pub const UPDATE_PETSETS_MESSAGE: &str =
    "successfully reconciled the MSSQLServer with tls configuration";
/// Not KubeDB's (its Restart has no such step).
pub const UPDATE_PETSETS_RESTART_MESSAGE: &str =
    "successfully reconciled the MSSQLServer with its current certificates and configuration";
pub const RESTART_NODES: &str = "RestartNodes";
pub const RESTART_NODES_TLS_MESSAGE: &str = "Successfully restarted all nodes";
pub const RESTART_NODES_MESSAGE: &str = "Successfully restarted MSSQLServer nodes";
pub const SUCCESSFUL: &str = "Successful";
pub const SUCCESSFUL_TLS_MESSAGE: &str = "Successfully completed reconfigureTLS for mssqlserver.";
pub const SUCCESSFUL_RESTART_MESSAGE: &str =
    "Controller has successfully restart the MSSQLServer replicas";
pub const FAILED: &str = "Failed";
/// The reason of the `Failed` condition of a request whose spec breaks a rule `check` knows.
pub const INVALID_SPEC: &str = "InvalidSpec";
pub const SKIPPED: &str = "Skipped";
pub const GET_POD: &str = "GetPod";
pub const EVICT_POD: &str = "EvictPod";
pub const CHECK_POD_RUNNING: &str = "CheckPodRunning";
/// Not KubeDB's: the restarted pod serves the certificate of its Secret (ops/served.rs).
pub const CHECK_SERVED_CERTIFICATE: &str = "CheckServedCertificate";
/// Not KubeDB's: a restarted replica of an availability group is connected to its primary and
/// synchronized before the next pod restarts (commits never wait on two replicas at once).
pub const CHECK_REPLICA_SYNCHRONIZED: &str = "CheckReplicaSynchronized";
/// Not KubeDB's: before a group's primary restarts, the coordinators were asked to hand its role
/// to a synchronized secondary on the new material (False: none is, and the request waits).
pub const SWITCHOVER_PRIMARY: &str = "SwitchoverPrimary";
/// Not KubeDB's: another replica is primary and labelled; the old primary restarts as a
/// secondary.
pub const CHECK_PRIMARY_SWITCHED: &str = "CheckPrimarySwitched";
/// Not KubeDB's: no secondary could take over and the request's `apply: Always` allows the
/// primary to restart in place.
pub const RESTART_PRIMARY_IN_PLACE: &str = "RestartPrimaryInPlace";
/// Not KubeDB's: before any replica of a group restarts onto a new endpoint certificate, every
/// replica trusts it beside the one it presents (False while some do not yet).
pub const ENDPOINT_TRUSTED: &str = "EndpointCertificateTrusted";
/// Not KubeDB's: once every replica presents the new endpoint certificate, none trusts the old.
pub const ENDPOINT_RETIRED: &str = "EndpointCertificateRetired";
/// Not KubeDB's: at the end, every pod runs the current revision and certificates.
pub const CHECK_PODS_CURRENT: &str = "CheckPodsCurrent";

/// The first condition of a running request of type `type_`: its type, and KubeDB's message.
pub fn start_condition(type_: &str) -> (&'static str, &'static str) {
    if type_ == crate::ops::TYPE_RESTART {
        ("Restart", RESTART_MESSAGE)
    } else {
        ("ReconfigureTLS", RECONFIGURE_TLS_MESSAGE)
    }
}

/// KubeDB's retry-step message: `get pod; ConditionStatus:True; PodName:<pod>`.
pub fn step_message(step: &str, status: bool, pod: Option<&str>) -> String {
    let words = match step {
        GET_CERTIFICATE => "get certificate",
        CHECK_READY => "check ready condition",
        ISSUING => "issuing condition",
        GET_POD => "get pod",
        EVICT_POD => "evict pod",
        CHECK_POD_RUNNING => "check pod running",
        CHECK_SERVED_CERTIFICATE => "check served certificate",
        CHECK_REPLICA_SYNCHRONIZED => "check replica synchronized",
        SWITCHOVER_PRIMARY => "switchover primary",
        CHECK_PRIMARY_SWITCHED => "check primary switched",
        RESTART_PRIMARY_IN_PLACE => "restart primary in place",
        other => other,
    };
    let status = if status { "True" } else { "False" };
    match pod {
        Some(pod) => format!("{words}; ConditionStatus:{status}; PodName:{pod}"),
        None => format!("{words}; ConditionStatus:{status}"),
    }
}

/// `EvictPod--<pod>`.
pub fn pod_step(step: &str, pod: &str) -> String {
    format!("{step}--{pod}")
}

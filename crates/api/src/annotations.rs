//! The annotation keys of this operator (KubeDB has no equivalent of these): what it records on
//! the objects it writes, so that a restarted operator, `kubectl mssql` and a person reading the
//! object all see the same facts.

/// On every object the operator applies: the hash of the object as last built, so an unchanged
/// object is not written again.
pub const APPLIED_HASH: &str = "mssql-operator.dev/applied-hash";

/// On the pod template: the hash of everything SQL Server reads at start-up; a pod on another
/// hash must restart.
pub const RESTART_HASH: &str = "mssql-operator.dev/restart-hash";

/// On the pod template: the certificate each alias's pod loads at start-up, as JSON
/// (`crate::pods::StartedCertificate` by alias).
pub const CERTIFICATES: &str = "mssql-operator.dev/certificates";

/// On an ops request: the uids of the pods that ran when its restarts began, as JSON; a pod with
/// another uid was replaced.
pub const PODS_BEFORE_RESTART: &str = "mssql-operator.dev/pods-before-restart";

/// On an ops request: each Certificate's revision before a rotation, as JSON, to tell a re-issued
/// certificate.
pub const REVISIONS_BEFORE_ROTATION: &str = "mssql-operator.dev/revisions-before-rotation";

/// On an availability group's pod, written by its coordinator: what its SQL Server last said of
/// its replica, as JSON (`crate::pods::ReplicaReport`); written only when that changes.
pub const REPLICA: &str = "mssql-operator.dev/replica";

/// On an availability group's database, written by the ops-manager while a request holds it
/// paused: the pod it wants primary before it restarts the one that is (a planned switchover).
/// The coordinators honour it only while the database is paused.
pub const SWITCHOVER: &str = "mssql-operator.dev/switchover";

/// On an availability group's database, written by the ops-manager while a request holds it
/// paused: the serial of the endpoint certificate its Secret holds now, which every replica is
/// to trust before any replica presents it (docs/coordinator.md, "The endpoint certificate").
pub const ENDPOINT_CERTIFICATE: &str = "mssql-operator.dev/endpoint-certificate";

/// On a request the operator created for a renewal: why.
pub const RENEWAL_REASON: &str = "mssql-operator.dev/renewal-reason";
/// On a renewal request: `{"<pod>": {"<alias>": "<serial>"}}`, what the stale pods ran.
pub const RENEWAL_OLD_SERIALS: &str = "mssql-operator.dev/renewal-old-serials";
/// On a renewal request: `{"<alias>": "<serial>"}`, what the Secrets hold.
pub const RENEWAL_NEW_SERIALS: &str = "mssql-operator.dev/renewal-new-serials";

/// On a database: how renewed certificates are rolled out, `Auto` or `Manual`
/// (`crate::renewal`).
pub const RENEWAL_ROLLOUT: &str = "mssql-operator.dev/renewal-rollout";
/// On a database: when pods may be restarted for a renewal (`crate::renewal`).
pub const MAINTENANCE_WINDOW: &str = "mssql-operator.dev/maintenance-window";
/// On a database: how long before the old certificate expires a rollout starts even outside the
/// window (`crate::renewal`).
pub const RENEWAL_SAFETY_MARGIN: &str = "mssql-operator.dev/renewal-safety-margin";

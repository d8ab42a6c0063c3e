//! The T-SQL the coordinator sends, built as text (docs/coordinator.md, "The T-SQL it sends").
//! Nothing is sent as a parameter: names are bracket-quoted and values are `N'…'` literals, so
//! every statement is a plain SQL batch that any TDS client can send.

use std::fmt::Write as _;

/// The mirroring endpoint's name and port (Microsoft's Linux recipe; KubeDB's port 5022).
pub const ENDPOINT: &str = "Hadr_endpoint";
pub const ENDPOINT_PORT: u16 = 5022;
/// The login and user the endpoint's certificate belongs to (Microsoft's older Linux recipe,
/// which KubeDB's `<db>-dbm-login` Secret follows).
pub const LOGIN: &str = "dbm_login";
pub const USER: &str = "dbm_user";

/// `[name]`, with `]` doubled (T-SQL's QUOTENAME).
pub fn ident(name: &str) -> String {
    format!("[{}]", name.replace(']', "]]"))
}

/// `N'text'`, with `'` doubled.
pub fn literal(text: &str) -> String {
    format!("N'{}'", text.replace('\'', "''"))
}

/// `secondaryAccessMode`, as `SECONDARY_ROLE (ALLOW_CONNECTIONS = …)` says it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SecondaryAccess {
    /// KubeDB's `Passive` (the default): no connections to a secondary.
    #[default]
    Passive,
    /// `ReadOnly`: read-intent connections only.
    ReadOnly,
    /// `All`: any connection, reads only.
    All,
}

impl SecondaryAccess {
    /// KubeDB's spelling (`spec.topology.availabilityGroup.secondaryAccessMode`).
    pub fn from_spec(mode: Option<&str>) -> Option<Self> {
        match mode {
            None | Some("Passive") => Some(Self::Passive),
            Some("ReadOnly") => Some(Self::ReadOnly),
            Some("All") => Some(Self::All),
            Some(_) => None,
        }
    }

    /// SQL Server's spelling, as `sys.availability_replicas.secondary_role_allow_connections_desc`
    /// shows it too.
    pub fn tsql(self) -> &'static str {
        match self {
            Self::Passive => "NO",
            Self::ReadOnly => "READ_ONLY",
            Self::All => "ALL",
        }
    }
}

/// One replica of the group as `CREATE AVAILABILITY GROUP` and `ADD REPLICA` name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replica {
    /// The pod's name: the server's `@@SERVERNAME`.
    pub name: String,
    /// `TCP://host:5022`.
    pub endpoint_url: String,
    pub access: SecondaryAccess,
}

impl Replica {
    fn options(&self) -> String {
        format!(
            "ENDPOINT_URL = {}, AVAILABILITY_MODE = SYNCHRONOUS_COMMIT, FAILOVER_MODE = EXTERNAL, \
             SEEDING_MODE = AUTOMATIC, PRIMARY_ROLE (ALLOW_CONNECTIONS = READ_WRITE), \
             SECONDARY_ROLE (ALLOW_CONNECTIONS = {})",
            literal(&self.endpoint_url),
            self.access.tsql()
        )
    }
}

/// An endpoint URL for a host.
pub fn endpoint_url(host: &str) -> String {
    format!("TCP://{host}:{ENDPOINT_PORT}")
}

/// How many synchronized secondaries a commit waits for: half the replicas (Microsoft's default for
/// `CLUSTER_TYPE = EXTERNAL`), and at least one as soon as there is a secondary, so that every
/// acknowledged write is on a replica that can be promoted without loss (data first: a 2-replica
/// group stops taking writes while its secondary is away, rather than risk them).
pub fn required_synchronized_secondaries(replicas: usize) -> usize {
    if replicas < 2 {
        0
    } else {
        (replicas / 2).max(1)
    }
}

/// REQUIRED_SYNCHRONIZED_SECONDARIES_TO_COMMIT for a group of `replicas` replicas, from the
/// group's `current` one and its `synchronized` secondaries: lowered at once (before a replica
/// leaves, so that no commit waits for it), raised only as far as the secondaries already
/// synchronized allow (a replica being seeded must not stop every commit).
pub fn required_now(replicas: usize, current: usize, synchronized: usize) -> usize {
    let wanted = required_synchronized_secondaries(replicas);
    if wanted <= current {
        wanted
    } else {
        wanted.min(current.max(synchronized))
    }
}

pub fn probe() -> &'static str {
    "SELECT @@SERVERNAME, SERVERPROPERTY('IsHadrEnabled')"
}

pub fn create_master_key(password: &str) -> String {
    format!(
        "CREATE MASTER KEY ENCRYPTION BY PASSWORD = {}",
        literal(password)
    )
}

pub fn create_login(password: &str) -> String {
    format!(
        "CREATE LOGIN {} WITH PASSWORD = {}",
        ident(LOGIN),
        literal(password)
    )
}

pub fn create_user() -> String {
    format!("CREATE USER {} FOR LOGIN {}", ident(USER), ident(LOGIN))
}

const CERTIFICATE_PREFIX: &str = "dbm_cert_";

/// The name of the endpoint certificate of a serial: a new certificate sits beside the old one.
pub fn certificate_name(serial_hex: &str) -> String {
    format!("{CERTIFICATE_PREFIX}{}", serial_hex.to_ascii_lowercase())
}

/// The serial an endpoint certificate's name carries; `None` for master's other certificates.
pub fn certificate_serial(name: &str) -> Option<&str> {
    name.strip_prefix(CERTIFICATE_PREFIX)
}

/// The endpoint presents another of master's certificates from its next connection on.
pub fn present_certificate(certificate: &str) -> String {
    format!(
        "ALTER ENDPOINT {} FOR DATABASE_MIRRORING (AUTHENTICATION = CERTIFICATE {})",
        ident(ENDPOINT),
        ident(certificate)
    )
}

pub fn drop_certificate(certificate: &str) -> String {
    format!("DROP CERTIFICATE {}", ident(certificate))
}

pub fn create_certificate(name: &str, pfx_path: &str, pfx_password: &str) -> String {
    format!(
        "CREATE CERTIFICATE {} AUTHORIZATION {} FROM FILE = {} WITH FORMAT = 'PFX', \
         PRIVATE KEY (DECRYPTION BY PASSWORD = {})",
        ident(name),
        ident(USER),
        literal(pfx_path),
        literal(pfx_password)
    )
}

pub fn create_endpoint(certificate: &str) -> String {
    format!(
        "CREATE ENDPOINT {} STATE = STARTED AS TCP (LISTENER_PORT = {ENDPOINT_PORT}, \
         LISTENER_IP = ALL) FOR DATABASE_MIRRORING (ROLE = ALL, AUTHENTICATION = CERTIFICATE {}, \
         ENCRYPTION = REQUIRED ALGORITHM AES)",
        ident(ENDPOINT),
        ident(certificate)
    )
}

pub fn grant_connect() -> String {
    format!(
        "GRANT CONNECT ON ENDPOINT::{} TO {}",
        ident(ENDPOINT),
        ident(LOGIN)
    )
}

pub fn create_group(
    group: &str,
    write_lease_seconds: u64,
    required_secondaries: usize,
    replica: &Replica,
) -> String {
    format!(
        "CREATE AVAILABILITY GROUP {} WITH (DB_FAILOVER = ON, CLUSTER_TYPE = EXTERNAL, \
         WRITE_LEASE_VALIDITY = {write_lease_seconds}, \
         REQUIRED_SYNCHRONIZED_SECONDARIES_TO_COMMIT = {required_secondaries}) \
         FOR REPLICA ON {} WITH ({})",
        ident(group),
        literal(&replica.name),
        replica.options()
    )
}

fn alter_group(group: &str, rest: &str) -> String {
    format!("ALTER AVAILABILITY GROUP {} {rest}", ident(group))
}

pub fn grant_create_any_database(group: &str) -> String {
    alter_group(group, "GRANT CREATE ANY DATABASE")
}

pub fn add_replica(group: &str, replica: &Replica) -> String {
    alter_group(
        group,
        &format!(
            "ADD REPLICA ON {} WITH ({})",
            literal(&replica.name),
            replica.options()
        ),
    )
}

pub fn remove_replica(group: &str, name: &str) -> String {
    alter_group(group, &format!("REMOVE REPLICA ON {}", literal(name)))
}

pub fn set_required_secondaries(group: &str, required: usize) -> String {
    alter_group(
        group,
        &format!("SET (REQUIRED_SYNCHRONIZED_SECONDARIES_TO_COMMIT = {required})"),
    )
}

pub fn modify_access(group: &str, name: &str, access: SecondaryAccess) -> String {
    alter_group(
        group,
        &format!(
            "MODIFY REPLICA ON {} WITH (SECONDARY_ROLE (ALLOW_CONNECTIONS = {}))",
            literal(name),
            access.tsql()
        ),
    )
}

pub fn join(group: &str) -> String {
    alter_group(group, "JOIN WITH (CLUSTER_TYPE = EXTERNAL)")
}

pub fn renew_write_lease(group: &str, seconds: u64) -> String {
    alter_group(group, &format!("SET (WRITE_LEASE_VALIDITY = {seconds})"))
}

/// A failover SQL Server makes only if this replica was synchronized (41142 otherwise), asked as
/// the external cluster manager (the session context must say so in the same session).
pub fn failover(group: &str) -> String {
    let mut batch =
        String::from("EXEC sp_set_session_context @key = N'external_cluster', @value = N'yes';\n");
    let _ = write!(batch, "{}", alter_group(group, "FAILOVER"));
    batch
}

/// Fences a primary at once: it stops taking writes (Microsoft's agent demotes this way, since
/// `SET (ROLE = SECONDARY)` on a primary starts recovery that blocks a later failover).
pub fn offline(group: &str) -> String {
    alter_group(group, "OFFLINE")
}

pub fn set_role_secondary(group: &str) -> String {
    alter_group(group, "SET (ROLE = SECONDARY)")
}

pub fn drop_group(group: &str) -> String {
    format!("DROP AVAILABILITY GROUP {}", ident(group))
}

pub fn create_database(db: &str) -> String {
    format!("CREATE DATABASE {}", ident(db))
}

pub fn set_recovery_full(db: &str) -> String {
    format!("ALTER DATABASE {} SET RECOVERY FULL", ident(db))
}

/// The full backup a database needs before it can join a group; automatic seeding then copies it.
pub fn backup_database(db: &str) -> String {
    format!("BACKUP DATABASE {} TO DISK = N'/dev/null'", ident(db))
}

pub fn add_database(group: &str, db: &str) -> String {
    alter_group(group, &format!("ADD DATABASE {}", ident(db)))
}

pub fn resume(db: &str) -> String {
    format!("ALTER DATABASE {} SET HADR RESUME", ident(db))
}

/// The local replica and its group; no row when this server holds no group.
pub const QUERY_LOCAL: &str = "SELECT ag.name, ag.sequence_number, \
ag.required_synchronized_secondaries_to_commit, ars.role_desc, ars.operational_state_desc, \
ars.connected_state_desc, ars.synchronization_health_desc \
FROM sys.availability_groups AS ag \
JOIN sys.dm_hadr_availability_replica_states AS ars ON ars.group_id = ag.group_id \
WHERE ars.is_local = 1";

/// Every replica of the group; complete on the primary only.
pub const QUERY_REPLICAS: &str = "SELECT ar.replica_server_name, ar.endpoint_url, \
ar.secondary_role_allow_connections_desc, ars.role_desc, ars.connected_state_desc, \
ars.synchronization_health_desc \
FROM sys.availability_replicas AS ar \
LEFT JOIN sys.dm_hadr_availability_replica_states AS ars ON ars.replica_id = ar.replica_id";

/// The local availability databases.
pub const QUERY_DATABASES: &str = "SELECT DB_NAME(drs.database_id), \
drs.synchronization_state_desc, drs.is_suspended, drs.last_hardened_lsn \
FROM sys.dm_hadr_database_replica_states AS drs \
WHERE drs.is_local = 1";

/// Master's certificates, each with its DER and, for the one the endpoint authenticates with, the
/// endpoint's name.
pub const QUERY_ENDPOINT_CERTIFICATES: &str = "SELECT c.name, CERTENCODED(c.certificate_id), \
e.name FROM sys.certificates AS c \
LEFT JOIN sys.database_mirroring_endpoints AS e ON e.certificate_id = c.certificate_id";

/// SQL Server's error numbers the coordinator acts on.
pub mod error {
    /// "There is already a master key in the database."
    pub const MASTER_KEY_EXISTS: u32 = 15578;
    /// "The server principal '…' already exists."
    pub const LOGIN_EXISTS: u32 = 15025;
    /// "User, group, or role '…' already exists in the current database."
    pub const USER_EXISTS: u32 = 15023;
    /// "A certificate with name '…' already exists or this certificate already has been added."
    pub const CERTIFICATE_EXISTS: u32 = 15232;
    /// "An endpoint of the requested type already exists."
    pub const ENDPOINT_EXISTS: u32 = 7862;
    /// "Database '…' already exists."
    pub const DATABASE_EXISTS: u32 = 1801;
    /// The group already has a replica of that name.
    pub const REPLICA_EXISTS: u32 = 35282;
    /// The local replica already joined.
    pub const ALREADY_JOINED: u32 = 41106;
    /// A failover refused because the target is not synchronized.
    pub const NOT_SYNCHRONIZED: u32 = 41142;
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn replica(name: &str) -> Replica {
        Replica {
            name: name.into(),
            endpoint_url: endpoint_url(&format!("{name}.ag1-pods.demo.svc")),
            access: SecondaryAccess::Passive,
        }
    }

    #[test]
    fn names_and_values_cannot_break_out_of_their_quotes() {
        assert_eq!(ident("a]b"), "[a]]b]");
        assert_eq!(literal("it's"), "N'it''s'");
        assert_eq!(
            create_login("p'w]"),
            "CREATE LOGIN [dbm_login] WITH PASSWORD = N'p''w]'"
        );
    }

    #[test]
    fn the_group_is_created_external_synchronous_with_a_write_lease() {
        assert_eq!(
            create_group("ag1", 4, 1, &replica("ag1-0")),
            "CREATE AVAILABILITY GROUP [ag1] WITH (DB_FAILOVER = ON, CLUSTER_TYPE = EXTERNAL, \
             WRITE_LEASE_VALIDITY = 4, REQUIRED_SYNCHRONIZED_SECONDARIES_TO_COMMIT = 1) \
             FOR REPLICA ON N'ag1-0' WITH (ENDPOINT_URL = N'TCP://ag1-0.ag1-pods.demo.svc:5022', \
             AVAILABILITY_MODE = SYNCHRONOUS_COMMIT, FAILOVER_MODE = EXTERNAL, \
             SEEDING_MODE = AUTOMATIC, PRIMARY_ROLE (ALLOW_CONNECTIONS = READ_WRITE), \
             SECONDARY_ROLE (ALLOW_CONNECTIONS = NO))"
        );
    }

    #[test]
    fn replicas_are_added_joined_and_removed_by_pod_name() {
        let mut r = replica("ag1-2");
        r.access = SecondaryAccess::All;
        assert!(add_replica("ag1", &r).starts_with(
            "ALTER AVAILABILITY GROUP [ag1] ADD REPLICA ON N'ag1-2' WITH (ENDPOINT_URL"
        ));
        assert!(add_replica("ag1", &r).ends_with("SECONDARY_ROLE (ALLOW_CONNECTIONS = ALL))"));
        assert_eq!(
            join("ag1"),
            "ALTER AVAILABILITY GROUP [ag1] JOIN WITH (CLUSTER_TYPE = EXTERNAL)"
        );
        assert_eq!(
            remove_replica("ag1", "ag1-2"),
            "ALTER AVAILABILITY GROUP [ag1] REMOVE REPLICA ON N'ag1-2'"
        );
        assert_eq!(
            modify_access("ag1", "ag1-1", SecondaryAccess::ReadOnly),
            "ALTER AVAILABILITY GROUP [ag1] MODIFY REPLICA ON N'ag1-1' WITH \
             (SECONDARY_ROLE (ALLOW_CONNECTIONS = READ_ONLY))"
        );
    }

    #[test]
    fn a_failover_sets_the_external_cluster_context_in_the_same_batch() {
        assert_eq!(
            failover("ag1"),
            "EXEC sp_set_session_context @key = N'external_cluster', @value = N'yes';\n\
             ALTER AVAILABILITY GROUP [ag1] FAILOVER"
        );
        assert!(!failover("ag1").contains("FORCE"));
    }

    #[test]
    fn the_endpoint_uses_the_certificate_and_aes() {
        let name = certificate_name("0A1B");
        assert_eq!(name, "dbm_cert_0a1b");
        assert_eq!(
            create_endpoint(&name),
            "CREATE ENDPOINT [Hadr_endpoint] STATE = STARTED AS TCP (LISTENER_PORT = 5022, \
             LISTENER_IP = ALL) FOR DATABASE_MIRRORING (ROLE = ALL, AUTHENTICATION = CERTIFICATE \
             [dbm_cert_0a1b], ENCRYPTION = REQUIRED ALGORITHM AES)"
        );
        assert_eq!(
            create_certificate(&name, "/x/c.pfx", "pw"),
            "CREATE CERTIFICATE [dbm_cert_0a1b] AUTHORIZATION [dbm_user] FROM FILE = N'/x/c.pfx' \
             WITH FORMAT = 'PFX', PRIVATE KEY (DECRYPTION BY PASSWORD = N'pw')"
        );
    }

    #[test]
    fn an_endpoint_certificate_is_presented_and_dropped_by_its_name() {
        let name = certificate_name("0A1B");
        assert_eq!(certificate_serial(&name), Some("0a1b"));
        assert_eq!(certificate_serial("##MS_AgentSigningCertificate##"), None);
        assert_eq!(
            present_certificate(&name),
            "ALTER ENDPOINT [Hadr_endpoint] FOR DATABASE_MIRRORING (AUTHENTICATION = CERTIFICATE \
             [dbm_cert_0a1b])"
        );
        assert_eq!(drop_certificate(&name), "DROP CERTIFICATE [dbm_cert_0a1b]");
    }

    #[test]
    fn commits_wait_for_half_the_replicas_and_at_least_one() {
        assert_eq!(required_synchronized_secondaries(1), 0);
        assert_eq!(required_synchronized_secondaries(2), 1);
        assert_eq!(required_synchronized_secondaries(3), 1);
        assert_eq!(required_synchronized_secondaries(4), 2);
        assert_eq!(required_synchronized_secondaries(5), 2);
    }

    #[test]
    fn the_required_secondaries_drop_at_once_and_rise_with_the_synchronized_ones() {
        // 5 → 3 replicas: from 2 to 1 before a replica leaves.
        assert_eq!(required_now(3, 2, 4), 1);
        assert_eq!(required_now(3, 2, 0), 1);
        // 3 → 5: the new replicas are being seeded; only the two synchronized ones count.
        assert_eq!(required_now(5, 1, 2), 2);
        assert_eq!(required_now(5, 1, 1), 1);
        assert_eq!(required_now(5, 1, 0), 1);
        // 1 → 2 (an arbiter joins): nothing is raised until the new secondary is synchronized.
        assert_eq!(required_now(2, 0, 0), 0);
        assert_eq!(required_now(2, 0, 1), 1);
        // Steady.
        assert_eq!(required_now(3, 1, 2), 1);
        assert_eq!(
            set_required_secondaries("ag", 2),
            "ALTER AVAILABILITY GROUP [ag] SET (REQUIRED_SYNCHRONIZED_SECONDARIES_TO_COMMIT = 2)"
        );
    }

    #[test]
    fn kubedb_access_modes_map_to_allow_connections() {
        assert_eq!(
            SecondaryAccess::from_spec(None),
            Some(SecondaryAccess::Passive)
        );
        assert_eq!(
            SecondaryAccess::from_spec(Some("ReadOnly")).map(SecondaryAccess::tsql),
            Some("READ_ONLY")
        );
        assert_eq!(
            SecondaryAccess::from_spec(Some("All")).map(SecondaryAccess::tsql),
            Some("ALL")
        );
        assert_eq!(SecondaryAccess::from_spec(Some("readonly")), None);
    }
}

//! The SQL Server errors the double raises, by number. Each number is SQL Server's, as listed on
//! learn.microsoft.com's "Database engine events and errors" pages (the range page named at each
//! constructor: `/sql/relational-databases/errors-events/database-engine-events-and-errors-<range>`);
//! the texts say the same thing in the double's own words. Where SQL Server documents no error for
//! a situation, the constructor says which documented one the double borrows and why.

use crate::tokens::Message;

/// An error as a statement raises it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqlError {
    pub number: i32,
    pub state: u8,
    pub class: u8,
    pub text: String,
}

impl SqlError {
    fn new(number: i32, class: u8, text: String) -> Self {
        Self {
            number,
            state: 1,
            class,
            text,
        }
    }

    fn with_state(mut self, state: u8) -> Self {
        self.state = state;
        self
    }

    /// The ERROR token's content.
    pub fn message(&self, server: &str) -> Message {
        Message {
            number: self.number,
            state: self.state,
            class: self.class,
            text: self.text.clone(),
            server: server.into(),
            procedure: String::new(),
            line: 1,
        }
    }
}

/// The first number of user-defined messages: what the double raises for anything it does not
/// emulate (it is not one of SQL Server's own errors).
pub fn not_emulated(what: &str) -> SqlError {
    SqlError::new(
        50000,
        16,
        format!(
            "the SQL Server test double runs only SELECT 1, SELECT @@VERSION and the statements of docs/coordinator.md: {what}"
        ),
    )
}

/// 102, "0 to 999": a batch that does not parse.
pub fn syntax(near: &str) -> SqlError {
    SqlError::new(102, 15, format!("Incorrect syntax near '{near}'."))
}

/// 207, "0 to 999": a column the table does not have.
pub fn invalid_column(name: &str) -> SqlError {
    SqlError::new(207, 16, format!("Invalid column name '{name}'."))
}

/// 208, "0 to 999": a table that does not exist.
pub fn invalid_object(name: &str) -> SqlError {
    SqlError::new(208, 16, format!("Invalid object name '{name}'."))
}

/// 911, "0 to 999": a database that does not exist.
pub fn no_database(name: &str) -> SqlError {
    SqlError::new(
        911,
        16,
        format!("Database '{name}' does not exist; check the name."),
    )
}

/// 976, "0 to 999": a read of an availability database on a secondary whose SECONDARY_ROLE
/// allows no connections.
pub fn not_readable(database: &str) -> SqlError {
    SqlError::new(
        976,
        14,
        format!(
            "Database '{database}' belongs to an availability group and cannot be queried on \
             this replica: it does not allow read access (ALTER AVAILABILITY GROUP … \
             SECONDARY_ROLE (ALLOW_CONNECTIONS = …))."
        ),
    )
}

/// 978, "0 to 999": a read on a READ_ONLY secondary by a connection without
/// ApplicationIntent=ReadOnly.
pub fn read_intent_required(database: &str) -> SqlError {
    SqlError::new(
        978,
        14,
        format!(
            "Database '{database}' belongs to an availability group and is readable on this \
             replica only by connections that declare ApplicationIntent=ReadOnly."
        ),
    )
}

/// 983, "0 to 999": an availability database on a replica in the RESOLVING role.
pub fn resolving(database: &str) -> SqlError {
    SqlError::new(
        983,
        14,
        format!(
            "Database '{database}' cannot be accessed now: its replica is RESOLVING, which allows              no connections to it. Try again later."
        ),
    )
}

/// 1801, "1000 to 1999".
pub fn database_exists(name: &str) -> SqlError {
    SqlError::new(
        1801,
        16,
        format!("A database named '{name}' exists already; choose another name."),
    )
}

/// 2627, "2000 to 2999": a duplicate primary key.
pub fn duplicate_key(table: &str, value: i64) -> SqlError {
    SqlError::new(
        2627,
        14,
        format!(
            "PRIMARY KEY violation: table '{table}' already holds key ({value}); the duplicate is \
             not inserted."
        ),
    )
}

/// 2714, "2000 to 2999": CREATE TABLE of a table that exists.
pub fn object_exists(name: &str) -> SqlError {
    SqlError::new(
        2714,
        16,
        format!("An object named '{name}' exists already in the database."),
    )
}

/// 3906, "3000 to 3999": a write to a database that is read-only here. SQL Server raises it for
/// a write on a secondary (state 1). SQL Server documents no error for a commit on a primary
/// whose external write lease has expired (state 2) or that has fewer synchronized secondaries
/// than REQUIRED_SYNCHRONIZED_SECONDARIES_TO_COMMIT ("CREATE AVAILABILITY GROUP (Transact-SQL)":
/// commits on the primary then fail; state 3): the double raises this one, the documented error
/// for "this database takes no writes now", and says why in the text.
pub fn read_only(database: &str, why: ReadOnlyBecause) -> SqlError {
    let (state, reason) = match why {
        ReadOnlyBecause::Secondary => (1, "this replica is not the primary replica".to_owned()),
        ReadOnlyBecause::LeaseExpired => (
            2,
            "the availability group's write lease (WRITE_LEASE_VALIDITY) has expired".to_owned(),
        ),
        ReadOnlyBecause::TooFewSynchronized { have, required } => (
            3,
            format!(
                "{have} synchronized secondary replica(s) acknowledged the commit and \
                 REQUIRED_SYNCHRONIZED_SECONDARIES_TO_COMMIT is {required}"
            ),
        ),
        ReadOnlyBecause::NotOnline => (4, "the availability group is not online here".to_owned()),
    };
    SqlError::new(
        3906,
        16,
        format!("Database '{database}' is read-only, so it was not updated: {reason}."),
    )
    .with_state(state)
}

/// Why [`read_only`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadOnlyBecause {
    Secondary,
    LeaseExpired,
    TooFewSynchronized { have: usize, required: u32 },
    NotOnline,
}

/// 3716, "3000 to 3999": DROP CERTIFICATE of the certificate an endpoint authenticates with.
/// "DROP CERTIFICATE (Transact-SQL)" refuses it ("Certificates can only be dropped if no entities
/// are associated with them") but documents no error number. The double borrows 3716, the
/// documented message for an object that cannot be dropped while other objects are bound to it
/// (of any kind: both are `%S_MSG` in its text), the endpoint being what the certificate is bound
/// to.
pub fn certificate_in_use(certificate: &str, endpoint: &str) -> SqlError {
    SqlError::new(
        3716,
        16,
        format!(
            "The certificate '{certificate}' cannot be dropped: endpoint '{endpoint}' \
             authenticates with it. ALTER ENDPOINT to another certificate first."
        ),
    )
}

/// 7862, "7000 to 7999": a second DATABASE_MIRRORING endpoint.
pub fn endpoint_exists() -> SqlError {
    SqlError::new(
        7862,
        16,
        "This instance already has an endpoint of this type, and it supports only one; ALTER or \
         DROP the existing endpoint instead."
            .into(),
    )
}

/// 15007, "15000 to 15999": CREATE USER for a login that does not exist.
pub fn no_login(login: &str) -> SqlError {
    SqlError::new(
        15007,
        16,
        format!("'{login}' is not a login of this server, or you may not use it."),
    )
}

/// 15023, "15000 to 15999".
pub fn user_exists(name: &str) -> SqlError {
    SqlError::new(
        15023,
        16,
        format!("The database already has a user, group or role named '{name}'."),
    )
}

/// 15025, "15000 to 15999".
pub fn login_exists(name: &str) -> SqlError {
    SqlError::new(
        15025,
        16,
        format!("A server principal named '{name}' exists already."),
    )
}

/// 15151, "15000 to 15999": a certificate, user, login or endpoint that does not exist.
pub fn cannot_find(kind: &str, name: &str) -> SqlError {
    SqlError::new(
        15151,
        16,
        format!("The {kind} '{name}' cannot be found: it does not exist or you may not use it."),
    )
}

/// 15208, "15000 to 15999": a certificate file that cannot be read.
pub fn certificate_file(file: &str, why: &str) -> SqlError {
    SqlError::new(
        15208,
        16,
        format!("The certificate file '{file}' cannot be used: {why}."),
    )
}

/// 15232, "15000 to 15999": the name, or the same certificate, exists already.
pub fn certificate_exists(name: &str) -> SqlError {
    SqlError::new(
        15232,
        16,
        format!(
            "The certificate '{name}' cannot be created: that name is taken, or the database \
             already holds this certificate."
        ),
    )
}

/// 15297, "15000 to 15999": a PFX that does not open with the password given, or holds no
/// usable certificate or key.
pub fn certificate_data(file: &str, why: &str) -> SqlError {
    SqlError::new(
        15297,
        16,
        format!("The certificate or private key data in '{file}' is not valid: {why}."),
    )
}

/// 15578, "15000 to 15999".
pub fn master_key_exists() -> SqlError {
    SqlError::new(
        15578,
        16,
        "The database has a master key already; drop it first to make another.".into(),
    )
}

/// 15581, "15000 to 15999": a private key to protect and no master key.
pub fn no_master_key() -> SqlError {
    SqlError::new(
        15581,
        16,
        "This needs a database master key: create one (CREATE MASTER KEY) first.".into(),
    )
}

/// 33101, "31000 to 41399": an endpoint certificate without its private key.
pub fn no_private_key(certificate: &str) -> SqlError {
    SqlError::new(
        33101,
        16,
        format!(
            "The certificate '{certificate}' cannot be used: this database holds no private key \
             for it."
        ),
    )
}

/// 35221, "31000 to 41399": an availability-group statement while HADR is off
/// (`MSSQL_ENABLE_HADR` is not 1; on Linux `mssql-conf set hadr.hadrenabled 1`).
pub fn hadr_disabled() -> SqlError {
    SqlError::new(
        35221,
        16,
        "The operation cannot be processed: the Always On availability groups replica manager \
         is disabled on this instance. Enable it (MSSQL_ENABLE_HADR=1) and restart SQL Server."
            .into(),
    )
}

/// 35237, "31000 to 41399": CREATE AVAILABILITY GROUP without a replica for this server.
pub fn no_local_replica(group: &str) -> SqlError {
    SqlError::new(
        35237,
        16,
        format!(
            "No replica of availability group '{group}' is this instance of SQL Server; name it \
             in REPLICA ON, it becomes the first primary replica."
        ),
    )
}

/// 35238, "31000 to 41399": ADD DATABASE of a database that does not exist.
pub fn no_database_to_add(database: &str, group: &str) -> SqlError {
    SqlError::new(
        35238,
        16,
        format!(
            "Database '{database}' cannot join availability group '{group}': it does not exist \
             on this instance."
        ),
    )
}

/// 35242, "31000 to 41399": SET HADR on a database of no availability group.
pub fn not_an_availability_database(database: &str) -> SqlError {
    SqlError::new(
        35242,
        16,
        format!("Database '{database}' has not joined an availability group."),
    )
}

/// 35280, "31000 to 41399": ADD DATABASE of a database already in the group.
pub fn database_in_group(database: &str, group: &str) -> SqlError {
    SqlError::new(
        35280,
        16,
        format!("Database '{database}' is already part of availability group '{group}'."),
    )
}

/// 35282, "31000 to 41399".
pub fn replica_exists(replica: &str, group: &str) -> SqlError {
    SqlError::new(
        35282,
        16,
        format!(
            "Availability group '{group}' already has a replica named '{replica}'; it is not \
             added again."
        ),
    )
}

/// 35283, "31000 to 41399".
pub fn no_such_replica(replica: &str, group: &str) -> SqlError {
    SqlError::new(
        35283,
        16,
        format!("Availability group '{group}' has no replica named '{replica}'."),
    )
}

/// 35284, "31000 to 41399": REMOVE REPLICA of the local replica.
pub fn cannot_remove_local(replica: &str, group: &str) -> SqlError {
    SqlError::new(
        35284,
        16,
        format!(
            "Replica '{replica}' of availability group '{group}' is this instance; remove it \
             from the primary replica's instance instead."
        ),
    )
}

/// 41100, "31000 to 41399": a group that does not exist here.
pub fn no_group(group: &str) -> SqlError {
    SqlError::new(
        41100,
        16,
        format!("Availability group '{group}', or its replica on this instance, does not exist."),
    )
}

/// 41106, "31000 to 41399": JOIN (or CREATE) where the group has a replica on this instance.
pub fn already_joined(group: &str) -> SqlError {
    SqlError::new(
        41106,
        16,
        format!(
            "This instance already hosts a replica of availability group '{group}'; DROP \
             AVAILABILITY GROUP removes it."
        ),
    )
}

/// 41122, "31000 to 41399": FAILOVER on the primary.
pub fn already_primary(group: &str) -> SqlError {
    SqlError::new(
        41122,
        16,
        format!(
            "This instance is already the primary replica of availability group '{group}'; \
             fail over from the instance that should become primary."
        ),
    )
}

/// 41140, "31000 to 41399": a primary-only ALTER AVAILABILITY GROUP on another replica.
pub fn not_primary(group: &str) -> SqlError {
    SqlError::new(
        41140,
        16,
        format!(
            "Availability group '{group}' cannot run this ALTER AVAILABILITY GROUP here: this \
             replica is not the primary replica."
        ),
    )
}

/// 41142, "31000 to 41399": FAILOVER on a replica that is not synchronized.
pub fn not_synchronized(group: &str) -> SqlError {
    SqlError::new(
        41142,
        16,
        format!(
            "This replica of availability group '{group}' cannot become the primary replica: \
             one or more of its databases are not synchronized or have not joined the group. \
             Only a forced failover (with possible data loss) could make it primary."
        ),
    )
}

/// 47102, "41400 to 49999": CLUSTER_TYPE = EXTERNAL with another FAILOVER_MODE.
pub fn failover_mode_external(group: &str) -> SqlError {
    SqlError::new(
        47102,
        16,
        format!(
            "Availability group '{group}' has cluster type EXTERNAL, so FAILOVER_MODE must be EXTERNAL."
        ),
    )
}

/// 47104, "41400 to 49999": FAILOVER on a CLUSTER_TYPE = EXTERNAL group without the
/// `external_cluster` session context ("Manage availability group failover", SQL Server on
/// Linux).
pub fn external_cluster_only(group: &str) -> SqlError {
    SqlError::new(
        47104,
        16,
        format!(
            "Availability group '{group}' has cluster type EXTERNAL: this operation is for its \
             cluster manager."
        ),
    )
}

/// 47106, "41400 to 49999": JOIN before any primary sent this replica the group's configuration.
pub fn join_timeout(group: &str) -> SqlError {
    SqlError::new(
        47106,
        16,
        format!(
            "Cannot join availability group '{group}': its configuration did not arrive from a \
             primary replica in time. Check the primary, the endpoints and the network."
        ),
    )
}

/// 47116, "41400 to 49999": SET (WRITE_LEASE_VALIDITY) on a group created without it.
pub fn no_external_lease(group: &str) -> SqlError {
    SqlError::new(
        47116,
        16,
        format!(
            "Availability group '{group}' was not created with WRITE_LEASE_VALIDITY: its external \
             write lease cannot be set."
        ),
    )
}

/// 47119, "41400 to 49999": a lease that would end before the current one.
pub fn lease_shorter(group: &str) -> SqlError {
    SqlError::new(
        47119,
        16,
        format!(
            "The write lease of availability group '{group}' is valid for longer than that; its \
             end cannot move earlier."
        ),
    )
}

/// 50000 (user-defined): the double does not emulate forced failover.
pub fn forced_failover_not_emulated() -> SqlError {
    not_emulated("FORCE_FAILOVER_ALLOW_DATA_LOSS is not emulated (the coordinator never sends it)")
}

/// 50000 (user-defined): ADD DATABASE before the database's first full backup, or not in the FULL
/// recovery model. SQL Server requires both ("Prerequisites, restrictions, and recommendations
/// for Always On availability groups": availability databases) but documents no error number for
/// them, so the double raises a user-defined error that names the prerequisite.
pub fn not_backed_up(database: &str) -> SqlError {
    SqlError::new(
        50000,
        16,
        format!(
            "Database '{database}' cannot join an availability group until it uses the FULL \
             recovery model and has a full database backup (BACKUP DATABASE)."
        ),
    )
}

/// 50000 (user-defined): a second availability group; the double holds one.
pub fn one_group_only() -> SqlError {
    not_emulated("this instance already holds an availability group, and the double holds one")
}

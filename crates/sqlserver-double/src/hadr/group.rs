//! The availability group as a replica holds it: the configuration every replica shares (what
//! sys.availability_groups and sys.availability_replicas show, "sys.availability_groups
//! (Transact-SQL)", "sys.availability_replicas (Transact-SQL)") and the local replica's state.
//! Persisted as `<data dir>/double-availability-group.json` at every change, as SQL Server keeps
//! its group's metadata in master.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::datafile::write_atomically;
use crate::errors::{self, SqlError};
use crate::tsql::{AllowConnections, GroupOptions, ReplicaSpec};

pub const FILE_NAME: &str = "double-availability-group.json";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replica {
    /// replica_server_name: the server's @@SERVERNAME.
    pub name: String,
    pub endpoint_url: String,
    pub availability_mode: String,
    pub failover_mode: String,
    pub seeding_mode: String,
    pub secondary_allow: AllowConnections,
}

impl Replica {
    pub fn from_spec(spec: &ReplicaSpec) -> Self {
        Self {
            name: spec.name.clone(),
            endpoint_url: spec.endpoint_url.clone(),
            availability_mode: spec.availability_mode.clone(),
            failover_mode: spec.failover_mode.clone(),
            seeding_mode: spec.seeding_mode.clone(),
            secondary_allow: spec.secondary_allow,
        }
    }

    /// `host:port` of `TCP://host:port`.
    pub fn address(&self) -> String {
        let url = &self.endpoint_url;
        url.get(..6)
            .filter(|scheme| scheme.eq_ignore_ascii_case("tcp://"))
            .map_or(url.as_str(), |_| &url[6..])
            .trim_end_matches('/')
            .to_owned()
    }
}

/// The configuration the primary replicates to every replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupConfig {
    pub name: String,
    /// sys.availability_groups.sequence_number: grows at every change of the configuration the
    /// primary makes, failovers and changes of its set of synchronized secondaries included.
    pub sequence_number: i64,
    pub cluster_type: String,
    pub db_failover: bool,
    pub required_synchronized_secondaries_to_commit: u32,
    /// Whether the group was created WITH (WRITE_LEASE_VALIDITY = …).
    pub write_lease: bool,
    pub replicas: Vec<Replica>,
    /// The replica that made this configuration as primary.
    pub primary: String,
    /// The availability databases.
    pub databases: Vec<String>,
}

impl GroupConfig {
    pub fn replica(&self, name: &str) -> Option<&Replica> {
        self.replicas
            .iter()
            .find(|r| r.name.eq_ignore_ascii_case(name))
    }

    pub fn has_database(&self, name: &str) -> bool {
        self.databases.iter().any(|d| d.eq_ignore_ascii_case(name))
    }
}

/// sys.dm_hadr_availability_replica_states.role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Resolving,
    Primary,
    Secondary,
}

impl Role {
    pub fn desc(self) -> &'static str {
        match self {
            Role::Resolving => "RESOLVING",
            Role::Primary => "PRIMARY",
            Role::Secondary => "SECONDARY",
        }
    }
}

/// The local replica of the group.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Group {
    pub config: GroupConfig,
    pub role: Role,
    /// RESOLVING until the cluster manager acts (SET (ROLE = SECONDARY) or FAILOVER): after
    /// OFFLINE, or after a restart of a replica that was primary.
    pub awaiting_manager: bool,
    /// GRANT CREATE ANY DATABASE: automatic seeding may create the group's databases here.
    pub create_any_database: bool,
    /// Lowercase names of the availability databases this replica holds as failover-ready: what
    /// a planned FAILOVER checks ("sys.dm_hadr_database_replica_states": a synchronous-commit
    /// secondary database shows SYNCHRONIZED when the local cache says it is failover ready and
    /// it is synchronizing).
    pub ready: BTreeSet<String>,
    /// The end of the external write lease; never persisted (a restarted replica is not primary).
    #[serde(skip)]
    pub lease_until: Option<Instant>,
}

impl Group {
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(FILE_NAME)
    }

    /// The group kept in `data_dir`, as a restarted replica has it. A replica of a CLUSTER_TYPE =
    /// EXTERNAL group comes back RESOLVING, whatever it was, until its cluster manager acts ("High
    /// availability and data protection for availability group configurations", SQL Server on
    /// Linux: the external cluster manager decides which replica is promoted). A former secondary
    /// cannot know which commits it missed while it was down, so its databases are no longer
    /// failover-ready until a primary has synchronized them again; a former primary's are.
    pub fn load(data_dir: &Path) -> io::Result<Option<Self>> {
        let bytes = match std::fs::read(Self::path(data_dir)) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut group: Group = serde_json::from_slice(&bytes).map_err(io::Error::other)?;
        match group.role {
            Role::Primary => group.awaiting_manager = true,
            Role::Secondary | Role::Resolving => {
                if !group.awaiting_manager {
                    group.ready.clear();
                }
            }
        }
        group.role = Role::Resolving;
        Ok(Some(group))
    }

    pub fn save(&self, data_dir: &Path) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        write_atomically(&Self::path(data_dir), &bytes)
    }

    pub fn remove(data_dir: &Path) -> io::Result<()> {
        match std::fs::remove_file(Self::path(data_dir)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// "CREATE AVAILABILITY GROUP (Transact-SQL)" on `server`, which becomes the primary.
    pub fn create(
        server: &str,
        name: &str,
        options: &GroupOptions,
        replicas: &[ReplicaSpec],
    ) -> Result<Self, SqlError> {
        for spec in replicas {
            check_spec(name, &options.cluster_type, spec)?;
        }
        if !replicas.iter().any(|r| r.name.eq_ignore_ascii_case(server)) {
            return Err(errors::no_local_replica(name));
        }
        let lease = options.write_lease_validity;
        Ok(Self {
            config: GroupConfig {
                name: name.into(),
                sequence_number: 1,
                cluster_type: options.cluster_type.clone(),
                db_failover: options.db_failover,
                required_synchronized_secondaries_to_commit: options
                    .required_synchronized_secondaries_to_commit,
                write_lease: lease.is_some(),
                replicas: replicas.iter().map(Replica::from_spec).collect(),
                primary: server.into(),
                databases: Vec::new(),
            },
            role: Role::Primary,
            awaiting_manager: false,
            create_any_database: false,
            ready: BTreeSet::new(),
            lease_until: lease.map(|n| Instant::now() + Duration::from_secs(n.into())),
        })
    }

    /// A replica joining the configuration a primary sent it ("ALTER AVAILABILITY GROUP … JOIN").
    pub fn joined(config: GroupConfig) -> Self {
        Self {
            config,
            role: Role::Secondary,
            awaiting_manager: false,
            create_any_database: false,
            ready: BTreeSet::new(),
            lease_until: None,
        }
    }

    pub fn name_is(&self, name: &str) -> bool {
        self.config.name.eq_ignore_ascii_case(name)
    }

    /// One more configuration change.
    pub fn bump(&mut self) {
        self.config.sequence_number += 1;
    }

    pub fn require_primary(&self) -> Result<(), SqlError> {
        if self.role == Role::Primary {
            Ok(())
        } else {
            Err(errors::not_primary(&self.config.name))
        }
    }

    pub fn add_replica(&mut self, spec: &ReplicaSpec) -> Result<(), SqlError> {
        self.require_primary()?;
        check_spec(&self.config.name, &self.config.cluster_type, spec)?;
        if self.config.replica(&spec.name).is_some() {
            return Err(errors::replica_exists(&spec.name, &self.config.name));
        }
        self.config.replicas.push(Replica::from_spec(spec));
        self.bump();
        Ok(())
    }

    pub fn remove_replica(&mut self, server: &str, name: &str) -> Result<(), SqlError> {
        self.require_primary()?;
        if self.config.replica(name).is_none() {
            return Err(errors::no_such_replica(name, &self.config.name));
        }
        if name.eq_ignore_ascii_case(server) {
            return Err(errors::cannot_remove_local(name, &self.config.name));
        }
        self.config
            .replicas
            .retain(|r| !r.name.eq_ignore_ascii_case(name));
        self.bump();
        Ok(())
    }

    pub fn modify_replica(&mut self, name: &str, allow: AllowConnections) -> Result<(), SqlError> {
        self.require_primary()?;
        let group = self.config.name.clone();
        let replica = self
            .config
            .replicas
            .iter_mut()
            .find(|r| r.name.eq_ignore_ascii_case(name))
            .ok_or_else(|| errors::no_such_replica(name, &group))?;
        replica.secondary_allow = allow;
        self.bump();
        Ok(())
    }

    /// "ALTER AVAILABILITY GROUP … SET (REQUIRED_SYNCHRONIZED_SECONDARIES_TO_COMMIT = n)", on the
    /// primary: commits wait for that many synchronized secondaries from the next one on.
    pub fn set_required(&mut self, required: u32) -> Result<(), SqlError> {
        self.require_primary()?;
        self.config.required_synchronized_secondaries_to_commit = required;
        self.bump();
        Ok(())
    }

    /// "ALTER AVAILABILITY GROUP … SET (WRITE_LEASE_VALIDITY = n)": valid for `seconds` from
    /// now, on any replica (a failover target sets its own before it fails over). 47116 when the
    /// group has no external lease, 47119 when the lease would end earlier than it does.
    pub fn set_write_lease(&mut self, seconds: u32) -> Result<(), SqlError> {
        if !self.config.write_lease {
            return Err(errors::no_external_lease(&self.config.name));
        }
        let until = Instant::now() + Duration::from_secs(seconds.into());
        if self.lease_until.is_some_and(|current| current > until) {
            return Err(errors::lease_shorter(&self.config.name));
        }
        self.lease_until = Some(until);
        Ok(())
    }

    /// Whether a commit may proceed as far as the write lease goes.
    pub fn lease_valid(&self) -> bool {
        !self.config.write_lease || self.lease_until.is_some_and(|until| until > Instant::now())
    }
}

/// The replica options SQL Server accepts for this cluster type: FAILOVER_MODE = EXTERNAL with
/// CLUSTER_TYPE = EXTERNAL (47102); the double emulates synchronous commit only.
fn check_spec(group: &str, cluster_type: &str, spec: &ReplicaSpec) -> Result<(), SqlError> {
    if cluster_type.eq_ignore_ascii_case("EXTERNAL")
        && !spec.failover_mode.eq_ignore_ascii_case("EXTERNAL")
    {
        return Err(errors::failover_mode_external(group));
    }
    if !cluster_type.eq_ignore_ascii_case("EXTERNAL") {
        return Err(errors::not_emulated("CLUSTER_TYPE other than EXTERNAL"));
    }
    if !spec
        .availability_mode
        .eq_ignore_ascii_case("SYNCHRONOUS_COMMIT")
    {
        return Err(errors::not_emulated(
            "AVAILABILITY_MODE other than SYNCHRONOUS_COMMIT",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, failover: &str) -> ReplicaSpec {
        ReplicaSpec {
            name: name.into(),
            endpoint_url: format!("TCP://{name}:5022"),
            availability_mode: "SYNCHRONOUS_COMMIT".into(),
            failover_mode: failover.into(),
            seeding_mode: "AUTOMATIC".into(),
            secondary_allow: AllowConnections::All,
        }
    }

    fn options(lease: Option<u32>) -> GroupOptions {
        GroupOptions {
            db_failover: true,
            cluster_type: "EXTERNAL".into(),
            write_lease_validity: lease,
            required_synchronized_secondaries_to_commit: 1,
        }
    }

    #[test]
    fn create_checks_the_local_replica_and_the_failover_mode() {
        let err = Group::create("a", "ag", &options(None), &[spec("b", "EXTERNAL")]);
        assert_eq!(err.unwrap_err().number, 35237);
        let err = Group::create("a", "ag", &options(None), &[spec("a", "MANUAL")]);
        assert_eq!(err.unwrap_err().number, 47102);
        let group = Group::create("A", "ag", &options(None), &[spec("a", "EXTERNAL")]).unwrap();
        assert_eq!(group.role, Role::Primary);
        assert_eq!(group.config.sequence_number, 1);
        assert_eq!(group.config.replicas[0].address(), "a:5022");
    }

    #[test]
    fn replica_changes_bump_the_sequence_number() {
        let mut group = Group::create("a", "ag", &options(None), &[spec("a", "EXTERNAL")]).unwrap();
        group.add_replica(&spec("b", "EXTERNAL")).unwrap();
        assert_eq!(
            group
                .add_replica(&spec("B", "EXTERNAL"))
                .unwrap_err()
                .number,
            35282
        );
        group.modify_replica("b", AllowConnections::No).unwrap();
        assert_eq!(group.remove_replica("a", "a").unwrap_err().number, 35284);
        assert_eq!(group.remove_replica("a", "c").unwrap_err().number, 35283);
        group.remove_replica("a", "b").unwrap();
        group.set_required(0).unwrap();
        assert_eq!(group.config.required_synchronized_secondaries_to_commit, 0);
        assert_eq!(group.config.sequence_number, 5);
        group.role = Role::Secondary;
        assert_eq!(
            group
                .add_replica(&spec("c", "EXTERNAL"))
                .unwrap_err()
                .number,
            41140
        );
        assert_eq!(group.set_required(1).unwrap_err().number, 41140);
    }

    #[test]
    fn the_write_lease_only_moves_later() {
        let mut group = Group::create("a", "ag", &options(None), &[spec("a", "EXTERNAL")]).unwrap();
        assert!(group.lease_valid());
        assert_eq!(group.set_write_lease(4).unwrap_err().number, 47116);
        let mut group =
            Group::create("a", "ag", &options(Some(30)), &[spec("a", "EXTERNAL")]).unwrap();
        assert_eq!(group.set_write_lease(4).unwrap_err().number, 47119);
        group.set_write_lease(40).unwrap();
        assert!(group.lease_valid());
        group.lease_until = Some(Instant::now());
        assert!(!group.lease_valid());
    }

    #[test]
    fn a_restarted_replica_is_resolving() {
        let dir = std::env::temp_dir().join(format!(
            "sqlserver-double-group-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut group =
            Group::create("a", "ag", &options(Some(4)), &[spec("a", "EXTERNAL")]).unwrap();
        group.ready.insert("db".into());
        group.save(&dir).unwrap();
        let primary = Group::load(&dir).unwrap().unwrap();
        assert_eq!(
            (primary.role, primary.awaiting_manager),
            (Role::Resolving, true)
        );
        assert!(primary.ready.contains("db"));
        assert!(primary.lease_until.is_none());
        group.role = Role::Secondary;
        group.save(&dir).unwrap();
        let secondary = Group::load(&dir).unwrap().unwrap();
        assert_eq!(
            (secondary.role, secondary.awaiting_manager),
            (Role::Resolving, false)
        );
        assert!(secondary.ready.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

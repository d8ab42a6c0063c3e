//! Always On availability groups with CLUSTER_TYPE = EXTERNAL, as SQL Server 2022 on Linux runs
//! them under an external cluster manager: the group's configuration and local state
//! ([`group`]), the database mirroring endpoint ([`endpoint`]) and the double's own protocol over
//! it ([`wire`]), synchronous data movement and failover ([`replication`]), and the state queries
//! ([`state`]). This module runs the group statements of "CREATE AVAILABILITY GROUP
//! (Transact-SQL)", "ALTER AVAILABILITY GROUP (Transact-SQL)" and "DROP AVAILABILITY GROUP
//! (Transact-SQL)".

pub mod endpoint;
pub mod group;
pub mod replication;
pub mod state;
pub mod wire;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::errorlog::log;
use crate::errors::{self, SqlError};
use crate::instance::{Instance, lock};
use crate::tsql::{GroupAction, GroupOptions, ReplicaSpec};
use group::{Group, Role};

/// How long JOIN waits for a primary to send this replica the group's configuration.
pub const JOIN_WAIT: Duration = Duration::from_secs(5);

fn require_hadr(instance: &Instance) -> Result<(), SqlError> {
    if instance.settings.hadr_enabled {
        Ok(())
    } else {
        Err(errors::hadr_disabled())
    }
}

pub fn create(
    instance: &Arc<Instance>,
    name: &str,
    options: &GroupOptions,
    replicas: &[ReplicaSpec],
) -> Result<(), SqlError> {
    require_hadr(instance)?;
    {
        let mut group = lock(&instance.group);
        match group.as_ref() {
            Some(g) if g.name_is(name) => return Err(errors::already_joined(name)),
            Some(_) => return Err(errors::one_group_only()),
            None => {}
        }
        let created = Group::create(instance.server_name(), name, options, replicas)?;
        instance.save_group(Some(&created));
        *group = Some(created);
    }
    log(
        "HADR",
        &format!("Availability group '{name}' was created; this replica is its PRIMARY."),
    );
    replication::sync_peers(instance);
    Ok(())
}

/// The local group named `name`, for a statement about it.
fn with_group<T>(
    instance: &Instance,
    name: &str,
    f: impl FnOnce(&mut Group) -> Result<T, SqlError>,
) -> Result<T, SqlError> {
    let mut group = lock(&instance.group);
    let g = group
        .as_mut()
        .filter(|g| g.name_is(name))
        .ok_or_else(|| errors::no_group(name))?;
    let result = f(g)?;
    instance.save_group(Some(g));
    Ok(result)
}

/// `external_cluster`: the session set `sp_set_session_context @key = N'external_cluster',
/// @value = N'yes'`, which a FAILOVER of a CLUSTER_TYPE = EXTERNAL group needs ("Manage
/// availability group failover", SQL Server on Linux); 47104 otherwise.
pub fn alter(
    instance: &Arc<Instance>,
    name: &str,
    action: &GroupAction,
    external_cluster: bool,
) -> Result<(), SqlError> {
    require_hadr(instance)?;
    match action {
        GroupAction::Join { cluster_type } => return join(instance, name, cluster_type),
        GroupAction::AddDatabase(database) => return add_database(instance, name, database),
        GroupAction::Failover | GroupAction::ForceFailoverAllowDataLoss => {
            with_group(instance, name, |g| {
                if g.config.cluster_type.eq_ignore_ascii_case("EXTERNAL") && !external_cluster {
                    return Err(errors::external_cluster_only(name));
                }
                if g.role == Role::Primary {
                    return Err(errors::already_primary(name));
                }
                Ok(())
            })?;
            if *action == GroupAction::ForceFailoverAllowDataLoss {
                return Err(errors::forced_failover_not_emulated());
            }
            return replication::failover(instance);
        }
        _ => {}
    }
    let server = instance.server_name().to_owned();
    let commits = lock(&instance.data); // a role change waits for a commit in flight
    let was_primary = with_group(instance, name, |g| {
        let was_primary = g.role == Role::Primary;
        match action {
            GroupAction::GrantCreateAnyDatabase => g.create_any_database = true,
            GroupAction::AddReplica(spec) => g.add_replica(spec)?,
            GroupAction::RemoveReplica(replica) => g.remove_replica(&server, replica)?,
            GroupAction::ModifyReplica {
                name,
                secondary_allow,
            } => g.modify_replica(name, *secondary_allow)?,
            GroupAction::SetWriteLeaseValidity(seconds) => g.set_write_lease(*seconds)?,
            GroupAction::SetRequiredSynchronizedSecondaries(n) => g.set_required(*n)?,
            // Its databases stay as failover-ready as they were (a primary taken offline holds
            // every change it committed): they stop being so once another primary commits (its
            // configuration, or its request to step down, clears them).
            GroupAction::Offline => {
                g.role = Role::Resolving;
                g.awaiting_manager = true;
                g.lease_until = None;
            }
            GroupAction::SetRoleSecondary => {
                g.role = Role::Secondary;
                g.awaiting_manager = false;
                g.lease_until = None;
            }
            GroupAction::Join { .. }
            | GroupAction::AddDatabase(_)
            | GroupAction::Failover
            | GroupAction::ForceFailoverAllowDataLoss => unreachable!("handled above"),
        }
        Ok(was_primary)
    })?;
    drop(commits);
    if matches!(action, GroupAction::Offline | GroupAction::SetRoleSecondary) {
        log(
            "HADR",
            &format!("Availability group '{name}': this replica is now {action:?}."),
        );
        if was_primary {
            replication::sync_peers(instance);
        }
    } else if was_primary {
        replication::sync_peers(instance);
    }
    Ok(())
}

/// "ALTER AVAILABILITY GROUP … JOIN": joins the configuration a primary sent this replica (47106
/// when none arrives within [`JOIN_WAIT`]; 41106 when a replica of the group is here already).
fn join(instance: &Arc<Instance>, name: &str, cluster_type: &str) -> Result<(), SqlError> {
    match lock(&instance.group).as_ref() {
        Some(g) if g.name_is(name) => return Err(errors::already_joined(name)),
        Some(_) => return Err(errors::one_group_only()),
        None => {}
    }
    let deadline = Instant::now() + JOIN_WAIT;
    let joined = loop {
        if let Some(group) = replication::take_offer(instance, name) {
            break group;
        }
        if Instant::now() > deadline {
            return Err(errors::join_timeout(name));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if !joined
        .config
        .cluster_type
        .eq_ignore_ascii_case(cluster_type)
    {
        return Err(errors::not_emulated(&format!(
            "JOIN WITH (CLUSTER_TYPE = {cluster_type}) for a group of cluster type {}",
            joined.config.cluster_type
        )));
    }
    let mut group = lock(&instance.group);
    if group.is_some() {
        return Err(errors::already_joined(name));
    }
    instance.save_group(Some(&joined));
    log(
        "HADR",
        &format!("This replica joined availability group '{name}' as SECONDARY."),
    );
    *group = Some(joined);
    Ok(())
}

/// "ALTER AVAILABILITY GROUP … ADD DATABASE" on the primary: the database must exist, use the
/// FULL recovery model and have a full backup; automatic seeding then creates it on the
/// secondaries.
fn add_database(instance: &Arc<Instance>, name: &str, database: &str) -> Result<(), SqlError> {
    {
        let data = lock(&instance.data);
        let db = data
            .get(database)
            .ok_or_else(|| errors::no_database_to_add(database, name))?
            .clone();
        with_group(instance, name, |g| {
            g.require_primary()?;
            if g.config.has_database(database) {
                return Err(errors::database_in_group(database, name));
            }
            if db.recovery != "FULL" || !db.backed_up {
                return Err(errors::not_backed_up(database));
            }
            g.config.databases.push(db.name.clone());
            g.ready.insert(db.name.to_lowercase());
            g.bump();
            Ok(())
        })?;
    }
    replication::reseed_all(instance);
    log(
        "HADR",
        &format!("Database '{database}' joined availability group '{name}'."),
    );
    Ok(())
}

/// "DROP AVAILABILITY GROUP": the local replica's metadata goes; its databases stay.
pub fn drop_group(instance: &Arc<Instance>, name: &str) -> Result<(), SqlError> {
    require_hadr(instance)?;
    {
        let _data = lock(&instance.data);
        let mut group = lock(&instance.group);
        if !group.as_ref().is_some_and(|g| g.name_is(name)) {
            return Err(errors::no_group(name));
        }
        *group = None;
        instance.save_group(None);
    }
    lock(&instance.offers).remove(&name.to_lowercase());
    *lock(&instance.upstream) = None;
    replication::sync_peers(instance);
    log("HADR", &format!("Availability group '{name}' was dropped."));
    Ok(())
}

//! The coordinator's state queries, answered with SQL Server's column types and values: the three
//! of docs/coordinator.md from the group's state ("sys.availability_groups (Transact-SQL)",
//! "sys.availability_replicas (Transact-SQL)", "sys.dm_hadr_availability_replica_states
//! (Transact-SQL)" and "sys.dm_hadr_database_replica_states (Transact-SQL)"), and the endpoint's
//! certificates from master ("sys.certificates (Transact-SQL)", "CERTENCODED (Transact-SQL)",
//! "sys.database_mirroring_endpoints (Transact-SQL)").

use super::group::{Group, Role};
use crate::instance::{Instance, lock};
use crate::tokens::{Column, ColumnType, Value};

/// synchronization_state_desc of one availability database here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SyncState {
    NotSynchronizing,
    Synchronizing,
    Synchronized,
}

impl SyncState {
    fn desc(self) -> &'static str {
        match self {
            SyncState::NotSynchronizing => "NOT SYNCHRONIZING",
            SyncState::Synchronizing => "SYNCHRONIZING",
            SyncState::Synchronized => "SYNCHRONIZED",
        }
    }
}

/// synchronization_health_desc, the least healthy of the databases'. With no availability
/// database there is nothing to be healthy: NOT_HEALTHY (Microsoft's mssql-server-ha agent treats
/// a group without databases apart for this reason).
fn health(states: &[SyncState]) -> &'static str {
    if states.is_empty() || states.contains(&SyncState::NotSynchronizing) {
        "NOT_HEALTHY"
    } else if states.contains(&SyncState::Synchronizing) {
        "PARTIALLY_HEALTHY"
    } else {
        "HEALTHY"
    }
}

/// This replica's availability databases that exist here, with their state and change count. A
/// primary database shows SYNCHRONIZED; a secondary one SYNCHRONIZED when it is failover-ready and
/// its primary is connected, SYNCHRONIZING when only connected, NOT SYNCHRONIZING otherwise.
fn local_databases(instance: &Instance, group: &Group) -> Vec<(String, SyncState, u64)> {
    let data = lock(&instance.data);
    let connected = instance.upstream_connected();
    group
        .config
        .databases
        .iter()
        .filter_map(|name| {
            let db = data.get(name)?;
            let state = match group.role {
                Role::Primary => SyncState::Synchronized,
                Role::Secondary if connected && group.ready.contains(&name.to_lowercase()) => {
                    SyncState::Synchronized
                }
                Role::Secondary if connected => SyncState::Synchronizing,
                _ => SyncState::NotSynchronizing,
            };
            Some((db.name.clone(), state, db.lsn))
        })
        .collect()
}

fn text(s: &str) -> Value {
    Value::NVarChar(s.into())
}

fn local_health(instance: &Instance, group: &Group) -> &'static str {
    let states: Vec<SyncState> = local_databases(instance, group)
        .into_iter()
        .map(|(_, state, _)| state)
        .collect();
    let missing = group.config.databases.len() - states.len();
    let mut states = states;
    states.extend(std::iter::repeat_n(SyncState::NotSynchronizing, missing));
    health(&states)
}

/// A snapshot of the group, taken without holding its lock while other locks are taken.
fn snapshot(instance: &Instance) -> Option<Group> {
    lock(&instance.group).clone()
}

pub fn local_replica(instance: &Instance) -> (Vec<Column>, Vec<Vec<Value>>) {
    let columns = vec![
        Column::new("name", ColumnType::NVarChar(128)),
        Column::new("sequence_number", ColumnType::BigInt),
        Column::new(
            "required_synchronized_secondaries_to_commit",
            ColumnType::Int,
        ),
        Column::new("role_desc", ColumnType::NVarChar(60)),
        Column::new("operational_state_desc", ColumnType::NVarChar(60)),
        Column::new("connected_state_desc", ColumnType::NVarChar(60)),
        Column::new("synchronization_health_desc", ColumnType::NVarChar(60)),
    ];
    let Some(group) = snapshot(instance) else {
        return (columns, Vec::new());
    };
    // RESOLVING: OFFLINE, the group lacks a primary here; a secondary is ONLINE.
    let operational = match group.role {
        Role::Resolving => "OFFLINE",
        Role::Primary | Role::Secondary => "ONLINE",
    };
    let connected = match group.role {
        Role::Primary => true,
        Role::Secondary => instance.upstream_connected(),
        Role::Resolving => false,
    };
    let row = vec![
        text(&group.config.name),
        Value::BigInt(group.config.sequence_number),
        Value::Int(group.config.required_synchronized_secondaries_to_commit as i32),
        text(group.role.desc()),
        text(operational),
        text(if connected {
            "CONNECTED"
        } else {
            "DISCONNECTED"
        }),
        text(local_health(instance, &group)),
    ];
    (columns, vec![row])
}

/// Every replica of the configuration; the states of remote replicas only on the primary
/// (elsewhere the view has only the local row, so the LEFT JOIN gives NULLs).
pub fn replicas(instance: &Instance) -> (Vec<Column>, Vec<Vec<Value>>) {
    let columns = vec![
        Column::new("replica_server_name", ColumnType::NVarChar(256)),
        Column::new("endpoint_url", ColumnType::NVarChar(128)),
        Column::new(
            "secondary_role_allow_connections_desc",
            ColumnType::NVarChar(60),
        ),
        Column::new("role_desc", ColumnType::NVarChar(60)),
        Column::new("connected_state_desc", ColumnType::NVarChar(60)),
        Column::new("synchronization_health_desc", ColumnType::NVarChar(60)),
    ];
    let Some(group) = snapshot(instance) else {
        return (columns, Vec::new());
    };
    let local_health = local_health(instance, &group);
    let peers = lock(&instance.peers).clone();
    let no_databases = group.config.databases.is_empty();
    let rows = group
        .config
        .replicas
        .iter()
        .map(|replica| {
            let mut row = vec![
                text(&replica.name),
                text(&replica.endpoint_url),
                text(replica.secondary_allow.desc()),
            ];
            let state: [Value; 3] = if instance.is_local(&replica.name) {
                let connected = match group.role {
                    Role::Primary => true,
                    Role::Secondary => instance.upstream_connected(),
                    Role::Resolving => false,
                };
                [
                    text(group.role.desc()),
                    text(if connected {
                        "CONNECTED"
                    } else {
                        "DISCONNECTED"
                    }),
                    text(local_health),
                ]
            } else if group.role == Role::Primary {
                let state = peers
                    .get(&replica.name)
                    .map(|p| lock(&p.state).clone())
                    .unwrap_or_default();
                if state.connected && state.joined {
                    let health = if no_databases {
                        "NOT_HEALTHY"
                    } else if state.synchronized {
                        "HEALTHY"
                    } else {
                        "PARTIALLY_HEALTHY"
                    };
                    [text("SECONDARY"), text("CONNECTED"), text(health)]
                } else {
                    [Value::Null, text("DISCONNECTED"), text("NOT_HEALTHY")]
                }
            } else {
                [Value::Null, Value::Null, Value::Null]
            };
            row.extend(state);
            row
        })
        .collect();
    (columns, rows)
}

pub fn local_databases_query(instance: &Instance) -> (Vec<Column>, Vec<Vec<Value>>) {
    let columns = vec![
        Column::new("", ColumnType::NVarChar(128)),
        Column::new("synchronization_state_desc", ColumnType::NVarChar(60)),
        Column::new("is_suspended", ColumnType::Bit),
        Column::new("last_hardened_lsn", ColumnType::Numeric(25)),
    ];
    let Some(group) = snapshot(instance) else {
        return (columns, Vec::new());
    };
    let rows = local_databases(instance, &group)
        .into_iter()
        .map(|(name, state, lsn)| {
            vec![
                text(&name),
                text(state.desc()),
                Value::Bit(false),
                Value::Numeric(lsn.into()),
            ]
        })
        .collect();
    (columns, rows)
}

/// [`crate::tsql::ENDPOINT_CERTIFICATES_QUERY`]: name (sysname), CERTENCODED's varbinary(8000)
/// (an expression: no column name) and the endpoint's name (sysname), NULL unless the endpoint
/// authenticates with that certificate.
pub fn endpoint_certificates(instance: &Instance) -> (Vec<Column>, Vec<Vec<Value>>) {
    let columns = vec![
        Column::new("name", ColumnType::NVarChar(128)),
        Column::new("", ColumnType::VarBinary(8000)),
        Column::new("name", ColumnType::NVarChar(128)),
    ];
    let rows = lock(&instance.master)
        .endpoint_certificates()
        .into_iter()
        .map(|(name, der, endpoint)| {
            vec![
                text(&name),
                Value::VarBinary(der),
                endpoint.map_or(Value::Null, |e| text(&e)),
            ]
        })
        .collect();
    (columns, rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_is_the_least_healthy_database() {
        use SyncState::*;
        assert_eq!(health(&[]), "NOT_HEALTHY");
        assert_eq!(health(&[Synchronized, Synchronized]), "HEALTHY");
        assert_eq!(health(&[Synchronized, Synchronizing]), "PARTIALLY_HEALTHY");
        assert_eq!(health(&[Synchronizing, NotSynchronizing]), "NOT_HEALTHY");
    }
}

//! Runs a batch's statements for one session and builds the token stream that answers it. As in
//! SQL Server, a statement's error ends that statement only: the batch goes on, each statement's
//! result ends with a DONE token (DONE_MORE when another follows).

use std::sync::Arc;

use crate::databases::{Change, Database};
use crate::errors::{self, SqlError};
use crate::hadr::group::Role;
use crate::hadr::{self, replication, state};
use crate::instance::{Instance, lock};
use crate::master::Endpoint;
use crate::tokens::{self, Column, ColumnType, Value};
use crate::tsql::{self, AllowConnections, Batch, StateQuery, Statement, TableName};

/// What `SELECT @@VERSION` answers.
pub const VERSION_TEXT: &str = "Microsoft SQL Server 2022 test double (mssql-operator)";

/// What one connection remembers between batches.
#[derive(Clone, Debug, Default)]
pub struct Session {
    /// `sp_set_session_context @key = N'external_cluster', @value = N'yes'` ran.
    pub external_cluster: bool,
    /// LOGIN7 TypeFlags fReadOnlyIntent: ApplicationIntent=ReadOnly.
    pub read_only_intent: bool,
}

enum Output {
    Done,
    Inserted,
    Rows(Vec<Column>, Vec<Vec<Value>>),
}

/// The token stream answering the batch `sql`.
pub fn run(instance: &Arc<Instance>, session: &mut Session, sql: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let server = instance.server_name().to_owned();
    let statements = match tsql::parse(sql) {
        Batch::Statements(statements) => statements,
        Batch::Syntax(e) => {
            error(&mut out, &errors::syntax(&e.near), &server, false);
            return out;
        }
        Batch::Unknown => {
            error(
                &mut out,
                &errors::not_emulated("this statement"),
                &server,
                false,
            );
            return out;
        }
    };
    let count = statements.len();
    for (i, statement) in statements.iter().enumerate() {
        let more = i + 1 < count;
        match execute(instance, session, statement) {
            Ok(Output::Done) => tokens::done(&mut out, more_flag(more), 0, 0),
            Ok(Output::Inserted) => tokens::done(
                &mut out,
                tokens::done::COUNT | more_flag(more),
                tokens::done::CMD_INSERT,
                1,
            ),
            Ok(Output::Rows(columns, rows)) => tokens::result_set(&mut out, &columns, &rows, more),
            Err(e) => error(&mut out, &e, &server, more),
        }
    }
    out
}

fn more_flag(more: bool) -> u16 {
    if more { tokens::done::MORE } else { 0 }
}

fn error(out: &mut Vec<u8>, e: &SqlError, server: &str, more: bool) {
    tokens::error(out, &e.message(server));
    tokens::done(out, tokens::done::ERROR | more_flag(more), 0, 0);
}

fn unnamed(ty: ColumnType) -> Column {
    Column::new("", ty)
}

fn execute(
    instance: &Arc<Instance>,
    session: &mut Session,
    statement: &Statement,
) -> Result<Output, SqlError> {
    let rows = |(columns, rows)| Ok(Output::Rows(columns, rows));
    match statement {
        Statement::SelectOne => rows((
            vec![Column {
                nullable: false,
                ..unnamed(ColumnType::Int)
            }],
            vec![vec![Value::Int(1)]],
        )),
        Statement::SelectVersion => rows((
            vec![unnamed(ColumnType::NVarChar(4000))],
            vec![vec![Value::NVarChar(VERSION_TEXT.into())]],
        )),
        Statement::SelectServerNameAndHadr => rows((
            vec![
                unnamed(ColumnType::NVarChar(128)),
                unnamed(ColumnType::Variant),
            ],
            vec![vec![
                Value::NVarChar(instance.server_name().into()),
                Value::VariantInt(i32::from(instance.settings.hadr_enabled)),
            ]],
        )),
        Statement::State(StateQuery::LocalReplica) => rows(state::local_replica(instance)),
        Statement::State(StateQuery::Replicas) => rows(state::replicas(instance)),
        Statement::State(StateQuery::LocalDatabases) => {
            rows(state::local_databases_query(instance))
        }
        Statement::State(StateQuery::EndpointCertificates) => {
            rows(state::endpoint_certificates(instance))
        }
        Statement::SetSessionContext { key, value } => {
            if key == "external_cluster" {
                session.external_cluster = value.eq_ignore_ascii_case("yes");
            }
            Ok(Output::Done)
        }
        Statement::CreateMasterKey { .. } => in_master(instance, |m| m.create_master_key()),
        Statement::CreateLogin { name, .. } => in_master(instance, |m| m.create_login(name)),
        Statement::CreateUser { name, login } => {
            in_master(instance, |m| m.create_user(name, login))
        }
        Statement::CreateCertificate {
            name,
            owner,
            file,
            decryption_password,
        } => in_master(instance, |m| {
            m.create_certificate(
                name,
                owner.as_deref(),
                file,
                decryption_password.as_deref().unwrap_or_default(),
            )
        }),
        Statement::CreateEndpoint {
            name,
            started,
            port,
            role,
            certificate,
            encryption_required,
        } => {
            in_master(instance, |m| {
                m.create_endpoint(Endpoint {
                    name: name.clone(),
                    started: *started,
                    port: *port,
                    role: role.clone(),
                    certificate: certificate.clone(),
                    encryption_required: *encryption_required,
                    connect: Vec::new(),
                })
            })?;
            if *started {
                instance.start_endpoint(*port);
            }
            Ok(Output::Done)
        }
        // The endpoint reads master at each handshake: connections made already keep their
        // certificates, new ones use the new certificate and trust.
        Statement::AlterEndpointCertificate { name, certificate } => in_master(instance, |m| {
            m.alter_endpoint_certificate(name, certificate)
        }),
        Statement::DropCertificate { name } => in_master(instance, |m| m.drop_certificate(name)),
        Statement::GrantConnectOnEndpoint { endpoint, login } => {
            in_master(instance, |m| m.grant_connect(endpoint, login))
        }
        Statement::CreateAvailabilityGroup {
            name,
            options,
            replicas,
        } => hadr::create(instance, name, options, replicas).map(|()| Output::Done),
        Statement::AlterAvailabilityGroup { name, action } => {
            hadr::alter(instance, name, action, session.external_cluster).map(|()| Output::Done)
        }
        Statement::DropAvailabilityGroup { name } => {
            hadr::drop_group(instance, name).map(|()| Output::Done)
        }
        Statement::CreateDatabase { name } => {
            let mut data = lock(&instance.data);
            if data.get(name).is_some() {
                return Err(errors::database_exists(name));
            }
            store(&mut data, Database::new(name))
        }
        Statement::SetRecovery { database, model } => {
            let mut data = lock(&instance.data);
            let mut db = data.require(database)?.clone();
            db.recovery = model.clone();
            store(&mut data, db)
        }
        Statement::BackupDatabase { database, .. } => {
            // Nothing is written: the double only records that a full backup was taken.
            let mut data = lock(&instance.data);
            let mut db = data.require(database)?.clone();
            db.backed_up = true;
            store(&mut data, db)
        }
        Statement::SetHadrResume { database } => {
            // Data movement is never suspended in the double: resuming a joined database is a
            // no-op ("ALTER DATABASE SET HADR (Transact-SQL)").
            let in_group = lock(&instance.group)
                .as_ref()
                .is_some_and(|g| g.config.has_database(database));
            if in_group {
                Ok(Output::Done)
            } else {
                lock(&instance.data).require(database)?;
                Err(errors::not_an_availability_database(database))
            }
        }
        Statement::CreateTable { table, column } => {
            let change = Change::CreateTable {
                schema: table.schema.clone(),
                table: table.table.clone(),
                column: column.clone(),
            };
            replication::commit(instance, &table.database, &change).map(|()| Output::Done)
        }
        Statement::Insert { table, value } => {
            let change = Change::Insert {
                schema: table.schema.clone(),
                table: table.table.clone(),
                key: *value,
            };
            replication::commit(instance, &table.database, &change).map(|()| Output::Inserted)
        }
        Statement::SelectColumn { table, column } => {
            let keys = read(instance, session, table, |t| {
                if t.column.eq_ignore_ascii_case(column) {
                    Ok(t.keys.iter().map(|k| vec![Value::BigInt(*k)]).collect())
                } else {
                    Err(errors::invalid_column(column))
                }
            })?;
            rows((vec![Column::new(column, ColumnType::BigInt)], keys))
        }
        Statement::CountRows { table } => {
            let count = read(instance, session, table, |t| {
                Ok(vec![vec![Value::BigInt(t.keys.len() as i64)]])
            })?;
            rows((vec![unnamed(ColumnType::BigInt)], count))
        }
    }
}

fn in_master(
    instance: &Instance,
    change: impl FnOnce(&mut crate::master::Master) -> Result<(), SqlError>,
) -> Result<Output, SqlError> {
    let mut master = lock(&instance.master);
    let mut next = master.clone();
    change(&mut next)?;
    instance
        .save_master(&next)
        .map_err(|e| errors::not_emulated(&format!("master cannot be written: {e}")))?;
    *master = next;
    Ok(Output::Done)
}

fn store(data: &mut crate::databases::Databases, db: Database) -> Result<Output, SqlError> {
    data.store(db)
        .map_err(|e| errors::not_emulated(&format!("the database file cannot be written: {e}")))?;
    Ok(Output::Done)
}

/// Reads a table, if this replica may: an availability database is readable on the primary, and
/// on a secondary as its SECONDARY_ROLE (ALLOW_CONNECTIONS = …) allows ("Configure read-only
/// access to a secondary replica of an Always On availability group": NO → 976, READ_ONLY → only
/// with ApplicationIntent=ReadOnly, else 978, ALL → any connection); RESOLVING → 983.
fn read(
    instance: &Instance,
    session: &Session,
    table: &TableName,
    f: impl FnOnce(&crate::databases::Table) -> Result<Vec<Vec<Value>>, SqlError>,
) -> Result<Vec<Vec<Value>>, SqlError> {
    let database = &table.database;
    if let Some(g) = lock(&instance.group)
        .as_ref()
        .filter(|g| g.config.has_database(database))
    {
        let allow = g
            .config
            .replica(instance.server_name())
            .map_or(AllowConnections::No, |r| r.secondary_allow);
        match (g.role, allow) {
            (Role::Primary, _) | (Role::Secondary, AllowConnections::All) => {}
            (Role::Secondary, AllowConnections::ReadOnly) if session.read_only_intent => {}
            (Role::Secondary, AllowConnections::ReadOnly) => {
                return Err(errors::read_intent_required(database));
            }
            (Role::Secondary, AllowConnections::No) => return Err(errors::not_readable(database)),
            (Role::Resolving, _) => return Err(errors::resolving(database)),
        }
    }
    let data = lock(&instance.data);
    let db = data.require(database)?;
    f(db.table(&table.schema, &table.table)?)
}

//! The local SQL Server, over TDS (tiberius): what it says of itself, and the statements of
//! [`crate::tsql`]. One connection is kept and made again after any failure; every call has a
//! deadline, so a frozen server counts as silent instead of holding the coordinator up.

use std::time::Duration;

use tiberius::{AuthMethod, Client, Config, EncryptionLevel};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

use crate::decide::Role;
use crate::tsql;

/// Where the local server listens and how to log in.
#[derive(Clone, Debug)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    #[error("the server did not answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot reach the server: {0}")]
    Io(#[from] std::io::Error),
    #[error("Msg {number}: {message}")]
    Server { number: u32, message: String },
    #[error("{0}")]
    Client(String),
    #[error("unexpected answer to {query}: {detail}")]
    Answer { query: &'static str, detail: String },
    #[error("not sent: too little is left of the last proof of holding the Lease")]
    OutOfTime,
}

impl SqlError {
    /// SQL Server's error number, for the errors that mean a step is already done.
    pub fn number(&self) -> Option<u32> {
        match self {
            Self::Server { number, .. } => Some(*number),
            _ => None,
        }
    }
}

impl From<tiberius::error::Error> for SqlError {
    fn from(error: tiberius::error::Error) -> Self {
        match error {
            tiberius::error::Error::Server(e) => Self::Server {
                number: e.code(),
                message: e.message().to_owned(),
            },
            tiberius::error::Error::Io { message, .. } => Self::Client(message),
            other => Self::Client(other.to_string()),
        }
    }
}

/// The local replica, as the three state queries of docs/coordinator.md read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Local {
    /// `None`: this server holds no group.
    pub group: Option<GroupState>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupState {
    pub name: String,
    pub sequence: i64,
    /// REQUIRED_SYNCHRONIZED_SECONDARIES_TO_COMMIT.
    pub required: usize,
    pub role: Role,
    /// `connected_state_desc` = CONNECTED: a secondary's link to its primary is up.
    pub connected: bool,
    /// Every local availability database says SYNCHRONIZED.
    pub synchronized: bool,
    pub databases: Vec<String>,
}

/// One replica as the primary sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaRow {
    pub name: String,
    pub access: String,
    pub role: Option<Role>,
    pub connected: bool,
    /// `synchronization_health_desc` = HEALTHY: every database of it is synchronized.
    pub synchronized: bool,
}

fn role(desc: &str) -> Role {
    match desc {
        "PRIMARY" => Role::Primary,
        "SECONDARY" => Role::Secondary,
        _ => Role::Resolving,
    }
}

type Connection = Client<Compat<TcpStream>>;

/// The connection to the local server, made when needed.
pub struct Server {
    target: Target,
    /// A state query's deadline: a server that misses it counts as silent.
    probe_timeout: Duration,
    connection: Option<Connection>,
}

/// A statement's deadline: a group change or a failover may take SQL Server several seconds.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(15);

impl Server {
    pub fn new(target: Target, probe_timeout: Duration) -> Self {
        Self {
            target,
            probe_timeout,
            connection: None,
        }
    }

    async fn connect(&self) -> Result<Connection, SqlError> {
        let mut config = Config::new();
        config.host(&self.target.host);
        config.port(self.target.port);
        config.authentication(AuthMethod::sql_server(
            &self.target.user,
            &self.target.password,
        ));
        // The server is this pod's own, reached over the pod's loopback; its certificate is the
        // one the operator checks separately (CheckServedCertificate).
        config.encryption(EncryptionLevel::Required);
        config.trust_cert();
        config.application_name("mssql-coordinator");
        let tcp = TcpStream::connect(config.get_addr()).await?;
        tcp.set_nodelay(true)?;
        Ok(Client::connect(config, tcp.compat_write()).await?)
    }

    /// Runs `work` on the connection within `timeout`; a failure drops the connection.
    async fn with<T>(
        &mut self,
        timeout: Duration,
        work: impl AsyncFnOnce(&mut Connection) -> Result<T, SqlError>,
    ) -> Result<T, SqlError> {
        let attempt = async {
            if self.connection.is_none() {
                self.connection = Some(self.connect().await?);
            }
            let connection = self.connection.as_mut().expect("connected above");
            work(connection).await
        };
        let result = match tokio::time::timeout(timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(SqlError::Timeout(timeout)),
        };
        if matches!(
            result,
            Err(SqlError::Timeout(_) | SqlError::Io(_) | SqlError::Client(_))
        ) {
            self.connection = None;
        }
        result
    }

    /// Runs one batch; `done` lists the error numbers that mean it was done before.
    pub async fn execute(&mut self, batch: &str, done: &[u32]) -> Result<(), SqlError> {
        self.execute_within(STATEMENT_TIMEOUT, batch, done).await
    }

    /// [`Server::execute`] with a probe's deadline, for a statement the loop repeats every tick
    /// (the write lease's renewal): one that hangs must not hold up the Lease's renewal.
    pub async fn execute_quickly(&mut self, batch: &str) -> Result<(), SqlError> {
        self.execute_within(self.probe_timeout, batch, &[]).await
    }

    /// [`Server::execute`] with `timeout`.
    pub async fn execute_within(
        &mut self,
        timeout: Duration,
        batch: &str,
        done: &[u32],
    ) -> Result<(), SqlError> {
        let result = self
            .with(timeout, async |c| {
                c.simple_query(batch).await?.into_results().await?;
                Ok(())
            })
            .await;
        match result {
            Err(e) if e.number().is_some_and(|n| done.contains(&n)) => Ok(()),
            other => other,
        }
    }

    /// `SELECT @@SERVERNAME, SERVERPROPERTY('IsHadrEnabled')`: the server's name and whether HADR
    /// is on.
    pub async fn probe(&mut self) -> Result<(String, bool), SqlError> {
        self.with(self.probe_timeout, async |c| {
            let row = c
                .simple_query(tsql::probe())
                .await?
                .into_row()
                .await?
                .ok_or(SqlError::Answer {
                    query: "the probe",
                    detail: "no row".into(),
                })?;
            let name: &str = row.get(0).unwrap_or_default();
            let hadr: i32 = row.get(1).unwrap_or(0);
            Ok((name.to_owned(), hadr == 1))
        })
        .await
    }

    /// The local replica and its databases.
    pub async fn local(&mut self) -> Result<Local, SqlError> {
        self.with(self.probe_timeout, async |c| {
            let rows = c
                .simple_query(tsql::QUERY_LOCAL)
                .await?
                .into_first_result()
                .await?;
            let Some(row) = rows.first() else {
                return Ok(Local { group: None });
            };
            let name: &str = row.get(0).unwrap_or_default();
            let sequence: i64 = row.get(1).unwrap_or(0);
            let required: i32 = row.get(2).unwrap_or(0);
            let role_desc: &str = row.get(3).unwrap_or_default();
            let connected: &str = row.get(5).unwrap_or_default();
            let (name, role, connected) =
                (name.to_owned(), role(role_desc), connected == "CONNECTED");
            let databases = c
                .simple_query(tsql::QUERY_DATABASES)
                .await?
                .into_first_result()
                .await?;
            let synchronized = databases
                .iter()
                .all(|db| db.get::<&str, _>(1) == Some("SYNCHRONIZED"));
            let databases = databases
                .iter()
                .filter_map(|db| db.get::<&str, _>(0).map(str::to_owned))
                .collect();
            Ok(Local {
                group: Some(GroupState {
                    name,
                    sequence,
                    required: usize::try_from(required).unwrap_or(0),
                    role,
                    connected,
                    synchronized,
                    databases,
                }),
            })
        })
        .await
    }

    /// The endpoint certificates master holds, and the one the endpoint presents.
    pub async fn endpoint_certificates(&mut self) -> Result<crate::endpoint::Master, SqlError> {
        self.with(self.probe_timeout, async |c| {
            let rows = c
                .simple_query(tsql::QUERY_ENDPOINT_CERTIFICATES)
                .await?
                .into_first_result()
                .await?;
            Ok(crate::endpoint::Master::from_rows(rows.iter().map(|row| {
                let name = row.get::<&str, _>(0).unwrap_or_default().to_owned();
                let der = row.get::<&[u8], _>(1).unwrap_or_default().to_vec();
                (name, der, row.get::<&str, _>(2).is_some())
            })))
        })
        .await
    }

    /// Every replica of the group, as the primary sees them.
    pub async fn replicas(&mut self) -> Result<Vec<ReplicaRow>, SqlError> {
        self.with(self.probe_timeout, async |c| {
            let rows = c
                .simple_query(tsql::QUERY_REPLICAS)
                .await?
                .into_first_result()
                .await?;
            Ok(rows
                .iter()
                .map(|row| ReplicaRow {
                    name: row.get::<&str, _>(0).unwrap_or_default().to_owned(),
                    access: row.get::<&str, _>(2).unwrap_or_default().to_owned(),
                    role: row.get::<&str, _>(3).map(role),
                    connected: row.get::<&str, _>(4) == Some("CONNECTED"),
                    synchronized: row.get::<&str, _>(5) == Some("HEALTHY"),
                })
                .collect())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_read_from_role_desc() {
        assert_eq!(role("PRIMARY"), Role::Primary);
        assert_eq!(role("SECONDARY"), Role::Secondary);
        assert_eq!(role("RESOLVING"), Role::Resolving);
        assert_eq!(role(""), Role::Resolving);
    }

    #[test]
    fn only_server_errors_carry_a_number() {
        let e = SqlError::Server {
            number: 15578,
            message: "There is already a master key in the database.".into(),
        };
        assert_eq!(e.number(), Some(15578));
        assert_eq!(SqlError::Timeout(Duration::from_secs(1)).number(), None);
    }
}

//! Availability groups across real `sqlservr` processes, driven over TDS (tiberius
//! `simple_query`) with the statements of docs/coordinator.md, as the coordinator sends them.
//! Each replica listens on its own loopback address (127.P.T.R: P from the process id, T per test,
//! R per replica), TDS on 1433 and its endpoint on 5022.

mod common;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Double, PASSWORD, Setup, TempDir, pfx, pki};
use mssql_sqlserver_double::hadr::replication::HEARTBEAT;
use tiberius::{AuthMethod, Client, Config, EncryptionLevel};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

type Sql = Client<Compat<TcpStream>>;

/// With a quote, to check that `N'…'` literals unescape `''`.
const PFX_PASSWORD: &str = "pfx-pa'ss";

/// `password` as the body of a T-SQL literal.
fn literal(password: &str) -> String {
    password.replace('\'', "''")
}
const DEADLINE: Duration = Duration::from_secs(30);

/// One replica: its files, name and address; the process while it runs.
struct Node {
    setup: Setup,
    name: String,
    ip: String,
    double: Option<Double>,
}

impl Node {
    fn new(test: u8, replica: u8) -> Self {
        let second = 10 + (std::process::id() % 200) as u8;
        Self {
            setup: Setup::new(&format!("ag-{test}-{replica}")),
            name: format!("ag{test}-{replica}"),
            ip: format!("127.{second}.{test}.{replica}"),
            double: None,
        }
    }

    fn start(&mut self, hadr: bool) {
        let listen = format!("{}:1433", self.ip);
        self.double = Some(self.setup.start(&[
            ("MSSQL_TCP_LISTEN", &listen),
            ("MSSQL_ENABLE_HADR", if hadr { "1" } else { "" }),
            ("MSSQL_SERVER_NAME", &self.name),
            ("MSSQL_HADR_SESSION_TIMEOUT", "2"),
        ]));
    }

    fn kill(&mut self) {
        self.double.take().expect("running").kill();
    }

    fn addr(&self) -> SocketAddr {
        self.double.as_ref().expect("running").addr
    }

    fn endpoint_url(&self) -> String {
        format!("TCP://{}:5022", self.ip)
    }

    async fn connect(&self) -> Sql {
        connect(self.addr(), false).await
    }

    /// `WITH (…)` of this replica in CREATE AVAILABILITY GROUP and ADD REPLICA.
    fn replica_spec(&self, allow: &str) -> String {
        format!(
            "N'{}' WITH (ENDPOINT_URL = N'{}', AVAILABILITY_MODE = SYNCHRONOUS_COMMIT, \
             FAILOVER_MODE = EXTERNAL, SEEDING_MODE = AUTOMATIC, PRIMARY_ROLE (ALLOW_CONNECTIONS \
             = READ_WRITE), SECONDARY_ROLE (ALLOW_CONNECTIONS = {allow}))",
            self.name,
            self.endpoint_url()
        )
    }
}

async fn connect(addr: SocketAddr, read_only: bool) -> Sql {
    let mut config = Config::new();
    config.host(addr.ip().to_string());
    config.port(addr.port());
    config.authentication(AuthMethod::sql_server("sa", PASSWORD));
    config.encryption(EncryptionLevel::Required);
    config.trust_cert();
    config.readonly(read_only);
    let tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    Client::connect(config, tcp.compat_write()).await.unwrap()
}

/// Runs a batch; the error number when it fails.
async fn run(client: &mut Sql, sql: &str) -> Result<(), u32> {
    let outcome = match client.simple_query(sql).await {
        Ok(stream) => stream.into_results().await.map(drop),
        Err(e) => Err(e),
    };
    outcome.map_err(|e| match e {
        tiberius::error::Error::Server(e) => e.code(),
        other => panic!("{sql}: {other:?}"),
    })
}

async fn ok(client: &mut Sql, sql: &str) {
    if let Err(code) = run(client, sql).await {
        panic!("{sql}: error {code}");
    }
}

async fn fails(client: &mut Sql, sql: &str, code: u32) {
    assert_eq!(run(client, sql).await, Err(code), "{sql}");
}

/// The first column of every row, as text (numbers included).
async fn column(client: &mut Sql, sql: &str) -> Result<Vec<String>, u32> {
    let rows = match client.simple_query(sql).await {
        Ok(stream) => stream.into_first_result().await,
        Err(e) => Err(e),
    }
    .map_err(|e| match e {
        tiberius::error::Error::Server(e) => e.code(),
        other => panic!("{sql}: {other:?}"),
    })?;
    Ok(rows
        .iter()
        .map(|row| {
            row.try_get::<&str, _>(0)
                .ok()
                .flatten()
                .map(str::to_owned)
                .or_else(|| {
                    row.try_get::<i64, _>(0)
                        .ok()
                        .flatten()
                        .map(|n| n.to_string())
                })
                .unwrap_or_default()
        })
        .collect())
}

const LOCAL: &str =
    "SELECT ag.name, ag.sequence_number, ag.required_synchronized_secondaries_to_commit,
       ars.role_desc, ars.operational_state_desc,
       ars.connected_state_desc, ars.synchronization_health_desc
FROM sys.availability_groups AS ag
JOIN sys.dm_hadr_availability_replica_states AS ars ON ars.group_id = ag.group_id
WHERE ars.is_local = 1";

const REPLICAS: &str =
    "SELECT ar.replica_server_name, ar.endpoint_url, ar.secondary_role_allow_connections_desc,
       ars.role_desc, ars.connected_state_desc, ars.synchronization_health_desc
FROM sys.availability_replicas AS ar
LEFT JOIN sys.dm_hadr_availability_replica_states AS ars ON ars.replica_id = ar.replica_id";

const DATABASES: &str =
    "SELECT DB_NAME(drs.database_id), drs.synchronization_state_desc, drs.is_suspended,
       drs.last_hardened_lsn
FROM sys.dm_hadr_database_replica_states AS drs
WHERE drs.is_local = 1";

const CERTIFICATES: &str = "SELECT c.name, CERTENCODED(c.certificate_id), e.name
FROM sys.certificates AS c
LEFT JOIN sys.database_mirroring_endpoints AS e ON e.certificate_id = c.certificate_id";

/// The local replica's row: group, sequence number, role, operational, connected, health.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Local {
    group: String,
    sequence: i64,
    required: i32,
    role: String,
    operational: String,
    connected: String,
    health: String,
}

async fn local(client: &mut Sql) -> Option<Local> {
    let rows = client
        .simple_query(LOCAL)
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    let text = |row: &tiberius::Row, i: usize| row.get::<&str, _>(i).unwrap().to_owned();
    rows.first().map(|row| Local {
        group: text(row, 0),
        sequence: row.get::<i64, _>(1).unwrap(),
        required: row.get::<i32, _>(2).unwrap(),
        role: text(row, 3),
        operational: text(row, 4),
        connected: text(row, 5),
        health: text(row, 6),
    })
}

/// (replica, role, connected, health) of every replica, NULLs as "".
async fn replicas(client: &mut Sql) -> Vec<[String; 4]> {
    let rows = client
        .simple_query(REPLICAS)
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    let text = |row: &tiberius::Row, i: usize| {
        row.get::<&str, _>(i).map(str::to_owned).unwrap_or_default()
    };
    rows.iter()
        .map(|row| [text(row, 0), text(row, 3), text(row, 4), text(row, 5)])
        .collect()
}

/// (database, state, suspended, last hardened LSN) of the local availability databases.
async fn databases(client: &mut Sql) -> Vec<(String, String, bool, u64)> {
    let rows = client
        .simple_query(DATABASES)
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    rows.iter()
        .map(|row| {
            let lsn = row
                .get::<tiberius::numeric::Numeric, _>(3)
                .map(|n| n.value() as u64)
                .unwrap();
            (
                row.get::<&str, _>(0).unwrap().to_owned(),
                row.get::<&str, _>(1).unwrap().to_owned(),
                row.get::<bool, _>(2).unwrap(),
                lsn,
            )
        })
        .collect()
}

/// (certificate, its DER encoding, the endpoint presenting it or "") of every certificate in
/// master: a varbinary column read by tiberius.
async fn certificates(client: &mut Sql) -> Vec<(String, Vec<u8>, String)> {
    let rows = client
        .simple_query(CERTIFICATES)
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    if let Some(row) = rows.first() {
        let names: Vec<&str> = row.columns().iter().map(|c| c.name()).collect();
        assert_eq!(names, ["name", "", "name"]);
    }
    rows.iter()
        .map(|row| {
            (
                row.get::<&str, _>(0).unwrap().to_owned(),
                row.get::<&[u8], _>(1).unwrap().to_vec(),
                row.get::<&str, _>(2).map(str::to_owned).unwrap_or_default(),
            )
        })
        .collect()
}

/// Polls `check` every 200 ms until it returns `Some`, or fails after [`DEADLINE`].
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// CREATE CERTIFICATE `name`, owned by `[dbm_user]`, from `pfx` with its private key.
fn create_certificate(name: &str, pfx: &Path) -> String {
    format!(
        "CREATE CERTIFICATE [{name}] AUTHORIZATION [dbm_user] FROM FILE = N'{}' WITH FORMAT = \
         'PFX', PRIVATE KEY (DECRYPTION BY PASSWORD = N'{}')",
        pfx.display(),
        literal(PFX_PASSWORD)
    )
}

/// The master key, login, user, certificate from `pfx`, endpoint and grant, as the coordinator
/// creates them; a second run gets each "already exists" error.
async fn secure(node: &Node, pfx: &Path) {
    let mut sql = node.connect().await;
    let steps = [
        (
            "CREATE MASTER KEY ENCRYPTION BY PASSWORD = N'master-key-pw'".to_owned(),
            15578,
        ),
        (
            "CREATE LOGIN [dbm_login] WITH PASSWORD = N'login-pw'".to_owned(),
            15025,
        ),
        (
            "CREATE USER [dbm_user] FOR LOGIN [dbm_login]".to_owned(),
            15023,
        ),
        (create_certificate("dbm_cert_1", pfx), 15232),
        (
            "CREATE ENDPOINT [Hadr_endpoint] STATE = STARTED AS TCP (LISTENER_PORT = 5022, \
             LISTENER_IP = ALL) FOR DATABASE_MIRRORING (ROLE = ALL, AUTHENTICATION = CERTIFICATE \
             [dbm_cert_1], ENCRYPTION = REQUIRED ALGORITHM AES)"
                .to_owned(),
            7862,
        ),
    ];
    for (statement, _) in &steps {
        ok(&mut sql, statement).await;
    }
    ok(
        &mut sql,
        "GRANT CONNECT ON ENDPOINT::[Hadr_endpoint] TO [dbm_login]",
    )
    .await;
    for (statement, code) in &steps {
        fails(&mut sql, statement, *code).await;
    }
}

fn create_group(primary: &Node, lease: u32, required: u32) -> String {
    format!(
        "CREATE AVAILABILITY GROUP [ag] WITH (DB_FAILOVER = ON, CLUSTER_TYPE = EXTERNAL, \
         WRITE_LEASE_VALIDITY = {lease}, REQUIRED_SYNCHRONIZED_SECONDARIES_TO_COMMIT = {required}) \
         FOR REPLICA ON {}",
        primary.replica_spec("ALL")
    )
}

const PROMOTE: &str = "EXEC sp_set_session_context @key = N'external_cluster', @value = N'yes';
ALTER AVAILABILITY GROUP [ag] FAILOVER";

/// Sorted ids of `[db].[dbo].[t]`, or the error number of the read.
async fn ids(client: &mut Sql) -> Result<Vec<String>, u32> {
    column(client, "SELECT id FROM [db].[dbo].[t] ORDER BY id").await
}

fn strings(ids: &[i64]) -> Vec<String> {
    ids.iter().map(ToString::to_string).collect()
}

async fn wait_for_ids(node: &Node, expected: &[i64]) {
    let expected = strings(expected);
    eventually(&format!("{} to hold {expected:?}", node.name), || async {
        let mut sql = node.connect().await;
        (ids(&mut sql).await.ok() == Some(expected.clone())).then_some(())
    })
    .await;
}

async fn wait_for_role(node: &Node, role: &str) -> Local {
    eventually(&format!("{} to be {role}", node.name), || async {
        let mut sql = node.connect().await;
        local(&mut sql).await.filter(|l| l.role == role)
    })
    .await
}

/// Waits until `primary` sees every other replica CONNECTED and HEALTHY.
async fn wait_until_healthy(primary: &Node, count: usize) {
    eventually(
        &format!("{count} healthy replicas on {}", primary.name),
        || async {
            let mut sql = primary.connect().await;
            let rows = replicas(&mut sql).await;
            (rows.len() == count
                && rows
                    .iter()
                    .all(|r| r[2] == "CONNECTED" && r[3] == "HEALTHY"))
            .then_some(())
        },
    )
    .await;
}

struct Cluster {
    _dir: TempDir,
    pfx: PathBuf,
}

fn cluster_files() -> Cluster {
    let dir = TempDir::new("ag-pki");
    let pki = pki("endpoint CA");
    let pfx = pfx(&pki, dir.path(), "endpoint", PFX_PASSWORD);
    Cluster { _dir: dir, pfx }
}

#[tokio::test]
async fn three_replicas_replicate_fail_over_and_keep_every_acknowledged_write() {
    let files = cluster_files();
    let mut a = Node::new(1, 1);
    let mut b = Node::new(1, 2);
    let mut c = Node::new(1, 3);
    for node in [&mut a, &mut b, &mut c] {
        node.start(true);
        secure(node, &files.pfx).await;
    }
    let mut sa = a.connect().await;
    let probe = sa
        .simple_query("SELECT @@SERVERNAME, SERVERPROPERTY('IsHadrEnabled')")
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(probe.get::<&str, _>(0), Some(a.name.as_str()));
    assert_eq!(probe.get::<i32, _>(1), Some(1));

    // The group: created on A, the others added there and joined on their own instances.
    ok(&mut sa, &create_group(&a, 30, 1)).await;
    ok(
        &mut sa,
        "ALTER AVAILABILITY GROUP [ag] GRANT CREATE ANY DATABASE",
    )
    .await;
    for node in [&b, &c] {
        let add = format!(
            "ALTER AVAILABILITY GROUP [ag] ADD REPLICA ON {}",
            node.replica_spec("ALL")
        );
        ok(&mut sa, &add).await;
        fails(&mut sa, &add, 35282).await;
    }
    for node in [&b, &c] {
        let mut sql = node.connect().await;
        ok(
            &mut sql,
            "ALTER AVAILABILITY GROUP [ag] JOIN WITH (CLUSTER_TYPE = EXTERNAL)",
        )
        .await;
        ok(
            &mut sql,
            "ALTER AVAILABILITY GROUP [ag] GRANT CREATE ANY DATABASE",
        )
        .await;
        fails(
            &mut sql,
            "ALTER AVAILABILITY GROUP [ag] JOIN WITH (CLUSTER_TYPE = EXTERNAL)",
            41106,
        )
        .await;
    }

    // A database, added once it has a full backup; seeded to both secondaries.
    ok(&mut sa, "CREATE DATABASE [db]").await;
    fails(&mut sa, "CREATE DATABASE [db]", 1801).await;
    ok(&mut sa, "ALTER DATABASE [db] SET RECOVERY FULL").await;
    fails(
        &mut sa,
        "ALTER AVAILABILITY GROUP [ag] ADD DATABASE [db]",
        50000,
    )
    .await;
    ok(&mut sa, "BACKUP DATABASE [db] TO DISK = N'/dev/null'").await;
    ok(&mut sa, "ALTER AVAILABILITY GROUP [ag] ADD DATABASE [db]").await;
    // REQUIRED_SYNCHRONIZED_SECONDARIES_TO_COMMIT = 1: commits wait for a seeded secondary.
    wait_until_healthy(&a, 3).await;
    ok(
        &mut sa,
        "CREATE TABLE [db].[dbo].[t] (id BIGINT NOT NULL PRIMARY KEY)",
    )
    .await;

    // A write on the primary is read on both secondaries; a write on a secondary is refused.
    ok(&mut sa, "INSERT INTO [db].[dbo].[t] (id) VALUES (1)").await;
    fails(&mut sa, "INSERT INTO [db].[dbo].[t] (id) VALUES (1)", 2627).await;
    for node in [&b, &c] {
        let mut sql = node.connect().await;
        assert_eq!(ids(&mut sql).await, Ok(strings(&[1])));
        fails(&mut sql, "INSERT INTO [db].[dbo].[t] (id) VALUES (2)", 3906).await;
        let dbs = databases(&mut sql).await;
        assert_eq!(dbs.len(), 1);
        assert_eq!(
            (dbs[0].0.as_str(), dbs[0].1.as_str(), dbs[0].2),
            ("db", "SYNCHRONIZED", false)
        );
        assert_eq!(dbs[0].3, 2, "CREATE TABLE and one INSERT");
        // A secondary sees only its own state.
        let rows = replicas(&mut sql).await;
        assert_eq!(rows.len(), 3);
        for row in rows {
            if row[0] == node.name {
                assert_eq!(row[1..], ["SECONDARY", "CONNECTED", "HEALTHY"]);
            } else {
                assert_eq!(row[1..], ["", "", ""]);
            }
        }
    }
    // The commit set's size is the primary's to change, and counts as a configuration change.
    let before = local(&mut sa).await.unwrap();
    assert_eq!(before.required, 1);
    let required = |n| {
        format!(
            "ALTER AVAILABILITY GROUP [ag] SET (REQUIRED_SYNCHRONIZED_SECONDARIES_TO_COMMIT = {n})"
        )
    };
    ok(&mut sa, &required(2)).await;
    let after = local(&mut sa).await.unwrap();
    assert_eq!(after.required, 2);
    assert!(after.sequence > before.sequence);
    fails(&mut b.connect().await, &required(0), 41140).await;
    ok(&mut sa, &required(1)).await;
    let sequence = local(&mut sa).await.unwrap().sequence;
    for node in [&b, &c] {
        eventually(
            "the secondaries to show the primary's sequence number",
            || async {
                let mut sql = node.connect().await;
                local(&mut sql)
                    .await
                    .filter(|l| l.sequence == sequence)
                    .map(drop)
            },
        )
        .await;
    }

    // Read access follows SECONDARY_ROLE.
    ok(
        &mut sa,
        &format!(
            "ALTER AVAILABILITY GROUP [ag] MODIFY REPLICA ON N'{}' WITH (SECONDARY_ROLE \
             (ALLOW_CONNECTIONS = NO))",
            b.name
        ),
    )
    .await;
    eventually("B to refuse reads", || async {
        (ids(&mut b.connect().await).await == Err(976)).then_some(())
    })
    .await;
    ok(
        &mut sa,
        &format!(
            "ALTER AVAILABILITY GROUP [ag] MODIFY REPLICA ON N'{}' WITH (SECONDARY_ROLE \
             (ALLOW_CONNECTIONS = READ_ONLY))",
            b.name
        ),
    )
    .await;
    eventually("B to want read intent", || async {
        (ids(&mut b.connect().await).await == Err(978)).then_some(())
    })
    .await;
    let mut intent = connect(b.addr(), true).await;
    assert_eq!(ids(&mut intent).await, Ok(strings(&[1])));
    ok(
        &mut sa,
        &format!(
            "ALTER AVAILABILITY GROUP [ag] MODIFY REPLICA ON N'{}' WITH (SECONDARY_ROLE \
             (ALLOW_CONNECTIONS = ALL))",
            b.name
        ),
    )
    .await;

    // A planned failover to C: refused without the session context, then made.
    let mut sc = c.connect().await;
    fails(&mut sc, "ALTER AVAILABILITY GROUP [ag] FAILOVER", 47104).await;
    fails(&mut sa, PROMOTE, 41122).await;
    ok(
        &mut sc,
        "ALTER AVAILABILITY GROUP [ag] SET (WRITE_LEASE_VALIDITY = 30)",
    )
    .await;
    ok(&mut sc, PROMOTE).await;
    let promoted = local(&mut sc).await.unwrap();
    assert_eq!(promoted.role, "PRIMARY");
    assert!(promoted.sequence > sequence);
    wait_for_role(&a, "SECONDARY").await;
    for node in [&a, &b] {
        eventually("the new sequence number everywhere", || async {
            let mut sql = node.connect().await;
            local(&mut sql)
                .await
                .filter(|l| l.sequence >= promoted.sequence)
                .map(drop)
        })
        .await;
    }
    let mut sa = a.connect().await;
    fails(&mut sa, "INSERT INTO [db].[dbo].[t] (id) VALUES (2)", 3906).await;
    wait_until_healthy(&c, 3).await;
    ok(&mut sc, "INSERT INTO [db].[dbo].[t] (id) VALUES (2)").await;
    wait_for_ids(&a, &[1, 2]).await;

    // B stops; C commits with A; then C dies. B, back, is not synchronized (41142); A is and
    // fails over with every acknowledged row.
    b.kill();
    for id in [3, 4] {
        ok(
            &mut sc,
            &format!("INSERT INTO [db].[dbo].[t] (id) VALUES ({id})"),
        )
        .await;
    }
    c.kill();
    b.start(true);
    let mut sb = b.connect().await;
    assert_eq!(local(&mut sb).await.unwrap().role, "RESOLVING");
    fails(&mut sb, PROMOTE, 41142).await;
    let mut sa = a.connect().await;
    eventually("A to see its primary gone", || async {
        let mut sql = a.connect().await;
        databases(&mut sql)
            .await
            .first()
            .filter(|d| d.1 == "NOT SYNCHRONIZING")
            .map(drop)
    })
    .await;
    ok(
        &mut sa,
        "ALTER AVAILABILITY GROUP [ag] SET (WRITE_LEASE_VALIDITY = 30)",
    )
    .await;
    ok(&mut sa, PROMOTE).await;
    assert_eq!(ids(&mut sa).await, Ok(strings(&[1, 2, 3, 4])));
    // B, restarted as a secondary, follows the new primary and catches up.
    wait_for_role(&b, "SECONDARY").await;
    eventually("B to be synchronized again", || async {
        let mut sql = b.connect().await;
        databases(&mut sql)
            .await
            .first()
            .filter(|d| d.1 == "SYNCHRONIZED")
            .map(drop)
    })
    .await;
    ok(&mut sa, "INSERT INTO [db].[dbo].[t] (id) VALUES (5)").await;
    wait_for_ids(&b, &[1, 2, 3, 4, 5]).await;

    // C, the old primary, comes back RESOLVING with its group until told to be a secondary.
    drop(sb);
    drop(sc);
    c.start(true);
    let mut sc = c.connect().await;
    let back = local(&mut sc).await.unwrap();
    assert_eq!(
        (back.group.as_str(), back.role.as_str()),
        ("ag", "RESOLVING")
    );
    assert_eq!(back.operational, "OFFLINE");
    ok(
        &mut sc,
        "ALTER AVAILABILITY GROUP [ag] SET (ROLE = SECONDARY)",
    )
    .await;
    wait_for_role(&c, "SECONDARY").await;
    wait_for_ids(&c, &[1, 2, 3, 4, 5]).await;
    wait_until_healthy(&a, 3).await;

    // DROP AVAILABILITY GROUP on every replica.
    for node in [&a, &b, &c] {
        let mut sql = node.connect().await;
        ok(&mut sql, "DROP AVAILABILITY GROUP [ag]").await;
        assert_eq!(local(&mut sql).await, None);
        fails(&mut sql, "DROP AVAILABILITY GROUP [ag]", 41100).await;
    }
}

#[tokio::test]
async fn an_endpoint_refuses_a_peer_until_its_certificate_is_created() {
    let dir = TempDir::new("ag-two-pki");
    let first = pfx(&pki("first CA"), dir.path(), "first", PFX_PASSWORD);
    let second = pfx(&pki("second CA"), dir.path(), "second", PFX_PASSWORD);
    let mut a = Node::new(2, 1);
    let mut b = Node::new(2, 2);
    a.start(true);
    b.start(true);
    secure(&a, &first).await;
    secure(&b, &second).await;
    // B trusts A's certificate; A does not know B's yet.
    let mut sb = b.connect().await;
    ok(&mut sb, &create_certificate("peer_cert", &first)).await;
    let mut sa = a.connect().await;
    ok(&mut sa, &create_group(&a, 30, 0)).await;
    ok(
        &mut sa,
        &format!(
            "ALTER AVAILABILITY GROUP [ag] ADD REPLICA ON {}",
            b.replica_spec("ALL")
        ),
    )
    .await;
    fails(
        &mut sb,
        "ALTER AVAILABILITY GROUP [ag] JOIN WITH (CLUSTER_TYPE = EXTERNAL)",
        47106,
    )
    .await;
    let rows = replicas(&mut sa).await;
    let row = rows.iter().find(|r| r[0] == b.name).unwrap();
    assert_eq!(row[2], "DISCONNECTED");
    assert!(
        a.double
            .as_ref()
            .unwrap()
            .stdout()
            .contains("is not one this replica trusts")
    );

    ok(&mut sa, &create_certificate("peer_cert", &second)).await;
    ok(
        &mut sb,
        "ALTER AVAILABILITY GROUP [ag] JOIN WITH (CLUSTER_TYPE = EXTERNAL)",
    )
    .await;
    eventually("A to see B connected", || async {
        let mut sql = a.connect().await;
        replicas(&mut sql)
            .await
            .iter()
            .find(|r| r[0] == b.name)
            // A group without availability databases is NOT_HEALTHY (see hadr::state).
            .filter(|r| r[1..] == ["SECONDARY", "CONNECTED", "NOT_HEALTHY"])
            .map(drop)
    })
    .await;
    let local_b = local(&mut sb).await.unwrap();
    assert_eq!(
        (local_b.role.as_str(), local_b.connected.as_str()),
        ("SECONDARY", "CONNECTED")
    );
}

/// ALTER ENDPOINT to `certificate`, as the coordinator sends it.
fn present(certificate: &str) -> String {
    format!(
        "ALTER ENDPOINT [Hadr_endpoint] FOR DATABASE_MIRRORING (AUTHENTICATION = CERTIFICATE \
         [{certificate}])"
    )
}

fn insert(id: i64) -> String {
    format!("INSERT INTO [db].[dbo].[t] (id) VALUES ({id})")
}

/// Starts P and S secured with `pfx`, makes P the primary of a new `[ag]` (commits need no
/// secondary) and S its joined secondary; returns a connection to P.
async fn join_pair(p: &mut Node, s: &mut Node, pfx: &Path) -> Sql {
    for node in [&mut *p, &mut *s] {
        node.start(true);
        secure(node, pfx).await;
    }
    let mut sp = p.connect().await;
    ok(&mut sp, &create_group(p, 30, 0)).await;
    ok(
        &mut sp,
        &format!(
            "ALTER AVAILABILITY GROUP [ag] ADD REPLICA ON {}",
            s.replica_spec("ALL")
        ),
    )
    .await;
    let mut ss = s.connect().await;
    for statement in [
        "ALTER AVAILABILITY GROUP [ag] JOIN WITH (CLUSTER_TYPE = EXTERNAL)",
        "ALTER AVAILABILITY GROUP [ag] GRANT CREATE ANY DATABASE",
    ] {
        ok(&mut ss, statement).await;
    }
    sp
}

/// Two replicas secured with `pfx` (`[dbm_cert_1]`): P the primary of `[ag]`, S its secondary,
/// `[db].[dbo].[t]` holding row 1 on both. REQUIRED_SYNCHRONIZED_SECONDARIES_TO_COMMIT = 0, so
/// P commits alone while S is away.
async fn replicating_pair(test: u8, pfx: &Path) -> (Node, Node) {
    let mut p = Node::new(test, 1);
    let mut s = Node::new(test, 2);
    let mut sp = join_pair(&mut p, &mut s, pfx).await;
    for statement in [
        "CREATE DATABASE [db]",
        "ALTER DATABASE [db] SET RECOVERY FULL",
        "BACKUP DATABASE [db] TO DISK = N'/dev/null'",
        "ALTER AVAILABILITY GROUP [ag] ADD DATABASE [db]",
        "CREATE TABLE [db].[dbo].[t] (id BIGINT NOT NULL PRIMARY KEY)",
        &insert(1),
    ] {
        ok(&mut sp, statement).await;
    }
    wait_for_ids(&s, &[1]).await;
    (p, s)
}

/// Restarts `node`'s process: its endpoint connections are made anew.
fn restart(node: &mut Node) {
    node.kill();
    node.start(true);
}

#[tokio::test]
async fn the_endpoint_certificate_rotates_under_a_trust_overlap() {
    let dir = TempDir::new("ag-rotation");
    let (old, new) = (pki("old CA"), pki("new CA"));
    let old_pfx = pfx(&old, dir.path(), "old", PFX_PASSWORD);
    let new_pfx = pfx(&new, dir.path(), "new", PFX_PASSWORD);
    let (p, mut s) = replicating_pair(6, &old_pfx).await;
    let mut sp = p.connect().await;

    // The new certificate is trusted on both before either presents it.
    for node in [&p, &s] {
        ok(
            &mut node.connect().await,
            &create_certificate("dbm_cert_2", &new_pfx),
        )
        .await;
    }
    fails(&mut sp, &present("nothing"), 15151).await;
    ok(&mut sp, &present("dbm_cert_2")).await;
    assert_eq!(
        certificates(&mut sp).await,
        [
            ("dbm_cert_1".to_owned(), old.leaf_der.clone(), String::new()),
            (
                "dbm_cert_2".to_owned(),
                new.leaf_der.clone(),
                "Hadr_endpoint".to_owned()
            ),
        ]
    );
    // A connection made now, P presenting the new certificate and S the old one, is accepted
    // both ways: each trusts both.
    restart(&mut s);
    ok(&mut sp, &insert(2)).await;
    wait_for_ids(&s, &[1, 2]).await;
    // S switches too; the connection it has stays up.
    ok(&mut s.connect().await, &present("dbm_cert_2")).await;
    ok(&mut sp, &insert(3)).await;
    wait_for_ids(&s, &[1, 2, 3]).await;

    // Both present the new certificate: the old one goes, the one in use cannot.
    for node in [&p, &s] {
        let mut sql = node.connect().await;
        fails(&mut sql, "DROP CERTIFICATE [dbm_cert_2]", 3716).await;
        ok(&mut sql, "DROP CERTIFICATE [dbm_cert_1]").await;
        fails(&mut sql, "DROP CERTIFICATE [dbm_cert_1]", 15151).await;
        assert_eq!(
            certificates(&mut sql).await,
            [(
                "dbm_cert_2".to_owned(),
                new.leaf_der.clone(),
                "Hadr_endpoint".to_owned()
            )]
        );
    }
    ok(&mut sp, &insert(4)).await;
    wait_for_ids(&s, &[1, 2, 3, 4]).await;
    // A connection made now authenticates both sides with the new certificate, the only one left.
    restart(&mut s);
    ok(&mut sp, &insert(5)).await;
    wait_for_ids(&s, &[1, 2, 3, 4, 5]).await;
}

#[tokio::test]
async fn without_a_trust_overlap_the_next_connection_is_refused() {
    let dir = TempDir::new("ag-no-overlap");
    let old_pfx = pfx(&pki("old CA"), dir.path(), "old", PFX_PASSWORD);
    let new_pfx = pfx(&pki("new CA"), dir.path(), "new", PFX_PASSWORD);
    let (p, mut s) = replicating_pair(7, &old_pfx).await;
    let mut sp = p.connect().await;

    // S alone holds the new certificate and presents it: the connection it has stays up.
    let mut ss = s.connect().await;
    ok(&mut ss, &create_certificate("dbm_cert_2", &new_pfx)).await;
    ok(&mut ss, &present("dbm_cert_2")).await;
    ok(&mut sp, &insert(2)).await;
    wait_for_ids(&s, &[1, 2]).await;

    // Its next connection: P does not trust that certificate, S stays disconnected and behind.
    drop(ss);
    restart(&mut s);
    eventually("P to refuse S's certificate", || async {
        p.double
            .as_ref()
            .unwrap()
            .stdout()
            .contains("is not one this replica trusts")
            .then_some(())
    })
    .await;
    let mut ss = s.connect().await;
    let behind = databases(&mut ss).await[0].3;
    ok(&mut sp, &insert(3)).await;
    tokio::time::sleep(2 * HEARTBEAT).await;
    assert_eq!(local(&mut ss).await.unwrap().connected, "DISCONNECTED");
    let dbs = databases(&mut ss).await;
    assert_eq!((dbs[0].1.as_str(), dbs[0].3), ("NOT SYNCHRONIZING", behind));

    // Once P trusts it too, P's next attempt connects and S catches up.
    ok(&mut sp, &create_certificate("dbm_cert_2", &new_pfx)).await;
    wait_for_ids(&s, &[1, 2, 3]).await;
}

#[tokio::test]
async fn an_expired_write_lease_refuses_writes_but_keeps_the_role() {
    let files = cluster_files();
    let mut a = Node::new(3, 1);
    a.start(true);
    secure(&a, &files.pfx).await;
    let mut sa = a.connect().await;
    ok(&mut sa, &create_group(&a, 2, 0)).await;
    fails(
        &mut sa,
        "ALTER AVAILABILITY GROUP [ag] SET (WRITE_LEASE_VALIDITY = 1)",
        47119,
    )
    .await;
    for statement in [
        "CREATE DATABASE [db]",
        "BACKUP DATABASE [db] TO DISK = N'/dev/null'",
        "ALTER AVAILABILITY GROUP [ag] ADD DATABASE [db]",
        "CREATE TABLE [db].[dbo].[t] (id BIGINT NOT NULL PRIMARY KEY)",
        "INSERT INTO [db].[dbo].[t] (id) VALUES (1)",
    ] {
        ok(&mut sa, statement).await;
    }
    // Each attempt a new key: the first one refused marks the lease's end.
    let next = std::sync::atomic::AtomicI64::new(2);
    let refused = eventually("the lease to expire", || async {
        let id = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut sql = a.connect().await;
        let insert = format!("INSERT INTO [db].[dbo].[t] (id) VALUES ({id})");
        (run(&mut sql, &insert).await == Err(3906)).then_some(id)
    })
    .await;
    assert_eq!(local(&mut sa).await.unwrap().role, "PRIMARY");
    let kept = ids(&mut sa).await.unwrap();
    assert!(!kept.contains(&refused.to_string()), "{kept:?}");
    ok(
        &mut sa,
        "ALTER AVAILABILITY GROUP [ag] SET (WRITE_LEASE_VALIDITY = 30)",
    )
    .await;
    ok(
        &mut sa,
        &format!("INSERT INTO [db].[dbo].[t] (id) VALUES ({refused})"),
    )
    .await;
    assert_eq!(
        column(&mut sa, "SELECT COUNT_BIG(*) FROM [db].[dbo].[t]").await,
        Ok(strings(&[kept.len() as i64 + 1]))
    );
}

#[tokio::test]
async fn certificates_come_from_pfx_files_and_need_the_master_key() {
    let files = cluster_files();
    let mut a = Node::new(4, 1);
    a.start(true);
    let mut sa = a.connect().await;
    let create = |file: &Path, password: &str| {
        format!(
            "CREATE CERTIFICATE [c] FROM FILE = N'{}' WITH FORMAT = 'PFX', PRIVATE KEY \
             (DECRYPTION BY PASSWORD = N'{}')",
            file.display(),
            literal(password)
        )
    };
    fails(&mut sa, &create(&files.pfx, PFX_PASSWORD), 15581).await;
    ok(&mut sa, "CREATE MASTER KEY ENCRYPTION BY PASSWORD = N'pw'").await;
    fails(
        &mut sa,
        &create(Path::new("/nonexistent/c.pfx"), PFX_PASSWORD),
        15208,
    )
    .await;
    fails(&mut sa, &create(&files.pfx, "wrong"), 15297).await;
    ok(&mut sa, &create(&files.pfx, PFX_PASSWORD)).await;
    fails(&mut sa, &create(&files.pfx, PFX_PASSWORD), 15232).await;
    fails(
        &mut sa,
        &create(&files.pfx, PFX_PASSWORD).replace("[c]", "[d]"),
        15232,
    )
    .await;
    // Kept in master across a restart.
    a.kill();
    a.start(true);
    let mut sa = a.connect().await;
    fails(&mut sa, &create(&files.pfx, PFX_PASSWORD), 15232).await;
    fails(
        &mut sa,
        "CREATE MASTER KEY ENCRYPTION BY PASSWORD = N'pw'",
        15578,
    )
    .await;
}

#[tokio::test]
async fn without_hadr_availability_group_statements_are_refused() {
    let mut a = Node::new(5, 1);
    a.start(false);
    let mut sa = a.connect().await;
    let probe = sa
        .simple_query("SELECT @@SERVERNAME, SERVERPROPERTY('IsHadrEnabled')")
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(probe.get::<i32, _>(1), Some(0));
    fails(&mut sa, &create_group(&a, 4, 0), 35221).await;
    fails(
        &mut sa,
        "ALTER AVAILABILITY GROUP [ag] JOIN WITH (CLUSTER_TYPE = EXTERNAL)",
        35221,
    )
    .await;
    fails(&mut sa, "DROP AVAILABILITY GROUP [ag]", 35221).await;
    assert_eq!(local(&mut sa).await, None);
    fails(&mut sa, "ALTER AVAILABILITY GROUP [ag] DANCE", 102).await;
}

/// How long the coordinator waits for a state query: a replica slower than that is silent.
const PROBE_DEADLINE: Duration = Duration::from_secs(1);

/// `what` on `node`, failing unless it finishes within [`PROBE_DEADLINE`].
async fn in_time<T>(node: &Node, what: &str, work: impl Future<Output = T>) -> T {
    tokio::time::timeout(PROBE_DEADLINE, work)
        .await
        .unwrap_or_else(|_| panic!("{what} on {} took more than {PROBE_DEADLINE:?}", node.name))
}

#[tokio::test]
async fn state_queries_and_commits_go_on_while_a_secondary_is_seeded() {
    let files = cluster_files();
    let mut p = Node::new(8, 1);
    let mut s = Node::new(8, 2);
    // S writes each seeded database 1.5 s slower (test fault knob): one seed attempt outlasts
    // the probe deadline.
    std::fs::create_dir_all(s.setup.data_dir()).unwrap();
    std::fs::write(s.setup.data_dir().join("double-faults"), "slow-seed\n").unwrap();
    let mut sp = join_pair(&mut p, &mut s, &files.pfx).await;
    let mut ss = s.connect().await;
    // The database joins the group once S may create it, so its first seed is taken.
    for statement in [
        "CREATE DATABASE [db]",
        "ALTER DATABASE [db] SET RECOVERY FULL",
        "BACKUP DATABASE [db] TO DISK = N'/dev/null'",
        "CREATE TABLE [db].[dbo].[t] (id BIGINT NOT NULL PRIMARY KEY)",
        &insert(1),
        &insert(2),
        &insert(3),
        "ALTER AVAILABILITY GROUP [ag] ADD DATABASE [db]",
    ] {
        ok(&mut sp, statement).await;
    }
    eventually("S to be writing its seed", || async {
        let stdout = s.double.as_ref().unwrap().stdout();
        stdout
            .contains("TEST FAULT slow-seed: database 'db'")
            .then_some(())
    })
    .await;
    // A commit on P while S writes the image: P answers at once, and seeds S again with it.
    in_time(&p, "a commit", ok(&mut sp, &insert(4))).await;

    // Until S is synchronized, every state query answers on both replicas within the deadline.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        for (node, sql) in [(&p, &mut sp), (&s, &mut ss)] {
            in_time(node, "the local replica query", local(sql)).await;
            in_time(node, "the replicas query", replicas(sql)).await;
        }
        let primary = in_time(&p, "the databases query", databases(&mut sp)).await;
        let secondary = in_time(&s, "the databases query", databases(&mut ss)).await;
        assert_eq!(primary[0].3, 5, "a table and four rows");
        if secondary
            .first()
            .is_some_and(|d| d.1 == "SYNCHRONIZED" && d.3 == primary[0].3)
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "S is not synchronized: {secondary:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ids(&mut ss).await, Ok(strings(&[1, 2, 3, 4])));
    assert!(
        p.double
            .as_ref()
            .unwrap()
            .stdout()
            .contains("changed while it was seeded; seeding it again")
    );
    // S is in the commit set: the next commit reaches it.
    ok(&mut sp, &insert(5)).await;
    wait_for_ids(&s, &[1, 2, 3, 4, 5]).await;
}

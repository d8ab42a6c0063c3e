//! A real availability group on the real node `real-1`, for the failover test and benchmark:
//! KubeDB's `mssql-ag-cluster` guide on the SQL Server test double, every pod running its
//! `mssql-coordinator`, the operator installed by its Helm chart; a writer that commits a row
//! through the primary Service every 100 ms and reconnects on error, as a pooled application
//! would; a sampler that checks every 100 ms that never two pods are labelled `primary` and never
//! two servers accept a write; and the faults a primary can meet.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use mssql_api::MssqlServer;
use mssql_api::condition;
use mssql_api::labels::ROLE;
use mssql_api::phase::AG_PRIMARY_REPLICA_READY;
use mssql_api::pods::{ReplicaReport, SQL_PRIMARY, is_ready, replica_report};
use serde_json::{Value, json};
use tiberius::{AuthMethod, Client, Config, EncryptionLevel};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

use crate::cluster::{eventually, unique};
use crate::fixture::{READY_TIMEOUT, Setup};
use crate::real_node::{
    DOUBLE_VERSION, Release, create_admitted, install_operator, on_the_node, place_on_node,
    signal_container, wait_leader,
};
use crate::{example_in, kubectl, kubectl_ok};

pub const DB: &str = "mssql-ag-cluster";
/// The longest a failover, or a replica's return, may take.
pub const FAILOVER: Duration = Duration::from_secs(90);
const WRITES: &str = "[agdb1].[dbo].[writes]";
const PROBES: &str = "[agdb1].[dbo].[probes]";

pub type Connection = Client<Compat<TcpStream>>;

/// A connection as `sa` to `addr`, within a second.
pub async fn connect(addr: SocketAddr, password: &str) -> Result<Connection, String> {
    let mut config = Config::new();
    config.host(addr.ip().to_string());
    config.port(addr.port());
    config.authentication(AuthMethod::sql_server("sa", password));
    config.encryption(EncryptionLevel::Required);
    config.trust_cert();
    let connecting = async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        Client::connect(config, tcp.compat_write())
            .await
            .map_err(|e| e.to_string())
    };
    tokio::time::timeout(Duration::from_secs(1), connecting)
        .await
        .map_err(|_| format!("no login at {addr} within 1 s"))?
}

/// Runs `sql` on `connection` within two seconds; `Err` drops it.
pub async fn run(
    connection: &mut Option<Connection>,
    sql: &str,
) -> Result<Vec<tiberius::Row>, String> {
    let Some(client) = connection.as_mut() else {
        return Err("not connected".into());
    };
    let work = async {
        client
            .simple_query(sql)
            .await
            .map_err(|e| e.to_string())?
            .into_first_result()
            .await
            .map_err(|e| e.to_string())
    };
    let result = match tokio::time::timeout(Duration::from_secs(2), work).await {
        Ok(result) => result,
        Err(_) => Err("no answer within 2 s".into()),
    };
    if result.is_err() {
        *connection = None;
    }
    result
}

/// One write the primary Service acknowledged.
pub struct Ack {
    pub id: u64,
    pub at: Instant,
    /// The server that took it (`@@SERVERNAME`, the pod's name): a connection through a Service
    /// stays with the pod it reached.
    pub server: String,
}

/// What the writer saw.
#[derive(Default)]
pub struct Written {
    pub acknowledged: Vec<Ack>,
    pub failed: u64,
    /// When it began and stopped writing: a gap may open either.
    pub span: Option<(Instant, Instant)>,
}

/// How often the writer commits a row while it can.
pub const WRITE_PACE: Duration = Duration::from_millis(100);

impl Written {
    /// The times between acknowledged writes, and from its start to the first and from the last
    /// to its end.
    fn gaps(&self) -> impl Iterator<Item = Duration> + '_ {
        // Without a span (a writer not finished yet) the gaps are those between acknowledgements.
        let (began, ended) = self.span.unzip();
        let times: Vec<Instant> = began
            .into_iter()
            .chain(self.acknowledged.iter().map(|a| a.at))
            .chain(ended)
            .collect();
        (1..times.len()).map(move |i| times[i] - times[i - 1])
    }

    /// The longest time between two acknowledged writes.
    pub fn longest_gap(&self) -> Duration {
        self.gaps().max().unwrap_or_default()
    }

    /// The time with no successful write: every gap between two acknowledged writes longer than
    /// three times the writer's pace, counted whole.
    pub fn unavailable(&self) -> Duration {
        self.stalls().iter().map(|(_, gap)| *gap).sum()
    }

    /// Each gap longer than three times the writer's pace: when it began (from the writer's
    /// start) and how long it lasted.
    pub fn stalls(&self) -> Vec<(Duration, Duration)> {
        let Some((began, _)) = self.span else {
            return Vec::new();
        };
        let mut at = began;
        let mut stalls = Vec::new();
        for gap in self.gaps() {
            if gap > WRITE_PACE * 3 {
                stalls.push((at - began, gap));
            }
            at += gap;
        }
        stalls
    }
}

/// The ids in `table` of the server at `addr`.
pub async fn ids_in(addr: SocketAddr, password: &str, table: &str) -> Result<Vec<u64>, String> {
    let mut connection = Some(connect(addr, password).await?);
    let rows = run(
        &mut connection,
        &format!("SELECT id FROM {table} ORDER BY id"),
    )
    .await?;
    Ok(rows
        .iter()
        .filter_map(|r| r.get::<i64, _>(0))
        .map(|id| id as u64)
        .collect())
}

/// The TDS address of the Service `name`: its cluster IP, port 1433.
pub async fn service_address(services: &Api<Service>, name: &str) -> SocketAddr {
    let service = services.get(name).await.unwrap();
    let ip = service.spec.and_then(|s| s.cluster_ip).unwrap();
    SocketAddr::new(ip.parse().unwrap(), 1433)
}

/// A connection and the server it reached.
async fn connect_to_server(service: SocketAddr, password: &str) -> Option<(Connection, String)> {
    let mut connection = Some(connect(service, password).await.ok()?);
    let rows = run(
        &mut connection,
        "SELECT @@SERVERNAME, SERVERPROPERTY('IsHadrEnabled')",
    )
    .await
    .ok()?;
    let server = rows.first()?.get::<&str, _>(0)?.to_owned();
    Some((connection?, server))
}

/// Commits a row into `table` through `service` every 100 ms until `stop`, reconnecting on
/// error.
async fn writer(
    service: SocketAddr,
    password: String,
    table: &'static str,
    stop: Arc<AtomicBool>,
    written: Arc<Mutex<Written>>,
) {
    let mut connection = None;
    let mut server = String::new();
    // Above every id an earlier writer on the same table used.
    let mut id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        * 1000;
    while !stop.load(Ordering::Relaxed) {
        id += 1;
        if connection.is_none()
            && let Some((c, s)) = connect_to_server(service, &password).await
        {
            connection = Some(c);
            server = s;
        }
        let sql = format!("INSERT INTO {table} (id) VALUES ({id})");
        match run(&mut connection, &sql).await {
            Ok(_) => written.lock().unwrap().acknowledged.push(Ack {
                id,
                at: Instant::now(),
                server: server.clone(),
            }),
            Err(_) => written.lock().unwrap().failed += 1,
        }
        tokio::time::sleep(WRITE_PACE).await;
    }
}

/// What the sampler saw.
#[derive(Default)]
pub struct Sampled {
    pub samples: u64,
    /// How long the sampler ran.
    pub lasted: Duration,
    /// Samples with more than one pod labelled primary, or more than one server taking a write.
    pub violations: Vec<String>,
    /// Each replica's state as its pod and its coordinator's report said, each time it changed:
    /// when (from the sampler's start), the pod, the state.
    pub replication: Vec<(Duration, String, String)>,
    /// The longest a secondary whose pod was Ready (and not being deleted) stayed reported
    /// disconnected or not synchronized (its server up, replication not): what an endpoint
    /// certificate its peers do not trust would make last until they restart.
    pub longest_replication_break: Duration,
    /// When each such break began, by pod.
    breaking: BTreeMap<String, Instant>,
}

impl Sampled {
    /// Records `pod`'s state in this sample.
    fn replica(&mut self, began: Instant, pod: &Pod) {
        let name = pod.name_any();
        // A pod being deleted (evicted, drained) hands over and stops: it is leaving, not cut off.
        let leaving = pod.metadata.deletion_timestamp.is_some();
        let ready = is_ready(pod) && !leaving;
        let report = replica_report(pod);
        let state = describe(ready, leaving, report.as_ref());
        let last = self.replication.iter().rev().find(|(_, p, _)| *p == name);
        if last.is_none_or(|(_, _, s)| *s != state) {
            self.replication
                .push((began.elapsed(), name.clone(), state));
        }
        let broken = ready
            && report.is_some_and(|r| {
                r.role.as_deref() != Some(SQL_PRIMARY) && !(r.connected && r.synchronized)
            });
        if broken {
            self.breaking.entry(name).or_insert_with(Instant::now);
        } else if let Some(since) = self.breaking.remove(&name) {
            self.broke_for(since.elapsed());
        }
    }

    fn broke_for(&mut self, lasted: Duration) {
        self.longest_replication_break = self.longest_replication_break.max(lasted);
    }

    /// Counts the breaks still open when sampling stops.
    fn close(&mut self) {
        for since in std::mem::take(&mut self.breaking).into_values() {
            self.broke_for(since.elapsed());
        }
    }
}

/// A replica's state in a word or two each: its pod Ready, not Ready or being deleted, then its
/// report (role, connected, synchronized, the endpoint certificates its master trusts and the
/// one it presents, by their serials' first eight digits).
fn describe(ready: bool, leaving: bool, report: Option<&ReplicaReport>) -> String {
    let pod = match (ready, leaving) {
        (_, true) => "being deleted",
        (true, _) => "Ready",
        (false, _) => "not Ready",
    };
    let Some(r) = report else {
        return format!("{pod}, no report");
    };
    let short = |serial: &str| serial.chars().take(8).collect::<String>();
    let mut state = format!(
        "{pod}, {} {} {}",
        r.role.as_deref().unwrap_or("no role"),
        if r.connected {
            "connected"
        } else {
            "disconnected"
        },
        if r.synchronized {
            "synchronized"
        } else {
            "not synchronized"
        },
    );
    if let Some(endpoint) = &r.endpoint {
        let trusts: Vec<String> = endpoint.trusts.iter().map(|s| short(s)).collect();
        let presents = endpoint.presents.as_deref().map_or("none".into(), short);
        state += &format!(
            ", endpoint trusts [{}] presents {presents}",
            trusts.join(" ")
        );
    }
    state
}

/// Every 100 ms until `stop`: the pods' role labels, and a write tried on every server at once.
async fn sampler(
    pods: Api<Pod>,
    password: String,
    stop: Arc<AtomicBool>,
    sampled: Arc<Mutex<Sampled>>,
) {
    let began = Instant::now();
    let probe = AtomicU64::new(1);
    let mut connections: BTreeMap<String, Option<Connection>> = BTreeMap::new();
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let Ok(list) = pods
            .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={DB}")))
            .await
        else {
            continue;
        };
        let labelled: Vec<String> = list
            .items
            .iter()
            .filter(|p| p.labels().get(ROLE).map(String::as_str) == Some("primary"))
            .map(|p| p.name_any())
            .collect();
        let addresses: BTreeMap<String, SocketAddr> = list
            .items
            .iter()
            .filter_map(|p| {
                let ip = p.status.as_ref()?.pod_ip.as_ref()?.parse().ok()?;
                Some((p.name_any(), SocketAddr::new(ip, 1433)))
            })
            .collect();
        for pod in addresses.keys() {
            connections.entry(pod.clone()).or_insert(None);
        }
        let tries = connections.iter_mut().map(|(pod, connection)| {
            let addr = addresses.get(pod).copied();
            let id = probe.fetch_add(1, Ordering::Relaxed);
            let password = &password;
            async move {
                let addr = addr?;
                if connection.is_none() {
                    *connection = connect(addr, password).await.ok();
                }
                let sql = format!("INSERT INTO {PROBES} (id) VALUES ({id})");
                run(connection, &sql).await.ok().map(|_| pod.clone())
            }
        });
        let accepted: Vec<String> = futures::future::join_all(tries)
            .await
            .into_iter()
            .flatten()
            .collect();
        {
            let mut sampled = sampled.lock().unwrap();
            sampled.samples += 1;
            for pod in &list.items {
                sampled.replica(began, pod);
            }
            if labelled.len() > 1 || accepted.len() > 1 {
                sampled.violations.push(format!(
                    "{}: labelled primary: {labelled:?}; took a write: {accepted:?}",
                    jiff::Timestamp::now()
                ));
            }
        }
        tokio::time::sleep(Duration::from_millis(100).saturating_sub(started.elapsed())).await;
    }
}

/// The writer (and the sampler of a group), running until [`Traffic::finish`].
pub struct Traffic {
    started: Instant,
    stop: Arc<AtomicBool>,
    pub written: Arc<Mutex<Written>>,
    sampled: Arc<Mutex<Sampled>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Traffic {
    /// Starts a writer committing a row into `table` through `service` every 100 ms, as `sa`
    /// with `password`.
    pub fn write(service: SocketAddr, password: &str, table: &'static str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(Mutex::new(Written::default()));
        let writing = tokio::spawn(writer(
            service,
            password.to_owned(),
            table,
            stop.clone(),
            written.clone(),
        ));
        Self {
            started: Instant::now(),
            stop,
            written,
            sampled: Arc::default(),
            tasks: vec![writing],
        }
    }

    /// Stops both and returns what they saw.
    pub async fn finish(self) -> (Written, Sampled) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.unwrap();
        }
        let mut written = std::mem::take(&mut *self.written.lock().unwrap());
        written.span = Some((self.started, Instant::now()));
        let mut sampled = std::mem::take(&mut *self.sampled.lock().unwrap());
        sampled.lasted = self.started.elapsed();
        sampled.close();
        (written, sampled)
    }
}

/// What happens to the primary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    PodDeleted,
    ServerKilled,
    CoordinatorKilled,
    ServerFrozen,
    /// Its server and its coordinator frozen at once (SIGSTOP), as a node that stops answering:
    /// nobody hands the role over, so the Lease must run out and a majority elect the next.
    PodFrozen,
}

impl Fault {
    pub const ALL: [Self; 4] = [
        Self::PodDeleted,
        Self::ServerKilled,
        Self::CoordinatorKilled,
        Self::ServerFrozen,
    ];

    pub fn inflict(self, group: &Group, pod: &str) {
        match self {
            Self::PodDeleted => group.delete_pod(pod),
            Self::ServerKilled => group.signal(pod, "mssql", "-KILL"),
            Self::CoordinatorKilled => group.signal(pod, "mssql-coordinator", "-KILL"),
            Self::ServerFrozen => group.signal(pod, "mssql", "-STOP"),
            Self::PodFrozen => {
                group.signal(pod, "mssql", "-STOP");
                group.signal(pod, "mssql-coordinator", "-STOP");
            }
        }
    }
}

/// The group, and the operator's Helm release it runs under.
pub struct Group {
    pub t: Setup,
    pub password: String,
    pub operator_ns: String,
    replicas: usize,
    /// Uninstalled after the test namespace is dropped (fields drop in order).
    _release: Release,
}

impl Drop for Group {
    /// A failed run shows what each coordinator decided (in its current and previous
    /// container) and what each server logged, then deletes its namespace while the operator
    /// still runs to remove its finalizers (uninstalled first, it would leave the namespace
    /// Terminating for ever).
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let arbiter = self
            .replicas
            .is_multiple_of(2)
            .then(|| format!("{DB}-arbiter-0"));
        for pod in self.pods().iter().chain(&arbiter) {
            for (container, previous) in [
                ("mssql-coordinator", "--previous=false"),
                ("mssql-coordinator", "--previous=true"),
                ("mssql", "--previous=false"),
            ] {
                let ns = &self.t.ns.name;
                let args = [
                    "logs",
                    "-n",
                    ns,
                    pod,
                    "-c",
                    container,
                    previous,
                    "--tail=80",
                ];
                let logs = kubectl(&args, None);
                eprintln!(
                    "--- {pod} {container} {previous}:\n{}{}",
                    logs.stdout, logs.stderr
                );
            }
        }
        let ns = &self.t.ns.name;
        let _ = kubectl(&["delete", "namespace", ns, "--timeout=180s"], None);
    }
}

impl Group {
    /// The operator installed by its chart (in a namespace named after `name`), and KubeDB's AG
    /// guide with `replicas` on the node and its double (and the arbiter of an even group),
    /// with secondaries readable, Ready with one labelled primary; a table written through the
    /// primary Service has reached every pod. Each double takes `start` to start.
    pub async fn form(name: &str, replicas: usize, start: Duration) -> Self {
        let release = install_operator(&unique(&format!("mssql-operator-{name}"))).await;
        let t = Setup::without_operator(name).await;
        Self::form_in(t, release, replicas, start).await
    }

    /// [`Group::form`] in `t`'s namespace, with the operator `release` (see [`install_operator`]).
    pub async fn form_in(t: Setup, release: Release, replicas: usize, start: Duration) -> Self {
        let mut db: Value = serde_saphyr::from_str(&example_in(DB, &t.ns.name)).unwrap();
        on_the_node(&mut db, start);
        let spec = &mut db["spec"];
        spec["replicas"] = json!(replicas);
        // Where the arbiter runs once the count is even (now, or after scaling).
        place_on_node(&mut spec["arbiter"]);
        spec["topology"]["availabilityGroup"]["secondaryAccessMode"] = json!("All");
        create_admitted(&db.to_string()).await;
        t.wait_phase(DB, "Ready", READY_TIMEOUT).await;
        let password = t.secret_text(&format!("{DB}-auth"), "password").await;
        let group = Self {
            t,
            password,
            operator_ns: release.namespace.clone(),
            replicas,
            _release: release,
        };
        group.primary(None).await;
        group.create_tables().await;
        group
    }

    /// The writes and probes tables, created through the primary Service; a first row is read
    /// on every pod.
    async fn create_tables(&self) {
        // kube-proxy routes the Service a moment after its endpoints change.
        let service = self.service().await;
        let admin = eventually(
            "a login through the primary Service",
            Duration::from_secs(30),
            || connect(service, &self.password),
        )
        .await;
        let mut admin = Some(admin);
        for table in [WRITES, PROBES] {
            run(
                &mut admin,
                &format!("CREATE TABLE {table} (id BIGINT NOT NULL PRIMARY KEY)"),
            )
            .await
            .unwrap();
        }
        run(&mut admin, &format!("INSERT INTO {WRITES} (id) VALUES (0)"))
            .await
            .unwrap();
        for pod in self.pods() {
            self.has_rows(&pod, &[0], Duration::from_secs(30)).await;
        }
    }

    /// The replicas' pods (not the arbiter's).
    pub fn pods(&self) -> Vec<String> {
        (0..self.replicas).map(|i| format!("{DB}-{i}")).collect()
    }

    /// Waits until the database's status lists the replicas: `primary` labelled primary and
    /// PRIMARY to its server, the others labelled secondary and SECONDARY, each synchronized and
    /// connected; and `AGPrimaryReplicaReady` is True.
    pub async fn status_shows(&self, primary: &str) {
        let expected: Vec<_> = self
            .pods()
            .into_iter()
            .map(|pod| match pod == primary {
                true => (pod, "primary", "PRIMARY", true),
                false => (pod, "secondary", "SECONDARY", true),
            })
            .collect();
        eventually("status.replicas to show the group", FAILOVER, || async {
            let db = self
                .t
                .api::<MssqlServer>()
                .get(DB)
                .await
                .map_err(|e| e.to_string())?;
            let status = db.status.unwrap_or_default();
            let replicas: Vec<_> = status
                .replicas
                .iter()
                .map(|r| {
                    let role = r.role.as_deref().unwrap_or("-");
                    let sql_role = r.sql_role.as_deref().unwrap_or("-");
                    (r.pod.clone(), role, sql_role, r.synchronized && r.connected)
                })
                .collect();
            let ready = condition::find(&status.conditions, AG_PRIMARY_REPLICA_READY)
                .is_some_and(|c| c.is_true());
            (replicas == expected && ready)
                .then_some(())
                .ok_or(format!("{replicas:?}; AGPrimaryReplicaReady {ready}"))
        })
        .await;
    }

    /// Starts the writer (through the primary Service) and the sampler.
    pub async fn traffic(&self) -> Traffic {
        let mut traffic = Traffic::write(self.service().await, &self.password, WRITES);
        traffic.tasks.push(tokio::spawn(sampler(
            self.t.api(),
            self.password.clone(),
            traffic.stop.clone(),
            traffic.sampled.clone(),
        )));
        traffic
    }

    /// The pod labelled primary, once exactly one is, it is not `old`, its server is PRIMARY,
    /// the others are labelled secondary, and the primary Service's endpoints are its address.
    pub async fn primary(&self, old: Option<&str>) -> String {
        eventually(
            "one labelled primary behind the primary Service",
            FAILOVER,
            || self.primary_now(old),
        )
        .await
    }

    /// [`Group::primary`] as it is now.
    async fn primary_now(&self, old: Option<&str>) -> Result<String, String> {
        let pods = self.t.api::<Pod>();
        let mut primary = None;
        for name in self.pods() {
            let pod = pods.get(&name).await.map_err(|e| e.to_string())?;
            let role = pod.labels().get(ROLE).cloned();
            match role.as_deref() {
                Some("primary") if primary.is_none() => {
                    let ip = pod.status.and_then(|s| s.pod_ip).unwrap_or_default();
                    primary = Some((name, ip));
                }
                Some("secondary") => {}
                other => return Err(format!("{name} is labelled {other:?}")),
            }
        }
        let (name, ip) = primary.ok_or("no pod is labelled primary")?;
        if Some(name.as_str()) == old {
            return Err(format!("{name} is still the primary"));
        }
        let addresses = self.ready_endpoints(DB).await?;
        if addresses == [ip.clone()] {
            Ok(name)
        } else {
            Err(format!(
                "{DB}'s endpoints are {addresses:?}, not {name}'s {ip}"
            ))
        }
    }

    /// The addresses a Service sends clients to: its EndpointSlices' ready endpoints.
    pub async fn ready_endpoints(&self, service: &str) -> Result<Vec<String>, String> {
        let slices = self
            .t
            .api::<EndpointSlice>()
            .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={service}")))
            .await
            .map_err(|e| e.to_string())?;
        Ok(slices
            .items
            .iter()
            .flat_map(|slice| slice.endpoints.iter())
            .flatten()
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
            .flat_map(|e| e.addresses.iter().cloned())
            .collect())
    }

    /// `pod`'s address, as the API server says now.
    pub async fn ip(&self, pod: &str) -> Result<String, String> {
        self.t.pod_ip(pod).await
    }

    /// `pod`'s uid, which a replacement of the same name does not share.
    pub async fn uid(&self, pod: &str) -> String {
        let pod = self.t.api::<Pod>().get_metadata(pod).await.unwrap();
        pod.metadata.uid.unwrap_or_default()
    }

    /// Waits until the pod named `pod` is not the one with uid `not` and every container in it
    /// is ready: a deleted pod's successor has started, not the deleted one still stopping.
    pub async fn ready_pod(&self, pod: &str, not: Option<&str>) {
        eventually(&format!("{pod} ready"), FAILOVER, || async {
            let found = self
                .t
                .api::<Pod>()
                .get(pod)
                .await
                .map_err(|e| e.to_string())?;
            if not.is_some() && found.metadata.uid.as_deref() == not {
                return Err("still the pod that was deleted".into());
            }
            let statuses = found
                .status
                .and_then(|s| s.container_statuses)
                .unwrap_or_default();
            let ready = !statuses.is_empty() && statuses.iter().all(|c| c.ready);
            ready
                .then_some(())
                .ok_or(format!("not ready: {statuses:?}"))
        })
        .await
    }

    async fn service(&self) -> SocketAddr {
        service_address(&self.t.api(), DB).await
    }

    /// The ids in the writes table of `pod`'s server.
    pub async fn ids(&self, pod: &str) -> Result<Vec<u64>, String> {
        ids_in(self.t.sql_addr(pod).await?, &self.password, WRITES).await
    }

    /// Waits until `pod`'s writes table holds every id of `ids`.
    pub async fn has_rows(&self, pod: &str, ids: &[u64], within: Duration) {
        eventually(&format!("the rows on {pod}"), within, || async {
            let held = self.ids(pod).await?;
            let missing: Vec<&u64> = ids.iter().filter(|id| !held.contains(id)).collect();
            missing
                .is_empty()
                .then_some(())
                .ok_or(format!("{pod} lacks {missing:?}"))
        })
        .await;
    }

    /// Stops `traffic`, prints what the writer saw, asserts that nothing was lost
    /// ([`Group::assert_nothing_lost`]) and deletes the database.
    pub async fn end(&self, traffic: Traffic) {
        let (written, sampled) = traffic.finish().await;
        println!(
            "writer: {} acknowledged, {} failed attempts, longest gap {:.1?}",
            written.acknowledged.len(),
            written.failed,
            written.longest_gap()
        );
        self.assert_nothing_lost(&written, &sampled).await;
        self.delete().await;
    }

    /// Asserts what the writer and sampler saw: samples, never two primaries, and every
    /// acknowledged row on every pod.
    pub async fn assert_nothing_lost(&self, written: &Written, sampled: &Sampled) {
        // Every 100 ms, or as long as a round of writes takes: at least one a second.
        assert!(
            sampled.samples >= sampled.lasted.as_secs().max(10),
            "{} samples in {:?}",
            sampled.samples,
            sampled.lasted
        );
        assert!(sampled.violations.is_empty(), "{:#?}", sampled.violations);
        let acknowledged: Vec<u64> = written.acknowledged.iter().map(|a| a.id).collect();
        for pod in self.pods() {
            let ids = self.ids(&pod).await.unwrap_or_default();
            let missing = acknowledged.iter().filter(|id| !ids.contains(id)).count();
            println!("{pod}: {} rows, {missing} acknowledged missing", ids.len());
        }
        for pod in self.pods() {
            self.has_rows(&pod, &acknowledged, Duration::from_secs(60))
                .await;
        }
    }

    pub fn delete_pod(&self, pod: &str) {
        let ns = &self.t.ns.name;
        kubectl_ok(&["delete", "pod", "-n", ns, pod, "--wait=false"], None);
    }

    pub fn signal(&self, pod: &str, container: &str, signal: &str) {
        signal_container(&self.t.ns.name, pod, container, signal);
    }

    /// Sets the database's `spec.replicas`: [`Group::pods`] are the new count's from now on.
    pub async fn scale(&mut self, replicas: usize) {
        self.patch_spec(json!({"replicas": replicas})).await;
        self.replicas = replicas;
    }

    /// Sets the database's `spec.halted`.
    pub async fn halt(&self, halted: bool) {
        self.patch_spec(json!({"halted": halted})).await;
    }

    async fn patch_spec(&self, spec: Value) {
        let patch = json!({ "spec": spec });
        self.t
            .api::<MssqlServer>()
            .patch(DB, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }

    /// Scales the operator's Deployment (0 stops it).
    pub fn scale_operator(&self, replicas: u8) {
        let replicas = format!("--replicas={replicas}");
        let args = [
            "scale",
            "deployment",
            "-n",
            &self.operator_ns,
            "mssql-operator",
            &replicas,
        ];
        kubectl_ok(&args, None);
    }

    /// Deletes the database (waiting for it to go) and the double's catalog entry.
    pub async fn delete(&self) {
        // It leads (and its webhook answers) before the database is deleted.
        wait_leader(&self.t.client, &self.operator_ns, None).await;
        self.t
            .api::<MssqlServer>()
            .delete(DB, &DeleteParams::default())
            .await
            .unwrap();
        self.t.wait_gone::<MssqlServer>(DB).await;
        let _ = kubectl(
            &[
                "delete",
                "mssqlserverversion",
                DOUBLE_VERSION,
                "--ignore-not-found",
            ],
            None,
        );
    }
}

//! The coordinator's loop: every tick it reads its server, the Lease and the other voters, asks
//! [`decide::next`] and carries out that one move (docs/coordinator.md).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::coordination::v1::Lease as LeaseObject;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Api, Client};
use serde_json::json;
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::decide::{self, Lease, Next, Role, Server, View, Vote, Wait};
use crate::endpoint::{self, EndpointVote};
use crate::events::Told;
use crate::labels;
use crate::lease::{LeaseClient, Tracker};
use crate::membership::{self, Membership};
use crate::peers::{self, Answer, Ask, Shared, Tls, VoteAnswer};
use crate::report::{Publisher, Reading};
use crate::sql::{self, GroupState, Local, SqlError};
use crate::timing::Timing;
use crate::tsql::{self, SecondaryAccess, error};
use mssql_api::pods::same_serial;

/// One voter of the group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The pod's name (the replica's name).
    pub name: String,
    pub ordinal: u32,
    pub arbiter: bool,
    /// Where its coordinator and endpoint are reached: the pod's DNS name.
    pub host: String,
    pub peer_port: u16,
}

/// Everything a coordinator is started with.
#[derive(Clone, Debug)]
pub struct Config {
    pub namespace: String,
    /// The `MSSQLServer`'s name.
    pub database: String,
    /// This pod.
    pub pod: String,
    /// This pod's uid: a Lease held under it was held by an earlier process in this very pod.
    pub pod_uid: String,
    /// How the voters are named and reached; who they are follows the database's spec.
    pub membership: Membership,
    /// The local server; `None` for the arbiter, which runs none.
    pub sql: Option<sql::Target>,
    /// The endpoint certificate's PEM files: `tls.crt`, `tls.key`.
    pub certificate: PathBuf,
    pub key: PathBuf,
    /// A directory the server can read, for the one-time PFX of `CREATE CERTIFICATE`.
    pub pfx_dir: PathBuf,
    pub databases: Vec<String>,
    pub access: SecondaryAccess,
    pub dbm_login_password: String,
    pub master_key_password: String,
    /// Where this coordinator answers the others.
    pub listen: SocketAddr,
    pub timing: Timing,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the endpoint certificate: {0}")]
    Certificate(String),
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: SocketAddr,
        source: std::io::Error,
    },
}

fn read(path: &PathBuf) -> Result<Vec<u8>, RunError> {
    std::fs::read(path).map_err(|source| RunError::Read {
        path: path.clone(),
        source,
    })
}

/// The endpoint certificate and its key, as its Secret holds them (PEM).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Material {
    chain: Vec<u8>,
    key: Vec<u8>,
    /// The leaf's DER, what a peer presents.
    leaf: Vec<u8>,
    /// Its serial, lowercase hex: its certificate's name in master.
    serial: String,
}

impl Material {
    fn new(chain: Vec<u8>, key: Vec<u8>) -> Result<Self, RunError> {
        let bad = |e: &dyn std::fmt::Display| RunError::Certificate(e.to_string());
        let leaf = crate::pfx::leaf(&chain).map_err(|e| bad(&e))?.to_vec();
        let serial = x509_parser::parse_x509_certificate(&leaf)
            .map_err(|e| bad(&e))?
            .1
            .raw_serial_as_string()
            .replace(':', "")
            .to_ascii_lowercase();
        Ok(Self {
            chain,
            key,
            leaf,
            serial,
        })
    }

    /// As the pod's files hold it now (the kubelet updates them some time after the Secret).
    fn from_files(config: &Config) -> Result<Self, RunError> {
        Self::new(read(&config.certificate)?, read(&config.key)?)
    }

    /// As the Secret holds it, read through the API.
    fn from_secret(secret: &Secret) -> Result<Self, RunError> {
        let data = secret.data.clone().unwrap_or_default();
        let file = |key: &str| data.get(key).map(|v| v.0.clone()).unwrap_or_default();
        Self::new(file("tls.crt"), file("tls.key"))
    }

    /// The peer TLS that presents it, accepting the peers `pins` holds.
    fn peer_tls(&self, pins: peers::Pins) -> Result<Tls, RunError> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let bad = |e: &dyn std::fmt::Display| RunError::Certificate(e.to_string());
        let chain = CertificateDer::pem_slice_iter(&self.chain)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(&e))?;
        let key = PrivateKeyDer::from_pem_slice(&self.key).map_err(|e| bad(&e))?;
        Tls::new(chain, key, pins).map_err(|e| bad(&e))
    }
}

/// What the loop remembers between ticks.
#[derive(Debug, Default)]
struct Memory {
    tracker: Tracker,
    lease: Option<LeaseObject>,
    failures: u32,
    set_up: bool,
    /// The last time the server could tell (connected to a primary, or primary itself), it was
    /// synchronized.
    synchronized: bool,
    refused: bool,
    fencing: bool,
    write_lease_end: Option<Instant>,
    /// The highest sequence number any voter reported (what the arbiter votes with).
    highest_sequence: Option<i64>,
    last_move: Option<String>,
    /// When SIGTERM arrived.
    stopping_since: Option<Instant>,
    /// The last other coordinator seen holding the Lease (its pod).
    last_holder: Option<String>,
    /// Why this coordinator took the Lease, for the Event of its promotion.
    took_because: Option<String>,
    /// This tick's read of the Lease was answered.
    api_answered: bool,
    /// Its server was primary under the Lease it holds now.
    led: bool,
    /// Its server said PRIMARY at the last look.
    was_primary: bool,
    /// As primary: the replicas its group had at the last look.
    group_replicas: Vec<String>,
    /// Every replica a group led by this coordinator had, while its pod exists: a replica the
    /// spec no longer wants may still carry a label to take back.
    former: BTreeSet<String>,
    /// The endpoint certificates its server's master held at the last look.
    master: endpoint::Master,
    /// Its server was set up since `master` was read.
    master_stale: bool,
    /// Its server started since the endpoint certificates were last looked at with every voter
    /// answering: the moment it may present a new one.
    fresh: bool,
    /// Its server was set up before (by this process).
    seen_before: bool,
    /// Its server stopped answering for as long as it counts gone since it was last set up (a
    /// restart, most likely; a slow probe is not one).
    server_was_gone: bool,
    /// The other voters' endpoint certificates this tick (whether each is the arbiter).
    endpoint_votes: Vec<(bool, EndpointVote)>,
    /// The endpoint certificate read through the API, because the database asked for a serial
    /// the pod's files do not hold yet; and when it was last read.
    fetched: Option<Material>,
    fetched_at: Option<Instant>,
}

/// How often the endpoint certificate's Secret may be read while the database asks for one the
/// pod's files do not hold.
const FETCH_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// How long a stopping primary waits for a secondary to catch up before it fences all the same:
/// well within a pod's default grace period (30 s).
const HANDOVER_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The coordinator of `config.pod`, until SIGTERM has been handled (the Lease handed over).
pub async fn run(
    client: Client,
    config: Config,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), RunError> {
    let timing = config.timing;
    // The certificate it presents to the other coordinators, as the pod started with it; the
    // pins grow with what its master trusts.
    let startup = Material::from_files(&config)?;
    let pins: peers::Pins = Arc::new(std::sync::RwLock::new(
        [startup.leaf.clone()].into_iter().collect(),
    ));
    let tls = startup.peer_tls(pins)?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| RunError::Listen {
            address: config.listen,
            source,
        })?;
    let shared = Arc::new(Mutex::new(Shared::default()));
    // Another coordinator's `look` wakes the loop before its next tick.
    let look = Arc::new(tokio::sync::Notify::new());
    tokio::spawn(peers::serve(
        listener,
        tls.clone(),
        shared.clone(),
        timing.lease,
        look.clone(),
    ));
    // A new process is a new holder: one that restarted never trusts what its predecessor did.
    let incarnation = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let identity = format!(
        "{}/{}/{incarnation:x}-{}",
        config.pod,
        config.pod_uid,
        std::process::id()
    );
    let leases = LeaseClient::new(
        Api::namespaced(client.clone(), &config.namespace),
        &mssql_api::names::coordinator_lease(&config.database),
        &identity,
        &timing,
    );
    let mut wanted = membership::watch(
        Api::namespaced(client.clone(), &config.namespace),
        config.database.clone(),
    );
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &config.namespace);
    let pods: Api<Pod> = Api::namespaced(client, &config.namespace);
    let mut server = config
        .sql
        .clone()
        .map(|target| sql::Server::new(target, timing.probe_timeout));
    let group = mssql_api::names::availability_group(&config.database);
    // The arbiter runs no server: it has nothing to report.
    let report = match &server {
        Some(_) => Some(Publisher::start(pods.clone(), config.pod.clone()).await),
        None => None,
    };
    let mut memory = Memory::default();
    let mut told = Told::new(
        pods.clone().into_client(),
        &config.namespace,
        &config.database,
        &config.pod,
    )
    .await;
    // Nothing is decided before the group's size is known; a stop meanwhile has nothing to hand
    // over.
    let count = loop {
        if let Some(w) = wanted.borrow_and_update().as_ref() {
            break w.replicas;
        }
        if *stop.borrow() || wanted.changed().await.is_err() {
            return Ok(());
        }
    };
    let (mut members, mut me, mut leaving) = voters(&config, count);
    let mut ticker = tokio::time::interval(timing.tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    info!(identity, group, "coordinator started");
    // How many looks in a row follow a move at once, without waiting for the tick.
    let mut at_once = 0;
    loop {
        if at_once == 0 {
            tokio::select! {
                _ = ticker.tick() => {}
                () = look.notified() => {}
            }
        } else {
            at_once -= 1;
        }
        let stopping = *stop.borrow();
        // The voters change only with the group's size.
        if wanted.has_changed().unwrap_or(false)
            && let Some(count) = wanted.borrow_and_update().as_ref().map(|w| w.replicas)
        {
            (members, me, leaving) = voters(&config, count);
        }
        let (switchover_to, endpoint_asked) = wanted
            .borrow()
            .as_ref()
            .map(|w| (w.switchover_to.clone(), w.endpoint.clone()))
            .unwrap_or_default();
        let tick = Tick {
            config: &config,
            members: &members,
            me: &me,
            leaving,
            switchover_to: switchover_to.as_deref(),
            endpoint_asked: endpoint_asked.as_ref(),
            startup: &startup,
            secrets: &secrets,
            group: &group,
            tls: &tls,
            leases: &leases,
            pods: &pods,
            shared: &shared,
            report: report.as_ref(),
        };
        let moved = tick
            .once(&mut memory, &mut told, server.as_mut(), stopping)
            .await;
        if stopping && moved.holds_nothing {
            info!("handed over; stopping");
            return Ok(());
        }
        if moved.look_again && at_once == 0 {
            at_once = LOOKS_AT_ONCE;
        }
    }
}

/// A move that hands the primary role on (a fence, a handover, taking the Lease, a promotion)
/// is followed by another look at once, up to this many in a row: each tick waited for would
/// add to the time clients cannot write.
const LOOKS_AT_ONCE: u32 = 4;

/// What a tick's move left.
struct Moved {
    /// This coordinator holds no Lease (a stopping one may exit).
    holds_nothing: bool,
    /// The move hands the primary role on: look again at once.
    look_again: bool,
}

/// The voters of a group of `count` replicas, this pod as one of them, and whether it is
/// leaving: a pod the spec no longer wants hands the primary role over, takes nothing, and runs
/// on until the operator removes it.
fn voters(config: &Config, count: u32) -> (Vec<Member>, Member, bool) {
    let members = config.membership.members(count);
    let me = members.iter().find(|m| m.name == config.pod).cloned();
    let leaving = me.is_none();
    let me = me.unwrap_or_else(|| config.membership.member(&config.pod));
    (members, me, leaving)
}

/// What one tick works with.
struct Tick<'a> {
    config: &'a Config,
    /// Every voter the spec wants now; `me` among them unless it is leaving.
    members: &'a [Member],
    me: &'a Member,
    leaving: bool,
    /// The replica the operator wants primary (a planned switchover).
    switchover_to: Option<&'a str>,
    /// The endpoint certificate the operator wants trusted (its serial, and its Secret).
    endpoint_asked: Option<&'a (String, String)>,
    /// The endpoint certificate the pod started with: what it presents to the other coordinators.
    startup: &'a Material,
    secrets: &'a Api<Secret>,
    group: &'a str,
    tls: &'a Tls,
    leases: &'a LeaseClient,
    pods: &'a Api<Pod>,
    shared: &'a Arc<Mutex<Shared>>,
    /// Publishes its server's state on this pod; `None` for the arbiter.
    report: Option<&'a Publisher>,
}

/// The pod part of a holder identity (`<pod>/<pod uid>/<incarnation>`).
fn pod_of(identity: &str) -> &str {
    identity.split('/').next().unwrap_or(identity)
}

impl Tick<'_> {
    /// One look and one move.
    async fn once(
        &self,
        memory: &mut Memory,
        told: &mut Told,
        server: Option<&mut sql::Server>,
        stopping: bool,
    ) -> Moved {
        let timing = &self.config.timing;
        let (local, server) = match server {
            Some(server) => (self.look(memory, server).await, Some(server)),
            None => (Server::NoGroup, None),
        };
        let reachable = match self.leases.read().await {
            Ok(lease) => {
                memory.tracker.seen(&lease, Instant::now());
                memory.lease = Some(lease);
                true
            }
            Err(e) => {
                warn!(error = %e, "cannot read the Lease");
                false
            }
        };
        memory.api_answered = reachable;
        let votes = self.votes(memory, &local).await;
        let mut server = server;
        self.endpoint(memory, server.as_deref_mut()).await;
        let now = Instant::now();
        let mut lease = memory
            .tracker
            .view(self.leases.identity(), reachable, now, timing);
        // A Lease handed to this pod by name is this pod's to take.
        if matches!(&lease, Lease::Theirs { holder, .. } if holder == &self.me.name) {
            lease = Lease::Offered;
        }
        // A Lease an earlier coordinator of this very pod (same uid) holds: that process is gone
        // (a pod runs one at a time), so this one finishes its term at once rather than after
        // the Lease's duration: it fences its server and hands the role over, as at a stop. A
        // pod of the same name but another uid may still run somewhere: its Lease runs out.
        let this_pod = format!("{}/{}/", self.me.name, self.config.pod_uid);
        if matches!(&lease, Lease::Theirs { holder, .. } if holder.starts_with(&this_pod)) {
            memory.fencing = true;
            lease = Lease::Mine { anchor: now };
        }
        let holding = matches!(lease, Lease::Mine { .. });
        if !holding {
            // Whatever this coordinator's term was, it is over.
            memory.led = false;
            memory.fencing = false;
        }
        // A server that was primary under this Lease and answers as anything else now (it was
        // restarted, or taken offline) hands the role to a secondary that is ready now.
        if holding
            && memory.led
            && matches!(local, Server::Replica { role, .. } if role != Role::Primary)
        {
            memory.fencing = true;
        }
        let promised_until = {
            let mut shared = self.shared.lock().expect("not poisoned");
            shared.holding = holding;
            shared.promised_until
        };
        if stopping {
            memory.stopping_since.get_or_insert(now);
        }
        let view = View {
            me: &self.me.name,
            server: &local,
            lease: &lease,
            voters: self.members.len(),
            votes: &votes,
            all_answered_without_group: votes.len() == self.members.len()
                && votes.iter().all(|v| !v.has_group),
            fencing: memory.fencing,
            stopping,
            leaving: self.leaving,
            handover_expired: memory
                .stopping_since
                .is_some_and(|since| now >= since + HANDOVER_WAIT),
            switchover_to: self.switchover_to,
            promised_until,
            write_lease_end: memory.write_lease_end,
            now,
            timing,
        };
        let next = decide::next(&view);
        let described = format!("{next:?}");
        if memory.last_move.as_deref() != Some(described.as_str()) {
            let answers: Vec<String> = votes
                .iter()
                .map(|v| {
                    format!(
                        "{} seq {:?}{}{}",
                        v.member,
                        v.sequence,
                        if v.synchronized { " synchronized" } else { "" },
                        if v.refused { " refused" } else { "" }
                    )
                })
                .collect();
            info!(next = described, votes = ?answers, "coordinator");
            memory.last_move = Some(described);
        }
        if let Lease::Theirs { holder, changed } = &lease {
            memory.last_holder = Some(pod_of(holder).to_owned());
            if next == Next::Acquire {
                memory.took_because = Some(format!(
                    "{} did not renew the Lease for {:?}",
                    pod_of(holder),
                    now - *changed
                ));
            }
        } else if next == Next::Acquire {
            let before = memory.last_holder.as_deref().unwrap_or("its last holder");
            memory.took_because = Some(match memory.tracker.holder() {
                Some(holder) if holder == self.me.name => format!("{before} handed the role over"),
                _ => format!("{before} let go of the Lease"),
            });
        }
        if let Next::Wait(Wait::NoTarget(why)) = &next {
            // Told by the holder, or where nobody holds the Lease by the lowest ordinal answering.
            let lowest = votes.iter().min_by_key(|v| (v.arbiter, v.ordinal));
            if holding || lowest.is_some_and(|v| v.member == self.me.name) {
                let note = format!("The group cannot elect a primary: {why}");
                told.tell(EventType::Warning, "NoPrimary", note).await;
            }
        }
        self.act(memory, told, server, next, holding).await
    }

    /// The local server this tick, setting it up once each time it (re)appears.
    async fn look(&self, memory: &mut Memory, server: &mut sql::Server) -> Server {
        match server.local().await {
            Ok(local) => {
                memory.failures = 0;
                if !memory.set_up {
                    match self.set_up(server).await {
                        Ok(()) => {
                            memory.set_up = true;
                            memory.master_stale = true;
                            // A server seen for the first time, or back after it was gone, has
                            // just started: its endpoint may take a new certificate now.
                            if !memory.seen_before || memory.server_was_gone {
                                memory.fresh = true;
                            }
                            memory.seen_before = true;
                            memory.server_was_gone = false;
                        }
                        Err(e) => warn!(error = %e, "cannot set up the endpoint yet"),
                    }
                }
                let reading = match &local.group {
                    Some(group) => Reading::of(group, &self.config.databases)
                        .listing(&memory.group_replicas)
                        .with_endpoint(memory.master.said()),
                    None => Reading::nothing().with_endpoint(memory.master.said()),
                };
                self.publish(&reading);
                match local.group {
                    None => {
                        memory.synchronized = false;
                        Server::NoGroup
                    }
                    Some(GroupState {
                        role,
                        sequence,
                        connected,
                        synchronized,
                        ..
                    }) => {
                        memory.synchronized = match role {
                            Role::Primary => true,
                            // As a secondary: what it says while connected to its primary; once
                            // that primary is gone the DMV says NOT SYNCHRONIZING, but SQL Server
                            // still knows it was synchronized, and so does this memory.
                            _ if connected => synchronized,
                            // A server that was primary a moment ago lacks what the next one
                            // commits: synchronized only once a primary says so.
                            _ if memory.was_primary => false,
                            _ => memory.synchronized,
                        };
                        memory.was_primary = role == Role::Primary;
                        if role != Role::Primary {
                            memory.group_replicas.clear();
                        }
                        Server::Replica { role, sequence }
                    }
                }
            }
            Err(e) => {
                memory.failures += 1;
                memory.set_up = false;
                warn!(error = %e, failures = memory.failures, "the server did not answer");
                if self.config.timing.server_gone(memory.failures) {
                    memory.server_was_gone = true;
                    // Its endpoint certificates are not known while its server is gone.
                    self.publish(&Reading::nothing().with_endpoint(Default::default()));
                }
                Server::Silent {
                    failures: memory.failures,
                }
            }
        }
    }

    fn publish(&self, reading: &Reading) {
        if let Some(report) = self.report {
            report.publish(reading);
        }
    }

    /// Master key, login, user, certificate, endpoint: each safe to repeat.
    async fn set_up(&self, server: &mut sql::Server) -> Result<(), SqlError> {
        let config = self.config;
        let (hadr_name, hadr) = server.probe().await?;
        if !hadr {
            return Err(SqlError::Client(format!(
                "HADR is off on {hadr_name}: the pod needs MSSQL_ENABLE_HADR=1"
            )));
        }
        server
            .execute(
                &tsql::create_master_key(&config.master_key_password),
                &[error::MASTER_KEY_EXISTS],
            )
            .await?;
        server
            .execute(
                &tsql::create_login(&config.dbm_login_password),
                &[error::LOGIN_EXISTS],
            )
            .await?;
        server
            .execute(&tsql::create_user(), &[error::USER_EXISTS])
            .await?;
        let material = Material::from_files(config).map_err(|e| SqlError::Client(e.to_string()))?;
        let certificate = self.install_certificate(server, &material).await?;
        server
            .execute(
                &tsql::create_endpoint(&certificate),
                &[error::ENDPOINT_EXISTS],
            )
            .await?;
        server.execute(&tsql::grant_connect(), &[]).await
    }

    /// Writes `material` as a one-time PFX the server reads, and creates its certificate in master
    /// (trusted: owned by the endpoint's user); returns its name.
    async fn install_certificate(
        &self,
        server: &mut sql::Server,
        material: &Material,
    ) -> Result<String, SqlError> {
        let name = tsql::certificate_name(&material.serial);
        let password = one_time_password();
        let pfx = crate::pfx::write(&material.chain, &material.key, &password)
            .map_err(|e| SqlError::Client(e.to_string()))?;
        let path = self.config.pfx_dir.join(format!("{name}.pfx"));
        write_private(&path, &pfx).map_err(SqlError::Io)?;
        let created = server
            .execute(
                &tsql::create_certificate(&name, &path.display().to_string(), &password),
                &[error::CERTIFICATE_EXISTS],
            )
            .await;
        let _ = std::fs::remove_file(&path);
        created.map(|()| name)
    }

    /// The endpoint certificate its Secret holds now: the one the database asked for, read
    /// through the API, until the pod's files hold it too.
    async fn wanted_material(&self, memory: &mut Memory) -> Material {
        let files = Material::from_files(self.config).ok();
        let Some((serial, secret)) = self.endpoint_asked else {
            return files.unwrap_or_else(|| self.startup.clone());
        };
        if let Some(files) = files.as_ref().filter(|m| same_serial(&m.serial, serial)) {
            return files.clone();
        }
        let stale = memory
            .fetched
            .as_ref()
            .is_none_or(|m| !same_serial(&m.serial, serial));
        let due = memory
            .fetched_at
            .is_none_or(|at| at.elapsed() >= FETCH_EVERY);
        if stale && due {
            memory.fetched_at = Some(Instant::now());
            match tokio::time::timeout(crate::API_DEADLINE, self.secrets.get(secret)).await {
                Ok(Ok(found)) => match Material::from_secret(&found) {
                    Ok(material) => memory.fetched = Some(material),
                    Err(e) => warn!(error = %e, secret, "the endpoint certificate's Secret"),
                },
                Ok(Err(e)) => warn!(error = %e, secret, "cannot read the endpoint certificate"),
                Err(_) => warn!(
                    secret,
                    "cannot read the endpoint certificate: no answer in time"
                ),
            }
        }
        match &memory.fetched {
            Some(fetched) if same_serial(&fetched.serial, serial) => fetched.clone(),
            _ => files.unwrap_or_else(|| self.startup.clone()),
        }
    }

    /// The endpoint certificates' trust overlap ([`endpoint::plan`]): trust the wanted one, present
    /// it when the server has just started and every replica trusts it, retire the others once
    /// every voter presents it; then the peers this coordinator accepts follow what master holds.
    async fn endpoint(&self, memory: &mut Memory, server: Option<&mut sql::Server>) {
        let wanted = self.wanted_material(memory).await;
        if let Some(server) = server.filter(|_| memory.set_up)
            && let Err(e) = self.endpoint_moves(memory, server, &wanted).await
        {
            warn!(error = %e, "cannot look after the endpoint certificates");
        }
        let pins = endpoint::pins(&memory.master, &[&self.startup.leaf, &wanted.leaf]);
        let unchanged = *self.tls.pins.read().unwrap_or_else(|e| e.into_inner()) == pins;
        if !unchanged {
            *self.tls.pins.write().unwrap_or_else(|e| e.into_inner()) = pins;
        }
    }

    async fn endpoint_moves(
        &self,
        memory: &mut Memory,
        server: &mut sql::Server,
        wanted: &Material,
    ) -> Result<(), SqlError> {
        let deadline = self.config.timing.probe_timeout * 2;
        let plan_on = |master: &endpoint::Master| {
            endpoint::plan(
                master,
                &wanted.serial,
                memory.fresh,
                &memory.endpoint_votes,
                self.members.len(),
            )
        };
        // A steady group sends no query: what master holds changes only by these moves, and is
        // read again whenever its server is set up.
        if !memory.master_stale
            && !memory.fresh
            && plan_on(&memory.master) == endpoint::Plan::default()
        {
            return Ok(());
        }
        let mut master = server.endpoint_certificates().await?;
        let plan = plan_on(&master);
        let name = tsql::certificate_name(&wanted.serial);
        if plan.trust {
            self.install_certificate(server, wanted).await?;
            info!(serial = wanted.serial, "trusts the endpoint certificate");
        }
        if plan.present {
            server
                .execute_within(deadline, &tsql::present_certificate(&name), &[])
                .await?;
            info!(serial = wanted.serial, "presents the endpoint certificate");
        }
        for serial in &plan.retire {
            let old = tsql::certificate_name(serial);
            server
                .execute_within(deadline, &tsql::drop_certificate(&old), &[])
                .await?;
            info!(serial, "retired the endpoint certificate");
        }
        if plan != endpoint::Plan::default() {
            master = server.endpoint_certificates().await?;
        }
        // Its chance to present ends once every voter was heard with the certificate in master.
        let all_answered = memory.endpoint_votes.len() + 1 >= self.members.len();
        if all_answered && master.serials().contains(&wanted.serial) {
            memory.fresh = false;
        }
        memory.master = master;
        memory.master_stale = false;
        Ok(())
    }

    /// Every voter's answer this tick: this coordinator's own, and the others' that answered.
    async fn votes(&self, memory: &mut Memory, local: &Server) -> Vec<Vote> {
        let (sequence, has_group) = match local {
            Server::Replica { sequence, .. } => (Some(*sequence), true),
            _ => (None, false),
        };
        let mine = VoteAnswer {
            member: self.me.name.clone(),
            ordinal: self.me.ordinal,
            arbiter: self.me.arbiter,
            sequence: if self.me.arbiter {
                memory.highest_sequence
            } else {
                sequence
            },
            synchronized: has_group && memory.synchronized,
            refused: memory.refused,
            has_group,
            holder: memory.tracker.holder().map(|h| pod_of(h).to_owned()),
            endpoint: if self.me.arbiter {
                EndpointVote {
                    trusts: Vec::new(),
                    presents: Some(self.startup.serial.clone()),
                }
            } else {
                memory.master.said()
            },
        };
        self.shared.lock().expect("not poisoned").vote = Some(mine.clone());
        let asks = self
            .members
            .iter()
            .filter(|m| m.name != self.me.name)
            .map(|m| self.ask(m, &Ask::Vote));
        let answers: Vec<VoteAnswer> = futures::future::join_all(asks)
            .await
            .into_iter()
            .filter_map(|answer| match answer {
                Some(Answer::Vote(vote)) => Some(vote),
                _ => None,
            })
            .collect();
        memory.endpoint_votes = answers
            .iter()
            .map(|a| (a.arbiter, a.endpoint.clone()))
            .collect();
        let mut votes: Vec<Vote> = answers.into_iter().map(Vote::from).collect();
        votes.push(mine.into());
        memory.highest_sequence = memory
            .highest_sequence
            .max(votes.iter().filter_map(|v| v.sequence).max());
        votes
    }

    async fn ask(&self, member: &Member, question: &Ask) -> Option<Answer> {
        // A tick's questions must leave time for its move.
        let timeout = self.config.timing.tick / 2;
        peers::ask(self.tls, &member.host, member.peer_port, question, timeout).await
    }

    /// Carries out `next`.
    async fn act(
        &self,
        memory: &mut Memory,
        told: &mut Told,
        server: Option<&mut sql::Server>,
        next: Next,
        holding: bool,
    ) -> Moved {
        let group = self.group;
        let Some(server) = server else {
            // The arbiter only votes and confirms.
            return Moved {
                holds_nothing: true,
                look_again: false,
            };
        };
        let mut look_again = false;
        match next {
            Next::Lead => {
                memory.led = true;
                self.renew(memory).await;
                self.give_write_lease(memory, server).await;
                // The labels follow the Lease: written only under a fresh proof of holding it.
                if let Some(anchor) = self.proof(memory) {
                    memory.group_replicas = self
                        .maintain(server, told, &mut memory.former, anchor)
                        .await;
                }
            }
            Next::Bootstrap => {
                self.renew(memory).await;
                let replicas = self.members.iter().filter(|m| !m.arbiter).count();
                let create = tsql::create_group(
                    group,
                    self.config.timing.write_lease_seconds(),
                    tsql::required_synchronized_secondaries(replicas),
                    &self.replica(self.me),
                );
                if let Err(e) = self.as_holder(memory, server, &create, &[]).await {
                    warn!(error = %e, "cannot create the availability group");
                } else {
                    memory.write_lease_end =
                        Some(self.config.timing.write_lease_end(Instant::now()));
                    info!(group, "created the availability group");
                    let note = format!(
                        "{} created availability group {group} as its first primary",
                        self.me.name
                    );
                    told.tell(EventType::Normal, "Promoted", note).await;
                }
            }
            Next::Promote => {
                self.renew(memory).await;
                self.give_write_lease(memory, server).await;
                let failover = tsql::failover(group);
                match self.as_holder(memory, server, &failover, &[]).await {
                    Ok(()) => {
                        look_again = true;
                        info!(group, "promoted this replica");
                        let because = memory.took_because.take().unwrap_or_default();
                        let note = format!(
                            "{} is the primary of availability group {group}: {because}; SQL \
                             Server confirmed it was synchronized with the group's latest \
                             configuration",
                            self.me.name
                        );
                        told.tell(EventType::Normal, "Promoted", note).await;
                    }
                    Err(e) if e.number() == Some(error::NOT_SYNCHRONIZED) => {
                        warn!(error = %e, "SQL Server refused the failover: not synchronized");
                        memory.refused = true;
                    }
                    Err(e) => warn!(error = %e, "the failover failed"),
                }
            }
            Next::Fence => {
                memory.fencing = true;
                self.renew(memory).await;
                match server.execute(&tsql::offline(group), &[]).await {
                    Ok(()) => {
                        look_again = true;
                        // Its server takes no more writes: the primary Service stops sending
                        // clients to it now rather than when the next primary relabels it.
                        self.label_self_secondary(memory).await;
                    }
                    Err(e) => {
                        warn!(error = %e, "cannot take the group offline; its write lease runs out")
                    }
                }
            }
            Next::Release { to } => {
                memory.fencing = true;
                if self.release(memory, to.as_deref()).await {
                    memory.fencing = false;
                    memory.refused = false;
                    memory.led = false;
                    if let Some(to) = to.as_deref() {
                        self.wake(to).await;
                    }
                    return Moved {
                        holds_nothing: true,
                        look_again: false,
                    };
                }
            }
            Next::Acquire => {
                if self
                    .write_lease_holder(memory, Some(self.leases.identity()))
                    .await
                {
                    memory.refused = false;
                    look_again = true;
                }
            }
            Next::Demote { offline_first } => {
                if offline_first && let Err(e) = server.execute(&tsql::offline(group), &[]).await {
                    warn!(error = %e, "cannot take the group offline");
                }
                if let Err(e) = server.execute(&tsql::set_role_secondary(group), &[]).await {
                    warn!(error = %e, "cannot make this replica a secondary yet");
                }
            }
            Next::Join => {
                let joined = server
                    .execute(&tsql::join(group), &[error::ALREADY_JOINED])
                    .await;
                match joined {
                    Ok(()) => {
                        let _ = server
                            .execute(&tsql::grant_create_any_database(group), &[])
                            .await;
                    }
                    Err(e) => warn!(error = %e, "cannot join the group yet"),
                }
            }
            Next::Wait(Wait::Following | Wait::LeaseHeld | Wait::ApiServer) => {}
            // Its server went silent: it lets go once its write lease has ended, even if the
            // server answers again meanwhile (a restarted server comes back resolving, and a
            // synchronized secondary is ready now).
            Next::Wait(Wait::WriteLeaseRunning) => {
                memory.fencing = true;
                self.renew(memory).await;
            }
            Next::Wait(_) => {
                if holding {
                    self.renew(memory).await;
                }
            }
        }
        let holds_nothing = !matches!(
            memory.tracker.view(
                self.leases.identity(),
                true,
                Instant::now(),
                &self.config.timing
            ),
            Lease::Mine { .. }
        );
        Moved {
            holds_nothing,
            look_again,
        }
    }

    /// Asks the coordinator of `pod`, which was just handed the Lease, to look at once.
    async fn wake(&self, pod: &str) {
        if let Some(member) = self.members.iter().find(|m| m.name == pod) {
            self.ask(member, &Ask::Look).await;
        }
    }

    /// Whether the spec wants replica `name`.
    fn wants(&self, name: &str) -> bool {
        self.members.iter().any(|m| !m.arbiter && m.name == name)
    }

    fn replica(&self, member: &Member) -> tsql::Replica {
        tsql::Replica {
            name: member.name.clone(),
            endpoint_url: tsql::endpoint_url(&member.host),
            access: self.config.access,
        }
    }

    /// Writes the Lease's holder against the version last read; true when it was written.
    async fn write_lease_holder(&self, memory: &mut Memory, holder: Option<&str>) -> bool {
        let Some(current) = memory.lease.clone() else {
            return false;
        };
        let started = Instant::now();
        match self.leases.write(&current, holder).await {
            Ok(written) => {
                memory.tracker.seen(&written, Instant::now());
                if holder == Some(self.leases.identity()) {
                    memory.tracker.proved(started);
                }
                memory.lease = Some(written);
                true
            }
            Err(e) => {
                warn!(error = %e, "cannot write the Lease");
                false
            }
        }
    }

    /// Renews the Lease; when the API server does not answer (this tick's read, or the write),
    /// asks every other voter to confirm this primary instead (failsafe).
    async fn renew(&self, memory: &mut Memory) {
        if memory.api_answered
            && self
                .write_lease_holder(memory, Some(self.leases.identity()))
                .await
        {
            return;
        }
        let started = Instant::now();
        let ask = Ask::Confirm {
            primary: self.me.name.clone(),
        };
        let others: Vec<&Member> = self
            .members
            .iter()
            .filter(|m| m.name != self.me.name)
            .collect();
        let answers = futures::future::join_all(others.iter().map(|m| self.ask(m, &ask))).await;
        if answers
            .iter()
            .all(|a| matches!(a, Some(Answer::Confirmed(true))))
        {
            memory.tracker.proved(started);
        }
    }

    /// When the last proof that this coordinator holds the Lease began, while it still counts.
    fn proof(&self, memory: &Memory) -> Option<Instant> {
        let identity = self.leases.identity();
        match memory
            .tracker
            .view(identity, true, Instant::now(), &self.config.timing)
        {
            Lease::Mine { anchor } => Some(anchor),
            _ => None,
        }
    }

    /// Gives the write lease while the last proof of holding the Lease allows it.
    async fn give_write_lease(&self, memory: &mut Memory, server: &mut sql::Server) {
        let timing = &self.config.timing;
        let Some(anchor) = self.proof(memory) else {
            return;
        };
        let sent = Instant::now();
        if !timing.may_give_write_lease(anchor, sent) {
            return;
        }
        let renew = tsql::renew_write_lease(self.group, timing.write_lease_seconds());
        match server.execute_quickly(&renew).await {
            Ok(()) => memory.write_lease_end = Some(timing.write_lease_end(sent)),
            Err(e) => warn!(error = %e, "cannot renew the write lease"),
        }
    }

    /// Hands the Lease to `to` (by pod name) or frees it.
    async fn release(&self, memory: &mut Memory, to: Option<&str>) -> bool {
        let released = self.write_lease_holder(memory, to).await;
        if released {
            info!(to, "let go of the Lease");
        }
        released
    }

    /// As primary: the group as the spec says it (replicas, access, databases) and the labels.
    /// Returns the replicas the group had when it looked.
    async fn maintain(
        &self,
        server: &mut sql::Server,
        told: &mut Told,
        former: &mut BTreeSet<String>,
        anchor: Instant,
    ) -> Vec<String> {
        let group = self.group;
        let rows = match server.replicas().await {
            Ok(rows) => rows,
            Err(e) => {
                warn!(error = %e, "cannot read the group's replicas");
                return Vec::new();
            }
        };
        let local = match server.local().await {
            Ok(Local { group: Some(local) }) => local,
            Ok(Local { group: None }) => return Vec::new(),
            Err(e) => {
                warn!(error = %e, "cannot read the group");
                return Vec::new();
            }
        };
        let wanted: Vec<&Member> = self.members.iter().filter(|m| !m.arbiter).collect();
        // Commits wait for fewer secondaries before one leaves, and for more only once they
        // are synchronized.
        let synchronized = rows
            .iter()
            .filter(|r| r.role == Some(Role::Secondary) && r.synchronized && self.wants(&r.name))
            .count();
        let required = tsql::required_now(wanted.len(), local.required, synchronized);
        let settled = required == local.required || {
            let set = tsql::set_required_secondaries(group, required);
            match self.within(anchor, server, &set, &[]).await {
                Ok(()) => {
                    info!(
                        group,
                        required, "synchronized secondaries required to commit"
                    );
                    true
                }
                Err(e) => {
                    warn!(error = %e, required, "cannot set the secondaries required to commit");
                    false
                }
            }
        };
        // Not before commits stop waiting for the replicas that leave.
        let leaving = rows
            .iter()
            .filter(|r| settled && !self.wants(&r.name) && r.name != self.me.name);
        for row in leaving {
            let remove = tsql::remove_replica(group, &row.name);
            match self.within(anchor, server, &remove, &[]).await {
                Ok(()) => {
                    info!(group, replica = row.name, "removed the replica");
                    let note = format!(
                        "{} removed {} from availability group {group}: the spec no longer wants \
                         it; its pod and volume go next",
                        self.me.name, row.name
                    );
                    told.tell(EventType::Normal, "ReplicaRemoved", note).await;
                }
                Err(e) => warn!(error = %e, replica = row.name, "cannot remove the replica"),
            }
        }
        let access = self.config.access.tsql();
        for member in &wanted {
            match rows.iter().find(|r| r.name == member.name) {
                None => {
                    let add = tsql::add_replica(group, &self.replica(member));
                    match self
                        .within(anchor, server, &add, &[error::REPLICA_EXISTS])
                        .await
                    {
                        Ok(()) => {
                            info!(group, replica = member.name, "added the replica");
                            let note = format!(
                                "{} added {} to availability group {group}; it joins and is \
                                 seeded automatically",
                                self.me.name, member.name
                            );
                            told.tell(EventType::Normal, "ReplicaAdded", note).await;
                        }
                        Err(e) => {
                            warn!(error = %e, replica = member.name, "cannot add the replica")
                        }
                    }
                }
                Some(row) if row.access != access && member.name != self.me.name => {
                    let modify = tsql::modify_access(group, &member.name, self.config.access);
                    let _ = self.within(anchor, server, &modify, &[]).await;
                }
                Some(_) => {}
            }
        }
        for db in self
            .config
            .databases
            .iter()
            .filter(|db| !local.databases.contains(db))
        {
            if let Err(e) = self.add_database(server, anchor, db).await {
                warn!(error = %e, database = db, "cannot add the database");
            }
        }
        let secondaries: Vec<&str> = rows
            .iter()
            .filter(|r| r.role == Some(Role::Secondary) && r.connected && self.wants(&r.name))
            .map(|r| r.name.as_str())
            .collect();
        former.extend(rows.iter().map(|r| r.name.clone()));
        self.label(&secondaries, former, anchor).await;
        let mut names: Vec<String> = rows.into_iter().map(|r| r.name).collect();
        names.sort();
        names
    }

    async fn add_database(
        &self,
        server: &mut sql::Server,
        anchor: Instant,
        db: &str,
    ) -> Result<(), SqlError> {
        let create = tsql::create_database(db);
        self.within(anchor, server, &create, &[error::DATABASE_EXISTS])
            .await?;
        let full = tsql::set_recovery_full(db);
        self.within(anchor, server, &full, &[]).await?;
        let backup = tsql::backup_database(db);
        self.within(anchor, server, &backup, &[]).await?;
        let add = tsql::add_database(self.group, db);
        self.within(anchor, server, &add, &[]).await
    }

    /// Sends `batch` as the Lease's holder, under its last proof of holding it.
    async fn as_holder(
        &self,
        memory: &Memory,
        server: &mut sql::Server,
        batch: &str,
        done: &[u32],
    ) -> Result<(), SqlError> {
        let anchor = self.proof(memory).ok_or(SqlError::OutOfTime)?;
        self.within(anchor, server, batch, done).await
    }

    /// Sends `batch` with what is left of the proof of holding the Lease begun at `anchor`
    /// ([`Timing::holder_statement_deadline`]): a slow statement never holds the tick past the
    /// Lease.
    async fn within(
        &self,
        anchor: Instant,
        server: &mut sql::Server,
        batch: &str,
        done: &[u32],
    ) -> Result<(), SqlError> {
        let timing = &self.config.timing;
        let deadline = timing
            .holder_statement_deadline(anchor, Instant::now(), sql::STATEMENT_TIMEOUT)
            .ok_or(SqlError::OutOfTime)?;
        server.execute_within(deadline, batch, done).await
    }

    /// Labels its own pod `secondary` once its server was taken offline, under the Lease's
    /// last proof like every label.
    async fn label_self_secondary(&self, memory: &Memory) {
        let timing = &self.config.timing;
        let deadline = timing.probe_timeout;
        let Some(anchor) = self.proof(memory) else {
            return;
        };
        if !timing.may_write_as_holder(anchor, Instant::now(), deadline) {
            return;
        }
        self.write_label(&self.me.name, mssql_api::labels::ROLE_SECONDARY)
            .await;
    }

    /// Writes `role` on `pod` within the API deadline; true when it was written.
    async fn write_label(&self, pod: &str, role: &str) -> bool {
        let patch = Patch::Merge(json!({"metadata": {"labels": {mssql_api::labels::ROLE: role}}}));
        let params = PatchParams::default();
        let written = self.pods.patch(pod, &params, &patch);
        match tokio::time::timeout(self.config.timing.probe_timeout, written).await {
            Ok(Ok(_)) => {
                info!(pod, role, "labelled");
                true
            }
            Ok(Err(e)) => {
                warn!(error = %e, pod, role, "cannot label the pod");
                false
            }
            Err(_) => {
                warn!(pod, role, "cannot label the pod: no answer in time");
                false
            }
        }
    }

    /// Labels the pods in the order of [`labels::relabel`]. Nothing is written unless every pod
    /// was read (a pod not seen might be labelled `primary`), every call has the API deadline
    /// (an API server that does not answer must not hold up the write lease's renewal), and each
    /// write must end while the proof of holding the Lease begun at `anchor` lasts: a tick held
    /// up past it would interleave its labels with the next holder's (two pods labelled primary,
    /// seen by the failover benchmark when a server froze mid-statement).
    async fn label(&self, secondaries: &[&str], former: &mut BTreeSet<String>, anchor: Instant) {
        let timing = &self.config.timing;
        let deadline = timing.probe_timeout;
        let mut roles: BTreeMap<String, Option<String>> = BTreeMap::new();
        let members = self.members.iter().filter(|m| !m.arbiter).map(|m| &m.name);
        let names: BTreeSet<String> = members.chain(former.iter()).cloned().collect();
        for name in names {
            match tokio::time::timeout(deadline, self.pods.get_opt(&name)).await {
                Ok(Ok(Some(pod))) => {
                    let role = pod
                        .metadata
                        .labels
                        .and_then(|l| l.get(mssql_api::labels::ROLE).cloned());
                    roles.insert(name, role);
                }
                // Not created yet (or gone): it has no label to take back.
                Ok(Ok(None)) => {
                    former.remove(&name);
                }
                // A pod the operator removed is no longer the coordinators' to read.
                Ok(Err(kube::Error::Api(e))) if e.code == 403 && !self.wants(&name) => {
                    former.remove(&name);
                }
                Ok(Err(_)) | Err(_) => return,
            }
        }
        let pods: Vec<labels::Pod<'_>> = roles
            .iter()
            .map(|(name, role)| labels::Pod {
                name,
                role: role.as_deref(),
            })
            .collect();
        for (pod, role) in labels::relabel(&pods, &self.me.name, secondaries) {
            if !timing.may_write_as_holder(anchor, Instant::now(), deadline) {
                return warn!(
                    pod,
                    role, "not labelling: the Lease was last proved held too long ago"
                );
            }
            // The order matters: never label the primary after a failed write before it.
            if !self.write_label(pod, role).await {
                return;
            }
        }
    }
}

/// A random password for one PFX file, from the kernel.
fn one_time_password() -> String {
    let mut bytes = [0u8; 24];
    aws_lc_rs::rand::fill(&mut bytes).expect("the kernel's randomness");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes a file only its owner can read.
fn write_private(path: &PathBuf, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    // One left by a crash would refuse to open for writing (mode 0400).
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o400)
        .open(path)?;
    file.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_identity_names_its_pod() {
        assert_eq!(pod_of("ag-0/0c5f-9e1/18f-12"), "ag-0");
        assert_eq!(pod_of("ag-0"), "ag-0");
    }

    #[test]
    fn one_time_passwords_differ() {
        assert_ne!(one_time_password(), one_time_password());
        assert_eq!(one_time_password().len(), 48);
    }
}

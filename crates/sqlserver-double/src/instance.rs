//! The server's state that outlives a connection: master, the user databases and the
//! availability group, with the threads of the HADR endpoint. Shared by every session.
//!
//! Locks are always taken in this order, each one only for as long as it is needed: `data`, a
//! peer's link, `group`, `master`, `peers`, a peer's state, `upstream`, `offers`. A commit holds
//! `data` from its first step to its acknowledgement, so the end of a seed (which holds it while
//! it checks that no commit came since the images were taken and puts the secondary in the commit
//! set) and role changes (which take it before `group`) never interleave with a commit.

use std::collections::BTreeMap;
use std::io;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::databases::Databases;
use crate::errorlog::log;
use crate::hadr::group::{Group, GroupConfig, Role};
use crate::hadr::replication::Peer;
use crate::hadr::{endpoint, replication};
use crate::master::Master;

/// SESSION_TIMEOUT's default ("CREATE AVAILABILITY GROUP (Transact-SQL)": 10 seconds).
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(10);

/// What start-up decides once.
#[derive(Clone, Debug)]
pub struct Settings {
    /// @@SERVERNAME: the host name, or `MSSQL_SERVER_NAME` (test only).
    pub server_name: String,
    /// `MSSQL_ENABLE_HADR=1` ("Configure SQL Server settings with environment variables on
    /// Linux"; `mssql-conf set hadr.hadrenabled 1`).
    pub hadr_enabled: bool,
    pub data_dir: PathBuf,
    /// How long a synchronized secondary may stay silent before the primary stops waiting for
    /// it; `MSSQL_HADR_SESSION_TIMEOUT` (seconds, test only) shortens it.
    pub session_timeout: Duration,
    /// The endpoint listens on the TDS listener's address (all addresses in a pod).
    pub endpoint_ip: IpAddr,
    /// The test-only fault knob [`crate::faults::SLOW_SEED`].
    pub slow_seed: bool,
}

/// The secondary's view of its primary: which endpoint connection it accepted the current
/// configuration from, and when it last heard from it.
#[derive(Clone, Debug)]
pub struct Upstream {
    pub connection: u64,
    pub primary: String,
    pub last_heard: Instant,
}

pub struct Instance {
    pub settings: Settings,
    pub data: Mutex<Databases>,
    pub group: Mutex<Option<Group>>,
    pub master: Mutex<Master>,
    /// The primary's connections to its secondaries, by replica name.
    pub peers: Mutex<BTreeMap<String, Arc<Peer>>>,
    pub upstream: Mutex<Option<Upstream>>,
    /// Configurations primaries sent before this replica joined, by lowercase group name.
    pub offers: Mutex<BTreeMap<String, GroupConfig>>,
    endpoint_port: Mutex<Option<u16>>,
    connections: AtomicU64,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Locks `mutex`, carrying on after a thread that held it panicked (its data is still whole:
/// every change is made in one step).
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Instance {
    /// Reads master, the databases and the group from the data directory, and starts the
    /// endpoint if master has a started one.
    pub fn open(settings: Settings) -> io::Result<Arc<Self>> {
        let master = Master::load(&settings.data_dir)?;
        let data = Databases::open(&settings.data_dir)?;
        let group = Group::load(&settings.data_dir)?;
        if let Some(group) = &group {
            log(
                "HADR",
                &format!(
                    "Availability group '{}' (sequence number {}) is back in role RESOLVING: its \
                     cluster manager decides what this replica becomes.",
                    group.config.name, group.config.sequence_number
                ),
            );
        }
        let started = master
            .endpoint
            .as_ref()
            .filter(|e| e.started)
            .map(|e| e.port);
        let instance = Arc::new(Self {
            settings,
            data: Mutex::new(data),
            group: Mutex::new(group),
            master: Mutex::new(master),
            peers: Mutex::new(BTreeMap::new()),
            upstream: Mutex::new(None),
            offers: Mutex::new(BTreeMap::new()),
            endpoint_port: Mutex::new(None),
            connections: AtomicU64::new(1),
        });
        if let Some(port) = started {
            instance.start_endpoint(port);
        }
        Ok(instance)
    }

    pub fn server_name(&self) -> &str {
        &self.settings.server_name
    }

    pub fn is_local(&self, replica: &str) -> bool {
        replica.eq_ignore_ascii_case(&self.settings.server_name)
    }

    /// Persists `group` (or its absence); a failure is logged, as SQL Server logs a metadata
    /// write error, and the state in memory stays.
    pub fn save_group(&self, group: Option<&Group>) {
        let result = match group {
            Some(group) => group.save(&self.settings.data_dir),
            None => Group::remove(&self.settings.data_dir),
        };
        if let Err(e) = result {
            log(
                "HADR",
                &format!("Cannot persist the availability group: {e}"),
            );
        }
    }

    pub fn save_master(&self, master: &Master) -> io::Result<()> {
        master.save(&self.settings.data_dir)
    }

    /// The configuration, when this replica is the primary.
    pub fn primary_config(&self) -> Option<GroupConfig> {
        lock(&self.group)
            .as_ref()
            .filter(|g| g.role == Role::Primary)
            .map(|g| g.config.clone())
    }

    /// One more configuration change on the primary (a secondary joined or left the commit
    /// set), persisted and sent to the secondaries at once.
    pub fn bump_sequence(&self, why: &str) {
        let mut group = lock(&self.group);
        if let Some(g) = group.as_mut().filter(|g| g.role == Role::Primary) {
            g.bump();
            log(
                "HADR",
                &format!(
                    "Availability group '{}': sequence number {} ({why}).",
                    g.config.name, g.config.sequence_number
                ),
            );
            self.save_group(Some(g));
            drop(group);
            crate::hadr::replication::send_configuration(self);
        }
    }

    /// Whether the secondary heard from its primary within the session timeout.
    pub fn upstream_connected(&self) -> bool {
        lock(&self.upstream)
            .as_ref()
            .is_some_and(|u| u.last_heard.elapsed() < self.settings.session_timeout)
    }

    pub fn next_connection(&self) -> u64 {
        self.connections.fetch_add(1, Ordering::Relaxed)
    }

    /// Starts listening on the endpoint's port (once).
    pub fn start_endpoint(self: &Arc<Self>, port: u16) {
        let mut running = lock(&self.endpoint_port);
        if running.is_some() {
            return;
        }
        let ip = self.settings.endpoint_ip;
        let listener = match endpoint::listen(ip, port) {
            Ok(listener) => listener,
            Err(e) => {
                log(
                    "HADR",
                    &format!("The database mirroring endpoint cannot listen on {ip}:{port}: {e}"),
                );
                return;
            }
        };
        *running = Some(port);
        log(
            "HADR",
            &format!("The database mirroring endpoint is listening on [ {ip} <ipv4> {port}]."),
        );
        let instance = self.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(tcp) = stream else { continue };
                let instance = instance.clone();
                std::thread::spawn(move || replication::accept(&instance, tcp));
            }
        });
    }
}

//! Synchronous-commit data movement between replicas ("Differences between availability modes
//! for an Always On availability group": on a synchronous-commit secondary the primary waits for
//! the log to be hardened before it acknowledges the commit).
//!
//! The primary dials each secondary's ENDPOINT_URL and keeps retrying about every second; once
//! connected it sends the configuration as a heartbeat every second. A secondary that has joined
//! is seeded with a whole image of each availability database (where SQL Server would resume
//! from the log, or revert and catch up, the double replaces the secondary's copy wholesale) in
//! the background, as "Use automatic seeding to initialize a secondary replica" describes it, then
//! told it is synchronized: from then on it is in the primary's commit set and every commit waits
//! for its acknowledgement. A secondary that does not answer within the session timeout,
//! or whose connection breaks, leaves the commit set ("CREATE AVAILABILITY GROUP (Transact-SQL)",
//! REQUIRED_SYNCHRONIZED_SECONDARIES_TO_COMMIT: the primary marks it not synchronized and goes
//! on); a commit that fewer synchronized secondaries than REQUIRED_SYNCHRONIZED_SECONDARIES_TO_COMMIT
//! acknowledged fails. Every change of the commit set is a configuration change (the sequence
//! number grows), so replicas that kept up show the primary's sequence number and the others do
//! not.

use std::collections::BTreeMap;
use std::io::{self, BufReader};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rustls::ClientConnection;

use super::endpoint::{self, Tls};
use super::group::{Group, GroupConfig, Role};
use super::wire::{self, Reply, Request};
use crate::databases::{Change, Database, Databases, Staged};
use crate::errorlog::log;
use crate::errors::{self, ReadOnlyBecause, SqlError};
use crate::faults;
use crate::instance::{Instance, Upstream, lock};

/// How often the primary sends its configuration, and retries a dial.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// What the primary knows of one secondary.
#[derive(Clone, Debug, Default)]
pub struct PeerState {
    pub connected: bool,
    pub joined: bool,
    /// In the commit set.
    pub synchronized: bool,
    /// The change counts the secondary acknowledged, by database.
    pub lsns: BTreeMap<String, u64>,
    /// The last reason the connection failed, logged once.
    pub last_error: Option<String>,
}

/// The primary's side of one secondary.
pub struct Peer {
    pub name: String,
    address: String,
    stopped: AtomicBool,
    /// The configuration changed since the last heartbeat: send it now, not at the next one.
    changed: AtomicBool,
    link: std::sync::Mutex<Option<BufReader<Tls<ClientConnection>>>>,
    pub state: std::sync::Mutex<PeerState>,
}

impl Peer {
    /// One request and its reply over the link; `Err` when there is no link or it failed.
    fn exchange(&self, request: &Request) -> io::Result<Reply> {
        let mut link = lock(&self.link);
        let stream = link
            .as_mut()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "not connected"))?;
        wire::send(stream.get_mut(), request)?;
        wire::receive(stream)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the secondary closed the connection",
            )
        })
    }

    /// Drops the link; a synchronized secondary leaves the commit set.
    fn disconnect(&self, instance: &Instance, why: &str) {
        *lock(&self.link) = None;
        let was_synchronized = {
            let mut state = lock(&self.state);
            let was = state.synchronized;
            state.connected = false;
            state.joined = false;
            state.synchronized = false;
            if state.last_error.as_deref() != Some(why) {
                state.last_error = Some(why.into());
                log(
                    "HADR",
                    &format!("Replica '{}' is DISCONNECTED: {why}", self.name),
                );
            }
            was
        };
        if was_synchronized {
            instance.bump_sequence(&format!("replica '{}' is NOT SYNCHRONIZING", self.name));
        }
    }

    fn synchronized(&self) -> bool {
        lock(&self.state).synchronized
    }
}

/// Makes the primary's set of peers match its configuration, or empties it when this replica is
/// not the primary. Each peer has a thread that dials and heartbeats it until it is removed.
pub fn sync_peers(instance: &Arc<Instance>) {
    let wanted: Vec<(String, String)> = instance
        .primary_config()
        .map(|config| {
            config
                .replicas
                .iter()
                .filter(|r| !instance.is_local(&r.name))
                .map(|r| (r.name.clone(), r.address()))
                .collect()
        })
        .unwrap_or_default();
    let mut peers = lock(&instance.peers);
    peers.retain(|name, peer| {
        let keep = wanted.iter().any(|(n, _)| n == name);
        if !keep {
            peer.stopped.store(true, Ordering::Relaxed);
        }
        keep
    });
    for (name, address) in wanted {
        if peers.contains_key(&name) {
            continue;
        }
        let peer = Arc::new(Peer {
            name: name.clone(),
            address,
            stopped: AtomicBool::new(false),
            changed: AtomicBool::new(false),
            link: std::sync::Mutex::new(None),
            state: std::sync::Mutex::new(PeerState::default()),
        });
        peers.insert(name, peer.clone());
        let instance = instance.clone();
        std::thread::spawn(move || run_peer(&instance, &peer));
    }
}

/// Every peer out of the commit set, so that the next heartbeat seeds them again (after ADD
/// DATABASE: the new database must reach them before they count).
/// A configuration change (a new sequence number) goes to every secondary at once, as SQL Server
/// commits a configuration to its replicas: a secondary must not lag its primary's number for
/// a heartbeat.
pub fn send_configuration(instance: &Instance) {
    for peer in lock(&instance.peers).values() {
        peer.changed.store(true, Ordering::Relaxed);
    }
}

pub fn reseed_all(instance: &Instance) {
    for peer in lock(&instance.peers).values() {
        lock(&peer.state).synchronized = false;
    }
}

fn run_peer(instance: &Arc<Instance>, peer: &Arc<Peer>) {
    while !peer.stopped.load(Ordering::Relaxed) {
        if let Some(config) = instance.primary_config() {
            heartbeat(instance, peer, config);
        }
        let until = Instant::now() + HEARTBEAT;
        while Instant::now() < until
            && !peer.stopped.load(Ordering::Relaxed)
            && !peer.changed.swap(false, Ordering::Relaxed)
        {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    *lock(&peer.link) = None;
}

/// One round with a secondary: connect if needed, send the configuration, seed it once it has
/// joined.
fn heartbeat(instance: &Instance, peer: &Peer, config: GroupConfig) {
    if lock(&peer.link).is_none() {
        let master = lock(&instance.master).clone();
        match endpoint::dial(&master, &peer.address) {
            Ok(tls) => {
                let _ = tls
                    .sock
                    .set_read_timeout(Some(instance.settings.session_timeout));
                *lock(&peer.link) = Some(BufReader::new(tls));
                let mut state = lock(&peer.state);
                state.connected = true;
                state.last_error = None;
                log(
                    "HADR",
                    &format!("Replica '{}' ({}) is CONNECTED.", peer.name, peer.address),
                );
            }
            Err(why) => {
                peer.disconnect(
                    instance,
                    &format!("cannot connect to {}: {why}", peer.address),
                );
                return;
            }
        }
    }
    match peer.exchange(&Request::Config(config)) {
        Ok(Reply::Status { joined, lsns }) => {
            {
                let mut state = lock(&peer.state);
                state.joined = joined;
                state.lsns = lsns;
            }
            if joined && !peer.synchronized() {
                seed(instance, peer);
            }
        }
        Ok(Reply::Stale { sequence_number }) => peer.disconnect(
            instance,
            &format!("it has a later configuration (sequence number {sequence_number})"),
        ),
        Ok(Reply::Refused(why)) => {
            lock(&peer.state).joined = false;
            let mut state = lock(&peer.state);
            if state.last_error.as_deref() != Some(&why) {
                log(
                    "HADR",
                    &format!("Replica '{}' refused the configuration: {why}", peer.name),
                );
                state.last_error = Some(why);
            }
        }
        Ok(other) => peer.disconnect(instance, &format!("unexpected reply {other:?}")),
        Err(e) => peer.disconnect(instance, &e.to_string()),
    }
}

/// How many times [`seed`] sends a secondary its images before the attempt that holds `data`
/// throughout.
const SEED_ATTEMPTS: usize = 5;

/// Sends a joined secondary every availability database, then puts it in the commit set. The
/// images are taken under `data` but sent without it, so the state queries and commits go on
/// meanwhile (SQL Server's automatic seeding runs in the background); `data` is taken again to
/// check that no commit came since, and held while the secondary is told it is synchronized and
/// joins the commit set, so no commit falls between the seed and the commit set. When commits
/// came, it starts again with fresh images; the last attempt holds `data` throughout, so that a
/// primary under constant writes still gets its secondary synchronized.
fn seed(instance: &Instance, peer: &Peer) {
    for attempt in 1..=SEED_ATTEMPTS {
        let data = lock(&instance.data);
        let Some(config) = instance.primary_config() else {
            return;
        };
        let images: Vec<Database> = config
            .databases
            .iter()
            .filter_map(|name| data.get(name).cloned())
            .collect();
        let taken = lsns(&data, &config.databases);
        let held = if attempt == SEED_ATTEMPTS {
            Some(data)
        } else {
            drop(data);
            None
        };
        if !send_images(instance, peer, images) {
            return;
        }
        let data = held.unwrap_or_else(|| lock(&instance.data));
        let Some(now) = instance.primary_config() else {
            return;
        };
        // ADD DATABASE changes the list, a commit a change count.
        if now.databases != config.databases || lsns(&data, &now.databases) != taken {
            log(
                "HADR",
                &format!(
                    "Replica '{}': the availability databases changed while it was seeded; \
                     seeding it again (attempt {} of {SEED_ATTEMPTS}).",
                    peer.name,
                    attempt + 1
                ),
            );
            continue;
        }
        match peer.exchange(&Request::Synchronized(now.databases.clone())) {
            Ok(Reply::Ack) => {
                let mut state = lock(&peer.state);
                state.synchronized = true;
                state.last_error = None;
                state.lsns = taken;
            }
            Ok(other) => return peer.disconnect(instance, &format!("unexpected reply {other:?}")),
            Err(e) => return peer.disconnect(instance, &e.to_string()),
        }
        drop(data);
        log("HADR", &format!("Replica '{}' is SYNCHRONIZED.", peer.name));
        instance.bump_sequence(&format!("replica '{}' is SYNCHRONIZED", peer.name));
        return;
    }
}

/// Sends `peer` each image; false when it refused one (recorded) or the link failed (the peer is
/// disconnected).
fn send_images(instance: &Instance, peer: &Peer, images: Vec<Database>) -> bool {
    for image in images {
        let name = image.name.clone();
        match peer.exchange(&Request::Seed(image)) {
            Ok(Reply::Ack) => {}
            Ok(Reply::Refused(why)) => {
                let mut state = lock(&peer.state);
                if state.last_error.as_deref() != Some(&why) {
                    log(
                        "HADR",
                        &format!("Replica '{}' refused database '{name}': {why}", peer.name),
                    );
                    state.last_error = Some(why);
                }
                return false;
            }
            Ok(other) => {
                peer.disconnect(instance, &format!("unexpected reply {other:?}"));
                return false;
            }
            Err(e) => {
                peer.disconnect(instance, &e.to_string());
                return false;
            }
        }
    }
    true
}

/// The change counts of `databases` present in `data`, by lowercase name.
pub fn lsns(data: &Databases, databases: &[String]) -> BTreeMap<String, u64> {
    databases
        .iter()
        .filter_map(|name| data.get(name).map(|db| (name.to_lowercase(), db.lsn)))
        .collect()
}

/// Applies `change` to `database`: on an availability database only on the primary, while its
/// write lease is valid, hardened here and acknowledged by at least
/// REQUIRED_SYNCHRONIZED_SECONDARIES_TO_COMMIT synchronized secondaries.
pub fn commit(instance: &Instance, database: &str, change: &Change) -> Result<(), SqlError> {
    let mut data = lock(&instance.data);
    let previous = data.require(database)?.clone();
    let required = {
        let group = lock(&instance.group);
        match group.as_ref().filter(|g| g.config.has_database(database)) {
            None => None,
            Some(g) => {
                match g.role {
                    Role::Primary => {}
                    Role::Secondary => {
                        return Err(errors::read_only(database, ReadOnlyBecause::Secondary));
                    }
                    Role::Resolving => {
                        return Err(errors::read_only(database, ReadOnlyBecause::NotOnline));
                    }
                }
                if !g.lease_valid() {
                    return Err(errors::read_only(database, ReadOnlyBecause::LeaseExpired));
                }
                Some(g.config.required_synchronized_secondaries_to_commit)
            }
        }
    };
    let mut next = previous.clone();
    next.apply(change)?;
    let store = |data: &mut Databases, db: Database| {
        data.store(db)
            .map_err(|e| errors::not_emulated(&format!("the database file cannot be written: {e}")))
    };
    let Some(required) = required else {
        return store(&mut data, next);
    };
    let synchronized: Vec<Arc<Peer>> = lock(&instance.peers)
        .values()
        .filter(|p| p.synchronized())
        .cloned()
        .collect();
    let too_few = |have: usize| {
        errors::read_only(
            database,
            ReadOnlyBecause::TooFewSynchronized { have, required },
        )
    };
    if synchronized.len() < required as usize {
        return Err(too_few(synchronized.len()));
    }
    store(&mut data, next.clone())?;
    let request = Request::Log {
        database: database.into(),
        lsn: next.lsn,
        change: change.clone(),
    };
    let mut acknowledged = Vec::new();
    for peer in synchronized {
        match peer.exchange(&request) {
            Ok(Reply::Ack) => {
                lock(&peer.state)
                    .lsns
                    .insert(database.to_lowercase(), next.lsn);
                acknowledged.push(peer);
            }
            Ok(other) => peer.disconnect(instance, &format!("it answered {other:?} to a commit")),
            Err(e) => peer.disconnect(instance, &format!("no acknowledgement of a commit: {e}")),
        }
    }
    if acknowledged.len() < required as usize {
        // Not acknowledged: taken back here, and the secondaries that have it are seeded again.
        store(&mut data, previous)?;
        for peer in &acknowledged {
            peer.disconnect(
                instance,
                "a commit it acknowledged failed; it is seeded again",
            );
        }
        return Err(too_few(acknowledged.len()));
    }
    Ok(())
}

/// A connection to this replica's endpoint: the TLS handshake against master's trusted
/// certificates, then requests until the peer leaves.
pub fn accept(instance: &Arc<Instance>, tcp: TcpStream) {
    let peer = tcp
        .peer_addr()
        .map_or_else(|_| "?".into(), |a| a.to_string());
    let master = lock(&instance.master).clone();
    let tls = match endpoint::accept(&master, tcp) {
        Ok(tls) => tls,
        Err(why) => {
            log(
                "HADR",
                &format!("The database mirroring endpoint refused a connection from {peer}: {why}"),
            );
            return;
        }
    };
    let _ = tls
        .sock
        .set_read_timeout(Some(instance.settings.session_timeout));
    let connection = instance.next_connection();
    let mut stream = BufReader::new(tls);
    while let Ok(Some(request)) = wire::receive::<Request>(&mut stream) {
        let reply = answer(instance, connection, request);
        if wire::send(stream.get_mut(), &reply).is_err() {
            break;
        }
    }
    let mut upstream = lock(&instance.upstream);
    if upstream
        .as_ref()
        .is_some_and(|u| u.connection == connection)
    {
        *upstream = None;
    }
}

fn answer(instance: &Arc<Instance>, connection: u64, request: Request) -> Reply {
    match request {
        Request::Config(config) => on_config(instance, connection, config),
        Request::Demote {
            group,
            primary,
            lsns,
        } => on_demote(instance, &group, &primary, &lsns),
        request => {
            let mut upstream = lock(&instance.upstream);
            match upstream.as_mut().filter(|u| u.connection == connection) {
                Some(u) => u.last_heard = Instant::now(),
                None => return Reply::Refused("this connection is not from the primary".into()),
            }
            drop(upstream);
            match request {
                Request::Seed(image) => on_seed(instance, image),
                Request::Synchronized(databases) => on_synchronized(instance, &databases),
                Request::Log {
                    database,
                    lsn,
                    change,
                } => on_log(instance, &database, lsn, &change),
                Request::Config(_) | Request::Demote { .. } => unreachable!("answered above"),
            }
        }
    }
}

/// A primary's configuration: kept as an offer before JOIN, adopted when it is later than this
/// replica's (a primary that sees a later configuration steps down), or when this replica is a
/// secondary without a primary.
fn on_config(instance: &Arc<Instance>, connection: u64, config: GroupConfig) -> Reply {
    let data = lock(&instance.data);
    let mut group = lock(&instance.group);
    let Some(g) = group.as_mut() else {
        if config.replica(instance.server_name()).is_some() {
            lock(&instance.offers).insert(config.name.to_lowercase(), config);
        }
        return Reply::Status {
            joined: false,
            lsns: BTreeMap::new(),
        };
    };
    if !g.name_is(&config.name) {
        return Reply::Refused(format!(
            "this instance holds availability group '{}'",
            g.config.name
        ));
    }
    if config.replica(instance.server_name()).is_none() {
        return Reply::Status {
            joined: false,
            lsns: BTreeMap::new(),
        };
    }
    if g.awaiting_manager {
        return Reply::Refused(
            "this replica is RESOLVING until its cluster manager acts (SET (ROLE = SECONDARY) or \
             FAILOVER)"
                .into(),
        );
    }
    let later = config.sequence_number > g.config.sequence_number;
    let same = config.sequence_number == g.config.sequence_number
        && config.primary.eq_ignore_ascii_case(&g.config.primary)
        && g.role != Role::Primary;
    // A secondary that hears from no primary follows the first one that calls, whatever its
    // number: an old primary told to be a secondary may hold a number the new primary never saw.
    let orphan = g.role != Role::Primary && !instance.upstream_connected();
    if !(later || same || orphan) {
        return Reply::Stale {
            sequence_number: g.config.sequence_number,
        };
    }
    let stepped_down = g.role == Role::Primary;
    let from = config.primary.clone();
    // Under another primary, this replica is failover-ready only once that primary has
    // synchronized it.
    if stepped_down || !from.eq_ignore_ascii_case(&g.config.primary) {
        g.ready.clear();
    }
    g.config = config;
    g.role = Role::Secondary;
    instance.save_group(Some(g));
    let reply = Reply::Status {
        joined: true,
        lsns: lsns(&data, &g.config.databases),
    };
    drop(group);
    drop(data);
    *lock(&instance.upstream) = Some(Upstream {
        connection,
        primary: from.clone(),
        last_heard: Instant::now(),
    });
    if stepped_down {
        log(
            "HADR",
            &format!("Replica '{from}' has a later configuration: this replica is now SECONDARY."),
        );
        sync_peers(instance);
    }
    reply
}

/// Why this replica cannot take a seeded database `name` now, if it cannot.
fn seed_refusal(data: &Databases, group: Option<&Group>, name: &str) -> Option<String> {
    let Some(g) = group.filter(|g| g.role == Role::Secondary) else {
        return Some("this replica is not a secondary".into());
    };
    if data.get(name).is_none() && !g.create_any_database {
        return Some(
            "the availability group has no GRANT CREATE ANY DATABASE on this replica".into(),
        );
    }
    None
}

/// Automatic seeding: the primary's whole database replaces this replica's copy (SQL Server
/// would revert and catch up from the log instead). Creating a database the replica lacks needs
/// GRANT CREATE ANY DATABASE ("Automatic seeding for secondary replicas"). The image is written
/// to a temporary file without holding `data` (a whole database takes long to write) and only
/// renamed into place under it, so the state queries go on meanwhile.
fn on_seed(instance: &Instance, image: Database) -> Reply {
    // Checked first too, so that a refused image is not written for nothing.
    let refusal = seed_refusal(
        &lock(&instance.data),
        lock(&instance.group).as_ref(),
        &image.name,
    );
    if let Some(why) = refusal {
        return Reply::Refused(why);
    }
    let name = image.name.clone();
    if instance.settings.slow_seed {
        log(
            "HADR",
            &format!(
                "TEST FAULT {}: database '{name}' takes {} ms longer to write.",
                faults::SLOW_SEED,
                faults::SLOW_SEED_DELAY.as_millis()
            ),
        );
        std::thread::sleep(faults::SLOW_SEED_DELAY);
    }
    let staged = Staged::write(&instance.settings.data_dir, image);
    let mut data = lock(&instance.data);
    let mut group = lock(&instance.group);
    // Again: the role may have changed while the image was written.
    if let Some(why) = seed_refusal(&data, group.as_ref(), &name) {
        if let Ok(staged) = staged {
            staged.discard();
        }
        return Reply::Refused(why);
    }
    if let Some(g) = group.as_mut() {
        g.ready.remove(&name.to_lowercase());
        instance.save_group(Some(g));
    }
    match staged.and_then(|staged| data.put(staged)) {
        Ok(()) => {
            log(
                "HADR",
                &format!("Database '{name}' was seeded from the primary."),
            );
            Reply::Ack
        }
        Err(e) => Reply::Refused(format!("cannot write database '{name}': {e}")),
    }
}

fn on_synchronized(instance: &Instance, databases: &[String]) -> Reply {
    let mut group = lock(&instance.group);
    let Some(g) = group.as_mut().filter(|g| g.role == Role::Secondary) else {
        return Reply::Refused("this replica is not a secondary".into());
    };
    g.ready = databases.iter().map(|d| d.to_lowercase()).collect();
    instance.save_group(Some(g));
    Reply::Ack
}

fn on_log(instance: &Instance, database: &str, lsn: u64, change: &Change) -> Reply {
    let mut data = lock(&instance.data);
    let Some(mut db) = data.get(database).cloned() else {
        return Reply::Refused(format!("database '{database}' is not here"));
    };
    if db.lsn + 1 != lsn {
        return Reply::Refused(format!(
            "change {lsn} of '{database}' does not follow change {}",
            db.lsn
        ));
    }
    if let Err(e) = db.apply(change) {
        return Reply::Refused(e.text);
    }
    match data.store(db) {
        Ok(()) => Reply::Ack,
        Err(e) => Reply::Refused(format!("cannot harden '{database}': {e}")),
    }
}

/// A failover target asks this replica, the primary it knew, to step down: only when the target
/// has every change this replica committed. The reply carries this replica's configuration
/// (changes the target may not have received yet included), which the new primary carries on.
fn on_demote(
    instance: &Arc<Instance>,
    name: &str,
    primary: &str,
    target: &BTreeMap<String, u64>,
) -> Reply {
    let data = lock(&instance.data);
    let mut group = lock(&instance.group);
    let Some(g) = group.as_mut().filter(|g| g.name_is(name)) else {
        return Reply::Refused("this instance does not hold that availability group".into());
    };
    for (database, lsn) in lsns(&data, &g.config.databases) {
        let theirs = target.get(&database).copied().unwrap_or(0);
        if theirs < lsn {
            return Reply::Refused(format!(
                "the new primary lacks changes of database '{database}' (it has {theirs}, this \
                 replica {lsn})"
            ));
        }
    }
    g.config.primary = primary.into();
    g.role = Role::Secondary;
    g.awaiting_manager = false;
    g.lease_until = None;
    // Ready again once the new primary has synchronized it (it will commit what this lacks).
    g.ready.clear();
    instance.save_group(Some(g));
    let config = g.config.clone();
    drop(group);
    drop(data);
    log(
        "HADR",
        &format!("Replica '{primary}' is failing over: this replica is now SECONDARY."),
    );
    sync_peers(instance);
    Reply::Demoted(config)
}

/// "ALTER AVAILABILITY GROUP … FAILOVER" on this replica, a secondary (or RESOLVING) one:
/// refused with 41142 unless every availability database is failover-ready here (as persisted:
/// so it succeeds after the primary died), and, when the old primary still answers, unless that
/// primary agrees this replica has every change it committed. The old primary steps down first;
/// then this replica becomes primary with the next sequence number.
pub fn failover(instance: &Arc<Instance>) -> Result<(), SqlError> {
    let (config, target) = {
        let data = lock(&instance.data);
        let group = lock(&instance.group);
        let g = group.as_ref().expect("checked by the caller");
        let ready = g
            .config
            .databases
            .iter()
            .all(|d| g.ready.contains(&d.to_lowercase()) && data.get(d).is_some());
        if !ready {
            return Err(errors::not_synchronized(&g.config.name));
        }
        (g.config.clone(), lsns(&data, &g.config.databases))
    };
    let mut next = config.clone();
    next.sequence_number += 1;
    next.primary = instance.server_name().into();
    if !instance.is_local(&config.primary)
        && let Some(old) = config.replica(&config.primary)
    {
        let master = lock(&instance.master).clone();
        match endpoint::dial(&master, &old.address()) {
            Ok(tls) => {
                let mut stream = BufReader::new(tls);
                let request = Request::Demote {
                    group: config.name.clone(),
                    primary: next.primary.clone(),
                    lsns: target,
                };
                let reply = wire::send(stream.get_mut(), &request)
                    .and_then(|()| wire::receive::<Reply>(&mut stream));
                match reply {
                    Ok(Some(Reply::Demoted(latest))) => {
                        let sequence_number = next.sequence_number.max(latest.sequence_number + 1);
                        next = GroupConfig {
                            sequence_number,
                            primary: next.primary,
                            ..latest
                        };
                    }
                    Ok(Some(Reply::Refused(why))) => {
                        log(
                            "HADR",
                            &format!("Replica '{}' did not step down: {why}", old.name),
                        );
                        return Err(errors::not_synchronized(&config.name));
                    }
                    other => log(
                        "HADR",
                        &format!(
                            "Replica '{}' did not answer the failover: {other:?}",
                            old.name
                        ),
                    ),
                }
            }
            Err(why) => log(
                "HADR",
                &format!(
                    "The old primary '{}' is unreachable ({why}); failing over.",
                    old.name
                ),
            ),
        }
    }
    {
        let _data = lock(&instance.data);
        let mut group = lock(&instance.group);
        let g = group.as_mut().expect("checked by the caller");
        // Take whichever is later: a configuration that arrived meanwhile counts too.
        next.sequence_number = next.sequence_number.max(g.config.sequence_number + 1);
        g.config = next;
        g.role = Role::Primary;
        g.awaiting_manager = false;
        log(
            "HADR",
            &format!(
                "This replica is now the PRIMARY of availability group '{}' (sequence number {}).",
                g.config.name, g.config.sequence_number
            ),
        );
        instance.save_group(Some(g));
    }
    *lock(&instance.upstream) = None;
    sync_peers(instance);
    Ok(())
}

/// The group a replica joins: the configuration a primary offered it.
pub fn take_offer(instance: &Instance, name: &str) -> Option<Group> {
    lock(&instance.offers)
        .remove(&name.to_lowercase())
        .map(Group::joined)
}

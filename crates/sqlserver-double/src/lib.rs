//! A SQL Server test double: a small server that, toward the operator, behaves like SQL Server
//! 2022 on Linux in the few ways the operator depends on, so that the operator's tests (and its
//! end-to-end cluster) can run without the real, multi-gigabyte image.
//!
//! # What it emulates
//!
//! - Start-up as `/opt/mssql/bin/sqlservr` does it: `ACCEPT_EULA=Y` (or `[EULA] accepteula`) and
//!   a non-empty `MSSQL_SA_PASSWORD` are required; `/var/opt/mssql/mssql.conf` is read once
//!   ([`conf`]): `[network] forceencryption`, `forcestrict`, `tlscert`, `tlskey`,
//!   `tlsprotocols`, `tcpport`. A configured certificate and key are checked (readable, PEM, the
//!   key matching the certificate) and start-up stops with exit code 1 naming the file otherwise;
//!   with none configured, a self-signed `CN=SSL_Self_Signed_Fallback` certificate is generated.
//!   Start-up prints errorlog-like lines on stdout ([`errorlog`]), among them the certificate's
//!   `Cert Hash(sha1)` thumbprint, its serial number and "SQL Server is now ready for client
//!   connections". SIGTERM ends it with exit code 0 ([`shutdown`]).
//! - Data that survives restarts: `<data dir>/double.mdf` holds an id, a creation time and a
//!   start counter ([`datafile`]); master, the user databases and the availability group have
//!   their own files beside it.
//! - TDS ([`session`]): PRELOGIN with SQL Server's encryption negotiation (login-only encryption,
//!   full encryption, none, refusal under `forceencryption`), the TLS handshake inside PRELOGIN
//!   packets, TDS 8.0 strict (TLS first, ALPN `tds/8.0`; only that under `forcestrict`), LOGIN7
//!   ([`login7`]) with SQL Server's login errors (18456) and ApplicationIntent=ReadOnly, SQL
//!   batches of one or more statements ([`batch`], [`tsql`], [`exec`]) answered with result sets
//!   of nvarchar, varbinary, int, bigint, bit, numeric and sql_variant columns ([`tokens`]);
//!   ATTENTION is acknowledged.
//! - What an availability-group coordinator relies on (docs/coordinator.md), with the statements'
//!   grammar restricted to the clauses it sends. Each follows its learn.microsoft.com page, named
//!   where it is emulated; every error number is SQL Server's ([`errors`] names the "Database
//!   engine events and errors" page of each):
//!   - `SELECT @@SERVERNAME, SERVERPROPERTY('IsHadrEnabled')` ("@@SERVERNAME", "SERVERPROPERTY"):
//!     the host name and 1 when `MSSQL_ENABLE_HADR=1`. With HADR off every availability-group
//!     statement gets 35221.
//!   - In master ([`master`], persisted): CREATE MASTER KEY (15578), CREATE LOGIN … WITH PASSWORD
//!     (15025), CREATE USER … FOR LOGIN (15023, 15007), CREATE CERTIFICATE … FROM FILE … WITH
//!     FORMAT = 'PFX', PRIVATE KEY (DECRYPTION BY PASSWORD = …) (15232 for the name or the same
//!     certificate, 15581 without a master key, 15208 for a file that cannot be read, 15297 for
//!     one that does not open with the password), CREATE ENDPOINT … AS TCP (LISTENER_PORT,
//!     LISTENER_IP = ALL) FOR DATABASE_MIRRORING (certificate authentication; 7862, 33101),
//!     ALTER ENDPOINT … FOR DATABASE_MIRRORING (AUTHENTICATION = CERTIFICATE …) (15151, 33101),
//!     DROP CERTIFICATE (15151, and 3716 for the one the endpoint authenticates with), GRANT
//!     CONNECT ON ENDPOINT:: (15151).
//!   - The database mirroring endpoint ([`hadr::endpoint`]): mutual TLS 1.2/1.3 with AES suites on
//!     the TDS listener's address at LISTENER_PORT; a peer is accepted only if its certificate is
//!     one of master's whose owner user's login has CONNECT (both directions); a refusal is
//!     logged and the peer shows DISCONNECTED. Master is read at each handshake, so a
//!     certificate created, presented or dropped counts from the next connection; connections
//!     made already stay up, as SQL Server checks certificates only when a connection is made.
//!     What runs over it is the double's own protocol ([`hadr::wire`]).
//!   - Availability groups with CLUSTER_TYPE = EXTERNAL ([`hadr`], [`hadr::group`], persisted):
//!     CREATE AVAILABILITY GROUP (35237, 47102), ALTER AVAILABILITY GROUP … GRANT CREATE ANY
//!     DATABASE, ADD REPLICA (35282), REMOVE REPLICA (35283, 35284), MODIFY REPLICA …
//!     SECONDARY_ROLE, JOIN WITH (CLUSTER_TYPE = EXTERNAL) (41106, 47106), SET
//!     (WRITE_LEASE_VALIDITY = n) (47116, 47119), SET (REQUIRED_SYNCHRONIZED_SECONDARIES_TO_COMMIT
//!     = n), SET (ROLE = SECONDARY), OFFLINE, ADD DATABASE
//!     (35238, 35280), FAILOVER after `sp_set_session_context @key = N'external_cluster'` (47104
//!     without it, 41122 on the primary, 41142 unless every availability database is
//!     failover-ready as last persisted), DROP AVAILABILITY GROUP (41100); primary-only
//!     statements elsewhere get 41140. `sequence_number` grows at every configuration change,
//!     failover and change of the primary's set of synchronized secondaries, and reaches the
//!     secondaries with the primary's heartbeat. A restarted replica comes back RESOLVING.
//!   - Databases ([`databases`]): CREATE DATABASE (1801), ALTER DATABASE … SET RECOVERY, BACKUP
//!     DATABASE … TO DISK (recorded, nothing written), ALTER DATABASE … SET HADR RESUME (35242),
//!     and one table per statement of `(id BIGINT NOT NULL PRIMARY KEY)`: CREATE TABLE (2714),
//!     INSERT (2627), `SELECT id … ORDER BY id`, `SELECT COUNT_BIG(*)` (208, 207, 911).
//!   - Synchronous commit ([`hadr::replication`]): a write to an availability database is
//!     acknowledged once hardened on the primary and acknowledged by at least
//!     REQUIRED_SYNCHRONIZED_SECONDARIES_TO_COMMIT synchronized secondaries, each after writing
//!     it; a secondary silent for the session timeout leaves the commit set; a write on a
//!     secondary gets 3906; reads on a secondary follow SECONDARY_ROLE (976, 978, and 983 while
//!     RESOLVING); an expired write lease refuses writes (3906) and keeps the role.
//!   - The three state queries of docs/coordinator.md and the endpoint's certificates
//!     ([`tsql::ENDPOINT_CERTIFICATES_QUERY`]), by their exact text ([`hadr::state`]).
//! - A `sqlcmd` ([`sqlcmd`], on tiberius) with the options of Microsoft's sqlcmd that the
//!   operator's readiness probe uses.
//!
//! # What it does not
//!
//! - No query engine: statements other than those above get error 50000 (102 when a known one
//!   does not parse); no RPC (so no parameterised queries), no transactions, no bulk load, no
//!   MARS.
//! - Only SQL authentication, only for `sa` against `MSSQL_SA_PASSWORD`: logins created with
//!   CREATE LOGIN cannot log in; no Windows/Kerberos/Entra authentication, no password policy, no
//!   password changes.
//! - Only TLS 1.2 and 1.3 (rustls): `tlsprotocols` entries 1.0 and 1.1 are never served. When
//!   1.3 is allowed it is served to TDS 7.x (TLS inside PRELOGIN) clients too, where SQL Server
//!   2022 documents TLS 1.3 for TDS 8.0 strict connections.
//! - No client certificates on TDS, no TLS session resumption tickets, a fixed 4096-byte packet
//!   size.
//! - Availability groups: no transaction log (a database is its latest image; `last_hardened_lsn`
//!   counts its changes), so a secondary that rejoins is reseeded wholesale instead of being
//!   reverted and caught up (no REVERTING or INITIALIZING states), data movement is never
//!   suspended, no asynchronous commit, no CLUSTER_TYPE WSFC or NONE, no
//!   FORCE_FAILOVER_ALLOW_DATA_LOSS (50000), no distributed or contained groups, no listener, no
//!   read-only routing, one group per instance, no SESSION_TIMEOUT option (10 s, or the test-only
//!   variable), SQL Server's own endpoint protocol is not spoken. Where SQL Server documents no
//!   error, [`errors`] says which documented one the double borrows.
//! - No database mirroring, no SQL Server Browser or named instances, no Dedicated Admin
//!   Connection, no real database files or recovery.
//! - The errorlog lines only resemble SQL Server's; nothing is written to `/var/opt/mssql/log`.
//!
//! One thing exists for tests only and has no counterpart in SQL Server: the fault knobs of
//! [`faults`] (`<data dir>/double-faults`). [`openssl`] is a helper for tests, not part of the
//! server: a TLS 1.0/1.1 client (`openssl s_client`) to show a server refuses those versions.
//!
//! Test-only environment variables: `MSSQL_CONF` (the mssql.conf path), `MSSQL_DATA_DIR` (the
//! data directory), `MSSQL_TCP_LISTEN` (the listen address, e.g. `127.0.0.5:1433`; the endpoint
//! listens on its IP), `MSSQL_SERVER_NAME` (@@SERVERNAME instead of the host name),
//! `MSSQL_HADR_SESSION_TIMEOUT` (the replicas' session timeout in seconds instead of 10) and
//! `MSSQL_STARTUP_DELAY` (the seconds start-up takes before a login is accepted, instead of
//! SQL Server's typical 15: [`startup::DEFAULT_STARTUP_DELAY`]).

pub mod batch;
pub mod certificate;
pub mod conf;
pub mod databases;
pub mod datafile;
pub mod errorlog;
pub mod errors;
pub mod exec;
pub mod faults;
pub mod hadr;
pub mod instance;
pub mod login7;
pub mod master;
pub mod openssl;
pub mod session;
pub mod shutdown;
pub mod sqlcmd;
pub mod startup;
pub mod tokens;
pub mod tsql;

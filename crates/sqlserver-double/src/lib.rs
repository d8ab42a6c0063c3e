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
//!   start counter ([`datafile`]).
//! - TDS ([`session`]): PRELOGIN with SQL Server's encryption negotiation (login-only encryption,
//!   full encryption, none, refusal under `forceencryption`), the TLS handshake inside PRELOGIN
//!   packets, TDS 8.0 strict (TLS first, ALPN `tds/8.0`; only that under `forcestrict`), LOGIN7
//!   ([`login7`]) with SQL Server's login errors (18456), and SQL batches `SELECT 1` and
//!   `SELECT @@VERSION` ([`batch`], [`tokens`]); ATTENTION is acknowledged.
//! - A `sqlcmd` ([`sqlcmd`], on tiberius) with the options of Microsoft's sqlcmd that the
//!   operator's readiness probe uses.
//!
//! # What it does not
//!
//! - No query engine: every statement other than `SELECT 1` and `SELECT @@VERSION` gets error
//!   50000; no RPC (so no parameterised queries), no transactions, no bulk load, no MARS.
//! - Only SQL authentication, only for `sa` against `MSSQL_SA_PASSWORD`: no other logins, no
//!   Windows/Kerberos/Entra authentication, no password policy, no password changes.
//! - Only TLS 1.2 and 1.3 (rustls): `tlsprotocols` entries 1.0 and 1.1 are never served. When
//!   1.3 is allowed it is served to TDS 7.x (TLS inside PRELOGIN) clients too, where SQL Server
//!   2022 documents TLS 1.3 for TDS 8.0 strict connections.
//! - No client certificates, no TLS session resumption tickets, a fixed 4096-byte packet size.
//! - No availability groups or HADR endpoints, no database mirroring, no SQL Server Browser or
//!   named instances, no Dedicated Admin Connection, no real database files or recovery.
//! - The errorlog lines only resemble SQL Server's; nothing is written to `/var/opt/mssql/log`.
//!
//! One thing exists for tests only and has no counterpart in SQL Server: the fault knobs of
//! [`faults`] (`<data dir>/double-faults`). [`openssl`] is a helper for tests, not part of the
//! server: a TLS 1.0/1.1 client (`openssl s_client`) to show a server refuses those versions.
//!
//! Test-only environment variables: `MSSQL_CONF` (the mssql.conf path), `MSSQL_DATA_DIR` (the
//! data directory) and `MSSQL_TCP_LISTEN` (the listen address, e.g. `127.0.0.1:0`).

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

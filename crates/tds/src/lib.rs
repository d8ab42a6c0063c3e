//! The slice of MS-TDS ([MS-TDS] sections 2.2.3 and 2.2.6.5) that the operator's served-certificate
//! probe and the SQL Server test double both speak: packet framing, the PRELOGIN message, and the
//! TLS handshake, which TDS 7.x carries inside PRELOGIN packets and TDS 8.0 ("strict") runs first,
//! on the bare TCP stream. Blocking I/O on purpose: one short exchange per probe, and the double
//! serves one thread per connection.

pub mod packet;
pub mod prelogin;
pub mod probe;
pub mod tls;

/// The TLS application protocol name of TDS 8.0 (strict encryption).
pub const TDS8_ALPN: &[u8] = b"tds/8.0";

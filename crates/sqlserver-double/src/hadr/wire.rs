//! The double's own protocol between two endpoints (SQL Server's is not public). Over the
//! endpoints' mutual TLS, one JSON object per line. The dialling side speaks first and the other
//! answers each message with exactly one reply:
//!
//! | request | from | reply |
//! |---|---|---|
//! | `Config` (the group's configuration) | a primary, about every second | `Status` (joined, each availability database's change count), or `Stale` (the receiver knows a later configuration) |
//! | `Seed` (a whole database) | a primary | `Ack` once written to the receiver's data directory, or `Refused` |
//! | `Synchronized` (the databases now in the primary's commit set) | a primary | `Ack` |
//! | `Log` (one change, with its change number) | a primary, for each commit | `Ack` once hardened, or `Refused` |
//! | `Demote` (the failover target's name and change counts) | a replica failing over | `Demoted` (the receiver's configuration, which the new primary carries on from), or `Refused` |

use std::collections::BTreeMap;
use std::io::{self, BufRead, Write};

use serde::{Deserialize, Serialize};

use super::group::GroupConfig;
use crate::databases::{Change, Database};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    Config(GroupConfig),
    Seed(Database),
    Synchronized(Vec<String>),
    Log {
        database: String,
        lsn: u64,
        change: Change,
    },
    Demote {
        group: String,
        /// The replica failing over.
        primary: String,
        /// The new primary's change counts: the receiver refuses if it has changes they lack.
        lsns: BTreeMap<String, u64>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    Status {
        joined: bool,
        lsns: BTreeMap<String, u64>,
    },
    Ack,
    Stale {
        sequence_number: i64,
    },
    Refused(String),
    Demoted(GroupConfig),
}

/// Writes one message as a line.
pub fn send<T: Serialize>(out: &mut impl Write, message: &T) -> io::Result<()> {
    let mut line = serde_json::to_vec(message).map_err(io::Error::other)?;
    line.push(b'\n');
    out.write_all(&line)?;
    out.flush()
}

/// Reads one message; `None` when the peer closed the connection.
pub fn receive<T: for<'de> Deserialize<'de>>(input: &mut impl BufRead) -> io::Result<Option<T>> {
    let mut line = String::new();
    if input.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    serde_json::from_str(&line)
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_as_lines() {
        let mut wire = Vec::new();
        let request = Request::Log {
            database: "db".into(),
            lsn: 3,
            change: Change::Insert {
                schema: "dbo".into(),
                table: "t".into(),
                key: 7,
            },
        };
        send(&mut wire, &request).unwrap();
        send(&mut wire, &Reply::Ack).unwrap();
        assert_eq!(wire.iter().filter(|b| **b == b'\n').count(), 2);
        let mut input = io::Cursor::new(wire);
        assert_eq!(receive::<Request>(&mut input).unwrap(), Some(request));
        assert_eq!(receive::<Reply>(&mut input).unwrap(), Some(Reply::Ack));
        assert_eq!(receive::<Reply>(&mut input).unwrap(), None);
    }
}

//! The endpoint certificate's rotation with a trust overlap (docs/coordinator.md, "The endpoint
//! certificate"). SQL Server trusts a peer's endpoint certificate only if it holds that very
//! certificate in master, so a new one goes through three phases, each decided here from what
//! this replica's master holds and what the other voters said this tick:
//!
//! - **trust**: every replica creates the new certificate (with its key: all replicas share one)
//!   beside the old one, as soon as it sees it;
//! - **present**: a replica whose server has just started switches its endpoint to it once every
//!   replica trusts it (the ops-manager restarts replicas one at a time, secondaries first);
//! - **retire**: once every voter presents it, each replica drops the others.

use std::collections::BTreeSet;

use mssql_api::pods::EndpointCertificates;

use crate::tsql;

/// What a voter says of its endpoint certificates with its vote: those its master holds, and the
/// one it presents (its endpoint's, or the arbiter's peer certificate).
pub type EndpointVote = EndpointCertificates;

/// An endpoint certificate in master: its serial (from its name) and DER.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    pub serial: String,
    pub der: Vec<u8>,
}

/// What this replica's master holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Master {
    pub certificates: Vec<Held>,
    /// The serial its endpoint authenticates with.
    pub presented: Option<String>,
}

impl Master {
    pub fn serials(&self) -> Vec<String> {
        self.certificates.iter().map(|c| c.serial.clone()).collect()
    }

    /// What a replica says of it (its vote, its report).
    pub fn said(&self) -> EndpointVote {
        EndpointVote {
            trusts: self.serials(),
            presents: self.presented.clone(),
        }
    }

    fn holds(&self, serial: &str) -> bool {
        self.certificates.iter().any(|c| c.serial == serial)
    }

    /// Its rows of the endpoint-certificates query (name, DER, endpoint name): the endpoint
    /// certificates among master's certificates.
    pub fn from_rows(rows: impl IntoIterator<Item = (String, Vec<u8>, bool)>) -> Self {
        let mut master = Self::default();
        for (name, der, presented) in rows {
            let Some(serial) = tsql::certificate_serial(&name) else {
                continue;
            };
            if presented {
                master.presented = Some(serial.to_owned());
            }
            master.certificates.push(Held {
                serial: serial.to_owned(),
                der,
            });
        }
        master
    }
}

/// The moves of one tick.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Create the wanted certificate in master.
    pub trust: bool,
    /// Switch the endpoint to the wanted certificate.
    pub present: bool,
    /// Drop these serials' certificates.
    pub retire: Vec<String>,
}

/// What this replica does with its endpoint certificates this tick. `wanted`: the serial of the
/// certificate its Secret holds now; `fresh`: its server started since the endpoint was last
/// looked at with every voter answering; `others`: the other voters' answers (the arbiter's
/// among them, which trusts nothing SQL Server holds); `voters`: how many the group has.
pub fn plan(
    master: &Master,
    wanted: &str,
    fresh: bool,
    others: &[(bool, EndpointVote)],
    voters: usize,
) -> Plan {
    let mut plan = Plan {
        trust: !master.holds(wanted),
        ..Plan::default()
    };
    // Every voter but this one answered: nothing is decided on a partial view.
    if others.len() + 1 < voters {
        return plan;
    }
    let replicas = || {
        others
            .iter()
            .filter(|(arbiter, _)| !arbiter)
            .map(|(_, v)| v)
    };
    let presented_here = master.presented.as_deref() == Some(wanted);
    plan.present =
        fresh && !presented_here && master.holds(wanted) && replicas().all(|v| v.trusts(wanted));
    let everyone_presents = presented_here && others.iter().all(|(_, v)| v.presents(wanted));
    if everyone_presents {
        plan.retire = master
            .certificates
            .iter()
            .map(|c| c.serial.clone())
            .filter(|s| s != wanted)
            .collect();
    }
    plan
}

/// The peer certificates this coordinator accepts: those master holds, and those it presents or
/// was given (its own Secret's, now and at its start).
pub fn pins(master: &Master, own: &[&[u8]]) -> BTreeSet<Vec<u8>> {
    master
        .certificates
        .iter()
        .map(|c| c.der.clone())
        .chain(own.iter().map(|der| der.to_vec()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn master(serials: &[&str], presented: &str) -> Master {
        Master {
            certificates: serials
                .iter()
                .map(|s| Held {
                    serial: (*s).to_owned(),
                    der: s.as_bytes().to_vec(),
                })
                .collect(),
            presented: Some(presented.to_owned()),
        }
    }

    fn replica(trusts: &[&str], presents: &str) -> (bool, EndpointVote) {
        (
            false,
            EndpointVote {
                trusts: trusts.iter().map(|s| (*s).to_owned()).collect(),
                presents: Some(presents.to_owned()),
            },
        )
    }

    fn arbiter(presents: &str) -> (bool, EndpointVote) {
        (
            true,
            EndpointVote {
                trusts: Vec::new(),
                presents: Some(presents.to_owned()),
            },
        )
    }

    #[test]
    fn a_new_certificate_is_trusted_at_once_and_nothing_else_happens() {
        let plan = plan(
            &master(&["a"], "a"),
            "b",
            false,
            &[replica(&["a"], "a"), replica(&["a"], "a")],
            3,
        );
        assert_eq!(
            plan,
            Plan {
                trust: true,
                ..Plan::default()
            }
        );
    }

    #[test]
    fn a_started_replica_presents_it_only_once_every_replica_trusts_it() {
        let here = master(&["a", "b"], "a");
        let not_everyone = [replica(&["a", "b"], "a"), replica(&["a"], "a")];
        assert!(!plan(&here, "b", true, &not_everyone, 3).present);
        let everyone = [replica(&["a", "b"], "a"), replica(&["b", "a"], "a")];
        assert!(plan(&here, "b", true, &everyone, 3).present);
        assert!(
            !plan(&here, "b", false, &everyone, 3).present,
            "only a server that has just started switches: the requests restart one at a time"
        );
        assert!(
            !plan(&here, "b", true, &everyone[..1], 3).present,
            "a voter did not answer"
        );
        let with_arbiter = [everyone[0].clone(), everyone[1].clone(), arbiter("a")];
        assert!(
            plan(&here, "b", true, &with_arbiter, 4).present,
            "the arbiter holds no SQL Server certificates"
        );
    }

    #[test]
    fn the_old_certificate_goes_once_every_voter_presents_the_new_one() {
        let here = master(&["a", "b"], "b");
        let all = [
            replica(&["a", "b"], "b"),
            replica(&["a", "b"], "b"),
            arbiter("b"),
        ];
        assert_eq!(plan(&here, "b", false, &all, 4).retire, ["a"]);
        let one_behind = [
            replica(&["a", "b"], "b"),
            replica(&["a", "b"], "a"),
            arbiter("b"),
        ];
        assert!(plan(&here, "b", false, &one_behind, 4).retire.is_empty());
        let arbiter_behind = [
            replica(&["a", "b"], "b"),
            replica(&["a", "b"], "b"),
            arbiter("a"),
        ];
        assert!(
            plan(&here, "b", false, &arbiter_behind, 4)
                .retire
                .is_empty()
        );
        assert!(
            plan(&master(&["a", "b"], "a"), "b", false, &all, 4)
                .retire
                .is_empty(),
            "not while it presents the old one itself"
        );
        assert!(plan(&here, "b", false, &all[..2], 4).retire.is_empty());
    }

    #[test]
    fn master_rows_are_read_by_their_certificate_names() {
        let master = Master::from_rows([
            ("dbm_cert_0a".to_owned(), vec![1], false),
            (
                "##MS_SQLResourceSigningCertificate##".to_owned(),
                vec![2],
                false,
            ),
            ("dbm_cert_0b".to_owned(), vec![3], true),
        ]);
        assert_eq!(master.serials(), ["0a", "0b"]);
        assert_eq!(master.presented.as_deref(), Some("0b"));
        assert_eq!(
            pins(&master, &[&[4][..]]),
            [vec![1], vec![3], vec![4]].into_iter().collect()
        );
    }
}

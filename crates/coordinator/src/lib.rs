//! The availability-group coordinator (docs/coordinator.md): in every pod of a group it decides
//! who is primary, fences the old one, forms the group and labels the pods.
//!
//! Pure parts, unit-tested without a cluster: [`timing`] (the two leases kept apart), [`decide`]
//! (the next move), [`labels`] (the relabelling order), [`tsql`] (the statements it sends),
//! [`pfx`] (the endpoint certificate as SQL Server reads it), [`endpoint`] (its rotation). What talks to the world: [`sql`]
//! (the local server), [`lease`] (the Lease), [`membership`] (who the voters are), [`peers`] (the other coordinators), [`events`]
//! (what it tells people), [`report`] (its replica's state, on its pod), and [`run`],
//! the loop that ties them together.

pub mod decide;
pub mod endpoint;
pub mod events;
pub mod labels;
pub mod lease;
pub mod membership;
pub mod peers;
pub mod pfx;
pub mod report;
pub mod run;
pub mod sql;
pub mod timing;
pub mod tsql;

/// An API call other than the Lease's that takes longer is given up: the loop has a lease to
/// renew.
pub const API_DEADLINE: std::time::Duration = std::time::Duration::from_secs(1);

//! The availability-group coordinator (docs/coordinator.md): in every pod of a group it decides
//! who is primary, fences the old one, forms the group and labels the pods.
//!
//! Pure parts, unit-tested without a cluster: [`timing`] (the two leases kept apart), [`decide`]
//! (the next move), [`labels`] (the relabelling order), [`tsql`] (the statements it sends).

pub mod decide;
pub mod labels;
pub mod timing;
pub mod tsql;

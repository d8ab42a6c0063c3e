//! The operator's library: the offline `check` and YAML output today; the provisioner and the
//! ops-manager join it. `main.rs` is only the command line.

pub mod build;
pub mod check;
pub mod client;
pub mod ops;
pub mod preflight;
pub mod provisioner;
pub mod yaml;

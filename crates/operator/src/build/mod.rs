//! Pure builders: the objects a validated database needs, as functions of it. No client here;
//! every builder is unit-tested on plain values.

pub mod certificates;
pub mod config;
pub mod coordinator;
pub mod pod;
pub mod resources;
pub mod secrets;
pub mod services;
pub mod start;
pub mod workload;

#[cfg(test)]
pub(crate) mod tests;

//! The ops-manager: runs `MSSQLServerOpsRequest`s (ReconfigureTLS and Restart), one step per
//! reconcile, as decided by the pure `machine`.

pub mod machine;

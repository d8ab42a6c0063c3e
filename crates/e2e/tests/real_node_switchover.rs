//! Real containers: a three-replica availability group whose doubles take SQL Server's time to
//! start (`MSSQL_STARTUP_DELAY` at its default), a writer through the primary Service during
//! every kind of change that restarts pods. Each request restarts the secondaries first, hands
//! the primary role to a synchronized one that runs the new material, then restarts the old
//! primary as a secondary: no acknowledged write is lost, never two primaries, no write gap
//! comes near a server's start-up (the primary is never restarted under its clients), and no
//! replica whose server runs is cut off from its group for as long (a new endpoint certificate is
//! trusted everywhere before any replica presents it). Beside it a standalone server's Restart,
//! with no secondary to hand over to, leaves its clients without a write for a start-up at least.
//! What the writer saw is printed (the figures are measured by `hack/bench-switchover`).

use std::time::Duration;

use mssql_e2e::client_gap::{Change, Standalone, during, realistic_group};
use mssql_e2e::real_node::assert_node_ready;
use mssql_sqlserver_double::startup::DEFAULT_STARTUP_DELAY;

#[tokio::test(flavor = "multi_thread")]
async fn every_change_hands_the_primary_role_over_before_the_primary_restarts() {
    assert_node_ready();
    let group = realistic_group("real-ag-switch").await;
    for change in Change::ALL {
        let seen = during(&group, change).await;
        println!("{seen}");
        assert_ne!(
            seen.primaries.0,
            seen.primaries.1,
            "{}: the primary role moved",
            change.name()
        );
        assert!(
            seen.longest_gap < DEFAULT_STARTUP_DELAY - Duration::from_secs(5),
            "{seen}: clients waited as long as a server takes to start"
        );
        assert!(
            seen.replication_break < DEFAULT_STARTUP_DELAY - Duration::from_secs(5),
            "{seen}: a running replica was cut off from its group as long as a restart takes"
        );
    }
    let standalone = Standalone::create(&group.t).await;
    let seen = standalone.restart().await;
    println!("{seen}");
    assert!(
        seen.longest_gap >= DEFAULT_STARTUP_DELAY,
        "{seen}: a standalone's clients wait for its server to start"
    );
    standalone.delete().await;
    group.delete().await;
}

//! The switchover benchmark (`hack/bench-switchover`, docs/benchmarks.md): what a client of a
//! three-replica availability group sees during every kind of change that restarts its pods, on
//! the real node, with doubles that take SQL Server's time to start. A writer commits a row through
//! the primary Service every 100 ms during each change ([`mssql_e2e::client_gap`]), and through a
//! standalone server's Service during its Restart, for comparison. Not a test:
//! it reports numbers, and exits non-zero only when a write was lost, two primaries were seen, or a
//! change did not end as it should.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use mssql_e2e::client_gap::{
    Change, STANDALONE_RESTART, Seen, Standalone, during, realistic_group,
};
use mssql_e2e::real_node::assert_node_ready;
use mssql_sqlserver_double::startup::DEFAULT_STARTUP_DELAY;

struct Options {
    runs: usize,
    out: PathBuf,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        runs: 3,
        out: PathBuf::from("."),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--runs" => {
                options.runs = value()?
                    .parse()
                    .map_err(|_| "--runs takes a number".to_owned())?
            }
            "--out" => options.out = PathBuf::from(value()?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(options)
}

fn seconds(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64())
}

/// Nearest rank.
fn percentile(sorted: &[Duration], p: usize) -> Duration {
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}

fn spread(mut values: Vec<Duration>) -> String {
    values.sort();
    format!(
        "{} / {} / {}",
        seconds(percentile(&values, 50)),
        seconds(percentile(&values, 95)),
        seconds(*values.last().unwrap_or(&Duration::ZERO))
    )
}

fn csv(runs: &[(usize, Seen)]) -> String {
    let mut csv = "round,change,took_s,longest_gap_s,unavailable_s,replication_break_s,failed,acknowledged,old_primary,new_primary\n"
        .to_owned();
    for (round, seen) in runs {
        writeln!(
            csv,
            "{round},{},{},{},{},{},{},{},{},{}",
            seen.change,
            seconds(seen.took),
            seconds(seen.longest_gap),
            seconds(seen.unavailable),
            seconds(seen.replication_break),
            seen.failed,
            seen.acknowledged,
            seen.primaries.0,
            seen.primaries.1
        )
        .unwrap();
    }
    csv
}

fn summary(runs: &[(usize, Seen)]) -> String {
    let mut md = "| change | longest write gap | no write in all | longest replication break | \
                  failed attempts (max) | change took |\n|---|---|---|---|---|---|\n"
        .to_owned();
    let changes = Change::ALL.map(Change::name);
    for change in changes.iter().chain([&STANDALONE_RESTART]) {
        let of: Vec<&Seen> = runs
            .iter()
            .map(|(_, s)| s)
            .filter(|s| s.change == *change)
            .collect();
        if of.is_empty() {
            continue;
        }
        let replication = match *change == STANDALONE_RESTART {
            true => "-".to_owned(),
            false => spread(of.iter().map(|s| s.replication_break).collect()),
        };
        writeln!(
            md,
            "| {change} | {} | {} | {replication} | {} | {} |",
            spread(of.iter().map(|s| s.longest_gap).collect()),
            spread(of.iter().map(|s| s.unavailable).collect()),
            of.iter().map(|s| s.failed).max().unwrap_or(0),
            spread(of.iter().map(|s| s.took).collect()),
        )
        .unwrap();
    }
    writeln!(
        md,
        "\nSeconds, p50 / p95 / max (nearest rank) over {} rounds; doubles start in {} s. Every \
         acknowledged write was on every replica (the standalone's: on its server) after each \
         change; no sample saw two primaries. A replication break: a secondary whose pod was Ready \
         reported disconnected or not synchronized.",
        runs.iter().map(|(r, _)| *r).max().unwrap_or(0),
        DEFAULT_STARTUP_DELAY.as_secs()
    )
    .unwrap();
    md
}

#[tokio::main]
async fn main() {
    let options = options().unwrap_or_else(|e| {
        eprintln!("switchover-bench: {e}\nusage: switchover-bench [--runs N] [--out DIR]");
        std::process::exit(2)
    });
    std::fs::create_dir_all(&options.out).expect("the output directory");
    assert_node_ready();
    let group = realistic_group("bench-switchover").await;
    let standalone = Standalone::create(&group.t).await;
    let mut runs = Vec::new();
    for round in 1..=options.runs {
        let seen = standalone.restart().await;
        eprintln!("[{round}/{}] {seen}", options.runs);
        runs.push((round, seen));
        for change in Change::ALL {
            // TLS is added once.
            if change == Change::AddTls && round > 1 {
                continue;
            }
            let seen = during(&group, change).await;
            eprintln!("[{round}/{}] {seen}", options.runs);
            runs.push((round, seen));
        }
    }
    let md = summary(&runs);
    std::fs::write(options.out.join("runs.csv"), csv(&runs)).expect("runs.csv");
    std::fs::write(options.out.join("summary.md"), &md).expect("summary.md");
    println!("{md}");
    standalone.delete().await;
    group.delete().await;
}

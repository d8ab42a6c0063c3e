//! The failover benchmark (`hack/bench-failover`, docs/benchmarks.md): unplanned failovers of a
//! real availability group on the real node, each kind many times, timed from the fault to the
//! first write the new primary acknowledges through the primary Service, and split into stages
//! read from the coordinators' logs and the API server. Each run's coordinator log lines are
//! kept in `<out>/logs/`, for the outliers. Not a test: it reports numbers, and exits
//! non-zero only when a write was lost, two primaries were seen, or a failover did not happen.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures::{AsyncBufReadExt, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::LogParams;
use mssql_api::labels::ROLE;
use mssql_e2e::group::{DB, FAILOVER, Fault, Group, Written};
use mssql_e2e::real_node::{QUICK_START, assert_node_ready};
use tokio::task::JoinHandle;

/// The stages of one failover, each from the end of the one before.
const STAGES: [&str; 6] = [
    "detection",
    "decision",
    "promotion",
    "label",
    "service",
    "client",
];

struct Options {
    runs: usize,
    faults: Vec<Fault>,
    out: PathBuf,
}

fn fault_named(name: &str) -> Option<Fault> {
    // The whole pod frozen is not among the default kinds: its failover waits out the Lease.
    Fault::ALL
        .into_iter()
        .chain([Fault::PodFrozen])
        .find(|f| kebab(*f) == name)
}

/// `PodDeleted` as `pod-deleted`.
fn kebab(fault: Fault) -> String {
    let mut name = String::new();
    for c in format!("{fault:?}").chars() {
        if c.is_uppercase() && !name.is_empty() {
            name.push('-');
        }
        name.push(c.to_ascii_lowercase());
    }
    name
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        runs: 20,
        faults: Fault::ALL.to_vec(),
        out: PathBuf::from("failover-bench"),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--runs" => {
                let v = value()?;
                options.runs = v.parse().map_err(|_| format!("--runs {v}: not a count"))?;
            }
            "--faults" => {
                options.faults = value()?
                    .split(',')
                    .map(|f| fault_named(f).ok_or(format!("--faults: unknown fault {f}")))
                    .collect::<Result<_, _>>()?;
            }
            "--out" => options.out = PathBuf::from(value()?),
            _ => return Err(format!("unknown argument {arg}")),
        }
    }
    Ok(options)
}

/// Every line the coordinators of the group's pods log, as it comes, across their restarts.
struct Logs {
    lines: Arc<Mutex<Vec<(String, String)>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Logs {
    fn follow(group: &Group) -> Self {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let tasks = group
            .pods()
            .into_iter()
            .map(|pod| {
                let pods = group.t.api::<Pod>();
                let lines = lines.clone();
                tokio::spawn(async move {
                    let params = LogParams {
                        container: Some("mssql-coordinator".into()),
                        follow: true,
                        since_seconds: Some(2),
                        ..LogParams::default()
                    };
                    // A stream ends with its container; the next one (or pod) is followed again.
                    loop {
                        if let Ok(stream) = pods.log_stream(&pod, &params).await {
                            let mut stream = stream.lines();
                            while let Some(Ok(line)) = stream.next().await {
                                lines.lock().unwrap().push((pod.clone(), line));
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                })
            })
            .collect();
        Self { lines, tasks }
    }

    /// Stops following; the lines logged at `since` or later, with their time, in order.
    fn stop(self, since: SystemTime) -> Vec<(SystemTime, String, String)> {
        for task in &self.tasks {
            task.abort();
        }
        let mut lines: Vec<(SystemTime, String, String)> =
            std::mem::take(&mut *self.lines.lock().unwrap())
                .into_iter()
                .filter_map(|(pod, line)| {
                    let stamp: jiff::Timestamp = line.split_whitespace().next()?.parse().ok()?;
                    let at = SystemTime::from(stamp);
                    (at >= since).then_some((at, pod, line))
                })
                .collect();
        lines.sort();
        lines.dedup();
        lines
    }
}

/// One failover: when each stage ended, from the logs and what the driver saw.
struct Failover {
    fault: Fault,
    old: String,
    /// The old primary pod's uid at the fault.
    uid: String,
    new: String,
    /// The end of each stage, as time since the fault; `None` when not seen.
    ends: [Option<Duration>; 6],
    /// Attempts that failed, and the longest time without an acknowledged write, around it.
    failed_writes: u64,
    gap: Duration,
    /// The coordinators' lines from the fault on, as `<seconds after the fault> <pod> <line>`.
    log: String,
}

impl Failover {
    fn total(&self) -> Option<Duration> {
        self.ends[5]
    }

    /// Each stage's own length (the time from the end of the one before it).
    fn stages(&self) -> [Option<Duration>; 6] {
        let mut stages = [None; 6];
        let mut before = Some(Duration::ZERO);
        for (i, end) in self.ends.iter().enumerate() {
            stages[i] = end.zip(before).map(|(end, b)| end.saturating_sub(b));
            before = *end;
        }
        stages
    }
}

/// When, after `fault`, the coordinators' logs show each step of the failover to `new`.
fn from_logs(
    lines: &[(SystemTime, String, String)],
    fault: SystemTime,
    new: &str,
) -> [Option<Duration>; 4] {
    let first = |pred: &dyn Fn(&str, &str) -> bool| {
        lines
            .iter()
            .find(|(_, pod, line)| pred(pod, line))
            .and_then(|(at, _, _)| at.duration_since(fault).ok())
    };
    // Steady, the coordinators log nothing: their first line is what they noticed.
    let detection = first(&|_, _| true);
    // The Lease is given up, handed over or taken, or the promotion decided: who goes next.
    let decision = first(&|_, line| {
        line.contains(" coordinator next=")
            && ["Release", "Acquire", "Promote"]
                .iter()
                .any(|d| line.contains(d))
    });
    let promotion = first(&|pod, line| pod == new && line.contains("promoted this replica"));
    let label = first(&|_, line| {
        line.contains("labelled") && line.contains(new) && line.contains("primary")
    });
    [detection, decision, promotion, label]
}

/// The pod labelled primary now, if it is not `old`.
async fn labelled_primary(group: &Group, old: &str) -> Option<String> {
    let pods = group.t.api::<Pod>();
    for pod in group.pods().into_iter().filter(|p| p != old) {
        let labels = pods.get_metadata(&pod).await.ok()?.metadata.labels?;
        if labels.get(ROLE).map(String::as_str) == Some("primary") {
            return Some(pod);
        }
    }
    None
}

/// Whether the primary Service sends clients to `pod`, and only there.
async fn behind_service(group: &Group, pod: &str) -> bool {
    match (group.ip(pod).await, group.ready_endpoints(DB).await) {
        (Ok(ip), Ok(ready)) => ready == [ip],
        _ => false,
    }
}

/// One fault on the primary, measured until its successor takes a write through the Service.
async fn failover(group: &Group, written: &Arc<Mutex<Written>>, fault: Fault) -> Failover {
    let old = group.primary(None).await;
    let uid = group.uid(&old).await;
    let logs = Logs::follow(group);
    // The followers are attached, and anything logged while the last run settled is older.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (failed_before, acks_before) = {
        let w = written.lock().unwrap();
        (w.failed, w.acknowledged.len())
    };
    let at = SystemTime::now();
    let started = Instant::now();
    fault.inflict(group, &old);
    // The new primary, its address behind the Service, and its first acknowledged write.
    let mut new = None;
    let mut service = None;
    let mut client = None;
    while started.elapsed() < FAILOVER && (client.is_none() || service.is_none()) {
        if new.is_none() {
            new = labelled_primary(group, &old).await;
        }
        if let Some(new) = &new {
            if service.is_none() && behind_service(group, new).await {
                service = Some(started.elapsed());
            }
            let w = written.lock().unwrap();
            client = w.acknowledged[acks_before..]
                .iter()
                .find(|a| &a.server == new)
                .map(|a| a.at - started);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let new = new.unwrap_or_else(|| panic!("{fault:?}: {old} had no successor in {FAILOVER:?}"));
    let client =
        client.unwrap_or_else(|| panic!("{fault:?}: {new} took no write through the Service"));
    let lines = logs.stop(at);
    let [detection, decision, promotion, label] = from_logs(&lines, at, &new);
    let log = lines
        .iter()
        .map(|(t, pod, line)| {
            let after = t.duration_since(at).unwrap_or_default().as_secs_f64();
            format!("{after:7.3} {pod} {line}\n")
        })
        .collect();
    let (failed_writes, gap) = {
        let w = written.lock().unwrap();
        // From the last write before the fault to the first on the new primary.
        let acks = &w.acknowledged[acks_before.saturating_sub(1)..];
        let gap = acks
            .windows(2)
            .take_while(|p| p[0].at - started <= client)
            .map(|p| p[1].at - p[0].at)
            .max()
            .unwrap_or_default();
        (w.failed - failed_before, gap)
    };
    Failover {
        fault,
        old,
        uid,
        new,
        ends: [detection, decision, promotion, label, service, Some(client)],
        failed_writes,
        gap,
        log,
    }
}

/// Puts the old primary back as a healthy secondary holding everything written so far.
async fn recover(group: &Group, written: &Arc<Mutex<Written>>, run: &Failover) {
    let deleted = match run.fault {
        Fault::ServerFrozen => {
            group.signal(&run.old, "mssql", "-CONT");
            false
        }
        Fault::PodFrozen => {
            group.signal(&run.old, "mssql", "-CONT");
            group.signal(&run.old, "mssql-coordinator", "-CONT");
            false
        }
        // A fresh pod: kubelet's restart back-off would grow with every kill of one container.
        Fault::ServerKilled | Fault::CoordinatorKilled => {
            group.delete_pod(&run.old);
            true
        }
        Fault::PodDeleted => true,
    };
    // Not the deleted pod, still stopping and serving what it holds, but its successor.
    let not = deleted.then_some(run.uid.as_str());
    group.ready_pod(&run.old, not).await;
    group.primary(None).await;
    let last = written.lock().unwrap().acknowledged.last().map(|a| a.id);
    for pod in group.pods() {
        group
            .has_rows(&pod, &Vec::from_iter(last), Duration::from_secs(180))
            .await;
    }
}

/// The value at rank ⌈p·n⌉ of the sorted `values` (nearest rank).
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn seconds(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.2}", d.as_secs_f64()))
}

/// p50 / p95 / max of one column, in seconds.
fn spread(values: impl Iterator<Item = Option<Duration>>) -> String {
    let mut values: Vec<Duration> = values.flatten().collect();
    if values.is_empty() {
        return "-".into();
    }
    values.sort();
    format!(
        "{:.1} / {:.1} / {:.1}",
        percentile(&values, 0.5).as_secs_f64(),
        percentile(&values, 0.95).as_secs_f64(),
        values.last().unwrap().as_secs_f64()
    )
}

fn csv(runs: &[Failover]) -> String {
    let mut csv = format!(
        "fault,old,new,{},total,failed_writes,longest_gap\n",
        STAGES.join(",")
    );
    for run in runs {
        let stages: Vec<String> = run.stages().iter().map(|s| seconds(*s)).collect();
        writeln!(
            csv,
            "{},{},{},{},{},{},{:.2}",
            kebab(run.fault),
            run.old,
            run.new,
            stages.join(","),
            seconds(run.total()),
            run.failed_writes,
            run.gap.as_secs_f64()
        )
        .unwrap();
    }
    csv
}

fn summary(runs: &[Failover], written: &Written, lost: usize, violations: usize) -> String {
    let mut by_fault: BTreeMap<String, Vec<&Failover>> = BTreeMap::new();
    for run in runs {
        by_fault.entry(kebab(run.fault)).or_default().push(run);
    }
    let mut md = format!(
        "| fault | runs | total | {} | longest write gap | failed writes |\n|---|---|---|{}---|---|\n",
        STAGES.join(" | "),
        "---|".repeat(STAGES.len())
    );
    for (fault, runs) in &by_fault {
        let stages: Vec<String> = (0..STAGES.len())
            .map(|i| spread(runs.iter().map(|r| r.stages()[i])))
            .collect();
        writeln!(
            md,
            "| {fault} | {} | {} | {} | {} | {} |",
            runs.len(),
            spread(runs.iter().map(|r| r.total())),
            stages.join(" | "),
            spread(runs.iter().map(|r| Some(r.gap))),
            runs.iter().map(|r| r.failed_writes).sum::<u64>()
        )
        .unwrap();
    }
    writeln!(
        md,
        "\nSeconds, p50 / p95 / max (nearest rank). {} writes acknowledged, {lost} of them \
         missing on some replica at the end; {violations} samples with two primaries.",
        written.acknowledged.len()
    )
    .unwrap();
    md
}

#[tokio::main]
async fn main() {
    let options = options().unwrap_or_else(|e| {
        eprintln!(
            "failover-bench: {e}\nusage: failover-bench [--runs N] [--faults pod-deleted,server-killed,coordinator-killed,server-frozen,pod-frozen] [--out DIR]"
        );
        std::process::exit(2)
    });
    let logs = options.out.join("logs");
    std::fs::create_dir_all(&logs).expect("the output directory");
    assert_node_ready();
    let group = Group::form("bench-failover", 3, QUICK_START).await;
    let traffic = group.traffic().await;
    let mut runs = Vec::new();
    // Round by round, so that each kind meets the same conditions as the run goes on.
    for round in 1..=options.runs {
        for &fault in &options.faults {
            let run = failover(&group, &traffic.written, fault).await;
            eprintln!(
                "[{round}/{}] {}: {} → {} in {} s (stages {:?})",
                options.runs,
                kebab(fault),
                run.old,
                run.new,
                seconds(run.total()),
                run.stages().map(seconds)
            );
            let file = format!("{:02}-{}.log", round, kebab(fault));
            std::fs::write(logs.join(file), &run.log).expect("a run's log");
            recover(&group, &traffic.written, &run).await;
            runs.push(run);
        }
    }
    let (written, sampled) = traffic.finish().await;
    let acknowledged: Vec<u64> = written.acknowledged.iter().map(|a| a.id).collect();
    // Rows still on their way get a minute before they count as lost.
    let mut lost = usize::MAX;
    let waited = Instant::now();
    while lost > 0 && waited.elapsed() < Duration::from_secs(60) {
        lost = 0;
        for pod in group.pods() {
            let held = group.ids(&pod).await.unwrap_or_default();
            lost = lost.max(acknowledged.iter().filter(|id| !held.contains(id)).count());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let md = summary(&runs, &written, lost, sampled.violations.len());
    std::fs::write(options.out.join("runs.csv"), csv(&runs)).expect("runs.csv");
    std::fs::write(options.out.join("summary.md"), &md).expect("summary.md");
    println!("{md}");
    group.assert_nothing_lost(&written, &sampled).await;
    group.delete().await;
}

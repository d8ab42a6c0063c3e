//! The project's main command (`hack/demo`, the README's "The two commands"): on the real node
//! `real-1`, the operator installed by its Helm chart runs KubeDB's reconfigure-TLS guide on the
//! SQL Server test double, first on the standalone `ms-standalone`, then on the three-replica
//! availability group `mssql-ag-cluster` with a writer committing a row every 100 ms through all of
//! its requests. Each request's steps are printed as they appear; after each request, the
//! certificate every pod serves, read by a TDS client over the node's bridge, beside its Secret's.
//!
//! It ends non-zero, saying why, when a request does not end Successful, a pod serves anything but
//! what its Secret and TLS setting say, or the writer lost a row or saw two primaries. What it made
//! is removed at its end, on a failure and on Ctrl-C, unless `KEEP=1`. `DEMO_NAMESPACE` names its
//! namespace (default `mssql-demo`); the operator's is that name and `-operator`.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use mssql_api::MssqlServerOpsRequest;
use mssql_api::condition::Condition;
use mssql_certs::inspect::{parse_certificate, parse_der};
use mssql_e2e::chart::helm;
use mssql_e2e::client_gap::{NEW_ISSUER, assert_handed_over};
use mssql_e2e::cluster::ca_issuer;
use mssql_e2e::fixture::{READY_TIMEOUT, Setup, create_ops, summary};
use mssql_e2e::group::{DB as GROUP, Group, Sampled, WRITE_PACE, Written};
use mssql_e2e::real_node::{
    DOUBLE_VERSION, Release, assert_node_ready, create_admitted, install_operator, on_the_node,
    wait_leader,
};
use mssql_e2e::tds::{encryption_answer, leaf_der, served};
use mssql_e2e::{example_in, kubectl, kubectl_ok};
use mssql_tds::prelogin::Encryption;
use mssql_tds::probe::Mode;
use serde_json::Value;

/// How long each start of the double takes here: a few seconds keep the demo short. SQL Server
/// takes about 15 s, the double's default, which `hack/bench-switchover` measures with.
const START: Duration = Duration::from_secs(3);
const STANDALONE: &str = "ms-standalone";
/// KubeDB's requests in its guides' order, and whether TLS is on after each.
const STANDALONE_REQUESTS: [(&str, bool); 4] = [
    ("msops-add-tls", true),
    ("msops-rotate", true),
    ("msops-change-issuer", true),
    ("msops-remove", false),
];
const GROUP_REQUESTS: [(&str, bool); 4] = [
    ("msops-ag-add-tls", true),
    ("msops-ag-rotate", true),
    ("msops-ag-change-issuer", true),
    ("msops-ag-remove", false),
];
/// The requests that give the group a new endpoint certificate.
const NEW_ENDPOINT: [&str; 2] = ["msops-ag-rotate", "msops-ag-change-issuer"];
/// The longest a request may run before the demo gives up on it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
const RELEASE: &str = "mssql-operator";

fn keep() -> bool {
    std::env::var("KEEP").as_deref() == Ok("1")
}

fn section(title: &str) {
    if std::io::stdout().is_terminal() {
        println!("\n\x1b[1m== {title}\x1b[0m");
    } else {
        println!("\n== {title}");
    }
}

fn indented(text: &str) {
    for line in text.lines() {
        println!("  {line}");
    }
}

fn minutes(d: Duration) -> String {
    format!("{}m {:02}s", d.as_secs() / 60, d.as_secs() % 60)
}

/// What the demo makes: its namespace (the databases, their requests, the Issuers), the operator's
/// Helm release and its namespace, the double's catalog entry. Removed when dropped, at the end, on
/// a failure or on Ctrl-C, unless KEEP=1.
struct Made {
    ns: String,
    operator_ns: String,
}

impl Made {
    /// Removes all of it.
    fn remove(&self) {
        let operator = helm(&["status", RELEASE, "--namespace", &self.operator_ns]).ok;
        // The databases and requests carry the operator's finalizers. While it is installed it
        // removes them as the namespace goes; once it is not (it went first, on a failure),
        // nothing would.
        if !operator {
            self.strip_finalizers();
        }
        self.delete_namespace(&self.ns);
        if operator {
            let _ = helm(&["uninstall", RELEASE, "--namespace", &self.operator_ns]);
        }
        self.delete_namespace(&self.operator_ns);
        let version = [
            "delete",
            "mssqlserverversion",
            DOUBLE_VERSION,
            "--ignore-not-found",
        ];
        let _ = kubectl(&version, None);
    }

    fn strip_finalizers(&self) {
        let objects = [
            "get",
            "mssqlserver,mssqlserveropsrequest",
            "-n",
            &self.ns,
            "-o",
            "name",
        ];
        let names = kubectl(&objects, None).stdout;
        for object in names.lines() {
            let patch = r#"{"metadata":{"finalizers":null}}"#;
            let args = ["patch", object, "-n", &self.ns, "--type=merge", "-p", patch];
            let _ = kubectl(&args, None);
        }
    }

    fn delete_namespace(&self, name: &str) {
        let args = [
            "delete",
            "namespace",
            name,
            "--ignore-not-found",
            "--timeout=120s",
        ];
        let run = kubectl(&args, None);
        if !run.ok {
            eprintln!(
                "hack/demo: namespace {name} is not gone: {}",
                run.stderr.trim()
            );
        }
    }

    fn kept(&self) -> String {
        format!(
            "KEEP=1: kept the namespace {ns} (kubectl get ms,msops,pods -n {ns}), the operator's \
             Helm release {RELEASE} in {operator_ns} and the catalog entry {DOUBLE_VERSION}; the \
             next hack/demo removes them first",
            ns = self.ns,
            operator_ns = self.operator_ns,
        )
    }
}

impl Drop for Made {
    fn drop(&mut self) {
        if keep() {
            println!("\n{}", self.kept());
        } else {
            section("removing what the demo made");
            self.remove();
            println!(
                "  namespaces {} and {}, the catalog entry {DOUBLE_VERSION}: gone",
                self.ns, self.operator_ns
            );
        }
    }
}

/// With KEEP=1 a failure keeps everything too: the panic is reported and the process ends before
/// anything is dropped.
fn keep_on_failure(made: &Made) {
    let kept = made.kept();
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        println!("\n{kept}");
        std::process::exit(1);
    }));
}

#[tokio::main]
async fn main() {
    let began = Instant::now();
    let ns = std::env::var("DEMO_NAMESPACE").unwrap_or_else(|_| "mssql-demo".into());
    let made = Made {
        operator_ns: format!("{ns}-operator"),
        ns,
    };
    assert_node_ready();
    if keep() {
        keep_on_failure(&made);
    }
    // What an earlier run kept (KEEP=1) or left (killed) goes first.
    if kubectl(&["get", "namespace", &made.ns], None).ok {
        println!(
            "hack/demo: removing what an earlier run kept or left in {}",
            made.ns
        );
    }
    made.remove();
    let group = if keep() {
        // Ctrl-C ends it at once, and everything stays.
        story(&made).await
    } else {
        tokio::select! {
            group = story(&made) => group,
            // The story has stopped (and dropped what it held) when this runs.
            _ = tokio::signal::ctrl_c() => {
                eprintln!("\nhack/demo: interrupted");
                drop(made);
                std::process::exit(130);
            }
        }
    };
    // What the group holds (the namespace, the operator's release) goes with the rest, in the
    // order `Made::remove` keeps.
    std::mem::forget(group);
    drop(made);
    println!("\nhack/demo: done in {}", minutes(began.elapsed()));
}

async fn story(made: &Made) -> Group {
    section(
        "the operator: its image and the double's loaded into real-1, installed by its Helm chart",
    );
    let release = install_operator(&made.operator_ns).await;
    let t = Setup::without_operator_in(&made.ns).await;
    let leader = wait_leader(&t.client, &made.operator_ns, None).await;
    println!(
        "  release {RELEASE} in namespace {}: pod {leader} leads",
        made.operator_ns
    );
    ca_issuer(&t.client, &t.ns.name, NEW_ISSUER, "ca-updated").await;
    println!(
        "  namespace {}: the guides' CA Issuers mssqlserver-ca-issuer (CN=mssqlserver) and \
         {NEW_ISSUER} (CN=ca-updated)",
        t.ns.name
    );
    println!(
        "  SQL Server is its test double (crates/sqlserver-double, catalog entry {DOUBLE_VERSION}); \
         each of its starts takes {} s here (SQL Server's, and hack/bench-switchover's, 15 s)",
        START.as_secs()
    );
    standalone(&t).await;
    let group = availability_group(t, release).await;
    show_metrics(&group.t, &made.operator_ns).await;
    group
}

/// KubeDB's standalone guide: the database, a request the webhook refuses, then the four requests.
async fn standalone(t: &Setup) {
    section("1. KubeDB's standalone guide: ms-standalone");
    let began = Instant::now();
    let mut db: Value = serde_saphyr::from_str(&example_in(STANDALONE, &t.ns.name)).unwrap();
    on_the_node(&mut db, START);
    create_admitted(&db.to_string()).await;
    t.wait_phase(STANDALONE, "Ready", READY_TIMEOUT).await;
    println!(
        "  examples/kubedb-docs/{STANDALONE}.yaml, on real-1 (the double's version, the node's \
         volumes, small requests): Ready after {} s",
        began.elapsed().as_secs()
    );
    show_pods(t, STANDALONE);
    show_refusal(t);
    let pods = [format!("{STANDALONE}-0")];
    show_served(t, STANDALONE, &pods, false).await;
    for (request, tls) in STANDALONE_REQUESTS {
        follow(t, request).await;
        show_served(t, STANDALONE, &pods, tls).await;
    }
}

/// KubeDB's three-replica group, and its four requests with the writer running through them all.
async fn availability_group(t: Setup, release: Release) -> Group {
    section("2. KubeDB's availability group: mssql-ag-cluster, 3 replicas");
    let began = Instant::now();
    let group = Group::form_in(t, release, 3, START).await;
    let primary = group.primary(None).await;
    println!(
        "  examples/kubedb-docs/{GROUP}.yaml, on real-1: Ready after {} s; its coordinators \
         elected {primary} primary",
        began.elapsed().as_secs()
    );
    show_pods(&group.t, GROUP);
    show_served(&group.t, GROUP, &group.pods(), false).await;
    let traffic = group.traffic().await;
    println!(
        "\n-- a writer starts: a row every {WRITE_PACE:?} through the primary Service, \
         reconnecting on error as a pooled application does; beside it, a check every 100 ms \
         that never two pods are primary"
    );
    for (request, tls) in GROUP_REQUESTS {
        let before = group.primary(None).await;
        let ops = follow(&group.t, request).await;
        assert_handed_over(&ops, &before, NEW_ENDPOINT.contains(&request));
        let after = group.primary(None).await;
        group.status_shows(&after).await;
        println!(
            "  primary {before} → {after}, handed over before its pod restarted; every replica \
             synchronized again"
        );
        show_served(&group.t, GROUP, &group.pods(), tls).await;
        let rows = traffic.written.lock().unwrap().acknowledged.len();
        println!("  the writer so far: {rows} rows acknowledged");
    }
    let (written, sampled) = traffic.finish().await;
    show_writer(&written, &sampled);
    group.assert_nothing_lost(&written, &sampled).await;
    println!("  every acknowledged row is on every replica");
    group
}

fn show_pods(t: &Setup, db: &str) {
    let selector = format!("app.kubernetes.io/instance={db}");
    let args = [
        "get", "pods", "-n", &t.ns.name, "-l", &selector, "-o", "wide",
    ];
    indented(&kubectl_ok(&args, None));
}

/// KubeDB's rotate request with `timeout: banana`: the operator's admission webhook refuses it at
/// `kubectl apply`, in the words of `mssql-operator check`.
fn show_refusal(t: &Setup) {
    println!("\n-- admission: msops-rotate with timeout: banana, refused at kubectl apply");
    let bad = example_in("msops-rotate", &t.ns.name).replace("timeout: 5m", "timeout: banana");
    let run = kubectl(&["apply", "-f", "-"], Some(&bad));
    assert!(
        !run.ok && run.stderr.contains("denied the request"),
        "hack/demo: the webhook did not refuse a request with timeout: banana:\n{}{}",
        run.stdout,
        run.stderr
    );
    indented(&run.stderr);
}

/// Creates KubeDB's request `example` and prints each of its conditions as it appears (and again
/// when its status changes), with the seconds since; returns the request once it ended
/// Successful, and fails the demo if it ended otherwise.
async fn follow(t: &Setup, example: &str) -> MssqlServerOpsRequest {
    println!("\n-- {example} (examples/kubedb-docs/{example}.yaml)");
    let name = create_ops(t, example, |_| {}).await;
    let requests = t.api::<MssqlServerOpsRequest>();
    let began = Instant::now();
    let mut shown = BTreeSet::new();
    loop {
        // A moment the API server does not answer is only a moment.
        if let Ok(ops) = requests.get(&name).await {
            let status = ops.status.clone().unwrap_or_default();
            for condition in &status.conditions {
                if shown.insert((condition.type_.clone(), condition.status.clone())) {
                    show_condition(began.elapsed(), condition);
                }
            }
            match status.phase.as_deref() {
                Some("Successful") => {
                    println!("  => Successful after {} s", began.elapsed().as_secs());
                    return ops;
                }
                Some(phase @ ("Failed" | "Skipped")) => panic!(
                    "hack/demo: {name} ended {phase}:\n{:#?}",
                    summary(&status.conditions)
                ),
                _ => {}
            }
        }
        assert!(
            began.elapsed() < REQUEST_TIMEOUT,
            "hack/demo: {name} did not end within {REQUEST_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn show_condition(at: Duration, condition: &Condition) {
    let status = match condition.status.as_str() {
        "True" => String::new(),
        other => format!(" ({other})"),
    };
    let message = condition.message.as_deref().unwrap_or_default();
    println!(
        "  +{:>3}s  {}{status}  {message}",
        at.as_secs(),
        condition.type_
    );
}

/// What each pod serves to a TDS client (the operator's own probe: PRELOGIN, then TLS) over the
/// node's bridge, beside what its Secret holds. Fails the demo unless, with `tls`, it is the
/// Secret's certificate and encryption is forced, and without, SQL Server's self-signed fallback
/// and encryption is not forced.
async fn show_served(t: &Setup, db: &str, pods: &[String], tls: bool) {
    let secret = format!("{db}-server-cert");
    let issued = issued_certificate(t, &secret).await;
    match (&issued, tls) {
        (Some(pem), _) => {
            let info = parse_certificate(pem.as_bytes()).expect("the Secret's certificate");
            let unused = if tls { "" } else { " (unused: TLS is off)" };
            println!(
                "  the Secret {secret} holds serial {}, issued by {}{unused}",
                info.serial, info.issuer
            );
        }
        (None, false) => println!("  no server certificate issued yet (no Secret {secret})"),
        (None, true) => panic!("hack/demo: TLS is on but there is no Secret {secret}"),
    }
    for pod in pods {
        let addr = t
            .sql_addr(pod)
            .await
            .unwrap_or_else(|e| panic!("hack/demo: {pod}'s address: {e}"));
        let seen = served(addr, db, Mode::Prelogin);
        let leaf = parse_der(&seen.chain[0]).expect("an X.509 certificate");
        let forced = encryption_answer(addr, Encryption::Off) == Encryption::Required;
        match (tls, &issued) {
            (true, Some(pem)) => {
                assert!(
                    seen.chain[0].as_ref() == leaf_der(pem) && forced,
                    "hack/demo: {pod} serves serial {} issued by {} (encryption forced: \
                     {forced}), not its Secret's certificate with encryption forced",
                    leaf.serial,
                    leaf.issuer
                );
                println!(
                    "  {pod} ({addr}) serves serial {}, issued by {}: the Secret's; encryption \
                     forced",
                    leaf.serial, leaf.issuer
                );
            }
            _ => {
                assert!(
                    leaf.subject == "CN=SSL_Self_Signed_Fallback" && !forced,
                    "hack/demo: TLS is off, but {pod} serves {} (serial {}; encryption forced: \
                     {forced})",
                    leaf.subject,
                    leaf.serial
                );
                println!(
                    "  {pod} ({addr}) serves no certificate of its own: SQL Server's self-signed \
                     fallback ({}) to a client that asks for encryption; encryption not forced",
                    leaf.subject
                );
            }
        }
    }
}

async fn issued_certificate(t: &Setup, secret: &str) -> Option<String> {
    let found = t
        .api::<Secret>()
        .get_opt(secret)
        .await
        .expect("the API answers");
    let crt = found?.data?.remove("tls.crt")?;
    Some(String::from_utf8(crt.0).expect("PEM"))
}

fn show_writer(written: &Written, sampled: &Sampled) {
    let (began, ended) = written.span.expect("a finished writer");
    println!("\n-- the writer, through the four requests");
    println!(
        "  {} rows acknowledged in {}, {} failed attempts",
        written.acknowledged.len(),
        minutes(ended - began),
        written.failed
    );
    println!(
        "  longest gap between two acknowledged writes {:.2?}; no write for {:.2?} in all:",
        written.longest_gap(),
        written.unavailable()
    );
    for (at, gap) in written.stalls() {
        println!("    no write for {gap:.2?} from {at:.1?}");
    }
    println!(
        "  {} samples, none with two pods labelled primary or two servers taking a write",
        sampled.samples
    );
}

/// A few of the operator's series (docs/metrics.md), read from its pod through the API server.
async fn show_metrics(t: &Setup, operator_ns: &str) {
    section("what the operator reports on /metrics (docs/metrics.md; series at 0 left out)");
    let leader = wait_leader(&t.client, operator_ns, None).await;
    let path = format!("/api/v1/namespaces/{operator_ns}/pods/{leader}:8080/proxy/metrics");
    let metrics = kubectl_ok(&["get", "--raw", &path], None);
    let shown = [
        "leader",
        "ops_requests",
        "reconciliations_total",
        "reconcile_errors_total",
        "failovers_total",
        "ops_step_duration_seconds_sum",
    ];
    for line in metrics.lines() {
        let Some(series) = line.strip_prefix("mssql_operator_") else {
            continue;
        };
        let name = series.split(['{', ' ']).next().unwrap_or_default();
        if shown.contains(&name) && !line.ends_with(" 0") {
            println!("  {line}");
        }
    }
}

//! The real node's network: its pods reach each other, their Services and the API server, and
//! nothing else. "Else" is a test host of our own (a network namespace with a veth to the
//! machine, which the machine itself reaches), so no packet is ever aimed off the machine. Pods ask
//! one resolver, the plane's cluster DNS (CoreDNS on the bridge, hack/cluster/up), which answers
//! the cluster's names as a real cluster's does and refuses every other name: it forwards nothing.

use std::process::Command;
use std::time::Duration;

use mssql_e2e::cluster::eventually;
use mssql_e2e::real_node::{NODE, assert_node_ready, exec, exec_ok, load_images, place_on_node};
use mssql_e2e::{Namespace, kubectl_ok};
use serde_json::json;

/// A network namespace with one veth to the machine: `10.251.0.2/30` inside, `.1` outside,
/// serving TCP on 8080. Removed when dropped.
struct OutsideHost {
    name: String,
    listener: std::process::Child,
}

const OUTSIDE: &str = "10.251.0.2";

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("ip runs");
    assert!(
        status.success(),
        "ip {} failed (the test needs root)",
        args.join(" ")
    );
}

impl OutsideHost {
    fn start() -> Self {
        let name = format!("mssql-outside-{}", std::process::id());
        let host_side = format!("mssqlo{}", std::process::id() % 100_000);
        ip(&["netns", "add", &name]);
        ip(&[
            "link", "add", &host_side, "type", "veth", "peer", "name", "eth0", "netns", &name,
        ]);
        ip(&["addr", "add", "10.251.0.1/30", "dev", &host_side]);
        ip(&["link", "set", &host_side, "up"]);
        ip(&[
            "-n",
            &name,
            "addr",
            "add",
            &format!("{OUTSIDE}/30"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &name, "link", "set", "eth0", "up"]);
        ip(&["-n", &name, "route", "add", "default", "via", "10.251.0.1"]);
        // It serves an empty directory: every request gets a 404, which is an answer.
        let root = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&root).expect("the outside host's web root");
        let listener = Command::new("ip")
            .args([
                "netns", "exec", &name, "busybox", "httpd", "-f", "-p", "8080", "-h",
            ])
            .arg(&root)
            .spawn()
            .expect("a listener in the namespace");
        Self { name, listener }
    }
}

impl Drop for OutsideHost {
    fn drop(&mut self) {
        let _ = self.listener.kill();
        let _ = self.listener.wait();
        // The veth goes with the namespace.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        let _ = std::fs::remove_dir_all(std::env::temp_dir().join(&self.name));
    }
}

/// The node's bridge address (hack/cluster/lib.sh's NODE_GATEWAY): the API server and the
/// cluster DNS listen there.
const GATEWAY: &str = "10.250.0.1";

/// The headless Service that gives the server pod its DNS name, as a StatefulSet's pods get
/// theirs (`<hostname>.<subdomain>.<namespace>.svc`).
const PEERS: &str = "peers";

/// A busybox pod on the node running `script`; with `hostname`, also that `hostname` and the
/// `subdomain` PEERS.
fn pod(name: &str, image: &str, script: &str, hostname: Option<&str>) -> String {
    let mut spec = json!({
        "containers": [{
            "name": "main", "image": image, "imagePullPolicy": "Never",
            "command": ["sh", "-c", script],
            "ports": [{"containerPort": 8080}],
        }],
        "terminationGracePeriodSeconds": 1,
    });
    if let Some(hostname) = hostname {
        spec["hostname"] = json!(hostname);
        spec["subdomain"] = json!(PEERS);
    }
    place_on_node(&mut spec);
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "labels": {"app": name}}, "spec": spec})
    .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_reach_pods_services_and_the_api_server_and_nothing_else() {
    assert_node_ready();
    let busybox = load_images(&["busybox"])["busybox"].clone();
    let ns = Namespace::new("real-node-net");
    let n = ns.0.as_str();
    let serve = "mkdir -p /tmp/www && echo hello > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www";
    kubectl_ok(
        &["apply", "-n", n, "-f", "-"],
        Some(&pod("server", &busybox, serve, Some("db-0"))),
    );
    kubectl_ok(
        &["apply", "-n", n, "-f", "-"],
        Some(&pod("client", &busybox, "exec sleep 600", None)),
    );
    let headless = json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": PEERS},
        "spec": {"clusterIP": "None", "selector": {"app": "server"},
                 "ports": [{"name": "http", "port": 8080}]},
    });
    kubectl_ok(&["apply", "-n", n, "-f", "-"], Some(&headless.to_string()));
    kubectl_ok(
        &[
            "expose",
            "-n",
            n,
            "pod",
            "server",
            "--port=80",
            "--target-port=8080",
        ],
        None,
    );
    kubectl_ok(
        &[
            "wait",
            "-n",
            n,
            "--for=condition=Ready",
            "pod/server",
            "pod/client",
            "--timeout=120s",
        ],
        None,
    );
    let server_ip = kubectl_ok(
        &[
            "get",
            "pod",
            "-n",
            n,
            "server",
            "-o",
            "jsonpath={.status.podIP}",
        ],
        None,
    );
    let service_ip = kubectl_ok(
        &[
            "get",
            "service",
            "-n",
            n,
            "server",
            "-o",
            "jsonpath={.spec.clusterIP}",
        ],
        None,
    );
    assert_eq!(
        kubectl_ok(
            &[
                "get",
                "pod",
                "-n",
                n,
                "client",
                "-o",
                "jsonpath={.spec.nodeName}"
            ],
            None
        ),
        NODE
    );

    // Pod to pod, pod to Service (kube-proxy), pod to the API server through `kubernetes`.
    // busybox 1.35's `wget -T` crashes; `timeout` bounds it instead.
    let fetch = |url: &str| {
        exec(
            n,
            "client",
            "main",
            &["timeout", "5", "wget", "-q", "-O", "-", url],
        )
    };
    assert_eq!(
        fetch(&format!("http://{server_ip}:8080/")).stdout,
        "hello\n"
    );
    let through_service = format!("http://{service_ip}/");
    let service = eventually("the Service to answer", Duration::from_secs(30), || async {
        let run = fetch(&through_service);
        if run.ok {
            Ok(run.stdout)
        } else {
            Err(run.stderr)
        }
    })
    .await;
    assert_eq!(service, "hello\n");
    let api = exec_ok(
        n,
        "client",
        "main",
        &[
            "sh",
            "-c",
            "echo | nc -w 5 \"$KUBERNETES_SERVICE_HOST\" \"$KUBERNETES_SERVICE_PORT\" && echo connected",
        ],
    );
    assert!(api.contains("connected"), "{api}");

    cluster_dns(n, &server_ip, &service_ip).await;

    // A host beside the node that the machine reaches, and the pods do not.
    let outside = OutsideHost::start();
    let url = format!("http://{OUTSIDE}:8080/");
    eventually(
        "the outside host to answer the machine",
        Duration::from_secs(10),
        || async {
            let output = Command::new("curl")
                .args([
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "--max-time",
                    "2",
                    &url,
                ])
                .output()
                .map_err(|e| e.to_string())?;
            match String::from_utf8_lossy(&output.stdout).as_ref() {
                "404" => Ok(()),
                other => Err(format!("HTTP status {other:?}")),
            }
        },
    )
    .await;
    let blocked = exec(
        n,
        "client",
        "main",
        &[
            "sh",
            "-c",
            &format!("echo | nc -w 3 {OUTSIDE} 8080 && echo connected"),
        ],
    );
    assert!(
        !blocked.stdout.contains("connected"),
        "a pod reached a host off the node's bridge: {}{}",
        blocked.stdout,
        blocked.stderr
    );
    drop(outside);
}

/// The cluster DNS, from the client pod: its resolv.conf names the DNS server on the bridge alone,
/// with the cluster's search domains; the server pod's name under the headless Service and the
/// Services' names resolve to their addresses, also through the C library's resolver (search
/// domains and `ndots:5`, as SQL Server's `TCP://db-0.peers.<ns>.svc:5022` needs); an outside
/// name is refused: the server serves only the cluster's zones and forwards nothing (its binary
/// has no plugin that could).
async fn cluster_dns(n: &str, server_ip: &str, service_ip: &str) {
    let resolv = exec_ok(n, "client", "main", &["cat", "/etc/resolv.conf"]);
    assert!(
        resolv
            .lines()
            .filter(|l| l.starts_with("nameserver"))
            .eq([format!("nameserver {GATEWAY}").as_str()]),
        "{resolv}"
    );
    let search = format!("search {n}.svc.cluster.local svc.cluster.local cluster.local");
    assert!(resolv.lines().any(|l| l.trim() == search), "{resolv}");
    assert!(resolv.lines().any(|l| l.contains("ndots:5")), "{resolv}");

    // busybox's nslookup (its own DNS client: it asks resolv.conf's server, applies no search
    // domain to a name with a dot): full names. The headless Service's record appears once the
    // EndpointSlice controller has the ready pod and CoreDNS its watch event.
    let pod_name = format!("db-0.{PEERS}.{n}.svc.cluster.local");
    let found = eventually(
        "the server pod's name to resolve",
        Duration::from_secs(30),
        || async { lookup(n, &pod_name) },
    )
    .await;
    assert_eq!(found, [server_ip], "{pod_name}");
    assert_eq!(
        lookup(n, &format!("server.{n}.svc.cluster.local")).expect("the Service's name"),
        [service_ip]
    );
    assert_eq!(
        lookup(n, "kubernetes.default.svc.cluster.local").expect("the API server's Service"),
        ["10.96.0.1"]
    );

    // The C library's resolver (busybox's ping and wget use getaddrinfo): the names as pods write
    // them, completed by the search domains.
    let pinged = |name: &str| {
        let run = exec(n, "client", "main", &["ping", "-c", "1", "-W", "2", name]);
        let head = run.stdout.lines().next().unwrap_or_default().to_string();
        (head, format!("{}{}", run.stdout, run.stderr))
    };
    for (name, ip) in [
        (format!("db-0.{PEERS}.{n}.svc"), server_ip),
        (format!("db-0.{PEERS}"), server_ip),
        (format!("server.{n}.svc"), service_ip),
        ("server".to_string(), service_ip),
    ] {
        let (head, all) = pinged(&name);
        assert!(
            head.starts_with(&format!("PING {name} ({ip})")),
            "{name} should resolve to {ip}: {all}"
        );
    }
    let fetched = exec_ok(
        n,
        "client",
        "main",
        &[
            "timeout",
            "5",
            "wget",
            "-q",
            "-O",
            "-",
            &format!("http://db-0.{PEERS}.{n}.svc:8080/"),
        ],
    );
    assert_eq!(fetched, "hello\n");

    // Any other name: refused by the server (an answer, not a timeout), never looked up elsewhere.
    for name in ["example.com", "example.com.", "mssql-operator.test"] {
        let run = exec(
            n,
            "client",
            "main",
            &["timeout", "10", "nslookup", "-type=a", name],
        );
        let said = format!("{}{}", run.stdout, run.stderr);
        assert!(
            lookup_answers(&run.stdout).is_empty() && said.contains("REFUSED"),
            "{name} should be refused: {said}"
        );
    }
    let (head, all) = pinged("example.com");
    assert!(!head.starts_with("PING"), "example.com resolved: {all}");
    let plugins = Command::new("coredns")
        .arg("-plugins")
        .output()
        .expect("the plane's coredns on PATH (the export line of hack/cluster/up)");
    let plugins = String::from_utf8_lossy(&plugins.stdout);
    let plugins: Vec<&str> = plugins
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    assert!(plugins.contains(&"kubernetes"), "{plugins:?}");
    // CoreDNS's plugins that send a query elsewhere or keep answers from elsewhere.
    for elsewhere in [
        "forward",
        "grpc",
        "etcd",
        "cache",
        "route53",
        "azure",
        "clouddns",
        "nomad",
        "k8s_external",
        "secondary",
    ] {
        assert!(
            !plugins.contains(&elsewhere),
            "coredns has the {elsewhere} plugin: {plugins:?}"
        );
    }
}

/// `nslookup -type=a NAME` in the client pod: the addresses answered, or what it said instead.
fn lookup(n: &str, name: &str) -> Result<Vec<String>, String> {
    let run = exec(
        n,
        "client",
        "main",
        &["timeout", "10", "nslookup", "-type=a", name],
    );
    let answers = lookup_answers(&run.stdout);
    if run.ok && !answers.is_empty() {
        Ok(answers)
    } else {
        Err(format!("{}{}", run.stdout, run.stderr))
    }
}

/// The answer's addresses in busybox nslookup's output: after the server's block (`Server:`,
/// `Address: <server>:53`), one `Name:` and one `Address: <ip>` line per record.
fn lookup_answers(stdout: &str) -> Vec<String> {
    stdout
        .split("\n\n")
        .skip(1)
        .flat_map(str::lines)
        .filter_map(|l| l.strip_prefix("Address:"))
        .map(|a| a.trim().to_string())
        .collect()
}

//! The real node's network: its pods reach each other, their Services and the API server, and
//! nothing else. "Else" is a test host of our own (a network namespace with a veth to the
//! machine, which the machine itself reaches), so no packet is ever aimed off the machine. Pods ask
//! no resolver but their own loopback.

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
    }
}

/// A busybox pod on the node running `script`.
fn pod(name: &str, image: &str, script: &str) -> String {
    let mut spec = json!({
        "containers": [{
            "name": "main", "image": image, "imagePullPolicy": "Never",
            "command": ["sh", "-c", script],
            "ports": [{"containerPort": 8080}],
        }],
        "terminationGracePeriodSeconds": 1,
    });
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
        Some(&pod("server", &busybox, serve)),
    );
    kubectl_ok(
        &["apply", "-n", n, "-f", "-"],
        Some(&pod("client", &busybox, "exec sleep 600")),
    );
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

    // Pods' resolver is their own loopback.
    let resolv = exec_ok(n, "client", "main", &["cat", "/etc/resolv.conf"]);
    assert!(
        resolv
            .lines()
            .filter(|l| l.starts_with("nameserver"))
            .eq(["nameserver 127.0.0.1"]),
        "{resolv}"
    );

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

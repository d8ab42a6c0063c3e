//! `mssql-operator`: runs SQL Server on Kubernetes and reconfigures its TLS one pod at a time.

use std::collections::BTreeMap;
use std::process::ExitCode;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use mssql_api::renewal::{Policy, Rollout, Window};
use mssql_operator::admission;
use mssql_operator::leader::{self, Election};
use mssql_operator::metrics::Metrics;
use mssql_operator::serve::{self, Health};
use mssql_operator::{check, yaml};

#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator against the current kubeconfig (or the in-cluster config).
    Run(Box<RunArgs>),
    /// Print the CustomResourceDefinitions, ready for `kubectl apply --server-side -f -`.
    Crd,
    /// Print the default MSSQLServerVersion catalog, ready for `kubectl apply -f -`.
    Catalog,
    /// Validate YAML files offline; print the defaulted objects, or every error and exit 1.
    Check {
        /// Files to check (multi-document YAML); `-` reads standard input.
        #[arg(required = true)]
        files: Vec<String>,
    },
    /// Run the availability-group coordinator of one pod (its `mssql-coordinator` container).
    Coordinator(Box<mssql_operator::coordinate::CoordinatorArgs>),
    /// Print the version.
    Version,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Where to serve /metrics, /healthz and /readyz (port 0 picks a free port, logged at start).
    #[arg(long, default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// The namespace of the leader-election Lease [default: the kubeconfig's namespace].
    #[arg(long, env = "POD_NAMESPACE")]
    lease_namespace: Option<String>,
    /// The name of the leader-election Lease; replicas sharing it elect one leader.
    #[arg(long, default_value = "mssql-operator")]
    lease_name: String,
    /// This replica's identity in the Lease [default: the host name and process id].
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// After each pod restart of a database with client TLS, connect to the pod's port 1433 and
    /// check it serves the certificate of its Secret. `false` only where the operator cannot
    /// reach database pods (a NetworkPolicy must then allow it; see docs/tls-guide.md).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    verify_served_certificates: bool,
    /// How a renewed certificate is rolled out where a database's annotation
    /// `mssql-operator.dev/renewal-rollout` does not say: `Auto` (a Restart request) or `Manual`.
    #[arg(long, default_value = "Auto", value_parser = parse_rollout)]
    renewal_rollout: Rollout,
    /// The maintenance window of databases without annotation `mssql-operator.dev/maintenance-window`,
    /// e.g. "Sat,Sun 22:00-02:00 Europe/Berlin" [default: none, any time].
    #[arg(long, value_parser = Window::parse)]
    maintenance_window: Option<Window>,
    /// Roll out before the window when the served certificate would expire before the window
    /// opens plus this margin (a Go duration), where `mssql-operator.dev/renewal-safety-margin`
    /// does not say.
    #[arg(long, default_value = "24h", value_parser = parse_margin)]
    renewal_safety_margin: Duration,
    /// The image of availability groups' `mssql-coordinator` containers: this operator's own
    /// image (the Helm chart sets it), which runs `mssql-operator coordinator`.
    #[arg(long, env = "COORDINATOR_IMAGE", default_value = mssql_operator::DEFAULT_COORDINATOR_IMAGE)]
    coordinator_image: String,
    /// Watch only these namespaces (repeat or separate with commas), each with its own caches;
    /// the operator then needs no cluster-wide access to Secrets and workloads [default: all].
    #[arg(
        long = "watch-namespaces",
        value_delimiter = ',',
        value_name = "NAMESPACE"
    )]
    watch_namespaces: Vec<String>,
    /// Serve the validating admission webhook on this address (every replica, leader or not),
    /// e.g. 0.0.0.0:9443; port 0 picks a free port, logged at start [default: no webhook].
    #[arg(long, value_name = "ADDRESS")]
    webhook_listen: Option<SocketAddr>,
    /// A DNS name or IP address the API server dials the webhook at, for its certificate
    /// (repeat or separate with commas); the host of --webhook-url is added.
    #[arg(long = "webhook-host", value_delimiter = ',', value_name = "HOST")]
    webhook_hosts: Vec<String>,
    /// The Secret, in the Lease's namespace, that keeps the webhook's CA and certificate.
    #[arg(long, default_value = "mssql-operator-webhook-tls")]
    webhook_secret: String,
    /// The ValidatingWebhookConfiguration: its CA bundle is kept current (the Helm chart renders
    /// it), or, with --webhook-url, it is registered whole.
    #[arg(long, default_value = "mssql-operator")]
    webhook_configuration: String,
    /// For an operator run outside the cluster: register the webhook at this URL
    /// (https://127.0.0.1:9443; a port 0 here and in --webhook-listen is the port picked), and
    /// remove the registration when the operator stops.
    #[arg(long, value_name = "URL")]
    webhook_url: Option<String>,
    /// With --webhook-url: validate only in namespaces with these labels (key=value,...).
    #[arg(long, value_parser = parse_labels, value_name = "LABELS")]
    webhook_namespace_selector: Option<BTreeMap<String, String>>,
}

fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, String> {
    text.split(',')
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
            _ => Err(format!("{pair:?} is not key=value")),
        })
        .collect()
}

/// The webhook's settings, or what is wrong with the flags.
fn webhook_settings(
    args: &RunArgs,
    namespace: &str,
) -> Result<Option<(SocketAddr, admission::server::Settings)>, String> {
    let Some(listen) = args.webhook_listen else {
        return Ok(None);
    };
    let mut hosts = args.webhook_hosts.clone();
    if let Some(url) = &args.webhook_url {
        let host = url
            .strip_prefix("https://")
            .and_then(|rest| rest.split(['/', ':']).next())
            .filter(|host| !host.is_empty())
            .ok_or_else(|| format!("--webhook-url {url:?}: expected https://<host>:<port>"))?;
        hosts.push(host.to_owned());
    }
    if hosts.is_empty() {
        return Err("--webhook-listen needs --webhook-host (the name the API server dials, e.g. mssql-operator-webhook.<namespace>.svc) or --webhook-url".into());
    }
    Ok(Some((
        listen,
        admission::server::Settings {
            secret_namespace: namespace.to_owned(),
            secret_name: args.webhook_secret.clone(),
            hosts,
            configuration: args.webhook_configuration.clone(),
            url: args.webhook_url.clone(),
            namespace_selector: args.webhook_namespace_selector.clone().unwrap_or_default(),
        },
    )))
}

fn parse_rollout(text: &str) -> Result<Rollout, String> {
    text.parse()
}

fn parse_margin(text: &str) -> Result<Duration, String> {
    mssql_api::duration::parse(text)
        .ok_or_else(|| format!("{text:?} is not a duration; use a Go duration such as 24h or 90m"))
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run(args) => run(*args),
        Command::Coordinator(args) => in_runtime(mssql_operator::coordinate::coordinate(*args)),
        Command::Crd => print_all(&mssql_api::crd::crds()),
        Command::Catalog => print_all(&mssql_api::catalog::default_catalog()),
        Command::Check { files } => check_files(&files),
        Command::Version => {
            println!("mssql-operator {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
    }
}

fn print_all<T: serde::Serialize>(objects: &[T]) -> ExitCode {
    match yaml::documents(objects) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn check_files(files: &[String]) -> ExitCode {
    let mut sources = Vec::new();
    for file in files {
        let text = if file == "-" {
            std::io::read_to_string(std::io::stdin())
        } else {
            std::fs::read_to_string(file)
        };
        match text {
            Ok(text) => sources.push(check::Source {
                name: file.clone(),
                text,
            }),
            Err(error) => {
                eprintln!("{file}: cannot read: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    let outcomes = check::check(&sources);
    if outcomes.iter().all(check::Outcome::is_valid) {
        let objects: Vec<_> = outcomes.into_iter().filter_map(|o| o.result.ok()).collect();
        print_all(&objects)
    } else {
        for outcome in &outcomes {
            print!("{outcome}");
        }
        let invalid = outcomes.iter().filter(|o| !o.is_valid()).count();
        eprintln!("{invalid} of {} objects are invalid", outcomes.len());
        ExitCode::FAILURE
    }
}

fn run(args: RunArgs) -> ExitCode {
    in_runtime(operate(args))
}

/// Logs, then runs `work` on a multi-threaded runtime; an error ends the process with status 1.
fn in_runtime(work: impl std::future::Future<Output = Result<(), String>>) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            // tiberius logs every error a server returns at ERROR, also those the coordinator
            // expects (a setup step repeated finds its object there); it logs the others itself.
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube=warn,tiberius=off".into()),
        )
        // Colours only for a person at a terminal, not in log files and pod logs.
        .with_ansi(std::io::stdout().is_terminal())
        .init();
    // Twice tokio's default stack per worker: a TLS handshake of the served-certificate probe
    // inside a reconcile runs deep in an unoptimised build. Reserved, not resident.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(4 << 20)
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Serves the endpoints, checks the cluster, then reconciles while leading.
async fn operate(args: RunArgs) -> Result<(), String> {
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|error| format!("cannot listen on {} (--listen): {error}", args.listen))?;
    let address = listener.local_addr().map_err(|error| error.to_string())?;
    tracing::info!("serving /metrics, /healthz and /readyz on http://{address}");
    tokio::spawn(serve::serve(listener, metrics.clone(), health.clone()));

    let client = mssql_operator::client::client().await.map_err(|error| {
        format!("cannot reach the Kubernetes API (set KUBECONFIG or run in a cluster): {error}")
    })?;
    mssql_operator::preflight::check(&client, args.watch_namespaces.first().map(String::as_str))
        .await?;
    let namespace = args
        .lease_namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let mut webhook = webhook_settings(&args, &namespace)?;
    if let Some((listen, webhook)) = &mut webhook {
        let listener = tokio::net::TcpListener::bind(*listen)
            .await
            .map_err(|error| format!("cannot listen on {listen} (--webhook-listen): {error}"))?;
        *listen = listener.local_addr().map_err(|error| error.to_string())?;
        // Port 0 picks a free port; a URL ending in `:0` is registered with that port.
        if let Some(url) = &mut webhook.url
            && let Some(host) = url.strip_suffix(":0")
        {
            *url = format!("{host}:{}", listen.port());
        }
        tracing::info!(hosts = ?webhook.hosts, "serving the admission webhook on https://{listen}");
        tokio::spawn(admission::server::serve(
            client.clone(),
            webhook.clone(),
            listener,
        ));
    }
    health.set_ready();
    let election = Election {
        namespace,
        lease: args.lease_name,
        identity: args.identity.unwrap_or_else(default_identity),
    };
    tracing::info!("mssql-operator {} started", env!("CARGO_PKG_VERSION"));
    let settings = mssql_operator::Settings {
        verify_served_certificates: args.verify_served_certificates,
        renewal: Policy {
            rollout: args.renewal_rollout,
            window: args.maintenance_window,
            margin: args.renewal_safety_margin,
        },
        namespaces: args.watch_namespaces.clone(),
        coordinator_image: args.coordinator_image.clone(),
    };
    if !settings.namespaces.is_empty() {
        tracing::info!(namespaces = ?settings.namespaces, "watching only these namespaces");
    }
    if !settings.verify_served_certificates {
        tracing::warn!(
            "--verify-served-certificates=false: restarted pods are not checked for the certificate they serve"
        );
    }
    tracing::info!(
        rollout = %settings.renewal.rollout,
        window = settings.renewal.window.as_ref().map(ToString::to_string).unwrap_or_else(|| "any time".to_owned()),
        margin = %mssql_api::duration::format(settings.renewal.margin),
        "renewed certificates are rolled out by default so"
    );
    let controllers = mssql_operator::run_controllers(client.clone(), metrics.clone(), settings);
    let led = leader::lead(client.clone(), &election, &metrics, controllers).await;
    if let Some((_, webhook)) = &webhook {
        admission::server::deregister(&client, webhook).await;
    }
    led.map_err(|error| error.to_string())
}

/// The host name and process id: unique per process when not run as a pod.
fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "mssql-operator".to_owned());
    format!("{host}-{}", std::process::id())
}

//! `kubectl mssql`: the command line. Every report and decision is in the library.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};
use k8s_openapi::jiff::Timestamp;
use kube::{Client, ResourceExt};
use kubectl_mssql::ops::{Tracker, restarts};
use kubectl_mssql::request::{IssuerChoice, RequestOptions, TlsOp};
use kubectl_mssql::{Error, cluster, ops, render, replicas, request, status};
use mssql_api::progress::{Ended, Progress};
use serde::Serialize;

#[derive(Parser)]
#[command(
    name = "kubectl-mssql",
    bin_name = "kubectl mssql",
    version,
    about = "The replicas and TLS of mssql-operator's MSSQLServers, and their ReconfigureTLS \
             requests"
)]
struct Cli {
    /// Namespace; default: the current kubeconfig context's.
    #[arg(short, long, global = true)]
    namespace: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// A database's phase and, in an availability group, each replica's role and state.
    Status {
        /// The MSSQLServer's name.
        database: String,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// A database's certificates, and changes to its TLS (ReconfigureTLS requests).
    #[command(subcommand)]
    Tls(Tls),
    /// MSSQLServerOpsRequests.
    #[command(subcommand)]
    Ops(Ops),
}

#[derive(Subcommand)]
enum Tls {
    /// Issuer, serial, SANs and expiry of each certificate, and which pods run it.
    Status {
        /// The MSSQLServer's name.
        database: String,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Turns TLS on (a ReconfigureTLS request with the issuer and clientTLS: true).
    Add {
        /// The MSSQLServer's name.
        database: String,
        #[command(flatten)]
        issuer: IssuerArgs,
        #[command(flatten)]
        request: RequestArgs,
    },
    /// Turns TLS off (SQL Server stops forcing encryption; the certificates stay).
    Remove {
        /// The MSSQLServer's name.
        database: String,
        #[command(flatten)]
        request: RequestArgs,
    },
    /// Re-issues every certificate and restarts the pods onto them.
    Rotate {
        /// The MSSQLServer's name.
        database: String,
        #[command(flatten)]
        request: RequestArgs,
    },
    /// Moves every certificate to another issuer and restarts the pods onto them.
    SetIssuer {
        /// The MSSQLServer's name.
        database: String,
        #[command(flatten)]
        issuer: IssuerArgs,
        #[command(flatten)]
        request: RequestArgs,
    },
}

#[derive(Args)]
struct IssuerArgs {
    /// The cert-manager Issuer (in the database's namespace) that signs the certificates.
    #[arg(long)]
    issuer: String,
    /// --issuer names a ClusterIssuer.
    #[arg(long)]
    cluster_issuer: bool,
}

impl IssuerArgs {
    fn choice(&self) -> IssuerChoice {
        IssuerChoice {
            name: self.issuer.clone(),
            cluster: self.cluster_issuer,
        }
    }
}

#[derive(Args)]
struct RequestArgs {
    /// Follow the request until it ends; exit 0 only if it is Successful.
    #[arg(short, long)]
    watch: bool,
    /// The request's name; default: `<database>-tls-<command>-<5 random characters>`.
    #[arg(long)]
    name: Option<String>,
    /// Limit of each step (Go duration, e.g. 5m); default: the operator's (30m).
    #[arg(long)]
    timeout: Option<String>,
    /// IfReady (default): start once the database is Ready; Always: start at once.
    #[arg(long)]
    apply: Option<String>,
}

#[derive(Subcommand)]
enum Ops {
    /// The requests, oldest first.
    List {
        /// Every namespace.
        #[arg(short = 'A', long, conflicts_with = "namespace")]
        all_namespaces: bool,
        /// Only the requests of this database.
        #[arg(long)]
        database: Option<String>,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// One request with every condition.
    Describe {
        /// The MSSQLServerOpsRequest's name.
        name: String,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
    Yaml,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`kubectl mssql ops list | head`): stop quietly, with the status
        // of a tool that SIGPIPE ended (128 + 13), as other command-line tools do.
        Err(Error::Closed) => ExitCode::from(141),
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), Error> {
    let namespace = cli.namespace;
    match cli.command {
        Command::Status { database, output } => {
            let (client, namespace) = cluster::connect(namespace).await?;
            let db = cluster::database(&client, &namespace, &database)
                .await?
                .ok_or_else(|| request::database_not_found(&namespace, &database))?;
            let report = replicas::database_status(&db, now());
            print(output, &report, render::database_status)
        }
        Command::Tls(Tls::Status { database, output }) => {
            let (client, namespace) = cluster::connect(namespace).await?;
            let db = cluster::database(&client, &namespace, &database)
                .await?
                .ok_or_else(|| request::database_not_found(&namespace, &database))?;
            let observed = cluster::observe(&client, &db).await?;
            let report = status::tls_status(&db, &observed, now());
            print(output, &report, render::tls_status)
        }
        Command::Tls(Tls::Add {
            database,
            issuer,
            request,
        }) => tls(namespace, &database, TlsOp::Add(issuer.choice()), request).await,
        Command::Tls(Tls::Remove { database, request }) => {
            tls(namespace, &database, TlsOp::Remove, request).await
        }
        Command::Tls(Tls::Rotate { database, request }) => {
            tls(namespace, &database, TlsOp::Rotate, request).await
        }
        Command::Tls(Tls::SetIssuer {
            database,
            issuer,
            request,
        }) => {
            tls(
                namespace,
                &database,
                TlsOp::SetIssuer(issuer.choice()),
                request,
            )
            .await
        }
        Command::Ops(Ops::List {
            all_namespaces,
            database,
            output,
        }) => {
            let (client, namespace) = cluster::connect(namespace).await?;
            let scope = (!all_namespaces).then_some(namespace.as_str());
            let list = cluster::requests(&client, scope).await?;
            let rows = ops::rows(&list, database.as_deref(), now());
            print(output, &rows, |rows| render::ops_rows(rows, all_namespaces))
        }
        Command::Ops(Ops::Describe { name, output }) => {
            let (client, namespace) = cluster::connect(namespace).await?;
            let request = cluster::request(&client, &namespace, &name).await?;
            print(output, &ops::detail(&request, now()), render::ops_detail)
        }
    }
}

fn now() -> i64 {
    Timestamp::now().as_second()
}

fn print<T: Serialize>(
    format: Format,
    report: &T,
    table: impl Fn(&T) -> String,
) -> Result<(), Error> {
    let text = match format {
        Format::Table => table(report),
        Format::Json => serde_json::to_string_pretty(report)
            .map(|t| t + "\n")
            .map_err(|e| Error::Output(e.to_string()))?,
        Format::Yaml => {
            serde_saphyr::to_string(report).map_err(|e| Error::Output(e.to_string()))?
        }
    };
    emit(&text)
}

/// Writes `text` to the command's output. Not `print!`, which panics when the reader has gone.
fn emit(text: &str) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(Error::from)
}

/// Checks, creates and (with --watch) follows one ReconfigureTLS request.
async fn tls(
    namespace: Option<String>,
    database: &str,
    op: TlsOp,
    args: RequestArgs,
) -> Result<(), Error> {
    let options = RequestOptions {
        name: args.name,
        timeout: args.timeout,
        apply: args.apply,
    };
    // Bad options are refused before anything is read or written.
    let (client, namespace) = cluster::connect(namespace).await?;
    let request = request::build(&op, &namespace, database, &options)?;
    let db = cluster::database(&client, &namespace, database).await?;
    let issuer = match op.issuer() {
        Some(choice) => Some(cluster::issuer(&client, &namespace, choice).await?),
        None => None,
    };
    for warning in request::preflight(&op, &namespace, database, db.as_ref(), issuer.as_ref())? {
        eprintln!("warning: {warning}");
    }
    let created = cluster::create(&client, &request).await?;
    let name = created.name_any();
    emit(&format!(
        "MSSQLServerOpsRequest {namespace}/{name} created: {} on MSSQLServer {namespace}/{database}\n",
        ops::operation(&created)
    ))?;
    if args.watch {
        watch(&client, &namespace, &name).await
    } else {
        emit(&format!(
            "Follow it with: kubectl mssql ops describe {name} -n {namespace}\n"
        ))
    }
}

/// How often `--watch` reads the request, and how many failed reads in a row it tolerates.
const POLL: Duration = Duration::from_secs(1);
const READ_FAILURES: u32 = 10;

/// Prints each change of the request as a line until it ends. On a terminal, a status line with
/// the elapsed time and the restart bar is redrawn below the lines every second.
async fn watch(client: &Client, namespace: &str, name: &str) -> Result<(), Error> {
    let start = Instant::now();
    let terminal = std::io::stdout().is_terminal();
    let mut tracker = Tracker::default();
    let mut failures = 0;
    loop {
        let ops = match cluster::request(client, namespace, name).await {
            Ok(ops) => ops,
            Err(Error::NotFound(_)) => {
                return Err(Error::NotFound(format!(
                    "MSSQLServerOpsRequest {namespace}/{name} was deleted while it was watched"
                )));
            }
            Err(error) if failures < READ_FAILURES => {
                failures += 1;
                eprintln!("warning: {error} (retrying)");
                tokio::time::sleep(POLL).await;
                continue;
            }
            Err(error) => return Err(error),
        };
        failures = 0;
        let elapsed = render::elapsed(start.elapsed().as_secs());
        if terminal {
            // Clears the status line drawn last time.
            emit("\r\x1b[2K")?;
        }
        for change in tracker.update(&ops) {
            emit(&format!("{elapsed}{}\n", render::change(&change)))?;
        }
        match Progress::of(&ops).ended {
            Some(Ended::Successful) => {
                return emit(&format!(
                    "{elapsed}MSSQLServerOpsRequest {namespace}/{name} is Successful\n"
                ));
            }
            Some(Ended::Failed { message, .. }) => {
                return Err(Error::Failed {
                    name: format!("{namespace}/{name}"),
                    message,
                });
            }
            Some(Ended::Skipped { message }) => {
                return Err(Error::Skipped {
                    name: format!("{namespace}/{name}"),
                    message,
                });
            }
            None => {}
        }
        if terminal {
            let phase = ops.phase();
            let phase = match phase.is_empty() {
                true => "waiting for the ops-manager".to_owned(),
                false => format!("phase {phase}"),
            };
            let bar = restarts(&ops).map(|r| format!(" {}", render::restart_text(&r)));
            emit(&format!("{elapsed}{phase}{}", bar.unwrap_or_default()))?;
        }
        tokio::time::sleep(POLL).await;
    }
}

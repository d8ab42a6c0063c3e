//! `mssql-operator`: runs SQL Server on Kubernetes and reconfigures its TLS one pod at a time.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
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
    Run,
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
    /// Print the version.
    Version,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run => run(),
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

fn run() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube=warn".into()),
        )
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let client = match mssql_operator::client::client().await {
            Ok(client) => client,
            Err(error) => {
                eprintln!("error: cannot reach the Kubernetes API (set KUBECONFIG or run in a cluster): {error}");
                return ExitCode::FAILURE;
            }
        };
        if let Err(message) = mssql_operator::preflight::check(&client).await {
            eprintln!("error: {message}");
            return ExitCode::FAILURE;
        }
        tracing::info!("mssql-operator {} started", env!("CARGO_PKG_VERSION"));
        tokio::join!(
            mssql_operator::provisioner::run(client.clone()),
            mssql_operator::ops::run(client)
        );
        ExitCode::SUCCESS
    })
}

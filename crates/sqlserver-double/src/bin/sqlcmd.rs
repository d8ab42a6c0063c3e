//! `sqlcmd`: see the `sqlcmd` module of the crate for the options.

use std::process::ExitCode;

use mssql_sqlserver_double::sqlcmd::{self, Command};

fn main() -> ExitCode {
    // tiberius builds its rustls configuration with the process default provider; aws-lc-rs is
    // the one the workspace links. Already installed is fine.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match sqlcmd::parse_args(&args, std::env::var("SQLCMDPASSWORD").ok()) {
        Ok(Command::Run(options)) => options,
        Ok(Command::Help) => {
            println!("{}", sqlcmd::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
    };
    let code = sqlcmd::run(&options, &mut std::io::stdout(), &mut std::io::stderr());
    ExitCode::from(code)
}

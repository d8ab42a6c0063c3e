//! `sqlservr`: the SQL Server test double's server. See the crate documentation.

use std::process::ExitCode;

use mssql_sqlserver_double::errorlog::log;
use mssql_sqlserver_double::shutdown::Signals;
use mssql_sqlserver_double::startup;

fn main() -> ExitCode {
    // Before start-up announces readiness, so that an early SIGTERM is not lost.
    let signals = match Signals::install() {
        Ok(signals) => signals,
        Err(error) => {
            eprintln!("ERROR: cannot install the SIGTERM handler: {error}");
            return ExitCode::FAILURE;
        }
    };
    // Start-up takes its time (MSSQL_STARTUP_DELAY); a SIGTERM meanwhile stops it at once.
    std::thread::spawn(
        || match startup::start(&startup::Environment::from_process()) {
            Ok(server) => server.serve(),
            Err(error) => {
                eprintln!("{error}");
                std::process::exit(1);
            }
        },
    );
    let signal = signals.wait();
    log(
        "Server",
        &format!("SQL Server received {signal}, shutting down."),
    );
    log("Server", "SQL Server shutdown has been initiated.");
    ExitCode::SUCCESS
}

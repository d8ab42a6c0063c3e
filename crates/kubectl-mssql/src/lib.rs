//! `kubectl mssql`: an MSSQLServer's replicas, its TLS and its ReconfigureTLS requests, for
//! people.
//!
//! Pure modules turn API objects into reports (`replicas`, `status`, `ops`), requests (`request`) and text
//! (`render`, `text`); `cluster` makes the API calls; `main.rs` is the command line.

pub mod api_error;
pub mod cluster;
pub mod ops;
pub mod render;
pub mod replicas;
pub mod request;
pub mod status;
#[cfg(test)]
mod testdata;
pub mod text;

/// What went wrong, in words that name the object and the fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An object the command needs does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The command would not do what it says; nothing was created.
    #[error("{0}")]
    Refused(String),
    /// The API server could not be reached or refused a call.
    #[error("{0}")]
    Cluster(String),
    #[error("MSSQLServerOpsRequest {name} failed: {message}")]
    Failed { name: String, message: String },
    #[error("MSSQLServerOpsRequest {name} was skipped: {message}")]
    Skipped { name: String, message: String },
    #[error("cannot print the report: {0}")]
    Output(String),
    /// Whoever read the output closed it.
    #[error("the output was closed")]
    Closed,
}

impl From<std::io::Error> for Error {
    fn from(error: std::io::Error) -> Self {
        match error.kind() {
            std::io::ErrorKind::BrokenPipe => Self::Closed,
            _ => Self::Output(error.to_string()),
        }
    }
}

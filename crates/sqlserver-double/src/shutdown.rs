//! Waiting for SIGTERM (what Kubernetes sends at pod deletion) or SIGINT. The double runs as PID
//! 1 in its container, where the kernel ignores signals that have no handler, so it must install
//! one; tokio's signal driver does that without unsafe code.

use std::io;

use tokio::runtime::Runtime;
use tokio::signal::unix::{Signal, SignalKind, signal};

/// Installed handlers. Install them before announcing readiness, so that no SIGTERM is lost.
pub struct Signals {
    runtime: Runtime,
    terminate: Signal,
    interrupt: Signal,
}

impl Signals {
    pub fn install() -> io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (terminate, interrupt) = {
            let _context = runtime.enter();
            (
                signal(SignalKind::terminate())?,
                signal(SignalKind::interrupt())?,
            )
        };
        Ok(Self {
            runtime,
            terminate,
            interrupt,
        })
    }

    /// Blocks until SIGTERM or SIGINT; returns the signal's name.
    pub fn wait(mut self) -> &'static str {
        self.runtime.block_on(async {
            tokio::select! {
                _ = self.terminate.recv() => "SIGTERM",
                _ = self.interrupt.recv() => "SIGINT",
            }
        })
    }
}

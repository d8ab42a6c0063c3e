//! TEST-ONLY fault knobs. Nothing here exists in SQL Server: they let tests make the double
//! misbehave the way a real server sometimes does, to prove that the operator notices.
//!
//! The knobs live in `<data dir>/double-faults`, one per line (`#` starts a comment):
//!
//! - `serve-first-certificate`: at start, the double keeps a copy of the certificate and key it
//!   serves the first time it sees the knob (`<data dir>/first-tls.crt` and `first-tls.key`, mode
//!   0600) and from then on serves that copy, whatever `tlscert`/`tlskey` say. This is a server
//!   that keeps presenting an old certificate after a restart (for example, one whose certificate
//!   store was not refreshed).
//! - `slow-seed`: as a secondary, the double takes [`SLOW_SEED_DELAY`] longer to write each
//!   database its primary seeds it with, as on a slow disk or a busy machine, so that a test can
//!   watch both replicas while a seed is under way.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const FILE_NAME: &str = "double-faults";
pub const SERVE_FIRST_CERTIFICATE: &str = "serve-first-certificate";
pub const SLOW_SEED: &str = "slow-seed";
/// Longer than the coordinator's 1 s probe deadline: a server that blocked its state queries
/// for a whole seed would miss it.
pub const SLOW_SEED_DELAY: Duration = Duration::from_millis(1500);
pub const FIRST_CERT: &str = "first-tls.crt";
pub const FIRST_KEY: &str = "first-tls.key";

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    pub serve_first_certificate: bool,
    pub slow_seed: bool,
    /// Lines that name no knob; start-up prints them so a typo is visible.
    pub unknown: Vec<String>,
}

impl Faults {
    pub fn parse(text: &str) -> Self {
        let mut faults = Self::default();
        for line in text.lines().map(str::trim) {
            match line {
                "" => {}
                _ if line.starts_with('#') => {}
                SERVE_FIRST_CERTIFICATE => faults.serve_first_certificate = true,
                SLOW_SEED => faults.slow_seed = true,
                other => faults.unknown.push(other.to_owned()),
            }
        }
        faults
    }

    /// The knobs in `data_dir`; none when the file does not exist.
    pub fn read(data_dir: &Path) -> io::Result<Self> {
        match fs::read_to_string(data_dir.join(FILE_NAME)) {
            Ok(text) => Ok(Self::parse(&text)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e),
        }
    }
}

/// Where `serve-first-certificate` keeps its copy.
pub fn first_certificate_paths(data_dir: &Path) -> (PathBuf, PathBuf) {
    (data_dir.join(FIRST_CERT), data_dir.join(FIRST_KEY))
}

/// The saved copy, if both files are there.
pub fn saved_first_certificate(data_dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let (cert, key) = first_certificate_paths(data_dir);
    (cert.is_file() && key.is_file()).then_some((cert, key))
}

/// Saves the certificate and key served now as the first ones (mode 0600, replacing a half
/// copy left by an interrupted save).
pub fn save_first_certificate(data_dir: &Path, cert_pem: &[u8], key_pem: &[u8]) -> io::Result<()> {
    let (cert, key) = first_certificate_paths(data_dir);
    for (path, bytes) in [(&key, key_pem), (&cert, cert_pem)] {
        let temporary = path.with_extension("tmp");
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temporary, path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knobs_are_read_line_by_line() {
        assert_eq!(Faults::parse(""), Faults::default());
        let faults = Faults::parse(
            "# test knobs\n  serve-first-certificate  \nserve-first-cert\nslow-seed\n",
        );
        assert!(faults.serve_first_certificate);
        assert!(faults.slow_seed);
        assert_eq!(faults.unknown, ["serve-first-cert"]);
    }
}

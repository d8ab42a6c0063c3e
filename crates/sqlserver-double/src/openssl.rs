//! A TLS handshake by the `openssl s_client` command, for tests.
//!
//! OpenSSL can still offer TLS 1.0 and 1.1 (at security level 0), which rustls cannot: tests use
//! it to show that a server refuses them (and accepts TLS 1.2 or 1.3 from the same client). The
//! handshake is TDS 8.0 style: TLS first, with ALPN `tds/8.0`, no PRELOGIN before it.

use std::net::SocketAddr;
use std::process::{Command, Stdio};

/// How long `openssl s_client` may take, in seconds, before `timeout` ends it.
const TIMEOUT_SECONDS: &str = "20";

/// Runs `timeout 20 openssl s_client -connect ADDR <version_flag> -cipher DEFAULT:@SECLEVEL=0
/// -alpn tds/8.0` with stdin from /dev/null (so it closes right after the handshake), e.g. with
/// `version_flag` `-tls1_1`. Returns whether a TLS session was established, and openssl's stdout
/// followed by its stderr.
///
/// A session counts as established when openssl exits successfully and names the cipher it
/// agreed on (`New, TLSv1.2, Cipher is ECDHE-…`); a failed handshake prints `Cipher is (NONE)`
/// or no such line at all.
///
/// # Panics
///
/// When `timeout` or `openssl` is not installed or cannot be run.
pub fn handshake(addr: SocketAddr, version_flag: &str) -> (bool, String) {
    let output = Command::new("timeout")
        .args([
            TIMEOUT_SECONDS,
            "openssl",
            "s_client",
            "-connect",
            &addr.to_string(),
            version_flag,
            "-cipher",
            "DEFAULT:@SECLEVEL=0",
            "-alpn",
            "tds/8.0",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run `timeout` (coreutils) for `openssl s_client`: {e}"));
    let mut text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    match output.status.code() {
        // timeout's own failures: it could not run openssl (126, 127) or failed itself (125).
        Some(code @ 125..=127) => {
            panic!(
                "`openssl s_client` could not be run (is openssl installed?): timeout exited with \
                 {code}:\n{text}"
            )
        }
        Some(124) => text.push_str(&format!(
            "\n(openssl s_client was stopped after {TIMEOUT_SECONDS} s)\n"
        )),
        _ => {}
    }
    let established = output.status.success() && agreed_cipher(&text).is_some();
    (established, text)
}

/// The cipher in openssl's `New, <protocol>, Cipher is <cipher>` line, unless it is `(NONE)`.
fn agreed_cipher(text: &str) -> Option<&str> {
    text.lines()
        .filter(|line| line.starts_with("New, "))
        .find_map(|line| {
            line.split_once(", Cipher is ")
                .map(|(_, cipher)| cipher.trim())
        })
        .filter(|cipher| !cipher.is_empty() && *cipher != "(NONE)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agreed_cipher_is_read_from_the_session_line() {
        let ok = "---\nNew, TLSv1.2, Cipher is ECDHE-ECDSA-AES256-GCM-SHA384\nServer public key";
        assert_eq!(agreed_cipher(ok), Some("ECDHE-ECDSA-AES256-GCM-SHA384"));
        let failed = "error:0A000410:SSL routines\n---\nNew, (NONE), Cipher is (NONE)\n";
        assert_eq!(agreed_cipher(failed), None);
        assert_eq!(agreed_cipher("connect:errno=111\n"), None);
    }
}

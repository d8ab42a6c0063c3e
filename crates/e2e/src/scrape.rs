//! Reading an operator process's HTTP endpoints (`/metrics`, `/healthz`, `/readyz`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A free local port for an operator's `--listen` (free when asked; nothing else here binds it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free local port")
        .port()
}

/// `GET path` on `127.0.0.1:port`: the status code and body, or why there is none.
pub fn get(port: u16, path: &str) -> Result<(u16, String), String> {
    get_from(SocketAddr::from(([127, 0, 0, 1], port)), path)
}

/// `GET path` on `addr` (an operator's pod on the real node).
pub fn get_from(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    // HTTP/1.0: the server closes the connection after the response, so reading to the end works.
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("not an HTTP response: {response:?}"))?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status code in {head:?}"))?;
    Ok((code, body.to_owned()))
}

/// The value of `series` (a metric name with its labels, exactly as exposed) in `metrics`.
pub fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        line.strip_prefix(series)?
            .strip_prefix(' ')?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_reads_exactly_the_named_series() {
        let text = "# TYPE a counter\na_total{x=\"1\"} 3\na_total{x=\"10\"} 4\nb 2.5\n";
        assert_eq!(value(text, "a_total{x=\"1\"}"), Some(3.0));
        assert_eq!(value(text, "a_total{x=\"10\"}"), Some(4.0));
        assert_eq!(value(text, "b"), Some(2.5));
        assert_eq!(value(text, "a_total"), None);
        assert_eq!(value(text, "c"), None);
    }
}

//! HTTP/1.1 spoken by hand: requests written byte for byte (half-closed if
//! asked) and every response read back until the server closes.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// One response as it came on the wire.
#[derive(Debug, Clone)]
pub struct RawAnswer {
    /// `HTTP/1.1` or `HTTP/1.0`.
    pub version: String,
    pub status: u16,
    /// In order, names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawAnswer {
    /// The first value of `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The body as JSON (`Null` if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// Splits what a server sent into responses, framed by `Content-Length` (a
/// response without one takes the rest). Panics on anything else: the
/// test expected HTTP.
pub fn parse_responses(mut bytes: &[u8]) -> Vec<RawAnswer> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let end = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or_else(|| panic!("no complete head in {:?}", String::from_utf8_lossy(bytes)));
        let head = std::str::from_utf8(&bytes[..end]).expect("ASCII head");
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default().to_owned();
        let status = parts.next().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let headers: Vec<(String, String)> =
            lines.filter_map(|l| l.split_once(':')).map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned())).collect();
        let rest = &bytes[end + 4..];
        let len = headers.iter().find(|(n, _)| n == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(rest.len()).min(rest.len());
        out.push(RawAnswer { version, status, headers, body: rest[..len].to_vec() });
        bytes = &rest[len..];
    }
    out
}

/// Writes `request` to `addr` (then half-closes when `half_close`), and
/// parses what comes back until the server closes (or 10 s pass).
pub async fn exchange(addr: SocketAddr, request: &[u8], half_close: bool) -> Vec<RawAnswer> {
    exchange_on(TcpStream::connect(addr).await.expect("connect"), request, half_close).await
}

/// [`exchange`] over any stream (a TLS one, say).
pub async fn exchange_on<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, request: &[u8], half_close: bool) -> Vec<RawAnswer> {
    // A server that refuses early may stop reading: what it answered still
    // counts, so a failed write is not the test's failure.
    let _ = s.write_all(request).await;
    if half_close {
        let _ = s.shutdown().await;
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let read = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), read).await;
    parse_responses(&got)
}

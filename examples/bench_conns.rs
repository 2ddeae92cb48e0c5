//! Opens N keep-alive HTTP/1.1 connections to the gateway, sends one request
//! on each (so every connection is a served one, not just accepted), then
//! holds them open until the process is killed.
//!
//! `cargo run --release --example bench_conns -- 127.0.0.1:8080 10000 /public/x [ws]`
//!
//! With `ws` each request is a WebSocket upgrade and the connection is held
//! open as an established WebSocket (101 answered, nothing sent after it).

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8080".to_owned());
    let n: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(10_000);
    let path = args.next().unwrap_or_else(|| "/public/x".to_owned());
    let ws = args.next().as_deref() == Some("ws");
    let req = if ws {
        format!("GET {path} HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    } else {
        format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n")
    };
    let want: &[u8] = if ws { b"HTTP/1.1 101" } else { b"HTTP/1.1 200" };
    let mut open = Vec::with_capacity(n);
    let mut buf = vec![0u8; 4096];
    for _ in 0..n {
        let mut s = TcpStream::connect(&addr).await?;
        s.write_all(req.as_bytes()).await?;
        let got = s.read(&mut buf).await?;
        if got == 0 || !buf.starts_with(want) {
            eprintln!("unexpected answer: {}", String::from_utf8_lossy(&buf[..got.min(80)]));
        }
        open.push(s);
    }
    println!("{} connections open", open.len());
    // Hold them until the bench script kills us.
    std::future::pending::<()>().await;
    Ok(())
}

//! WebSockets through the gateway: the HTTP/1.1 Upgrade handshake is
//! authenticated like any request (identity headers reach the upstream,
//! spoofed ones do not), then bytes flow both ways until a side closes.

mod support;

use std::sync::{Arc, Mutex};

use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::json;
use support::front::*;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An upstream that accepts any Upgrade and echoes the bytes it receives.
async fn echo_upstream(seen: Arc<Mutex<Vec<HeaderMap>>>) -> std::net::SocketAddr {
    spawn_server(None, move |mut req: Request<Incoming>| {
        let seen = seen.clone();
        async move {
            seen.lock().unwrap().push(req.headers().clone());
            if req.headers().get("upgrade").is_none() {
                return Response::new(full("not an upgrade"));
            }
            let on_upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(up) = on_upgrade.await {
                    let (mut r, mut w) = tokio::io::split(TokioIo::new(up));
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                    let _ = w.shutdown().await;
                }
            });
            let mut r = Response::new(full(""));
            *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            r.headers_mut().insert("upgrade", HeaderValue::from_static("websocket"));
            r.headers_mut().insert("connection", HeaderValue::from_static("Upgrade"));
            r.headers_mut().insert("sec-websocket-accept", HeaderValue::from_static("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
            r
        }
    })
    .await
}

/// Sends a handshake and reads the response head.
async fn handshake(addr: std::net::SocketAddr, extra: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "GET /ws/chat HTTP/1.1\r\nHost: chat.example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), s.read(&mut byte)).await.expect("head in time").expect("read");
        if n == 0 {
            break;
        }
        head.push(byte[0]);
    }
    (s, String::from_utf8_lossy(&head).into_owned())
}

/// A dev issuer, an echoing WebSocket upstream that records handshakes, and
/// a gateway requiring a token on `/ws/**`.
async fn ws_gateway() -> (authgear_gateway::commands::devissuer::DevIssuer, Arc<Mutex<Vec<HeaderMap>>>, Gw) {
    authgear_gateway::install_crypto_provider();
    let iss = authgear_gateway::commands::devissuer::DevIssuer::start().await.expect("issuer");
    let seen: Arc<Mutex<Vec<HeaderMap>>> = Arc::default();
    let up = echo_upstream(seen.clone()).await;
    let routes = format!("[auth]\nissuer = \"{}\"\n\n[[routes]]\npath = \"/ws/**\"\nauth = \"required\"\n", iss.issuer);
    let gw = start_ready(&public_config(&format!("http://{up}"), "", "", &routes)).await;
    (iss, seen, gw)
}

#[tokio::test]
async fn websocket_echo_through_the_gateway_with_auth() {
    let (iss, seen, gw) = ws_gateway().await;
    let token = iss.mint("ws-user", json!({}));

    let (mut s, head) = handshake(gw.server.addr, &format!("Authorization: Bearer {token}\r\nX-Authgear-User-Id: admin\r\n")).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("upgrade: websocket") && lower.contains("connection: upgrade"), "{head}");
    assert!(lower.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="), "{head}");

    let h = seen.lock().unwrap().last().cloned().expect("the upstream saw the handshake");
    assert_eq!(h["x-authgear-user-id"], "ws-user", "identity from the token, not the client's header");
    assert_eq!(h["upgrade"], "websocket");
    assert_eq!(h["sec-websocket-key"], "dGhlIHNhbXBsZSBub25jZQ==");

    for msg in [&b"hello"[..], b"\x81\x05frame", &[0u8, 255, 1, 254]] {
        s.write_all(msg).await.expect("write");
        let mut back = vec![0u8; msg.len()];
        tokio::time::timeout(std::time::Duration::from_secs(10), s.read_exact(&mut back)).await.expect("echo in time").expect("echo");
        assert_eq!(back, msg);
    }
    // The client closes its side; the upstream closes back; the gateway ends both.
    s.shutdown().await.expect("shutdown");
    let mut rest = Vec::new();
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut rest)).await.expect("close in time").expect("read");
    assert_eq!(n, 0);
}

#[tokio::test]
async fn a_handshake_without_a_valid_token_never_reaches_the_upstream() {
    let (_iss, seen, gw) = ws_gateway().await;

    let (_s, head) = handshake(gw.server.addr, "").await;
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    let (_s, head) = handshake(gw.server.addr, "Authorization: Bearer not.a.token\r\n").await;
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn open_websockets_outlive_the_listener_until_the_grace_period_ends() {
    authgear_gateway::install_crypto_provider();
    let seen: Arc<Mutex<Vec<HeaderMap>>> = Arc::default();
    let up = echo_upstream(seen.clone()).await;
    let text = public_config(&format!("http://{up}"), "", "", PUBLIC_ALL).replace("shutdown_grace = \"5s\"", "shutdown_grace = \"1s\"");
    let gw = start_gateway(&text).await;
    let addr = gw.server.addr;
    let (mut s, head) = handshake(addr, "").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");

    let shutdown = tokio::spawn(gw.server.shutdown());
    // Wait until the listener is closed...
    for _ in 0..500 {
        if TcpStream::connect(addr).await.is_err() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(TcpStream::connect(addr).await.is_err(), "the listener is still open");
    // ...the open socket still works...
    s.write_all(b"still here").await.expect("write");
    let mut back = [0u8; 10];
    tokio::time::timeout(std::time::Duration::from_secs(5), s.read_exact(&mut back)).await.expect("echo in time").expect("echo");
    assert_eq!(&back, b"still here");
    // ...until the grace period ends and it is cut.
    tokio::time::timeout(std::time::Duration::from_secs(10), shutdown).await.expect("shutdown ends").expect("shutdown task");
    let mut rest = Vec::new();
    let r = tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut rest)).await.expect("closed in time");
    assert!(matches!(r, Ok(0) | Err(_)), "the socket is closed after the grace period");
}

//! Upgrade smuggling: only the upgrade protocols a route allows reach the
//! upstream (default `websocket`). An `Upgrade: h2c` is removed with its
//! `HTTP2-Settings`, so an upstream that implements the h2c upgrade
//! (hypercorn here, as Jetty and Go's h2c handler) answers plain HTTP/1.1,
//! and a `101` the gateway did not ask for is never spliced.

mod support;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use support::front::*;
use support::process::hypercorn;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads one response head off `s` (up to the blank line).
async fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match tokio::time::timeout(std::time::Duration::from_secs(10), s.read(&mut byte)).await {
            Ok(Ok(1)) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// What the hypercorn app saw, asked directly (not through the gateway).
async fn app_seen(app: std::net::SocketAddr) -> Vec<Value> {
    let (_, a) = get(&format!("http://{app}/_seen"), &[]).await;
    serde_json::from_str(&a.body).unwrap_or_default()
}

const H2C_REQUEST: &str = "Host: app.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n";

/// After an h2c upgrade, the client would speak HTTP/2 on the same socket:
/// a stream for `/admin/secret` with no token and a forged identity.
async fn try_h2_on(s: TcpStream) -> Option<StatusCode> {
    let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(s)).await.ok()?;
    tokio::spawn(conn);
    let req = Request::builder().uri("http://app.test/admin/secret").header("x-authgear-user-id", "admin").body(Empty::<Bytes>::new()).ok()?;
    let resp = tokio::time::timeout(std::time::Duration::from_secs(5), send.send_request(req)).await.ok()?.ok()?;
    Some(resp.status())
}

async fn h2c_gateway(routes: &str) -> (authgear_gateway::commands::devissuer::DevIssuer, support::process::ChildServer, Gw) {
    authgear_gateway::install_crypto_provider();
    let iss = authgear_gateway::commands::devissuer::DevIssuer::start().await.expect("issuer");
    let app = hypercorn().await;
    let gw = start_ready(&config_text(&iss, app.addr, "", routes)).await;
    (iss, app, gw)
}

const ROUTES_H2C: &str =
    "[[routes]]\npath = \"/public/**\"\nauth = \"public\"\n\n[[routes]]\npath = \"/api/**\"\n\n[[routes]]\npath = \"/admin/**\"\nroles = [\"admin\"]\n";

#[tokio::test]
async fn h2c_upgrade_on_a_public_route_is_not_forwarded_and_never_spliced() {
    let (_iss, app, gw) = h2c_gateway(ROUTES_H2C).await;
    let mut s = TcpStream::connect(gw.server.addr).await.expect("connect");
    s.write_all(format!("GET /public/anything HTTP/1.1\r\n{H2C_REQUEST}").as_bytes()).await.expect("write");
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "the app answered plain HTTP/1.1, no 101: {head}");
    let smuggled = try_h2_on(s).await;
    assert_eq!(smuggled, None, "an HTTP/2 stream got an answer after the handshake");

    let seen = app_seen(app.addr).await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["path"], "/public/anything");
    assert_eq!(seen[0]["http_version"], "1.1");
    assert_eq!(seen[0]["upgrade"], Value::Null, "Upgrade: h2c reached the app");
    assert_eq!(seen[0]["http2_settings"], Value::Null, "HTTP2-Settings reached the app");
    assert!(seen.iter().all(|r| r["path"] != "/admin/secret"), "{seen:?}");
}

#[tokio::test]
async fn h2c_upgrade_with_a_valid_token_is_not_forwarded_either() {
    let (iss, app, gw) = h2c_gateway(ROUTES_H2C).await;
    let token = iss.mint("plain-user", json!({}));
    let mut s = TcpStream::connect(gw.server.addr).await.expect("connect");
    s.write_all(format!("GET /api/x HTTP/1.1\r\nAuthorization: Bearer {token}\r\n{H2C_REQUEST}").as_bytes()).await.expect("write");
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(try_h2_on(s).await, None);
    let seen = app_seen(app.addr).await;
    assert!(seen.iter().all(|r| r["path"] != "/admin/secret" && r["http_version"] == "1.1"), "{seen:?}");
}

#[tokio::test]
async fn curl_style_h2c_upgrade_mixed_with_websocket_offers_only_websocket() {
    authgear_gateway::install_crypto_provider();
    let seen: Arc<Mutex<Vec<HeaderMap>>> = Arc::default();
    let s2 = seen.clone();
    let up = spawn_server(None, move |req: Request<Incoming>| {
        let s3 = s2.clone();
        async move {
            s3.lock().unwrap().push(req.headers().clone());
            Response::new(full("plain"))
        }
    })
    .await;
    let gw = start_ready(&public_config(&format!("http://{up}"), "", "", PUBLIC_ALL)).await;
    let a = raw(gw.server.addr, "GET /x HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings, close\r\nUpgrade: h2c, websocket\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n").await;
    assert_eq!(raw_status(&a), 200, "{a}");
    let h = seen.lock().unwrap().last().cloned().expect("upstream saw it");
    assert_eq!(h.get("upgrade").map(|v| v.to_str().unwrap_or("")), Some("websocket"), "only the allowed protocol is offered: {h:?}");
    assert!(h.get("http2-settings").is_none(), "{h:?}");
}

/// An upstream that answers every request with `101 Switching Protocols`
/// to `protocol` (a misbehaving or hostile app), recording what it saw.
async fn always_switching(protocol: &'static str, seen: Arc<Mutex<Vec<HeaderMap>>>) -> std::net::SocketAddr {
    spawn_server(None, move |mut req: Request<Incoming>| {
        let seen = seen.clone();
        async move {
            seen.lock().unwrap().push(req.headers().clone());
            let on = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(up) = on.await {
                    let mut io = TokioIo::new(up);
                    let _ = io.write_all(b"RAW BYTES FROM THE APP").await;
                }
            });
            let mut r = Response::new(full(""));
            *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            r.headers_mut().insert("upgrade", HeaderValue::from_static(protocol));
            r.headers_mut().insert("connection", HeaderValue::from_static("upgrade"));
            r
        }
    })
    .await
}

#[tokio::test]
async fn an_unasked_101_from_the_upstream_is_a_502() {
    authgear_gateway::install_crypto_provider();
    let seen: Arc<Mutex<Vec<HeaderMap>>> = Arc::default();
    let up = always_switching("h2c", seen.clone()).await;
    let gw = start_ready(&public_config(&format!("http://{up}"), "", "", PUBLIC_ALL)).await;
    let a = raw(gw.server.addr, &format!("GET /public/x HTTP/1.1\r\n{H2C_REQUEST}")).await;
    assert_eq!(raw_status(&a), 502, "{a}");
    assert!(!a.contains("RAW BYTES"), "{a}");
    // A WebSocket handshake that the upstream turns into h2c is refused too.
    let a = raw(gw.server.addr, "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").await;
    assert_eq!(raw_status(&a), 502, "{a}");
    assert!(!a.contains("RAW BYTES"), "{a}");
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn a_route_can_turn_websockets_off() {
    authgear_gateway::install_crypto_provider();
    let seen: Arc<Mutex<Vec<HeaderMap>>> = Arc::default();
    let up = always_switching("websocket", seen.clone()).await;
    let routes = "[[routes]]\npath = \"/nows/**\"\nauth = \"public\"\nupgrades = []\n\n[[routes]]\npath = \"/**\"\nauth = \"public\"\n";
    let gw = start_ready(&public_config(&format!("http://{up}"), "", "", routes)).await;
    let hs = |p: &str| {
        format!("GET {p} HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    };
    let a = raw(gw.server.addr, &hs("/nows/chat")).await;
    assert_eq!(raw_status(&a), 502, "the upgrade was not offered, so the 101 is refused: {a}");
    let h = seen.lock().unwrap().last().cloned().expect("seen");
    assert!(h.get("upgrade").is_none(), "{h:?}");
    // The default route still carries WebSockets.
    let mut s = TcpStream::connect(gw.server.addr).await.expect("connect");
    s.write_all(hs("/chat").as_bytes()).await.expect("write");
    assert!(read_head(&mut s).await.starts_with("HTTP/1.1 101"));
    let mut buf = [0u8; 22];
    tokio::time::timeout(std::time::Duration::from_secs(5), s.read_exact(&mut buf)).await.expect("in time").expect("read");
    assert_eq!(&buf, b"RAW BYTES FROM THE APP");
}

#[test]
fn h2c_cannot_be_allowed_in_the_config() {
    let text = public_config("http://127.0.0.1:9", "", "", "[[routes]]\npath = \"/**\"\nauth = \"public\"\nupgrades = [\"websocket\", \"h2c\"]\n");
    let err = authgear_gateway::Config::from_toml(&text, "t.toml").expect_err("h2c refused");
    let d = err.to_string();
    assert!(d.contains("routes[0].upgrades") && d.contains("h2c"), "{d}");
    let line = text.lines().position(|l| l.starts_with("upgrades")).expect("line") + 1;
    assert!(d.contains(&format!("t.toml:{line}:")), "{d}");
}

#[tokio::test]
async fn the_body_of_a_refused_upgrade_is_json() {
    authgear_gateway::install_crypto_provider();
    let seen: Arc<Mutex<Vec<HeaderMap>>> = Arc::default();
    let up = always_switching("h2c", seen).await;
    let gw = start_ready(&public_config(&format!("http://{up}"), "", "", PUBLIC_ALL)).await;
    let a = send("GET", &gw.url("/x"), &[], b"").await;
    assert_eq!(a.status, StatusCode::BAD_GATEWAY);
    assert_eq!(a.json()["error"], "bad_gateway");
}

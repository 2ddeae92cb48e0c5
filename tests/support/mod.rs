//! Shared test parts: a recording upstream, a gateway launcher and small
//! HTTP client helpers. Everything runs on 127.0.0.1 with OS-assigned ports.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authgear_gateway::commands::devissuer::DevIssuer;
use authgear_gateway::{Config, Server};
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query, exactly as received.
    pub target: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// An upstream that records every request and answers 200 `ok`.
pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// Delay before answering (for timeout tests).
    pub delay: Arc<Mutex<Duration>>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let listener = authgear_gateway::runtime::net::bind_loopback().expect("bind upstream");
        let addr = listener.local_addr().expect("addr");
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let delay: Arc<Mutex<Duration>> = Arc::default();
        let (s2, d2) = (seen.clone(), delay.clone());
        tokio::spawn(async move {
            let builder = auto::Builder::new(TokioExecutor::new());
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (s3, d3) = (s2.clone(), d2.clone());
                let svc = service_fn(move |req: Request<Incoming>| {
                    let (s4, d4) = (s3.clone(), d3.clone());
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let target = parts.uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
                        s4.lock().unwrap().push(Seen { method: parts.method.to_string(), target, headers: parts.headers, body });
                        let d = *d4.lock().unwrap();
                        if !d.is_zero() {
                            tokio::time::sleep(d).await;
                        }
                        let mut r = Response::new(Full::new(Bytes::from_static(b"ok")));
                        r.headers_mut().insert("x-upstream", http::HeaderValue::from_static("yes"));
                        r.headers_mut().insert("connection", http::HeaderValue::from_static("keep-alive, x-upstream-private"));
                        r.headers_mut().insert("x-upstream-private", http::HeaderValue::from_static("secret"));
                        Ok::<_, Infallible>(r)
                    }
                });
                tokio::spawn(builder.serve_connection(TokioIo::new(stream), svc).into_owned());
            }
        });
        Upstream { addr, seen, delay }
    }

    /// Requests seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// The last request seen (panics if none: the test expected one).
    pub fn last(&self) -> Seen {
        self.seen.lock().unwrap().last().cloned().expect("the upstream saw no request")
    }
}

/// A standard config: the issuer, the upstream, `routes` and extra `[auth]`
/// lines. Admin listener on an OS-assigned port, no drain delay. The
/// connect timeout outlasts one dropped SYN (retried after 1 s), so a
/// loaded machine shows up as a slow request, not a 504.
pub fn config_text(issuer: &DevIssuer, upstream: SocketAddr, auth_extra: &str, rest: &str) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"
shutdown_drain = "0s"
shutdown_grace = "5s"

[admin]
listen = "127.0.0.1:0"

[upstream]
url = "http://{upstream}"
timeout = "2s"
connect_timeout = "3s"

[auth]
issuer = "{iss}"
{auth_extra}

{rest}
"#,
        iss = issuer.issuer
    )
}

/// Routes used by most tests.
pub const ROUTES: &str = r#"
[[routes]]
path = "/public/**"
auth = "public"

[[routes]]
path = "/optional/**"
auth = "optional"

[[routes]]
path = "/admin/**"
roles = ["admin"]

[[routes]]
path = "/orders/**"
scopes = ["orders:read"]

[[routes]]
path = "/verified/**"
claims = { "https://authgear.com/claims/user/is_verified" = true }

[[routes]]
path = "/api/**"
methods = ["GET", "POST"]
auth = "required"
"#;

/// A started gateway.
pub struct Gw {
    pub server: Server,
    pub base: String,
    pub admin: String,
}

impl Gw {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }
}

/// Compiles `text` and starts the gateway in-process.
pub async fn start_gateway(text: &str) -> Gw {
    let cfg = Config::from_toml(text, "test.toml").unwrap_or_else(|d| panic!("test config is invalid:\n{d}"));
    let server = authgear_gateway::start(cfg).await.expect("gateway starts");
    let base = format!("http://{}", server.addr);
    let admin = format!("http://{}", server.admin_addr.expect("admin listener"));
    Gw { server, base, admin }
}

/// Starts the gateway and waits until its keys are loaded.
pub async fn start_ready(text: &str) -> Gw {
    let gw = start_gateway(text).await;
    wait_ready(&gw).await;
    gw
}

/// Polls `/readyz` until 200 (fails the test after 10 s).
pub async fn wait_ready(gw: &Gw) {
    for _ in 0..500 {
        if get(&format!("{}/readyz", gw.admin), &[]).await.0 == StatusCode::OK {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("gateway never became ready");
}

/// Starts a dev issuer, a recording upstream and a ready gateway on
/// [`ROUTES`].
pub async fn setup() -> (DevIssuer, Upstream, Gw) {
    authgear_gateway::install_crypto_provider();
    let issuer = DevIssuer::start().await.expect("issuer");
    let upstream = Upstream::start().await;
    let gw = start_ready(&config_text(&issuer, upstream.addr, "", ROUTES)).await;
    (issuer, upstream, gw)
}

fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

/// A response, body read whole.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// Sends a request with any method, headers (repeats allowed) and body.
pub async fn send(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    let mut b = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b.body(Full::new(Bytes::copy_from_slice(body))).expect("request");
    let resp = tokio::time::timeout(Duration::from_secs(20), client().request(req)).await.expect("response in time").expect("response");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    Answer { status: parts.status, headers: parts.headers, body: String::from_utf8_lossy(&body).into_owned() }
}

/// GET with headers; returns status and the whole answer.
pub async fn get(url: &str, headers: &[(&str, &str)]) -> (StatusCode, Answer) {
    let a = send("GET", url, headers, b"").await;
    (a.status, a)
}

/// GET with a bearer token.
pub async fn get_with(url: &str, token: &str) -> Answer {
    let auth = format!("Bearer {token}");
    send("GET", url, &[("authorization", &auth)], b"").await
}

/// Writes raw bytes to `addr` and returns what comes back until the server
/// closes or 2 s pass, so paths reach the gateway exactly as written.
pub async fn raw(addr: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of a raw HTTP/1.1 answer.
pub fn raw_status(answer: &str) -> u16 {
    answer.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

pub mod browser;
pub mod front;
pub mod ingress;
pub mod logout_token;
pub mod obs;
pub mod open_redirect;
pub mod otlp;
pub mod process;
pub mod rawhttp;
pub mod redis_server;
pub mod resolver;
pub mod tls;
pub mod tools;
pub mod webdriver;

/// Raises this process's open-file limit to its hard limit, for tests with
/// a thousand simultaneous connections.
pub fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// The first issuer's key cache counters.
pub fn key_stats(gw: &Gw) -> (u64, u64, u64, u64) {
    use std::sync::atomic::Ordering::Relaxed;
    let snap = gw.server.gateway.snapshot();
    let s = &snap.keys[0].stats;
    (s.fetch_attempts.load(Relaxed), s.fetch_failures.load(Relaxed), s.demand_fetches.load(Relaxed), s.rate_limited.load(Relaxed))
}

/// Polls `check` every 20 ms for up to 10 s; true once it holds.
pub async fn eventually<F, Fut>(mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..500 {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Waits until the first issuer's key cache has recorded a failed fetch.
pub async fn wait_for_fetch_failure(gw: &Gw) {
    assert!(eventually(|| async { key_stats(gw).1 > 0 }).await, "no failed JWKS fetch was recorded");
}

/// The real binary, started on a config file with ports picked for it.
pub struct Binary {
    pub child: std::process::Child,
    pub base: String,
    pub admin: String,
}

impl Binary {
    /// Rewrites the two `127.0.0.1:0` listen addresses of `text` to free
    /// ports (a child process cannot report OS-assigned ones), writes it to
    /// `path`, starts the binary and waits for `/readyz`.
    pub async fn start(text: &str, path: &std::path::Path, stderr: std::process::Stdio) -> Binary {
        let free = || std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port");
        let (port, admin) = (free(), free());
        let text = text.replacen("listen = \"127.0.0.1:0\"", &format!("listen = \"127.0.0.1:{port}\""), 1).replacen(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{admin}\""),
            1,
        );
        std::fs::write(path, text).expect("write config");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_authgear-gateway"))
            .args(["--config", path.to_str().expect("utf-8 path")])
            .env_remove("RUST_LOG")
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn gateway");
        let b = Binary { child, base: format!("http://127.0.0.1:{port}"), admin: format!("http://127.0.0.1:{admin}") };
        let readyz = format!("{}/readyz", b.admin);
        let ready =
            eventually(|| async { tokio::net::TcpStream::connect(("127.0.0.1", admin)).await.is_ok() && get(&readyz, &[]).await.0 == StatusCode::OK }).await;
        assert!(ready, "the gateway binary never became ready");
        b
    }

    /// Sends `sig` (e.g. `libc::SIGHUP`) to the process.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) with our own child's pid.
        let rc = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(rc, 0, "kill failed");
    }
}

/// Standard base64 (with padding), as `cookie_keys` and the issuer's keys are written.
pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

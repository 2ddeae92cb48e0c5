//! `cors_preflight = "allow"`: a CORS preflight on such a route passes
//! without identity, in the proxy and in the forward-auth decision (one
//! `decide()`); everything that merely looks like a preflight is judged
//! like any request. One issuer, app and gateway for the whole binary.

mod support;

use std::sync::OnceLock;

use authgear_gateway::commands::devissuer::DevIssuer;
use support::rawhttp;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ROUTES: &str = r#"
[forward_auth]
listen = "127.0.0.1:0"
trusted_proxies = ["127.0.0.1/32"]
flavour = "nginx"

[[routes]]
path = "/api/**"
auth = "required"
cors_preflight = "allow"

[[routes]]
path = "/admin/**"
auth = "required"
"#;

struct Rig {
    rt: tokio::runtime::Runtime,
    _issuer: DevIssuer,
    app: Upstream,
    gw: Gw,
}

fn rig() -> &'static Rig {
    static RIG: OnceLock<Rig> = OnceLock::new();
    RIG.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        let (issuer, app, gw) = rt.block_on(async {
            authgear_gateway::install_crypto_provider();
            let issuer = DevIssuer::start().await.expect("issuer");
            let app = Upstream::start().await;
            let gw = start_ready(&config_text(&issuer, app.addr, "", ROUTES)).await;
            (issuer, app, gw)
        });
        Rig { rt, _issuer: issuer, app, gw }
    })
}

const ORIGIN: (&str, &str) = ("origin", "https://spa.example.test");
const ACRM: (&str, &str) = ("access-control-request-method", "DELETE");
const SPOOF: (&str, &str) = ("x-authgear-user-id", "admin");

fn proxy(r: &Rig, method: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    r.rt.block_on(send(method, &r.gw.url(path), headers, b""))
}

/// A raw decision request from `local` (127.0.0.1 is trusted, 127.0.0.2 is not).
fn decision(r: &Rig, local: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> rawhttp::RawAnswer {
    let fa = r.gw.server.forward_auth_addr.expect("forward-auth listener");
    let mut req =
        format!("GET /auth HTTP/1.1\r\nHost: gw\r\nConnection: close\r\nX-Original-URL: http://app.example.test{path}\r\nX-Original-Method: {method}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let local: std::net::SocketAddr = format!("{local}:0").parse().expect("addr");
    r.rt.block_on(async move {
        let sock = tokio::net::TcpSocket::new_v4().expect("socket");
        sock.bind(local).expect("bind");
        let mut s = sock.connect(fa).await.expect("connect");
        s.write_all(req.as_bytes()).await.expect("write");
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        rawhttp::parse_responses(&out).remove(0)
    })
}

#[test]
fn a_preflight_on_an_allowing_route_reaches_the_app_without_identity() {
    let r = rig();
    let a = proxy(r, "OPTIONS", "/api/orders", &[ORIGIN, ACRM, SPOOF]);
    assert_eq!(a.status, 200, "{}", a.body);
    let seen = r.app.last();
    assert_eq!((seen.method.as_str(), seen.target.as_str()), ("OPTIONS", "/api/orders"));
    assert!(seen.headers.get("x-authgear-user-id").is_none_or(|v| v.is_empty()), "a client's identity header passed");
    assert_eq!(seen.headers["access-control-request-method"], "DELETE", "the preflight reaches the app whole");
}

#[test]
fn only_a_real_preflight_on_an_allowing_route_skips_authentication() {
    let r = rig();
    // Not a preflight: no Access-Control-Request-Method, no Origin, another method.
    for (method, headers) in [("OPTIONS", vec![ORIGIN]), ("OPTIONS", vec![ACRM]), ("GET", vec![ORIGIN, ACRM]), ("DELETE", vec![ORIGIN, ACRM])] {
        let a = proxy(r, method, "/api/orders", &headers);
        assert_eq!(a.status, 401, "{method} {headers:?}");
    }
    // Two Access-Control-Request-Method headers, or one that is no method.
    assert_eq!(proxy(r, "OPTIONS", "/api/orders", &[ORIGIN, ACRM, ("access-control-request-method", "GET")]).status, 401);
    assert_eq!(proxy(r, "OPTIONS", "/api/orders", &[ORIGIN, ("access-control-request-method", "G T")]).status, 401);
    // A route without cors_preflight judges a preflight like any request.
    assert_eq!(proxy(r, "OPTIONS", "/admin/users", &[ORIGIN, ACRM]).status, 401);
}

#[test]
fn a_forward_auth_preflight_passes_with_every_identity_header_empty() {
    let r = rig();
    let a = decision(r, "127.0.0.1", "OPTIONS", "/api/orders", &[ORIGIN, ACRM]);
    assert_eq!(a.status, 200);
    assert_eq!(a.header("x-authgear-user-id"), Some(""));
    assert_eq!(a.header("x-authgear-session-valid"), Some(""));
    assert_eq!(decision(r, "127.0.0.1", "OPTIONS", "/admin/users", &[ORIGIN, ACRM]).status, 401);
}

#[test]
fn a_preflight_spelling_never_opens_a_protected_request_in_forward_auth() {
    let r = rig();
    // The method is the trusted header's: a GET carrying the preflight
    // headers is a GET, and an OPTIONS without them is judged.
    assert_eq!(decision(r, "127.0.0.1", "GET", "/api/orders", &[ORIGIN, ACRM]).status, 401);
    assert_eq!(decision(r, "127.0.0.1", "OPTIONS", "/api/orders", &[ORIGIN]).status, 401);
    // X-Original-Method: OPTIONS from an address outside trusted_proxies.
    let a = decision(r, "127.0.0.2", "OPTIONS", "/api/orders", &[ORIGIN, ACRM]);
    assert_eq!(a.status, 403);
    assert_eq!(a.header("x-forward-auth-reason"), Some("forward_auth_untrusted_proxy"));
}

#[test]
fn a_wrong_cors_preflight_value_is_a_config_error_naming_key_and_line() {
    let text =
        "[upstream]\nurl = \"http://127.0.0.1:9\"\n[auth]\nissuer = \"https://x.authgear.cloud\"\n[[routes]]\npath = \"/**\"\ncors_preflight = \"yes\"\n";
    let err = authgear_gateway::Config::from_toml(text, "t.toml").err().map(|d| d.to_string()).unwrap_or_default();
    assert!(err.contains("routes[0].cors_preflight") && err.contains(":7"), "{err}");
}

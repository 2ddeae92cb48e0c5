//! The forward-auth endpoint behind a real nginx (`auth_request`, the
//! snippet of docs/FORWARD_AUTH.md) in front of a recording app: nginx
//! asks the gateway about every request, the gateway judges the rebuilt
//! original request by the proxy's own steps. One issuer, app, gateway and
//! nginx for the whole binary.

mod support;

use std::net::SocketAddr;
use std::sync::OnceLock;

use authgear_gateway::commands::devissuer::DevIssuer;
use serde_json::json;
use support::ingress::{self, IDENTITY, LOGIN, LOGIN_CONFIG, ROUTES};
use support::process::{free_port, ChildServer};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Rig {
    rt: tokio::runtime::Runtime,
    issuer: DevIssuer,
    app: Upstream,
    gw: Gw,
    nginx: ChildServer,
}

impl Rig {
    fn fa(&self) -> SocketAddr {
        self.gw.server.forward_auth_addr.expect("forward-auth listener")
    }
}

fn rig() -> &'static Rig {
    static RIG: OnceLock<Rig> = OnceLock::new();
    RIG.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        let (issuer, app, gw, nginx) = rt.block_on(async {
            authgear_gateway::install_crypto_provider();
            let issuer = DevIssuer::start().await.expect("issuer");
            let app = Upstream::start().await;
            let fa = "[forward_auth]\nlisten = \"127.0.0.1:0\"\ntrusted_proxies = [\"127.0.0.1/32\"]\nflavour = \"nginx\"\n";
            let text = config_text(&issuer, app.addr, &format!("login_url = \"{LOGIN}\""), &format!("{fa}\n{LOGIN_CONFIG}\n{ROUTES}"));
            let gw = start_ready(&text).await;
            let nginx = start_nginx(gw.server.forward_auth_addr.expect("forward-auth listener"), app.addr).await;
            (issuer, app, gw, nginx)
        });
        Rig { rt, issuer, app, gw, nginx }
    })
}

async fn start_nginx(gateway: SocketAddr, app: SocketAddr) -> ChildServer {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("agw-fa-nginx-{port}"));
    std::fs::create_dir_all(&dir).expect("nginx dir");
    let mut identity = String::new();
    for (i, h) in IDENTITY.iter().enumerate() {
        identity.push_str(&format!(
            "            auth_request_set $agw_h{i} $upstream_http_{};\n            proxy_set_header {h} $agw_h{i};\n",
            h.replace('-', "_")
        ));
    }
    let conf = include_str!("forward_auth/nginx.conf")
        .replace("{{DIR}}", &dir.display().to_string())
        .replace("{{PORT}}", &port.to_string())
        .replace("{{GATEWAY}}", &gateway.to_string())
        .replace("{{APP}}", &app.to_string())
        .replace("{{IDENTITY}}", &identity);
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).expect("nginx.conf");
    let mut cmd = std::process::Command::new("/usr/sbin/nginx");
    cmd.args(["-p", &dir.display().to_string(), "-c", &path.display().to_string()]);
    ChildServer::start("nginx-forward-auth", cmd, port).await
}

fn via_nginx(r: &Rig, target: &str, headers: &[(&str, &str)]) -> (rawhttp::RawAnswer, Vec<Seen>) {
    ingress::via(&r.rt, r.nginx.addr, &r.app, target, headers)
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

#[test]
fn nginx_passes_a_valid_token_and_the_app_gets_the_gateways_identity() {
    let r = rig();
    let t = r.issuer.mint("user-1", json!({}));
    let auth = bearer(&t);
    let (a, seen) = via_nginx(r, "/api/orders?x=1", &[("authorization", &auth)]);
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target, "/api/orders?x=1");
    assert_eq!(seen[0].headers["x-authgear-user-id"], "user-1");
    assert_eq!(seen[0].headers["x-authgear-session-valid"], "true");
}

#[test]
fn nginx_denies_with_401_and_challenge_or_403_and_the_app_is_not_reached() {
    let r = rig();
    let (a, seen) = via_nginx(r, "/api/orders", &[]);
    assert_eq!(a.status, 401);
    assert!(a.header("www-authenticate").is_some_and(|c| c.starts_with("Bearer")), "RFC 6750 challenge passed on");
    assert!(seen.is_empty());

    let t = r.issuer.mint("user-2", json!({}));
    let auth = bearer(&t);
    let (a, seen) = via_nginx(r, "/admin/panel", &[("authorization", &auth)]);
    assert_eq!(a.status, 403);
    assert!(seen.is_empty());

    let expired = r.issuer.mint("user-3", json!({"exp": 1_000_000, "iat": 999_000}));
    let auth = bearer(&expired);
    assert_eq!(via_nginx(r, "/api/orders", &[("authorization", &auth)]).0.status, 401);
}

#[test]
fn a_client_identity_header_never_reaches_the_app_even_when_the_claim_is_absent() {
    let r = rig();
    let spoofs = [("x-authgear-user-id", "admin"), ("x-authgear-user-roles", "admin"), ("x-authgear-session-amr", "mfa")];
    // Anonymous on a public route: every header's answer is empty.
    let (a, seen) = via_nginx(r, "/public/page", &spoofs);
    assert_eq!(a.status, 200);
    for (name, _) in spoofs {
        assert!(seen[0].headers.get(name).is_none(), "{name} reached the app on a public route");
    }
    // Authenticated, with no roles or amr claim in the token.
    let t = r.issuer.mint("user-4", json!({"amr": null, "https://authgear.com/claims/user/roles": null}));
    let auth = bearer(&t);
    let mut h = spoofs.to_vec();
    h.push(("authorization", &auth));
    let (a, seen) = via_nginx(r, "/api/x", &h);
    assert_eq!(a.status, 200);
    assert_eq!(seen[0].headers.get_all("x-authgear-user-id").iter().collect::<Vec<_>>(), ["user-4"]);
    assert!(seen[0].headers.get("x-authgear-user-roles").is_none(), "client's roles passed");
    assert!(seen[0].headers.get("x-authgear-session-amr").is_none(), "client's amr passed");
}

#[test]
fn every_identity_header_is_present_in_an_allow_answer_empty_when_absent() {
    let r = rig();
    let req = "GET /_agw_auth HTTP/1.1\r\nHost: gw\r\nX-Original-URL: http://app.example.test/public/x\r\nX-Original-Method: GET\r\nConnection: close\r\n\r\n";
    let a = r.rt.block_on(rawhttp::exchange(r.fa(), req.as_bytes(), false)).remove(0);
    assert_eq!(a.status, 200);
    for h in IDENTITY {
        assert_eq!(a.header(h), Some(""), "{h} missing or not empty in an anonymous allow answer");
    }
}

#[test]
fn a_forged_original_url_from_an_untrusted_address_is_refused() {
    let r = rig();
    // From 127.0.0.2: not in trusted_proxies (127.0.0.1/32).
    let fa = r.fa();
    let answer = r.rt.block_on(async move {
        let sock = tokio::net::TcpSocket::new_v4().expect("socket");
        sock.bind("127.0.0.2:0".parse().expect("addr")).expect("bind 127.0.0.2");
        let mut s = sock.connect(fa).await.expect("connect");
        let req = "GET / HTTP/1.1\r\nHost: gw\r\nX-Original-URL: http://app.example.test/public/x\r\nX-Original-Method: GET\r\nConnection: close\r\n\r\n";
        s.write_all(req.as_bytes()).await.expect("write");
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        rawhttp::parse_responses(&out).remove(0)
    });
    assert_eq!(answer.status, 403);
    assert_eq!(answer.header("x-forward-auth-reason"), Some("forward_auth_untrusted_proxy"));

    // Through nginx, a client's own Traefik-style description of a public
    // path is another flavour's header: refused, not believed.
    let (a, seen) = via_nginx(r, "/admin/panel", &[("x-forwarded-uri", "/public/x"), ("x-forwarded-method", "GET")]);
    assert_eq!(a.status, 403);
    assert!(seen.is_empty());
}

#[test]
fn path_tricks_are_judged_on_the_normalized_path() {
    let r = rig();
    for target in ["/public/../admin/panel", "/public/%2e%2e/admin/panel", "/public/..%2fadmin/panel", "/public/%2F../admin/panel", "/public/./../admin/x"] {
        let (a, seen) = via_nginx(r, target, &[]);
        assert!(a.status == 401 || a.status == 403 || a.status == 400, "{target}: {}", a.status);
        assert!(seen.is_empty(), "{target} reached the app");
    }
    // The query and what looks like a fragment are never matched.
    let (a, seen) = via_nginx(r, "/admin/panel?/public/x", &[]);
    assert_eq!(a.status, 401);
    assert!(seen.is_empty());
    // A plain public path passes.
    assert_eq!(via_nginx(r, "/public/ok", &[]).0.status, 200);
}

#[test]
fn a_browser_on_a_login_route_is_sent_to_the_login_page_by_nginx() {
    let r = rig();
    let html = ("accept", "text/html,application/xhtml+xml");
    let (a, seen) = via_nginx(r, "/web/home?tab=1", &[html]);
    assert_eq!(a.status, 302);
    let location = a.header("location").unwrap_or_default();
    assert!(location.starts_with(LOGIN), "{location}");
    assert!(location.contains("%2Fweb%2Fhome"), "return URL is the judged path: {location}");
    assert!(seen.is_empty());
    // An API client on the same route gets the 401.
    assert_eq!(via_nginx(r, "/web/home", &[("accept", "application/json")]).0.status, 401);
}

#[test]
fn decisions_are_counted_and_logged() {
    let r = rig();
    let _ = via_nginx(r, "/api/counted", &[]);
    let metrics = r.rt.block_on(send("GET", &format!("{}/metrics", r.gw.admin), &[], b"")).body;
    let line = metrics.lines().find(|l| l.starts_with("authgear_gateway_forward_auth_decisions_total") && l.contains("result=\"missing_token\""));
    let n: f64 = line.and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    assert!(n >= 1.0, "no missing_token decision counted:\n{metrics}");
}

#[test]
fn a_session_refreshed_during_a_nginx_decision_reaches_the_browser() {
    let r = rig();
    let cookie = ingress::logged_in(&r.rt, &r.issuer, &r.gw);
    ingress::a_refreshed_session_cookie_reaches_the_client(&cookie, &|t, h| via_nginx(r, t, h));
}

#[test]
fn the_login_state_cookie_reaches_the_browser_through_nginx() {
    let r = rig();
    ingress::the_login_state_cookie_reaches_the_browser(&r.issuer, &|t, h| via_nginx(r, t, h));
}

#[test]
fn a_cors_preflight_through_nginx_passes_only_where_the_route_allows_it() {
    let r = rig();
    ingress::a_preflight_passes_only_where_the_route_allows_it(&|m, t, h| ingress::via_method(&r.rt, r.nginx.addr, &r.app, m, t, h));
}

//! The forward-auth endpoint behind a real Envoy 1.40 (`ext_authz` in HTTP
//! mode, the snippet of docs/FORWARD_AUTH.md) in front of a recording app,
//! flavour `envoy` for the decision paths under `/agw-check` (a
//! `[[forward_auth.prefixes]]` entry), `nginx` for the rest of the listener. One issuer, app, gateway and Envoy
//! for the whole binary.

mod support;

use std::net::SocketAddr;
use std::sync::OnceLock;

use authgear_gateway::commands::devissuer::DevIssuer;
use support::ingress::{self, LOGIN, LOGIN_CONFIG, ROUTES};
use support::process::{free_port, ChildServer};
use support::*;

struct Rig {
    rt: tokio::runtime::Runtime,
    issuer: DevIssuer,
    app: Upstream,
    gw: Gw,
    envoy: ChildServer,
    /// Envoy's listener whose ext_authz speaks gRPC.
    grpc: std::net::SocketAddr,
}

fn rig() -> &'static Rig {
    static RIG: OnceLock<Rig> = OnceLock::new();
    RIG.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        let (issuer, app, gw, (envoy, grpc)) = rt.block_on(async {
            authgear_gateway::install_crypto_provider();
            let issuer = DevIssuer::start().await.expect("issuer");
            let app = Upstream::start().await;
            // One listener, two flavours: Envoy's checks under its
            // path_prefix, nginx's everywhere else.
            let fa = "[forward_auth]\nlisten = \"127.0.0.1:0\"\ntrusted_proxies = [\"127.0.0.1/32\"]\nflavour = \"nginx\"\n\n[[forward_auth.prefixes]]\npath = \"/agw-check\"\nflavour = \"envoy\"\n\n[[forward_auth.prefixes]]\npath = \"/envoy.service.auth.v3.Authorization\"\nflavour = \"envoy_grpc\"\n";
            let text = config_text(&issuer, app.addr, &format!("login_url = \"{LOGIN}\""), &format!("{fa}\n{LOGIN_CONFIG}\n{ROUTES}"));
            let gw = start_ready(&text).await;
            let envoy = start_envoy(gw.server.forward_auth_addr.expect("forward-auth listener"), app.addr).await;
            (issuer, app, gw, envoy)
        });
        Rig { rt, issuer, app, gw, envoy, grpc }
    })
}

async fn start_envoy(gateway: SocketAddr, app: SocketAddr) -> (ChildServer, SocketAddr) {
    let port = free_port();
    let grpc_port = free_port();
    let dir = std::env::temp_dir().join(format!("agw-fa-envoy-{port}"));
    std::fs::create_dir_all(&dir).expect("envoy dir");
    let conf = include_str!("forward_auth/envoy.yaml")
        .replace("{{PORT}}", &port.to_string())
        .replace("{{GRPC_PORT}}", &grpc_port.to_string())
        .replace("{{GATEWAY}}", &gateway.to_string())
        .replace("{{GATEWAY_PORT}}", &gateway.port().to_string())
        .replace("{{APP_PORT}}", &app.port().to_string());
    let path = dir.join("envoy.yaml");
    std::fs::write(&path, conf).expect("envoy.yaml");
    let prefix = std::env::var("AGW_DIFF_PREFIX").unwrap_or_else(|_| "/opt/agw-diff".into());
    let bin = std::path::Path::new(&prefix).join("envoy-venv/bin/envoy");
    let mut cmd = std::process::Command::new(bin);
    cmd.args(["-c", &path.display().to_string(), "--concurrency", "1", "--disable-hot-restart", "-l", "warn"]);
    let envoy = ChildServer::start("envoy-forward-auth", cmd, port).await;
    let grpc = SocketAddr::from(([127, 0, 0, 1], grpc_port));
    for _ in 0..300 {
        if tokio::net::TcpStream::connect(grpc).await.is_ok() {
            return (envoy, grpc);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("Envoy's gRPC ext_authz listener never came up");
}

fn via_envoy(r: &Rig, target: &str, headers: &[(&str, &str)]) -> (rawhttp::RawAnswer, Vec<Seen>) {
    ingress::via(&r.rt, r.envoy.addr, &r.app, target, headers)
}

#[test]
fn envoy_passes_a_valid_token_and_the_app_gets_the_gateways_identity() {
    let r = rig();
    ingress::passes_a_valid_token(&r.issuer, &|t, h| via_envoy(r, t, h));
}

#[test]
fn envoy_denies_with_401_and_challenge_or_403_and_the_app_is_not_reached() {
    let r = rig();
    ingress::denies_and_the_app_is_not_reached(&r.issuer, &|t, h| via_envoy(r, t, h));
}

#[test]
fn a_client_identity_header_never_reaches_the_app_through_envoy_even_when_the_claim_is_absent() {
    let r = rig();
    ingress::client_identity_headers_never_reach_the_app(&r.issuer, &|t, h| via_envoy(r, t, h));
}

#[test]
fn a_client_description_of_another_path_is_never_what_envoy_gets_judged() {
    let r = rig();
    // The check request is the original request itself: a client's own
    // X-Original-URL or X-Forwarded-Uri cannot name another path (Envoy
    // does not pass them here; if it did, they would be refused).
    for spoof in [("x-original-url", "http://app.example.test/public/x"), ("x-forwarded-uri", "/public/x")] {
        let (a, seen) = via_envoy(r, "/admin/panel", &[spoof]);
        assert!(matches!(a.status, 400 | 401), "{spoof:?}: {}", a.status);
        assert!(seen.is_empty(), "{spoof:?} reached the app");
    }
}

#[test]
fn path_tricks_through_envoy_are_judged_on_the_normalized_path() {
    let r = rig();
    for target in ["/public/../admin/panel", "/public/%2e%2e/admin/panel", "/public/..%2fadmin/panel", "/public/./../admin/x"] {
        let (a, seen) = via_envoy(r, target, &[]);
        assert!(matches!(a.status, 400 | 401 | 403), "{target}: {}", a.status);
        assert!(seen.is_empty(), "{target} reached the app");
    }
    let (a, seen) = via_envoy(r, "/admin/panel?/public/x", &[]);
    assert_eq!(a.status, 401);
    assert!(seen.is_empty());
    assert_eq!(via_envoy(r, "/public/ok", &[]).0.status, 200);
}

#[test]
fn a_browser_on_a_login_route_gets_the_302_through_envoy() {
    let r = rig();
    let (a, seen) = via_envoy(r, "/web/home?tab=1", &[("accept", "text/html")]);
    assert_eq!(a.status, 302);
    let location = a.header("location").unwrap_or_default();
    assert!(location.starts_with(LOGIN) && location.contains("%2Fweb%2Fhome"), "{location}");
    assert!(seen.is_empty());
}

#[test]
fn a_session_refreshed_during_an_envoy_decision_reaches_the_browser() {
    let r = rig();
    let cookie = ingress::logged_in(&r.rt, &r.issuer, &r.gw);
    ingress::a_refreshed_session_cookie_reaches_the_client(&cookie, &|t, h| via_envoy(r, t, h));
}

#[test]
fn the_login_state_cookie_reaches_the_browser_through_envoy() {
    let r = rig();
    ingress::the_login_state_cookie_reaches_the_browser(&r.issuer, &|t, h| via_envoy(r, t, h));
}

#[test]
fn a_cors_preflight_through_envoy_passes_only_where_the_route_allows_it() {
    let r = rig();
    ingress::a_preflight_passes_only_where_the_route_allows_it(&|m, t, h| ingress::via_method(&r.rt, r.envoy.addr, &r.app, m, t, h));
}

/// A raw decision request straight to the forward-auth listener.
fn decision(r: &Rig, target: &str, headers: &[(&str, &str)]) -> rawhttp::RawAnswer {
    let mut req = format!("GET {target} HTTP/1.1\r\nHost: app.example.test\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let fa = r.gw.server.forward_auth_addr.expect("forward-auth listener");
    r.rt.block_on(rawhttp::exchange(fa, req.as_bytes(), false)).remove(0)
}

#[test]
fn one_listener_reads_each_decision_path_in_its_prefixs_flavour() {
    let r = rig();
    // nginx's description on a path outside the Envoy prefix.
    let nginx = [("x-original-url", "http://app.example.test/public/x"), ("x-original-method", "GET")];
    assert_eq!(decision(r, "/_agw_auth", &nginx).status, 200);
    let a = decision(r, "/_agw_auth", &[("x-original-url", "http://app.example.test/admin/x"), ("x-original-method", "GET")]);
    assert_eq!(a.status, 401);
    // Under the Envoy prefix the check path is the original request: an
    // nginx description there is another flavour's header, refused.
    let a = decision(r, "/agw-check/admin/x", &nginx);
    assert_eq!(a.status, 400);
    assert_eq!(a.header("x-forward-auth-reason"), Some("forward_auth_foreign_header"));
    // And Envoy's own check of a public path passes without any.
    assert_eq!(decision(r, "/agw-check/public/x", &[]).status, 200);
    // A path outside every prefix in the nginx flavour needs nginx's headers.
    assert_eq!(decision(r, "/public/x", &[]).header("x-forward-auth-reason"), Some("forward_auth_missing_header"));
}

fn via_grpc(r: &Rig, target: &str, headers: &[(&str, &str)]) -> (rawhttp::RawAnswer, Vec<Seen>) {
    ingress::via(&r.rt, r.grpc, &r.app, target, headers)
}

#[test]
fn envoy_grpc_check_passes_a_valid_token_with_the_gateways_identity() {
    let r = rig();
    ingress::passes_a_valid_token(&r.issuer, &|t, h| via_grpc(r, t, h));
}

#[test]
fn envoy_grpc_check_denies_with_401_and_challenge_or_403_and_the_app_is_not_reached() {
    let r = rig();
    ingress::denies_and_the_app_is_not_reached(&r.issuer, &|t, h| via_grpc(r, t, h));
}

#[test]
fn a_client_identity_header_never_reaches_the_app_through_envoy_grpc_check() {
    let r = rig();
    ingress::client_identity_headers_never_reach_the_app(&r.issuer, &|t, h| via_grpc(r, t, h));
}

#[test]
fn path_tricks_through_envoy_grpc_check_are_judged_on_the_normalized_path() {
    let r = rig();
    for target in ["/public/../admin/panel", "/public/%2e%2e/admin/panel", "/public/..%2fadmin/panel", "/public/./../admin/x"] {
        let (a, seen) = via_grpc(r, target, &[]);
        assert!(matches!(a.status, 400 | 401 | 403), "{target}: {}", a.status);
        assert!(seen.is_empty(), "{target} reached the app");
    }
    let (a, seen) = via_grpc(r, "/admin/panel?/public/x", &[]);
    assert_eq!(a.status, 401);
    assert!(seen.is_empty());
    assert_eq!(via_grpc(r, "/public/ok", &[]).0.status, 200);
}

#[test]
fn session_cookies_reach_the_browser_through_envoy_grpc_check() {
    let r = rig();
    let cookie = ingress::logged_in(&r.rt, &r.issuer, &r.gw);
    ingress::a_refreshed_session_cookie_reaches_the_client(&cookie, &|t, h| via_grpc(r, t, h));
    ingress::the_login_state_cookie_reaches_the_browser(&r.issuer, &|t, h| via_grpc(r, t, h));
}

#[test]
fn a_grpc_call_other_than_check_or_plain_http_on_the_grpc_path_is_refused() {
    let r = rig();
    // A plain GET, or another method of the service: gRPC UNIMPLEMENTED
    // (trailers-only), never an allow answer with identity headers.
    for path in ["/envoy.service.auth.v3.Authorization/Check", "/envoy.service.auth.v3.Authorization/Other"] {
        let a = decision(r, path, &[("authorization", &format!("Bearer {}", r.issuer.mint("user-9", serde_json::json!({}))))]);
        assert_eq!(a.header("grpc-status"), Some("12"), "{path}");
        assert!(a.header("x-authgear-user-id").is_none(), "{path}");
    }
}

//! The forward-auth endpoint behind a real Caddy 2.6 (`forward_auth` with
//! `copy_headers`, the snippet of docs/FORWARD_AUTH.md) in front of a
//! recording app, flavour `caddy` (Traefik's headers). One issuer, app,
//! gateway and Caddy for the whole binary.

mod support;

use std::net::SocketAddr;
use std::sync::OnceLock;

use authgear_gateway::commands::devissuer::DevIssuer;
use support::ingress::{self, IDENTITY, LOGIN, LOGIN_CONFIG, ROUTES};
use support::process::{free_port, ChildServer};
use support::*;

struct Rig {
    rt: tokio::runtime::Runtime,
    issuer: DevIssuer,
    app: Upstream,
    gw: Gw,
    caddy: ChildServer,
}

fn rig() -> &'static Rig {
    static RIG: OnceLock<Rig> = OnceLock::new();
    RIG.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        let (issuer, app, gw, caddy) = rt.block_on(async {
            authgear_gateway::install_crypto_provider();
            let issuer = DevIssuer::start().await.expect("issuer");
            let app = Upstream::start().await;
            let fa = "[forward_auth]\nlisten = \"127.0.0.1:0\"\ntrusted_proxies = [\"127.0.0.1/32\"]\nflavour = \"caddy\"\n";
            let text = config_text(&issuer, app.addr, &format!("login_url = \"{LOGIN}\""), &format!("{fa}\n{LOGIN_CONFIG}\n{ROUTES}"));
            let gw = start_ready(&text).await;
            let caddy = start_caddy(gw.server.forward_auth_addr.expect("forward-auth listener"), app.addr).await;
            (issuer, app, gw, caddy)
        });
        Rig { rt, issuer, app, gw, caddy }
    })
}

async fn start_caddy(gateway: SocketAddr, app: SocketAddr) -> ChildServer {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("agw-fa-caddy-{port}"));
    std::fs::create_dir_all(&dir).expect("caddy dir");
    // Caddy looks response headers up by their canonical spelling.
    let canonical = |h: &str| h.split('-').map(|w| w[..1].to_uppercase() + &w[1..]).collect::<Vec<_>>().join("-");
    let copy: Vec<String> = IDENTITY.iter().map(|h| format!("\t\t\trequest_header {0} {{rp.header.{0}}}", canonical(h))).collect();
    let conf = include_str!("forward_auth/Caddyfile")
        .replace("{{DIR}}", &dir.display().to_string())
        .replace("{{PORT}}", &port.to_string())
        .replace("{{GATEWAY}}", &gateway.to_string())
        .replace("{{APP}}", &app.to_string())
        .replace("{{COPY}}", &copy.join("\n"));
    let path = dir.join("Caddyfile");
    std::fs::write(&path, conf).expect("Caddyfile");
    let mut cmd = std::process::Command::new("/usr/bin/caddy");
    cmd.args(["run", "--adapter", "caddyfile", "--config", &path.display().to_string()])
        .env("HOME", &dir)
        .env("XDG_DATA_HOME", &dir)
        .env("XDG_CONFIG_HOME", &dir);
    ChildServer::start("caddy-forward-auth", cmd, port).await
}

fn via_caddy(r: &Rig, target: &str, headers: &[(&str, &str)]) -> (rawhttp::RawAnswer, Vec<Seen>) {
    ingress::via(&r.rt, r.caddy.addr, &r.app, target, headers)
}

#[test]
fn caddy_passes_a_valid_token_and_the_app_gets_the_gateways_identity() {
    let r = rig();
    ingress::passes_a_valid_token(&r.issuer, &|t, h| via_caddy(r, t, h));
}

#[test]
fn caddy_denies_with_401_and_challenge_or_403_and_the_app_is_not_reached() {
    let r = rig();
    ingress::denies_and_the_app_is_not_reached(&r.issuer, &|t, h| via_caddy(r, t, h));
}

#[test]
fn a_client_identity_header_never_reaches_the_app_through_caddy_even_when_the_claim_is_absent() {
    let r = rig();
    ingress::client_identity_headers_never_reach_the_app(&r.issuer, &|t, h| via_caddy(r, t, h));
}

#[test]
fn a_client_x_original_url_passed_through_by_caddy_is_refused() {
    let r = rig();
    // Caddy passes a client's own X-Original-URL to the auth service: in
    // the caddy flavour it is another flavour's header, so it is refused.
    let (a, seen) = via_caddy(r, "/admin/panel", &[("x-original-url", "http://app.example.test/public/x"), ("x-original-method", "GET")]);
    assert_eq!(a.status, 400);
    assert!(seen.is_empty());
    // A client's own X-Forwarded-Uri is overwritten by Caddy: the real path is judged.
    let (a, seen) = via_caddy(r, "/admin/panel", &[("x-forwarded-uri", "/public/x"), ("x-forwarded-method", "GET")]);
    assert_eq!(a.status, 401);
    assert!(seen.is_empty());
}

#[test]
fn path_tricks_through_caddy_are_judged_on_the_normalized_path() {
    let r = rig();
    for target in ["/public/../admin/panel", "/public/%2e%2e/admin/panel", "/public/..%2fadmin/panel", "/public/./../admin/x"] {
        let (a, seen) = via_caddy(r, target, &[]);
        assert!(matches!(a.status, 400 | 401 | 403), "{target}: {}", a.status);
        assert!(seen.is_empty(), "{target} reached the app");
    }
    let (a, seen) = via_caddy(r, "/admin/panel?/public/x", &[]);
    assert_eq!(a.status, 401);
    assert!(seen.is_empty());
    assert_eq!(via_caddy(r, "/public/ok", &[]).0.status, 200);
}

#[test]
fn a_browser_on_a_login_route_gets_the_302_through_caddy() {
    let r = rig();
    let (a, seen) = via_caddy(r, "/web/home?tab=1", &[("accept", "text/html")]);
    assert_eq!(a.status, 302);
    let location = a.header("location").unwrap_or_default();
    assert!(location.starts_with(LOGIN) && location.contains("%2Fweb%2Fhome"), "{location}");
    assert!(seen.is_empty());
}

#[test]
fn a_session_refreshed_during_a_caddy_decision_reaches_the_browser() {
    let r = rig();
    let cookie = ingress::logged_in(&r.rt, &r.issuer, &r.gw);
    ingress::a_refreshed_session_cookie_reaches_the_client(&cookie, &|t, h| via_caddy(r, t, h));
}

#[test]
fn the_login_state_cookie_reaches_the_browser_through_caddy() {
    let r = rig();
    ingress::the_login_state_cookie_reaches_the_browser(&r.issuer, &|t, h| via_caddy(r, t, h));
}

#[test]
fn a_cors_preflight_through_caddy_passes_only_where_the_route_allows_it() {
    let r = rig();
    ingress::a_preflight_passes_only_where_the_route_allows_it(&|m, t, h| ingress::via_method(&r.rt, r.caddy.addr, &r.app, m, t, h));
}

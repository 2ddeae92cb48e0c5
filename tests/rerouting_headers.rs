//! Headers that re-route a request inside the app never reach it: a client
//! cannot be judged for one path and served another (`X-Original-URL`,
//! `X-Rewrite-URL` for IIS URL Rewrite, Laminas, old Symfony), nor build
//! the app's URLs and path base (`X-Forwarded-Prefix` for Spring, ASP.NET,
//! Werkzeug's ProxyFix), in any spelling. Removals are counted.

mod support;

use http::StatusCode;
use serde_json::json;
use support::*;

const REROUTING: &[(&str, &str)] = &[
    ("X-Original-URL", "/admin/users"),
    ("X-Rewrite-URL", "/admin/users"),
    ("x_original_url", "/admin/users"),
    ("X.Rewrite.Url", "/admin/users"),
    ("X-Original-URI", "/admin/users"),
];

const FORWARDED: &[(&str, &str)] = &[
    ("X-Forwarded-Prefix", "/admin"),
    ("X-Forwarded-Path", "/admin/users"),
    ("X-Forwarded-Uri", "/admin/users"),
    ("X-Forwarded-Port", "8443"),
    ("X_Forwarded_Host", "admin.example.test"),
    ("X-Forwarded-Scheme", "https"),
    ("True-Client-IP", "10.0.0.1"),
    ("X-Client-IP", "10.0.0.1"),
];

fn folded(name: &str) -> String {
    name.to_ascii_lowercase().replace(['_', '.'], "-")
}

async fn stripped_count(gw: &Gw, kind: &str) -> f64 {
    let (_, a) = get(&format!("{}/metrics", gw.admin), &[]).await;
    let want = format!("authgear_gateway_stripped_headers_total{{kind=\"{kind}\"}}");
    a.body.lines().find_map(|l| l.strip_prefix(want.as_str())).and_then(|v| v.trim().parse().ok()).unwrap_or(0.0)
}

#[tokio::test]
async fn rerouting_headers_never_reach_the_app_on_public_routes() {
    let (_iss, up, gw) = setup().await;
    let before = stripped_count(&gw, "rerouting").await;
    assert_eq!(send("GET", &gw.url("/public/page"), REROUTING, b"").await.status, StatusCode::OK);
    let seen = up.last();
    assert_eq!(seen.target, "/public/page");
    for n in seen.headers.keys() {
        let f = folded(n.as_str());
        assert!(!["x-original-url", "x-rewrite-url", "x-original-uri"].contains(&f.as_str()), "{n} reached the app");
    }
    assert!(stripped_count(&gw, "rerouting").await >= before + 5.0);
}

#[tokio::test]
async fn rerouting_headers_never_reach_the_app_on_authenticated_routes() {
    let (iss, up, gw) = setup().await;
    let auth = format!("Bearer {}", iss.mint("u", json!({})));
    let mut h = REROUTING.to_vec();
    h.push(("authorization", &auth));
    assert_eq!(send("GET", &gw.url("/api/x"), &h, b"").await.status, StatusCode::OK);
    let seen = up.last();
    assert!(seen.headers.keys().all(|n| !folded(n.as_str()).starts_with("x-original") && !folded(n.as_str()).starts_with("x-rewrite")), "{:?}", seen.headers);
}

#[tokio::test]
async fn client_forwarding_headers_are_all_discarded_by_default() {
    let (_iss, up, gw) = setup().await;
    assert_eq!(send("GET", &gw.url("/public/page"), FORWARDED, b"").await.status, StatusCode::OK);
    let seen = up.last();
    let mut forwarding: Vec<String> = seen.headers.keys().map(|n| n.as_str().to_owned()).filter(|n| folded(n).starts_with("x-forwarded")).collect();
    forwarding.sort();
    assert_eq!(forwarding, ["x-forwarded-for", "x-forwarded-host", "x-forwarded-proto"], "only the gateway's own");
    assert_eq!(seen.headers["x-forwarded-host"], gw.server.addr.to_string());
    assert!(seen.headers.get("true-client-ip").is_none() && seen.headers.get("x-client-ip").is_none());
}

#[tokio::test]
async fn behind_a_trusted_proxy_exactly_the_listed_forwarding_headers_are_kept() {
    authgear_gateway::install_crypto_provider();
    let iss = authgear_gateway::commands::devissuer::DevIssuer::start().await.expect("issuer");
    let up = Upstream::start().await;
    let text = config_text(&iss, up.addr, "", ROUTES).replace("[server]\n", "[server]\ntrust_forwarded_headers = true\n");
    let gw = start_ready(&text).await;
    let mut h = FORWARDED.to_vec();
    h.extend([("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "app.example.com"), ("Forwarded", "for=203.0.113.7")]);
    h.extend(REROUTING);
    assert_eq!(send("GET", &gw.url("/public/page"), &h, b"").await.status, StatusCode::OK);
    let seen = up.last();
    assert_eq!(seen.headers["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    assert_eq!(seen.headers["x-forwarded-proto"], "https");
    assert_eq!(seen.headers["x-forwarded-host"], "app.example.com");
    assert_eq!(seen.headers["x-forwarded-prefix"], "/admin", "kept from a trusted proxy");
    assert_eq!(seen.headers["x-forwarded-port"], "8443");
    assert_eq!(seen.headers["forwarded"], "for=203.0.113.7");
    for gone in
        ["x-forwarded-path", "x-forwarded-uri", "x_forwarded_host", "x-forwarded-scheme", "true-client-ip", "x-client-ip", "x-original-url", "x-rewrite-url"]
    {
        assert!(seen.headers.get(gone).is_none(), "{gone} passed");
    }
}

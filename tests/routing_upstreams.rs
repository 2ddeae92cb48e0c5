//! One gateway in front of several apps: host rules, named upstreams,
//! prefix rewriting and per-route identity headers, audiences and
//! Authorization passing.

mod support;

use authgear_gateway::commands::devissuer::DevIssuer;
use http::StatusCode;
use serde_json::json;
use support::*;

#[tokio::test]
async fn hosts_upstreams_prefixes_and_per_route_overrides() {
    authgear_gateway::install_crypto_provider();
    let iss = DevIssuer::start().await.unwrap();
    let (app, billing) = (Upstream::start().await, Upstream::start().await);
    let rest = format!(
        r#"
[upstreams.billing]
url = "http://{billing}/base"

[[routes]]
name = "billing-api"
host = "billing.example.com"
path = "/api/**"
upstream = "billing"
strip_prefix = "/api"
add_prefix = "/v2"
audiences = ["billing-api"]
pass_authorization = false
headers = {{ "x-billing-user" = "sub" }}

[[routes]]
name = "tenant-sites"
host = "*.sites.example.com"
path = "/**"
auth = "public"

[[routes]]
name = "app"
path = "/api/**"
"#,
        billing = billing.addr
    );
    let gw = start_ready(&config_text(&iss, app.addr, "", &rest)).await;
    let billing_token = iss.mint("payer", json!({"aud": ["billing-api"]}));
    let app_token = iss.mint("user", json!({}));

    // Host + named upstream + strip/add prefix + base path.
    let auth = format!("Bearer {billing_token}");
    let a = send("GET", &gw.url("/api/invoices/7?x=1"), &[("host", "Billing.Example.com:8443"), ("authorization", &auth)], b"").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let seen = billing.last();
    assert_eq!(seen.target, "/base/v2/invoices/7?x=1");
    assert_eq!(seen.headers["x-billing-user"], "payer");
    assert!(seen.headers.get("x-authgear-user-id").is_none(), "the route's own mapping replaces the default");
    assert!(seen.headers.get("authorization").is_none(), "pass_authorization = false");
    assert_eq!(app.count(), 0);

    // The route's audience override: an app token is refused there...
    let auth = format!("Bearer {app_token}");
    let a = send("GET", &gw.url("/api/invoices/7"), &[("host", "billing.example.com"), ("authorization", &auth)], b"").await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    // ...and a billing token is refused on the app's route (default audience).
    let auth_b = format!("Bearer {billing_token}");
    let a = send("GET", &gw.url("/api/x"), &[("host", "app.example.com"), ("authorization", &auth_b)], b"").await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);

    // Another host falls through to the app route, default upstream.
    let a = send("GET", &gw.url("/api/x"), &[("host", "app.example.com"), ("authorization", &auth)], b"").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(app.last().target, "/api/x");
    assert_eq!(app.last().headers["x-authgear-user-id"], "user");
    // The per-route header name is stripped from clients on every route.
    let a = send("GET", &gw.url("/api/x"), &[("host", "app.example.com"), ("authorization", &auth), ("x-billing-user", "admin")], b"").await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(app.last().headers.get("x-billing-user").is_none());

    // Wildcard hosts match subdomains only.
    assert_eq!(send("GET", &gw.url("/page"), &[("host", "acme.sites.example.com")], b"").await.status, StatusCode::OK);
    assert_eq!(send("GET", &gw.url("/page"), &[("host", "sites.example.com")], b"").await.status, StatusCode::NOT_FOUND);
    assert_eq!(send("GET", &gw.url("/page"), &[("host", "evilsites.example.com")], b"").await.status, StatusCode::NOT_FOUND);
}

#[test]
fn unknown_upstream_names_get_a_suggestion() {
    let text = r#"
[upstreams.billing]
url = "http://127.0.0.1:4000"
[auth]
issuer = "https://x.authgear.cloud"
[[routes]]
path = "/**"
upstream = "biling"
"#;
    let err = authgear_gateway::Config::from_toml(text, "t.toml").unwrap_err();
    let d = err.items.iter().find(|d| d.key == "routes[0].upstream").expect("upstream error");
    assert_eq!(d.hint.as_deref(), Some("did you mean `billing`?"));
    assert_eq!(d.line, 8);
}

#[tokio::test]
async fn absolute_form_requests_are_judged_and_forwarded_as_the_same_host() {
    authgear_gateway::install_crypto_provider();
    let iss = DevIssuer::start().await.unwrap();
    let up = Upstream::start().await;
    let rest = r#"
[[routes]]
host = "public.example.com"
path = "/**"
auth = "public"

[[routes]]
host = "admin.example.com"
path = "/**"
roles = ["admin"]
"#;
    let gw = start_ready(&config_text(&iss, up.addr, "", rest)).await;
    // Judged as public.example.com: the upstream must see that host too,
    // never the Host header naming the admin site.
    let req = "GET http://public.example.com/panel HTTP/1.1\r\nHost: admin.example.com\r\nConnection: close\r\n\r\n";
    let answer = raw(gw.server.addr, req).await;
    assert_eq!(raw_status(&answer), 200, "{answer}");
    let seen = up.last();
    assert_eq!(seen.headers["host"], "public.example.com");
    assert_eq!(seen.headers["x-forwarded-host"], "public.example.com");
    // And the other way round: the admin site by authority needs a token.
    let req = "GET http://admin.example.com/panel HTTP/1.1\r\nHost: public.example.com\r\nConnection: close\r\n\r\n";
    assert_eq!(raw_status(&raw(gw.server.addr, req).await), 401);
    assert_eq!(up.count(), 1);
}

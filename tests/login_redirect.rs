//! Browsers that are not logged in are sent to the login page with the URL
//! they wanted; API clients still get 401; the return URL can never point
//! off-site, whatever the request looks like.

mod support;

use authgear_gateway::commands::devissuer::DevIssuer;
use http::StatusCode;
use support::open_redirect::ATTACKS;
use support::resolver::{Session, TestResolver};
use support::*;

const BROWSER: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
const LOGIN: &str = "https://myapp.authgear.cloud/login";

const ROUTES: &str = r#"
[[routes]]
path = "/plain/**"
method = "session"

[[routes]]
path = "/jwt-app/**"
login_redirect = true

[[routes]]
path = "/**"
method = "session"
login_redirect = true
"#;

async fn env(origin: Option<&str>) -> (DevIssuer, Upstream, TestResolver, Gw) {
    authgear_gateway::install_crypto_provider();
    let iss = DevIssuer::start().await.expect("issuer");
    let up = Upstream::start().await;
    let res = TestResolver::start().await;
    let origin_line = origin.map_or(String::new(), |o| format!("login_return_origin = \"{o}\""));
    let auth = format!("resolver_url = \"{}\"\nlogin_url = \"{LOGIN}\"\n{origin_line}", res.url());
    let gw = start_ready(&config_text(&iss, up.addr, &auth, ROUTES)).await;
    (iss, up, res, gw)
}

/// Decodes one percent-encoded query value.
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The decoded return URL of a Location pointing at the login page.
fn return_of(location: &str) -> String {
    let q = location.strip_prefix(&format!("{LOGIN}?redirect_uri=")).unwrap_or_else(|| panic!("Location is not the login page: {location}"));
    assert!(!q.contains(['&', '#', '/', ':']), "return value not fully encoded: {q}");
    decode(q)
}

#[tokio::test]
async fn browsers_are_redirected_and_api_clients_get_401() {
    let (_iss, up, res, gw) = env(Some("https://app.example.com")).await;
    let a = send("GET", &gw.url("/orders/7?tab=items&x=%2F"), &[("accept", BROWSER)], b"").await;
    assert_eq!(a.status, StatusCode::FOUND, "{}", a.body);
    let loc = a.header("location").expect("Location");
    assert_eq!(return_of(loc), "https://app.example.com/orders/7?tab=items&x=%2F");
    assert_eq!(a.header("cache-control"), Some("no-store"));
    // A servlet session id in the URL stays home: the return URL is the judged path.
    let a = send("GET", &gw.url("/orders/7;jsessionid=S3SS10N1D?tab=1"), &[("accept", BROWSER)], b"").await;
    assert_eq!(a.status, StatusCode::FOUND, "{}", a.body);
    assert_eq!(return_of(a.header("location").expect("Location")), "https://app.example.com/orders/7?tab=1");
    // An invalid session cookie: the same.
    let a = send("GET", &gw.url("/orders/7"), &[("accept", BROWSER), ("cookie", "session=revoked")], b"").await;
    assert_eq!(a.status, StatusCode::FOUND);
    // API clients, non-GET requests and routes without login_redirect: 401.
    for (method, path, accept) in
        [("GET", "/orders/7", "application/json"), ("GET", "/orders/7", "*/*"), ("POST", "/orders/7", BROWSER), ("GET", "/plain/7", BROWSER)]
    {
        let a = send(method, &gw.url(path), &[("accept", accept)], b"").await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{method} {path} {accept}");
        assert!(a.header("location").is_none());
    }
    // A JWT route with login_redirect redirects browsers without a token too.
    assert_eq!(send("GET", &gw.url("/jwt-app/x"), &[("accept", BROWSER)], b"").await.status, StatusCode::FOUND);
    // Logged in: forwarded, no redirect.
    res.add("good", Session::user("u-1"));
    assert_eq!(send("GET", &gw.url("/orders/7"), &[("accept", BROWSER), ("cookie", "session=good")], b"").await.status, StatusCode::OK);
    assert_eq!(up.count(), 1);
}

async fn assert_no_open_redirect(gw: &Gw, expect_prefix: &str) {
    let mut redirected = 0;
    for target in ATTACKS {
        for host in ["app.example.com", "evil.com"] {
            let req = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nAccept: {BROWSER}\r\nConnection: close\r\n\r\n");
            let answer = raw(gw.server.addr, &req).await;
            let status = raw_status(&answer);
            match status {
                400 => {}
                302 => {
                    let loc = answer
                        .lines()
                        .find_map(|l| l.strip_prefix("location: ").or_else(|| l.strip_prefix("Location: ")))
                        .unwrap_or_else(|| panic!("302 without Location for {target}"));
                    let ret = return_of(loc.trim());
                    let rest = ret.strip_prefix(expect_prefix).unwrap_or_else(|| panic!("{target} (Host {host}) returns to {ret}"));
                    assert!(!rest.starts_with(['/', '\\']), "{target} (Host {host}) returns to {ret}");
                    assert!(!ret.contains('\\'), "{target}: {ret}");
                    redirected += 1;
                }
                other => panic!("{target} (Host {host}): unexpected status {other}\n{answer}"),
            }
        }
    }
    // Most spellings normalize to a local path and do get a (safe) redirect;
    // the rest are refused as ambiguous paths.
    eprintln!("{redirected} of {} attack requests redirected (safely), the rest refused with 400", ATTACKS.len() * 2);
    assert!(redirected >= 16, "only {redirected} redirects: the test is not exercising the redirect");
}

#[tokio::test]
async fn open_redirect_attempts_are_refused_with_an_origin() {
    let (_iss, _up, _res, gw) = env(Some("https://app.example.com")).await;
    assert_no_open_redirect(&gw, "https://app.example.com/").await;
}

#[tokio::test]
async fn open_redirect_attempts_are_refused_with_a_relative_return() {
    let (_iss, _up, _res, gw) = env(None).await;
    assert_no_open_redirect(&gw, "/").await;
}

//! A real ingress (nginx, Caddy) in front of a recording app, asking the
//! gateway's forward-auth endpoint: the pieces the forward-auth tests share.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use super::rawhttp::{self, RawAnswer};
use authgear_gateway::commands::devissuer::DevIssuer;
use serde_json::json;

use super::browser::Browser;
use super::{Gw, Seen, Upstream};

/// The default identity headers, as the gateway names them.
pub const IDENTITY: &[&str] = &[
    "x-authgear-session-valid",
    "x-authgear-user-id",
    "x-authgear-user-anonymous",
    "x-authgear-user-verified",
    "x-authgear-user-can-reauthenticate",
    "x-authgear-user-roles",
    "x-authgear-session-amr",
    "x-authgear-session-authenticated-at",
];

/// A raw GET through the ingress at `ingress` (so paths travel exactly as
/// written), and what the app saw of it: tests share the app, so each
/// request carries its own `x-test-id` and only the app's requests with
/// it are returned.
pub fn via(rt: &tokio::runtime::Runtime, ingress: SocketAddr, app: &Upstream, target: &str, headers: &[(&str, &str)]) -> (RawAnswer, Vec<Seen>) {
    via_method(rt, ingress, app, "GET", target, headers)
}

/// [`via`] with another method.
pub fn via_method(
    rt: &tokio::runtime::Runtime,
    ingress: SocketAddr,
    app: &Upstream,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> (RawAnswer, Vec<Seen>) {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let id = format!("t{}", NEXT.fetch_add(1, Ordering::Relaxed));
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: app.example.test\r\nConnection: close\r\nx-test-id: {id}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut answers = rt.block_on(rawhttp::exchange(ingress, req.as_bytes(), false));
    assert_eq!(answers.len(), 1, "one answer for {target}");
    let seen = app.seen().into_iter().filter(|s| s.headers.get("x-test-id").is_some_and(|v| v == id.as_str())).collect();
    (answers.remove(0), seen)
}

/// The login page the `login_redirect` routes send browsers to.
pub const LOGIN: &str = "https://login.example.test/login";

/// The routes every ingress test puts behind its ingress: public,
/// role-gated, browser-login and token routes.
pub const ROUTES: &str = r#"
[[routes]]
path = "/public/**"
auth = "public"

[[routes]]
path = "/admin/**"
roles = ["admin"]

[[routes]]
path = "/web/**"
login_redirect = true

[[routes]]
path = "/api/**"
auth = "required"

[[routes]]
path = "/app/**"
method = "login"

[[routes]]
path = "/cors/**"
auth = "required"
cors_preflight = "allow"
"#;

/// The gateway's own browser login for the `/app/**` route: every access
/// token the issuer grants (300 s) is inside `refresh_margin`, so each use
/// of a session refreshes it and the answer carries a new session cookie.
pub const LOGIN_CONFIG: &str = r#"
[login]
public_origin = "https://gw.test"
client_id = "web-app"
client_secret = "s3cret"
cookie_keys = ["k1:BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc="]
refresh_margin = "10m"
"#;

/// The session cookie's name (`__Host-` because the origin is https).
pub const SESSION: &str = "__Host-agw_session";

/// Logs alice in through the gateway's main listener (where the login
/// callback is served) and returns her session as a `Cookie` header.
pub fn logged_in(rt: &tokio::runtime::Runtime, issuer: &DevIssuer, gw: &Gw) -> String {
    rt.block_on(async {
        let mut b = Browser::new(&[("https://gw.test", &gw.base)]);
        let page = b.navigate("https://gw.test/app/start").await;
        assert_eq!(page.status, 200, "the issuer's login page: {}", page.body);
        let click = Browser::link(&page, &issuer.issuer, "Log in as alice");
        assert_eq!(b.navigate(&click).await.status, 200);
        session_cookie(b.jar.iter().map(|c| (c.name.as_str(), c.value.as_str())))
    })
}

fn session_cookie<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let all: Vec<String> = pairs.filter(|(n, v)| n.starts_with(SESSION) && !n.contains("-state-") && !v.is_empty()).map(|(n, v)| format!("{n}={v}")).collect();
    assert!(!all.is_empty(), "no session cookie");
    all.join("; ")
}

/// The `Set-Cookie` lines of an answer.
pub fn set_cookies(a: &RawAnswer) -> Vec<&str> {
    a.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("set-cookie")).map(|(_, v)| v.as_str()).collect()
}

/// A session refreshed during a forward-auth decision: the client's
/// response carries the new session cookie (and the app's answer), and
/// that cookie is the one that works next.
pub fn a_refreshed_session_cookie_reaches_the_client(cookie: &str, via: Via<'_>) {
    let (a, seen) = via("/app/page", &[("cookie", cookie), ("accept", "application/json")]);
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].headers["x-authgear-user-id"], "user-alice");
    let lines = set_cookies(&a);
    let fresh: Vec<&str> = lines.iter().copied().filter(|l| l.starts_with(SESSION)).collect();
    assert!(!fresh.is_empty(), "no session cookie in the client's response: {lines:?}");
    for l in &fresh {
        assert!(l.contains("HttpOnly") && l.contains("Secure"), "attributes kept: {l}");
    }
    let next = session_cookie(fresh.iter().filter_map(|l| l.split(';').next()?.split_once('=')));
    assert_ne!(next, cookie, "the session was not refreshed");
    let (a, seen) = via("/app/again", &[("cookie", &next), ("accept", "application/json")]);
    assert_eq!(a.status, 200, "the refreshed cookie works");
    assert_eq!(seen[0].headers["x-authgear-user-id"], "user-alice");
}

/// A browser without a session on a `method = "login"` route is sent to
/// the issuer, and the state cookie of that login start reaches it.
pub fn the_login_state_cookie_reaches_the_browser(issuer: &DevIssuer, via: Via<'_>) {
    let nav = [("accept", "text/html"), ("sec-fetch-mode", "navigate")];
    let (a, seen) = via("/app/page?tab=1", &nav);
    assert_eq!(a.status, 302, "{}", String::from_utf8_lossy(&a.body));
    assert!(a.header("location").is_some_and(|l| l.starts_with(&issuer.issuer)), "to the issuer: {:?}", a.header("location"));
    let lines = set_cookies(&a);
    assert!(lines.iter().any(|l| l.starts_with(&format!("{SESSION}-state-")) && l.contains("HttpOnly")), "no state cookie: {lines:?}");
    assert!(seen.is_empty());
}

/// What an ingress client does: a GET with these headers, and what the app saw.
pub type Via<'a> = &'a dyn Fn(&str, &[(&str, &str)]) -> (RawAnswer, Vec<Seen>);
/// The same with a method.
pub type ViaMethod<'a> = &'a dyn Fn(&str, &str, &[(&str, &str)]) -> (RawAnswer, Vec<Seen>);

/// A CORS preflight on a `cors_preflight = "allow"` route reaches the app
/// without identity; the same preflight elsewhere, or an OPTIONS that is
/// no preflight, is judged (401) and the app is not reached.
pub fn a_preflight_passes_only_where_the_route_allows_it(via: ViaMethod<'_>) {
    let pre = [("origin", "https://spa.example.test"), ("access-control-request-method", "DELETE"), ("x-authgear-user-id", "admin")];
    let (a, seen) = via("OPTIONS", "/cors/orders", &pre);
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "OPTIONS");
    let id = seen[0].headers.get("x-authgear-user-id").map(|v| v.to_str().unwrap_or("?").to_owned()).unwrap_or_default();
    assert!(id.is_empty(), "a client's identity header reached the app as {id:?}");
    for (method, target, headers) in [("OPTIONS", "/api/orders", &pre[..]), ("OPTIONS", "/cors/orders", &pre[..1]), ("GET", "/cors/orders", &pre[..])] {
        let (a, seen) = via(method, target, headers);
        assert_eq!(a.status, 401, "{method} {target} {headers:?}");
        assert!(seen.is_empty());
    }
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

/// An allowed token reaches the app with the gateway's identity headers.
pub fn passes_a_valid_token(issuer: &DevIssuer, via: Via<'_>) {
    let auth = bearer(&issuer.mint("user-1", json!({})));
    let (a, seen) = via("/api/orders?x=1", &[("authorization", &auth)]);
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target, "/api/orders?x=1");
    assert_eq!(seen[0].headers["x-authgear-user-id"], "user-1");
    assert_eq!(seen[0].headers["x-authgear-session-valid"], "true");
}

/// 401 with the challenge and JSON body, or 403; the app is not reached.
pub fn denies_and_the_app_is_not_reached(issuer: &DevIssuer, via: Via<'_>) {
    let (a, seen) = via("/api/orders", &[]);
    assert_eq!(a.status, 401);
    assert!(a.header("www-authenticate").is_some_and(|c| c.starts_with("Bearer")), "challenge passed to the client");
    assert_eq!(a.json()["error"], "unauthorized", "the JSON body passed to the client");
    assert!(seen.is_empty());
    let auth = bearer(&issuer.mint("user-2", json!({})));
    let (a, seen) = via("/admin/panel", &[("authorization", &auth)]);
    assert_eq!(a.status, 403);
    assert!(seen.is_empty());
}

/// Client-sent identity headers never reach the app, present claim or not.
pub fn client_identity_headers_never_reach_the_app(issuer: &DevIssuer, via: Via<'_>) {
    let spoofs = [("x-authgear-user-id", "admin"), ("x-authgear-user-roles", "admin"), ("x-authgear-session-amr", "mfa")];
    let (a, seen) = via("/public/page", &spoofs);
    assert_eq!(a.status, 200);
    for (name, bad) in spoofs {
        let v = seen[0].headers.get(name).map(|v| v.to_str().unwrap_or("?").to_owned()).unwrap_or_default();
        assert!(v.is_empty(), "{name} reached the app as {v:?} (client sent {bad:?})");
    }
    let auth = bearer(&issuer.mint("user-4", json!({"amr": null, "https://authgear.com/claims/user/roles": null})));
    let mut h = spoofs.to_vec();
    h.push(("authorization", &auth));
    let (a, seen) = via("/api/x", &h);
    assert_eq!(a.status, 200);
    assert_eq!(seen[0].headers.get_all("x-authgear-user-id").iter().collect::<Vec<_>>(), ["user-4"]);
    for name in ["x-authgear-user-roles", "x-authgear-session-amr"] {
        let v = seen[0].headers.get(name).map(|v| v.to_str().unwrap_or("?").to_owned()).unwrap_or_default();
        assert!(v.is_empty(), "{name} reached the app as {v:?}");
    }
}

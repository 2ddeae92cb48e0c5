//! Session mode: Authgear's resolver judges session cookies and opaque
//! tokens, the gateway enforces the verdict, forwards the identity like a
//! JWT's, caches verdicts by hash and never shows the resolver anything but
//! the session credentials.

mod support;

use std::sync::atomic::Ordering::Relaxed;

use authgear_gateway::commands::devissuer::DevIssuer;
use http::StatusCode;
use serde_json::json;
use support::resolver::{Session, TestResolver};
use support::*;

const SESSION_ROUTES: &str = r#"
[[routes]]
path = "/public/**"
auth = "public"

[[routes]]
path = "/optional/**"
auth = "optional"
method = "session"

[[routes]]
path = "/admin/**"
method = "session"
roles = ["admin"]

[[routes]]
path = "/verified/**"
method = "session"
claims = { "https://authgear.com/claims/user/is_verified" = true }

[[routes]]
path = "/mixed/**"
method = "jwt_or_session"

[[routes]]
path = "/jwt/**"

[[routes]]
path = "/api/**"
method = "session"
"#;

struct Env {
    iss: DevIssuer,
    up: Upstream,
    res: TestResolver,
    gw: Gw,
}

async fn env(extra: &str) -> Env {
    authgear_gateway::install_crypto_provider();
    let iss = DevIssuer::start().await.expect("issuer");
    let up = Upstream::start().await;
    let res = TestResolver::start().await;
    let auth = format!("resolver_url = \"{}\"\n{extra}", res.url());
    let gw = start_ready(&config_text(&iss, up.addr, &auth, SESSION_ROUTES)).await;
    Env { iss, up, res, gw }
}

fn resolver_calls(e: &Env) -> u64 {
    let snap = e.gw.server.gateway.snapshot();
    snap.sessions.as_ref().expect("session service").stats.resolver_calls.load(Relaxed)
}

/// The resolver may see its own Host and User-Agent and the credentials,
/// nothing else.
fn assert_only_credentials(seen: &support::resolver::ResolverSeen) {
    for name in seen.headers.keys() {
        assert!(["host", "user-agent", "cookie", "authorization"].contains(&name.as_str()), "the resolver received `{name}`");
    }
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.target, "/_resolver/resolve");
    assert!(seen.body.is_empty(), "the resolver received a body");
}

#[tokio::test]
async fn a_valid_session_cookie_is_forwarded_with_the_resolvers_identity() {
    let e = env("").await;
    e.res.add("good", Session::user("u-1").with_roles(&["admin", "ops"]));
    let cookie = "theme=dark; session=good; tracking=xyz";
    let a = send("GET", &e.gw.url("/api/orders"), &[("cookie", cookie), ("x-authgear-user-id", "admin"), ("x-authgear-user-roles", "root")], b"").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let seen = e.up.last();
    let h = |n: &str| seen.headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
    assert_eq!(h("x-authgear-session-valid").as_deref(), Some("true"));
    assert_eq!(h("x-authgear-user-id").as_deref(), Some("u-1"));
    assert_eq!(h("x-authgear-user-roles").as_deref(), Some("admin,ops"));
    assert_eq!(h("x-authgear-user-verified").as_deref(), Some("true"));
    assert_eq!(h("x-authgear-user-anonymous").as_deref(), Some("false"));
    assert_eq!(h("x-authgear-user-can-reauthenticate").as_deref(), Some("true"));
    assert_eq!(h("x-authgear-session-amr").as_deref(), Some("pwd,otp"));
    assert_eq!(h("x-authgear-session-authenticated-at").as_deref(), Some("1700000000"));
    assert_eq!(seen.headers.get_all("x-authgear-user-id").iter().count(), 1);
    // The app still gets the client's cookies, all of them.
    assert_eq!(h("cookie").as_deref(), Some(cookie));
    // The resolver got the session cookie alone.
    let r = e.res.last();
    assert_only_credentials(&r);
    assert_eq!(r.headers["cookie"], "session=good");
    assert!(r.headers.get("authorization").is_none());
}

#[tokio::test]
async fn the_resolver_never_sees_the_body_or_unrelated_headers() {
    let e = env("").await;
    e.res.add("opaque-token-1", Session::user("u-2"));
    let headers = [
        ("authorization", "Bearer opaque-token-1"),
        ("cookie", "csrf=abc; analytics=1"),
        ("x-api-key", "secret-key"),
        ("x-forwarded-for", "6.6.6.6"),
        ("content-type", "application/json"),
    ];
    let a = send("POST", &e.gw.url("/api/orders"), &headers, b"{\"card\":\"4111111111111111\"}").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let r = e.res.last();
    assert_only_credentials(&r);
    assert_eq!(r.headers["authorization"], "Bearer opaque-token-1");
    assert!(r.headers.get("cookie").is_none(), "non-session cookies reached the resolver");
    // The upstream still gets the body.
    assert_eq!(&e.up.last().body[..], b"{\"card\":\"4111111111111111\"}");
    assert_eq!(e.up.last().headers["x-authgear-user-id"], "u-2");
}

#[tokio::test]
async fn invalid_and_missing_sessions_get_401_and_never_reach_the_app() {
    let e = env("").await;
    e.res.add("good", Session::user("u-1"));
    let bad = send("GET", &e.gw.url("/api/x"), &[("cookie", "session=forged")], b"").await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert_eq!(bad.json()["error"], "invalid_token");
    assert!(bad.header("www-authenticate").is_some_and(|w| w.contains("invalid_token")));
    assert_eq!(e.res.calls(), 1);
    // No session cookie at all: refused without asking Authgear.
    for cookie in ["", "theme=dark", "sessionx=good; other_session=good", "session="] {
        let a = send("GET", &e.gw.url("/api/x"), &[("cookie", cookie)], b"").await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "cookie {cookie:?}");
        assert_eq!(a.json()["error"], "unauthorized");
    }
    assert_eq!(e.res.calls(), 1, "requests without a session cookie were sent to the resolver");
    // An opaque bearer token the resolver does not know.
    let a = send("GET", &e.gw.url("/api/x"), &[("authorization", "Bearer nope")], b"").await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(e.up.count(), 0);
}

#[tokio::test]
async fn role_and_claim_requirements_use_the_resolvers_identity() {
    let e = env("").await;
    e.res.add("admin", Session::user("a").with_roles(&["admin"]));
    e.res.add("user", Session::user("u").with_roles(&["staff"]));
    e.res.add("unverified", Session { verified: false, ..Session::user("n") });
    let get = |c: &'static str, p: &'static str| {
        let url = e.gw.url(p);
        async move { send("GET", &url, &[("cookie", c)], b"").await }
    };
    assert_eq!(get("session=admin", "/admin/panel").await.status, StatusCode::OK);
    let denied = get("session=user", "/admin/panel").await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert_eq!(denied.json()["error"], "insufficient_scope");
    assert_eq!(get("session=user", "/verified/x").await.status, StatusCode::OK);
    assert_eq!(get("session=unverified", "/verified/x").await.status, StatusCode::FORBIDDEN);
    assert_eq!(e.up.count(), 2);
}

#[tokio::test]
async fn cached_verdicts_make_no_resolver_call_and_are_keyed_by_the_whole_credential() {
    let e = env("session_cache_ttl = \"60s\"\nsession_negative_cache_ttl = \"60s\"").await;
    e.res.add("good", Session::user("u-1"));
    for _ in 0..5 {
        assert_eq!(send("GET", &e.gw.url("/api/x"), &[("cookie", "session=good")], b"").await.status, StatusCode::OK);
    }
    assert_eq!(e.res.calls(), 1);
    // Other cookies do not change the key; another session value does.
    assert_eq!(send("GET", &e.gw.url("/api/x"), &[("cookie", "a=1; session=good")], b"").await.status, StatusCode::OK);
    assert_eq!(e.res.calls(), 1);
    for _ in 0..5 {
        assert_eq!(send("GET", &e.gw.url("/api/x"), &[("cookie", "session=bad")], b"").await.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(e.res.calls(), 2, "negative verdicts were not cached");
    // The trade-off: a session revoked at Authgear passes until its entry expires.
    e.res.remove("good");
    assert_eq!(send("GET", &e.gw.url("/api/x"), &[("cookie", "session=good")], b"").await.status, StatusCode::OK);
    let snap = e.gw.server.gateway.snapshot();
    assert!(snap.sessions.as_ref().is_some_and(|s| s.stats.cache_hits.load(Relaxed) >= 10));
}

#[tokio::test]
async fn a_zero_ttl_sees_revocation_at_once() {
    let e = env("session_cache_ttl = \"0s\"").await;
    e.res.add("good", Session::user("u-1"));
    assert_eq!(send("GET", &e.gw.url("/api/x"), &[("cookie", "session=good")], b"").await.status, StatusCode::OK);
    e.res.remove("good");
    assert_eq!(send("GET", &e.gw.url("/api/x"), &[("cookie", "session=good")], b"").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(e.res.calls(), 2);
}

#[tokio::test]
async fn a_thousand_concurrent_requests_with_one_new_cookie_make_one_resolver_call() {
    raise_fd_limit();
    let e = env("session_cache_ttl = \"5m\"").await;
    e.res.add("fresh", Session::user("u-1000"));
    // A slow resolver keeps the first lookup in flight while the rest arrive.
    e.res.set_delay(std::time::Duration::from_millis(300));
    let url = e.gw.url("/api/x");
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { send("GET", &url, &[("cookie", "session=fresh")], b"").await.status })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.expect("task"), StatusCode::OK);
    }
    assert_eq!(e.res.calls(), 1, "concurrent misses were not coalesced");
    assert_eq!(resolver_calls(&e), 1);
    assert_eq!(e.up.count(), 1000);
    let snap = e.gw.server.gateway.snapshot();
    let stats = &snap.sessions.as_ref().expect("sessions").stats;
    eprintln!("1000 requests: 1 resolver call, {} joined it in flight, {} cache hits", stats.joined.load(Relaxed), stats.cache_hits.load(Relaxed));
}

#[tokio::test]
async fn jwt_or_session_verifies_jwts_locally_and_sends_the_rest_to_the_resolver() {
    let e = env("").await;
    let t = e.iss.mint("jwt-user", json!({"https://authgear.com/claims/user/roles": ["admin"]}));
    let a = get_with(&e.gw.url("/mixed/x"), &t).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(e.up.last().headers["x-authgear-user-id"], "jwt-user");
    // A JWT wins over a cookie, and a forged JWT is never sent to Authgear.
    let auth = format!("Bearer {t}");
    assert_eq!(send("GET", &e.gw.url("/mixed/x"), &[("authorization", &auth), ("cookie", "session=whatever")], b"").await.status, StatusCode::OK);
    let forged = format!("{}x", &t[..t.len() - 1]);
    assert_eq!(get_with(&e.gw.url("/mixed/x"), &forged).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(e.res.calls(), 0, "a JWT went to the resolver");
    // Cookies and opaque tokens go to the resolver.
    e.res.add("c", Session::user("cookie-user"));
    e.res.add("opaque", Session::user("opaque-user"));
    assert_eq!(send("GET", &e.gw.url("/mixed/x"), &[("cookie", "session=c")], b"").await.status, StatusCode::OK);
    assert_eq!(e.up.last().headers["x-authgear-user-id"], "cookie-user");
    assert_eq!(get_with(&e.gw.url("/mixed/x"), "opaque").await.status, StatusCode::OK);
    assert_eq!(e.up.last().headers["x-authgear-user-id"], "opaque-user");
    assert_eq!(e.res.calls(), 2);
    // A jwt route never looks at cookies.
    assert_eq!(send("GET", &e.gw.url("/jwt/x"), &[("cookie", "session=c")], b"").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(e.res.calls(), 2);
}

#[tokio::test]
async fn optional_session_routes_treat_a_stale_cookie_as_anonymous() {
    let e = env("").await;
    e.res.add("good", Session::user("u-1"));
    assert_eq!(send("GET", &e.gw.url("/optional/home"), &[("cookie", "session=expired")], b"").await.status, StatusCode::OK);
    assert!(e.up.last().headers.get("x-authgear-user-id").is_none());
    assert_eq!(send("GET", &e.gw.url("/optional/home"), &[("cookie", "session=good")], b"").await.status, StatusCode::OK);
    assert_eq!(e.up.last().headers["x-authgear-user-id"], "u-1");
    // A bad bearer token is still refused.
    assert_eq!(get_with(&e.gw.url("/optional/home"), "opaque-unknown").await.status, StatusCode::UNAUTHORIZED);
}

//! The gateway's own browser login against the development issuer, with a
//! real HTTP client that keeps cookies and follows redirects: login,
//! identity headers, several tabs, logout, and every refusal of issue 16
//! (tampered, truncated, expired, replayed, retired-key and other users'
//! cookies, state and nonce mismatches, ID tokens for another client, open
//! redirects, cross-site logout).

mod support;

use authgear_gateway::commands::devissuer::DevIssuer;
use authgear_gateway::commands::devissuer_oauth::Fault;
use authgear_gateway::config::CookieKey;
use authgear_gateway::login::seal::Sealer;
use http::StatusCode;
use support::browser::Browser;
use support::open_redirect::ATTACKS;
use support::*;

const ORIGIN: &str = "https://gw.test";
const KEY: [u8; 32] = [7; 32];
const SESSION: &str = "__Host-agw_session";

const ROUTES: &str = r#"
[[routes]]
path = "/admin/**"
method = "login"
roles = ["admin"]

[[routes]]
path = "/tokened/**"
method = "login"
pass_access_token = true

[[routes]]
path = "/app/**"
method = "login"

[[routes]]
path = "/**"
auth = "public"
"#;

struct Env {
    iss: DevIssuer,
    up: Upstream,
    gw: Gw,
}

impl Env {
    fn browser(&self) -> Browser {
        Browser::new(&[(ORIGIN, &self.gw.base)])
    }
}

async fn env() -> Env {
    env_with(ROUTES).await
}

async fn env_with(routes: &str) -> Env {
    env_full(routes, "").await
}

async fn env_full(routes: &str, login_extra: &str) -> Env {
    authgear_gateway::install_crypto_provider();
    let iss = DevIssuer::start().await.expect("issuer");
    let up = Upstream::start().await;
    let login = format!(
        "[login]\npublic_origin = \"{ORIGIN}\"\nclient_id = \"web-app\"\nclient_secret = \"s3cret\"\ncookie_keys = [\"k2:{}\", \"k1:{}\"]\npost_logout_redirect_uris = [\"{ORIGIN}/bye\"]\n{login_extra}\n",
        b64(&[9; 32]),
        b64(&KEY)
    );
    let gw = start_ready(&config_text(&iss, up.addr, "", &format!("{login}\n{routes}"))).await;
    Env { iss, up, gw }
}

/// Logs `user` in from `url`: returns the page finally served.
async fn log_in(e: &Env, b: &mut Browser, url: &str, user: &str) -> Answer {
    let page = b.navigate(url).await;
    assert_eq!(page.status, StatusCode::OK, "the issuer's login page: {}", page.body);
    let click = Browser::link(&page, &e.iss.issuer, &format!("Log in as {user}"));
    b.navigate(&click).await
}

#[tokio::test]
async fn login_creates_a_session_that_carries_identity_headers() {
    let e = env().await;
    let mut b = e.browser();
    let done = log_in(&e, &mut b, &format!("{ORIGIN}/app/page?x=1"), "alice").await;
    assert_eq!(done.status, StatusCode::OK);
    assert_eq!(done.body, "ok");
    assert_eq!(b.visited.last().map(String::as_str), Some("https://gw.test/app/page?x=1"), "back where the browser was going");
    let seen = e.up.last();
    assert_eq!(seen.target, "/app/page?x=1");
    assert_eq!(seen.headers.get("x-authgear-user-id").and_then(|v| v.to_str().ok()), Some("user-alice"));
    assert!(seen.headers.get("authorization").is_none(), "no token upstream unless the route asks");
    let cookie = b.cookies(SESSION).into_iter().next().expect("a session cookie");
    for attr in ["Path=/", "HttpOnly", "SameSite=Lax", "Secure"] {
        assert!(cookie.attrs.contains(attr), "{attr} missing in {}", cookie.attrs);
    }
    assert!(b.cookies(&format!("{SESSION}-state-")).is_empty(), "the state cookie is gone after the callback");
    assert_eq!(e.iss.control.oauth.lock().unwrap().last_client_auth.as_deref(), Some("basic"));

    // Client-sent identity headers and Authorization never pass.
    b.request("GET", &format!("{ORIGIN}/app/x"), &[("x-authgear-user-id", "user-bob"), ("authorization", "Bearer forged")]).await;
    let seen = e.up.last();
    assert_eq!(seen.headers.get("x-authgear-user-id").and_then(|v| v.to_str().ok()), Some("user-alice"));
    assert!(seen.headers.get("authorization").is_none());

    // pass_access_token sends the session's access token.
    assert_eq!(b.request("GET", &format!("{ORIGIN}/tokened/y"), &[]).await.status, StatusCode::OK);
    let auth = e.up.last().headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned).expect("bearer upstream");
    assert!(auth.starts_with("Bearer ey"), "{auth}");
}

#[tokio::test]
async fn session_claims_meet_route_requirements_like_a_bearer_token() {
    let e = env().await;
    let mut alice = e.browser();
    log_in(&e, &mut alice, &format!("{ORIGIN}/app/"), "alice").await;
    assert_eq!(alice.request("GET", &format!("{ORIGIN}/admin/panel"), &[]).await.status, StatusCode::OK);
    let mut bob = e.browser();
    log_in(&e, &mut bob, &format!("{ORIGIN}/app/"), "bob").await;
    assert_eq!(bob.request("GET", &format!("{ORIGIN}/admin/panel"), &[]).await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn scripts_and_api_clients_get_401_never_a_redirect() {
    let e = env().await;
    let url = format!("{}/app/data", e.gw.base);
    for headers in [
        vec![("accept", "application/json"), ("sec-fetch-mode", "cors")],
        vec![("accept", "text/html"), ("x-requested-with", "XMLHttpRequest")],
        vec![("accept", "*/*")],
        vec![("accept", "text/html"), ("sec-fetch-mode", "no-cors"), ("sec-fetch-dest", "image")],
    ] {
        let a = send("GET", &url, &headers, b"").await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{headers:?}");
        assert!(a.header("www-authenticate").is_some_and(|w| w.starts_with("Bearer")), "{headers:?}");
        assert!(a.header("location").is_none());
    }
    let post = send("POST", &url, &[("accept", "text/html"), ("sec-fetch-mode", "navigate")], b"a=1").await;
    assert_eq!(post.status, StatusCode::UNAUTHORIZED, "a form POST is never turned into a redirect that loses its body");
    // A browser without Fetch Metadata that prefers HTML is a navigation.
    let old = send("GET", &url, &[("accept", "text/html,*/*;q=0.8")], b"").await;
    assert_eq!(old.status, StatusCode::FOUND);
    let loc = old.header("location").unwrap_or("");
    assert!(loc.starts_with(&format!("{}/oauth2/authorize?", e.iss.issuer)), "{loc}");
    for part in [
        "response_type=code",
        "code_challenge_method=S256",
        "client_id=web-app",
        "nonce=",
        "state=",
        "redirect_uri=https%3A%2F%2Fgw.test%2F_gateway%2Fcallback",
    ] {
        assert!(loc.contains(part), "{part} missing in {loc}");
    }
}

#[tokio::test]
async fn two_tabs_logging_in_at_once_both_succeed_and_pending_flows_are_capped() {
    let e = env().await;
    let mut b = e.browser();
    let first = b.navigate(&format!("{ORIGIN}/app/one")).await;
    let second = b.navigate(&format!("{ORIGIN}/app/two")).await;
    let click1 = Browser::link(&first, &e.iss.issuer, "Log in as alice");
    let click2 = Browser::link(&second, &e.iss.issuer, "Log in as alice");
    // The second tab finishes first, then the first.
    assert_eq!(b.navigate(&click2).await.status, StatusCode::OK);
    assert_eq!(b.visited.last().map(String::as_str), Some("https://gw.test/app/two"));
    assert_eq!(b.navigate(&click1).await.status, StatusCode::OK);
    assert_eq!(b.visited.last().map(String::as_str), Some("https://gw.test/app/one"));

    let mut many = e.browser();
    for i in 0..8 {
        many.navigate(&format!("{ORIGIN}/app/{i}")).await;
    }
    assert_eq!(many.cookies(&format!("{SESSION}-state-")).len(), 5, "max_login_flows (5) state cookies, the oldest dropped");
}

/// A cookie value sealed by hand, for the forged-cookie tests.
fn sealed(key_id: &str, key: [u8; 32], claims: serde_json::Value) -> String {
    let sealer = Sealer::new(&[CookieKey { id: key_id.into(), key }]).expect("sealer");
    sealer.seal(SESSION, claims.to_string().as_bytes()).expect("seal")
}

#[tokio::test]
async fn tampered_truncated_expired_and_retired_key_cookies_are_refused() {
    let e = env().await;
    let mut b = e.browser();
    log_in(&e, &mut b, &format!("{ORIGIN}/app/"), "alice").await;
    let good = b.cookies(SESSION)[0].value.clone();
    let now = authgear_gateway::auth::now_unix();
    let session = |expires: u64, access_exp: u64| {
        serde_json::json!({"id": "forged", "claims": {"sub": "user-alice"}, "access_token": "x", "refresh_token": null,
            "id_token": "x", "access_exp": access_exp, "expires": expires})
    };
    let mut flipped = good.clone().into_bytes();
    let i = flipped.len() - 5;
    flipped[i] = if flipped[i] == b'A' { b'B' } else { b'A' };
    let cases = [
        ("tampered", String::from_utf8(flipped).expect("ascii")),
        ("truncated", good[..good.len() - 30].to_owned()),
        ("expired session", sealed("k1", KEY, session(now - 10, now + 100))),
        ("expired access token", sealed("k1", KEY, session(now + 1000, now - 10))),
        ("retired key", sealed("k0", [1; 32], session(now + 1000, now + 1000))),
        ("key id of a listed key, other material (another deployment)", sealed("k1", [1; 32], session(now + 1000, now + 1000))),
        ("not sealed", "v1.k1.eyJzdWIiOiJ1c2VyLWFsaWNlIn0".to_owned()),
        ("sealed for another cookie (a state cookie's value)", {
            let sealer = Sealer::new(&[CookieKey { id: "k1".into(), key: KEY }]).expect("sealer");
            sealer.seal(&format!("{SESSION}-state-abcdefghij"), session(now + 1000, now + 1000).to_string().as_bytes()).expect("seal")
        }),
    ];
    let before = e.up.count();
    for (what, value) in cases {
        let cookie = format!("{SESSION}={value}");
        let api = send("GET", &e.gw.url("/app/x"), &[("host", "gw.test"), ("cookie", &cookie), ("accept", "application/json")], b"").await;
        assert_eq!(api.status, StatusCode::UNAUTHORIZED, "{what}");
        let nav = send("GET", &e.gw.url("/app/x"), &[("host", "gw.test"), ("cookie", &cookie), ("sec-fetch-mode", "navigate")], b"").await;
        assert_eq!(nav.status, StatusCode::FOUND, "{what}: back to the login");
        assert!(nav.header("location").is_some_and(|l| l.starts_with(&e.iss.issuer)), "{what}");
    }
    assert_eq!(e.up.count(), before, "no forged cookie reached the upstream");
    // A well-sealed session under the current keys works (the test's forgery is sound).
    let fine = format!("{SESSION}={}", sealed("k1", KEY, session(now + 1000, now + 1000)));
    assert_eq!(send("GET", &e.gw.url("/app/x"), &[("host", "gw.test"), ("cookie", &fine)], b"").await.status, StatusCode::OK);
}

/// The gateway keeps cookies it opened (`login/opened.rs`); a kept one
/// still answers to the session's own end, checked on every request.
#[tokio::test]
async fn a_cookie_opened_before_is_refused_once_its_session_ends() {
    let e = env().await;
    let now = authgear_gateway::auth::now_unix();
    let session = serde_json::json!({"id": "short", "claims": {"sub": "user-alice"}, "access_token": "x", "refresh_token": null,
        "id_token": "x", "access_exp": now + 1000, "expires": now + 2});
    let cookie = format!("{SESSION}={}", sealed("k1", KEY, session));
    let url = e.gw.url("/app/x");
    let api =
        |c: String, url: String| async move { send("GET", &url, &[("host", "gw.test"), ("cookie", &c), ("accept", "application/json")], b"").await.status };
    assert_eq!(api(cookie.clone(), url.clone()).await, StatusCode::OK, "opened, and now kept");
    assert_eq!(api(cookie.clone(), url.clone()).await, StatusCode::OK, "served again");
    assert!(
        eventually(|| {
            let (c, u) = (cookie.clone(), url.clone());
            async move { api(c, u).await == StatusCode::UNAUTHORIZED }
        })
        .await,
        "the kept cookie outlived its session"
    );
}

#[tokio::test]
async fn callbacks_without_their_own_state_cookie_or_with_a_wrong_state_are_refused() {
    let e = env().await;
    let mut alice = e.browser();
    let page = alice.navigate(&format!("{ORIGIN}/app/")).await;
    let click = Browser::link(&page, &e.iss.issuer, "Log in as alice");
    let callback = alice.request("GET", &click, &[]).await.header("location").expect("callback URL").to_owned();

    // Another browser (login CSRF: the attacker's callback in the victim's browser).
    let mut other = e.browser();
    other.navigate(&format!("{ORIGIN}/app/")).await;
    let a = other.navigate(&callback).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(other.cookies(SESSION).iter().all(|c| c.name.contains("-state-")), "no session in the other browser");
    assert!(a.body.contains("Try again"), "a plain page with a link, not a loop");

    // A browser with no cookie at all.
    let mut fresh = e.browser();
    assert_eq!(fresh.navigate(&callback).await.status, StatusCode::BAD_REQUEST);

    // Same cookie name (the first 10 characters), different state.
    let (head, state) = callback.split_once("state=").expect("state");
    let forged = format!("{head}state={}{}", &state[..10], "x".repeat(state.len() - 10));
    let mut copy = alice.clone();
    assert_eq!(copy.navigate(&forged).await.status, StatusCode::BAD_REQUEST);

    // The real one works once; replaying it (cookie restored) does not.
    let saved = alice.clone();
    assert_eq!(alice.navigate(&callback).await.status, StatusCode::OK);
    let mut replay = saved.clone();
    let r = replay.navigate(&callback).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "state replay");
    assert!(replay.cookies(SESSION).iter().all(|c| c.name.contains("-state-")));
}

/// The callback URL with its `code` replaced by `code`.
fn with_code(callback: &str, code: &str) -> String {
    let (base, query) = callback.split_once('?').expect("a query");
    let pairs: Vec<(String, String)> =
        form_urlencoded::parse(query.as_bytes()).into_owned().map(|(k, v)| if k == "code" { (k, code.to_owned()) } else { (k, v) }).collect();
    format!("{base}?{}", form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish())
}

#[tokio::test]
async fn a_code_replayed_into_another_login_is_refused_and_makes_no_session() {
    let e = env().await;
    let start = |b: &mut Browser, user: &'static str| {
        let mut b = b.clone();
        let iss = e.iss.issuer.clone();
        async move {
            let page = b.navigate(&format!("{ORIGIN}/app/")).await;
            let click = Browser::link(&page, &iss, &format!("Log in as {user}"));
            let callback = b.request("GET", &click, &[]).await.header("location").expect("callback URL").to_owned();
            (b, callback)
        }
    };
    let (mut alice, callback) = start(&mut e.browser(), "alice").await;
    assert_eq!(alice.navigate(&callback).await.status, StatusCode::OK, "the code works once, in its own login");
    let code =
        callback.split_once('?').and_then(|(_, q)| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "code").map(|(_, v)| v.into_owned())).expect("code");

    // Another browser's own, valid login flow, with the spent code put in:
    // its state and state cookie are right, the code is not (spent, and
    // bound to another PKCE verifier).
    let (mut other, own) = start(&mut e.browser(), "bob").await;
    let r = other.navigate(&with_code(&own, &code)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body.contains("Try again"), "a plain page with a link");
    assert!(other.cookies(SESSION).iter().all(|c| c.name.contains("-state-")), "no session from a replayed code");
}

#[tokio::test]
async fn id_tokens_for_another_client_or_nonce_and_provider_errors_end_in_a_plain_page() {
    let e = env().await;
    for fault in [Fault::IdTokenAudience("other-app".into()), Fault::WrongNonce] {
        e.iss.control.oauth.lock().unwrap().fault = Some(fault.clone());
        let mut b = e.browser();
        let a = log_in(&e, &mut b, &format!("{ORIGIN}/app/"), "alice").await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{fault:?}");
        assert!(b.cookies(SESSION).iter().all(|c| c.name.contains("-state-")), "{fault:?}: no session");
    }
    e.iss.control.oauth.lock().unwrap().fault = None;
    let mut b = e.browser();
    let page = b.navigate(&format!("{ORIGIN}/app/")).await;
    let cancel = Browser::link(&page, &e.iss.issuer, "Cancel");
    let a = b.navigate(&cancel).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(a.body.contains("access_denied") && a.body.contains("Try again"), "{}", a.body);
    assert_eq!(e.up.count(), 0);
}

#[tokio::test]
async fn return_urls_stay_on_the_public_origin_whatever_the_request() {
    let e = env_with("[[routes]]\npath = \"/**\"\nmethod = \"login\"\n").await;
    let mut finished = 0;
    for target in ATTACKS {
        for host in ["gw.test", "evil.com"] {
            let req = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nSec-Fetch-Mode: navigate\r\nConnection: close\r\n\r\n");
            let answer = raw(e.gw.server.addr, &req).await;
            let status = raw_status(&answer);
            if status != 302 {
                assert_eq!(status, 400, "{target} (Host {host})");
                continue;
            }
            let mut b = e.browser();
            let header = |n: &'static str| -> Vec<String> {
                answer.lines().filter_map(|l| l.split_once(": ").filter(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.trim().to_owned())).collect()
            };
            let cookies = header("set-cookie");
            b.absorb("gw.test", cookies.iter().map(String::as_str));
            let loc = header("location").into_iter().next().expect("Location");
            assert!(loc.starts_with(&e.iss.issuer), "{target}: {loc}");
            let page = b.navigate(&loc).await;
            let click = Browser::link(&page, &e.iss.issuer, "Log in as alice");
            b.navigate(&click).await;
            let back = b.visited.iter().rev().find(|u| !u.contains("/_gateway/") && !u.starts_with(&e.iss.issuer)).cloned().unwrap_or_default();
            let rest = back.strip_prefix("https://gw.test/").unwrap_or_else(|| panic!("{target} (Host {host}) returned to {back}"));
            assert!(!rest.starts_with(['/', '\\']) && !back.contains('\\'), "{target} (Host {host}) returned to {back}");
            finished += 1;
        }
    }
    assert!(finished >= 16, "only {finished} logins finished: the corpus is not exercising the flow");
}

#[tokio::test]
async fn logout_revokes_ends_the_session_and_refuses_cross_site_forms() {
    let e = env().await;
    let mut b = e.browser();
    log_in(&e, &mut b, &format!("{ORIGIN}/app/"), "alice").await;
    let copied = b.clone();
    let logout = format!("{ORIGIN}/_gateway/logout");

    let cross = b.request("POST", &logout, &[("origin", "https://evil.test"), ("sec-fetch-site", "cross-site")]).await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
    let no_origin = b.request("POST", &logout, &[]).await;
    assert_eq!(no_origin.status, StatusCode::FORBIDDEN, "neither Origin nor Sec-Fetch-Site");
    assert_eq!(b.request("GET", &format!("{ORIGIN}/app/"), &[]).await.status, StatusCode::OK, "still logged in");

    let form = b.request("GET", &logout, &[]).await;
    assert!(form.body.contains("method=\"post\""), "GET shows a confirmation form");

    let out = b.request("POST", &format!("{logout}?post_logout_redirect_uri=https%3A%2F%2Fevil.test%2F"), &[("origin", ORIGIN)]).await;
    assert_eq!(out.status, StatusCode::FOUND);
    let loc = out.header("location").unwrap_or("").to_owned();
    assert!(loc.starts_with(&format!("{}/oauth2/end_session?id_token_hint=ey", e.iss.issuer)), "{loc}");
    assert!(loc.contains("post_logout_redirect_uri=https%3A%2F%2Fgw.test%2Fbye"), "only the allow-listed URI: {loc}");
    assert!(b.cookies(SESSION).is_empty(), "cookies cleared");
    assert_eq!(e.iss.control.oauth.lock().unwrap().revoked.len(), 1, "refresh token revoked");

    let api = [("accept", "application/json")];
    assert_eq!(b.request("GET", &format!("{ORIGIN}/app/"), &api).await.status, StatusCode::UNAUTHORIZED);
    let mut replay = copied;
    assert_eq!(replay.request("GET", &format!("{ORIGIN}/app/"), &api).await.status, StatusCode::UNAUTHORIZED, "a copied cookie is refused after logout");
}

/// Every access token is inside the refresh margin from the start, so
/// each new session is refreshed on its first use.
async fn refreshing_env() -> Env {
    let e = env_full(ROUTES, "refresh_margin = \"10m\"").await;
    e.iss.control.oauth.lock().unwrap().access_ttl = 300;
    e
}

fn refresh_calls(e: &Env) -> u64 {
    e.iss.control.oauth.lock().unwrap().token_calls.get("refresh_token").copied().unwrap_or(0)
}

#[tokio::test]
async fn concurrent_requests_during_a_refresh_share_one_and_none_is_logged_out() {
    let e = refreshing_env().await;
    let mut b = e.browser();
    log_in(&e, &mut b, &format!("{ORIGIN}/app/"), "alice").await;
    let calls_after_login = refresh_calls(&e);
    let old_cookie = b.cookies(SESSION)[0].value.clone();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let mut tab = b.clone();
        tasks.push(tokio::spawn(async move { tab.request("GET", &format!("{ORIGIN}/app/{i}"), &[("accept", "application/json")]).await }));
    }
    let mut refreshed_cookies = 0;
    for t in tasks {
        let a = t.await.expect("task");
        assert_eq!(a.status, StatusCode::OK, "nobody is logged out by the rotation: {}", a.body);
        refreshed_cookies += a.headers.get_all("set-cookie").iter().filter(|v| v.to_str().unwrap_or("").starts_with(&format!("{SESSION}="))).count();
    }
    assert_eq!(refresh_calls(&e) - calls_after_login, 1, "one refresh for eight concurrent requests");
    assert_eq!(refreshed_cookies, 8, "every response carries the refreshed session");
    // The refreshed session is a new cookie with the same identity.
    let a = b.request("GET", &format!("{ORIGIN}/tokened/x"), &[]).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_ne!(b.cookies(SESSION)[0].value, old_cookie);
    assert_eq!(e.up.last().headers.get("x-authgear-user-id").and_then(|v| v.to_str().ok()), Some("user-alice"));
}

#[tokio::test]
async fn a_refused_refresh_ends_the_session_and_a_down_provider_never_logs_out() {
    let e = refreshing_env().await;
    let mut b = e.browser();
    log_in(&e, &mut b, &format!("{ORIGIN}/app/"), "alice").await;

    // Provider down, access token still valid: served, no logout.
    e.iss.control.oauth.lock().unwrap().fault = Some(Fault::TokenDown);
    let a = b.request("GET", &format!("{ORIGIN}/app/"), &[("accept", "application/json")]).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(!b.cookies(SESSION).is_empty());

    // Provider down, access token expired: 503 with Retry-After, cookie kept.
    let now = authgear_gateway::auth::now_unix();
    let expired = sealed(
        "k1",
        KEY,
        serde_json::json!({"id": "s-expired", "claims": {"sub": "user-alice"}, "access_token": "x", "refresh_token": "rt-unknown",
            "id_token": "x", "access_exp": now - 5, "expires": now + 1000}),
    );
    let cookie = format!("{SESSION}={expired}");
    let a = send("GET", &e.gw.url("/app/"), &[("host", "gw.test"), ("cookie", &cookie), ("accept", "application/json")], b"").await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(a.header("retry-after").is_some());
    assert!(a.header("set-cookie").is_none(), "never a logout while the provider is down");

    // Provider back, refresh token unknown to it: the session ends.
    e.iss.control.oauth.lock().unwrap().fault = None;
    let api = send("GET", &e.gw.url("/app/"), &[("host", "gw.test"), ("cookie", &cookie), ("accept", "application/json")], b"").await;
    assert_eq!(api.status, StatusCode::UNAUTHORIZED);
    let nav = send("GET", &e.gw.url("/app/"), &[("host", "gw.test"), ("cookie", &cookie), ("sec-fetch-mode", "navigate")], b"").await;
    assert_eq!(nav.status, StatusCode::FOUND, "a navigation goes back to the login");
    assert!(nav.header("location").is_some_and(|l| l.starts_with(&e.iss.issuer)));
}

#[test]
fn login_config_errors_name_the_key_and_never_echo_secrets() {
    let base = "[upstream]\nurl = \"http://127.0.0.1:9\"\n[auth]\nissuer = \"https://x.authgear.cloud\"\n";
    let route = "[[routes]]\npath = \"/**\"\nmethod = \"login\"\n";
    let err = |text: &str| authgear_gateway::Config::from_toml(text, "t.toml").err().map(|d| d.to_string()).unwrap_or_default();
    let no_login = err(&format!("{base}{route}"));
    assert!(no_login.contains("routes[0].method") && no_login.contains("[login]"), "{no_login}");
    let bad_key =
        err(&format!("{base}[login]\npublic_origin = \"https://app.example.com\"\nclient_id = \"c\"\ncookie_keys = [\"k1:c2VjcmV0LXNob3J0\"]\n{route}"));
    assert!(bad_key.contains("login.cookie_keys") && bad_key.contains("t.toml:"), "{bad_key}");
    assert!(!bad_key.contains("c2VjcmV0LXNob3J0"), "the key material is not echoed: {bad_key}");
    let good = format!("{base}[login]\npublic_origin = \"http://10.0.0.5:8080\"\nclient_id = \"c\"\ncookie_keys = [\"k1:{}\"]\n{route}", b64(&KEY));
    let cfg = authgear_gateway::Config::from_toml(&good, "t.toml").expect("valid");
    let warnings = cfg.warnings.to_string();
    assert!(warnings.contains("login.public_origin") && warnings.contains("Secure"), "plain http is warned about: {warnings}");
    let login = cfg.login.as_ref().expect("[login]");
    assert_eq!(login.cookie_name, "agw_session", "no __Host- prefix on http");
    assert!(!format!("{login:?}").contains("7, 7"), "Debug never shows key bytes");
}

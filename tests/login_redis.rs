//! The browser login's Redis session store against a real redis-server and
//! the development issuer, with two gateways sharing one Redis as two
//! replicas would: the cookie holds only a sealed random id, logout and
//! back-channel logout end sessions on every replica, one refresh across
//! replicas, Redis down at start and mid-flight (503, never a pass nor a
//! logout, recovery without restart), logout-token rejections, and
//! `idle_timeout` in both stores.

mod support;

use std::time::Duration;

use authgear_gateway::commands::devissuer::{DevIssuer, DevKey};
use authgear_gateway::config::CookieKey;
use authgear_gateway::login::seal::Sealer;
use authgear_gateway::login::store::hashed;
use http::StatusCode;
use serde_json::{json, Value};
use support::browser::Browser;
use support::redis_server::Redis;
use support::*;

const ORIGIN: &str = "https://gw.test";
const SESSION: &str = "__Host-agw_session";
const SEAL_KEY: [u8; 32] = [9; 32];
const API: [(&str, &str); 1] = [("accept", "application/json")];

const ROUTES: &str = r#"
[[routes]]
path = "/app/**"
method = "login"

[[routes]]
path = "/bearer/**"

[[routes]]
path = "/**"
auth = "public"
"#;

struct Env {
    iss: DevIssuer,
    up: Upstream,
    redis: Redis,
    gw: Gw,
    /// A second replica on the same Redis.
    gw2: Gw,
}

fn login_block(store: &str, extra: &str) -> String {
    format!(
        "[login]\npublic_origin = \"{ORIGIN}\"\nclient_id = \"web-app\"\nclient_secret = \"s3cret\"\ncookie_keys = [\"k2:{}\"]\n{store}\n{extra}\n",
        b64(&SEAL_KEY)
    )
}

/// The store lines; `cache` is `redis_cache_ttl` ("0s" in the tests that
/// pin what every replica sees at once).
fn redis_lines(redis: &Redis, cache: &str) -> String {
    format!("store = \"redis\"\nredis_url = \"{}\"\nredis_timeout = \"300ms\"\nredis_cache_ttl = \"{cache}\"", redis.url())
}

async fn env_with(extra: &str) -> Env {
    env_cached(extra, "0s").await
}

async fn env_cached(extra: &str, cache: &str) -> Env {
    authgear_gateway::install_crypto_provider();
    let iss = DevIssuer::start().await.expect("issuer");
    let up = Upstream::start().await;
    let redis = Redis::start().await;
    let text = config_text(&iss, up.addr, "", &format!("{}\n{ROUTES}", login_block(&redis_lines(&redis, cache), extra)));
    let gw = start_ready(&text).await;
    let gw2 = start_ready(&text).await;
    Env { iss, up, redis, gw, gw2 }
}

async fn env() -> Env {
    env_with("").await
}

fn on(gw: &Gw) -> Browser {
    Browser::new(&[(ORIGIN, &gw.base)])
}

/// The same cookies, sent to another replica.
fn copy_to(b: &Browser, gw: &Gw) -> Browser {
    let mut c = on(gw);
    c.jar = b.jar.clone();
    c
}

async fn log_in(iss: &DevIssuer, b: &mut Browser, user: &str) -> Answer {
    let page = b.navigate(&format!("{ORIGIN}/app/page")).await;
    assert_eq!(page.status, StatusCode::OK, "the issuer's login page: {}", page.body);
    let click = Browser::link(&page, &iss.issuer, &format!("Log in as {user}"));
    b.navigate(&click).await
}

async fn user_of(b: &mut Browser, up: &Upstream) -> Result<String, StatusCode> {
    let a = b.request("GET", &format!("{ORIGIN}/app/x"), &API).await;
    if a.status != StatusCode::OK {
        return Err(a.status);
    }
    Ok(up.last().headers.get("x-authgear-user-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned())
}

/// The random id sealed in the browser's session cookie.
fn session_id(b: &Browser) -> String {
    let cookie = b.cookies(SESSION).into_iter().find(|c| c.name == SESSION).expect("a session cookie");
    let sealer = Sealer::new(&[CookieKey { id: "k2".into(), key: SEAL_KEY }]).expect("sealer");
    let plain = sealer.open(SESSION, &cookie.value).expect("the cookie opens");
    let text = String::from_utf8(plain).expect("utf-8");
    text.strip_prefix("rid:").unwrap_or_else(|| panic!("not a sealed id: {text}")).to_owned()
}

/// The stored session of a browser, as JSON.
fn stored(e: &Env, b: &Browser) -> Option<Value> {
    e.redis.get(&format!("agw:s:{}", hashed(&session_id(b)))).map(|t| serde_json::from_str(&t).expect("JSON session"))
}

fn refresh_calls(iss: &DevIssuer) -> u64 {
    iss.control.oauth.lock().unwrap().token_calls.get("refresh_token").copied().unwrap_or(0)
}

#[tokio::test]
async fn the_cookie_holds_only_a_sealed_id_and_logout_deletes_the_session_for_every_replica() {
    let e = env().await;
    let mut b = on(&e.gw);
    assert_eq!(log_in(&e.iss, &mut b, "alice").await.status, StatusCode::OK);
    assert_eq!(user_of(&mut b, &e.up).await.as_deref(), Ok("user-alice"));

    let cookie = b.cookies(SESSION).into_iter().next().expect("cookie").clone();
    for attr in ["Path=/", "HttpOnly", "SameSite=Lax", "Secure"] {
        assert!(cookie.attrs.contains(attr), "{attr} missing in {}", cookie.attrs);
    }
    assert!(cookie.value.len() < 200, "no session data in the cookie: {} bytes", cookie.value.len());
    let id = session_id(&b);
    assert_eq!(id.len(), 43, "256 random bits, base64url");
    let keys = e.redis.keys("agw:s:*");
    assert_eq!(keys, vec![format!("agw:s:{}", hashed(&id))], "stored under the hash of the id, never the id");
    let ttl = e.redis.pttl(&keys[0]);
    assert!(ttl > 0 && ttl <= 12 * 3600 * 1000, "the key expires with the session: {ttl} ms");
    let value = e.redis.get(&keys[0]).expect("value");
    assert!(!value.contains(&id), "the stored session does not hold its own id");
    assert!(value.contains("user-alice"));

    // Another replica serves the same session; a new login is a new id.
    let mut copied = copy_to(&b, &e.gw2);
    assert_eq!(user_of(&mut copied, &e.up).await.as_deref(), Ok("user-alice"));
    let mut other = on(&e.gw2);
    log_in(&e.iss, &mut other, "alice").await;
    assert_ne!(session_id(&other), id, "every login creates a new session");

    let out = b.request("POST", &format!("{ORIGIN}/_gateway/logout"), &[("origin", ORIGIN)]).await;
    assert_eq!(out.status, StatusCode::FOUND);
    assert!(b.cookies(SESSION).is_empty(), "cookies cleared");
    assert_eq!(e.redis.keys("agw:s:*").len(), 1, "the logged-out session is deleted, the other login stays");
    assert_eq!(user_of(&mut copied, &e.up).await, Err(StatusCode::UNAUTHORIZED), "a copied cookie is refused on the other replica");
    assert_eq!(user_of(&mut other, &e.up).await.as_deref(), Ok("user-alice"));
}

#[tokio::test]
async fn two_replicas_refresh_one_session_once() {
    // Access tokens start inside the refresh margin; the refreshed one is not.
    let e = env_with("refresh_margin = \"1m\"").await;
    e.iss.control.oauth.lock().unwrap().access_ttl = 30;
    let mut b = on(&e.gw);
    assert_eq!(log_in(&e.iss, &mut b, "alice").await.status, StatusCode::OK);
    {
        let mut st = e.iss.control.oauth.lock().unwrap();
        st.access_ttl = 600;
        // The token endpoint is slow, so the replicas' refreshes overlap.
        st.token_delay = Duration::from_millis(400);
    }
    let before = refresh_calls(&e.iss);
    let old_rt = stored(&e, &b).and_then(|s| s["refresh_token"].as_str().map(str::to_owned)).expect("refresh token");
    let mut tasks = Vec::new();
    for i in 0..8 {
        let mut c = copy_to(&b, if i % 2 == 0 { &e.gw } else { &e.gw2 });
        tasks.push(tokio::spawn(async move { c.request("GET", &format!("{ORIGIN}/app/r{i}"), &API).await.status }));
    }
    for t in tasks {
        assert_eq!(t.await.expect("task"), StatusCode::OK, "no request is logged out during the refresh");
    }
    assert_eq!(refresh_calls(&e.iss) - before, 1, "one refresh for both replicas");
    let new_rt = stored(&e, &b).and_then(|s| s["refresh_token"].as_str().map(str::to_owned)).expect("refresh token");
    assert_ne!(new_rt, old_rt, "the rotated refresh token is stored");
    e.iss.control.oauth.lock().unwrap().token_delay = Duration::ZERO;
    assert_eq!(user_of(&mut copy_to(&b, &e.gw2), &e.up).await.as_deref(), Ok("user-alice"));
    assert_eq!(refresh_calls(&e.iss) - before, 1, "the refreshed session is fresh on both");
}

fn assert_store_down(a: &Answer, what: &str) {
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{what}: {}", a.body);
    assert!(a.header("retry-after").is_some(), "{what}: Retry-After");
}

#[tokio::test]
async fn redis_down_at_start_refuses_new_sessions_with_503_and_recovers_without_restart() {
    authgear_gateway::install_crypto_provider();
    let iss = DevIssuer::start().await.expect("issuer");
    let up = Upstream::start().await;
    let mut redis = Redis::start().await;
    redis.stop();
    let text = config_text(&iss, up.addr, "", &format!("{}\n{ROUTES}", login_block(&redis_lines(&redis, "0s"), "")));
    let gw = start_ready(&text).await;
    assert_eq!(get(&gw.url("/public"), &[]).await.0, StatusCode::OK, "public routes are unaffected");
    let bearer = iss.mint("user-api", json!({}));
    assert_eq!(get_with(&gw.url("/bearer/x"), &bearer).await.status, StatusCode::OK, "bearer routes are unaffected");

    let mut b = on(&gw);
    let page = b.navigate(&format!("{ORIGIN}/app/page")).await;
    let click = Browser::link(&page, &iss.issuer, "Log in as alice");
    let callback = b.navigate(&click).await;
    assert_store_down(&callback, "the callback cannot store the session");
    assert!(b.cookies(SESSION).iter().all(|c| c.name != SESSION), "no session cookie");

    redis.restart().await;
    let mut b = on(&gw);
    let ok = eventually(|| {
        let mut b = b.clone();
        let iss = &iss;
        async move { log_in(iss, &mut b, "alice").await.status == StatusCode::OK }
    })
    .await;
    assert!(ok, "a login succeeds once Redis is back");
    log_in(&iss, &mut b, "alice").await;
    assert_eq!(user_of(&mut b, &up).await.as_deref(), Ok("user-alice"));
}

#[tokio::test]
async fn redis_killed_mid_flight_answers_503_never_a_pass_nor_a_logout() {
    let mut e = env().await;
    let mut b = on(&e.gw);
    log_in(&e.iss, &mut b, "alice").await;
    assert_eq!(user_of(&mut b, &e.up).await.as_deref(), Ok("user-alice"));
    let seen = e.up.count();
    e.redis.stop();

    let api = b.request("GET", &format!("{ORIGIN}/app/x"), &API).await;
    assert_store_down(&api, "an API request");
    assert_eq!(api.json()["error"], "temporarily_unavailable");
    let nav = b.request("GET", &format!("{ORIGIN}/app/x"), &[("accept", "text/html"), ("sec-fetch-mode", "navigate")]).await;
    assert_store_down(&nav, "a navigation is not sent to log in again");
    assert_eq!(e.up.count(), seen, "nothing reached the upstream");
    let logout = b.request("POST", &format!("{ORIGIN}/_gateway/logout"), &[("origin", ORIGIN)]).await;
    assert_store_down(&logout, "a logout that cannot delete the session");
    assert!(!b.cookies(SESSION).is_empty(), "the cookie stays, so the logout can be sent again");
    assert_eq!(get(&e.gw.url("/public"), &[]).await.0, StatusCode::OK, "public routes are unaffected");
    let bearer = e.iss.mint("user-api", json!({}));
    assert_eq!(get_with(&e.gw.url("/bearer/x"), &bearer).await.status, StatusCode::OK, "bearer routes are unaffected");
    let (ready, doc) = get(&format!("{}/readyz?verbose", e.gw.admin), &[]).await;
    assert_eq!(ready, StatusCode::OK, "Redis never makes the pod unready");
    let store = doc.json()["dependencies"].as_array().and_then(|d| d.iter().find(|x| x["name"] == "session_store").cloned()).expect("reported");
    assert_eq!((store["state"].as_str(), store["decides_readiness"].as_bool()), (Some("unreachable"), Some(false)), "{store}");

    // Back on the same port (empty: no persistence): the gateway reconnects
    // by itself; the lost session is refused, a new login works.
    e.redis.restart().await;
    let back = eventually(|| {
        let mut b = b.clone();
        async move { b.request("GET", &format!("{ORIGIN}/app/x"), &API).await.status == StatusCode::UNAUTHORIZED }
    })
    .await;
    assert!(back, "the gateway reaches Redis again without a restart");
    let doc = get(&format!("{}/readyz?verbose", e.gw.admin), &[]).await.1.json();
    assert!(doc["dependencies"].as_array().is_some_and(|d| d.iter().any(|x| x["name"] == "session_store" && x["state"] == "reachable")), "{doc}");
    let mut fresh = on(&e.gw);
    log_in(&e.iss, &mut fresh, "alice").await;
    assert_eq!(user_of(&mut fresh, &e.up).await.as_deref(), Ok("user-alice"));
}

async fn backchannel(gw: &Gw, body: &str) -> Answer {
    send("POST", &gw.url("/_gateway/backchannel-logout"), &[("content-type", "application/x-www-form-urlencoded")], body.as_bytes()).await
}

#[tokio::test]
async fn backchannel_logout_by_sid_and_by_sub_ends_sessions_on_every_replica() {
    let e = env().await;
    let mut a1 = on(&e.gw);
    log_in(&e.iss, &mut a1, "alice").await;
    let mut a2 = on(&e.gw2);
    log_in(&e.iss, &mut a2, "alice").await;
    let mut bob = on(&e.gw);
    log_in(&e.iss, &mut bob, "bob").await;
    let sid = stored(&e, &a1).and_then(|s| s["claims"]["sid"].as_str().map(str::to_owned)).expect("the session keeps the ID token's sid");

    // By sid, sent to the other replica: only that login ends.
    let token = support::logout_token::sign(&e.iss, &support::logout_token::claims(&e.iss, "web-app", Some(&sid), None));
    let ok = backchannel(&e.gw2, &support::logout_token::form(&token)).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.header("cache-control"), Some("no-store"));
    assert_eq!(user_of(&mut a1, &e.up).await, Err(StatusCode::UNAUTHORIZED), "the login named by sid is over");
    assert_eq!(user_of(&mut copy_to(&a1, &e.gw2), &e.up).await, Err(StatusCode::UNAUTHORIZED));
    assert_eq!(user_of(&mut a2, &e.up).await.as_deref(), Ok("user-alice"), "alice's other login stays");

    // By sub: every session of the user, on both replicas; bob stays.
    let token = support::logout_token::sign(&e.iss, &support::logout_token::claims(&e.iss, "web-app", None, Some("user-alice")));
    assert_eq!(backchannel(&e.gw, &support::logout_token::form(&token)).await.status, StatusCode::OK);
    assert_eq!(user_of(&mut a2, &e.up).await, Err(StatusCode::UNAUTHORIZED));
    assert_eq!(user_of(&mut copy_to(&a2, &e.gw), &e.up).await, Err(StatusCode::UNAUTHORIZED));
    assert_eq!(user_of(&mut bob, &e.up).await.as_deref(), Ok("user-bob"));
}

#[tokio::test]
async fn logout_tokens_are_refused_with_400_unless_every_check_passes() {
    let e = env().await;
    let mut bob = on(&e.gw);
    log_in(&e.iss, &mut bob, "bob").await;
    let base = || support::logout_token::claims(&e.iss, "web-app", None, Some("user-bob"));
    let with = |k: &str, v: Value| {
        let mut c = base();
        if v.is_null() {
            c.as_object_mut().expect("object").remove(k);
        } else {
            c[k] = v;
        }
        support::logout_token::sign(&e.iss, &c)
    };
    // Same kid, another key: the signature does not verify.
    let kid = e.iss.control.signing.lock().unwrap().kid.clone();
    let forger = DevKey::rsa(&kid);
    let forged = forger.sign_jwt(&json!({"alg": "RS256", "typ": "logout+jwt", "kid": kid}), &base());
    let cases: Vec<(&str, String)> = vec![
        ("bad signature", support::logout_token::form(&forged)),
        ("wrong aud", support::logout_token::form(&with("aud", json!("another-client")))),
        ("with nonce", support::logout_token::form(&with("nonce", json!("n")))),
        ("missing events", support::logout_token::form(&with("events", Value::Null))),
        ("another event", support::logout_token::form(&with("events", json!({"http://schemas.openid.net/event/other": {}})))),
        ("neither sid nor sub", support::logout_token::form(&with("sub", Value::Null))),
        ("no jti", support::logout_token::form(&with("jti", Value::Null))),
        ("expired", support::logout_token::form(&with("exp", json!(1)))),
        ("no logout_token field", "token=abc".to_owned()),
        ("not a JWT", support::logout_token::form("abc")),
    ];
    for (what, body) in cases {
        let a = backchannel(&e.gw, &body).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{what}: {}", a.body);
        assert_eq!(a.json()["error"], "invalid_request", "{what}");
        assert_eq!(a.header("cache-control"), Some("no-store"), "{what}");
    }
    assert_eq!(user_of(&mut bob, &e.up).await.as_deref(), Ok("user-bob"), "no refused token ended a session");
    let get_it = send("GET", &e.gw.url("/_gateway/backchannel-logout"), &[], b"").await;
    assert_eq!(get_it.status, StatusCode::METHOD_NOT_ALLOWED);

    // A good token works once; its replay, on either replica, is refused.
    let token = support::logout_token::form(&with("sub", json!("user-nobody")));
    assert_eq!(backchannel(&e.gw, &token).await.status, StatusCode::OK);
    assert_eq!(backchannel(&e.gw, &token).await.status, StatusCode::BAD_REQUEST, "replayed jti");
    assert_eq!(backchannel(&e.gw2, &token).await.status, StatusCode::BAD_REQUEST, "replayed jti on the other replica");
}

#[tokio::test]
async fn idle_timeout_with_redis_slides_the_key_and_ends_an_unused_session() {
    let e = env_with("idle_timeout = \"2s\"").await;
    let mut b = on(&e.gw);
    log_in(&e.iss, &mut b, "alice").await;
    let key = format!("agw:s:{}", hashed(&session_id(&b)));
    assert!(e.redis.pttl(&key) <= 2000, "the key lives idle_timeout, not the whole lifetime");
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(900)).await;
        assert_eq!(user_of(&mut b, &e.up).await.as_deref(), Ok("user-alice"), "a used session stays (sliding)");
    }
    tokio::time::sleep(Duration::from_millis(2300)).await;
    assert_eq!(user_of(&mut b, &e.up).await, Err(StatusCode::UNAUTHORIZED), "unused for idle_timeout: over");
    assert_eq!(e.redis.pttl(&key), -2, "the key expired");
}

#[tokio::test]
async fn idle_timeout_with_the_cookie_store_reseals_at_most_every_quarter() {
    authgear_gateway::install_crypto_provider();
    let iss = DevIssuer::start().await.expect("issuer");
    let up = Upstream::start().await;
    let gw = start_ready(&config_text(&iss, up.addr, "", &format!("{}\n{ROUTES}", login_block("", "idle_timeout = \"4s\"")))).await;
    let mut b = on(&gw);
    log_in(&iss, &mut b, "alice").await;
    let a = b.request("GET", &format!("{ORIGIN}/app/x"), &API).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.headers.get("set-cookie").is_none(), "not every request rewrites the cookie");
    let mut resealed = 0;
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let a = b.request("GET", &format!("{ORIGIN}/app/x"), &API).await;
        assert_eq!(a.status, StatusCode::OK, "a used session stays");
        resealed += usize::from(a.headers.get("set-cookie").is_some());
    }
    assert!(resealed >= 3, "re-sealed once a quarter of the timeout passed: {resealed}");
    let stolen = b.clone();
    tokio::time::sleep(Duration::from_millis(4200)).await;
    assert_eq!(user_of(&mut b, &up).await, Err(StatusCode::UNAUTHORIZED), "unused for idle_timeout: over");
    assert_eq!(user_of(&mut stolen.clone(), &up).await, Err(StatusCode::UNAUTHORIZED));
}

#[tokio::test]
async fn store_config_errors_name_the_key_and_never_echo_the_redis_url() {
    let base = "[server]\nlisten = \"127.0.0.1:0\"\n[upstream]\nurl = \"http://127.0.0.1:9\"\n[auth]\nissuer = \"https://x.authgear.cloud\"\n";
    let err = |extra: &str| {
        let text = format!("{base}{}\n[[routes]]\npath = \"/**\"\nmethod = \"login\"\n", login_block(extra, ""));
        authgear_gateway::Config::from_toml(&text, "t.toml").err().map(|d| d.to_string()).unwrap_or_default()
    };
    let no_url = err("store = \"redis\"");
    assert!(no_url.contains("login.redis_url") && no_url.contains("t.toml:"), "{no_url}");
    let bad = err("store = \"redis\"\nredis_url = \"http://:hunter2@cache:6379\"");
    assert!(bad.contains("login.redis_url") && !bad.contains("hunter2"), "{bad}");
    let cookie_with_url = err("redis_url = \"redis://:hunter2@cache:6379\"");
    assert!(cookie_with_url.contains("login.redis_url") && !cookie_with_url.contains("hunter2"), "{cookie_with_url}");
    let lag = err("store = \"redis\"\nredis_url = \"redis://cache:6379\"\nredis_cache_ttl = \"30s\"\nidle_timeout = \"40s\"");
    assert!(lag.contains("login.redis_cache_ttl") && lag.contains("t.toml:"), "a local copy that outlives half the idle timeout: {lag}");
    let unknown = err("store = \"memcached\"");
    assert!(unknown.contains("login.store"), "{unknown}");
    let bc = err("backchannel_logout_path = \"/bc\"");
    assert!(bc.contains("login.backchannel_logout_path") && bc.contains("Redis"), "{bc}");
    std::env::set_var("AGW_TEST_REDIS_URL", "redis://:hunter2@cache:6379/2");
    let text = format!(
        "{base}{}\n[[routes]]\npath = \"/**\"\nmethod = \"login\"\n",
        login_block("store = \"redis\"\nredis_url = \"${AGW_TEST_REDIS_URL}\"\nidle_timeout = \"30m\"", "")
    );
    let cfg = authgear_gateway::Config::from_toml(&text, "t.toml").expect("valid");
    let login = cfg.login.as_ref().expect("[login]");
    assert!(!format!("{login:?}").contains("hunter2"), "Debug never shows the Redis password");
    assert_eq!(login.idle_timeout, Duration::from_secs(1800));
}

/// `redis_cache_ttl`: a replica reuses a session it read from Redis without
/// another round trip (so it keeps serving it while Redis is away, and a
/// logout on another replica reaches it only within the TTL, as the README
/// says), but a logout or back-channel logout it handles itself counts at once.
#[tokio::test]
async fn redis_cache_ttl_reuses_a_session_without_a_round_trip_and_logouts_here_count_at_once() {
    let mut e = env_cached("", "60s").await;
    let mut b = on(&e.gw);
    log_in(&e.iss, &mut b, "alice").await;
    assert_eq!(user_of(&mut b, &e.up).await.as_deref(), Ok("user-alice"));
    let mut c = copy_to(&b, &e.gw2);
    assert_eq!(user_of(&mut c, &e.up).await.as_deref(), Ok("user-alice"), "read from Redis once by the second replica");
    let kept = c.clone();

    let out = b.request("POST", &format!("{ORIGIN}/_gateway/logout"), &[("origin", ORIGIN)]).await;
    assert_eq!(out.status, StatusCode::FOUND);
    assert!(e.redis.keys("agw:s:*").is_empty(), "deleted from Redis");
    assert_eq!(user_of(&mut copy_to(&kept, &e.gw), &e.up).await, Err(StatusCode::UNAUTHORIZED), "the replica that logged out refuses at once");
    assert_eq!(user_of(&mut c, &e.up).await.as_deref(), Ok("user-alice"), "the other replica lags by at most redis_cache_ttl");
    let out = c.request("POST", &format!("{ORIGIN}/_gateway/logout"), &[("origin", ORIGIN)]).await;
    assert_eq!(out.status, StatusCode::FOUND, "{}", out.body);
    assert_eq!(user_of(&mut kept.clone(), &e.up).await, Err(StatusCode::UNAUTHORIZED), "a logout at this replica drops its kept copy");

    // A back-channel logout clears what the replica that receives it holds.
    let mut bob = on(&e.gw2);
    log_in(&e.iss, &mut bob, "bob").await;
    assert_eq!(user_of(&mut bob, &e.up).await.as_deref(), Ok("user-bob"));
    let token = support::logout_token::sign(&e.iss, &support::logout_token::claims(&e.iss, "web-app", None, Some("user-bob")));
    assert_eq!(backchannel(&e.gw2, &support::logout_token::form(&token)).await.status, StatusCode::OK);
    assert_eq!(user_of(&mut bob, &e.up).await, Err(StatusCode::UNAUTHORIZED), "ended at once where the logout token arrived");

    // No round trip for a kept session: it is served while Redis is away;
    // a replica that has not read it yet must ask Redis and answers 503.
    let mut d = on(&e.gw);
    log_in(&e.iss, &mut d, "alice").await;
    assert_eq!(user_of(&mut d, &e.up).await.as_deref(), Ok("user-alice"));
    e.redis.stop();
    assert_eq!(user_of(&mut d, &e.up).await.as_deref(), Ok("user-alice"), "served from this replica's copy");
    let cold = copy_to(&d, &e.gw2).request("GET", &format!("{ORIGIN}/app/x"), &API).await;
    assert_store_down(&cold, "a replica without a copy");
}

/// The same back-channel logout with the second replica a separate OS
/// process (the real binary): the session ends there too, whichever of the
/// two receives the logout token.
#[tokio::test]
async fn backchannel_logout_ends_the_session_in_another_gateway_process() {
    let e = env().await;
    let text = config_text(&e.iss, e.up.addr, "", &format!("{}\n{ROUTES}", login_block(&redis_lines(&e.redis, "0s"), ""))) + "\n[log]\nformat = \"json\"\n";
    let file = std::env::temp_dir().join(format!("agw-redis-process-{}.toml", std::process::id()));
    std::fs::write(&file, text).expect("config file");
    let (mut child, addr, _admin) = support::process::spawn_gateway(&file);
    let process = Browser::new(&[(ORIGIN, &format!("http://{addr}"))]);

    for (receiver, name) in [(Some(&e.gw), "sid sent to the in-process replica"), (None, "sid sent to the other process")] {
        let mut b = on(&e.gw);
        log_in(&e.iss, &mut b, "alice").await;
        let mut there = process.clone();
        there.jar = b.jar.clone();
        assert_eq!(user_of(&mut there, &e.up).await.as_deref(), Ok("user-alice"), "{name}: the process serves the session");
        let sid = stored(&e, &b).and_then(|s| s["claims"]["sid"].as_str().map(str::to_owned)).expect("sid");
        let token = support::logout_token::sign(&e.iss, &support::logout_token::claims(&e.iss, "web-app", Some(&sid), None));
        let body = support::logout_token::form(&token);
        let ok = match receiver {
            Some(gw) => backchannel(gw, &body).await,
            None => {
                send("POST", &format!("http://{addr}/_gateway/backchannel-logout"), &[("content-type", "application/x-www-form-urlencoded")], body.as_bytes())
                    .await
            }
        };
        assert_eq!(ok.status, StatusCode::OK, "{name}: {}", ok.body);
        assert_eq!(user_of(&mut there, &e.up).await, Err(StatusCode::UNAUTHORIZED), "{name}: ended in the process");
        assert_eq!(user_of(&mut b, &e.up).await, Err(StatusCode::UNAUTHORIZED), "{name}: ended in-process");
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(&file);
}

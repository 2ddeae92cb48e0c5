//! The browser login in a real browser: headless Chromium (Debian's
//! `chromium` + `chromium-driver`, installed by `.ci/install-servers.sh`)
//! driven over WebDriver against the gateway's own TLS listener at
//! `https://gw.test` (a test CA; the browser reaches the name through a
//! CONNECT proxy, see `support::webdriver`) and the development issuer's
//! one-click login page. What is asserted is what the browser did and
//! kept: where it ended, what the recording upstream saw, and the cookies
//! as Chromium stored them.

mod support;

use authgear_gateway::commands::devissuer::DevIssuer;
use serde_json::Value;
use support::tls::TestCa;
use support::webdriver::{connect_proxy, Browser};
use support::*;

const ORIGIN: &str = "https://gw.test";
const SESSION: &str = "__Host-agw_session";

struct Env {
    iss: DevIssuer,
    up: Upstream,
    _gw: Gw,
    browser: Browser,
    _dir: std::path::PathBuf,
}

/// Issuer, recording upstream, the gateway on TLS for `gw.test`, and a
/// browser pointed at it.
async fn env() -> Env {
    authgear_gateway::install_crypto_provider();
    let iss = DevIssuer::start().await.expect("issuer");
    let up = Upstream::start().await;
    let dir = support::front::temp_dir("login-browser");
    let (cert, key) = TestCa::new("browser CA").write_leaf(&["gw.test"], &dir, "gw");
    let key_b64 = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode([7u8; 32])
    };
    let text = format!(
        r#"[server]
listen = "127.0.0.1:0"
tls_cert = "{cert}"
tls_key = "{key}"
shutdown_drain = "0s"
shutdown_grace = "5s"

[admin]
listen = "127.0.0.1:0"

[upstream]
url = "http://{up}"

[auth]
issuer = "{iss}"

[login]
public_origin = "{ORIGIN}"
client_id = "web-app"
client_secret = "s3cret"
cookie_keys = ["k1:{key_b64}"]
post_logout_redirect_uris = ["{ORIGIN}/bye"]

[[routes]]
path = "/app/**"
method = "login"

[[routes]]
path = "/**"
auth = "public"
"#,
        cert = cert.display(),
        key = key.display(),
        up = up.addr,
        iss = iss.issuer,
    );
    let gw = start_ready(&text).await;
    let proxy = connect_proxy(&[("gw.test", gw.server.addr)]).await;
    let browser = Browser::start(proxy).await;
    Env { iss, up, _gw: gw, browser, _dir: dir }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

impl Env {
    /// The upstream's `x-authgear-user-id` for the last request to `target`.
    fn user_seen_at(&self, target: &str) -> Option<String> {
        let seen = self.up.seen();
        let s = seen.iter().rev().find(|s| s.target == target)?;
        Some(s.headers.get("x-authgear-user-id").and_then(|v| v.to_str().ok()).unwrap_or("(none)").to_owned())
    }

    /// From the issuer's login page in the current tab: log in as `user`
    /// and wait to be back on the app at `back`.
    async fn click_user(&self, user: &str, back: &str) {
        self.browser.wait_url(&self.iss.issuer).await;
        self.browser.click("partial link text", &format!("Log in as {user}")).await;
        self.browser.wait_url(back).await;
    }
}

fn cookie<'a>(jar: &'a [Value], name: &str) -> Option<&'a Value> {
    jar.iter().find(|c| c["name"] == name)
}

#[tokio::test]
async fn a_browser_logs_in_and_the_app_sees_the_identity_with_cookies_stored_host_only_secure_httponly_lax() {
    let e = env().await;
    let b = &e.browser;
    b.goto(&format!("{ORIGIN}/app/page?x=1")).await;
    let at = b.wait_url(&e.iss.issuer).await;
    assert!(at.contains("code_challenge_method=S256") && at.contains("state=") && at.contains("nonce="), "{at}");
    e.click_user("alice", ORIGIN).await;
    assert_eq!(b.url().await, format!("{ORIGIN}/app/page?x=1"), "back where the browser was going");
    assert_eq!(b.text().await.trim(), "ok", "the app's page is shown");
    assert_eq!(e.user_seen_at("/app/page?x=1").as_deref(), Some("user-alice"));

    let jar = b.cookies().await;
    let s = cookie(&jar, SESSION).unwrap_or_else(|| panic!("no {SESSION} in the browser: {jar:#?}"));
    assert_eq!(s["httpOnly"], true, "{s}");
    assert_eq!(s["secure"], true, "{s}");
    assert_eq!(s["sameSite"], "Lax", "{s}");
    assert_eq!(s["path"], "/", "{s}");
    // Host-only: no Domain attribute, so it never reaches sibling hosts
    // (Chromium reports a domain cookie with a leading dot).
    assert_eq!(s["domain"], "gw.test", "{s}");
    assert!(s["expiry"].as_u64().is_some_and(|x| x > authgear_gateway::auth::now_unix()), "persistent, with the session's lifetime: {s}");
    assert!(jar.iter().all(|c| !c["name"].as_str().unwrap_or("").contains("-state-")), "the state cookie is gone after the callback: {jar:#?}");
    // Scripts in the page cannot read it.
    let visible = b.run("return document.cookie", serde_json::json!([])).await;
    assert!(!visible.as_str().unwrap_or("").contains("agw_session"), "{visible}");

    // A later page load rides the session: no trip to the issuer.
    b.goto(&format!("{ORIGIN}/app/second")).await;
    assert_eq!(b.url().await, format!("{ORIGIN}/app/second"));
    assert_eq!(e.user_seen_at("/app/second").as_deref(), Some("user-alice"));
}

#[tokio::test]
async fn two_tabs_logging_in_at_once_both_end_logged_in() {
    let e = env().await;
    let b = &e.browser;
    let first = b.tab().await;
    b.goto(&format!("{ORIGIN}/app/one")).await;
    b.wait_url(&e.iss.issuer).await;
    let second = b.new_tab().await;
    b.switch_to(&second).await;
    b.goto(&format!("{ORIGIN}/app/two")).await;
    b.wait_url(&e.iss.issuer).await;

    // Both flows are pending; each tab finishes its own.
    b.switch_to(&first).await;
    e.click_user("alice", ORIGIN).await;
    assert_eq!(b.url().await, format!("{ORIGIN}/app/one"));
    b.switch_to(&second).await;
    e.click_user("bob", ORIGIN).await;
    assert_eq!(b.url().await, format!("{ORIGIN}/app/two"), "the second tab's state cookie survived the first login");
    assert_eq!(b.text().await.trim(), "ok");
    assert_eq!(e.user_seen_at("/app/one").as_deref(), Some("user-alice"));
    assert_eq!(e.user_seen_at("/app/two").as_deref(), Some("user-bob"));
    // One browser, one session: the last login's.
    b.goto(&format!("{ORIGIN}/app/after")).await;
    assert_eq!(e.user_seen_at("/app/after").as_deref(), Some("user-bob"));
}

#[tokio::test]
async fn logout_through_the_confirmation_form_ends_the_session_and_the_app_is_not_reached() {
    let e = env().await;
    let b = &e.browser;
    b.goto(&format!("{ORIGIN}/app/in")).await;
    e.click_user("alice", ORIGIN).await;
    assert_eq!(e.user_seen_at("/app/in").as_deref(), Some("user-alice"));

    b.goto(&format!("{ORIGIN}/_gateway/logout")).await;
    b.click("css selector", "form button[type=submit]").await;
    b.wait_url(&format!("{ORIGIN}/bye")).await;
    let ended = e.iss.control.oauth.lock().unwrap().end_sessions.clone();
    assert_eq!(ended.len(), 1, "the browser went through the issuer's end-session endpoint: {ended:?}");
    assert!(ended[0].contains("id_token_hint="), "{ended:?}");
    let jar = b.cookies().await;
    assert!(cookie(&jar, SESSION).is_none(), "the browser dropped the session cookie: {jar:#?}");

    let before = e.up.count();
    b.goto(&format!("{ORIGIN}/app/in")).await;
    b.wait_url(&e.iss.issuer).await;
    assert_eq!(e.up.count(), before, "a logged-out browser never reaches the app");
}

#[tokio::test]
async fn fetch_and_xhr_from_the_page_without_a_session_get_401_json_not_a_redirect() {
    let e = env().await;
    let b = &e.browser;
    b.goto(&format!("{ORIGIN}/public-page")).await;
    assert_eq!(b.url().await, format!("{ORIGIN}/public-page"));
    let before = e.up.count();
    let fetched = b
        .run_async(
            "const done = arguments[arguments.length - 1];
             fetch('/app/api/data').then(async r => done({status: r.status, redirected: r.redirected, type: r.headers.get('content-type'),
                 challenge: r.headers.get('www-authenticate'), body: await r.text()})).catch(e => done({error: String(e)}));",
        )
        .await;
    assert_eq!(fetched["status"], 401, "{fetched}");
    assert_eq!(fetched["redirected"], false, "{fetched}");
    assert!(fetched["type"].as_str().is_some_and(|t| t.starts_with("application/json")), "{fetched}");
    assert!(fetched["challenge"].as_str().is_some_and(|c| c.starts_with("Bearer")), "{fetched}");
    let body: Value = serde_json::from_str(fetched["body"].as_str().unwrap_or("")).unwrap_or(Value::Null);
    assert!(body["error"].is_string(), "a JSON error body: {fetched}");

    let xhr = b
        .run_async(
            "const done = arguments[arguments.length - 1];
             const x = new XMLHttpRequest(); x.open('GET', '/app/api/data');
             x.onload = () => done({status: x.status, url: x.responseURL}); x.onerror = () => done({error: 'network'}); x.send();",
        )
        .await;
    assert_eq!(xhr["status"], 401, "{xhr}");
    assert_eq!(xhr["url"], format!("{ORIGIN}/app/api/data"), "not followed anywhere: {xhr}");
    assert_eq!(e.up.count(), before, "the app was not reached");
    let (chromium, driver) = support::webdriver::versions();
    eprintln!("browser: {chromium}; driver: {driver}");
}

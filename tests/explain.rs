//! `authgear-gateway explain`: golden output for the common "why 403?"
//! questions, and a live signature check against a real issuer.

mod support;

use authgear_gateway::commands::devissuer::{DevIssuer, DevKey};
use authgear_gateway::commands::explain::{explain, explain_with, Keys};
use authgear_gateway::Config;
use serde_json::json;

const CONFIG: &str = r#"
[upstream]
url = "http://127.0.0.1:3000"
[auth]
issuer = "https://myapp.authgear.cloud"
[[routes]]
name = "public"
path = "/public/**"
auth = "public"
[[routes]]
name = "admin"
path = "/admin/**"
methods = ["GET"]
roles = ["admin"]
[[routes]]
name = "app"
path = "/**"
"#;

const NOW: u64 = 1_800_000_000;

fn token(roles: &[&str]) -> String {
    let key = DevKey::rsa("k1");
    let claims = json!({"iss": "https://myapp.authgear.cloud", "aud": ["https://myapp.authgear.cloud"], "sub": "user-42",
        "exp": NOW + 600, "iat": NOW - 60, "https://authgear.com/claims/user/roles": roles});
    key.sign_jwt(&json!({"alg": "RS256", "kid": "k1", "typ": "at+jwt"}), &claims)
}

#[tokio::test]
async fn explains_a_403_for_a_missing_role() {
    let cfg = Config::from_toml(CONFIG, "gateway.toml").unwrap();
    let t = token(&["user"]);
    let out = explain(&cfg, "get", "https://app.example.com/admin/users?page=2", Some(&t), Keys::Skip, NOW).await.unwrap();
    let expected = r#"request        GET https://app.example.com/admin/users?page=2
normalized     /admin/users
host           app.example.com

routes (first match wins)
  #1  `public`                /public/**                  line 6    no: path
  #2  `admin`                 /admin/**                   line 10   MATCH
  #3  `app`                   /**                         line 15   (would match, but an earlier route won)

matched route  #2 `admin` (line 10)
  auth         required
  roles        any of: admin
upstream       default -> http://127.0.0.1:3000/admin/users?page=2

token
  header       {"alg":"RS256","kid":"k1","typ":"at+jwt"}
  claims
    {
      "aud": [
        "https://myapp.authgear.cloud"
      ],
      "exp": 1800000600,
      "https://authgear.com/claims/user/roles": [
        "user"
      ],
      "iat": 1799999940,
      "iss": "https://myapp.authgear.cloud",
      "sub": "user-42"
    }
  checks
    alg        ok   RS256 is accepted
    issuer     ok   https://myapp.authgear.cloud is configured
    signature  not checked (--no-fetch)
    typ        ok
    iss        ok   https://myapp.authgear.cloud
    aud        ok   token: ["https://myapp.authgear.cloud"], accepted: https://myapp.authgear.cloud
    exp        ok   expires in 600 s
    nbf        ok
    iat        ok
    roles      FAIL the user lacks a required role (user has: ["user"])

verdict        403 insufficient_scope: the user lacks a required role
"#;
    assert_eq!(out, expected);
    let sig = t.rsplit('.').next().unwrap();
    assert!(!out.contains(sig), "the signature must never be printed");
}

#[tokio::test]
async fn explains_a_forwarded_request_with_the_exact_upstream_headers() {
    let cfg = Config::from_toml(CONFIG, "gateway.toml").unwrap();
    let t = token(&["admin"]);
    let out = explain(&cfg, "GET", "http://app.example.com//admin/%2e%2e/admin/x", Some(&t), Keys::Skip, NOW).await.unwrap();
    let tail = out.split("verdict").nth(1).unwrap();
    let expected = r#"        forwarded with identity, if the signature is valid (it was not checked)

the upstream would receive (as if the client were 127.0.0.1)
  GET /admin/x
  authorization: Bearer <the token, not shown>
  host: app.example.com
  x-authgear-session-valid: true
  x-authgear-user-id: user-42
  x-authgear-user-roles: admin
  x-forwarded-for: 127.0.0.1
  x-forwarded-host: app.example.com
  x-forwarded-proto: http
"#;
    assert_eq!(tail, expected);
    assert!(out.contains("normalized     /admin/x\n"));
    assert!(!out.contains(t.rsplit('.').next().unwrap()));
}

#[tokio::test]
async fn explains_404_wrong_method_and_bad_paths() {
    let cfg = Config::from_toml(CONFIG, "gateway.toml").unwrap();
    let out = explain(&cfg, "DELETE", "http://h/admin/x", None, Keys::Skip, NOW).await.unwrap();
    assert!(out.contains("`admin`                 /admin/**                   line 10   no: method is not one of GET"), "{out}");
    assert!(out.contains("verdict        401: a bearer token is required"), "{out}");
    let out = explain(&cfg, "GET", "http://h/public/..%2fadmin", None, Keys::Skip, NOW).await.unwrap();
    assert!(out.ends_with("verdict        400 invalid_request\n"), "{out}");
}

#[tokio::test]
async fn shows_the_judged_path_beside_the_forwarded_one_and_case_refusals() {
    let cfg = Config::from_toml(CONFIG, "gateway.toml").unwrap();
    let out = explain(&cfg, "GET", "http://h/public/a/../x;jsessionid=1?q=1", None, Keys::Skip, NOW).await.unwrap();
    assert!(out.contains("normalized     /public/x;jsessionid=1\njudged as      /public/x (routes never see"), "{out}");
    assert!(out.contains("`public`                /public/**                  line 6    MATCH"), "{out}");
    assert!(out.contains("upstream       default -> http://127.0.0.1:3000/public/x;jsessionid=1?q=1\n"), "{out}");
    assert!(out.contains("\n  GET /public/x;jsessionid=1?q=1\n"), "{out}");
    let plain = explain(&cfg, "GET", "http://h/public/x", None, Keys::Skip, NOW).await.unwrap();
    assert!(!plain.contains("judged as"), "{plain}");
    let out = explain(&cfg, "GET", "http://h/public/%252e%252e/admin", None, Keys::Skip, NOW).await.unwrap();
    assert!(out.contains("refused: double percent-encoding in path"), "{out}");
    let folding = Config::from_toml(&CONFIG.replacen("[upstream]", "[server]\npath_case = \"insensitive\"\n[upstream]", 1), "gateway.toml").unwrap();
    let out = explain(&folding, "GET", "http://h/ADMIN/x", None, Keys::Skip, NOW).await.unwrap();
    assert!(out.contains("`admin`                 /admin/**                   line 12   MATCH"), "{out}");
    assert!(out.contains("\n  path_case    insensitive"), "{out}");
    let out = explain(&folding, "GET", "http://h/adm%C4%B1n/x", None, Keys::Skip, NOW).await.unwrap();
    assert!(out.ends_with("verdict        400 invalid_request\n") && out.contains("ASCII letter"), "{out}");
}

#[tokio::test]
async fn checks_the_signature_against_the_live_issuer() {
    authgear_gateway::install_crypto_provider();
    let iss = DevIssuer::start().await.unwrap();
    let text = format!("[upstream]\nurl = \"http://127.0.0.1:3000\"\n[auth]\nissuer = \"{}\"\n[[routes]]\npath = \"/**\"\n", iss.issuer);
    let cfg = Config::from_toml(&text, "gateway.toml").unwrap();
    let now = authgear_gateway::auth::now_unix();
    let out = explain(&cfg, "GET", "http://h/x", Some(&iss.mint("u", json!({}))), Keys::Fetch, now).await.unwrap();
    assert!(out.contains("signature  ok   verified with key `key-1`"), "{out}");
    assert!(out.contains("verdict        forwarded with identity\n"), "{out}");
    let forged = DevKey::rsa("key-1").sign_jwt(&json!({"alg": "RS256", "kid": "key-1"}), &serde_json::Value::Object(iss.claims("x")));
    let out = explain(&cfg, "GET", "http://h/x", Some(&forged), Keys::Fetch, now).await.unwrap();
    assert!(out.contains("signature  FAIL token signature is invalid"), "{out}");
    assert!(out.contains("verdict        401 invalid_token: token signature is invalid"), "{out}");
}

const LOGIN_CONFIG: &str = r#"
[upstream]
url = "http://127.0.0.1:3000"
[auth]
issuer = "https://myapp.authgear.cloud"
[login]
public_origin = "https://app.example.com"
client_id = "web-app"
cookie_keys = ["k2:AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=", "k1:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="]
[[routes]]
name = "admin"
path = "/admin/**"
method = "login"
roles = ["admin"]
[[routes]]
name = "app"
path = "/**"
method = "login"
pass_access_token = true
"#;

const SESSION_COOKIE: &str = "__Host-agw_session";
const ACCESS: &str = "eyJhbGciOiJSUzI1NiJ9.ACCESS-TOKEN-BODY.c2ln";
const REFRESH: &str = "REFRESH-TOKEN-VALUE";
const ID_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.ID-TOKEN-BODY.c2ln";

/// A session sealed as a login leaves it, under key `kid` (`[byte; 32]`).
fn sealed_session(kid: &str, byte: u8, access_exp: u64, expires: u64, refresh: bool) -> String {
    use authgear_gateway::config::CookieKey;
    use authgear_gateway::login::seal::Sealer;
    let session = json!({"id": "sess-1", "claims": {"iss": "https://myapp.authgear.cloud", "sub": "user-42", "sid": "sid-9",
        "https://authgear.com/claims/user/roles": ["reader"]},
        "access_token": ACCESS, "refresh_token": if refresh { Some(REFRESH) } else { None }, "id_token": ID_TOKEN,
        "access_exp": access_exp, "expires": expires});
    let sealer = Sealer::new(&[CookieKey { id: kid.into(), key: [byte; 32] }]).unwrap();
    sealer.seal(SESSION_COOKIE, session.to_string().as_bytes()).unwrap()
}

async fn explain_cookie(url: &str, cookie: Option<&str>) -> String {
    authgear_gateway::install_crypto_provider();
    let cfg = Config::from_toml(LOGIN_CONFIG, "gateway.toml").unwrap();
    let out = explain_with(&cfg, "GET", url, None, cookie, Keys::Skip, NOW).await.unwrap();
    for secret in [ACCESS, REFRESH, ID_TOKEN, "ACCESS-TOKEN-BODY", "ID-TOKEN-BODY"] {
        assert!(!out.contains(secret), "a session token was printed:\n{out}");
    }
    out
}

#[tokio::test]
async fn explains_a_valid_session_cookie_its_identity_and_headers_never_its_tokens() {
    let value = sealed_session("k2", 2, NOW + 600, NOW + 7200, true);
    let cookie = format!("theme=dark; {SESSION_COOKIE}={value}");
    let out = explain_cookie("https://app.example.com/page", Some(&cookie)).await;
    let section = out.split("session cookie\n").nth(1).unwrap().split("\nverdict").next().unwrap();
    let expected = r#"  name         __Host-agw_session (one cookie)
  sealed       ok   key `k2` (the current key)
  session      valid
  ends         in 7200 s (session_lifetime)
  access token expires in 600 s (refresh_margin 60 s)
  tokens       access, refresh and ID tokens held (never shown)
  logged out   not known here: a logout is remembered by the gateway that served it
  claims
    {
      "https://authgear.com/claims/user/roles": [
        "reader"
      ],
      "iss": "https://myapp.authgear.cloud",
      "sid": "sid-9",
      "sub": "user-42"
    }
"#;
    assert_eq!(section, expected, "{out}");
    assert!(out.contains("verdict        forwarded with identity (session cookie)\n"), "{out}");
    assert!(out.contains("\n  x-authgear-user-id: user-42\n"), "{out}");
    assert!(out.contains("\n  x-authgear-user-roles: reader\n"), "{out}");
    assert!(out.contains("\n  authorization: Bearer <the token, not shown>\n"), "pass_access_token sends the session's token: {out}");
    assert!(!out.contains(&value), "the sealed value is not echoed");
}

#[tokio::test]
async fn explains_why_a_session_cookie_does_not_open() {
    let good = sealed_session("k1", 1, NOW + 600, NOW + 7200, true);
    let mut tampered = good.clone().into_bytes();
    let i = tampered.len() - 5;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let cases = [
        (format!("{SESSION_COOKIE}={tampered}"), "invalid: cookie_tampered"),
        (format!("{SESSION_COOKIE}={}", &good[..good.len() - 30]), "invalid: cookie_tampered"),
        (format!("{SESSION_COOKIE}={}", sealed_session("k0", 9, NOW + 600, NOW + 7200, true)), "invalid: cookie_retired_key"),
        (format!("{SESSION_COOKIE}={}", sealed_session("k1", 1, NOW + 600, NOW - 1, true)), "invalid: session_expired"),
        (format!("{SESSION_COOKIE}={}", sealed_session("k1", 1, NOW - 5, NOW + 7200, false)), "invalid: access_token_expired"),
        (format!("agw_session={good}"), "absent"),
    ];
    for (cookie, want) in &cases {
        let out = explain_cookie("https://app.example.com/page", Some(cookie)).await;
        assert!(out.contains(&format!("\n  session      {want}")), "{want}:\n{out}");
        assert!(out.contains("verdict        401 ("), "{want}:\n{out}");
        assert!(!out.contains("the upstream would receive"), "{want}:\n{out}");
    }
    let none = explain_cookie("https://app.example.com/page", None).await;
    assert!(none.contains("  name         __Host-agw_session (not sent)\n  session      absent\n"), "{none}");
    assert!(none.contains("verdict        401 (no session cookie): a page load"), "{none}");
}

#[tokio::test]
async fn explains_a_stale_session_an_older_key_and_a_missing_role() {
    let old_key = format!("{SESSION_COOKIE}={}", sealed_session("k1", 1, NOW + 10, NOW + 7200, true));
    let out = explain_cookie("https://app.example.com/page", Some(&old_key)).await;
    assert!(out.contains("  sealed       ok   key `k1` (an older listed key"), "{out}");
    assert!(out.contains("  session      stale: the access token is within refresh_margin"), "{out}");
    assert!(out.contains("verdict        forwarded with identity, after the gateway refreshes the access token"), "{out}");
    let admin = explain_cookie("https://app.example.com/admin/x", Some(&old_key)).await;
    assert!(admin.contains("    roles      FAIL the user lacks a required role (user has: [\"reader\"])"), "{admin}");
    assert!(admin.contains("verdict        403 insufficient_scope: the user lacks a required role"), "{admin}");
}

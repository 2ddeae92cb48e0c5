//! `authgear-gateway explain`: golden output for the common "why 403?"
//! questions, and a live signature check against a real issuer.

mod support;

use authgear_gateway::commands::devissuer::{DevIssuer, DevKey};
use authgear_gateway::commands::explain::{explain, Keys};
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

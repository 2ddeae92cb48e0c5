//! Token checks end to end: every way a token can be wrong gets a 401 with an
//! RFC 6750 challenge and never reaches the upstream; valid tokens of every
//! accepted algorithm pass.

mod support;

use std::sync::Arc;

use authgear_gateway::commands::devissuer::{DevIssuer, DevKey};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::StatusCode;
use serde_json::{json, Value};
use support::*;

fn assert_invalid_token(a: &Answer, contains: &str) {
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "body: {}", a.body);
    let www = a.header("www-authenticate").unwrap_or_default();
    assert!(www.starts_with("Bearer realm=\"authgear-gateway\""), "{www}");
    assert!(www.contains("error=\"invalid_token\""), "{www}");
    assert!(www.contains(contains), "expected `{contains}` in {www}");
    assert_eq!(a.json()["error"], "invalid_token");
    assert_eq!(a.header("content-type"), Some("application/json"));
}

#[tokio::test]
async fn valid_token_is_forwarded_with_identity_headers() {
    let (iss, up, gw) = setup().await;
    let t = iss.mint("user-1", json!({"https://authgear.com/claims/user/roles": ["a", "b"]}));
    let a = get_with(&gw.url("/api/me?x=1"), &t).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, "ok");
    let seen = up.last();
    assert_eq!(seen.target, "/api/me?x=1");
    let h = |n: &str| seen.headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
    assert_eq!(h("x-authgear-session-valid").as_deref(), Some("true"));
    assert_eq!(h("x-authgear-user-id").as_deref(), Some("user-1"));
    assert_eq!(h("x-authgear-user-anonymous").as_deref(), Some("false"));
    assert_eq!(h("x-authgear-user-verified").as_deref(), Some("true"));
    assert_eq!(h("x-authgear-user-can-reauthenticate").as_deref(), Some("true"));
    assert_eq!(h("x-authgear-user-roles").as_deref(), Some("a,b"));
    assert_eq!(h("x-authgear-session-amr").as_deref(), Some("pwd"));
    assert!(h("x-authgear-session-authenticated-at").is_some_and(|v| v.parse::<u64>().is_ok()));
    // The token is passed on by default.
    assert_eq!(h("authorization"), Some(format!("Bearer {t}")));
}

#[tokio::test]
async fn missing_token_gets_a_plain_challenge() {
    let (_iss, up, gw) = setup().await;
    let (s, a) = get(&gw.url("/api/me"), &[]).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(a.header("www-authenticate"), Some("Bearer realm=\"authgear-gateway\""));
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn bad_tokens_are_rejected_and_never_forwarded() {
    let (iss, up, gw) = setup().await;
    let now = authgear_gateway::auth::now_unix();
    let cases: Vec<(&str, String, &str)> = vec![
        ("expired beyond leeway", iss.mint("u", json!({"exp": now - 120})), "expired"),
        ("not yet valid", iss.mint("u", json!({"nbf": now + 600})), "not yet valid"),
        ("wrong issuer", iss.mint("u", json!({"iss": "https://evil.example"})), "issuer"),
        ("wrong audience", iss.mint("u", json!({"aud": ["https://other-api"]})), "audience"),
        ("no exp", iss.mint("u", json!({"exp": null})), "exp"),
        ("garbage", "not-a-jwt".to_owned(), "malformed"),
        ("two parts", "aaa.bbb".to_owned(), "malformed"),
    ];
    for (what, token, expect) in cases {
        let a = get_with(&gw.url("/api/x"), &token).await;
        assert_invalid_token(&a, expect);
        assert_eq!(up.count(), 0, "{what} reached the upstream");
    }
}

#[tokio::test]
async fn expiry_within_leeway_is_accepted() {
    let (iss, _up, gw) = setup().await;
    let now = authgear_gateway::auth::now_unix();
    let a = get_with(&gw.url("/api/x"), &iss.mint("u", json!({"exp": now - 5}))).await;
    assert_eq!(a.status, StatusCode::OK);
}

#[tokio::test]
async fn signature_by_another_key_with_a_known_kid_is_rejected() {
    let (iss, up, gw) = setup().await;
    let rogue = DevKey::rsa("key-1");
    let claims = Value::Object(iss.claims("attacker"));
    let t = rogue.sign_jwt(&json!({"alg": "RS256", "typ": "at+jwt", "kid": "key-1"}), &claims);
    assert_invalid_token(&get_with(&gw.url("/api/x"), &t).await, "signature");
    // A tampered payload under the real signature fails too.
    let good = iss.mint("user", json!({}));
    let parts: Vec<&str> = good.split('.').collect();
    let mut c = iss.claims("user");
    c.insert("https://authgear.com/claims/user/roles".into(), json!(["admin"]));
    let forged = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(Value::Object(c).to_string()), parts[2]);
    assert_invalid_token(&get_with(&gw.url("/admin/x"), &forged).await, "signature");
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn alg_none_and_hmac_key_confusion_are_rejected() {
    let (iss, up, gw) = setup().await;
    let claims = Value::Object(iss.claims("attacker"));
    let enc = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    for alg in ["none", "NONE", "nOnE"] {
        let t = format!("{}.{}.", enc(&json!({"alg": alg, "kid": "key-1"})), enc(&claims));
        let a = get_with(&gw.url("/api/x"), &t).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{alg}");
    }
    // HS256 signed with the RSA public key's JWK text as the secret.
    let jwks = reqwest_jwks(&iss).await;
    let secret = jwks.to_string();
    let input = format!("{}.{}", enc(&json!({"alg": "HS256", "kid": "key-1"})), enc(&claims));
    let tag = aws_lc_rs::hmac::sign(&aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes()), input.as_bytes());
    let t = format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()));
    assert_invalid_token(&get_with(&gw.url("/api/x"), &t).await, "HS256");
    assert_eq!(up.count(), 0);
}

async fn reqwest_jwks(iss: &DevIssuer) -> Value {
    let (_, a) = get(&iss.jwks_uri(), &[]).await;
    a.json()
}

#[tokio::test]
async fn keys_from_token_headers_are_ignored() {
    let (iss, up, gw) = setup().await;
    let attacker = DevKey::rsa("evil");
    let claims = Value::Object(iss.claims("attacker"));
    for header in [
        json!({"alg": "RS256", "kid": "evil", "jwk": attacker.jwk}),
        json!({"alg": "RS256", "kid": "evil", "jku": format!("{}/oauth2/jwks", iss.issuer)}),
        json!({"alg": "RS256", "kid": "evil", "x5u": "http://127.0.0.1:1/cert.pem"}),
        json!({"alg": "RS256", "jwk": attacker.jwk}),
    ] {
        let t = attacker.sign_jwt(&header, &claims);
        let a = get_with(&gw.url("/api/x"), &t).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{header}");
    }
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn key_alg_binds_the_token_alg() {
    let (iss, up, gw) = setup().await;
    // key-1 is published with alg RS256; a PS256 signature by the same key
    // is valid cryptographically but not allowed by the key.
    let claims = Value::Object(iss.claims("u"));
    let t = iss.sign_raw(&json!({"alg": "PS256", "typ": "at+jwt", "kid": "key-1"}), &claims);
    assert_invalid_token(&get_with(&gw.url("/api/x"), &t).await, "does not match");
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn es256_eddsa_and_ps256_keys_work() {
    authgear_gateway::install_crypto_provider();
    for key in [DevKey::ec_p256("ec-1"), DevKey::ed25519("ed-1")] {
        let iss = DevIssuer::start_with(Arc::new(key)).await.expect("issuer");
        let up = Upstream::start().await;
        let gw = start_ready(&config_text(&iss, up.addr, "", ROUTES)).await;
        let a = get_with(&gw.url("/api/x"), &iss.mint("u", json!({}))).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        assert_eq!(up.last().headers["x-authgear-user-id"], "u");
    }
    // An RSA key published without `alg` accepts PS256.
    let key = DevKey::rsa("rsa-noalg");
    let iss = DevIssuer::start_with(Arc::new(key)).await.expect("issuer");
    {
        let mut published = iss.control.published.lock().unwrap();
        published[0].as_object_mut().unwrap().remove("alg");
    }
    let up = Upstream::start().await;
    let gw = start_ready(&config_text(&iss, up.addr, "", ROUTES)).await;
    let t = iss.sign_raw(&json!({"alg": "PS256", "typ": "at+jwt", "kid": "rsa-noalg"}), &Value::Object(iss.claims("p")));
    assert_eq!(get_with(&gw.url("/api/x"), &t).await.status, StatusCode::OK);
}

#[tokio::test]
async fn unknown_kid_and_id_token_type_are_rejected() {
    let (iss, up, gw) = setup().await;
    let claims = Value::Object(iss.claims("u"));
    let t = iss.sign_raw(&json!({"alg": "RS256", "kid": "no-such-key"}), &claims);
    assert_invalid_token(&get_with(&gw.url("/api/x"), &t).await, "unknown");
    let t = iss.sign_raw(&json!({"alg": "RS256", "kid": "key-1", "typ": "id+jwt"}), &claims);
    assert_invalid_token(&get_with(&gw.url("/api/x"), &t).await, "type");
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn scheme_is_case_insensitive_and_two_headers_are_refused() {
    let (iss, up, gw) = setup().await;
    let t = iss.mint("u", json!({}));
    let lower = format!("bearer {t}");
    assert_eq!(send("GET", &gw.url("/api/x"), &[("authorization", &lower)], b"").await.status, StatusCode::OK);
    let upper = format!("BEARER {t}");
    assert_eq!(send("GET", &gw.url("/api/x"), &[("authorization", &upper)], b"").await.status, StatusCode::OK);
    let before = up.count();
    let a = send("GET", &gw.url("/api/x"), &[("authorization", &lower), ("authorization", "Bearer other")], b"").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.header("www-authenticate").unwrap_or_default().contains("invalid_request"));
    assert_eq!(up.count(), before);
}

#[tokio::test]
async fn tokens_in_query_strings_or_other_schemes_are_not_accepted() {
    let (iss, up, gw) = setup().await;
    let t = iss.mint("u", json!({}));
    let (s, a) = get(&gw.url(&format!("/api/x?access_token={t}")), &[]).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(a.header("www-authenticate"), Some("Bearer realm=\"authgear-gateway\""));
    let basic = send("GET", &gw.url("/api/x"), &[("authorization", "Basic dXNlcjpwYXNz")], b"").await;
    assert_eq!(basic.status, StatusCode::UNAUTHORIZED);
    assert_eq!(up.count(), 0);
}

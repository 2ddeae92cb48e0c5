//! Bad key sets, several issuers and https issuers: a bad key is skipped
//! alone, an unusable set is a failed fetch, a token's `iss` picks its cache.

mod support;

use std::sync::Arc;

use authgear_gateway::commands::devissuer::{DevIssuer, DevKey};
use http::StatusCode;
use serde_json::json;
use support::*;

#[tokio::test]
async fn bad_keys_are_skipped_and_good_ones_still_work() {
    authgear_gateway::install_crypto_provider();
    let good = DevKey::rsa("good");
    let small_rsa = json!({"kty": "RSA", "kid": "small", "alg": "RS256", "n": "sXch", "e": "AQAB"});
    let jwks = json!({"keys": [
        {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
        {"kty": "RSA", "kid": "enc", "use": "enc", "n": good.jwk["n"], "e": "AQAB"},
        {"kty": "RSA", "kid": "no-n", "e": "AQAB"},
        {"kty": "RSA", "kid": "bad-b64", "n": "!!!not base64!!!", "e": "AQAB"},
        {"kty": "RSA", "kid": "hs-alg", "alg": "HS256", "n": good.jwk["n"], "e": "AQAB"},
        {"kty": "EC", "kid": "p521", "crv": "P-521", "x": "AAAA", "y": "AAAA"},
        {"kty": "EC", "kid": "ec-short", "crv": "P-256", "x": "AAAA", "y": "AAAA"},
        {"kty": "XYZ", "kid": "weird"},
        {"kid": "no-kty"},
        small_rsa,
        "not even an object",
        good.jwk,
        {"kty": "RSA", "kid": "good", "n": "AQAB", "e": "AQAB"},
    ]});
    let iss = DevIssuer::start_with(Arc::new(good)).await.unwrap();
    *iss.control.raw_jwks.lock().unwrap() = Some(jwks.to_string());
    let up = Upstream::start().await;
    let gw = start_ready(&config_text(&iss, up.addr, "", ROUTES)).await;
    assert_eq!(get_with(&gw.url("/api/x"), &iss.mint("u", json!({}))).await.status, StatusCode::OK);
    let snap = gw.server.gateway.snapshot();
    let keys = snap.keys[0].snapshot().expect("keys loaded");
    assert_eq!(keys.keys.len(), 1, "only the good key is usable: {:?}", keys.keys.kids());
    // A token naming a skipped key is refused.
    let claims = serde_json::Value::Object(iss.claims("u"));
    let t = iss.sign_raw(&json!({"alg": "RS256", "kid": "small"}), &claims);
    assert_eq!(get_with(&gw.url("/api/x"), &t).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_key_set_with_no_usable_key_is_a_failed_fetch() {
    authgear_gateway::install_crypto_provider();
    for body in [r#"{"keys": []}"#, r#"{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}"#, r#"{"nokeys": 1}"#, "[]", "{"] {
        let iss = DevIssuer::start().await.unwrap();
        *iss.control.raw_jwks.lock().unwrap() = Some(body.to_owned());
        let up = Upstream::start().await;
        let gw = start_gateway(&config_text(&iss, up.addr, "retry_initial = \"20ms\"\nretry_max = \"50ms\"", ROUTES)).await;
        wait_for_fetch_failure(&gw).await;
        assert_eq!(get(&format!("{}/readyz", gw.admin), &[]).await.0, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(get_with(&gw.url("/api/x"), &iss.mint("u", json!({}))).await.status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    }
}

#[tokio::test]
async fn several_issuers_each_with_their_own_keys() {
    authgear_gateway::install_crypto_provider();
    let a = DevIssuer::start().await.unwrap();
    let b = DevIssuer::start_with(Arc::new(DevKey::ec_p256("b-key"))).await.unwrap();
    let stranger = DevIssuer::start().await.unwrap();
    let up = Upstream::start().await;
    let text = format!(
        r#"[server]
listen = "127.0.0.1:0"
shutdown_drain = "0s"
[admin]
listen = "127.0.0.1:0"
[upstream]
url = "http://{up}"
[[auth.issuers]]
issuer = "{a}"
[[auth.issuers]]
issuer = "{b}"
audiences = ["api-b"]
{ROUTES}"#,
        up = up.addr,
        a = a.issuer,
        b = b.issuer
    );
    let gw = start_ready(&text).await;
    assert_eq!(get_with(&gw.url("/api/x"), &a.mint("from-a", json!({}))).await.status, StatusCode::OK);
    assert_eq!(up.last().headers["x-authgear-user-id"], "from-a");
    assert_eq!(get_with(&gw.url("/api/x"), &b.mint("from-b", json!({"aud": "api-b"}))).await.status, StatusCode::OK);
    assert_eq!(up.last().headers["x-authgear-user-id"], "from-b");
    // b's audience does not hold a's default audience.
    assert_eq!(get_with(&gw.url("/api/x"), &b.mint("x", json!({}))).await.status, StatusCode::UNAUTHORIZED);
    // A token from an unconfigured issuer is refused before any key lookup.
    let r = get_with(&gw.url("/api/x"), &stranger.mint("s", json!({}))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.header("www-authenticate").unwrap_or_default().contains("issuer"));
    assert_eq!(stranger.jwks_fetches(), 0);
    // a's key id under b's issuer name is refused (keys are per issuer).
    let mut claims = a.claims("mix");
    claims.insert("iss".into(), json!(b.issuer));
    claims.insert("aud".into(), json!("api-b"));
    let t = a.sign_raw(&json!({"alg": "RS256", "kid": "key-1"}), &serde_json::Value::Object(claims));
    assert_eq!(get_with(&gw.url("/api/x"), &t).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn https_issuer_with_a_private_ca() {
    authgear_gateway::install_crypto_provider();
    let ca = tls::TestCa::new("private test CA");
    let leaf = ca.leaf(&["localhost"]);
    let iss = DevIssuer::start_tls(Arc::new(DevKey::rsa("tls-key")), leaf.server_config()).await.unwrap();
    let dir = std::env::temp_dir().join(format!("agw-ca-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, &ca.cert_pem).unwrap();
    let up = Upstream::start().await;

    // Without the CA the issuer's certificate is not trusted.
    let gw = start_gateway(&config_text(&iss, up.addr, "retry_initial = \"20ms\"\nretry_max = \"50ms\"", ROUTES)).await;
    wait_for_fetch_failure(&gw).await;
    assert_eq!(get(&format!("{}/readyz", gw.admin), &[]).await.0, StatusCode::SERVICE_UNAVAILABLE);

    let extra = format!("ca_file = \"{}\"", ca_file.display());
    let gw = start_ready(&config_text(&iss, up.addr, &extra, ROUTES)).await;
    assert_eq!(get_with(&gw.url("/api/x"), &iss.mint("tls-user", json!({}))).await.status, StatusCode::OK);
    let _ = std::fs::remove_dir_all(dir);
}

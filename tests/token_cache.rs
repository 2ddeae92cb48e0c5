//! The verified-token cache never lets a check be skipped: expiry, key
//! removal, route requirements, audiences and bad signatures are judged on
//! every request even when the token is cached.

mod support;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use authgear_gateway::auth::jwt::TokenError;
use authgear_gateway::auth::{self, AuthFailure};
use authgear_gateway::commands::devissuer::{DevIssuer, DevKey};
use http::StatusCode;
use serde_json::json;
use support::*;

/// (hits, inserts) of the gateway's token cache.
fn cache_stats(gw: &Gw) -> (u64, u64) {
    let snap = gw.server.gateway.snapshot();
    let c = snap.token_cache.as_ref().expect("the token cache is on by default");
    (c.stats.hits.load(Relaxed), c.stats.inserts.load(Relaxed))
}

const AUD_ROUTES: &str = r#"
[[routes]]
path = "/special/**"
audiences = ["special-api"]

[[routes]]
path = "/admin/**"
roles = ["admin"]

[[routes]]
path = "/api/**"
"#;

async fn setup_aud() -> (DevIssuer, Upstream, Gw) {
    authgear_gateway::install_crypto_provider();
    let issuer = DevIssuer::start().await.expect("issuer");
    let upstream = Upstream::start().await;
    let gw = start_ready(&config_text(&issuer, upstream.addr, "", AUD_ROUTES)).await;
    (issuer, upstream, gw)
}

#[tokio::test]
async fn a_cached_token_is_served_from_the_cache_with_its_identity() {
    let (iss, up, gw) = setup_aud().await;
    let t = iss.mint("alice", json!({}));
    assert_eq!(get_with(&gw.url("/api/a"), &t).await.status, StatusCode::OK);
    assert_eq!(cache_stats(&gw), (0, 0), "a first use is verified and not stored");
    assert_eq!(get_with(&gw.url("/api/a"), &t).await.status, StatusCode::OK);
    assert_eq!(cache_stats(&gw), (0, 1), "the second verification stores it");
    assert_eq!(get_with(&gw.url("/api/b"), &t).await.status, StatusCode::OK);
    assert_eq!(cache_stats(&gw).0, 1, "the third request is a hit");
    assert_eq!(up.last().headers.get("x-authgear-user-id").and_then(|v| v.to_str().ok()), Some("alice"));
}

#[tokio::test]
async fn a_cached_token_past_its_exp_is_refused() {
    let (iss, _up, gw) = setup_aud().await;
    let now = auth::now_unix();
    let t = iss.mint("alice", json!({"exp": now + 60}));
    for _ in 0..2 {
        assert_eq!(get_with(&gw.url("/api/a"), &t).await.status, StatusCode::OK);
    }
    let snap = gw.server.gateway.snapshot();
    let cache = snap.token_cache.as_deref();
    assert_eq!(cache.map(|c| c.len()), Some(1));
    // Same token, same cache, judged at later times (default leeway 30 s).
    let at = |when: u64| auth::verify_token(&snap.config, &snap.keys, cache, &t, None, when);
    assert!(at(now + 30).await.is_ok(), "before exp: valid (from the cache)");
    assert!(at(now + 75).await.is_ok(), "within the leeway: valid (re-verified in full)");
    assert!(matches!(at(now + 91).await, Err(AuthFailure::Token(TokenError::Expired))));
    assert!(matches!(at(now + 100_000).await, Err(AuthFailure::Token(TokenError::Expired))));
}

#[tokio::test]
async fn a_cached_token_whose_key_left_the_jwks_is_refused_after_the_refresh() {
    authgear_gateway::install_crypto_provider();
    let iss = DevIssuer::start().await.expect("issuer");
    let key2 = Arc::new(DevKey::rsa("key-2"));
    iss.publish(&key2);
    iss.sign_with(key2.clone());
    let up = Upstream::start().await;
    let gw = start_ready(&config_text(&iss, up.addr, "", AUD_ROUTES)).await;
    let t = iss.mint("alice", json!({}));
    for _ in 0..3 {
        assert_eq!(get_with(&gw.url("/api/a"), &t).await.status, StatusCode::OK);
    }
    assert!(cache_stats(&gw).0 >= 1, "the token was served from the cache");

    // Retire key-2, then make the gateway reload the JWKS: a token with a
    // kid it has never seen triggers one refetch.
    iss.unpublish("key-2");
    let ghost = DevKey::rsa("ghost");
    let probe = ghost.sign_jwt(&json!({"alg": "RS256", "kid": "ghost"}), &serde_json::Value::Object(iss.claims("probe")));
    assert_eq!(get_with(&gw.url("/api/a"), &probe).await.status, StatusCode::UNAUTHORIZED);
    let snap = gw.server.gateway.snapshot();
    assert!(snap.keys[0].snapshot().is_some_and(|s| s.keys.get("key-2").is_none()), "the refresh dropped key-2");

    let a = get_with(&gw.url("/api/a"), &t).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "a cached token outlived its key");
    assert!(a.header("www-authenticate").is_some_and(|h| h.contains("invalid_token")));
}

#[tokio::test]
async fn a_kid_reused_for_another_key_does_not_keep_old_tokens_alive() {
    let (iss, _up, gw) = setup_aud().await;
    let t = iss.mint("alice", json!({}));
    for _ in 0..2 {
        assert_eq!(get_with(&gw.url("/api/a"), &t).await.status, StatusCode::OK);
    }
    assert_eq!(cache_stats(&gw).1, 1, "the token is cached");
    // The issuer replaces key-1 by a different key under the same kid.
    let imposter = Arc::new(DevKey::rsa("key-1"));
    iss.unpublish("key-1");
    iss.publish(&imposter);
    let ghost = DevKey::rsa("ghost");
    let probe = ghost.sign_jwt(&json!({"alg": "RS256", "kid": "ghost"}), &serde_json::Value::Object(iss.claims("probe")));
    assert_eq!(get_with(&gw.url("/api/a"), &probe).await.status, StatusCode::UNAUTHORIZED);
    let a = get_with(&gw.url("/api/a"), &t).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(a.body.contains("signature"), "{}", a.body);
}

#[tokio::test]
async fn a_cached_token_is_still_forbidden_where_it_lacks_the_role() {
    let (iss, up, gw) = setup_aud().await;
    let t = iss.mint("alice", json!({"https://authgear.com/claims/user/roles": ["viewer"]}));
    for _ in 0..2 {
        assert_eq!(get_with(&gw.url("/api/a"), &t).await.status, StatusCode::OK);
    }
    let seen = up.count();
    let hits = cache_stats(&gw).0;
    let a = get_with(&gw.url("/admin/a"), &t).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(cache_stats(&gw).0, hits + 1, "judged from the cached claims");
    assert_eq!(up.count(), seen, "the upstream never saw it");
    let admin = iss.mint("root", json!({"https://authgear.com/claims/user/roles": ["admin"]}));
    assert_eq!(get_with(&gw.url("/admin/a"), &admin).await.status, StatusCode::OK);
    assert_eq!(get_with(&gw.url("/admin/a"), &admin).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_token_that_failed_never_becomes_valid() {
    let (iss, _up, gw) = setup_aud().await;
    let good = iss.mint("alice", json!({}));
    for _ in 0..2 {
        assert_eq!(get_with(&gw.url("/api/a"), &good).await.status, StatusCode::OK);
    }
    let inserts = cache_stats(&gw).1;
    // Same header and claims as a cached token, signed by a key the
    // issuer never published (under the published kid).
    let rogue = DevKey::rsa("key-1");
    let (input, _) = good.rsplit_once('.').expect("three parts");
    let forged = format!("{input}.{}", rogue.sign_jwt(&json!({"alg": "RS256"}), &json!({})).rsplit_once('.').map(|p| p.1).unwrap_or(""));
    // Not the signature of `input`, but well-formed: a bad signature.
    for _ in 0..3 {
        let a = get_with(&gw.url("/api/a"), &forged).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        assert!(a.body.contains("signature"), "{}", a.body);
    }
    let expired = iss.mint("alice", json!({"exp": auth::now_unix() - 3600}));
    for _ in 0..3 {
        assert_eq!(get_with(&gw.url("/api/a"), &expired).await.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(cache_stats(&gw).1, inserts, "nothing that failed was stored");
    assert_eq!(get_with(&gw.url("/api/a"), &good).await.status, StatusCode::OK, "the real token still works");
}

#[tokio::test]
async fn a_route_with_its_own_audiences_refuses_a_cached_token_for_another() {
    let (iss, _up, gw) = setup_aud().await;
    let t = iss.mint("alice", json!({}));
    for _ in 0..2 {
        assert_eq!(get_with(&gw.url("/api/a"), &t).await.status, StatusCode::OK);
    }
    let hits = cache_stats(&gw).0;
    let a = get_with(&gw.url("/special/a"), &t).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(a.body.contains("audience"), "{}", a.body);
    assert_eq!(cache_stats(&gw).0, hits + 1, "refused on the cache hit itself");
    let special = iss.mint("bob", json!({"aud": "special-api"}));
    assert_eq!(get_with(&gw.url("/special/a"), &special).await.status, StatusCode::OK);
    assert_eq!(get_with(&gw.url("/api/a"), &special).await.status, StatusCode::UNAUTHORIZED, "and the other way round");
}

#[tokio::test]
async fn token_cache_size_zero_turns_the_cache_off() {
    authgear_gateway::install_crypto_provider();
    let iss = DevIssuer::start().await.expect("issuer");
    let up = Upstream::start().await;
    let gw = start_ready(&config_text(&iss, up.addr, "token_cache_size = 0", AUD_ROUTES)).await;
    let t = iss.mint("alice", json!({}));
    for _ in 0..2 {
        assert_eq!(get_with(&gw.url("/api/a"), &t).await.status, StatusCode::OK);
    }
    assert!(gw.server.gateway.snapshot().token_cache.is_none());
}

#[tokio::test]
async fn a_cached_token_gets_each_routes_own_identity_headers_even_after_a_reload() {
    authgear_gateway::install_crypto_provider();
    let iss = DevIssuer::start().await.expect("issuer");
    let up = Upstream::start().await;
    let routes = "[[routes]]\npath = \"/billing/**\"\nheaders = { \"x-billing-user\" = \"sub\" }\n\n[[routes]]\npath = \"/api/**\"\n";
    let gw = start_ready(&config_text(&iss, up.addr, "", routes)).await;
    let t = iss.mint("alice", json!({}));
    let header = |name: &str| up.last().headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    for round in 0..2 {
        assert_eq!(get_with(&gw.url("/api/a"), &t).await.status, StatusCode::OK);
        assert_eq!((header("x-authgear-user-id").as_deref(), header("x-billing-user")), (Some("alice"), None), "round {round}");
        assert_eq!(get_with(&gw.url("/billing/a"), &t).await.status, StatusCode::OK);
        assert_eq!((header("x-billing-user").as_deref(), header("x-authgear-user-id")), (Some("alice"), None), "round {round}");
    }
    assert_eq!(cache_stats(&gw), (2, 1), "two verifications (the second stores it), then hits");

    // A reload that renames the header: the cached token follows the new config.
    let renamed = routes.replace("x-billing-user", "x-payer");
    let cfg = authgear_gateway::Config::from_toml(&config_text(&iss, up.addr, "", &renamed), "test.toml").expect("valid config");
    gw.server.gateway.reload(cfg).expect("reload");
    assert_eq!(get_with(&gw.url("/billing/a"), &t).await.status, StatusCode::OK);
    assert_eq!((header("x-payer").as_deref(), header("x-billing-user")), (Some("alice"), None));
    assert_eq!(cache_stats(&gw).0, 3, "still served from the cache");
}

#[tokio::test]
async fn one_off_tokens_are_not_stored_and_cannot_flush_a_token_in_use() {
    authgear_gateway::install_crypto_provider();
    let iss = DevIssuer::start().await.expect("issuer");
    let up = Upstream::start().await;
    let held = 200;
    let gw = start_ready(&config_text(&iss, up.addr, &format!("token_cache_size = {held}"), AUD_ROUTES)).await;
    let hot = iss.mint("alice", json!({}));
    for _ in 0..2 {
        assert_eq!(get_with(&gw.url("/api/a"), &hot).await.status, StatusCode::OK);
    }
    let snap = gw.server.gateway.snapshot();
    let cache = snap.token_cache.as_deref().expect("cache on");
    let now = auth::now_unix();
    // Twice as many one-off tokens as the cache holds, each verified once.
    for i in 0..2 * held {
        let once = iss.mint(&format!("once-{i}"), json!({}));
        assert!(auth::verify_token(&snap.config, &snap.keys, Some(cache), &once, None, now).await.is_ok());
    }
    assert!(cache.len() < held / 5, "{} one-off tokens stored", cache.len());
    assert!(cache.stats.deferred.load(Relaxed) > held as u64);
    let hits = cache_stats(&gw).0;
    assert_eq!(get_with(&gw.url("/api/a"), &hot).await.status, StatusCode::OK);
    assert_eq!(cache_stats(&gw).0, hits + 1, "the token in use is still cached");
}

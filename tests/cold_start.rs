//! Before any signing key has loaded, token routes answer 503 with
//! Retry-After (never 401, never a pass), public routes work and /readyz is
//! 503; once the issuer answers, the same gateway serves 200.

mod support;

use authgear_gateway::commands::devissuer::{DevIssuer, Mode};
use http::StatusCode;
use serde_json::json;
use support::*;

#[tokio::test]
async fn issuer_down_at_start_then_recovers_without_restart() {
    authgear_gateway::install_crypto_provider();
    let iss = DevIssuer::start().await.unwrap();
    iss.set_mode(Mode::Refuse);
    let up = Upstream::start().await;
    let text = config_text(&iss, up.addr, "unknown_kid_cooldown = \"200ms\"\nretry_initial = \"100ms\"\nretry_max = \"200ms\"", ROUTES);
    let gw = start_gateway(&text).await;

    let t = iss.mint("u", json!({}));
    let a = get_with(&gw.url("/api/x"), &t).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.header("retry-after"), Some("5"));
    assert_eq!(get(&format!("{}/readyz", gw.admin), &[]).await.0, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(get(&format!("{}/healthz", gw.admin), &[]).await.0, StatusCode::OK);
    assert_eq!(get(&gw.url("/public/x"), &[]).await.0, StatusCode::OK);
    assert_eq!(up.count(), 1, "only the public request reached the upstream");

    iss.set_mode(Mode::Up);
    wait_ready(&gw).await;
    assert_eq!(get_with(&gw.url("/api/x"), &t).await.status, StatusCode::OK);
}

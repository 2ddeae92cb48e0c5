//! Route matching and authorization: first match wins, default deny,
//! optional auth, roles/scopes/claims with 403 insufficient_scope.

mod support;

use http::StatusCode;
use serde_json::json;
use support::*;

const ROLES: &str = "https://authgear.com/claims/user/roles";

#[tokio::test]
async fn unmatched_requests_get_404_and_never_reach_the_upstream() {
    let (iss, up, gw) = setup().await;
    let t = iss.mint("u", json!({}));
    let a = get_with(&gw.url("/elsewhere"), &t).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.json()["error"], "not_found");
    // A method the route does not list falls through to 404 as well.
    let auth = format!("Bearer {t}");
    assert_eq!(send("DELETE", &gw.url("/api/x"), &[("authorization", &auth)], b"").await.status, StatusCode::NOT_FOUND);
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn optional_routes() {
    let (iss, up, gw) = setup().await;
    let (s, _) = get(&gw.url("/optional/x"), &[]).await;
    assert_eq!(s, StatusCode::OK);
    assert!(up.last().headers.get("x-authgear-user-id").is_none());
    let a = get_with(&gw.url("/optional/x"), &iss.mint("opt-user", json!({}))).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(up.last().headers["x-authgear-user-id"], "opt-user");
    // A bad token is never downgraded to anonymous.
    let n = up.count();
    let now = authgear_gateway::auth::now_unix();
    let a = get_with(&gw.url("/optional/x"), &iss.mint("u", json!({"exp": now - 3600}))).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(up.count(), n);
}

#[tokio::test]
async fn roles_scopes_and_claims_give_403_insufficient_scope() {
    let (iss, up, gw) = setup().await;
    let check = |a: &Answer| {
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
        let www = a.header("www-authenticate").unwrap_or_default();
        assert!(www.contains("error=\"insufficient_scope\""), "{www}");
        assert_eq!(a.json()["error"], "insufficient_scope");
    };
    check(&get_with(&gw.url("/admin/x"), &iss.mint("u", json!({ROLES: ["user"]}))).await);
    check(&get_with(&gw.url("/orders/1"), &iss.mint("u", json!({"scope": "openid orders:write"}))).await);
    check(&get_with(&gw.url("/verified/1"), &iss.mint("u", json!({"https://authgear.com/claims/user/is_verified": false}))).await);
    assert_eq!(up.count(), 0);
    assert_eq!(get_with(&gw.url("/admin/x"), &iss.mint("boss", json!({ROLES: ["user", "admin"]}))).await.status, StatusCode::OK);
    assert_eq!(get_with(&gw.url("/orders/1"), &iss.mint("u", json!({"scope": "openid orders:read"}))).await.status, StatusCode::OK);
    assert_eq!(get_with(&gw.url("/verified/1"), &iss.mint("u", json!({}))).await.status, StatusCode::OK);
    assert_eq!(up.count(), 3);
}

#[tokio::test]
async fn first_match_wins() {
    authgear_gateway::install_crypto_provider();
    let iss = authgear_gateway::commands::devissuer::DevIssuer::start().await.unwrap();
    let up = Upstream::start().await;
    let routes = r#"
[[routes]]
path = "/docs/private/**"
auth = "required"

[[routes]]
path = "/docs/**"
auth = "public"
"#;
    let gw = start_ready(&config_text(&iss, up.addr, "", routes)).await;
    assert_eq!(get(&gw.url("/docs/private/x"), &[]).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(get(&gw.url("/docs/readme"), &[]).await.0, StatusCode::OK);
}

#[tokio::test]
async fn method_body_query_and_headers_pass_through() {
    let (iss, up, gw) = setup().await;
    let t = iss.mint("u", json!({}));
    let auth = format!("Bearer {t}");
    let body = vec![b'x'; 300_000];
    let a =
        send("POST", &gw.url("/api/upload?a=1&b=%20"), &[("authorization", &auth), ("content-type", "application/octet-stream"), ("x-custom", "kept")], &body)
            .await;
    assert_eq!(a.status, StatusCode::OK);
    let seen = up.last();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.target, "/api/upload?a=1&b=%20");
    assert_eq!(seen.headers["x-custom"], "kept");
    assert_eq!(seen.headers["content-type"], "application/octet-stream");
    assert_eq!(seen.body.len(), body.len());
    assert!(seen.body.iter().all(|&b| b == b'x'));
}

#[tokio::test]
async fn upstream_refused_is_502_and_timeout_is_504() {
    authgear_gateway::install_crypto_provider();
    let iss = authgear_gateway::commands::devissuer::DevIssuer::start().await.unwrap();
    // A port with nothing listening.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let gw = start_ready(&config_text(&iss, dead, "", ROUTES)).await;
    let (s, a) = get(&gw.url("/public/x"), &[]).await;
    assert_eq!(s, StatusCode::BAD_GATEWAY);
    assert_eq!(a.json()["error"], "bad_gateway");

    let up = Upstream::start().await;
    *up.delay.lock().unwrap() = std::time::Duration::from_secs(5);
    let gw = start_ready(&config_text(&iss, up.addr, "", ROUTES)).await;
    let (s, _) = get(&gw.url("/public/slow"), &[]).await;
    assert_eq!(s, StatusCode::GATEWAY_TIMEOUT);
}

//! A client can never choose its own identity: identity headers it sends are
//! dropped on every route, in every spelling, and claim values cannot
//! inject header lines.

mod support;

use http::StatusCode;
use serde_json::json;
use support::*;

const SPOOFS: &[(&str, &str)] = &[
    ("x-authgear-user-id", "admin"),
    ("X-Authgear-Session-Valid", "true"),
    ("x_authgear_user_roles", "admin"),
    ("X-AUTHGEAR-USER-VERIFIED", "true"),
    ("x-authgear-anything-new", "1"),
];

fn assert_no_spoofed(seen: &Seen) {
    for (name, _) in SPOOFS {
        if let Some(v) = seen.headers.get(*name) {
            assert_ne!(v, "admin", "{name} passed through");
        }
    }
    assert!(seen.headers.get("x_authgear_user_roles").is_none());
    assert!(seen.headers.get("x-authgear-anything-new").is_none());
}

#[tokio::test]
async fn spoofed_identity_headers_are_stripped_on_public_routes() {
    let (_iss, up, gw) = setup().await;
    let a = send("GET", &gw.url("/public/page"), SPOOFS, b"").await;
    assert_eq!(a.status, StatusCode::OK);
    let seen = up.last();
    assert_no_spoofed(&seen);
    assert!(seen.headers.get("x-authgear-session-valid").is_none());
    assert!(seen.headers.get("x-authgear-user-id").is_none());
}

#[tokio::test]
async fn spoofed_identity_headers_are_stripped_on_optional_routes_without_token() {
    let (_iss, up, gw) = setup().await;
    let a = send("GET", &gw.url("/optional/page"), SPOOFS, b"").await;
    assert_eq!(a.status, StatusCode::OK);
    let seen = up.last();
    assert_no_spoofed(&seen);
    assert!(seen.headers.get("x-authgear-user-id").is_none());
}

#[tokio::test]
async fn verified_identity_replaces_spoofed_values() {
    let (iss, up, gw) = setup().await;
    let t = iss.mint("real-user", json!({}));
    let auth = format!("Bearer {t}");
    let mut h: Vec<(&str, &str)> = SPOOFS.to_vec();
    h.push(("authorization", &auth));
    assert_eq!(send("GET", &gw.url("/api/x"), &h, b"").await.status, StatusCode::OK);
    let seen = up.last();
    assert_no_spoofed(&seen);
    assert_eq!(seen.headers.get_all("x-authgear-user-id").iter().count(), 1);
    assert_eq!(seen.headers["x-authgear-user-id"], "real-user");
    // No roles claim values -> no roles header, and the spoofed one is gone.
    assert!(seen.headers.get("x-authgear-user-roles").is_none());
}

#[tokio::test]
async fn configured_header_names_are_stripped_in_every_spelling() {
    authgear_gateway::install_crypto_provider();
    let iss = authgear_gateway::commands::devissuer::DevIssuer::start().await.unwrap();
    let up = Upstream::start().await;
    let rest = format!("[headers]\n\"x-user-id\" = \"sub\"\n\"x-user-email\" = \"email\"\n{ROUTES}");
    let gw = start_ready(&config_text(&iss, up.addr, "", &rest)).await;
    let a = send("GET", &gw.url("/public/p"), &[("X-User-Id", "admin"), ("x_user_id", "admin"), ("X-User_Email", "a@b"), ("x-authgear-user-id", "admin")], b"")
        .await;
    assert_eq!(a.status, StatusCode::OK);
    let seen = up.last();
    for n in ["x-user-id", "x_user_id", "x-user_email", "x-authgear-user-id"] {
        assert!(seen.headers.get(n).is_none(), "{n} passed through");
    }
    let t = iss.mint("u-9", json!({"email": "u9@example.com"}));
    assert_eq!(get_with(&gw.url("/api/x"), &t).await.status, StatusCode::OK);
    let seen = up.last();
    assert_eq!(seen.headers["x-user-id"], "u-9");
    assert_eq!(seen.headers["x-user-email"], "u9@example.com");
    // With a custom mapping, the Authgear defaults are not sent.
    assert!(seen.headers.get("x-authgear-session-valid").is_none());
}

#[tokio::test]
async fn connection_header_cannot_remove_identity_headers() {
    let (iss, up, gw) = setup().await;
    let t = iss.mint("u", json!({}));
    let auth = format!("Bearer {t}");
    let a = send(
        "GET",
        &gw.url("/api/x"),
        &[("authorization", &auth), ("connection", "x-authgear-user-id, x-forwarded-for"), ("x-private", "1"), ("te", "trailers")],
        b"",
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let seen = up.last();
    assert_eq!(seen.headers["x-authgear-user-id"], "u");
    assert!(seen.headers.get("x-forwarded-for").is_some());
    assert!(seen.headers.get("te").is_none());
    // Hop-by-hop headers of the upstream's response are dropped too.
    assert!(a.headers.get("x-upstream-private").is_none());
    assert_eq!(a.header("x-upstream"), Some("yes"));
}

#[tokio::test]
async fn forwarding_headers_are_set_and_not_trusted_from_clients() {
    let (_iss, up, gw) = setup().await;
    let a = send(
        "GET",
        &gw.url("/public/p"),
        &[("x-forwarded-for", "6.6.6.6"), ("x-forwarded-host", "evil.example"), ("forwarded", "for=6.6.6.6"), ("x-real-ip", "6.6.6.6")],
        b"",
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let seen = up.last();
    assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen.headers["x-forwarded-proto"], "http");
    assert_eq!(seen.headers["x-forwarded-host"], gw.server.addr.to_string());
    assert!(seen.headers.get("forwarded").is_none());
    assert!(seen.headers.get("x-real-ip").is_none());
}

#[tokio::test]
async fn claim_values_cannot_inject_headers() {
    let (iss, up, gw) = setup().await;
    let t = iss.mint("evil\r\nx-authgear-user-roles: admin", json!({"https://authgear.com/claims/user/roles": ["a,b", "c"]}));
    assert_eq!(get_with(&gw.url("/api/x"), &t).await.status, StatusCode::OK);
    let seen = up.last();
    assert_eq!(seen.headers["x-authgear-user-id"], "evil%0D%0Ax-authgear-user-roles: admin");
    assert_eq!(seen.headers["x-authgear-user-roles"], "a%2Cb,c");
}

/// PHP (and CGI, WSGI) fill `$_SERVER` by folding `-` and `.` to `_`:
/// `X.Authgear.User.Id` reaches a PHP app as `HTTP_X_AUTHGEAR_USER_ID`.
const PHP_SPOOFS: &[(&str, &str)] = &[
    ("X.Authgear.User.Id", "admin"),
    ("X.Authgear-User-Id", "admin"),
    ("x-authgear.user.id", "admin"),
    ("X.Authgear.User.Roles", "admin"),
    ("X.Authgear.Session.Valid", "true"),
];

/// True when `name` folds (case, `-`, `_`, `.`) to `x-authgear-...`.
fn folds_to_authgear(name: &str) -> bool {
    name.to_ascii_lowercase().replace(['_', '.'], "-").starts_with("x-authgear-")
}

#[tokio::test]
async fn dot_spelled_identity_headers_are_stripped_on_public_routes() {
    let (_iss, up, gw) = setup().await;
    assert_eq!(send("GET", &gw.url("/public/page"), PHP_SPOOFS, b"").await.status, StatusCode::OK);
    let seen = up.last();
    let leaked: Vec<_> = seen.headers.keys().filter(|n| folds_to_authgear(n.as_str())).collect();
    assert!(leaked.is_empty(), "{leaked:?}");
}

#[tokio::test]
async fn dot_spelled_roles_cannot_fill_in_for_an_empty_roles_claim() {
    let (iss, up, gw) = setup().await;
    let t = iss.mint("no-roles", json!({"https://authgear.com/claims/user/roles": []}));
    let auth = format!("Bearer {t}");
    let mut h: Vec<(&str, &str)> = PHP_SPOOFS.to_vec();
    h.push(("authorization", &auth));
    assert_eq!(send("GET", &gw.url("/api/x"), &h, b"").await.status, StatusCode::OK);
    let seen = up.last();
    let names: Vec<&str> = seen.headers.keys().map(|n| n.as_str()).filter(|n| folds_to_authgear(n)).collect();
    assert!(names.iter().all(|n| n.starts_with("x-authgear-")), "only the gateway's own spellings: {names:?}");
    assert!(seen.headers.get("x-authgear-user-roles").is_none(), "the token has no roles");
    assert_eq!(seen.headers["x-authgear-user-id"], "no-roles");
}

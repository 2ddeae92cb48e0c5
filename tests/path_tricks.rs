//! No spelling of a protected path slips through a public rule: paths are
//! normalized before matching, the upstream receives the normalized form,
//! and ambiguous encodings are refused.

mod support;

use support::*;

async fn raw_get(gw: &Gw, target: &str) -> u16 {
    let req = format!("GET {target} HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n");
    raw_status(&raw(gw.server.addr, &req).await)
}

#[tokio::test]
async fn dot_segments_and_encodings_resolve_before_matching() {
    let (_iss, up, gw) = setup().await;
    for target in [
        "/public/../admin/x",
        "/public/%2e%2e/admin/x",
        "/public/%2E%2E/admin/x",
        "/public/.%2e/admin/x",
        "//admin/x",
        "/public/./../admin/x",
        "/%61dmin/x",
        "/public/..//admin/x",
    ] {
        assert_eq!(raw_get(&gw, target).await, 401, "{target} must be judged as /admin/x");
    }
    assert_eq!(up.count(), 0, "nothing reached the upstream");
}

#[tokio::test]
async fn ambiguous_paths_get_400() {
    let (_iss, up, gw) = setup().await;
    for target in [
        "/public/..%2fadmin/x",
        "/public%2F..%2Fadmin/x",
        "/public/..%5cadmin/x",
        "/public/..;/admin/x",
        "/public;/../admin/x",
        "/public/x%3b/y",
        "/public/%00",
        "/public/../../etc/passwd",
        "/public/%zz",
    ] {
        assert_eq!(raw_get(&gw, target).await, 400, "{target}");
    }
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn upstream_receives_the_normalized_path() {
    let (_iss, up, gw) = setup().await;
    assert_eq!(raw_get(&gw, "/public/a/./b//c/../d?q=%2e%2e&x=1").await, 200);
    assert_eq!(up.last().target, "/public/a/b/d?q=%2e%2e&x=1");
    assert_eq!(raw_get(&gw, "/public/%7Euser/%41").await, 200);
    assert_eq!(up.last().target, "/public/~user/A");
    assert_eq!(raw_get(&gw, "/public/caf%c3%a9").await, 200);
    assert_eq!(up.last().target, "/public/caf%C3%A9");
}

#[tokio::test]
async fn public_prefix_does_not_match_longer_names() {
    let (_iss, up, gw) = setup().await;
    // "/publicity" is not under "/public/**"; no other route matches -> 404.
    assert_eq!(raw_get(&gw, "/publicity").await, 404);
    assert_eq!(raw_get(&gw, "/PUBLIC/x").await, 404);
    assert_eq!(up.count(), 0);
}

//! No spelling of a protected path slips through a public rule: paths are
//! normalized before matching, the upstream receives the normalized form,
//! and ambiguous encodings are refused. Legacy `;` parameters on the last
//! segment are judged without and forwarded with, and apps that route
//! case-insensitively get routes that match that way.

mod support;

use support::*;

async fn raw_get(gw: &Gw, target: &str) -> u16 {
    let req = format!("GET {target} HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n");
    raw_status(&raw(gw.server.addr, &req).await)
}

/// A gateway on `routes`, with `server` lines added to `[server]`.
async fn start_with(server: &str, routes: &str) -> (authgear_gateway::commands::devissuer::DevIssuer, Upstream, Gw) {
    authgear_gateway::install_crypto_provider();
    let issuer = authgear_gateway::commands::devissuer::DevIssuer::start().await.expect("issuer");
    let upstream = Upstream::start().await;
    let text = config_text(&issuer, upstream.addr, "", routes).replacen("[server]\n", &format!("[server]\n{server}\n"), 1);
    let gw = start_ready(&text).await;
    (issuer, upstream, gw)
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
        "/public/%252e%252e/admin/x",
        "/public/%00",
        "/public/../../etc/passwd",
        "/public/%zz",
        // Overlong UTF-8 for `.` and `/`, which old decoders read as ASCII.
        "/public/%c0%ae%c0%ae/admin/x",
        "/public/..%c0%afadmin/x",
        "/public/%e0%80%ae%e0%80%ae/admin/x",
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

#[tokio::test]
async fn double_encoded_octets_get_400() {
    let (_iss, up, gw) = setup().await;
    for target in [
        "/public/%252e%252e/admin/x",
        "/public/%252E%252E/admin/x",
        "/public/%252e%252E/admin/x",
        "/public/..%252fadmin/x",
        "/public/%252F..%252Fadmin/x",
        "/public/..%255cadmin/x",
        "/public/x%253b/y",
        "/public/x%253Bjsessionid=1",
        "/public/%2500",
        "/public/%25252e%25252e/admin/x",
        // Only double-encoded once the unreserved `%32` (2) and `%65` (e) are decoded.
        "/public/%25%32%65%25%32%65/admin/x",
    ] {
        assert_eq!(raw_get(&gw, target).await, 400, "{target}");
    }
    assert_eq!(up.count(), 0, "a double-encoded path reached the upstream");
    // A percent sign that is not followed by two hex digits is just that.
    assert_eq!(raw_get(&gw, "/public/100%25").await, 200);
    assert_eq!(up.last().target, "/public/100%25");
    assert_eq!(raw_get(&gw, "/public/100%25-off/%25zz").await, 200);
    assert_eq!(up.last().target, "/public/100%25-off/%25zz");
}

#[tokio::test]
async fn last_segment_parameters_are_judged_without_and_forwarded_with() {
    let (_iss, up, gw) = setup().await;
    for (target, forwarded) in [
        ("/public/x;jsessionid=1", "/public/x;jsessionid=1"),
        ("/public/x;.css", "/public/x;.css"),
        ("/public/app/page;jsessionid=A1B2C3.node1?next=%2F", "/public/app/page;jsessionid=A1B2C3.node1?next=%2F"),
        ("/public/a/../x;v=1,2;w=3", "/public/x;v=1,2;w=3"),
        ("/public/%7Euser;jsessionid=0000ab:-1", "/public/~user;jsessionid=0000ab:-1"),
    ] {
        assert_eq!(raw_get(&gw, target).await, 200, "{target}");
        assert_eq!(up.last().target, forwarded, "{target}");
    }
    // Judged on the path without the parameter: the admin rule still holds.
    let before = up.count();
    for target in ["/admin/x;jsessionid=1", "/public/../admin/x;.css", "/admin;jsessionid=1"] {
        assert_eq!(raw_get(&gw, target).await, 401, "{target}");
    }
    assert_eq!(up.count(), before);
}

#[tokio::test]
async fn semicolons_that_could_change_the_resource_get_400() {
    let (_iss, up, gw) = setup().await;
    for target in [
        // Tomcat strips `;...` from every segment, then resolves dot segments.
        "/public;x/../admin/x",
        "/public;x/y",
        "/public/..;/admin/x",
        "/public/..;x/admin/x",
        "/public/%2e%2e;/admin/x",
        "/..;/admin/x",
        "/public/.;x",
        "/public/..;",
        "/public/;jsessionid=1",
        "/public/x;jsessionid=1/",
        // Servers disagree on whether an encoded `;` starts a parameter.
        "/public/x%3Bjsessionid=1",
        "/public/x%3b.css",
        // Nothing in a parameter decodes to anything.
        "/public/x;a%2fb",
        "/public/x;a%2e%2e",
        "/public/x;a\\b",
        "/public/x;a=%00",
    ] {
        assert_eq!(raw_get(&gw, target).await, 400, "{target}");
    }
    assert_eq!(up.count(), 0);
}

const CASE_ROUTES: &str = r#"
[[routes]]
path = "/admin/**"
roles = ["admin"]

[[routes]]
path = "/api/**"
auth = "public"
strip_prefix = "/api"
add_prefix = "/v2"

[[routes]]
path = "/**"
auth = "public"
"#;

#[tokio::test]
async fn case_insensitive_apps_cannot_reach_admin_through_a_public_catch_all() {
    let (_iss, up, gw) = start_with("path_case = \"insensitive\"", CASE_ROUTES).await;
    for target in ["/ADMIN/x", "/Admin/users", "/aDmIn", "/%41DMIN/x", "/ADMIN/x;jsessionid=1", "/public/../AdMiN/x"] {
        assert_eq!(raw_get(&gw, target).await, 401, "{target} must be judged as /admin/...");
    }
    assert_eq!(up.count(), 0);
    // Matched and prefix-rewritten case-insensitively; forwarded as written.
    assert_eq!(raw_get(&gw, "/API/Items/1").await, 200);
    assert_eq!(up.last().target, "/v2/Items/1");
    assert_eq!(raw_get(&gw, "/Api/items;jsessionid=9").await, 200);
    assert_eq!(up.last().target, "/v2/items;jsessionid=9");
    assert_eq!(raw_get(&gw, "/Public/ReadMe").await, 200);
    assert_eq!(up.last().target, "/Public/ReadMe");
    // Letters that Java, .NET or Windows fold to ASCII ones would slip past
    // an ASCII-only comparison: refused.
    let before = up.count();
    for target in ["/%C4%B1nternal", "/adm%C4%B1n/x", "/%C5%BFecret", "/%E2%84%AAeys", "/pro%EF%AC%81le"] {
        assert_eq!(raw_get(&gw, target).await, 400, "{target}");
    }
    assert_eq!(up.count(), before);
    // Other non-ASCII letters are compared exactly, in one spelling.
    assert_eq!(raw_get(&gw, "/caf%c3%a9").await, 200);
    assert_eq!(up.last().target, "/caf%C3%A9");
}

#[tokio::test]
async fn one_route_can_match_case_insensitively_on_its_own() {
    let routes = CASE_ROUTES.replacen("roles = [\"admin\"]", "roles = [\"admin\"]\npath_case = \"insensitive\"", 1);
    let (_iss, up, gw) = start_with("", &routes).await;
    assert_eq!(raw_get(&gw, "/ADMIN/x").await, 401);
    assert_eq!(up.count(), 0);
    // The other routes stay case-sensitive: `/API` is not `/api`.
    assert_eq!(raw_get(&gw, "/API/items").await, 200);
    assert_eq!(up.last().target, "/API/items");
    // Lookalikes are refused as soon as any route folds case.
    assert_eq!(raw_get(&gw, "/adm%C4%B1n/x").await, 400);
}

#[tokio::test]
async fn by_default_paths_are_case_sensitive() {
    let (_iss, up, gw) = start_with("", CASE_ROUTES).await;
    assert_eq!(raw_get(&gw, "/ADMIN/x").await, 200, "sensitive: /ADMIN is not /admin");
    assert_eq!(up.last().target, "/ADMIN/x");
    assert_eq!(raw_get(&gw, "/adm%C4%B1n/x").await, 200);
}

#[tokio::test]
async fn non_ascii_paths_have_one_spelling() {
    let routes = "[[routes]]\npath = \"/caf\u{e9}/**\"\nroles = [\"admin\"]\n\n[[routes]]\npath = \"/**\"\nauth = \"public\"\nstrip_prefix = \"/men\u{fc}\"\n";
    let (_iss, up, gw) = start_with("", routes).await;
    for target in ["/caf\u{e9}/x", "/caf%C3%A9/x", "/caf%c3%a9/x", "/%63af%C3%A9/x"] {
        assert_eq!(raw_get(&gw, target).await, 401, "{target} must be judged as /café/x");
    }
    assert_eq!(up.count(), 0);
    assert_eq!(raw_get(&gw, "/men\u{fc}/caf\u{e9}").await, 200);
    assert_eq!(up.last().target, "/caf%C3%A9");
}

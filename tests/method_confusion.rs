//! The method the gateway judges is the method the app runs: a standard
//! method in another case is refused (Werkzeug upper-cases before routing),
//! and method-override headers (Express, Rack, Symfony, Laravel) are removed
//! unless a route opts in, where the overriding method is the one judged.

mod support;

use http::StatusCode;
use serde_json::json;
use support::*;

#[tokio::test]
async fn a_lower_case_standard_method_is_refused_before_routing() {
    let (_iss, up, gw) = setup().await;
    for m in ["post", "Get", "dElEtE", "patch"] {
        let a = raw(gw.server.addr, &format!("{m} /public/x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")).await;
        assert_eq!(raw_status(&a), 400, "{m}: {a}");
        assert!(a.contains("\"invalid_request\""), "{a}");
    }
    assert_eq!(up.count(), 0);
    // Extension methods pass as written.
    let a = raw(gw.server.addr, "PROPFIND /public/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").await;
    assert_eq!(raw_status(&a), 200, "{a}");
    assert_eq!(up.last().method, "PROPFIND");
}

const OVERRIDES: &[(&str, &str)] =
    &[("X-HTTP-Method-Override", "DELETE"), ("X-HTTP-Method", "DELETE"), ("X-Method-Override", "DELETE"), ("x_http_method_override", "DELETE")];

#[tokio::test]
async fn override_headers_are_removed_by_default() {
    let (iss, up, gw) = setup().await;
    // `/api/**` allows GET and POST only; an app with override support
    // would otherwise run DELETE.
    let auth = format!("Bearer {}", iss.mint("u", json!({})));
    let mut h = OVERRIDES.to_vec();
    h.push(("authorization", &auth));
    assert_eq!(send("POST", &gw.url("/api/items/1"), &h, b"").await.status, StatusCode::OK);
    let seen = up.last();
    assert_eq!(seen.method, "POST");
    for n in seen.headers.keys() {
        let f = n.as_str().to_ascii_lowercase().replace(['_', '.'], "-");
        assert!(!["x-http-method-override", "x-http-method", "x-method-override"].contains(&f.as_str()), "{n} reached the app");
    }
    // On public routes too.
    assert_eq!(send("POST", &gw.url("/public/x"), OVERRIDES, b"").await.status, StatusCode::OK);
    assert!(up.last().headers.keys().all(|n| !n.as_str().contains("method")));
}

const OVERRIDE_ROUTES: &str = r#"
[[routes]]
path = "/items/**"
methods = ["DELETE"]
roles = ["admin"]
method_override = true

[[routes]]
path = "/items/**"
methods = ["GET", "POST"]
auth = "public"
method_override = true

[[routes]]
path = "/plain/**"
methods = ["DELETE"]
roles = ["admin"]

[[routes]]
path = "/plain/**"
methods = ["POST"]
auth = "public"
method_override = true
"#;

#[tokio::test]
async fn an_opted_in_route_judges_the_overriding_method() {
    authgear_gateway::install_crypto_provider();
    let iss = authgear_gateway::commands::devissuer::DevIssuer::start().await.expect("issuer");
    let up = Upstream::start().await;
    let gw = start_ready(&config_text(&iss, up.addr, "", OVERRIDE_ROUTES)).await;

    // POST + DELETE override is judged as DELETE: the admin rule.
    let a = send("POST", &gw.url("/items/1"), &[("X-HTTP-Method-Override", "DELETE")], b"").await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    assert_eq!(up.count(), 0);
    let user = format!("Bearer {}", iss.mint("u", json!({})));
    let a = send("POST", &gw.url("/items/1"), &[("X-HTTP-Method-Override", "delete"), ("authorization", &user)], b"").await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let admin = format!("Bearer {}", iss.mint("a", json!({"https://authgear.com/claims/user/roles": ["admin"]})));
    let a = send("POST", &gw.url("/items/1"), &[("X-HTTP-Method-Override", "DELETE"), ("authorization", &admin)], b"").await;
    assert_eq!(a.status, StatusCode::OK);
    let seen = up.last();
    assert_eq!((seen.method.as_str(), seen.headers["x-http-method-override"].to_str().unwrap_or("")), ("POST", "DELETE"), "the override goes on");

    // Plain POST is the public rule.
    assert_eq!(send("POST", &gw.url("/items/1"), &[], b"").await.status, StatusCode::OK);
    // Override on a GET: middlewares ignore it, so it is ambiguous.
    let a = send("GET", &gw.url("/items/1"), &[("X-HTTP-Method-Override", "DELETE"), ("authorization", &admin)], b"").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    // Two overrides that disagree.
    let a = send("POST", &gw.url("/items/1"), &[("X-HTTP-Method-Override", "DELETE"), ("X-HTTP-Method", "PUT")], b"").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn an_override_that_would_pick_a_route_without_opt_in_is_removed() {
    authgear_gateway::install_crypto_provider();
    let iss = authgear_gateway::commands::devissuer::DevIssuer::start().await.expect("issuer");
    let up = Upstream::start().await;
    let gw = start_ready(&config_text(&iss, up.addr, "", OVERRIDE_ROUTES)).await;
    // DELETE on /plain is the admin rule, which does not opt in: the
    // header is removed, and the POST is judged (public) and run as POST.
    let a = send("POST", &gw.url("/plain/1"), &[("X-HTTP-Method-Override", "DELETE")], b"").await;
    assert_eq!(a.status, StatusCode::OK);
    let seen = up.last();
    assert_eq!(seen.method, "POST");
    assert!(seen.headers.get("x-http-method-override").is_none(), "the public POST rule must not pass a DELETE override");
}

/// `_method` in the query or a POSTed form (Rails, Laravel, Symfony,
/// Spring's hidden-method filter, Express): there is no header to remove,
/// so a `_method` that another route would judge is refused, and the app
/// never gets the whole body.
#[tokio::test]
async fn a_method_parameter_that_would_change_the_route_is_refused() {
    let (iss, up, gw) = setup().await;
    let auth = format!("Bearer {}", iss.mint("u", json!({})));
    let a = [("authorization", auth.as_str())];
    // `/api/**` allows GET and POST; DELETE matches no route.
    for q in ["_method=DELETE", "_method=delete", "%5Fmethod=DELETE", "x=1&_method=PUT", "_method=DELETE&_method=GET"] {
        let r = send("POST", &gw.url(&format!("/api/x?{q}")), &a, b"").await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}");
    }
    assert_eq!(up.count(), 0);
    let r = send("POST", &gw.url("/api/x?_method=GET"), &a, b"").await;
    assert_eq!(r.status, StatusCode::OK, "judged by the same route either way");

    let form = [("authorization", auth.as_str()), ("content-type", "application/x-www-form-urlencoded")];
    let before = up.count();
    let r = send("POST", &gw.url("/api/x"), &form, b"title=hi&_method=DELETE").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(r.json()["error"], "invalid_request");
    assert_eq!(up.count(), before, "the app never got the whole body");
    assert_eq!(send("POST", &gw.url("/api/x"), &form, b"title=hi&_method=post").await.status, StatusCode::OK);
    assert_eq!(send("POST", &gw.url("/api/x"), &form, b"title=_method%3DDELETE").await.status, StatusCode::OK);

    let multipart = [("authorization", auth.as_str()), ("content-type", "multipart/form-data; boundary=b0und")];
    let body = b"--b0und\r\nContent-Disposition: form-data; name=\"_method\"\r\n\r\nDELETE\r\n--b0und--\r\n";
    let before = up.count();
    assert_eq!(send("POST", &gw.url("/api/x"), &multipart, body).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(up.count(), before);
    // Public routes that every method reaches the same way are not scanned.
    assert_eq!(send("POST", &gw.url("/public/x"), &[("content-type", "application/x-www-form-urlencoded")], b"_method=DELETE").await.status, StatusCode::OK);
}

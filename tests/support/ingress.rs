//! A real ingress (nginx, Caddy) in front of a recording app, asking the
//! gateway's forward-auth endpoint: the pieces the forward-auth tests share.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use super::rawhttp::{self, RawAnswer};
use authgear_gateway::commands::devissuer::DevIssuer;
use serde_json::json;

use super::{Seen, Upstream};

/// The default identity headers, as the gateway names them.
pub const IDENTITY: &[&str] = &[
    "x-authgear-session-valid",
    "x-authgear-user-id",
    "x-authgear-user-anonymous",
    "x-authgear-user-verified",
    "x-authgear-user-can-reauthenticate",
    "x-authgear-user-roles",
    "x-authgear-session-amr",
    "x-authgear-session-authenticated-at",
];

/// A raw GET through the ingress at `ingress` (so paths travel exactly as
/// written), and what the app saw of it: tests share the app, so each
/// request carries its own `x-test-id` and only the app's requests with
/// it are returned.
pub fn via(rt: &tokio::runtime::Runtime, ingress: SocketAddr, app: &Upstream, target: &str, headers: &[(&str, &str)]) -> (RawAnswer, Vec<Seen>) {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let id = format!("t{}", NEXT.fetch_add(1, Ordering::Relaxed));
    let mut req = format!("GET {target} HTTP/1.1\r\nHost: app.example.test\r\nConnection: close\r\nx-test-id: {id}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut answers = rt.block_on(rawhttp::exchange(ingress, req.as_bytes(), false));
    assert_eq!(answers.len(), 1, "one answer for {target}");
    let seen = app.seen().into_iter().filter(|s| s.headers.get("x-test-id").is_some_and(|v| v == id.as_str())).collect();
    (answers.remove(0), seen)
}

/// The login page the `login_redirect` routes send browsers to.
pub const LOGIN: &str = "https://login.example.test/login";

/// The routes every ingress test puts behind its ingress: public,
/// role-gated, browser-login and token routes.
pub const ROUTES: &str = r#"
[[routes]]
path = "/public/**"
auth = "public"

[[routes]]
path = "/admin/**"
roles = ["admin"]

[[routes]]
path = "/web/**"
login_redirect = true

[[routes]]
path = "/api/**"
auth = "required"
"#;

/// What an ingress client does: a GET with these headers, and what the app saw.
pub type Via<'a> = &'a dyn Fn(&str, &[(&str, &str)]) -> (RawAnswer, Vec<Seen>);

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

/// An allowed token reaches the app with the gateway's identity headers.
pub fn passes_a_valid_token(issuer: &DevIssuer, via: Via<'_>) {
    let auth = bearer(&issuer.mint("user-1", json!({})));
    let (a, seen) = via("/api/orders?x=1", &[("authorization", &auth)]);
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target, "/api/orders?x=1");
    assert_eq!(seen[0].headers["x-authgear-user-id"], "user-1");
    assert_eq!(seen[0].headers["x-authgear-session-valid"], "true");
}

/// 401 with the challenge and JSON body, or 403; the app is not reached.
pub fn denies_and_the_app_is_not_reached(issuer: &DevIssuer, via: Via<'_>) {
    let (a, seen) = via("/api/orders", &[]);
    assert_eq!(a.status, 401);
    assert!(a.header("www-authenticate").is_some_and(|c| c.starts_with("Bearer")), "challenge passed to the client");
    assert_eq!(a.json()["error"], "unauthorized", "the JSON body passed to the client");
    assert!(seen.is_empty());
    let auth = bearer(&issuer.mint("user-2", json!({})));
    let (a, seen) = via("/admin/panel", &[("authorization", &auth)]);
    assert_eq!(a.status, 403);
    assert!(seen.is_empty());
}

/// Client-sent identity headers never reach the app, present claim or not.
pub fn client_identity_headers_never_reach_the_app(issuer: &DevIssuer, via: Via<'_>) {
    let spoofs = [("x-authgear-user-id", "admin"), ("x-authgear-user-roles", "admin"), ("x-authgear-session-amr", "mfa")];
    let (a, seen) = via("/public/page", &spoofs);
    assert_eq!(a.status, 200);
    for (name, bad) in spoofs {
        let v = seen[0].headers.get(name).map(|v| v.to_str().unwrap_or("?").to_owned()).unwrap_or_default();
        assert!(v.is_empty(), "{name} reached the app as {v:?} (client sent {bad:?})");
    }
    let auth = bearer(&issuer.mint("user-4", json!({"amr": null, "https://authgear.com/claims/user/roles": null})));
    let mut h = spoofs.to_vec();
    h.push(("authorization", &auth));
    let (a, seen) = via("/api/x", &h);
    assert_eq!(a.status, 200);
    assert_eq!(seen[0].headers.get_all("x-authgear-user-id").iter().collect::<Vec<_>>(), ["user-4"]);
    for name in ["x-authgear-user-roles", "x-authgear-session-amr"] {
        let v = seen[0].headers.get(name).map(|v| v.to_str().unwrap_or("?").to_owned()).unwrap_or_default();
        assert!(v.is_empty(), "{name} reached the app as {v:?}");
    }
}

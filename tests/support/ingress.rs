//! A real ingress (nginx, Caddy) in front of a recording app, asking the
//! gateway's forward-auth endpoint: the pieces the forward-auth tests share.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use super::rawhttp::{self, RawAnswer};
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

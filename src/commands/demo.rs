//! `authgear-gateway demo`: a development issuer, an echo upstream and the
//! gateway in front of it, all on 127.0.0.1, with curl commands to try.
//! Needs no internet and no files.

use std::convert::Infallible;
use std::net::SocketAddr;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{json, Map, Value};

use crate::commands::devissuer::DevIssuer;
use crate::config::Config;
use crate::error::{full, Body};

/// Starts an upstream on 127.0.0.1 that answers every request with a JSON
/// echo of the method, path and headers it received.
pub async fn start_echo_upstream() -> std::io::Result<SocketAddr> {
    let listener = crate::runtime::net::bind_loopback()?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let builder = auto::Builder::new(TokioExecutor::new());
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let svc = service_fn(|req: Request<Incoming>| async move { Ok::<_, Infallible>(echo(&req)) });
            tokio::spawn(builder.serve_connection(TokioIo::new(stream), svc).into_owned());
        }
    });
    Ok(addr)
}

fn echo(req: &Request<Incoming>) -> Response<Body> {
    let mut headers = Map::new();
    for (k, v) in req.headers() {
        headers.insert(k.as_str().to_owned(), Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()));
    }
    let body = json!({
        "upstream": "demo echo",
        "method": req.method().as_str(),
        "path": req.uri().path_and_query().map_or("/", |p| p.as_str()),
        "headers": headers,
    });
    let mut r = Response::new(full(serde_json::to_string_pretty(&body).unwrap_or_default() + "\n"));
    r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    r
}

/// The demo's route table: public, required and role-gated routes.
pub fn demo_config(issuer: &str, upstream: SocketAddr, listen: &str, admin: &str) -> String {
    format!(
        r#"[server]
listen = "{listen}"
shutdown_drain = "0s"
allowed_hosts = ["127.0.0.1", "localhost"]

[admin]
listen = "{admin}"

[upstream]
url = "http://{upstream}"

[auth]
issuer = "{issuer}"
realm = "authgear-gateway-demo"

[[routes]]
name = "public"
path = "/public/**"
auth = "public"

[[routes]]
name = "admin"
path = "/admin/**"
roles = ["admin"]

[[routes]]
name = "api"
path = "/api/**"
auth = "required"

[[routes]]
name = "app"
path = "/app/**"
method = "login"

[[routes]]
name = "home"
path = "/"
auth = "optional"

[login]
public_origin = "http://{listen}"
client_id = "demo-web"
cookie_keys = ["demo:{key}"]
post_logout_redirect_uris = ["http://{listen}/"]
"#,
        key = demo_cookie_key()
    )
}

/// A fresh cookie key per demo run (sessions end with the process).
fn demo_cookie_key() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())
}

/// A concrete loopback address for the listener: the browser login's
/// public origin must name the port before the gateway starts.
fn pick_concrete(port: u16) -> String {
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).or_else(|_| std::net::TcpListener::bind(("127.0.0.1", 0)));
    match listener.and_then(|l| l.local_addr()) {
        Ok(a) => a.to_string(),
        Err(_) => format!("127.0.0.1:{port}"),
    }
}

/// Prefers the well-known port, falls back to any free one.
fn pick(port: u16) -> String {
    match std::net::TcpListener::bind(("127.0.0.1", port)) {
        Ok(_) => format!("127.0.0.1:{port}"),
        Err(_) => "127.0.0.1:0".to_owned(),
    }
}

/// Runs the demo until Ctrl-C.
pub async fn run() -> Result<(), String> {
    crate::install_crypto_provider();
    let issuer = DevIssuer::start().await.map_err(|e| format!("starting the dev issuer: {e}"))?;
    let upstream = start_echo_upstream().await.map_err(|e| format!("starting the echo upstream: {e}"))?;
    let text = demo_config(&issuer.issuer, upstream, &pick_concrete(8080), &pick(9090));
    let config = Config::from_toml(&text, "<demo>").map_err(|d| d.to_string())?;
    let server = crate::start(config).await?;
    // Wait until the gateway holds the dev issuer's keys, so the printed
    // commands work the moment they appear.
    for _ in 0..100 {
        if server.gateway.is_ready() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let long = json!({"exp": crate::auth::now_unix() + 12 * 3600});
    let user = issuer.mint("demo-user", long.clone());
    let mut admin_claims = long;
    admin_claims["https://authgear.com/claims/user/roles"] = json!(["admin"]);
    let admin = issuer.mint("demo-admin", admin_claims);
    let gw = format!("http://{}", server.addr);
    let admin_url = server.admin_addr.map_or_else(|| "(disabled)".to_owned(), |a| format!("http://{a}"));
    println!(
        r#"
authgear-gateway demo is running (Ctrl-C to stop)
  gateway   {gw}    admin {admin_url}/readyz
  issuer    {iss}    (development issuer, loopback only, in-memory RSA key)
  upstream  http://{upstream}    (echoes the request it received)

Paste these two lines first (tokens valid 12 h):
export USER_TOKEN={user}
export ADMIN_TOKEN={admin}

Then try:
curl -i {gw}/public/hello
    -> 200; the echo shows no x-authgear-* headers
curl -i {gw}/api/me
    -> 401, WWW-Authenticate: Bearer realm="authgear-gateway-demo"
curl -i {gw}/api/me -H "Authorization: Bearer $USER_TOKEN"
    -> 200; the echo shows x-authgear-user-id: demo-user and x-authgear-session-valid: true
curl -i {gw}/api/me -H "Authorization: Bearer $USER_TOKEN" -H "X-Authgear-User-Id: demo-admin"
    -> 200; the spoofed header is dropped, the echo still shows demo-user
curl -i {gw}/admin/panel -H "Authorization: Bearer $USER_TOKEN"
    -> 403, error="insufficient_scope" (demo-user lacks the admin role)
curl -i {gw}/admin/panel -H "Authorization: Bearer $ADMIN_TOKEN"
    -> 200; the echo shows x-authgear-user-roles: admin
curl -i --path-as-is {gw}/public/../admin/panel
    -> 401; the path is normalized to /admin/panel before matching
curl -i {gw}/api/me -H "Authorization: Bearer not.a.token"
    -> 401, error="invalid_token"
curl -i {gw}/nowhere
    -> 404; no route matches, nothing reaches the upstream

The browser login (the gateway's own OIDC code + PKCE flow):
  open {gw}/app/ in a browser, pick alice (admin) or bob on the dev issuer's page;
  the echo shows the identity headers; log out at {gw}/_gateway/logout.
  (Plain http on loopback: the cookies have no Secure flag and no __Host- prefix.)
curl -i {gw}/app/ -H "Sec-Fetch-Mode: navigate"
    -> 302 to the dev issuer's authorize endpoint, with a state cookie
curl -i {gw}/app/ -H "Accept: application/json"
    -> 401: scripts get a challenge, never a redirect
"#,
        iss = issuer.issuer,
    );
    let _ = tokio::signal::ctrl_c().await;
    server.shutdown().await;
    Ok(())
}

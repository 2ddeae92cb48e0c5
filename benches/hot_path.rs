//! Micro-benchmarks of the request path's pieces: token validation (a token
//! never seen, and one in the verified-token cache), route matching on a
//! 200-route table, path normalization and the header rewrite; and the
//! browser login's session cookie opened (AES-256-GCM + JSON), the cost a
//! `method = "login"` route pays instead of `token_cached`.
//!
//! `cargo bench --bench hot_path` (divan: fast to build, one macro per
//! bench, and it reports the median and spread that matter here).

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use authgear_gateway::auth::cache::TokenCache;
use authgear_gateway::auth::{self, jwks::KeyState, Identity};
use authgear_gateway::commands::devissuer::DevIssuer;
use authgear_gateway::policy::path;
use authgear_gateway::upstream::proxy::{self, ClientInfo};
use authgear_gateway::{Config, Gateway};
use divan::{black_box, Bencher};
use http::{Method, Request};
use serde_json::json;

fn main() {
    divan::main();
}

/// A dev issuer and a gateway whose keys are loaded, shared by the benches.
struct World {
    rt: tokio::runtime::Runtime,
    _issuer: DevIssuer,
    gateway: Arc<Gateway>,
    tokens: Vec<String>,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        authgear_gateway::install_crypto_provider();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
        let (issuer, gateway) = rt.block_on(async {
            let issuer = DevIssuer::start().await.expect("issuer");
            let login = "[login]\npublic_origin = \"https://app.example.com\"\nclient_id = \"bench\"\ncookie_keys = [\"k1:BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\"]\n";
            let text = format!("[upstream]\nurl = \"http://127.0.0.1:9\"\n[auth]\nissuer = \"{}\"\n{login}{}", issuer.issuer, routes_toml(200));
            let cfg = Config::from_toml(&text, "bench.toml").expect("bench config");
            let gateway = Gateway::new(cfg).expect("gateway");
            for _ in 0..500 {
                if gateway.snapshot().keys[0].state() == KeyState::Ready {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (issuer, gateway)
        });
        let tokens = (0..2000).map(|i| issuer.mint(&format!("user-{i}"), json!({"https://authgear.com/claims/user/roles": ["reader", "writer"]}))).collect();
        World { rt, _issuer: issuer, gateway, tokens }
    })
}

/// 199 specific routes, then a catch-all.
fn routes_toml(n: usize) -> String {
    let mut s = String::new();
    for i in 0..n - 1 {
        s.push_str(&format!("[[routes]]\npath = \"/svc{i}/v1/*/items/**\"\nmethods = [\"GET\", \"POST\"]\nroles = [\"reader\"]\n\n"));
    }
    s.push_str("[[routes]]\npath = \"/**\"\n");
    s
}

#[divan::bench]
fn token_cold_rs256(b: Bencher) {
    let w = world();
    let snap = w.gateway.snapshot();
    let mut i = 0;
    // No cache: every call parses, verifies the RSA signature and checks claims.
    b.bench_local(|| {
        i = (i + 1) % w.tokens.len();
        let r = w.rt.block_on(auth::verify_token(&snap.config, &snap.keys, None, &w.tokens[i], None, auth::now_unix()));
        black_box(r.is_ok())
    });
}

#[divan::bench]
fn token_cached(b: Bencher) {
    let w = world();
    let snap = w.gateway.snapshot();
    let cache = TokenCache::new(10_000, 64 << 20);
    let now = auth::now_unix();
    for t in &w.tokens {
        let _ = w.rt.block_on(auth::verify_token(&snap.config, &snap.keys, Some(&cache), t, None, now));
    }
    let mut i = 0;
    b.bench_local(|| {
        i = (i + 1) % w.tokens.len();
        let r = w.rt.block_on(auth::verify_token(&snap.config, &snap.keys, Some(&cache), &w.tokens[i], None, now));
        black_box(r.is_ok())
    });
}

#[divan::bench(args = ["/svc0/v1/x/items/1", "/svc100/v1/x/items/a/b", "/svc198/v1/x/items/", "/nomatch/deep/path/here"])]
fn route_match_200(b: Bencher, p: &str) {
    let w = world();
    let snap = w.gateway.snapshot();
    b.bench_local(|| black_box(snap.config.routes.find(&Method::GET, Some("api.example.com"), black_box(p)).map(|r| r.index)));
}

#[divan::bench(args = ["/api/v1/users/123/orders", "/public/../api/%61/./x//y"])]
fn path_normalize(b: Bencher, p: &str) {
    b.bench_local(|| black_box(path::normalize(black_box(p))));
}

#[divan::bench]
fn header_rewrite(b: Bencher) {
    let w = world();
    let snap = w.gateway.snapshot();
    let cfg = &snap.config;
    let route = &cfg.routes.routes[0];
    let upstream = &snap.upstreams[route.upstream].settings;
    let identity = w.rt.block_on(auth::verify_token(cfg, &snap.keys, None, &w.tokens[0], None, auth::now_unix())).ok();
    let identity: Option<&Identity> = identity.as_ref();
    let client = ClientInfo { addr: SocketAddr::from(([10, 0, 0, 7], 51234)), proto: "http" };
    let auth_header = format!("Bearer {}", w.tokens[0]);
    let path = path::normalize("/svc0/v1/x/items/1").expect("a plain path");
    b.with_inputs(|| {
        let req = Request::builder()
            .uri("/svc0/v1/x/items/1?q=2")
            .header("host", "api.example.com")
            .header("user-agent", "bench/1.0")
            .header("accept", "*/*")
            .header("authorization", &auth_header)
            .header("x-forwarded-for", "6.6.6.6")
            .header("x-authgear-user-id", "spoofed")
            .body(())
            .expect("request");
        req.into_parts().0
    })
    .bench_local_values(|parts| {
        let up = proxy::rewrite_request(cfg, route, upstream, parts, authgear_gateway::error::full(""), &path, identity, client);
        black_box(up.map(|r| r.headers().len()))
    });
}

#[divan::bench]
fn login_session_open(b: Bencher) {
    use authgear_gateway::config::CookieKey;
    use authgear_gateway::login::seal::Sealer;
    let w = world();
    let snap = w.gateway.snapshot();
    let service = snap.login.as_ref().expect("[login]");
    let now = auth::now_unix();
    // A session as a real login leaves it: Authgear-shaped claims, an
    // access token, an ID token and a refresh token (about 3 KB sealed).
    let claims = w._issuer.claims("user-1");
    let session = json!({"id": "x".repeat(43), "claims": claims, "access_token": w.tokens[0], "refresh_token": "r".repeat(43),
        "id_token": w.tokens[1], "access_exp": now + 3600, "expires": now + 7200});
    let sealer = Sealer::new(&[CookieKey { id: "k1".into(), key: [7; 32] }]).expect("sealer");
    let value = sealer.seal(&service.settings.cookie_name, session.to_string().as_bytes()).expect("seal");
    let mut headers = http::HeaderMap::new();
    let cookie = format!("other=1; {}={value}; theme=dark", service.settings.cookie_name);
    headers.insert(http::header::COOKIE, http::HeaderValue::from_str(&cookie).expect("cookie"));
    b.bench_local(|| match w.rt.block_on(service.lookup(&headers, now)) {
        authgear_gateway::login::Lookup::Valid(s) => black_box(service.identity(*s).issuer),
        other => panic!("the bench session does not open: {other:?}"),
    });
}

/// The same session with `store = "redis"`: the cookie opens to a sealed id
/// and the session is one GET from a local redis-server (started here,
/// skipped when `redis-server` is not installed). The figure to hold
/// against `token_cached` is a whole request's (bench/run.sh), where the
/// proxying dominates; this one shows the round trip itself.
#[divan::bench]
fn login_session_redis(b: Bencher) {
    use authgear_gateway::config::{RedisSettings, SessionStoreSettings};
    use authgear_gateway::login::store::hashed;
    use authgear_gateway::login::LoginService;
    let w = world();
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port");
    let spawned = std::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .spawn();
    let Ok(mut child) = spawned else {
        eprintln!("login_session_redis: redis-server is not installed; skipped");
        return;
    };
    let url = format!("redis://127.0.0.1:{port}/");
    let client = redis::Client::open(url.as_str()).expect("url");
    let mut conn = (0..200)
        .find_map(|_| {
            let c = client.get_connection().ok();
            if c.is_none() {
                std::thread::sleep(Duration::from_millis(10));
            }
            c
        })
        .expect("redis-server listens");
    let snap = w.gateway.snapshot();
    let mut settings = (*snap.login.as_ref().expect("[login]").settings).clone();
    settings.store = SessionStoreSettings::Redis(RedisSettings { url, timeout: Duration::from_secs(1), key_prefix: "agw:".into() });
    let service = LoginService::new(Arc::new(settings), &snap.config.issuers[0]).expect("service");
    let now = auth::now_unix();
    let id = "i".repeat(43);
    let session = json!({"id": "", "claims": w._issuer.claims("user-1"), "access_token": w.tokens[0], "refresh_token": "r".repeat(43),
        "id_token": w.tokens[1], "access_exp": now + 3600, "expires": now + 7200});
    let _: () = redis::cmd("SET").arg(format!("agw:s:{}", hashed(&id))).arg(session.to_string()).query(&mut conn).expect("SET");
    let sealer = authgear_gateway::login::seal::Sealer::new(&[authgear_gateway::config::CookieKey { id: "k1".into(), key: [7; 32] }]).expect("sealer");
    let value = sealer.seal(&service.settings.cookie_name, format!("rid:{id}").as_bytes()).expect("seal");
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::COOKIE, http::HeaderValue::from_str(&format!("{}={value}", service.settings.cookie_name)).expect("cookie"));
    b.bench_local(|| match w.rt.block_on(service.lookup(&headers, now)) {
        authgear_gateway::login::Lookup::Valid(s) => black_box(service.identity(*s).issuer),
        other => panic!("the bench session does not open: {other:?}"),
    });
    let _ = child.kill();
    let _ = child.wait();
}

//! Micro-benchmarks of the request path's pieces: token validation (a token
//! never seen, and one in the verified-token cache), route matching on a
//! 200-route table, path normalization and the header rewrite; and the
//! browser login's session cookie opened (from the opened-cookie cache, and
//! cold: AES-256-GCM + JSON), the cost a `method = "login"` route pays
//! instead of `token_cached`, and the whole identity step (authentication
//! plus identity headers) of a bearer and of a session request; and the
//! signed identity assertion, signed anew (`assertion_sign_es256`) and
//! reused from its cache (`assertion_cached`).
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
    // Each twice: the cache stores a token on its second verification.
    for t in w.tokens.iter().chain(&w.tokens) {
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

/// A sealed session as a real login leaves it: Authgear-shaped claims, an
/// access token, an ID token and a refresh token (about 3 KB sealed), in a
/// `Cookie` header between two other cookies.
fn session_headers(w: &World) -> http::HeaderMap {
    use authgear_gateway::config::CookieKey;
    use authgear_gateway::login::seal::Sealer;
    let snap = w.gateway.snapshot();
    let service = snap.login.as_ref().expect("[login]");
    let now = auth::now_unix();
    let mut claims = w._issuer.claims("user-1");
    claims.insert("https://authgear.com/claims/user/roles".into(), json!(["reader", "writer"]));
    let session = json!({"id": "x".repeat(43), "claims": claims, "access_token": w.tokens[0], "refresh_token": "r".repeat(43),
        "id_token": w.tokens[1], "access_exp": now + 3600, "expires": now + 7200});
    let sealer = Sealer::new(&[CookieKey { id: "k1".into(), key: [7; 32] }]).expect("sealer");
    let value = sealer.seal(&service.settings.cookie_name, session.to_string().as_bytes()).expect("seal");
    let mut headers = http::HeaderMap::new();
    let cookie = format!("other=1; {}={value}; theme=dark", service.settings.cookie_name);
    headers.insert(http::header::COOKIE, http::HeaderValue::from_str(&cookie).expect("cookie"));
    headers
}

/// What a `method = "login"` request pays instead of `token_cached`: the
/// cookie found and compared with the one opened before (the path every
/// request after the first takes), the expiry and logout checks, and the
/// identity built.
#[divan::bench]
fn login_session_open(b: Bencher) {
    let w = world();
    let snap = w.gateway.snapshot();
    let service = snap.login.as_ref().expect("[login]");
    let headers = session_headers(w);
    let now = auth::now_unix();
    b.bench_local(|| match service.open_valid(&headers, now) {
        Some(o) => black_box(o.identity(service.settings.issuer).issuer),
        None => panic!("the bench session does not open"),
    });
}

/// The first request with a cookie (or a cookie the cache let go): found,
/// joined, opened (base64, AES-256-GCM, JSON), checked, identity built.
#[divan::bench]
fn login_session_open_uncached(b: Bencher) {
    let w = world();
    let snap = w.gateway.snapshot();
    let service = snap.login.as_ref().expect("[login]");
    let headers = session_headers(w);
    let now = auth::now_unix();
    b.bench_local(|| match w.rt.block_on(service.lookup(&headers, now)) {
        authgear_gateway::login::Lookup::Valid(s) => black_box(service.identity(*s).issuer),
        other => panic!("the bench session does not open: {other:?}"),
    });
}

/// An ES256 assertion signer on the default mapping, and one token's claims.
fn assertion_signer() -> (authgear_gateway::upstream::assertion::AssertionSigner, serde_json::Map<String, serde_json::Value>) {
    use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    use base64::Engine;
    let w = world();
    let der = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &aws_lc_rs::rand::SystemRandom::new()).expect("key");
    let path = std::env::temp_dir().join(format!("agw-bench-assertion-{}.pem", std::process::id()));
    let pem = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    std::fs::write(&path, format!("-----BEGIN PRIVATE KEY-----\n{pem}\n-----END PRIVATE KEY-----\n")).expect("key file");
    let text = format!(
        "[upstream]\nurl = \"http://127.0.0.1:9\"\n[auth]\nissuer = \"{}\"\n[[routes]]\npath = \"/**\"\n[assertion]\nissuer = \"https://gw.example.com\"\nkey_files = [{:?}]\n",
        w._issuer.issuer,
        path.display().to_string()
    );
    let cfg = Config::from_toml(&text, "bench.toml").expect("bench config");
    let _ = std::fs::remove_file(&path);
    let signer = authgear_gateway::upstream::assertion::AssertionSigner::new(cfg.assertion.clone().expect("[assertion]")).expect("signer");
    let snap = w.gateway.snapshot();
    let identity = w.rt.block_on(auth::verify_token(&snap.config, &snap.keys, None, &w.tokens[0], None, auth::now_unix())).expect("token");
    (signer, (*identity.claims).clone())
}

#[divan::bench]
fn assertion_sign_es256(b: Bencher) {
    let (signer, claims) = assertion_signer();
    let cfg = Config::from_toml("[upstream]\nurl = \"http://127.0.0.1:9\"\n[auth]\nissuer = \"https://x.test\"\n[[routes]]\npath = \"/**\"\n", "b.toml")
        .expect("config");
    let route = &cfg.routes.routes[0];
    let mut now = auth::now_unix() * 1000;
    // A minute later each time: the kept one is stale, so every call signs.
    b.bench_local(|| {
        now += 60_000;
        black_box(signer.assertion("http://app:3000", route, &claims, now).map(|v| v.len()))
    });
}

#[divan::bench]
fn assertion_cached(b: Bencher) {
    let (signer, claims) = assertion_signer();
    let cfg = Config::from_toml("[upstream]\nurl = \"http://127.0.0.1:9\"\n[auth]\nissuer = \"https://x.test\"\n[[routes]]\npath = \"/**\"\n", "b.toml")
        .expect("config");
    let route = &cfg.routes.routes[0];
    let now = auth::now_unix() * 1000;
    b.bench_local(|| black_box(signer.assertion("http://app:3000", route, &claims, now).map(|v| v.len())));
}

/// The whole identity step of one request on the same route, bearer
/// (cached token) against session cookie: authentication, then the header
/// rewrite that turns the identity into upstream headers (a cached token
/// brings its headers already rendered; a session renders them).
#[divan::bench(args = ["bearer_cached", "login_session"])]
fn identity_and_headers(b: Bencher, case: &str) {
    let w = world();
    let snap = w.gateway.snapshot();
    let cfg = &snap.config;
    let route = &cfg.routes.routes[0];
    let upstream = &snap.upstreams[route.upstream].settings;
    let service = snap.login.as_ref().expect("[login]");
    let cache = TokenCache::new(10_000, 64 << 20);
    let now = auth::now_unix();
    // Twice: the cache stores a token on its second verification.
    for _ in 0..2 {
        let _ = w.rt.block_on(auth::verify_token(cfg, &snap.keys, Some(&cache), &w.tokens[0], None, now));
    }
    let client = ClientInfo { addr: SocketAddr::from(([10, 0, 0, 7], 51234)), proto: "http" };
    let path = path::normalize("/svc0/v1/x/items/1").expect("a plain path");
    let session = session_headers(w);
    let bearer = format!("Bearer {}", w.tokens[0]);
    let cookie = session.get(http::header::COOKIE).expect("cookie").clone();
    let login = case == "login_session";
    b.with_inputs(|| {
        let mut req = Request::builder().uri("/svc0/v1/x/items/1?q=2").header("host", "api.example.com").header("accept", "*/*");
        req = if login { req.header("cookie", cookie.clone()) } else { req.header("authorization", &bearer) };
        req.body(()).expect("request").into_parts().0
    })
    .bench_local_values(|parts| {
        let identity = if login {
            match service.open_valid(&parts.headers, now) {
                Some(o) => Some(o.identity(service.settings.issuer)),
                None => panic!("the bench session does not open"),
            }
        } else {
            let t = parts.headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).expect("bearer");
            w.rt.block_on(auth::verify_token(cfg, &snap.keys, Some(&cache), t, None, now)).ok()
        };
        let up = proxy::rewrite_request(cfg, route, upstream, parts, authgear_gateway::error::full(""), &path, identity.as_ref(), client);
        black_box(up.map(|r| r.headers().len()))
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
    settings.store = SessionStoreSettings::Redis(RedisSettings { url, timeout: Duration::from_secs(1), key_prefix: "agw:".into(), cache_ttl: Duration::ZERO });
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

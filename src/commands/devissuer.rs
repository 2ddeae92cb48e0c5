//! A development issuer: in-memory signing keys, a real discovery document
//! and JWKS served over HTTP on 127.0.0.1, and a token minter. Used by the
//! `demo` command and by the tests (which also use its fault switches).
//! It binds only to loopback and is never started by the normal gateway.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self as sig, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;

use crate::error::{full, Body};

enum Material {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// One signing key and its public JWK.
pub struct DevKey {
    pub kid: String,
    material: Material,
    pub jwk: Value,
}

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

impl DevKey {
    /// A fresh RSA-2048 key (JWK `alg` RS256).
    pub fn rsa(kid: &str) -> DevKey {
        let kp = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("RSA key generation");
        let pk = kp.public_key();
        let n = pk.modulus();
        let e = pk.exponent();
        let jwk = json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
            "n": b64(n.big_endian_without_leading_zero()), "e": b64(e.big_endian_without_leading_zero())});
        DevKey { kid: kid.to_owned(), material: Material::Rsa(kp), jwk }
    }

    /// A fresh P-256 key (JWK `alg` ES256).
    pub fn ec_p256(kid: &str) -> DevKey {
        let kp = EcdsaKeyPair::generate(&sig::ECDSA_P256_SHA256_FIXED_SIGNING).expect("EC key generation");
        let point = kp.public_key().as_ref().to_vec();
        let (x, y) = point[1..].split_at(32);
        let jwk = json!({"kty": "EC", "kid": kid, "use": "sig", "alg": "ES256", "crv": "P-256", "x": b64(x), "y": b64(y)});
        DevKey { kid: kid.to_owned(), material: Material::Ec(kp), jwk }
    }

    /// A fresh Ed25519 key (JWK `alg` EdDSA).
    pub fn ed25519(kid: &str) -> DevKey {
        let kp = Ed25519KeyPair::generate().expect("Ed25519 key generation");
        let jwk = json!({"kty": "OKP", "kid": kid, "use": "sig", "alg": "EdDSA", "crv": "Ed25519", "x": b64(kp.public_key().as_ref())});
        DevKey { kid: kid.to_owned(), material: Material::Ed(kp), jwk }
    }

    /// The algorithm this key signs with by default.
    pub fn default_alg(&self) -> &'static str {
        match self.material {
            Material::Rsa(_) => "RS256",
            Material::Ec(_) => "ES256",
            Material::Ed(_) => "EdDSA",
        }
    }

    /// Signs `msg` as `alg` (RS*/PS* for RSA keys); empty on a mismatch.
    pub fn sign(&self, alg: &str, msg: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.material {
            Material::Rsa(kp) => {
                let enc: &'static dyn sig::RsaEncoding = match alg {
                    "RS384" => &sig::RSA_PKCS1_SHA384,
                    "RS512" => &sig::RSA_PKCS1_SHA512,
                    "PS256" => &sig::RSA_PSS_SHA256,
                    "PS384" => &sig::RSA_PSS_SHA384,
                    "PS512" => &sig::RSA_PSS_SHA512,
                    _ => &sig::RSA_PKCS1_SHA256,
                };
                let mut out = vec![0; kp.public_modulus_len()];
                match kp.sign(enc, &rng, msg, &mut out) {
                    Ok(()) => out,
                    Err(_) => Vec::new(),
                }
            }
            Material::Ec(kp) => kp.sign(&rng, msg).map(|s| s.as_ref().to_vec()).unwrap_or_default(),
            Material::Ed(kp) => kp.sign(msg).as_ref().to_vec(),
        }
    }

    /// A compact JWS over `header` + `claims`, signed as `header.alg`.
    pub fn sign_jwt(&self, header: &Value, claims: &Value) -> String {
        let alg = header.get("alg").and_then(Value::as_str).unwrap_or("RS256");
        let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
        let s = self.sign(alg, input.as_bytes());
        format!("{input}.{}", b64(&s))
    }
}

/// How the issuer's endpoints behave; tests flip these to simulate outages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Up,
    /// Close every connection at once without answering.
    Refuse,
    /// Accept, then never answer.
    Hang,
    /// Answer 500.
    Error500,
    /// Answer 200 with a body that is not JSON.
    Garbage,
    /// Answer 200 with an endless body.
    Huge,
}

/// The issuer's mutable behaviour and counters.
pub struct IssuerControl {
    pub mode: Mutex<Mode>,
    /// JWKS entries served (public keys, or anything a test wants to serve).
    pub published: Mutex<Vec<Value>>,
    /// When set, served verbatim as the JWKS body.
    pub raw_jwks: Mutex<Option<String>>,
    pub cache_control: Mutex<Option<String>>,
    /// Delay added before each JWKS answer.
    pub jwks_delay: Mutex<Duration>,
    pub jwks_fetches: AtomicU64,
    pub discovery_fetches: AtomicU64,
    /// The authorization server's state (codes, refresh tokens, faults).
    pub oauth: Mutex<super::devissuer_oauth::OAuthState>,
    /// The key tokens are signed with (shared with [`DevIssuer::sign_with`]).
    pub signing: Mutex<Arc<DevKey>>,
}

/// A running development issuer.
pub struct DevIssuer {
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT`, the `iss` of its tokens.
    pub issuer: String,
    pub control: Arc<IssuerControl>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DevIssuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl DevIssuer {
    /// Starts on 127.0.0.1 with one RSA key, `key-1`, published and signing.
    pub async fn start() -> std::io::Result<DevIssuer> {
        Self::start_with(Arc::new(DevKey::rsa("key-1"))).await
    }

    /// Starts with `key` published and signing.
    pub async fn start_with(key: Arc<DevKey>) -> std::io::Result<DevIssuer> {
        Self::start_inner(key, None).await
    }

    /// Starts over HTTPS with `tls` (whose certificate must name
    /// `localhost`); the issuer URL is `https://localhost:PORT`.
    pub async fn start_tls(key: Arc<DevKey>, tls: Arc<rustls::ServerConfig>) -> std::io::Result<DevIssuer> {
        Self::start_inner(key, Some(tokio_rustls::TlsAcceptor::from(tls))).await
    }

    async fn start_inner(key: Arc<DevKey>, tls: Option<tokio_rustls::TlsAcceptor>) -> std::io::Result<DevIssuer> {
        let listener = crate::runtime::net::bind_loopback()?;
        let addr = listener.local_addr()?;
        let issuer = match tls {
            Some(_) => format!("https://localhost:{}", addr.port()),
            None => format!("http://{addr}"),
        };
        let control = Arc::new(IssuerControl {
            mode: Mutex::new(Mode::Up),
            published: Mutex::new(vec![key.jwk.clone()]),
            raw_jwks: Mutex::new(None),
            cache_control: Mutex::new(None),
            jwks_delay: Mutex::new(Duration::ZERO),
            jwks_fetches: AtomicU64::new(0),
            discovery_fetches: AtomicU64::new(0),
            oauth: Mutex::default(),
            signing: Mutex::new(key),
        });
        let task = tokio::spawn(serve(listener, control.clone(), issuer.clone(), tls));
        Ok(DevIssuer { addr, issuer, control, task })
    }

    /// `<issuer>/oauth2/jwks`.
    pub fn jwks_uri(&self) -> String {
        format!("{}/oauth2/jwks", self.issuer)
    }

    /// Switches the endpoints' behaviour.
    pub fn set_mode(&self, m: Mode) {
        *lock(&self.control.mode) = m;
    }

    /// Adds a key to the JWKS.
    pub fn publish(&self, key: &DevKey) {
        lock(&self.control.published).push(key.jwk.clone());
    }

    /// Removes a key from the JWKS.
    pub fn unpublish(&self, kid: &str) {
        lock(&self.control.published).retain(|k| k.get("kid").and_then(Value::as_str) != Some(kid));
    }

    /// Makes `key` the one new tokens are signed with.
    pub fn sign_with(&self, key: Arc<DevKey>) {
        *lock(&self.control.signing) = key;
    }

    /// Number of JWKS requests served so far.
    pub fn jwks_fetches(&self) -> u64 {
        self.control.jwks_fetches.load(Ordering::SeqCst)
    }

    /// Authgear-shaped claims for `sub`, valid for 30 minutes.
    pub fn claims(&self, sub: &str) -> Map<String, Value> {
        let now = crate::auth::now_unix();
        let v = json!({
            "iss": self.issuer, "aud": [self.issuer], "sub": sub, "client_id": "demo-client",
            "scope": "openid offline_access", "iat": now, "exp": now + 1800, "auth_time": now,
            "amr": ["pwd"], "jti": format!("jti-{sub}-{}", rand::random::<u32>()),
            "https://authgear.com/claims/user/is_anonymous": false,
            "https://authgear.com/claims/user/is_verified": true,
            "https://authgear.com/claims/user/can_reauthenticate": true,
            "https://authgear.com/claims/user/roles": [],
        });
        v.as_object().cloned().unwrap_or_default()
    }

    /// Signs any header and claims with the current signing key (the
    /// header's `alg` picks the algorithm), for tests of odd tokens.
    pub fn sign_raw(&self, header: &Value, claims: &Value) -> String {
        lock(&self.control.signing).clone().sign_jwt(header, claims)
    }

    /// A token for `sub` with `extra` claims merged over the defaults
    /// (a `null` value removes a claim).
    pub fn mint(&self, sub: &str, extra: Value) -> String {
        let mut c = self.claims(sub);
        if let Value::Object(m) = extra {
            for (k, v) in m {
                if v.is_null() {
                    c.remove(&k);
                } else {
                    c.insert(k, v);
                }
            }
        }
        let key = lock(&self.control.signing).clone();
        let header = json!({"alg": key.default_alg(), "typ": "at+jwt", "kid": key.kid});
        key.sign_jwt(&header, &Value::Object(c))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn serve(listener: TcpListener, control: Arc<IssuerControl>, issuer: String, tls: Option<tokio_rustls::TlsAcceptor>) {
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let mode = *lock(&control.mode);
        if mode == Mode::Refuse {
            drop(stream);
            continue;
        }
        let control = control.clone();
        let issuer = issuer.clone();
        let svc = service_fn(move |req: Request<Incoming>| {
            let control = control.clone();
            let issuer = issuer.clone();
            async move {
                // Also cut kept-alive connections: a refusing issuer must
                // fail for clients that pooled a connection earlier.
                if *lock(&control.mode) == Mode::Refuse {
                    return Err(std::io::Error::other("refusing"));
                }
                let (parts, body) = req.into_parts();
                if super::devissuer_oauth::is_oauth_path(parts.uri.path()) && *lock(&control.mode) == Mode::Up {
                    let body = http_body_util::Limited::new(body, 64 * 1024).collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                    let delay = lock(&control.oauth).token_delay;
                    if parts.uri.path() == "/oauth2/token" && !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    let sign = |typ: &str, claims: &Value| {
                        let key = lock(&control.signing).clone();
                        key.sign_jwt(&json!({"alg": key.default_alg(), "typ": typ, "kid": key.kid}), claims)
                    };
                    return Ok(super::devissuer_oauth::answer(&control.oauth, &sign, &issuer, &parts, &body));
                }
                Ok(answer(&control, &issuer, parts.uri.path()).await)
            }
        });
        match &tls {
            None => {
                tokio::spawn(builder.serve_connection(TokioIo::new(stream), svc).into_owned());
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let builder = builder.clone();
                tokio::spawn(async move {
                    if let Ok(tls_stream) = acceptor.accept(stream).await {
                        let _ = builder.serve_connection(TokioIo::new(tls_stream), svc).await;
                    }
                });
            }
        }
    }
}

async fn answer(control: &IssuerControl, issuer: &str, path: &str) -> Response<Body> {
    let is_jwks = path == "/oauth2/jwks";
    if is_jwks {
        control.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    } else if path == "/.well-known/openid-configuration" {
        control.discovery_fetches.fetch_add(1, Ordering::SeqCst);
    }
    let mode = *lock(&control.mode);
    match mode {
        Mode::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return status(StatusCode::GATEWAY_TIMEOUT, "");
        }
        Mode::Error500 => return status(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
        Mode::Garbage => return status(StatusCode::OK, "<html>surprise</html>"),
        Mode::Huge => {
            let chunk = Bytes::from(vec![b' '; 64 * 1024]);
            let stream = futures_stream(chunk);
            let mut r = Response::new(StreamBody::new(stream).boxed());
            r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
            return r;
        }
        Mode::Up | Mode::Refuse => {}
    }
    match path {
        "/.well-known/openid-configuration" => json_response(
            json!({
                "issuer": issuer,
                "jwks_uri": format!("{issuer}/oauth2/jwks"),
                "authorization_endpoint": format!("{issuer}/oauth2/authorize"),
                "token_endpoint": format!("{issuer}/oauth2/token"),
                "revocation_endpoint": format!("{issuer}/oauth2/revoke"),
                "end_session_endpoint": format!("{issuer}/oauth2/end_session"),
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
                "id_token_signing_alg_values_supported": ["RS256"],
            })
            .to_string(),
            None,
        ),
        "/oauth2/jwks" => {
            let delay = *lock(&control.jwks_delay);
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let body = match lock(&control.raw_jwks).clone() {
                Some(raw) => raw,
                None => json!({"keys": *lock(&control.published)}).to_string(),
            };
            json_response(body, lock(&control.cache_control).clone())
        }
        _ => status(StatusCode::NOT_FOUND, "not found"),
    }
}

/// An endless stream of `chunk`.
fn futures_stream(chunk: Bytes) -> impl futures_core::Stream<Item = Result<Frame<Bytes>, hyper::Error>> + Send + Sync + 'static {
    struct Endless(Bytes);
    impl futures_core::Stream for Endless {
        type Item = Result<Frame<Bytes>, hyper::Error>;
        fn poll_next(self: std::pin::Pin<&mut Self>, _cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<Self::Item>> {
            std::task::Poll::Ready(Some(Ok(Frame::data(self.0.clone()))))
        }
    }
    Endless(chunk)
}

fn json_response(body: String, cache_control: Option<String>) -> Response<Body> {
    let mut r = Response::new(full(body));
    r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    if let Some(cc) = cache_control.and_then(|c| http::HeaderValue::from_str(&c).ok()) {
        r.headers_mut().insert(http::header::CACHE_CONTROL, cc);
    }
    r
}

fn status(code: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = code;
    r
}

//! The compiled configuration: the validated types the hot path reads.
//! Built only by the compiler (`compile`); loaded through `Config::load`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::diag::Diagnostics;
use crate::policy::headers::{HeaderMapping, IdentityStrip};
use crate::policy::routes::RouteTable;

/// `[server]`, compiled.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    /// Keep incoming `X-Forwarded-*` (the gateway sits behind a trusted proxy).
    pub trust_forwarded_headers: bool,
    pub request_header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    /// Connections the kernel queues while none are being accepted.
    pub listen_backlog: u32,
    pub max_header_count: usize,
    pub max_uri_length: usize,
    pub shutdown_drain: Duration,
    pub shutdown_grace: Duration,
    /// How often the config file is checked for changes (zero: never).
    pub config_watch_interval: Duration,
    /// Request line plus headers larger than this: 431.
    pub max_header_bytes: usize,
    /// Listener TLS; `None` serves plain HTTP (and prior-knowledge h2c).
    pub tls: Option<TlsFiles>,
    /// How often the certificate files are checked for a renewal.
    pub tls_reload_interval: Duration,
    /// `Strict-Transport-Security` value sent on responses over the TLS listener.
    pub hsts: Option<http::HeaderValue>,
    /// Connection worker threads (see `workers`); default: the CPU count.
    pub workers: usize,
    /// Hosts this gateway serves; any other gets 421. `None`: any host.
    pub allowed_hosts: Option<Vec<crate::policy::routes::HostPattern>>,
    /// Routes' default for comparing paths with their patterns.
    pub path_case: crate::policy::routes::PathCase,
}

/// The listener's certificate chain and key, PEM files on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The HTTP version spoken to an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 (plain or TLS); the only one that carries WebSocket upgrades.
    Http1,
    /// HTTP/2 over TLS (ALPN `h2`).
    H2,
    /// HTTP/2 in plain text with prior knowledge (gRPC inside a pod).
    H2c,
}

impl UpstreamProtocol {
    /// True for both HTTP/2 variants.
    pub fn is_h2(self) -> bool {
        matches!(self, UpstreamProtocol::H2 | UpstreamProtocol::H2c)
    }
}

/// One upstream, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamSettings {
    pub name: String,
    /// `http` or `https`.
    pub scheme: http::uri::Scheme,
    pub authority: http::uri::Authority,
    /// Path prefix of the upstream URL, without a trailing `/` ("" for none).
    pub base_path: String,
    pub connect_timeout: Duration,
    /// Time allowed for the upstream's response headers.
    pub timeout: Duration,
    pub preserve_host: bool,
    pub pool_idle_timeout: Duration,
    pub pool_max_idle: usize,
    pub protocol: UpstreamProtocol,
    /// Extra CA certificates trusted for this upstream (beside the platform's).
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain and key for mutual TLS.
    pub client_auth: Option<(PathBuf, PathBuf)>,
    /// Accept any server certificate (test setups only; logged loudly).
    pub insecure_skip_verify: bool,
}

/// One trusted issuer, compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct IssuerSettings {
    pub issuer: String,
    pub jwks_uri: Option<String>,
    pub audiences: Vec<String>,
    pub leeway: Duration,
    pub refresh_interval: Duration,
    pub min_refresh_interval: Duration,
    pub max_refresh_interval: Duration,
    pub unknown_kid_cooldown: Duration,
    /// First delay after a failed fetch; doubles up to `retry_max`.
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub max_key_age: Option<Duration>,
    pub fetch_timeout: Duration,
    pub connect_timeout: Duration,
    pub ca_file: Option<PathBuf>,
    /// Accepted JWT `typ` values, lower-cased; a missing `typ` is accepted.
    pub token_types: Vec<String>,
    pub roles_claim: String,
}

/// Session mode: Authgear's resolver, the verdict cache and the login
/// redirect (keys of `[auth]`), compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSettings {
    /// `resolver_url`, or `<first issuer>/_resolver/resolve`; `None` when
    /// there is neither (then no route may use session mode).
    pub resolver_url: Option<http::Uri>,
    /// Whole resolver call, connect included.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Cookies sent to the resolver; every other cookie stays home.
    pub cookies: Vec<String>,
    /// How long a valid verdict is reused (zero: never cached).
    pub cache_ttl: Duration,
    /// How long an invalid or absent verdict is reused.
    pub negative_ttl: Duration,
    pub cache_max_entries: usize,
    /// Resolver calls in flight at once; beyond it lookups wait (up to the
    /// resolver timeout, then 503), so a flood of distinct cookies cannot
    /// turn into a flood of calls to Authgear.
    pub max_concurrent_calls: usize,
    /// Extra CA for the resolver (the first issuer's `ca_file`).
    pub ca_file: Option<PathBuf>,
    /// Where `login_redirect` routes send browsers; `None` when unset.
    pub login: Option<LoginSettings>,
}

/// `login_url`, `login_return_param` and `login_return_origin`, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginSettings {
    /// Absolute http(s) URL or a path on this site.
    pub url: String,
    /// Query parameter of `url` that carries the return URL.
    pub return_param: String,
    /// `scheme://host[:port]` prepended to the return path; `None` sends a
    /// path only.
    pub return_origin: Option<String>,
}

/// How the gateway proves itself at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// HTTP Basic with the client id and secret.
    SecretBasic,
    /// `client_id` and `client_secret` in the form body.
    SecretPost,
    /// A public client: PKCE only, no secret.
    None,
}

/// One key of `[login] cookie_keys`: its id and 32 bytes of AES-256 key.
#[derive(Clone, PartialEq, Eq)]
pub struct CookieKey {
    pub id: String,
    pub key: [u8; 32],
}

impl std::fmt::Debug for CookieKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CookieKey({}, <redacted>)", self.id)
    }
}

/// `[login]`, compiled: the gateway's own browser login.
#[derive(Clone, PartialEq, Eq)]
pub struct BrowserLoginSettings {
    /// `scheme://host[:port]` of the app as browsers see it; every URL the
    /// flow builds starts with it, never with the request's `Host`.
    pub public_origin: String,
    /// The issuer (index into `Config::issuers`) the browser logs in with.
    pub issuer: usize,
    pub client_id: String,
    pub client_secret: Option<String>,
    pub client_auth: ClientAuth,
    pub scopes: Vec<String>,
    pub redirect_path: String,
    pub logout_path: String,
    /// The session cookie's name, with `__Host-` already prepended on https.
    pub cookie_name: String,
    /// `Secure` and `__Host-` (true whenever the public origin is https).
    pub secure: bool,
    /// The first seals, all open.
    pub cookie_keys: Vec<CookieKey>,
    pub session_lifetime: Duration,
    /// Refresh when the access token has less than this left.
    pub refresh_margin: Duration,
    /// Pending logins (state cookies) kept at once; the oldest is dropped.
    pub max_login_flows: usize,
    pub post_logout_redirect_uris: Vec<String>,
    /// Where sessions live (`store`).
    pub store: SessionStoreSettings,
    /// A session unused this long is over; zero turns the check off.
    pub idle_timeout: Duration,
    /// `POST` here ends sessions named by a logout token (Redis store only).
    pub backchannel_logout_path: String,
}

/// `[login] store`, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionStoreSettings {
    /// The whole session sealed into the browser's cookie.
    Cookie,
    /// The cookie holds a sealed random id; the session lives in Redis.
    Redis(RedisSettings),
}

/// The Redis connection of the session store.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// `redis://` or `rediss://` URL; may carry a password, so never shown.
    pub url: String,
    /// Each connection attempt and each command gives up after this.
    pub timeout: Duration,
    /// Prepended to every key the gateway writes.
    pub key_prefix: String,
    /// A session read from Redis is reused by this process for this long
    /// (`redis_cache_ttl`): how long a logout on another replica may lag here.
    pub cache_ttl: Duration,
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &"<redacted>")
            .field("timeout", &self.timeout)
            .field("key_prefix", &self.key_prefix)
            .field("cache_ttl", &self.cache_ttl)
            .finish()
    }
}

impl std::fmt::Debug for BrowserLoginSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrowserLoginSettings")
            .field("public_origin", &self.public_origin)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "<redacted>"))
            .field("cookie_name", &self.cookie_name)
            .field("cookie_keys", &self.cookie_keys)
            .field("store", &self.store)
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

/// `[auth] token_cache_size` and `token_cache_memory_mb`, compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenCacheSettings {
    /// Most tokens kept; 0 turns the cache off.
    pub entries: usize,
    /// Most bytes charged (tokens, claims, overhead).
    pub max_bytes: usize,
}

impl Default for TokenCacheSettings {
    fn default() -> Self {
        TokenCacheSettings { entries: 10_000, max_bytes: 32 << 20 }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// `[log]`, compiled.
#[derive(Debug, Clone)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
    /// Write one access-log line per request (target `access`).
    pub access: bool,
}

/// A whole compiled config: what one snapshot of the gateway runs on.
#[derive(Debug)]
pub struct Config {
    pub server: ServerSettings,
    /// `None` disables the admin listener.
    pub admin_listen: Option<SocketAddr>,
    /// `[forward_auth]`: `None` when the decision endpoint is not configured.
    pub forward_auth: Option<ForwardAuthSettings>,
    /// `[assertion]`: `None` when no signed identity assertion is sent.
    pub assertion: Option<Arc<AssertionSettings>>,
    /// Index 0 is the default upstream.
    pub upstreams: Vec<Arc<UpstreamSettings>>,
    pub issuers: Vec<IssuerSettings>,
    pub session: SessionSettings,
    /// `[login]`; `None` when the file has no such table.
    pub login: Option<Arc<BrowserLoginSettings>>,
    /// `realm` of `WWW-Authenticate`.
    pub realm: String,
    pub token_cache: TokenCacheSettings,
    pub default_headers: Arc<HeaderMapping>,
    pub routes: RouteTable,
    pub strip: IdentityStrip,
    pub log: LogSettings,
    /// `[tracing]`, with the OTEL_* variables applied; read at start only.
    pub tracing: crate::observe::trace::TraceSettings,
    /// Warnings found while compiling (shadowed routes, ...).
    pub warnings: Diagnostics,
}

impl Config {
    /// The issuer whose `issuer` equals `iss`.
    pub fn issuer_index(&self, iss: &str) -> Option<usize> {
        self.issuers.iter().position(|i| i.issuer == iss)
    }
}

/// `[forward_auth]`, compiled: where the decision endpoint listens, whom
/// it believes, and how its callers describe the original request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardAuthSettings {
    pub listen: SocketAddr,
    /// Never empty: a request from any other address is refused (403).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub flavour: Flavour,
    /// Envoy flavour: the prefix Envoy's `path_prefix` puts before the
    /// original path (starts with `/`, no trailing `/`; empty for none).
    pub path_prefix: String,
    /// `[[forward_auth.prefixes]]`: decision paths under one of these get
    /// its flavour instead (they never overlap each other or `path_prefix`).
    pub prefixes: Vec<FlavourPrefix>,
}

/// One `[[forward_auth.prefixes]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlavourPrefix {
    /// Starts with `/`, no trailing `/`; for Envoy also its `path_prefix`.
    pub path: String,
    pub flavour: Flavour,
}

impl ForwardAuthSettings {
    /// True when `ip` is inside one of `trusted_proxies`.
    pub fn trusts(&self, ip: std::net::IpAddr) -> bool {
        // An IPv4 peer reached over a dual-stack socket arrives as ::ffff:a.b.c.d.
        let ip = match ip {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
            v4 => v4,
        };
        self.trusted_proxies.iter().any(|n| n.contains(&ip))
    }

    /// The flavour for a decision request's path, and the prefix Envoy
    /// puts before the original path: a `prefixes` entry the path is under
    /// (whole segments), else the listener's own.
    pub fn flavour_for(&self, path: &str) -> (Flavour, &str) {
        match self.prefixes.iter().find(|p| under(path, &p.path)) {
            Some(p) => (p.flavour, &p.path),
            None => (self.flavour, &self.path_prefix),
        }
    }
}

/// `path` is `prefix` or below it, by whole segments.
pub fn under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Which ingress calls the endpoint: set in the config, never guessed from
/// the headers a request happens to carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// nginx `auth_request` and ingress-nginx `auth-url`: `X-Original-URL`
    /// and `X-Original-Method`.
    Nginx,
    /// Traefik `forwardAuth` and Caddy `forward_auth`: `X-Forwarded-Method`,
    /// `-Proto`, `-Host`, `-Uri`.
    Traefik,
    /// Envoy `ext_authz` in HTTP mode (Istio `CUSTOM`, Envoy Gateway
    /// `extAuth`): the original method, `path_prefix` + the original
    /// path, the original `Host`.
    Envoy,
    /// Envoy `ext_authz` over gRPC (`envoy.service.auth.v3.Authorization/Check`):
    /// the original request in the `CheckRequest` message.
    EnvoyGrpc,
}

impl Flavour {
    /// The name used in the config file and the logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Flavour::Nginx => "nginx",
            Flavour::Traefik => "traefik",
            Flavour::Envoy => "envoy",
            Flavour::EnvoyGrpc => "envoy_grpc",
        }
    }
}

/// `[assertion]`, compiled: the signed identity assertion sent upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssertionSettings {
    /// The request header (and forward-auth answer header) carrying it.
    pub header: http::HeaderName,
    /// `iss` of every assertion: the gateway's configured name.
    pub issuer: String,
    pub algorithm: AssertionAlg,
    /// Never empty: the first signs, all are published in the JWKS.
    pub keys: Vec<AssertionKey>,
    /// `exp - iat`.
    pub lifetime: Duration,
    /// Also serve the JWKS on the main listener at exactly this path.
    pub jwks_path: Option<String>,
}

/// The JWS algorithms an assertion may be signed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssertionAlg {
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// Ed25519.
    EdDsa,
}

impl AssertionAlg {
    /// The JWS `alg` name.
    pub fn as_str(self) -> &'static str {
        match self {
            AssertionAlg::Es256 => "ES256",
            AssertionAlg::EdDsa => "EdDSA",
        }
    }
}

/// One signing key of `[assertion] key_files`: its private half stays in
/// memory only, its public half is published.
#[derive(Clone)]
pub struct AssertionKey {
    /// RFC 7638 thumbprint of the public key (base64url SHA-256).
    pub kid: String,
    /// The public JWK, with `kid`, `alg` and `use`.
    pub jwk: serde_json::Value,
    pub pair: AssertionKeyPair,
}

/// A parsed private key, ready to sign.
#[derive(Clone)]
pub enum AssertionKeyPair {
    Es256(Arc<aws_lc_rs::signature::EcdsaKeyPair>),
    EdDsa(Arc<aws_lc_rs::signature::Ed25519KeyPair>),
}

impl PartialEq for AssertionKey {
    // The kid is the public key's hash: same kid, same key pair.
    fn eq(&self, other: &Self) -> bool {
        self.kid == other.kid
    }
}
impl Eq for AssertionKey {}

impl std::fmt::Debug for AssertionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AssertionKey({}, <private key redacted>)", self.kid)
    }
}

/// Parses `500ms`, `30s`, `10m`, `2h`, `1d` (and sums such as `1m30s`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("`{s}` is not a duration (examples: 500ms, 30s, 10m, 2h)"));
        }
        let n: u64 = rest[..digits].parse().map_err(|_| format!("`{s}`: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let d = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "d" => Duration::from_secs(n.saturating_mul(86400)),
            "" => return Err(format!("`{s}`: missing unit (ms, s, m, h or d)")),
            other => return Err(format!("`{s}`: unknown unit `{other}` (use ms, s, m, h or d)")),
        };
        total = total.saturating_add(d);
    }
    Ok(total)
}

/// Parses a byte size: `1048576`, `512KB`, `10MB`, `1GB` (binary units:
/// KB = 1024 bytes, as nginx and most proxies count; `KiB`/`MiB`/`GiB` too).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    if digits == 0 {
        return Err(format!("`{s}` is not a size (examples: 65536, 512KB, 10MB, 1GB)"));
    }
    let n: u64 = t[..digits].parse().map_err(|_| format!("`{s}`: number too large"))?;
    let mult: u64 = match t[digits..].trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("`{s}`: unknown unit `{other}` (use KB, MB or GB)")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("`{s}`: too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("512KB"), Ok(512 * 1024));
        assert_eq!(parse_size("10MB"), Ok(10 << 20));
        assert_eq!(parse_size("1 GiB"), Ok(1 << 30));
        assert!(parse_size("MB").is_err());
        assert!(parse_size("10 parsecs").is_err());
        assert!(parse_size("99999999999999999999GB").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("3 weeks").is_err());
    }
}

//! The config file as written: serde types that mirror `gateway.toml` key for
//! key. Nothing here is used on the hot path; `compile` turns it into
//! [`crate::config::Config`].

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// `[server]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<Spanned<String>>,
    pub trust_forwarded_headers: Option<bool>,
    pub request_header_timeout: Option<Spanned<String>>,
    pub idle_timeout: Option<Spanned<String>>,
    pub max_connections: Option<Spanned<i64>>,
    pub listen_backlog: Option<Spanned<i64>>,
    pub max_header_count: Option<Spanned<i64>>,
    pub max_uri_length: Option<Spanned<i64>>,
    pub shutdown_drain: Option<Spanned<String>>,
    pub shutdown_grace: Option<Spanned<String>>,
    pub config_watch_interval: Option<Spanned<String>>,
    pub max_header_bytes: Option<Spanned<i64>>,
    pub tls_cert: Option<Spanned<String>>,
    pub tls_key: Option<Spanned<String>>,
    pub tls_reload_interval: Option<Spanned<String>>,
    pub hsts: Option<Spanned<String>>,
    pub workers: Option<Spanned<i64>>,
    pub allowed_hosts: Option<Spanned<Vec<Spanned<String>>>>,
    pub path_case: Option<Spanned<String>>,
}

/// `[admin]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: Option<Spanned<String>>,
}

/// `[forward_auth]`: the decision endpoint an ingress asks (issue 17).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawForwardAuth {
    pub listen: Option<Spanned<String>>,
    pub trusted_proxies: Option<Spanned<Vec<Spanned<String>>>>,
    pub flavour: Option<Spanned<String>>,
    pub path_prefix: Option<Spanned<String>>,
    pub prefixes: Option<Vec<Spanned<RawFlavourPrefix>>>,
}

/// `[[forward_auth.prefixes]]`: another flavour for decision requests
/// whose path is under `path`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFlavourPrefix {
    pub path: Option<Spanned<String>>,
    pub flavour: Option<Spanned<String>>,
}

/// `[assertion]`: the signed identity assertion (issue 17).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAssertion {
    pub enabled: Option<Spanned<bool>>,
    pub header: Option<Spanned<String>>,
    pub issuer: Option<Spanned<String>>,
    pub algorithm: Option<Spanned<String>>,
    pub key_files: Option<Spanned<Vec<Spanned<String>>>>,
    pub lifetime: Option<Spanned<String>>,
    pub jwks_path: Option<Spanned<String>>,
}

/// `[upstream]` and each `[upstreams.NAME]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub url: Option<Spanned<String>>,
    pub connect_timeout: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub preserve_host: Option<bool>,
    pub pool_idle_timeout: Option<Spanned<String>>,
    pub pool_max_idle: Option<Spanned<i64>>,
    pub protocol: Option<Spanned<String>>,
    pub ca_file: Option<Spanned<String>>,
    pub client_cert: Option<Spanned<String>>,
    pub client_key: Option<Spanned<String>>,
    pub insecure_skip_verify: Option<Spanned<bool>>,
}

/// A byte size: a plain number of bytes or a string such as `"10MB"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawSize {
    Bytes(i64),
    Text(String),
}

/// `[auth]` (the single-issuer form) and each `[[auth.issuers]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIssuer {
    pub issuer: Option<Spanned<String>>,
    pub jwks_uri: Option<Spanned<String>>,
    pub audiences: Option<Spanned<Vec<Spanned<String>>>>,
    pub leeway: Option<Spanned<String>>,
    pub refresh_interval: Option<Spanned<String>>,
    pub min_refresh_interval: Option<Spanned<String>>,
    pub max_refresh_interval: Option<Spanned<String>>,
    pub unknown_kid_cooldown: Option<Spanned<String>>,
    pub retry_initial: Option<Spanned<String>>,
    pub retry_max: Option<Spanned<String>>,
    pub max_key_age: Option<Spanned<String>>,
    pub fetch_timeout: Option<Spanned<String>>,
    pub connect_timeout: Option<Spanned<String>>,
    pub ca_file: Option<Spanned<String>>,
    pub token_types: Option<Spanned<Vec<Spanned<String>>>>,
    pub roles_claim: Option<Spanned<String>>,
}

/// `auth = "..."` on a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawAuthMode {
    Public,
    Optional,
    Required,
}

/// `method = "..."` on a route or as the `[auth]` default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawAuthMethod {
    Jwt,
    Session,
    JwtOrSession,
    /// The gateway's own browser login (`[login]`).
    Login,
}

/// The session-mode keys of `[auth]` (resolver, verdict cache, login
/// redirect). They sit in `[auth]` beside the issuer keys and are taken out
/// before the issuer is read.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSession {
    pub method: Option<Spanned<RawAuthMethod>>,
    pub resolver_url: Option<Spanned<String>>,
    pub resolver_timeout: Option<Spanned<String>>,
    pub resolver_connect_timeout: Option<Spanned<String>>,
    pub session_cookies: Option<Spanned<Vec<Spanned<String>>>>,
    pub session_cache_ttl: Option<Spanned<String>>,
    pub session_negative_cache_ttl: Option<Spanned<String>>,
    pub session_cache_max_entries: Option<Spanned<i64>>,
    pub resolver_max_concurrent_calls: Option<Spanned<i64>>,
    pub login_url: Option<Spanned<String>>,
    pub login_return_param: Option<Spanned<String>>,
    pub login_return_origin: Option<Spanned<String>>,
}

/// The keys of [`RawSession`], as they appear in `[auth]`.
pub const SESSION_KEYS: &[&str] = &[
    "method",
    "resolver_url",
    "resolver_timeout",
    "resolver_connect_timeout",
    "session_cookies",
    "session_cache_ttl",
    "session_negative_cache_ttl",
    "session_cache_max_entries",
    "resolver_max_concurrent_calls",
    "login_url",
    "login_return_param",
    "login_return_origin",
];

/// One `[[routes]]` entry.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: Option<Spanned<String>>,
    pub path: Option<Spanned<String>>,
    pub host: Option<Spanned<String>>,
    pub methods: Option<Vec<Spanned<String>>>,
    pub auth: Option<Spanned<RawAuthMode>>,
    pub method: Option<Spanned<RawAuthMethod>>,
    pub login_redirect: Option<Spanned<bool>>,
    pub roles: Option<Vec<Spanned<String>>>,
    pub scopes: Option<Vec<Spanned<String>>>,
    pub claims: Option<BTreeMap<String, Spanned<toml::Value>>>,
    pub upstream: Option<Spanned<String>>,
    pub strip_prefix: Option<Spanned<String>>,
    pub add_prefix: Option<Spanned<String>>,
    pub headers: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
    pub pass_authorization: Option<bool>,
    pub audiences: Option<Vec<Spanned<String>>>,
    pub max_body_size: Option<Spanned<RawSize>>,
    pub upgrades: Option<Spanned<Vec<Spanned<String>>>>,
    pub method_override: Option<Spanned<bool>>,
    pub path_case: Option<Spanned<String>>,
    pub pass_access_token: Option<Spanned<bool>>,
    pub cors_preflight: Option<Spanned<String>>,
}

/// `[login]`: the gateway's own browser login (OIDC code + PKCE).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLogin {
    pub public_origin: Option<Spanned<String>>,
    pub client_id: Option<Spanned<String>>,
    pub client_secret: Option<Spanned<String>>,
    pub client_secret_file: Option<Spanned<String>>,
    pub token_endpoint_auth: Option<Spanned<String>>,
    pub scopes: Option<Spanned<Vec<Spanned<String>>>>,
    pub redirect_path: Option<Spanned<String>>,
    pub logout_path: Option<Spanned<String>>,
    pub cookie_name: Option<Spanned<String>>,
    pub cookie_keys: Option<Spanned<Vec<Spanned<String>>>>,
    pub session_lifetime: Option<Spanned<String>>,
    pub refresh_margin: Option<Spanned<String>>,
    pub max_login_flows: Option<Spanned<i64>>,
    pub post_logout_redirect_uris: Option<Spanned<Vec<Spanned<String>>>>,
    pub store: Option<Spanned<String>>,
    pub redis_url: Option<Spanned<String>>,
    pub redis_url_file: Option<Spanned<String>>,
    pub redis_timeout: Option<Spanned<String>>,
    pub redis_key_prefix: Option<Spanned<String>>,
    pub redis_cache_ttl: Option<Spanned<String>>,
    pub idle_timeout: Option<Spanned<String>>,
    pub backchannel_logout_path: Option<Spanned<String>>,
}

/// The keys of [`RawLogin`].
pub const LOGIN_KEYS: &[&str] = &[
    "public_origin",
    "client_id",
    "client_secret",
    "client_secret_file",
    "token_endpoint_auth",
    "scopes",
    "redirect_path",
    "logout_path",
    "cookie_name",
    "cookie_keys",
    "session_lifetime",
    "refresh_margin",
    "max_login_flows",
    "post_logout_redirect_uris",
    "store",
    "redis_url",
    "redis_url_file",
    "redis_timeout",
    "redis_key_prefix",
    "redis_cache_ttl",
    "idle_timeout",
    "backchannel_logout_path",
];

/// `[log]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub format: Option<Spanned<String>>,
    pub level: Option<Spanned<String>>,
    pub access: Option<bool>,
}

/// `[tracing]`: OpenTelemetry trace export (`compile_tracing`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTracing {
    pub enabled: Option<Spanned<bool>>,
    pub endpoint: Option<Spanned<String>>,
    pub protocol: Option<Spanned<String>>,
    pub sample_ratio: Option<Spanned<f64>>,
    pub parent_based: Option<Spanned<bool>>,
    pub service_name: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub export_delay: Option<Spanned<String>>,
}

/// Every key the file may hold, as table path -> keys. Used to report all
/// unknown keys at once (serde stops at the first) and to suggest fixes.
pub fn known_keys(table: &str) -> Option<&'static [&'static str]> {
    const ISSUER: &[&str] = &[
        "issuer",
        "jwks_uri",
        "audiences",
        "leeway",
        "refresh_interval",
        "min_refresh_interval",
        "max_refresh_interval",
        "unknown_kid_cooldown",
        "retry_initial",
        "retry_max",
        "max_key_age",
        "fetch_timeout",
        "connect_timeout",
        "ca_file",
        "token_types",
        "roles_claim",
    ];
    // `[auth]` holds one issuer's keys inline, plus its own and session mode's.
    const AUTH_ONLY: &[&str] = &["realm", "token_cache_size", "token_cache_memory_mb", "issuers"];
    static AUTH: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    const UPSTREAM: &[&str] = &[
        "url",
        "connect_timeout",
        "timeout",
        "preserve_host",
        "pool_idle_timeout",
        "pool_max_idle",
        "protocol",
        "ca_file",
        "client_cert",
        "client_key",
        "insecure_skip_verify",
    ];
    Some(match table {
        "" => &["server", "admin", "forward_auth", "assertion", "upstream", "upstreams", "auth", "headers", "routes", "log", "tracing", "login"],
        "server" => &[
            "listen",
            "trust_forwarded_headers",
            "request_header_timeout",
            "idle_timeout",
            "max_connections",
            "listen_backlog",
            "max_header_count",
            "max_uri_length",
            "shutdown_drain",
            "shutdown_grace",
            "config_watch_interval",
            "max_header_bytes",
            "tls_cert",
            "tls_key",
            "tls_reload_interval",
            "hsts",
            "workers",
            "allowed_hosts",
            "path_case",
        ],
        "admin" => &["listen"],
        "forward_auth" => &["listen", "trusted_proxies", "flavour", "path_prefix", "prefixes"],
        "forward_auth.prefixes" => &["path", "flavour"],
        "assertion" => &["enabled", "header", "issuer", "algorithm", "key_files", "lifetime", "jwks_path"],
        "upstream" | "upstreams.*" => UPSTREAM,
        "auth" => AUTH.get_or_init(|| [ISSUER, AUTH_ONLY, SESSION_KEYS].concat()).as_slice(),
        "auth.issuers" => ISSUER,
        "routes" => &[
            "name",
            "path",
            "host",
            "methods",
            "auth",
            "method",
            "login_redirect",
            "roles",
            "scopes",
            "claims",
            "upstream",
            "strip_prefix",
            "add_prefix",
            "headers",
            "pass_authorization",
            "audiences",
            "max_body_size",
            "upgrades",
            "method_override",
            "path_case",
            "pass_access_token",
            "cors_preflight",
        ],
        "login" => LOGIN_KEYS,
        "log" => &["format", "level", "access"],
        "tracing" => &["enabled", "endpoint", "protocol", "sample_ratio", "parent_based", "service_name", "timeout", "export_delay"],
        _ => return None,
    })
}

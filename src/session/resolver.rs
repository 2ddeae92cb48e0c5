//! The HTTP client for Authgear's resolver endpoint and the reading of its
//! answer. The resolver never blocks anything itself: it answers 200 and
//! puts its verdict in `X-Authgear-*` headers, which are turned here into a
//! [`Verdict`] whose claims carry the same names as an access token's.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, AUTHORIZATION, COOKIE, USER_AGENT};
use http::{HeaderMap, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde_json::{Map, Value};

use crate::config::SessionSettings;
use crate::error::error_chain;
use crate::observe::trace::Child;
use crate::policy::headers::claims;
use authgear_tls_roots::client_tls;

/// What the resolver said about one credential.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// `X-Authgear-Session-Valid: true`, with the identity as claims.
    Valid(Arc<Map<String, Value>>),
    /// `X-Authgear-Session-Valid` present with any other value.
    Invalid,
    /// No `X-Authgear-Session-Valid` at all: no session was found.
    Absent,
}

/// Why the resolver gave no verdict. Never a 401: the user may be fine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolverError {
    Connect(String),
    Timeout,
    Status(u16),
    /// The answer broke the resolver's contract (e.g. valid without a user).
    Malformed(&'static str),
    /// The lookup task ended without an answer (runtime shutting down).
    Abandoned,
    /// `resolver_max_concurrent_calls` calls were already in flight for
    /// the whole resolver timeout (a flood of distinct credentials).
    Saturated,
}

impl std::fmt::Display for ResolverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResolverError::Connect(e) => write!(f, "connection failed: {e}"),
            ResolverError::Timeout => f.write_str("timed out"),
            ResolverError::Status(s) => write!(f, "HTTP status {s}"),
            ResolverError::Malformed(why) => write!(f, "malformed answer: {why}"),
            ResolverError::Abandoned => f.write_str("lookup abandoned"),
            ResolverError::Saturated => f.write_str("too many resolver calls in flight"),
        }
    }
}

/// The only request headers the resolver ever sees (besides its own
/// `Host` and `User-Agent`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// Only the configured session cookies, re-joined.
    pub cookie: Option<HeaderValue>,
    /// A `Bearer` Authorization value.
    pub authorization: Option<HeaderValue>,
}

impl Credentials {
    /// True when there is nothing to ask the resolver about.
    pub fn is_empty(&self) -> bool {
        self.cookie.is_none() && self.authorization.is_none()
    }
}

/// Identity headers larger than this make the answer malformed; it bounds
/// the memory one cached verdict can hold.
const MAX_IDENTITY_BYTES: usize = 8 * 1024;
/// The resolver's body is read (and dropped) up to this size so the
/// connection can be reused.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// A pooled client for the resolver endpoint.
pub struct ResolverClient {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>,
    url: Uri,
    timeout: Duration,
    /// The issuer's `roles_claim` when it is not Authgear's standard name:
    /// roles are stored under both so `roles` and header mappings agree.
    extra_roles_claim: Option<String>,
    /// Caps the calls in flight (`resolver_max_concurrent_calls`).
    slots: Arc<tokio::sync::Semaphore>,
}

impl ResolverClient {
    /// Builds the client: connect timeout, TLS on the platform roots plus
    /// the issuer's `ca_file`, keep-alive pool.
    pub fn new(s: &SessionSettings, url: Uri, roles_claim: Option<&str>) -> Result<Self, String> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(s.connect_timeout));
        let tls = client_tls(s.ca_file.as_deref())?;
        let https = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(64)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(https);
        let extra_roles_claim = roles_claim.filter(|c| *c != claims::ROLES).map(str::to_owned);
        let slots = Arc::new(tokio::sync::Semaphore::new(s.max_concurrent_calls.max(1)));
        Ok(ResolverClient { client, url, timeout: s.timeout, extra_roles_claim, slots })
    }

    /// Asks the resolver about `creds`: a GET carrying only those headers,
    /// never the client's body or any other header.
    pub async fn resolve(&self, creds: &Credentials) -> Result<Verdict, ResolverError> {
        let _slot = match tokio::time::timeout(self.timeout, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => permit,
            _ => return Err(ResolverError::Saturated),
        };
        let mut req = Request::get(self.url.clone())
            .header(USER_AGENT, concat!("authgear-gateway/", env!("CARGO_PKG_VERSION")))
            .body(Empty::<Bytes>::new())
            .map_err(|e| ResolverError::Connect(e.to_string()))?;
        if let Some(c) = &creds.cookie {
            req.headers_mut().insert(COOKIE, c.clone());
        }
        if let Some(a) = &creds.authorization {
            req.headers_mut().insert(AUTHORIZATION, a.clone());
        }
        // Only the URL and the status are recorded: never the cookie or
        // the token that were asked about.
        let span = Child::http_client(req.method(), req.uri());
        span.set("authgear_gateway.call", "session_resolver");
        let work = async {
            let resp = self.client.request(req).await.map_err(|e| {
                let chain = error_chain(&e);
                if chain.contains("timed out") || chain.contains("timeout") {
                    ResolverError::Timeout
                } else {
                    ResolverError::Connect(chain)
                }
            })?;
            let (parts, body) = resp.into_parts();
            span.set_status_code(parts.status.as_u16());
            // Drain a small body so the pooled connection can be reused.
            let _ = Limited::new(body, MAX_BODY_BYTES).collect().await;
            if parts.status != StatusCode::OK {
                return Err(ResolverError::Status(parts.status.as_u16()));
            }
            verdict_from_headers(&parts.headers, self.extra_roles_claim.as_deref())
        };
        let result = tokio::time::timeout(self.timeout, work).await.map_err(|_| ResolverError::Timeout).and_then(|r| r);
        if let Err(e) = &result {
            let kind = match e {
                ResolverError::Connect(_) => "connect",
                ResolverError::Timeout => "timeout",
                ResolverError::Status(_) => "status",
                ResolverError::Malformed(_) => "malformed",
                ResolverError::Abandoned => "abandoned",
                ResolverError::Saturated => "saturated",
            };
            span.fail(kind, "session resolver call failed");
        }
        result
    }
}

/// Reads the resolver's headers. Only a single `X-Authgear-Session-Valid:
/// true` is a valid session; then a user id is required.
pub fn verdict_from_headers(h: &HeaderMap, extra_roles_claim: Option<&str>) -> Result<Verdict, ResolverError> {
    let mut valid = h.get_all("x-authgear-session-valid").iter();
    let Some(first) = valid.next() else { return Ok(Verdict::Absent) };
    let is_true = first.to_str().is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"));
    if !is_true || valid.next().is_some() {
        return Ok(Verdict::Invalid);
    }
    let identity_bytes: usize = h.iter().filter(|(n, _)| n.as_str().starts_with("x-authgear-")).map(|(n, v)| n.as_str().len() + v.len()).sum();
    if identity_bytes > MAX_IDENTITY_BYTES {
        return Err(ResolverError::Malformed("identity headers too large"));
    }
    let text = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let sub = text("x-authgear-user-id").filter(|s| !s.is_empty()).ok_or(ResolverError::Malformed("valid session without a user id"))?;
    let mut c = Map::new();
    c.insert("sub".into(), Value::String(sub.to_owned()));
    for (header, claim) in [
        ("x-authgear-user-anonymous", claims::IS_ANONYMOUS),
        ("x-authgear-user-verified", claims::IS_VERIFIED),
        ("x-authgear-user-can-reauthenticate", claims::CAN_REAUTHENTICATE),
    ] {
        match text(header).map(str::to_ascii_lowercase).as_deref() {
            Some("true") => c.insert(claim.into(), Value::Bool(true)),
            Some("false") => c.insert(claim.into(), Value::Bool(false)),
            _ => None,
        };
    }
    // Roles are comma-separated; the spec says AMR is too, but Authgear's
    // server joins AMR values with spaces, so both separators are accepted.
    if let Some(roles) = list(text("x-authgear-user-roles"), &[',']) {
        if let Some(extra) = extra_roles_claim {
            c.insert(extra.into(), roles.clone());
        }
        c.insert(claims::ROLES.into(), roles);
    }
    if let Some(amr) = list(text("x-authgear-session-amr"), &[',', ' ']) {
        c.insert("amr".into(), amr);
    }
    if let Some(t) = text("x-authgear-session-authenticated-at").and_then(|t| t.parse::<u64>().ok()) {
        c.insert("auth_time".into(), Value::from(t));
    }
    Ok(Verdict::Valid(Arc::new(c)))
}

/// A delimited header value as a JSON array of its non-empty items; `None`
/// when there are none.
fn list(v: Option<&str>, seps: &[char]) -> Option<Value> {
    let items: Vec<Value> = v?.split(seps).map(str::trim).filter(|s| !s.is_empty()).map(|s| Value::String(s.to_owned())).collect();
    (!items.is_empty()).then_some(Value::Array(items))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn only_a_single_true_is_valid() {
        assert_eq!(verdict_from_headers(&headers(&[]), None), Ok(Verdict::Absent));
        assert_eq!(verdict_from_headers(&headers(&[("x-authgear-session-valid", "false"), ("x-authgear-user-id", "u")]), None), Ok(Verdict::Invalid));
        assert_eq!(verdict_from_headers(&headers(&[("x-authgear-session-valid", "yes"), ("x-authgear-user-id", "u")]), None), Ok(Verdict::Invalid));
        let twice = headers(&[("x-authgear-session-valid", "true"), ("x-authgear-session-valid", "false"), ("x-authgear-user-id", "u")]);
        assert_eq!(verdict_from_headers(&twice, None), Ok(Verdict::Invalid));
        assert_eq!(
            verdict_from_headers(&headers(&[("x-authgear-session-valid", "true")]), None),
            Err(ResolverError::Malformed("valid session without a user id"))
        );
    }

    #[test]
    fn identity_uses_token_claim_names() {
        let h = headers(&[
            ("x-authgear-session-valid", "true"),
            ("x-authgear-user-id", "u-1"),
            ("x-authgear-user-anonymous", "false"),
            ("x-authgear-user-verified", "true"),
            ("x-authgear-user-can-reauthenticate", "true"),
            ("x-authgear-user-roles", "admin, ops"),
            ("x-authgear-session-amr", "pwd otp"),
            ("x-authgear-session-authenticated-at", "1700000000"),
        ]);
        let Ok(Verdict::Valid(c)) = verdict_from_headers(&h, Some("roles")) else { panic!("not valid") };
        assert_eq!(
            Value::Object((*c).clone()),
            json!({
                "sub": "u-1",
                claims::IS_ANONYMOUS: false,
                claims::IS_VERIFIED: true,
                claims::CAN_REAUTHENTICATE: true,
                claims::ROLES: ["admin", "ops"],
                "roles": ["admin", "ops"],
                "amr": ["pwd", "otp"],
                "auth_time": 1700000000u64,
            })
        );
        let comma = headers(&[("x-authgear-session-valid", "true"), ("x-authgear-user-id", "u"), ("x-authgear-session-amr", "pwd,mfa")]);
        let Ok(Verdict::Valid(c)) = verdict_from_headers(&comma, None) else { panic!("not valid") };
        assert_eq!(c["amr"], json!(["pwd", "mfa"]));
        assert!(c.get(claims::ROLES).is_none());
    }

    #[test]
    fn oversized_identity_is_refused() {
        let mut h = headers(&[("x-authgear-session-valid", "true"), ("x-authgear-user-id", "u")]);
        h.insert("x-authgear-user-roles", HeaderValue::from_str(&"r,".repeat(5000)).unwrap());
        assert_eq!(verdict_from_headers(&h, None), Err(ResolverError::Malformed("identity headers too large")));
    }
}

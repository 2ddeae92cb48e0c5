//! A small HTTP(S) GET client for the issuer's discovery document and JWKS:
//! connect and total timeouts, a body size cap, rustls with the platform's
//! roots (or the bundled Mozilla roots where the platform has none) plus an
//! optional extra CA file.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::error::error_chain;
use crate::observe::trace::Child;

/// Why a fetch failed; the text is safe to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    BadUrl(String),
    Connect(String),
    Timeout,
    Status(u16),
    TooLarge(usize),
    Body(String),
    Invalid(String),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::BadUrl(u) => write!(f, "bad URL {u}"),
            FetchError::Connect(e) => write!(f, "connection failed: {e}"),
            FetchError::Timeout => f.write_str("timed out"),
            FetchError::Status(s) => write!(f, "HTTP status {s}"),
            FetchError::TooLarge(n) => write!(f, "response larger than {n} bytes"),
            FetchError::Body(e) => write!(f, "reading the body failed: {e}"),
            FetchError::Invalid(e) => write!(f, "invalid response: {e}"),
        }
    }
}

impl FetchError {
    /// Short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            FetchError::BadUrl(_) => "bad_url",
            FetchError::Connect(_) => "connect",
            FetchError::Timeout => "timeout",
            FetchError::Status(_) => "status",
            FetchError::TooLarge(_) => "too_large",
            FetchError::Body(_) => "body",
            FetchError::Invalid(_) => "invalid",
        }
    }
}

/// A successful response, body fully read.
#[derive(Debug)]
pub struct Fetched {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// A GET client with its own TLS roots and timeouts.
#[derive(Clone)]
pub struct Fetcher {
    client: HttpsClient,
    total_timeout: Duration,
    max_bytes: usize,
}

impl Fetcher {
    /// A fetcher with the given timeouts and body cap.
    pub fn new(connect_timeout: Duration, total_timeout: Duration, max_bytes: usize, ca_file: Option<&Path>) -> Result<Self, String> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(connect_timeout));
        http.set_nodelay(true);
        let tls = authgear_tls_roots::client_tls(ca_file)?;
        let https = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(2).build(https);
        Ok(Fetcher { client, total_timeout, max_bytes })
    }

    /// GETs `url`; non-2xx statuses are errors.
    pub async fn get(&self, url: &str) -> Result<Fetched, FetchError> {
        let uri: http::Uri = url.parse().map_err(|_| FetchError::BadUrl(url.to_owned()))?;
        let req = http::Request::get(uri)
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::USER_AGENT, concat!("authgear-gateway/", env!("CARGO_PKG_VERSION")))
            .body(Empty::<Bytes>::new())
            .map_err(|e| FetchError::BadUrl(e.to_string()))?;
        let max = self.max_bytes;
        // A fetch a request waits for (keys not loaded, an unknown `kid`)
        // is a span of that request; the background refresh has none.
        let span = Child::http_client(req.method(), req.uri());
        let work = async {
            let resp = self.client.request(req).await.map_err(|e| FetchError::Connect(error_chain(&e)))?;
            let (parts, body) = resp.into_parts();
            span.set_status_code(parts.status.as_u16());
            if !parts.status.is_success() {
                return Err(FetchError::Status(parts.status.as_u16()));
            }
            if let Some(len) = parts.headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok()) {
                if len > max {
                    return Err(FetchError::TooLarge(max));
                }
            }
            let collected = Limited::new(body, max).collect().await.map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    FetchError::TooLarge(max)
                } else {
                    FetchError::Body(e.to_string())
                }
            })?;
            Ok(Fetched { status: parts.status, headers: parts.headers, body: collected.to_bytes() })
        };
        let result = tokio::time::timeout(self.total_timeout, work).await.map_err(|_| FetchError::Timeout).and_then(|r| r);
        if let Err(e) = &result {
            span.fail(e.kind(), "key fetch failed");
        }
        result
    }
}

/// Reads `max-age` from `Cache-Control`; `no-cache`/`no-store` count as 0.
pub fn cache_max_age(headers: &HeaderMap) -> Option<Duration> {
    let mut out = None;
    for v in headers.get_all(http::header::CACHE_CONTROL) {
        let Ok(v) = v.to_str() else { continue };
        for directive in v.split(',') {
            let d = directive.trim().to_ascii_lowercase();
            if d == "no-cache" || d == "no-store" {
                return Some(Duration::ZERO);
            }
            if let Some(n) = d.strip_prefix("max-age=") {
                if let Ok(secs) = n.trim_matches('"').parse::<u64>() {
                    out = Some(Duration::from_secs(secs));
                }
            }
        }
    }
    out
}

//! Talking to the provider: its discovery document (the four endpoints the
//! flow uses, fetched once and kept) and the token endpoint (code exchange,
//! with the client authentication the config names).

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::auth::fetch::Fetcher;
use crate::config::{BrowserLoginSettings, ClientAuth};
use crate::error::error_chain;

/// Largest token or discovery answer read.
const MAX_BODY: usize = 256 * 1024;

/// The provider's endpoints, from discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    pub authorization: String,
    pub token: String,
    pub end_session: Option<String>,
    pub revocation: Option<String>,
}

/// Why the provider could not be used; safe to log (no token or secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderError {
    /// Unreachable, timed out or answered 5xx: retry later.
    Down(String),
    /// It answered with an OAuth error (`invalid_grant`, ...).
    Refused(String),
    /// It answered something that is not a usable token response.
    Invalid(String),
}

impl std::fmt::Display for ProviderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProviderError::Down(e) => write!(f, "provider unavailable: {e}"),
            ProviderError::Refused(e) => write!(f, "provider refused: {e}"),
            ProviderError::Invalid(e) => write!(f, "provider answer unusable: {e}"),
        }
    }
}

type PostClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The provider client of one `[login]`: discovery kept, one pool for posts.
pub struct Provider {
    issuer: String,
    fetcher: Fetcher,
    client: PostClient,
    timeout: Duration,
    endpoints: Mutex<Option<Endpoints>>,
}

impl Provider {
    /// A client for `issuer` trusting the platform roots plus `ca_file`.
    pub fn new(issuer: &str, ca_file: Option<&Path>) -> Result<Provider, String> {
        let timeout = Duration::from_secs(10);
        let fetcher = Fetcher::new(Duration::from_secs(5), timeout, MAX_BODY, ca_file)?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        let tls = authgear_tls_roots::client_tls(ca_file)?;
        let https = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(8).build(https);
        Ok(Provider { issuer: issuer.trim_end_matches('/').to_owned(), fetcher, client, timeout, endpoints: Mutex::new(None) })
    }

    /// The endpoints, from discovery on first use (kept once fetched).
    pub async fn endpoints(&self) -> Result<Endpoints, ProviderError> {
        if let Some(e) = self.endpoints.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Ok(e);
        }
        let url = format!("{}/.well-known/openid-configuration", self.issuer);
        let doc = self.fetcher.get(&url).await.map_err(|e| ProviderError::Down(e.to_string()))?;
        let v: Value = serde_json::from_slice(&doc.body).map_err(|_| ProviderError::Invalid("discovery is not JSON".into()))?;
        if v.get("issuer").and_then(Value::as_str).map(|s| s.trim_end_matches('/')) != Some(self.issuer.as_str()) {
            return Err(ProviderError::Invalid("discovery names another issuer".into()));
        }
        let url_of = |k: &str| v.get(k).and_then(Value::as_str).filter(|u| u.starts_with("https://") || u.starts_with("http://")).map(str::to_owned);
        let e = Endpoints {
            authorization: url_of("authorization_endpoint").ok_or_else(|| ProviderError::Invalid("no authorization_endpoint".into()))?,
            token: url_of("token_endpoint").ok_or_else(|| ProviderError::Invalid("no token_endpoint".into()))?,
            end_session: url_of("end_session_endpoint"),
            revocation: url_of("revocation_endpoint"),
        };
        *self.endpoints.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.clone());
        Ok(e)
    }

    /// POSTs a form to the token endpoint (or `url`) with the client's
    /// authentication; the JSON answer of a 200.
    pub async fn post_form(&self, url: &str, s: &BrowserLoginSettings, fields: &[(&str, &str)]) -> Result<Value, ProviderError> {
        let (body, basic) = form_body(s, fields);
        let mut req = http::Request::post(url)
            .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::USER_AGENT, concat!("authgear-gateway/", env!("CARGO_PKG_VERSION")));
        if let Some(b) = basic {
            req = req.header(http::header::AUTHORIZATION, b);
        }
        let req = req.body(Full::new(Bytes::from(body))).map_err(|e| ProviderError::Invalid(e.to_string()))?;
        let work = async {
            let resp = self.client.request(req).await.map_err(|e| ProviderError::Down(error_chain(&e)))?;
            let (parts, body) = resp.into_parts();
            let body = Limited::new(body, MAX_BODY).collect().await.map_err(|e| ProviderError::Down(e.to_string()))?.to_bytes();
            if parts.status.is_server_error() {
                return Err(ProviderError::Down(format!("HTTP status {}", parts.status.as_u16())));
            }
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if !parts.status.is_success() {
                let code = v.get("error").and_then(Value::as_str).unwrap_or("unknown_error");
                let code: String = code.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(40).collect();
                return Err(ProviderError::Refused(code));
            }
            Ok(v)
        };
        tokio::time::timeout(self.timeout, work).await.map_err(|_| ProviderError::Down("timed out".into()))?
    }
}

/// The form body and, for `client_secret_basic`, the `Authorization` value.
fn form_body(s: &BrowserLoginSettings, fields: &[(&str, &str)]) -> (String, Option<String>) {
    let mut form = form_urlencoded::Serializer::new(String::new());
    for (k, v) in fields {
        form.append_pair(k, v);
    }
    let mut basic = None;
    match (s.client_auth, &s.client_secret) {
        (ClientAuth::SecretBasic, Some(secret)) => {
            // RFC 6749 2.3.1: both parts form-encoded before Basic.
            let enc = |t: &str| form_urlencoded::byte_serialize(t.as_bytes()).collect::<String>();
            basic = Some(format!("Basic {}", STANDARD.encode(format!("{}:{}", enc(&s.client_id), enc(secret)))));
        }
        (ClientAuth::SecretPost, Some(secret)) => {
            form.append_pair("client_id", &s.client_id);
            form.append_pair("client_secret", secret);
        }
        _ => {
            form.append_pair("client_id", &s.client_id);
        }
    }
    (form.finish(), basic)
}

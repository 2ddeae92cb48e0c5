//! Admin API client for the User Import endpoints, with retries.
//!
//! 429 and 5xx are retried with exponential backoff and jitter, honouring
//! `Retry-After` (seconds or an HTTP-date); a quota error is not retried but surfaced as
//! `ImportError::Quota` so the run can stop cleanly and be resumed.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rand::Rng;
use serde_json::Value;

use super::jwt::AdminSigner;
use super::{redact, ImportError};

/// Path of the import endpoint, relative to the project endpoint.
pub const IMPORT_PATH: &str = "/_api/admin/users/import";

/// Retry and polling timings.
#[derive(Debug, Clone)]
pub struct Timing {
    /// Attempts after the first one for 429 / 5xx / connection errors.
    pub max_retries: u32,
    /// First backoff delay.
    pub backoff_base: Duration,
    /// Longest backoff delay (and longest `Retry-After` honoured).
    pub backoff_max: Duration,
    /// First delay between job polls.
    pub poll_initial: Duration,
    /// Longest delay between job polls.
    pub poll_max: Duration,
    /// Give up on one job after this long.
    pub poll_timeout: Duration,
    /// Per-request timeout.
    pub request_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            max_retries: 8,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(120),
            poll_initial: Duration::from_millis(500),
            poll_max: Duration::from_secs(15),
            poll_timeout: Duration::from_secs(3600),
            request_timeout: Duration::from_secs(120),
        }
    }
}

/// One record's result inside a completed job.
#[derive(Debug, Clone)]
pub struct Detail {
    /// Index into the batch's `records`.
    pub index: usize,
    /// `inserted`, `updated`, `skipped` or `failed`.
    pub outcome: String,
    /// The Authgear user id, when one exists.
    pub user_id: Option<String>,
    /// Server warnings, as text.
    pub warnings: Vec<String>,
    /// Server errors, as text.
    pub errors: Vec<String>,
}

/// An import job as the server reports it.
#[derive(Debug, Clone)]
pub struct Job {
    /// Job id.
    pub id: String,
    /// `pending`, `running`, `completed`, ...
    pub status: String,
    /// Per-record results (empty until completed).
    pub details: Vec<Detail>,
    /// The whole job object, with credentials removed from echoed records.
    pub redacted: Value,
    /// The error of the job as a whole (a completed job can carry one in
    /// place of some or all per-record details).
    pub error: Option<String>,
}

/// What a POST of one batch led to.
#[derive(Debug)]
pub enum Posted {
    /// The server accepted the batch and created a job.
    Job(Job),
    /// The server refused this batch as a whole (e.g. 400/413); the rows fail.
    Rejected(String),
}

/// The User Import API client.
pub struct ApiClient {
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    endpoint: String,
    signer: AdminSigner,
    timing: Timing,
}

/// Removes a `{"result": ...}` envelope if present (the server wraps, the docs don't).
pub fn unwrap_result(v: Value) -> Value {
    match v {
        Value::Object(mut m) if m.contains_key("result") && !m.contains_key("id") => m.remove("result").unwrap_or(Value::Null),
        other => other,
    }
}

fn text_of(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Object(m) => match m.get("message").and_then(Value::as_str) {
            Some(msg) => match m.get("reason").and_then(Value::as_str) {
                Some(r) => format!("{r}: {msg}"),
                None => msg.to_string(),
            },
            None => v.to_string(),
        },
        other => other.to_string(),
    };
    redact(&s)
}

fn texts(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a.iter().map(text_of).collect(),
        Some(Value::Null) | None => Vec::new(),
        Some(other) => vec![text_of(other)],
    }
}

/// Parses a job object (wrapped or bare).
pub fn parse_job(v: Value) -> Result<Job, String> {
    let mut v = unwrap_result(v);
    let id = v.get("id").and_then(Value::as_str).ok_or("job has no id")?.to_string();
    let status = v.get("status").and_then(Value::as_str).unwrap_or("").to_string();
    let mut details = Vec::new();
    if let Some(Value::Array(items)) = v.get_mut("details") {
        for (pos, d) in items.iter_mut().enumerate() {
            let index = d.get("index").and_then(Value::as_u64).map_or(pos, |i| i as usize);
            details.push(Detail {
                index,
                outcome: d.get("outcome").and_then(Value::as_str).unwrap_or("failed").to_string(),
                user_id: d.get("user_id").and_then(Value::as_str).map(str::to_string),
                warnings: texts(d.get("warnings")),
                errors: texts(d.get("errors")),
            });
            // The echoed record may hold a hash or TOTP secret: keep none of it on disk.
            if let Some(Value::Object(rec)) = d.get_mut("record") {
                rec.remove("password");
                rec.remove("mfa");
            }
        }
    }
    let error = v.get("error").filter(|e| !e.is_null()).map(text_of);
    Ok(Job { id, status, details, redacted: v, error })
}

fn is_quota(body: &Value) -> bool {
    let e = body.get("error").unwrap_or(body);
    ["reason", "name", "message"].iter().any(|k| {
        e.get(*k).and_then(Value::as_str).is_some_and(|s| {
            let s = s.to_ascii_lowercase();
            s.contains("usagelimit") || s.contains("quota") || s.contains("usage limit")
        })
    })
}

fn retry_after(resp: &http::response::Parts) -> Option<Duration> {
    let v = resp.headers.get(http::header::RETRY_AFTER)?.to_str().ok()?;
    retry_after_value(v, std::time::SystemTime::now())
}

/// Reads a `Retry-After` value: delay-seconds, or an HTTP-date (a date in
/// the past means "now").
pub fn retry_after_value(v: &str, now: std::time::SystemTime) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

impl ApiClient {
    /// Builds a client for `endpoint` (https, or http for local testing).
    pub fn new(endpoint: &str, signer: AdminSigner, timing: Timing) -> Self {
        // Same trust roots as the gateway's issuer fetches: the platform's,
        // or the bundled Mozilla set where the platform has none.
        // client_tls only fails on a CA file, and none is given here.
        let tls = authgear_tls_roots::client_tls(None)
            .unwrap_or_else(|_| rustls::ClientConfig::builder().with_root_certificates(rustls::RootCertStore::empty()).with_no_client_auth());
        let connector = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().enable_http2().build();
        let http = Client::builder(TokioExecutor::new()).build(connector);
        ApiClient { http, endpoint: endpoint.trim_end_matches('/').to_string(), signer, timing }
    }

    /// The retry/poll timings in force.
    pub fn timing(&self) -> &Timing {
        &self.timing
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self.timing.backoff_base.saturating_mul(1u32 << attempt.min(16));
        let capped = exp.min(self.timing.backoff_max);
        // "Equal jitter": between half and all of the delay, so parallel clients spread out.
        let f: f64 = rand::rng().random_range(0.5..=1.0);
        capped.mul_f64(f)
    }

    /// Sends one request with retries; returns the final status and JSON body.
    async fn call(&self, method: Method, path: &str, body: Option<&Bytes>) -> Result<(StatusCode, Value), ImportError> {
        let url = format!("{}{}", self.endpoint, path);
        let mut attempt = 0u32;
        loop {
            let token = self.signer.token()?;
            let mut req = Request::builder()
                .method(method.clone())
                .uri(&url)
                .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
                .header(http::header::ACCEPT, "application/json");
            if body.is_some() {
                req = req.header(http::header::CONTENT_TYPE, "application/json");
            }
            let req = req.body(Full::new(body.cloned().unwrap_or_default())).map_err(|e| ImportError::Usage(format!("bad endpoint URL {url}: {e}")))?;
            let outcome = tokio::time::timeout(self.timing.request_timeout, async {
                let resp = self.http.request(req).await.map_err(|e| e.to_string())?;
                let (parts, body) = resp.into_parts();
                let bytes = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
                Ok::<_, String>((parts, bytes))
            })
            .await
            .unwrap_or_else(|_| Err("request timed out".into()));
            let (delay, why) = match outcome {
                Err(e) => (self.backoff(attempt), format!("connection error: {e}")),
                Ok((parts, bytes)) => {
                    let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                    let status = parts.status;
                    let quota = is_quota(&json);
                    if quota && (status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::FORBIDDEN) {
                        return Err(ImportError::Quota(redact(&json.to_string())));
                    }
                    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                        let d = match retry_after(&parts) {
                            Some(ra) => ra.min(self.timing.backoff_max) + self.backoff(0).mul_f64(0.2),
                            None => self.backoff(attempt),
                        };
                        (d, format!("HTTP {status}"))
                    } else {
                        return Ok((status, json));
                    }
                }
            };
            if attempt >= self.timing.max_retries {
                return Err(ImportError::Api(format!("{method} {path}: giving up after {} attempts ({why})", attempt + 1)));
            }
            tracing::warn!("{method} {path}: {why}; retrying in {:.1}s", delay.as_secs_f64());
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// Posts one batch body.
    pub async fn post_batch(&self, body: Bytes) -> Result<Posted, ImportError> {
        let (status, json) = self.call(Method::POST, IMPORT_PATH, Some(&body)).await?;
        match status {
            s if s.is_success() => parse_job(json).map(Posted::Job).map_err(|e| ImportError::Api(format!("unexpected reply: {e}"))),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                Err(ImportError::Api(format!("HTTP {status}: check --key-id, --project-id and the key ({})", redact(&json.to_string()))))
            }
            s => Ok(Posted::Rejected(format!("batch rejected with HTTP {s}: {}", redact(&json.to_string())))),
        }
    }

    /// Fetches a job; `None` when the server no longer knows it (expired or lost).
    pub async fn get_job(&self, id: &str) -> Result<Option<Job>, ImportError> {
        let path = format!("{IMPORT_PATH}/{id}");
        let (status, json) = self.call(Method::GET, &path, None).await?;
        match status {
            s if s.is_success() => parse_job(json).map(Some).map_err(|e| ImportError::Api(format!("unexpected reply: {e}"))),
            StatusCode::NOT_FOUND => Ok(None),
            s => Err(ImportError::Api(format!("GET job {id}: HTTP {s}: {}", redact(&json.to_string())))),
        }
    }

    /// Polls a job with growing, jittered delays until it completes.
    pub async fn wait_job(&self, id: &str) -> Result<Option<Job>, ImportError> {
        let start = tokio::time::Instant::now();
        let mut delay = self.timing.poll_initial;
        loop {
            match self.get_job(id).await? {
                None => return Ok(None),
                Some(job) if job.status == "completed" => return Ok(Some(job)),
                Some(job) if job.status == "failed" => {
                    return Err(ImportError::Api(format!("job {id} failed on the server: {}", redact(&job.redacted.to_string()))))
                }
                Some(_) => {}
            }
            if start.elapsed() > self.timing.poll_timeout {
                return Err(ImportError::Api(format!("job {id} did not complete in time; run `resume` later")));
            }
            let f: f64 = rand::rng().random_range(0.8..=1.2);
            tokio::time::sleep(delay.mul_f64(f)).await;
            delay = (delay.mul_f64(1.5)).min(self.timing.poll_max);
        }
    }
}

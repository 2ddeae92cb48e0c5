//! Shared helpers for the import tests: RSA keys made on the fly, a fake
//! Authgear Admin API on 127.0.0.1 (real hyper server, port 0), scratch
//! folders and a runner for the real `authgear-import` binary.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};

pub const BIN: &str = env!("CARGO_BIN_EXE_authgear-import");
pub const KID: &str = "test-kid";
pub const PROJECT: &str = "myapp";
pub const CAP: usize = 500_000;
pub const HASH: &str = "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy";

/// An RSA key pair: PEM for the tool, public components for the server.
pub struct Keys {
    pub pem: String,
    pub n: Vec<u8>,
    pub e: Vec<u8>,
}

/// One key per test binary: generation is the slowest thing here.
pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let kp = KeyPair::generate(KeySize::Rsa2048).expect("generate RSA key");
        let der = kp.as_der().expect("PKCS#8 DER");
        let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
        let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(chunk).expect("ascii"));
            pem.push('\n');
        }
        pem.push_str("-----END PRIVATE KEY-----\n");
        let comps: PublicKeyComponents<Vec<u8>> = kp.public_key().into();
        Keys { pem, n: comps.n, e: comps.e }
    })
}

/// A fresh scratch folder under the target's tmp dir, with the key written in it.
pub fn scratch(name: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("import-{name}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst)));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    std::fs::write(dir.join("admin-key.pem"), &keys().pem).expect("write key");
    dir
}

/// Writes a CSV of `n` valid users `user{i}@example.com` (plus `extra` rows verbatim).
pub fn users_csv(path: &Path, n: usize, extra: &[&str]) {
    let mut s = String::from("Email,Email Verified,Name,Password Hash\n");
    for i in 0..n {
        s.push_str(&format!("user{i}@example.com,true,User Number {i},{HASH}\n"));
    }
    for e in extra {
        s.push_str(e);
        s.push('\n');
    }
    std::fs::write(path, s).expect("write csv");
}

/// The command line actually used: fast test timings appended for run/resume.
fn command(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    if matches!(args.first(), Some(&"run") | Some(&"resume")) {
        for a in ["--poll-ms", "5", "--poll-max-ms", "40", "--backoff-ms", "20", "--yes"] {
            all.push(a.into());
        }
    }
    let mut c = Command::new(BIN);
    c.args(&all).current_dir(dir).stdin(Stdio::null()).env_remove("AUTHGEAR_IMPORT_LOG");
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

/// Runs the binary to completion.
pub fn cli(dir: &Path, args: &[&str]) -> Output {
    cli_env(dir, args, &[])
}

/// Runs the binary to completion with extra environment variables.
pub fn cli_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    command(dir, args, env).output().expect("spawn authgear-import")
}

/// Starts the binary without waiting (for crash tests).
pub fn spawn(dir: &Path, args: &[&str]) -> std::process::Child {
    command(dir, args, &[]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn authgear-import")
}

/// Arguments that point `run` at a mock server.
pub fn run_args(server: &MockServer, input: &str) -> Vec<String> {
    ["run", "--input", input, "--endpoint", &server.url, "--project-id", PROJECT, "--key-file", "admin-key.pem", "--key-id", KID]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

pub fn text(o: &Output) -> String {
    format!("status {:?}\nstdout:\n{}\nstderr:\n{}", o.status.code(), String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Reads a CSV report into rows keyed by column name.
pub fn read_report(path: &Path) -> Vec<HashMap<String, String>> {
    let mut rd = csv::Reader::from_path(path).expect("open report");
    let headers = rd.headers().expect("headers").clone();
    rd.records()
        .map(|r| {
            let r = r.expect("row");
            headers.iter().zip(r.iter()).map(|(h, v)| (h.to_string(), v.to_string())).collect()
        })
        .collect()
}

/// Asserts that each of `lines` appears exactly once in the report, and nothing else.
pub fn assert_one_outcome_per_line(report: &[HashMap<String, String>], lines: impl IntoIterator<Item = u64>) {
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for r in report {
        let line: u64 = r["line"].parse().expect("line number");
        *seen.entry(line).or_insert(0) += 1;
        assert!(["inserted", "updated", "skipped", "failed", "invalid"].contains(&r["outcome"].as_str()), "{r:?}");
    }
    let expected: Vec<u64> = lines.into_iter().collect();
    for l in &expected {
        assert_eq!(seen.get(l), Some(&1), "line {l} should have exactly one outcome");
    }
    assert_eq!(seen.len(), expected.len(), "report has unexpected lines");
}

/// Something the server does instead of behaving, once.
#[derive(Debug, Clone)]
pub enum Fault {
    /// 429 with this Retry-After (seconds).
    TooMany(u64),
    /// 500.
    ServerError,
    /// 429 whose body says the usage limit is exceeded.
    Quota,
    /// Accept the job, but answer 404 when it is polled.
    LoseResult,
    /// Process the request, then never answer.
    Hang,
    /// 429 with a Retry-After HTTP-date this many seconds ahead.
    TooManyUntil(u64),
    /// Complete the job with this job-level error and no per-record details.
    JobError(String),
}

/// What the fake server has seen and holds.
#[derive(Default)]
pub struct State {
    /// Faults for the next POSTs, in order (None = behave).
    pub post_faults: VecDeque<Option<Fault>>,
    /// Faults for the next GETs.
    pub get_faults: VecDeque<Option<Fault>>,
    /// Users by lower-cased identifier: (user id, stored record).
    pub users: HashMap<String, (String, Value)>,
    /// How often each identifier was inserted.
    pub inserts: HashMap<String, u32>,
    /// How often each identifier was POSTed.
    pub posted: HashMap<String, u32>,
    /// Log of (method, status, when, body bytes).
    pub log: Vec<(String, u16, Instant, usize)>,
    /// Records whose identifier starts with this fail on the server.
    pub fail_prefix: Option<String>,
    /// Set when a Hang fault was reached.
    pub hung: bool,
    /// Largest body received.
    pub max_body: usize,
    jobs: HashMap<String, (u32, Value, bool)>,
    next_id: u64,
}

/// A running fake Admin API.
pub struct MockServer {
    pub url: String,
    pub state: Arc<Mutex<State>>,
    _rt: tokio::runtime::Runtime,
}

impl MockServer {
    pub fn start() -> MockServer {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
        let state = Arc::new(Mutex::new(State::default()));
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
        let addr = listener.local_addr().expect("addr");
        let st = state.clone();
        rt.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let st = st.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| handle(req, st.clone()));
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, svc).await;
                });
            }
        });
        MockServer { url: format!("http://{addr}"), state, _rt: rt }
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits (polling, bounded) until `cond` holds.
    pub fn wait_for(&self, what: &str, cond: impl Fn(&State) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !cond(&self.lock()) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static("application/json"));
    r
}

fn error(status: StatusCode, reason: &str, msg: &str) -> Response<Full<Bytes>> {
    reply(status, json!({"error": {"name": reason, "reason": reason, "message": msg, "code": status.as_u16()}}))
}

fn check_jwt(req: &Request<hyper::body::Incoming>) -> Result<(), String> {
    let auth = req.headers().get("authorization").and_then(|v| v.to_str().ok()).ok_or("no authorization")?;
    let token = auth.strip_prefix("Bearer ").ok_or("not bearer")?;
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    if header.kid.as_deref() != Some(KID) {
        return Err("wrong kid".into());
    }
    let k = keys();
    let key = DecodingKey::from_rsa_raw_components(&k.n, &k.e);
    let mut v = Validation::new(Algorithm::RS256);
    v.set_audience(&[PROJECT]);
    v.set_required_spec_claims(&["exp", "aud", "iat"]);
    v.leeway = 0;
    let data = jsonwebtoken::decode::<Value>(token, &key, &v).map_err(|e| e.to_string())?;
    let (iat, exp) = (data.claims["iat"].as_u64().unwrap_or(0), data.claims["exp"].as_u64().unwrap_or(0));
    if exp <= iat || exp - iat > 600 {
        return Err("exp is not a few minutes after iat".into());
    }
    Ok(())
}

// The keys Authgear's import API accepts, written out here rather than taken
// from `schema::RECORD_FIELDS`: the test server must not trust the code it tests.
pub const RECORD_KEYS: &[&str] = &[
    "preferred_username",
    "email",
    "phone_number",
    "email_verified",
    "phone_number_verified",
    "name",
    "given_name",
    "family_name",
    "middle_name",
    "nickname",
    "profile",
    "picture",
    "website",
    "gender",
    "birthdate",
    "zoneinfo",
    "locale",
    "address",
    "custom_attributes",
    "roles",
    "groups",
    "disabled",
    "account_valid_from",
    "account_valid_until",
    "password",
    "mfa",
];

fn wrap(n: u64, v: Value) -> Value {
    // Alternate between the wrapped form the server uses and the bare form the docs show.
    if n % 2 == 0 {
        json!({"result": v})
    } else {
        v
    }
}

async fn handle(req: Request<hyper::body::Incoming>, st: Arc<Mutex<State>>) -> Result<Response<Full<Bytes>>, Infallible> {
    let jwt = check_jwt(&req);
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let (resp, hang) = {
        let mut s = st.lock().unwrap_or_else(|p| p.into_inner());
        let (resp, hang) = respond(&mut s, jwt, &method, &path, &body);
        s.log.push((method.clone(), resp.status().as_u16(), Instant::now(), body.len()));
        if hang {
            s.hung = true;
        }
        (resp, hang)
    };
    if hang {
        std::future::pending::<()>().await;
    }
    Ok(resp)
}

fn respond(s: &mut State, jwt: Result<(), String>, method: &str, path: &str, body: &[u8]) -> (Response<Full<Bytes>>, bool) {
    if let Err(e) = jwt {
        return (error(StatusCode::UNAUTHORIZED, "Unauthorized", &e), false);
    }
    let fault = if method == "POST" { s.post_faults.pop_front() } else { s.get_faults.pop_front() }.flatten();
    match fault {
        Some(Fault::TooMany(secs)) => {
            let mut r = error(StatusCode::TOO_MANY_REQUESTS, "RateLimited", "slow down");
            r.headers_mut().insert("retry-after", secs.to_string().parse().expect("header"));
            return (r, false);
        }
        Some(Fault::TooManyUntil(secs)) => {
            let mut r = error(StatusCode::TOO_MANY_REQUESTS, "RateLimited", "slow down");
            let when = std::time::SystemTime::now() + Duration::from_secs(secs);
            r.headers_mut().insert("retry-after", httpdate::fmt_http_date(when).parse().expect("header"));
            return (r, false);
        }
        Some(Fault::ServerError) => return (error(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", "boom"), false),
        Some(Fault::Quota) => return (error(StatusCode::TOO_MANY_REQUESTS, "UsageLimitExceeded", "user import quota used up"), false),
        _ => {}
    }
    let hang = matches!(fault, Some(Fault::Hang));
    if method == "GET" {
        let id = path.rsplit('/').next().unwrap_or("").to_string();
        let n = s.next_id;
        s.next_id += 1;
        let Some(job) = s.jobs.get_mut(&id) else { return (error(StatusCode::NOT_FOUND, "NotFound", "no such job"), hang) };
        if job.2 {
            return (error(StatusCode::NOT_FOUND, "NotFound", "job result expired"), hang);
        }
        if job.0 > 0 {
            job.0 -= 1;
            return (reply(StatusCode::OK, wrap(n, json!({"id": id, "status": "pending"}))), hang);
        }
        return (reply(StatusCode::OK, wrap(n, job.1.clone())), hang);
    }
    if path != "/_api/admin/users/import" {
        return (error(StatusCode::NOT_FOUND, "NotFound", "no route"), false);
    }
    s.max_body = s.max_body.max(body.len());
    if body.len() > CAP {
        return (error(StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLarge", "body over 500 KB"), false);
    }
    let Ok(Value::Object(req)) = serde_json::from_slice::<Value>(body) else {
        return (error(StatusCode::BAD_REQUEST, "Invalid", "not JSON"), false);
    };
    if req.keys().any(|k| !["identifier", "upsert", "records"].contains(&k.as_str())) {
        return (error(StatusCode::BAD_REQUEST, "Invalid", "unknown top-level key"), false);
    }
    let ident = req.get("identifier").and_then(Value::as_str).unwrap_or("").to_string();
    if !["email", "preferred_username", "phone_number"].contains(&ident.as_str()) {
        return (error(StatusCode::BAD_REQUEST, "Invalid", "bad identifier"), false);
    }
    let upsert = req.get("upsert").and_then(Value::as_bool).unwrap_or(false);
    let Some(records) = req.get("records").and_then(Value::as_array) else {
        return (error(StatusCode::BAD_REQUEST, "Invalid", "no records"), false);
    };
    let mut details = Vec::new();
    let (mut ins, mut upd, mut skp, mut fl) = (0, 0, 0, 0);
    for (index, rec) in records.iter().enumerate() {
        // Like Authgear: users are stored under the normalized (here: lower-cased)
        // login id but looked up by the value exactly as sent, so a value sent
        // un-normalized misses its user and then collides with it.
        let sent = rec.get(&ident).and_then(Value::as_str).unwrap_or("").to_string();
        let key = sent.to_lowercase();
        *s.posted.entry(key.clone()).or_insert(0) += 1;
        let bad_key = rec.as_object().is_some_and(|o| o.keys().any(|k| !RECORD_KEYS.contains(&k.as_str())));
        let bad_pw = rec.get("password").is_some_and(|p| p.get("type").and_then(Value::as_str) != Some("bcrypt"));
        let failing = s.fail_prefix.as_deref().is_some_and(|p| key.starts_with(p));
        let (outcome, user_id, errors) = if bad_key || bad_pw || failing || key.is_empty() {
            fl += 1;
            ("failed", Value::Null, json!([{"name": "Invalid", "reason": "ValidationFailed", "message": "record rejected"}]))
        } else if sent != key && s.users.contains_key(&key) {
            fl += 1;
            ("failed", Value::Null, json!([{"name": "Invalid", "reason": "DuplicatedIdentity", "message": "identity already exists"}]))
        } else if let Some((uid, _)) = s.users.get(&key).cloned() {
            if upsert {
                upd += 1;
                s.users.insert(key.clone(), (uid.clone(), rec.clone()));
                ("updated", json!(uid), json!([]))
            } else {
                skp += 1;
                ("skipped", json!(uid), json!([]))
            }
        } else {
            ins += 1;
            let uid = format!("user-{}", s.users.len() + 1);
            s.users.insert(key.clone(), (uid.clone(), rec.clone()));
            *s.inserts.entry(key.clone()).or_insert(0) += 1;
            ("inserted", json!(uid), json!([]))
        };
        details.push(json!({"index": index, "record": rec, "outcome": outcome, "user_id": user_id, "warnings": [], "errors": errors}));
    }
    let n = s.next_id;
    s.next_id += 1;
    let id = format!("job-{n}");
    let result = json!({"id": id, "created_at": "2025-01-01T00:00:00Z", "status": "completed",
        "summary": {"total": records.len(), "inserted": ins, "updated": upd, "skipped": skp, "failed": fl},
        "details": details});
    let result = match &fault {
        Some(Fault::JobError(msg)) => json!({"id": id, "created_at": "2025-01-01T00:00:00Z", "status": "completed",
            "error": {"name": "InternalError", "reason": "UnexpectedError", "message": msg, "code": 500}}),
        _ => result,
    };
    let lost = matches!(fault, Some(Fault::LoseResult));
    s.jobs.insert(id.clone(), (1, result, lost));
    (reply(StatusCode::OK, wrap(n, json!({"id": id, "created_at": "2025-01-01T00:00:00Z", "status": "pending"}))), hang)
}

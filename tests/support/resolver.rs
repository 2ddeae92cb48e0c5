//! A test stand-in for Authgear's `/_resolver/resolve`: a real HTTP server on
//! 127.0.0.1 that answers 200 with the verdict in `X-Authgear-*` headers,
//! counts its calls and records what it received.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

/// A session the resolver knows, keyed by cookie value or bearer token.
#[derive(Debug, Clone, Default)]
pub struct Session {
    pub user_id: String,
    pub roles: Vec<String>,
    pub verified: bool,
    pub anonymous: bool,
    /// Sent as-is in `X-Authgear-Session-Amr` (Authgear joins with spaces).
    pub amr: String,
    pub authenticated_at: u64,
}

impl Session {
    pub fn user(id: &str) -> Session {
        Session { user_id: id.into(), verified: true, amr: "pwd otp".into(), authenticated_at: 1_700_000_000, ..Default::default() }
    }

    pub fn with_roles(mut self, roles: &[&str]) -> Session {
        self.roles = roles.iter().map(|r| r.to_string()).collect();
        self
    }
}

/// How the resolver behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolverMode {
    Up,
    /// Answers 500, as Authgear does on an internal error.
    Error500,
    /// Never answers.
    Hang,
    /// Closes the connection without answering.
    Reset,
}

/// One request as the resolver received it.
#[derive(Debug, Clone)]
pub struct ResolverSeen {
    pub method: String,
    pub target: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// The running test resolver.
pub struct TestResolver {
    pub addr: SocketAddr,
    sessions: Arc<Mutex<HashMap<String, Session>>>,
    seen: Arc<Mutex<Vec<ResolverSeen>>>,
    calls: Arc<AtomicUsize>,
    mode: Arc<Mutex<ResolverMode>>,
    /// Delay before answering in `Up` mode.
    delay: Arc<Mutex<Duration>>,
    /// Calls being answered now, and the most seen at once.
    in_flight: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
}

impl TestResolver {
    pub async fn start() -> TestResolver {
        let listener = authgear_gateway::runtime::net::bind_loopback().expect("bind resolver");
        let addr = listener.local_addr().expect("addr");
        let r = TestResolver {
            addr,
            sessions: Arc::default(),
            seen: Arc::default(),
            calls: Arc::default(),
            mode: Arc::new(Mutex::new(ResolverMode::Up)),
            delay: Arc::default(),
            in_flight: Arc::default(),
            max_in_flight: Arc::default(),
        };
        let (sessions, seen, calls, mode, delay) = (r.sessions.clone(), r.seen.clone(), r.calls.clone(), r.mode.clone(), r.delay.clone());
        let (in_flight, max_in_flight) = (r.in_flight.clone(), r.max_in_flight.clone());
        tokio::spawn(async move {
            let builder = auto::Builder::new(TokioExecutor::new());
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let m = *mode.lock().unwrap();
                if m == ResolverMode::Reset {
                    calls.fetch_add(1, Ordering::SeqCst);
                    drop(stream);
                    continue;
                }
                let (sessions, seen, calls, mode, delay) = (sessions.clone(), seen.clone(), calls.clone(), mode.clone(), delay.clone());
                let (in_flight, max_in_flight) = (in_flight.clone(), max_in_flight.clone());
                let svc = service_fn(move |req: Request<Incoming>| {
                    let (sessions, seen, calls, mode, delay) = (sessions.clone(), seen.clone(), calls.clone(), mode.clone(), delay.clone());
                    let (in_flight, max_in_flight) = (in_flight.clone(), max_in_flight.clone());
                    async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        max_in_flight.fetch_max(now, Ordering::SeqCst);
                        struct Done(Arc<AtomicUsize>);
                        impl Drop for Done {
                            fn drop(&mut self) {
                                self.0.fetch_sub(1, Ordering::SeqCst);
                            }
                        }
                        let _done = Done(in_flight);
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let target = parts.uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
                        seen.lock().unwrap().push(ResolverSeen { method: parts.method.to_string(), target, headers: parts.headers.clone(), body });
                        let m = *mode.lock().unwrap();
                        match m {
                            ResolverMode::Hang => tokio::time::sleep(Duration::from_secs(3600)).await,
                            ResolverMode::Error500 => {
                                let mut r = Response::new(Full::new(Bytes::from_static(b"internal error")));
                                *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                                return Ok::<_, Infallible>(r);
                            }
                            _ => {}
                        }
                        let d = *delay.lock().unwrap();
                        if !d.is_zero() {
                            tokio::time::sleep(d).await;
                        }
                        let known = sessions.lock().unwrap().clone();
                        Ok(answer(&parts.headers, &known))
                    }
                });
                tokio::spawn(builder.serve_connection(TokioIo::new(stream), svc).into_owned());
            }
        });
        r
    }

    /// `http://127.0.0.1:PORT/_resolver/resolve`
    pub fn url(&self) -> String {
        format!("http://{}/_resolver/resolve", self.addr)
    }

    /// Makes `credential` (a cookie value or a bearer token) a valid session.
    pub fn add(&self, credential: &str, s: Session) {
        self.sessions.lock().unwrap().insert(credential.into(), s);
    }

    /// Revokes a session.
    pub fn remove(&self, credential: &str) {
        self.sessions.lock().unwrap().remove(credential);
    }

    pub fn set_mode(&self, m: ResolverMode) {
        *self.mode.lock().unwrap() = m;
    }

    pub fn set_delay(&self, d: Duration) {
        *self.delay.lock().unwrap() = d;
    }

    /// Calls received so far (refused-by-reset connections included).
    /// The most calls the resolver was answering at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn seen(&self) -> Vec<ResolverSeen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn last(&self) -> ResolverSeen {
        self.seen.lock().unwrap().last().cloned().expect("the resolver saw no request")
    }
}

/// Authgear's rules: the `session` cookie takes precedence over the
/// Authorization header; no credential at all sends no verdict header.
fn answer(h: &HeaderMap, sessions: &HashMap<String, Session>) -> Response<Full<Bytes>> {
    let cookie = h
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|p| p.trim().split_once('='))
        .find(|(n, _)| *n == "session")
        .map(|(_, v)| v.to_owned());
    let bearer = h.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).map(str::to_owned);
    let mut r = Response::new(Full::new(Bytes::new()));
    let Some(credential) = cookie.or(bearer) else { return r };
    let out = r.headers_mut();
    let v = |s: &str| HeaderValue::from_str(s).expect("header value");
    match sessions.get(&credential) {
        None => {
            out.insert("x-authgear-session-valid", v("false"));
        }
        Some(s) => {
            out.insert("x-authgear-session-valid", v("true"));
            out.insert("x-authgear-user-id", v(&s.user_id));
            out.insert("x-authgear-user-anonymous", v(&s.anonymous.to_string()));
            out.insert("x-authgear-user-verified", v(&s.verified.to_string()));
            out.insert("x-authgear-user-can-reauthenticate", v("true"));
            if !s.roles.is_empty() {
                out.insert("x-authgear-user-roles", v(&s.roles.join(",")));
            }
            out.insert("x-authgear-session-amr", v(&s.amr));
            out.insert("x-authgear-session-authenticated-at", v(&s.authenticated_at.to_string()));
        }
    }
    r
}

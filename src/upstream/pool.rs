//! Our own keep-alive pool for plain-HTTP/1.1 upstreams, on hyper's
//! `client::conn` API, with one idle list per connection worker.
//!
//! Why not hyper-util's pooled client, as for TLS and HTTP/2 upstreams:
//! to learn when an HTTP/1 connection is free again it spawns a task and a
//! channel for every request, and it keys its pool by scheme and authority
//! in a hashed map behind one lock. Here the response body hands its
//! connection back when it ends, and the next request on the same worker
//! takes the most recently used one (LIFO keeps few connections warm).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tracing::debug;

use crate::error::{error_chain, GatewayError};
use crate::upstream::body::UpstreamBody;

/// Idle connections of one plain-HTTP/1.1 upstream, per worker.
pub struct H1Pool {
    shared: Arc<Shared>,
}

struct Shared {
    host: String,
    port: u16,
    connect_timeout: Duration,
    idle_timeout: Duration,
    max_idle: usize,
    /// Index: `workers::current()` modulo the length (0 = other threads).
    idle: Box<[Mutex<VecDeque<Idle>>]>,
    reaper_started: AtomicBool,
}

struct Idle {
    tx: SendRequest<UpstreamBody>,
    since: Instant,
}

impl H1Pool {
    /// A pool for `authority` (port 80 when it names none) with one idle
    /// list for each of `workers` plus one for other threads.
    pub fn new(authority: &http::uri::Authority, connect_timeout: Duration, idle_timeout: Duration, max_idle: usize, workers: usize) -> H1Pool {
        // An IPv6 literal comes bracketed in a URL but not to the resolver.
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_owned();
        let idle = (0..=workers).map(|_| Mutex::new(VecDeque::new())).collect();
        let shared =
            Shared { host, port: authority.port_u16().unwrap_or(80), connect_timeout, idle_timeout, max_idle, idle, reaper_started: AtomicBool::new(false) };
        H1Pool { shared: Arc::new(shared) }
    }

    /// Sends `req` (absolute URI; sent in origin form) on an idle connection
    /// of this worker or a new one. A request that a reused connection
    /// closed before it was written is sent again on another connection, and
    /// so, once and on a new connection, is a bodiless idempotent request that
    /// a connection idle for [`REPLAY_AFTER_IDLE`] lost before any answer
    /// (the upstream's idle timer closed it just as the request went out).
    /// Anything else that fails is the caller's 502.
    pub async fn send(&self, mut req: Request<UpstreamBody>) -> Result<Response<PooledBody>, GatewayError> {
        origin_form(req.uri_mut());
        let worker = crate::runtime::workers::current() % self.shared.idle.len();
        let mut replayed = false;
        loop {
            let checked_out = if replayed { None } else { self.shared.checkout(worker) };
            let (mut tx, reused, idle_for) = match checked_out {
                Some((tx, idle_for)) => (tx, true, idle_for),
                None => (self.connect().await?, false, Duration::ZERO),
            };
            let replay = if idle_for >= REPLAY_AFTER_IDLE { replay_copy(&req) } else { None };
            match tx.try_send_request(req).await {
                Ok(resp) => {
                    // A switched protocol owns the connection from now on.
                    let lease = (resp.status() != StatusCode::SWITCHING_PROTOCOLS).then(|| Lease { tx, shared: self.shared.clone(), worker });
                    return Ok(resp.map(|inner| PooledBody { inner, lease }));
                }
                Err(mut e) => match (e.take_message(), replay) {
                    (Some(back), _) if reused => {
                        debug!(upstream = %self.shared.host, "pooled connection closed before the request was sent; retrying on another");
                        req = back;
                    }
                    (None, Some(copy)) if lost_before_answer(e.error()) => {
                        debug!(upstream = %self.shared.host, error = %error_chain(e.error()), "pooled connection lost an idempotent request; sending it again on a new connection");
                        req = copy;
                        replayed = true;
                    }
                    _ => return Err(GatewayError::UpstreamUnavailable(error_chain(&e.into_error()))),
                },
            }
        }
    }

    /// Opens a new connection: resolve, then try each address in turn, all
    /// within `connect_timeout`. Its driver runs as a task on this thread.
    async fn connect(&self) -> Result<SendRequest<UpstreamBody>, GatewayError> {
        let s = &self.shared;
        let open = async {
            let addrs = tokio::net::lookup_host((s.host.as_str(), s.port)).await.map_err(|e| format!("resolving {}: {e}", s.host))?;
            let mut last = format!("{} resolved to no address", s.host);
            for addr in addrs {
                match TcpStream::connect(addr).await {
                    Ok(stream) => return Ok(stream),
                    Err(e) => last = format!("connecting to {addr}: {e}"),
                }
            }
            Err(last)
        };
        let stream = match tokio::time::timeout(s.connect_timeout, open).await {
            Err(_) => return Err(GatewayError::UpstreamTimeout),
            Ok(Err(e)) => return Err(GatewayError::UpstreamUnavailable(e)),
            Ok(Ok(stream)) => stream,
        };
        let _ = stream.set_nodelay(true);
        let (tx, conn) = http1::handshake(TokioIo::new(stream)).await.map_err(|e| GatewayError::UpstreamUnavailable(error_chain(&e)))?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                debug!(error = %error_chain(&e), "upstream connection ended with an error");
            }
        });
        self.start_reaper();
        Ok(tx)
    }

    /// Closes connections idle past `idle_timeout` even when no request
    /// comes to notice them. One task per pool; it ends with the pool.
    fn start_reaper(&self) {
        if self.shared.reaper_started.swap(true, Ordering::Relaxed) {
            return;
        }
        let weak: Weak<Shared> = Arc::downgrade(&self.shared);
        let every = (self.shared.idle_timeout / 2).max(Duration::from_millis(50));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(shared) = weak.upgrade() else { return };
                for list in shared.idle.iter() {
                    shared.drop_expired(&mut lock(list), Instant::now());
                }
            }
        });
    }
}

impl Shared {
    /// The most recently used idle connection of `worker` that is ready
    /// for a request, if any; the others it passes are dropped (closed).
    fn checkout(&self, worker: usize) -> Option<(SendRequest<UpstreamBody>, Duration)> {
        loop {
            let idle = {
                let mut list = lock(&self.idle[worker]);
                self.drop_expired(&mut list, Instant::now());
                list.pop_back()?
            };
            // Not ready means closed, or still sending the body of its last
            // request (an upstream may answer before reading it all), which
            // can take as long as that client likes: not worth waiting for.
            if idle.tx.is_ready() {
                return Some((idle.tx, idle.since.elapsed()));
            }
        }
    }

    /// Oldest first: the list is in order of return.
    fn drop_expired(&self, list: &mut VecDeque<Idle>, now: Instant) {
        while list.front().is_some_and(|i| now.duration_since(i.since) >= self.idle_timeout) {
            list.pop_front();
        }
    }

    fn checkin(&self, worker: usize, tx: SendRequest<UpstreamBody>) {
        if tx.is_closed() {
            return;
        }
        let mut list = lock(&self.idle[worker]);
        if list.len() < self.max_idle {
            list.push_back(Idle { tx, since: Instant::now() });
        }
    }
}

/// A poisoned list only means a panic elsewhere mid-push; the list itself
/// is still consistent.
fn lock(m: &Mutex<VecDeque<Idle>>) -> std::sync::MutexGuard<'_, VecDeque<Idle>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How long a pooled connection must have been idle before a request sent
/// on it is copied for a replay. Upstreams close idle connections on a
/// timer (Node and Apache after 5 s, gunicorn after 2 s), and a request
/// that meets that close on the wire is lost. A connection busy moments ago
/// is rarely closed unannounced, and under load the copy (3 allocations per
/// request, measured) would be paid on every request for nothing.
pub const REPLAY_AFTER_IDLE: Duration = Duration::from_millis(100);

/// A copy of `req` to send again should a reused connection lose it: only
/// for methods that RFC 9110 (section 9.2.2) lets a client retry on its own
/// and with no body (a streamed body cannot be sent twice), and never for an
/// upgrade. The copy is made before sending because hyper keeps a request
/// once it has started writing it.
fn replay_copy(req: &Request<UpstreamBody>) -> Option<Request<UpstreamBody>> {
    let idempotent = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE);
    if !idempotent || !req.body().is_end_stream() || req.headers().contains_key(http::header::UPGRADE) {
        return None;
    }
    let mut copy = Request::new(Empty::new().map_err(|never: std::convert::Infallible| match never {}).boxed());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    Some(copy)
}

/// The connection ended before any of the answer came: closed (EOF) or
/// reset by the upstream. A timeout or a malformed answer is not retried.
fn lost_before_answer(e: &hyper::Error) -> bool {
    if e.is_incomplete_message() {
        return true;
    }
    let mut cur = std::error::Error::source(e);
    while let Some(c) = cur {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return matches!(io.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionAborted);
        }
        cur = c.source();
    }
    false
}

/// HTTP/1.1 request lines carry the path and query only.
fn origin_form(uri: &mut Uri) {
    let pq = uri.path_and_query().cloned().unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    *uri = Uri::from(pq);
}

/// A connection on loan to one response.
struct Lease {
    tx: SendRequest<UpstreamBody>,
    shared: Arc<Shared>,
    worker: usize,
}

/// An upstream response body; when it came from [`H1Pool`], reading it to
/// the end returns its connection to the pool. Dropped before the end, the
/// connection is closed instead (hyper cannot reuse it).
pub struct PooledBody {
    inner: Incoming,
    lease: Option<Lease>,
}

impl PooledBody {
    /// A body with no connection to return (hyper-util's client).
    pub fn unpooled(inner: Incoming) -> PooledBody {
        PooledBody { inner, lease: None }
    }

    fn release(&mut self) {
        if let Some(l) = self.lease.take() {
            l.shared.checkin(l.worker, l.tx);
        }
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // Whoever reads the body may stop polling once it reports its end.
        if self.inner.is_end_stream() {
            self.release();
        }
    }
}

impl hyper::body::Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.release(),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.release(),
            Poll::Ready(Some(Err(e))) => {
                // Never back in the pool: the connection's state is unknown.
                self.lease = None;
                debug!(error = %error_chain(e), "upstream response body failed");
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

//! One client connection, from TLS handshake to close: HTTP/1.1 or HTTP/2
//! (ALPN under TLS, prior-knowledge h2c in plain text), the idle keep-alive
//! timeout, and graceful close on shutdown. The request path itself is
//! [`crate::server::handle_request`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Frame, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;
use tokio::sync::{watch, OwnedSemaphorePermit};
use tracing::debug;

use crate::config::ServerSettings;
use crate::proxy::ClientInfo;
use crate::server::handle_request;
use crate::state::Gateway;
use crate::tls::ListenerTls;
use crate::Body;

/// A connection's place in `max_connections`, shared with a WebSocket
/// spliced out of it, plus the signal that the shutdown grace period is
/// over. Every request carries a clone in its extensions.
#[derive(Clone)]
pub struct ConnTicket {
    _permit: Arc<OwnedSemaphorePermit>,
    /// Flips to `true` when the grace period ends: cut what is still open.
    pub abort: watch::Receiver<bool>,
}

impl ConnTicket {
    /// A ticket holding `permit` until its last clone is dropped.
    pub fn new(permit: OwnedSemaphorePermit, abort: watch::Receiver<bool>) -> ConnTicket {
        ConnTicket { _permit: Arc::new(permit), abort }
    }
}

/// What every connection task shares.
pub struct Context {
    pub gw: Arc<Gateway>,
    pub builder: Arc<auto::Builder<TokioExecutor>>,
    pub settings: ServerSettings,
    /// Flips when the gateway stops accepting: close gracefully.
    pub stop: watch::Receiver<bool>,
}

/// The HTTP/1.1 + HTTP/2 connection builder with the `[server]` limits.
pub fn builder(s: &ServerSettings) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    // hyper answers 431 itself when an HTTP/1.1 head outgrows its read
    // buffer; leave room for the request line on top of the headers.
    let head = (s.max_header_bytes + s.max_uri_length + 1024).max(8192);
    b.http1().timer(TokioTimer::new()).header_read_timeout(s.request_header_timeout).max_headers(s.max_header_count).max_buf_size(head).keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(s.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(Duration::from_secs(30)));
    b
}

/// Serves one accepted TCP connection to its end.
pub async fn serve(stream: TcpStream, peer: SocketAddr, tls: Option<ListenerTls>, ctx: Context, ticket: ConnTicket) {
    let Some(tls) = tls else {
        let client = ClientInfo { addr: peer, proto: "http" };
        return drive(TokioIo::new(stream), client, ctx, ticket).await;
    };
    // A client that opens TCP and never finishes the handshake holds a slot
    // like a slowloris does: the header timeout covers the handshake too.
    match tokio::time::timeout(ctx.settings.request_header_timeout, tls.acceptor.accept(stream)).await {
        Ok(Ok(s)) => drive(TokioIo::new(s), ClientInfo { addr: peer, proto: "https" }, ctx, ticket).await,
        Ok(Err(e)) => debug!(client = %peer.ip(), error = %e, "TLS handshake failed"),
        Err(_) => debug!(client = %peer.ip(), "TLS handshake timed out"),
    }
}

async fn drive<I>(io: I, client: ClientInfo, ctx: Context, ticket: ConnTicket)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let svc = {
        let (gw, activity, ticket) = (ctx.gw.clone(), activity.clone(), ticket.clone());
        service_fn(move |mut req| {
            let guard = activity.begin();
            req.extensions_mut().insert(ticket.clone());
            let gw = gw.clone();
            // Boxed: hyper keeps the service future inline in each
            // connection's state, so an unboxed one would make every idle
            // keep-alive connection as large as the whole request path.
            Box::pin(async move {
                let resp = handle_request(&gw, req, client).await;
                Ok::<_, Infallible>(resp.map(|body| TrackedBody { inner: body, _guard: guard }.boxed()))
            })
        })
    };
    let conn = ctx.builder.serve_connection_with_upgrades(io, svc);
    tokio::pin!(conn);
    let (mut stop, mut abort) = (ctx.stop.clone(), ticket.abort.clone());
    drop(ticket);
    let idle = ctx.settings.idle_timeout;
    let first_request_by = tokio::time::Instant::now() + ctx.settings.request_header_timeout;
    let mut closing = false;
    loop {
        tokio::select! {
            // hyper's header timer starts with the first byte of a request;
            // a client that connects and sends nothing is cut here.
            _ = tokio::time::sleep_until(first_request_by), if !activity.started() => {
                debug!(client = %client.addr.ip(), "no request within the header timeout; closing");
                return;
            }
            r = conn.as_mut() => {
                if let Err(e) = r {
                    debug!(client = %client.addr.ip(), error = %e, "connection ended with an error");
                }
                return;
            }
            _ = stop.changed(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = activity.idle_for(idle), if !closing => {
                debug!(client = %client.addr.ip(), "closing an idle connection");
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = abort.wait_for(|v| *v) => return,
        }
    }
}

/// Requests in progress on one connection and when the last one ended.
struct Activity {
    active: AtomicUsize,
    started: AtomicBool,
    last: Mutex<Instant>,
}

impl Activity {
    fn new() -> Activity {
        Activity { active: AtomicUsize::new(0), started: AtomicBool::new(false), last: Mutex::new(Instant::now()) }
    }

    fn begin(self: &Arc<Self>) -> ActiveGuard {
        self.active.fetch_add(1, Ordering::AcqRel);
        self.started.store(true, Ordering::Release);
        ActiveGuard(self.clone())
    }

    /// True once the connection has carried a request.
    fn started(&self) -> bool {
        self.started.load(Ordering::Acquire)
    }

    fn last(&self) -> Instant {
        *self.last.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Resolves once the connection has had no request in progress for
    /// `idle`. A request (its response body included) in progress is never
    /// idle, however quiet: server-sent events and long polls are not cut.
    async fn idle_for(&self, idle: Duration) {
        loop {
            if self.active.load(Ordering::Acquire) > 0 {
                tokio::time::sleep(idle).await;
                continue;
            }
            let deadline = self.last() + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline.into()).await;
            if self.active.load(Ordering::Acquire) == 0 && self.last() + idle <= Instant::now() {
                return;
            }
        }
    }
}

/// Marks a request as in progress until its response body is dropped.
struct ActiveGuard(Arc<Activity>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        *self.0.last.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request counted as in progress.
struct TrackedBody {
    inner: Body,
    _guard: ActiveGuard,
}

impl hyper::body::Body for TrackedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

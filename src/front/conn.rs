//! One client connection, from TLS handshake to close: HTTP/1.1 or HTTP/2
//! (ALPN under TLS, prior-knowledge h2c in plain text), the idle keep-alive
//! timeout, parking of idle HTTP/1.1 connections (see `parkio`), and
//! graceful close on shutdown. The request path itself is
//! [`crate::pipeline::handle_request`].

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::debug;

use crate::config::ServerSettings;
use crate::error::Body;
use crate::front::parkio::{ParkIo, Parking};
use crate::front::refusal::{RefusalContext, RefusalIo, Start};
use crate::front::tls::ListenerTls;
use crate::observe::metrics;
use crate::pipeline::handle_request;
use crate::state::Gateway;
use crate::upstream::proxy::ClientInfo;
use crate::upstream::upgrade::ConnTicket;

/// What every connection task shares.
pub struct Context {
    pub gw: Arc<Gateway>,
    pub builders: Arc<Builders>,
    pub settings: Arc<ServerSettings>,
    /// Flips when the gateway stops accepting: close gracefully.
    pub stop: watch::Receiver<bool>,
}

/// The connection builders with the `[server]` limits: HTTP/1.1 alone for
/// plain-text connections that do not open with the HTTP/2 preface, and
/// the auto-detecting one for TLS (ALPN) and prior-knowledge h2c.
pub struct Builders {
    http1: http1::Builder,
    auto: auto::Builder<TokioExecutor>,
    /// hyper's HTTP/1.1 head buffer (`max_buf_size`).
    head: usize,
}

/// How long a plain-text HTTP/1.1 connection stays idle before hyper's
/// buffers are released (see `parkio`). Short enough that a fleet of quiet
/// keep-alive clients costs little memory, long enough that a busy
/// connection (requests milliseconds apart) never pays the small cost of
/// a fresh hyper connection.
const PARK_AFTER: Duration = Duration::from_secs(1);

/// The HTTP/2 client preface; a plain-text connection opening with it is h2c.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The connection builders for the `[server]` limits.
pub fn builders(s: &ServerSettings) -> Builders {
    // hyper answers 431 itself when an HTTP/1.1 head outgrows its read
    // buffer; leave room for the request line on top of the headers.
    let head = (s.max_header_bytes + s.max_uri_length + 1024).max(8192);
    // `writev` keeps heads and body frames in separate slices, which is
    // what lets `refusal` recognise hyper's own refusal heads exactly (it is
    // what hyper picks for TCP and TLS streams anyway).
    let mut http1 = http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(s.request_header_timeout)
        .max_headers(s.max_header_count)
        .max_buf_size(head)
        .writev(true)
        .keep_alive(true);
    let mut auto = auto::Builder::new(TokioExecutor::new());
    auto.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(s.request_header_timeout)
        .max_headers(s.max_header_count)
        .max_buf_size(head)
        .writev(true)
        .keep_alive(true);
    // h2 refuses a header block over its limit itself (a bare 431 and
    // REFUSED_STREAM). With the same budget as an HTTP/1.1 head, plus the
    // 32 bytes per field that HTTP/2 counts, every block the gateway's own
    // limits can judge reaches `check_request_limits` and gets its JSON.
    let h2_list = head + 32 * (s.max_header_count + 8);
    auto.http2().timer(TokioTimer::new()).max_header_list_size(u32::try_from(h2_list).unwrap_or(u32::MAX)).keep_alive_interval(Some(Duration::from_secs(30)));
    Builders { http1, auto, head }
}

/// The parts of a connection that live as long as it does and are shared
/// with its requests. They are made by the accepting thread, not the
/// worker (see [`crate::runtime::workers::Workers::spawn_with`]), so that
/// nothing a parked connection keeps sits among the worker's short-lived
/// allocations, where it would pin a heap page that `malloc_trim` could
/// otherwise return.
pub struct Shared {
    activity: Arc<Activity>,
    refusals: Arc<RefusalContext>,
    parking: Parking,
}

impl Shared {
    /// For a connection from `client`.
    pub fn new(ctx: &Context, client: IpAddr) -> Shared {
        Shared {
            activity: Arc::new(Activity::new()),
            refusals: Arc::new(RefusalContext::new(ctx.gw.clone(), client, ctx.builders.head)),
            parking: Parking::default(),
        }
    }
}

/// Serves one accepted TCP connection to its end.
pub async fn serve(stream: TcpStream, peer: SocketAddr, tls: Option<ListenerTls>, ctx: Context, ticket: ConnTicket, shared: Shared) {
    // The TLS and h2c branches are boxed: a connection task is as large as
    // its largest branch, and most connections are parked HTTP/1.1 ones.
    if let Some(tls) = tls {
        return Box::pin(serve_tls(stream, peer, tls, ctx, ticket, shared)).await;
    }
    let client = ClientInfo { addr: peer, proto: "http" };
    match first_bytes(&stream, &ctx, client).await {
        FirstBytes::Http1 => serve_h1(stream, client, ctx, ticket, shared).await,
        FirstBytes::MaybeH2 => Box::pin(drive(stream, Start::Sniff, client, ctx, ticket, shared)).await,
        FirstBytes::None => {}
    }
}

/// What a plain-text connection opened with.
enum FirstBytes {
    Http1,
    /// The HTTP/2 preface, or a part of it so far.
    MaybeH2,
    /// Nothing within the header timeout, or the client left.
    None,
}

/// Waits for a plain-text connection's first bytes (holding no hyper state
/// meanwhile) and tells HTTP/1.1 from prior-knowledge h2c by peeking.
async fn first_bytes(stream: &TcpStream, ctx: &Context, client: ClientInfo) -> FirstBytes {
    let mut stop = ctx.stop.clone();
    let mut head = [0u8; 24];
    let n = tokio::select! {
        r = stream.peek(&mut head) => match r {
            Ok(n) => n,
            Err(_) => return FirstBytes::None,
        },
        _ = tokio::time::sleep(ctx.settings.request_header_timeout) => {
            debug!(client = %client.addr.ip(), "no request within the header timeout; closing");
            return FirstBytes::None;
        }
        _ = stop.wait_for(|v| *v) => return FirstBytes::None,
    };
    // Anything that may still become the preface goes to the auto builder,
    // which waits for the rest and decides.
    if n > 0 && H2_PREFACE.starts_with(&head[..n]) {
        FirstBytes::MaybeH2
    } else {
        FirstBytes::Http1
    }
}

async fn serve_tls(stream: TcpStream, peer: SocketAddr, tls: ListenerTls, ctx: Context, ticket: ConnTicket, shared: Shared) {
    // A client that opens TCP and never finishes the handshake holds a slot
    // like a slowloris does: the header timeout covers the handshake too.
    match tokio::time::timeout(ctx.settings.request_header_timeout, tls.acceptor.accept(stream)).await {
        Ok(Ok(s)) => {
            let start = if s.get_ref().1.alpn_protocol() == Some(b"h2") { Start::Http2 } else { Start::Sniff };
            drive(s, start, ClientInfo { addr: peer, proto: "https" }, ctx, ticket, shared).await
        }
        Ok(Err(e)) => debug!(client = %peer.ip(), error = %e, "TLS handshake failed"),
        Err(_) => debug!(client = %peer.ip(), "TLS handshake timed out"),
    }
}

/// The boxed future of one request (see [`service`]).
type ServiceFuture = Pin<Box<dyn std::future::Future<Output = Result<Response<Body>, Infallible>> + Send>>;

/// The request handler for one connection: every request is counted in
/// `activity` and carries the connection's ticket; a switch of protocols
/// is told to `refusals`.
fn service(
    ctx: &Context,
    activity: &Arc<Activity>,
    ticket: &ConnTicket,
    client: ClientInfo,
    refusals: &Arc<RefusalContext>,
) -> impl hyper::service::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible, Future = ServiceFuture> + Clone + Send {
    let (gw, activity, ticket, refusals) = (ctx.gw.clone(), activity.clone(), ticket.clone(), refusals.clone());
    service_fn(move |mut req: Request<Incoming>| {
        let guard = activity.begin();
        // Only an upgraded connection (spliced out of hyper) needs its ticket.
        if req.headers().contains_key(http::header::UPGRADE) {
            req.extensions_mut().insert(ticket.clone());
        }
        let connect = req.method() == http::Method::CONNECT;
        let (gw, refusals) = (gw.clone(), refusals.clone());
        // Boxed: hyper keeps the service future inline in each
        // connection's state, so an unboxed one would make every idle
        // keep-alive connection as large as the whole request path.
        let fut: ServiceFuture = Box::pin(async move {
            let resp = handle_request(&gw, req, client).await;
            if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS || (connect && resp.status().is_success()) {
                refusals.switched();
            }
            Ok::<_, Infallible>(resp.map(|body| TrackedBody { inner: body, held: None, _guard: guard }.boxed()))
        });
        fut
    })
}

/// HTTP/1.1 with keep-alive, parking the socket (see `parkio`) whenever it
/// has been idle for [`PARK_AFTER`] and waking hyper again when bytes come.
async fn serve_h1(stream: TcpStream, client: ClientInfo, ctx: Context, ticket: ConnTicket, shared: Shared) {
    let Shared { activity, refusals, parking } = shared;
    let svc = service(&ctx, &activity, &ticket, client, &refusals);
    let (mut stop, abort) = (ctx.stop.clone(), ticket.abort.clone());
    drop(ticket);
    let idle = ctx.settings.idle_timeout;
    let mut io = ParkIo::new(stream, parking);
    loop {
        // Boxed: while parked, the task keeps only what the wait below needs.
        io = match Box::pin(serve_until_parked(io, &svc, &ctx, &activity, &abort, &refusals, client)).await {
            Some(io) => io,
            None => return,
        };
        metrics::metrics().connection_park();
        if !io.has_replay() {
            let _parked = metrics::metrics().connection_parked();
            tokio::select! {
                r = io.readable() => if r.is_err() { return },
                _ = tokio::time::sleep_until((activity.last() + idle).into()) => {
                    debug!(client = %client.addr.ip(), "closing an idle connection");
                    return;
                }
                // (`abort` only ever follows `stop`.)
                _ = stop.wait_for(|v| *v) => return,
            }
        }
    }
}

/// Runs hyper on `io` until the connection ends (`None`) or has been idle
/// for [`PARK_AFTER`] and hyper handed the socket back (`Some`).
async fn serve_until_parked<S>(
    io: ParkIo,
    svc: &S,
    ctx: &Context,
    activity: &Activity,
    abort: &watch::Receiver<bool>,
    refusals: &Arc<RefusalContext>,
    client: ClientInfo,
) -> Option<ParkIo>
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible, Future = ServiceFuture> + Clone,
{
    let parking = io.parking();
    let idle = ctx.settings.idle_timeout;
    // Bytes arrived: that is activity, and the park timer starts over.
    activity.touch();
    // Requests begun when the connection was parked; one begun later was
    // answered with `Connection: close` and the socket must not be reused.
    let mut parked_at = None;
    let io = RefusalIo::new(io, refusals.clone(), Start::Http1);
    let mut conn = ctx.builders.http1.serve_connection(TokioIo::new(io), svc.clone()).with_upgrades();
    let (mut stop, mut abort) = (ctx.stop.clone(), abort.clone());
    let mut closing = false;
    loop {
        tokio::select! {
            r = &mut conn => {
                if let Err(e) = r {
                    debug!(client = %client.addr.ip(), error = %e, "connection ended with an error");
                    return None;
                }
                break;
            }
            _ = stop.wait_for(|v| *v), if !closing => {
                Pin::new(&mut conn).graceful_shutdown();
                closing = true;
            }
            _ = activity.idle_for(PARK_AFTER.min(idle)), if !closing => {
                if PARK_AFTER < idle {
                    parking.park();
                    parked_at = Some(activity.begun());
                } else {
                    debug!(client = %client.addr.ip(), "closing an idle connection");
                }
                Pin::new(&mut conn).graceful_shutdown();
                closing = true;
            }
            _ = abort.wait_for(|v| *v) => return None,
        }
    }
    // Ended: closed for real unless it was parked while idle (and not upgraded).
    match conn.into_parts() {
        Some(parts) if parking.is_parking() && parked_at == Some(activity.begun()) => Some(parts.io.into_inner().into_inner().resume(parts.read_buf)),
        _ => None,
    }
}

/// A connection served by hyper's auto builder (TLS, h2c): no parking.
async fn drive<I>(io: I, start: Start, client: ClientInfo, ctx: Context, ticket: ConnTicket, shared: Shared)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let Shared { activity, refusals, .. } = shared;
    let svc = service(&ctx, &activity, &ticket, client, &refusals);
    let io = TokioIo::new(RefusalIo::new(io, refusals, start));
    let conn = ctx.builders.auto.serve_connection_with_upgrades(io, svc);
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
            _ = stop.wait_for(|v| *v), if !closing => {
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
    begun: AtomicU64,
    last: Mutex<Instant>,
}

impl Activity {
    fn new() -> Activity {
        Activity { active: AtomicUsize::new(0), begun: AtomicU64::new(0), last: Mutex::new(Instant::now()) }
    }

    fn begin(self: &Arc<Self>) -> ActiveGuard {
        self.active.fetch_add(1, Ordering::AcqRel);
        self.begun.fetch_add(1, Ordering::AcqRel);
        ActiveGuard(self.clone())
    }

    /// True once the connection has carried a request.
    fn started(&self) -> bool {
        self.begun() > 0
    }

    /// How many requests the connection has carried so far.
    fn begun(&self) -> u64 {
        self.begun.load(Ordering::Acquire)
    }

    /// Counts as activity now (the idle clocks start over).
    fn touch(&self) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
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

/// A response body that keeps its request counted as in progress, and
/// never hands hyper a data frame ending with CRLF CRLF: such a frame is
/// sent as two (its last byte alone), so that no write of a body can end
/// like hyper's own refusal head (see `refusal`). One comparison per
/// frame; the rare frame that ends so costs one more frame on the wire.
struct TrackedBody {
    inner: Body,
    /// The last byte of a split frame, sent next.
    held: Option<Bytes>,
    _guard: ActiveGuard,
}

impl hyper::body::Body for TrackedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if let Some(last) = self.held.take() {
            return Poll::Ready(Some(Ok(Frame::data(last))));
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) if frame.data_ref().is_some_and(|d| d.ends_with(b"\r\n\r\n")) => match frame.into_data() {
                Ok(mut data) => {
                    self.held = Some(data.split_off(data.len() - 1));
                    Poll::Ready(Some(Ok(Frame::data(data))))
                }
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            },
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.held.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let mut hint = self.inner.size_hint();
        if let Some(last) = &self.held {
            // Upper first: a lower bound above the upper one panics.
            let n = last.len() as u64;
            if let Some(upper) = hint.upper() {
                hint.set_upper(upper + n);
            }
            hint.set_lower(hint.lower() + n);
        }
        hint
    }
}

//! The forward step: build the upstream request from the client's, send it
//! on a pooled connection, and stream the answer back.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{HeaderValue, HOST, TE};
use http::request::Parts;
use http::{Request, Response, Uri, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::BodyExt;
use hyper::body::{Frame, SizeHint};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::auth::Identity;
use crate::config::{Config, UpstreamProtocol, UpstreamSettings};
use crate::error::GatewayError;
use crate::fetch::{client_tls, error_chain};
use crate::headers;
use crate::metrics::UpstreamMetrics;
use crate::path::NormalPath;
use crate::pool::{H1Pool, PooledBody};
use crate::routes::Route;
use crate::Body;

/// Any error a request body can end with on its way upstream.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of a request sent upstream: the client's, possibly capped.
pub type UpstreamBody = BoxBody<Bytes, BoxError>;

/// A pooled client for one upstream.
pub struct UpstreamClient {
    pub settings: Arc<UpstreamSettings>,
    /// In-flight gauge and response-time histogram, labelled with the name.
    pub metrics: UpstreamMetrics,
    transport: Transport,
}

/// How requests reach the upstream. Either way there is one pool per
/// connection worker (index 0: any other thread), so a request and its
/// upstream connection live on the same thread.
enum Transport {
    /// Plain-text HTTP/1.1: our own pool (see [`crate::pool`]).
    Plain(H1Pool),
    /// TLS or HTTP/2: hyper-util's pooled client.
    Pooled(Box<[Client<hyper_rustls::HttpsConnector<HttpConnector>, UpstreamBody>]>),
}

impl UpstreamClient {
    /// Builds the client (connection pools, timeouts, TLS, HTTP version)
    /// with one pool for each of `workers` plus one for other threads.
    pub fn new(settings: Arc<UpstreamSettings>, workers: usize) -> Result<Self, String> {
        let metrics = crate::metrics::metrics().upstream(&settings.name);
        if settings.scheme == http::uri::Scheme::HTTP && settings.protocol == UpstreamProtocol::Http1 {
            let pool = H1Pool::new(&settings.authority, settings.connect_timeout, settings.pool_idle_timeout, settings.pool_max_idle, workers);
            return Ok(UpstreamClient { transport: Transport::Plain(pool), metrics, settings });
        }
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(settings.connect_timeout));
        let tls = if settings.scheme == http::uri::Scheme::HTTPS { crate::tls::upstream_client_config(&settings)? } else { client_tls(None)? };
        let b = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http();
        // The ALPN offered follows the configured protocol, so an `h2`
        // upstream that cannot speak HTTP/2 fails loudly at the handshake.
        let https = match settings.protocol {
            UpstreamProtocol::Http1 => b.enable_http1().wrap_connector(http),
            UpstreamProtocol::H2 | UpstreamProtocol::H2c => b.enable_http2().wrap_connector(http),
        };
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_idle_timeout(settings.pool_idle_timeout)
            .pool_max_idle_per_host(settings.pool_max_idle)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new());
        if settings.protocol.is_h2() {
            builder.http2_only(true);
        }
        let clients = (0..=workers).map(|_| builder.build(https.clone())).collect();
        Ok(UpstreamClient { transport: Transport::Pooled(clients), metrics, settings })
    }

    /// Sends `req` and returns the response as it comes (headers untouched);
    /// 504 when the response headers take longer than the upstream's
    /// `timeout` (or connecting times out), 502 when it cannot be reached.
    pub async fn request(&self, req: Request<UpstreamBody>) -> Result<Response<PooledBody>, GatewayError> {
        let exchange = async {
            let clients = match &self.transport {
                Transport::Plain(pool) => return pool.send(req).await,
                Transport::Pooled(clients) => clients,
            };
            let client = &clients[crate::workers::current() % clients.len()];
            client.request(req).await.map(|r| r.map(PooledBody::unpooled)).map_err(|e| {
                let chain = error_chain(&e);
                if chain.contains("timed out") || chain.contains("timeout") {
                    GatewayError::UpstreamTimeout
                } else {
                    GatewayError::UpstreamUnavailable(chain)
                }
            })
        };
        tokio::time::timeout(self.settings.timeout, exchange).await.unwrap_or(Err(GatewayError::UpstreamTimeout))
    }

    /// [`request`](Self::request), then the response made ready for the
    /// client. Only the headers wait for `timeout`: the body streams for as
    /// long as the upstream sends it (server-sent events, long polls).
    /// A `101` is refused (502): this request asked for no upgrade, so
    /// the upstream switching protocols would hand it a connection the
    /// gateway could no longer judge.
    pub async fn send(&self, req: Request<UpstreamBody>) -> Result<Response<Body>, GatewayError> {
        let resp = self.request(req).await?;
        if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS {
            return Err(GatewayError::UpstreamUnavailable(format!(
                "upstream `{}` switched protocols on a request that asked for no upgrade",
                self.settings.name
            )));
        }
        Ok(finish_response(resp))
    }
}

/// Drops the response's hop-by-hop headers and boxes its streaming body.
pub fn finish_response(resp: Response<PooledBody>) -> Response<Body> {
    let (mut parts, body) = resp.into_parts();
    headers::remove_hop_by_hop(&mut parts.headers);
    Response::from_parts(parts, body.boxed())
}

/// Everything the rewrite step needs to know about the connection.
#[derive(Debug, Clone, Copy)]
pub struct ClientInfo {
    pub addr: SocketAddr,
    /// `http` or `https` (the listener's scheme).
    pub proto: &'static str,
}

/// Turns the client's request into the upstream's: normalized (and
/// prefix-rewritten) path with its last-segment parameters, hop-by-hop and
/// identity headers removed, forwarding headers set, then the verified
/// identity headers added last so nothing a client sent can replace them.
#[allow(clippy::too_many_arguments)] // each is one plain input of the step; a struct would only rename them
pub fn rewrite_request<B>(
    cfg: &Config,
    route: &Route,
    upstream: &UpstreamSettings,
    mut parts: Parts,
    body: B,
    path: &NormalPath,
    identity: Option<&Identity>,
    client: ClientInfo,
) -> Result<Request<B>, GatewayError> {
    let up_path = route.upstream_path(path);
    let mut pq = String::with_capacity(upstream.base_path.len() + up_path.len() + 64);
    pq.push_str(&upstream.base_path);
    pq.push_str(&up_path);
    if let Some(q) = parts.uri.query() {
        pq.push('?');
        pq.push_str(q);
    }
    let uri = Uri::builder()
        .scheme(upstream.scheme.clone())
        .authority(upstream.authority.clone())
        .path_and_query(pq)
        .build()
        .map_err(|e| GatewayError::Internal(format!("building the upstream URI: {e}")))?;

    // The host the route was matched on: `screen::request_host` made the
    // Host header its one canonical spelling (an absolute-form target's or
    // h2's `:authority` included), so a client cannot be judged as one site
    // and served as another by a Host-routing upstream.
    let original_host = parts.headers.get(HOST).cloned();
    let h = &mut parts.headers;
    let te_trailers = upstream.protocol.is_h2() && headers::accepts_trailers(h);
    headers::remove_hop_by_hop(h);
    if te_trailers {
        // gRPC needs `TE: trailers` end to end; it is the one TE value
        // HTTP/2 allows. HTTP/1.1 upstreams get no TE (it is hop-by-hop).
        h.insert(TE, HeaderValue::from_static("trailers"));
    }
    cfg.strip.strip(h, cfg.server.trust_forwarded_headers);
    if !route.pass_authorization {
        h.remove(http::header::AUTHORIZATION);
    }
    headers::set_forwarded(h, client.addr.ip(), client.proto, original_host.as_ref());
    match (upstream.preserve_host, original_host) {
        (true, Some(host)) => {
            h.insert(HOST, host);
        }
        _ => {
            if let Ok(v) = HeaderValue::from_str(upstream.authority.as_str()) {
                h.insert(HOST, v);
            }
        }
    }
    if let Some(id) = identity {
        match &id.rendered {
            Some(kept) => kept.insert_into(&route.headers, &id.claims, h),
            None => {
                for (name, value) in route.headers.render(&id.claims) {
                    h.insert(name, value);
                }
            }
        }
    }
    parts.uri = uri;
    if upstream.protocol.is_h2() {
        // HTTP/2 carries the host as `:authority`, taken from the URI (the
        // upstream's host:port); the client's host is in X-Forwarded-Host.
        parts.headers.remove(HOST);
        parts.version = Version::HTTP_2;
    } else {
        parts.version = Version::HTTP_11;
    }
    Ok(Request::from_parts(parts, body))
}

/// What became of the client's request body on its way upstream: when
/// the upstream exchange fails, whether the client is to blame. The body
/// wrappers (`access::CountingBody`, [`cap_body`]) record it as it streams.
#[derive(Debug, Default)]
pub struct BodyFate {
    faults: AtomicU8,
    /// The last poll of the client's body was pending: the upstream was
    /// waiting for the client, not the other way round.
    waiting: AtomicBool,
}

const TOO_LARGE: u8 = 1;
const MALFORMED: u8 = 2;
const INCOMPLETE: u8 = 4;

impl BodyFate {
    /// The body outgrew the route's `max_body_size`.
    pub fn too_large(&self) {
        self.faults.fetch_or(TOO_LARGE, Ordering::AcqRel);
    }

    /// The client's body stream failed with `e`: its framing was broken
    /// (hyper reports bad chunk sizes, overflowing ones and missing CRLFs as
    /// invalid data or input), or else it ended early (closed, half-closed,
    /// reset) before it was complete.
    pub fn client_error(&self, e: &hyper::Error) {
        let mut cur = std::error::Error::source(e);
        let mut fault = INCOMPLETE;
        while let Some(c) = cur {
            if let Some(io) = c.downcast_ref::<std::io::Error>() {
                if matches!(io.kind(), std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput) {
                    fault = MALFORMED;
                }
                break;
            }
            cur = c.source();
        }
        self.faults.fetch_or(fault, Ordering::AcqRel);
    }

    /// Whether the last poll of the client's body found nothing yet.
    pub fn waiting(&self, yes: bool) {
        self.waiting.store(yes, Ordering::Release);
    }

    /// The client's fault, if its body failed.
    pub fn client_fault(&self) -> Option<GatewayError> {
        let f = self.faults.load(Ordering::Acquire);
        if f & TOO_LARGE != 0 {
            Some(GatewayError::PayloadTooLarge)
        } else if f & MALFORMED != 0 {
            Some(GatewayError::MalformedBody)
        } else if f & INCOMPLETE != 0 {
            Some(GatewayError::IncompleteBody)
        } else {
            None
        }
    }

    /// `e`, the failed upstream exchange, or the client's fault behind it:
    /// a body cut at `max_body_size` is 413, a broken or cut-short body
    /// 400, and a timeout while the upstream waited for the client's body
    /// 408, none of them the upstream's 502 or 504.
    pub fn blame(&self, e: GatewayError) -> GatewayError {
        match self.client_fault() {
            Some(fault) => fault,
            None if matches!(e, GatewayError::UpstreamTimeout) && self.waiting.load(Ordering::Acquire) => GatewayError::BodyTimeout,
            None => e,
        }
    }
}

/// Wraps the client's body for the upstream. With a limit, the body ends
/// with an error once more than `max` bytes arrived and `fate` records it,
/// so the caller can answer 413 instead of 502.
pub fn cap_body<B>(body: B, max: Option<u64>, fate: Arc<BodyFate>) -> UpstreamBody
where
    B: hyper::body::Body<Data = Bytes> + Unpin + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    match max {
        None => body.map_err(Into::into).boxed(),
        Some(max) => CappedBody { inner: body, remaining: max, fate }.boxed(),
    }
}

/// The body was larger than the route's `max_body_size`.
#[derive(Debug)]
pub struct BodyTooLarge;

impl std::fmt::Display for BodyTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("request body larger than max_body_size")
    }
}

impl std::error::Error for BodyTooLarge {}

/// Counts data bytes as they stream past; nothing is buffered.
struct CappedBody<B> {
    inner: B,
    remaining: u64,
    fate: Arc<BodyFate>,
}

impl<B> hyper::body::Body for CappedBody<B>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(Some(Ok(f))) => f,
        };
        if let Some(data) = frame.data_ref() {
            let n = data.len() as u64;
            if n > self.remaining {
                self.fate.too_large();
                return Poll::Ready(Some(Err(Box::new(BodyTooLarge))));
            }
            self.remaining -= n;
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

//! The forward step: build the upstream request from the client's, send it
//! on a pooled connection, and stream the answer back.

use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{HeaderValue, HOST, TE};
use http::request::Parts;
use http::{Request, Response, Uri, Version};
use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::auth::Identity;
use crate::config::{Config, UpstreamProtocol, UpstreamSettings};
use crate::error::{error_chain, Body, GatewayError};
use crate::observe::metrics::UpstreamMetrics;
use crate::policy::headers;
use crate::policy::path::NormalPath;
use crate::policy::routes::Route;
use crate::upstream::pool::{H1Pool, PooledBody};
use authgear_tls_roots::client_tls;

pub use super::body::{cap_body, BoxError, UpstreamBody};

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
    /// Plain-text HTTP/1.1: our own pool (see [`crate::upstream::pool`]).
    Plain(H1Pool),
    /// TLS or HTTP/2: hyper-util's pooled client.
    Pooled(Box<[Client<hyper_rustls::HttpsConnector<HttpConnector>, UpstreamBody>]>),
}

impl UpstreamClient {
    /// Builds the client (connection pools, timeouts, TLS, HTTP version)
    /// with one pool for each of `workers` plus one for other threads.
    pub fn new(settings: Arc<UpstreamSettings>, workers: usize) -> Result<Self, String> {
        let metrics = crate::observe::metrics::metrics().upstream(&settings.name);
        if settings.scheme == http::uri::Scheme::HTTP && settings.protocol == UpstreamProtocol::Http1 {
            let pool = H1Pool::new(&settings.authority, settings.connect_timeout, settings.pool_idle_timeout, settings.pool_max_idle, workers);
            return Ok(UpstreamClient { transport: Transport::Plain(pool), metrics, settings });
        }
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(settings.connect_timeout));
        let tls = if settings.scheme == http::uri::Scheme::HTTPS { crate::upstream::tls::upstream_client_config(&settings)? } else { client_tls(None)? };
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
            let client = &clients[crate::runtime::workers::current() % clients.len()];
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

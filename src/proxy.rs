//! The forward step: build the upstream request from the client's, send it
//! on a pooled connection, and stream the answer back.

use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{HeaderValue, HOST};
use http::request::Parts;
use http::{Request, Response, Uri, Version};
use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::auth::Identity;
use crate::config::{Config, UpstreamSettings};
use crate::error::GatewayError;
use crate::fetch::{client_tls, error_chain};
use crate::headers;
use crate::routes::Route;
use crate::Body;

/// A pooled client for one upstream.
pub struct UpstreamClient {
    pub settings: Arc<UpstreamSettings>,
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Body>,
}

impl UpstreamClient {
    /// Builds the client (connection pool, timeouts, TLS roots).
    pub fn new(settings: Arc<UpstreamSettings>) -> Result<Self, String> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(settings.connect_timeout));
        let tls = client_tls(None)?;
        let https = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(settings.pool_idle_timeout)
            .pool_max_idle_per_host(settings.pool_max_idle)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(https);
        Ok(UpstreamClient { settings, client })
    }

    /// Sends `req`; 504 when the response headers take longer than the
    /// upstream's `timeout` (or connecting times out), 502 when it cannot be
    /// reached at all.
    pub async fn send(&self, req: Request<Body>) -> Result<Response<Body>, GatewayError> {
        let resp = match tokio::time::timeout(self.settings.timeout, self.client.request(req)).await {
            Err(_) => return Err(GatewayError::UpstreamTimeout),
            Ok(Err(e)) => {
                let chain = error_chain(&e);
                return Err(if chain.contains("timed out") || chain.contains("timeout") {
                    GatewayError::UpstreamTimeout
                } else {
                    GatewayError::UpstreamUnavailable(chain)
                });
            }
            Ok(Ok(r)) => r,
        };
        let (mut parts, body) = resp.into_parts();
        headers::remove_hop_by_hop(&mut parts.headers);
        Ok(Response::from_parts(parts, body.boxed()))
    }
}

/// Everything the rewrite step needs to know about the connection.
#[derive(Debug, Clone, Copy)]
pub struct ClientInfo {
    pub addr: SocketAddr,
    /// `http` or `https` (the listener's scheme).
    pub proto: &'static str,
}

/// Turns the client's request into the upstream's: normalized (and
/// prefix-rewritten) path, hop-by-hop and identity headers removed,
/// forwarding headers set, then the verified identity headers added last so
/// nothing a client sent can replace them.
#[allow(clippy::too_many_arguments)] // each is one plain input of the step; a struct would only rename them
pub fn rewrite_request(
    cfg: &Config,
    route: &Route,
    upstream: &UpstreamSettings,
    mut parts: Parts,
    body: Body,
    path: &str,
    identity: Option<&Identity>,
    client: ClientInfo,
) -> Result<Request<Body>, GatewayError> {
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

    let original_host = match parts.headers.get(HOST) {
        Some(h) => Some(h.clone()),
        None => parts.uri.authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()),
    };
    let h = &mut parts.headers;
    headers::remove_hop_by_hop(h);
    cfg.strip.strip(h);
    if !route.pass_authorization {
        h.remove(http::header::AUTHORIZATION);
    }
    headers::set_forwarded(h, client.addr.ip(), client.proto, original_host.as_ref(), cfg.server.trust_forwarded_headers);
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
        for (name, value) in route.headers.render(&id.claims) {
            h.insert(name, value);
        }
    }
    parts.uri = uri;
    parts.version = Version::HTTP_11;
    Ok(Request::from_parts(parts, body))
}

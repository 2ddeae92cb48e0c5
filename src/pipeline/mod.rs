//! The request path: [`handle_request`] takes one parsed request through
//! its steps, top to bottom (see `docs/LIFECYCLE.md`): screen the request
//! -> match a route -> authenticate -> authorize -> rewrite -> forward. The
//! connection code calls it; it never reaches back into the connection.

pub mod authenticate;
pub mod grpc;
pub mod login;
pub mod method_param;
pub mod screen;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::Either;
use http::{Method, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tracing::warn;

use crate::auth::Identity;
use crate::config::ServerSettings;
use crate::error::{BadRequest, Body, GatewayError};
use crate::observe::access::{self, AccessRecord, CountingBody, LoggedBody};
use crate::observe::body::BodyFate;
use crate::observe::metrics::{self, Outcome};
use crate::observe::trace::Child;
use crate::policy::authz;
use crate::policy::path;
use crate::policy::routes::Route;
use crate::state::{Gateway, Snapshot};
use crate::upstream::body::cap_body;
use crate::upstream::proxy::{self, ClientInfo};
use crate::upstream::upgrade;

/// What the request path learned, for the access log and the metrics.
#[derive(Default)]
pub struct Trace<'a> {
    pub route: Option<&'a Route>,
    pub path: Option<String>,
    pub sub: Option<String>,
    /// Time to the upstream's response headers, when forwarded.
    pub upstream: Option<Duration>,
    /// How the client's body went, once it was handed to the upstream.
    pub body: Option<Arc<BodyFate>>,
}

/// Serves one request and always produces a response.
pub async fn handle_request(gw: &Gateway, mut req: Request<Incoming>, client: ClientInfo) -> Response<Body> {
    let started = Instant::now();
    let snap = gw.snapshot();
    let method = req.method().clone();
    let request_id = access::ensure_request_id(req.headers_mut());
    let bytes_in = Arc::new(AtomicU64::new(0));
    let grpc = grpc::is_grpc(req.headers());
    let mut trace = Trace::default();
    let span = gw.tracing().map(|t| t.request_span(req.headers(), &method, req.version(), client.proto, client.addr.ip()));
    let judged = route_and_forward(&snap, req, client, &mut trace, bytes_in.clone());
    // One awaited future either way: two `.await`s in two arms would each
    // keep a copy of the whole request path in this future.
    let judged = match &span {
        Some(s) => Either::Left(s.run(judged)),
        None => Either::Right(judged),
    };
    let result = judged.await;
    let (mut resp, reason, outcome) = match result {
        Ok(r) => (r, None, Outcome::forwarded),
        Err(e) => {
            if let GatewayError::UpstreamUnavailable(detail) | GatewayError::Internal(detail) = &e {
                warn!(error = %detail, route = trace.route.map(|r| r.name.as_str()), request_id = request_id.to_str().unwrap_or("-"), "request failed");
            }
            let reason = e.reason();
            let outcome = Outcome::of_refusal(e.status().as_u16());
            let resp = if grpc { grpc::refusal(e, &snap.config.realm) } else { e.into_response(&snap.config.realm) };
            (resp, Some(reason), outcome)
        }
    };
    resp.headers_mut().insert(access::REQUEST_ID, request_id.clone());
    // Only over TLS: a browser ignores HSTS on plain HTTP, and a plain
    // listener behind a TLS proxy leaves the header to that proxy.
    if let (Some(hsts), "https") = (&snap.config.server.hsts, client.proto) {
        resp.headers_mut().insert(http::header::STRICT_TRANSPORT_SECURITY, hsts.clone());
    }
    if let Some(s) = &span {
        let route = trace.route.map(|r| (r.name.as_str(), r.path.as_str()));
        s.finish(&method, route, trace.path.as_deref(), resp.status().as_u16(), reason, request_id.to_str().unwrap_or("-"));
    }
    let to_headers = started.elapsed();
    let m = metrics::metrics();
    m.request(trace.route.map(|r| (r.name.as_str(), &r.counters)), &method, outcome);
    m.gateway_time(to_headers, trace.upstream);
    if !snap.config.log.access {
        return resp;
    }
    let record = AccessRecord {
        request_id,
        method: Some(method),
        path: trace.path,
        route: trace.route.map(|r| r.name.clone()),
        status: resp.status().as_u16(),
        sub: trace.sub,
        reason,
        client: client.addr.ip(),
        started,
        upstream: trace.upstream,
        to_headers,
        bytes_in,
    };
    resp.map(|b| LoggedBody::new(b, record, trace.body).boxed())
}

/// What the judging steps concluded about a request that may pass.
pub struct Decision<'s> {
    pub route: &'s Route,
    /// The one spelling of the path that was judged and will be forwarded.
    pub path: path::NormalPath,
    /// `None` for an anonymous request the route lets through.
    pub identity: Option<Identity>,
    /// A `method = "login"` session's access token.
    pub access_token: Option<String>,
    /// `Set-Cookie` lines the response must carry (a refreshed session).
    pub set_cookies: Vec<String>,
}

/// Steps 0b to 4, shared by every way a request can arrive: limits, screen,
/// normalize, match a route, authenticate, authorize. `req` is left with
/// its `Host` made canonical and a refused method override removed.
pub async fn decide<'s, B>(snap: &'s Snapshot, req: &mut Request<B>, out: &mut Trace<'s>) -> Result<Decision<'s>, GatewayError> {
    let cfg = &snap.config;
    check_request_limits(&cfg.server, req)?;
    screen::check_method(req.method())?;
    screen::canonical_host(&cfg.server, req)?;
    let path = path::normalize(req.uri().path()).map_err(GatewayError::BadPath)?;
    // The judged form: a `;jsessionid=` parameter is a session id, and
    // session ids are not logged.
    out.path = Some(path.judged().to_owned());

    let (route, honoured_override) = match_route(snap, req, path.judged())?;
    if !honoured_override {
        screen::drop_method_override(req.headers_mut());
    }
    out.route = Some(route);
    if route.cors_preflight && screen::is_cors_preflight(req.method(), req.headers()) {
        // Browsers send a preflight without credentials, so judging it
        // would refuse every cross-origin call; it passes as anonymous
        // (identity headers emptied) only where the route says so.
        return Ok(Decision { route, path, identity: None, access_token: None, set_cookies: Vec::new() });
    }

    // The return URL after a login is the judged path too: the parameter
    // (a session id, usually) must not travel to the login page.
    let info = authenticate::RequestInfo { method: req.method(), headers: req.headers(), path: path.judged(), query: req.uri().query() };
    let authenticate::LoginAuth { identity, access_token, set_cookies } = match route.method {
        crate::policy::routes::AuthMethod::Login => Box::pin(authenticate::login(snap, route, &info)).await?,
        _ => authenticate::LoginAuth { identity: authenticate::authenticate(snap, route, &info).await?, ..Default::default() },
    };
    out.sub = identity.as_ref().and_then(|i| i.subject().map(str::to_owned));

    authorize(snap, route, identity.as_ref())?;
    Ok(Decision { route, path, identity, access_token, set_cookies })
}

/// Judges the request (`decide`), then steps 5 and 6: rewrite and forward.
async fn route_and_forward<'s>(
    snap: &'s Snapshot,
    mut req: Request<Incoming>,
    client: ClientInfo,
    out: &mut Trace<'s>,
    bytes_in: Arc<AtomicU64>,
) -> Result<Response<Body>, GatewayError> {
    let cfg = &snap.config;
    // The gateway's own paths (the login's, and the assertion's JWKS when
    // asked for on this listener too) are answered before any route, so no
    // route can shadow or guard them, after the same screening as every request.
    let jwks = snap.assertion.as_ref().and_then(|a| a.own_path(req.method(), req.uri().path()));
    if jwks.is_some() || login::is_own_path(snap, req.uri().path()) {
        check_request_limits(&cfg.server, &req)?;
        screen::check_method(req.method())?;
        screen::canonical_host(&cfg.server, &mut req)?;
        out.path = Some(req.uri().path().to_owned());
        if let Some(resp) = jwks {
            return Ok(resp);
        }
        // Boxed, like every rare branch below: an inline future would make
        // every request's future as large as the largest of them.
        if login::is_backchannel_path(snap, req.uri().path()) {
            return Box::pin(login::backchannel(snap, req)).await;
        }
        if let Some(resp) = Box::pin(login::own_paths(snap, &req)).await? {
            return Ok(resp);
        }
    }
    let Decision { route, path, identity, access_token, set_cookies } = decide(snap, &mut req, out).await?;
    login::set_authorization(route, access_token.as_deref(), req.headers_mut());

    if let (Some(max), Some(len)) = (route.max_body_size, content_length(&req)) {
        if len > max {
            return Err(GatewayError::PayloadTooLarge);
        }
    }
    let upgrade = upgrade::take(&mut req, &route.upgrades);
    let upstream = snap.upstreams.get(route.upstream).ok_or_else(|| GatewayError::Internal("route names a missing upstream".into()))?;
    let override_refused = Arc::new(AtomicBool::new(false));
    let scanner = form_scanner(snap, route, &req, path.judged());
    let (parts, body) = req.into_parts();
    let fate = Arc::new(BodyFate::default());
    out.body = Some(fate.clone());
    let mut body = cap_body(CountingBody::new(body, bytes_in, fate.clone()), route.max_body_size, fate.clone());
    if let Some(s) = scanner {
        body = method_param::guard(body, s, override_refused.clone());
    }
    let mut up_req = proxy::rewrite_request(cfg, route, &upstream.settings, parts, body, &path, identity.as_ref(), client)?;
    snap.add_assertion(route, identity.as_ref(), up_req.headers_mut(), false)?;

    // With tracing on, the upstream sees this call's span as its parent;
    // with it off, the client's `traceparent` went through untouched.
    let call = Child::http_client(up_req.method(), up_req.uri());
    if call.is_active() {
        call.set("authgear_gateway.upstream", upstream.settings.name.clone());
    }
    call.inject(up_req.headers_mut());
    let sent = Instant::now();
    let _in_flight = upstream.metrics.in_flight();
    let result = match upgrade {
        Some(pending) => Box::pin(upgrade::forward(upstream, up_req, pending)).await,
        None => upstream.send(up_req).await,
    };
    match &result {
        Ok(r) => call.set_status_code(r.status().as_u16()),
        Err(e) => call.fail(e.reason(), "upstream call failed"),
    }
    drop(call);
    let elapsed = sent.elapsed();
    upstream.metrics.observe(elapsed);
    out.upstream = Some(elapsed);
    // A body cut at max_body_size, broken or cut short by the client, or
    // ended at a refused `_method` field makes the upstream request fail:
    // that is the client's 413 or 400, not the upstream's 502; a timeout
    // spent waiting for the client's body is 408.
    let mut resp =
        result.map_err(|e| if override_refused.load(Ordering::Acquire) { GatewayError::BadRequest(BadRequest::MethodOverride) } else { fate.blame(e) })?;
    login::add_cookies(resp.headers_mut(), &set_cookies);
    Ok(resp)
}

/// Step 0: URI length (414), header count and size (431). HTTP/1.1 heads
/// are also capped by hyper while reading; this covers HTTP/2 the same way.
fn check_request_limits<B>(s: &ServerSettings, req: &Request<B>) -> Result<(), GatewayError> {
    if req.uri().path_and_query().map_or(0, |pq| pq.as_str().len()) > s.max_uri_length {
        return Err(GatewayError::UriTooLong);
    }
    let h = req.headers();
    // Counted as they travel in HTTP/1.1: "name: value\r\n".
    let bytes: usize = h.iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum();
    if h.len() > s.max_header_count || bytes > s.max_header_bytes {
        return Err(GatewayError::HeadersTooLarge);
    }
    Ok(())
}

fn content_length(req: &Request<Incoming>) -> Option<u64> {
    req.headers().get(http::header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

/// Step 1: the first route that matches host, method and normalized path.
///
/// With a method override (a header, or a `_method` query parameter), the
/// route is looked up with the method the app will run; if that route
/// opts in (`method_override`), it judges the request (a POST, as override
/// middlewares require) and the header goes upstream (`true`). Otherwise
/// the caller removes the header, and a `_method` parameter (which cannot
/// be removed) must not change which route judges the request.
fn match_route<'s, B>(snap: &'s Snapshot, req: &Request<B>, path: &str) -> Result<(&'s Route, bool), GatewayError> {
    let ambiguous = || GatewayError::BadRequest(BadRequest::MethodOverride);
    let routes = &snap.config.routes;
    routes.check_path(path).map_err(GatewayError::BadPath)?;
    let host = screen::judged_host(req.headers());
    let header = screen::method_override(req.headers())?;
    let param = method_param::from_query(req.uri().query()).map_err(|_| ambiguous())?;
    if let (Some(h), Some(p)) = (&header, &param) {
        if h != p {
            return Err(ambiguous());
        }
    }
    if let Some(wanted) = header.as_ref().or(param.as_ref()) {
        if let Some(r) = routes.find(wanted, host, path).filter(|r| r.method_override) {
            if req.method() != Method::POST {
                return Err(ambiguous());
            }
            return Ok((r, true));
        }
    }
    let route = routes.find(req.method(), host, path).ok_or(GatewayError::NoRoute)?;
    if let Some(p) = &param {
        if !routes.find(p, host, path).is_some_and(|r| std::ptr::eq(r, route)) {
            return Err(ambiguous());
        }
    }
    Ok((route, false))
}

/// Step 2b: a POSTed form's `_method` fields, read as the body streams
/// past (`method_param::guard`): one naming a method that another route
/// would judge ends the body (the upstream never gets it whole) and the
/// client gets 400. `None` when no method could change the verdict.
fn form_scanner<B>(snap: &Snapshot, route: &Route, req: &Request<B>, path: &str) -> Option<method_param::Scanner> {
    if req.method() != Method::POST {
        return None;
    }
    let kind = method_param::form_kind(req.headers().get(http::header::CONTENT_TYPE))?;
    let host = screen::judged_host(req.headers());
    let same: Vec<Method> =
        screen::STANDARD_METHODS.iter().filter(|m| snap.config.routes.find(m, host, path).is_some_and(|r| std::ptr::eq(r, route))).cloned().collect();
    // Every method is judged by this route: an override changes nothing.
    (same.len() < screen::STANDARD_METHODS.len()).then(|| method_param::Scanner::new(kind, move |m| same.contains(m)))
}

/// Step 3: the route's roles, scopes and claims, checked on every request.
fn authorize(snap: &Snapshot, route: &Route, identity: Option<&Identity>) -> Result<(), GatewayError> {
    if route.require.is_empty() {
        return Ok(());
    }
    let id = identity.ok_or(GatewayError::MissingToken)?;
    let roles_claim = snap.config.issuers.get(id.issuer).map_or(crate::policy::headers::claims::ROLES, |i| i.roles_claim.as_str());
    authz::authorize(&route.require, &id.claims, roles_claim).map_err(GatewayError::Forbidden)
}

//! Envoy's gRPC ext_authz: `envoy.service.auth.v3.Authorization/Check` on
//! the forward-auth listener, for decision paths whose flavour is
//! `envoy_grpc` (chosen in the config like every flavour, never by the
//! content type). tonic frames and decodes the call; the original request
//! is rebuilt from the `CheckRequest` and judged by [`pipeline::decide`];
//! the verdict goes back as a `CheckResponse`: every identity header set
//! (or removed from the client's request when its claim is absent), the
//! refusal's status, headers and body for Envoy to answer the client.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use http::header::{HeaderName, HeaderValue, CACHE_CONTROL, SET_COOKIE};
use http::{HeaderMap, Method, Request, Response, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::answer;
use super::envoy_proto::{self as pb, option, APPEND_IF_EXISTS_OR_ADD, CHECK_PATH, OVERWRITE_IF_EXISTS_OR_ADD};
use super::flavour::{self, Malformed};
use crate::config::Flavour;
use crate::error::{full, Body};
use crate::pipeline::{self, Trace};
use crate::state::Snapshot;

/// The reason for a call that is not the Check method.
pub const NOT_A_CHECK: &str = "forward_auth_not_a_check";

/// What the decision learned, for the access log and the metrics (owned:
/// the call is decided inside tonic's service).
#[derive(Default)]
pub struct Note {
    pub method: Option<Method>,
    pub reason: Option<&'static str>,
    /// Index of the judging route in the snapshot's table.
    pub route: Option<usize>,
    pub path: Option<String>,
    pub sub: Option<String>,
}

impl Note {
    /// Copies what was learned into the listener's trace.
    pub fn fill<'s>(&self, snap: &'s Snapshot, trace: &mut Trace<'s>) {
        trace.route = self.route.and_then(|i| snap.config.routes.routes.get(i));
        trace.path.clone_from(&self.path);
        trace.sub.clone_from(&self.sub);
    }
}

/// Answers one gRPC call on an `envoy_grpc` decision path.
pub async fn handle(snap: Arc<Snapshot>, req: Request<Incoming>) -> (Response<Body>, Note) {
    if req.method() != Method::POST || req.uri().path() != CHECK_PATH || !pipeline::grpc::is_grpc(req.headers()) {
        let status = tonic::Status::unimplemented("this path answers only envoy.service.auth.v3.Authorization/Check");
        return (relay(status.into_http()).await, Note { reason: Some(NOT_A_CHECK), ..Note::default() });
    }
    let note = Arc::new(Mutex::new(Note::default()));
    let svc = CheckService { snap, note: note.clone() };
    let resp = tonic::server::Grpc::new(tonic_prost::ProstCodec::<pb::CheckResponse, pb::CheckRequest>::default()).unary(svc, req).await;
    let resp = relay(resp).await;
    let note = note.lock().map(|mut n| std::mem::take(&mut *n)).unwrap_or_default();
    (resp, note)
}

/// tonic's answer (a body of `tonic::Status` errors) as the listener's
/// body type: the one message and its trailers.
async fn relay(resp: Response<tonic::body::Body>) -> Response<Body> {
    let (parts, body) = resp.into_parts();
    let (data, trailers) = match body.collect().await {
        Ok(c) => {
            let trailers = c.trailers().cloned();
            (c.to_bytes(), trailers)
        }
        // tonic's own bodies end in trailers, never in an error; should
        // one, the call ends as INTERNAL.
        Err(_) => {
            let mut t = HeaderMap::new();
            t.insert("grpc-status", HeaderValue::from_static("13"));
            (bytes::Bytes::new(), Some(t))
        }
    };
    Response::from_parts(parts, full(data).with_trailers(std::future::ready(trailers.map(Ok))).boxed())
}

struct CheckService {
    snap: Arc<Snapshot>,
    note: Arc<Mutex<Note>>,
}

type CheckFuture = Pin<Box<dyn Future<Output = Result<tonic::Response<pb::CheckResponse>, tonic::Status>> + Send>>;

impl tonic::server::UnaryService<pb::CheckRequest> for CheckService {
    type Response = pb::CheckResponse;
    type Future = CheckFuture;

    fn call(&mut self, request: tonic::Request<pb::CheckRequest>) -> Self::Future {
        let (snap, shared) = (self.snap.clone(), self.note.clone());
        Box::pin(async move {
            let mut trace = Trace::default();
            let mut note = Note::default();
            let answer = check(&snap, request.into_inner(), &mut trace, &mut note).await;
            note.route = trace.route.map(|r| r.index);
            note.path = trace.path;
            note.sub = trace.sub;
            if let Ok(mut n) = shared.lock() {
                *n = note;
            }
            Ok(tonic::Response::new(answer))
        })
    }
}

async fn check<'s>(snap: &'s Snapshot, req: pb::CheckRequest, trace: &mut Trace<'s>, note: &mut Note) -> pb::CheckResponse {
    let mut original = match rebuild(req) {
        Ok(r) => r,
        Err(m) => {
            note.reason = Some(m.reason());
            return denied(answer::malformed(Flavour::EnvoyGrpc, &m)).await;
        }
    };
    note.method = Some(original.method().clone());
    match pipeline::decide(snap, &mut original, trace).await.and_then(|d| answer::allow_decided(snap, Flavour::EnvoyGrpc, &d)) {
        Ok(resp) => allowed(resp),
        Err(e) => {
            note.reason = Some(e.reason());
            denied(answer::refuse(Flavour::EnvoyGrpc, e, &snap.config.realm)).await
        }
    }
}

/// The original request from `attributes.request.http`.
fn rebuild(req: pb::CheckRequest) -> Result<Request<()>, Malformed> {
    let http = req.attributes.and_then(|a| a.request).and_then(|r| r.http).ok_or(Malformed::Missing("attributes.request.http"))?;
    let method = Method::from_bytes(http.method.as_bytes()).map_err(|_| Malformed::Invalid("the check's method"))?;
    if http.host.is_empty() {
        return Err(Malformed::Missing("the check's host"));
    }
    let host = HeaderValue::from_str(&http.host).map_err(|_| Malformed::Invalid("the check's host"))?;
    let bad = Malformed::Invalid("the check's path");
    // Origin form only: an absolute or authority target, or a fragment,
    // would describe another request than the one to be routed.
    if !http.path.starts_with('/') || http.path.starts_with("//") || http.path.contains('#') {
        return Err(bad);
    }
    let target = Uri::try_from(http.path.as_str()).map_err(|_| bad)?;
    let headers = headers(&http)?;
    flavour::refuse_foreign(Flavour::EnvoyGrpc, &headers)?;
    Ok(flavour::assemble(method, host, target, &headers))
}

/// The check's headers: each line of `header_map` when Envoy sends raw
/// headers, else the merged map. Pseudo-headers (`:path`, ...) are
/// described by the other fields.
fn headers(http: &pb::HttpRequest) -> Result<HeaderMap, Malformed> {
    let bad = || Malformed::Invalid("a header of the check");
    let mut out = HeaderMap::new();
    let mut add = |k: &str, v: &[u8]| -> Result<(), Malformed> {
        if k.starts_with(':') {
            return Ok(());
        }
        let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| bad())?;
        out.append(name, HeaderValue::from_bytes(v).map_err(|_| bad())?);
        Ok(())
    };
    match &http.header_map {
        Some(m) => {
            for h in &m.headers {
                add(&h.key, if h.raw_value.is_empty() { h.value.as_bytes() } else { &h.raw_value })?;
            }
        }
        None => {
            for (k, v) in &http.headers {
                add(k, v.as_bytes())?;
            }
        }
    }
    Ok(out)
}

/// OK: each identity header with a value is set over the client's copy;
/// one without a value is removed from the client's request (Envoy drops
/// an empty header to set, which would leave the client's in place); the
/// session's new cookies go to the client.
fn allowed(resp: Response<Body>) -> pb::CheckResponse {
    let mut ok = pb::OkHttpResponse::default();
    for (name, value) in resp.headers() {
        if name == CACHE_CONTROL {
            continue;
        }
        // The session's cookies are for the client's response, never the
        // app's request.
        if name == SET_COOKIE {
            if let Ok(c) = value.to_str() {
                ok.response_headers_to_add.push(option(SET_COOKIE.as_str(), c, APPEND_IF_EXISTS_OR_ADD));
            }
            continue;
        }
        match value.to_str() {
            Ok("") => ok.headers_to_remove.push(name.as_str().to_owned()),
            Ok(v) => ok.headers.push(option(name.as_str(), v, OVERWRITE_IF_EXISTS_OR_ADD)),
            // Not text: removed rather than passed on as the client's.
            Err(_) => ok.headers_to_remove.push(name.as_str().to_owned()),
        }
    }
    pb::CheckResponse { status: Some(pb::RpcStatus { code: 0, message: String::new() }), http_response: Some(pb::HttpResponse::Ok(ok)) }
}

/// Denied: the refusal's status, headers and body, as the HTTP flavour
/// would answer them, for Envoy to send the client.
async fn denied(resp: Response<Body>) -> pb::CheckResponse {
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    let headers = parts
        .headers
        .iter()
        .filter_map(|(n, v)| {
            let action = if n == SET_COOKIE { APPEND_IF_EXISTS_OR_ADD } else { OVERWRITE_IF_EXISTS_OR_ADD };
            v.to_str().ok().map(|v| option(n.as_str(), v, action))
        })
        .collect();
    let code = i32::from(pipeline::grpc::status_code(parts.status));
    let reason = parts.headers.get(answer::REASON).and_then(|v| v.to_str().ok()).unwrap_or("denied").to_owned();
    pb::CheckResponse {
        status: Some(pb::RpcStatus { code, message: reason }),
        http_response: Some(pb::HttpResponse::Denied(pb::DeniedHttpResponse {
            status: Some(pb::HttpStatus { code: i32::from(parts.status.as_u16()) }),
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_of(method: &str, host: &str, path: &str, headers: &[(&str, &str)]) -> pb::CheckRequest {
        let http = pb::HttpRequest {
            method: method.into(),
            host: host.into(),
            path: path.into(),
            headers: headers.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            ..Default::default()
        };
        pb::CheckRequest { attributes: Some(pb::AttributeContext { request: Some(pb::AttributeRequest { http: Some(http) }) }) }
    }

    #[test]
    fn the_check_request_is_the_original_request() {
        let r = rebuild(check_of(
            "DELETE",
            "app.example.test",
            "/a/%2e%2e/b?x=1",
            &[(":path", "/x"), ("authorization", "Bearer t"), ("x-forwarded-for", "1.2.3.4")],
        ))
        .expect("rebuilt");
        assert_eq!(r.method(), Method::DELETE);
        assert_eq!(r.uri().to_string(), "/a/%2e%2e/b?x=1");
        assert_eq!(r.headers()["host"], "app.example.test");
        assert_eq!(r.headers()["authorization"], "Bearer t");
        assert!(!r.headers().contains_key("x-forwarded-for"));
    }

    #[test]
    fn descriptions_that_could_name_another_request_are_refused() {
        for (method, host, path) in [("GET", "a", "http://b/admin"), ("GET", "a", "//b/admin"), ("GET", "a", "/x#f"), ("G T", "a", "/x"), ("GET", "", "/x")] {
            assert!(rebuild(check_of(method, host, path, &[])).is_err(), "{method} {host} {path}");
        }
        let e = rebuild(check_of("GET", "a", "/admin", &[("x-original-url", "http://a/public")])).unwrap_err();
        assert_eq!(e, Malformed::Foreign("x-original-url"));
        assert!(rebuild(pb::CheckRequest::default()).is_err());
    }

    #[test]
    fn an_absent_claim_removes_the_clients_header_instead_of_setting_an_empty_one() {
        let mut resp = Response::new(full(""));
        resp.headers_mut().insert("x-authgear-user-id", HeaderValue::from_static("u1"));
        resp.headers_mut().insert("x-authgear-user-roles", HeaderValue::from_static(""));
        resp.headers_mut().append(SET_COOKIE, HeaderValue::from_static("s=1; Path=/"));
        let out = allowed(resp);
        let Some(pb::HttpResponse::Ok(ok)) = out.http_response else { panic!("not ok") };
        assert_eq!(ok.headers_to_remove, ["x-authgear-user-roles"]);
        assert_eq!(ok.headers.len(), 1);
        assert_eq!(ok.headers[0].append_action, OVERWRITE_IF_EXISTS_OR_ADD);
        assert_eq!(ok.response_headers_to_add[0].header.as_ref().map(|h| h.value.as_str()), Some("s=1; Path=/"));
    }
}

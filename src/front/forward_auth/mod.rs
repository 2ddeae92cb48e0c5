//! The forward-auth decision endpoint (`[forward_auth]`): an ingress asks
//! whether a request may pass, and gets the identity headers to add. The
//! handler only translates: the original request is rebuilt in the
//! configured flavour (`flavour.rs`), judged by [`pipeline::decide`] like
//! a proxied one, and the verdict told in the ingress's terms (`answer.rs`).

pub mod answer;
pub mod envoy_proto;
pub mod flavour;
pub mod grpc_check;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::warn;

use crate::config::Flavour;
use crate::error::Body;
use crate::observe::access::{self, AccessRecord, LoggedBody};
use crate::observe::metrics::{self, Outcome};
use crate::pipeline::{self, Trace};
use crate::state::Gateway;

/// Serves decision requests until `stop` flips.
pub async fn serve(listener: TcpListener, gw: Arc<Gateway>, mut stop: watch::Receiver<bool>) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(gw.snapshot().config.server.request_header_timeout);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r { Ok(c) => c, Err(_) => continue },
            _ = stop.changed() => return,
        };
        let _ = stream.set_nodelay(true);
        let gw = gw.clone();
        let svc = service_fn(move |req| {
            let gw = gw.clone();
            async move { Ok::<_, Infallible>(handle(&gw, req, peer).await) }
        });
        tokio::spawn(builder.serve_connection(TokioIo::new(stream), svc).into_owned());
    }
}

/// One decision: trusted caller? -> rebuild -> `decide` -> answer.
pub async fn handle(gw: &Gateway, mut req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let started = Instant::now();
    let snap = gw.snapshot();
    let request_id = access::ensure_request_id(req.headers_mut());
    let mut trace = Trace::default();
    let mut method = None;
    // The section can vanish in a reload while the listener stays bound
    // (listeners are fixed at start): then nobody is trusted.
    let settings = snap.config.forward_auth.as_ref();
    let (mut resp, reason) = match settings {
        Some(fa) if fa.trusts(peer.ip()) => {
            let (kind, path_prefix) = fa.flavour_for(req.uri().path());
            if kind == Flavour::EnvoyGrpc {
                let (resp, note) = grpc_check::handle(snap.clone(), req).await;
                note.fill(&snap, &mut trace);
                method = note.method;
                (resp, note.reason)
            } else {
                match flavour::rebuild(kind, path_prefix, flavour::Asked { method: req.method(), uri: req.uri(), headers: req.headers() }) {
                    Ok(mut original) => {
                        method = Some(original.method().clone());
                        match pipeline::decide(&snap, &mut original, &mut trace).await.and_then(|d| answer::allow_decided(&snap, kind, &d)) {
                            Ok(resp) => (resp, None),
                            Err(e) => {
                                let reason = e.reason();
                                (answer::refuse(kind, e, &snap.config.realm), Some(reason))
                            }
                        }
                    }
                    Err(m) => (answer::malformed(kind, &m), Some(m.reason())),
                }
            }
        }
        _ => {
            warn!(peer = %peer.ip(), "forward-auth request from an address outside trusted_proxies refused");
            (answer::untrusted(), Some(answer::UNTRUSTED))
        }
    };
    resp.headers_mut().insert(access::REQUEST_ID, request_id.clone());
    let m = metrics::metrics();
    m.forward_auth(reason.unwrap_or("allowed"));
    if let Some(method) = &method {
        let outcome = if reason.is_none() { Outcome::forwarded } else { Outcome::of_refusal(resp.status().as_u16()) };
        m.request(trace.route.map(|r| (r.name.as_str(), &r.counters)), method, outcome);
    }
    if !snap.config.log.access {
        return resp;
    }
    let record = AccessRecord {
        request_id,
        method,
        path: trace.path,
        route: trace.route.map(|r| r.name.clone()),
        status: resp.status().as_u16(),
        sub: trace.sub,
        reason,
        client: peer.ip(),
        started,
        upstream: None,
        to_headers: started.elapsed(),
        bytes_in: Arc::default(),
    };
    resp.map(|b| LoggedBody::new(b, record, None).boxed())
}

//! The admin listener: `/healthz` (the process is alive), `/readyz`
//! (signing keys loaded and not shutting down) and `/metrics`
//! (Prometheus text or OpenMetrics, as the scraper asks), and with
//! `[assertion]` its JWKS at `/.well-known/jwks.json`. Kept off the public port.

use std::convert::Infallible;
use std::sync::Arc;

use http::header::{HeaderValue, ACCEPT, CONTENT_TYPE};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::error::{full, Body};
use crate::observe::exposition::Format;
use crate::observe::metrics::metrics;
use crate::state::Gateway;

/// Serves admin requests until `stop` flips.
pub async fn serve(listener: TcpListener, gw: Arc<Gateway>, mut stop: watch::Receiver<bool>) {
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r { Ok(c) => c, Err(_) => continue },
            _ = stop.changed() => return,
        };
        let gw = gw.clone();
        let svc = service_fn(move |req| {
            let gw = gw.clone();
            async move { Ok::<_, Infallible>(respond(&gw, &req)) }
        });
        let conn = builder.serve_connection(TokioIo::new(stream), svc).into_owned();
        tokio::spawn(conn);
    }
}

fn respond(gw: &Gateway, req: &Request<Incoming>) -> Response<Body> {
    match req.uri().path() {
        "/metrics" => {
            let format = Format::negotiate(req.headers().get(ACCEPT).and_then(|v| v.to_str().ok()));
            let mut r = Response::new(full(render_metrics(gw, format)));
            r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
            r
        }
        "/healthz" => json(StatusCode::OK, serde_json::json!({"status": "ok"})),
        // The identity assertion's public keys (404 without `[assertion]`).
        "/.well-known/jwks.json" => match &gw.snapshot().assertion {
            Some(a) => a.jwks_response(req.method()),
            None => json(StatusCode::NOT_FOUND, serde_json::json!({"error": "not_found"})),
        },
        "/readyz" if super::readiness::wants_verbose(req.uri().query()) => {
            let doc = super::readiness::verbose(gw);
            let status = if doc["ready"] == true { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            json(status, doc)
        }
        "/readyz" => {
            let snap = gw.snapshot();
            let issuers: Vec<_> = snap
                .keys
                .iter()
                .map(|k| {
                    serde_json::json!({
                        "issuer": k.issuer,
                        "state": format!("{:?}", k.state()).to_lowercase(),
                        "key_age_secs": k.key_age().map(|a| a.as_secs()),
                    })
                })
                .collect();
            // The resolver's health is reported but does not decide
            // readiness: session routes answer 503 themselves while it is down,
            // and JWT and public routes keep working.
            let resolver = snap.sessions.as_ref().map(|s| {
                use std::sync::atomic::Ordering::Relaxed;
                serde_json::json!({
                    "reachable": s.is_reachable(),
                    "calls": s.stats.resolver_calls.load(Relaxed),
                    "failures": s.stats.resolver_failures.load(Relaxed),
                    "cache_hits": s.stats.cache_hits.load(Relaxed),
                    "joined": s.stats.joined.load(Relaxed),
                })
            });
            let ready = gw.is_ready();
            let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            json(
                status,
                serde_json::json!({
                    "ready": ready,
                    "draining": gw.is_draining(),
                    "config_version": snap.version,
                    "reloads_ok": gw.reloads_ok.load(std::sync::atomic::Ordering::Relaxed),
                    "reloads_failed": gw.reloads_failed.load(std::sync::atomic::Ordering::Relaxed),
                    "last_reload_ok": gw.last_reload_ok(),
                    "issuers": issuers,
                    "session_resolver": resolver,
                }),
            )
        }
        _ => json(StatusCode::NOT_FOUND, serde_json::json!({"error": "not_found"})),
    }
}

/// The metrics, with the per-issuer key gauges read from the live keys
/// first (they are state, not events, so they are set at scrape time).
fn render_metrics(gw: &Gateway, format: Format) -> String {
    let m = metrics();
    for store in gw.snapshot().keys.iter() {
        m.issuer_keys(&store.issuer, store.snapshot().map_or(0, |s| s.keys.len()), store.key_age());
    }
    m.render(format)
}

fn json(status: StatusCode, v: serde_json::Value) -> Response<Body> {
    let mut r = Response::new(full(v.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

//! HTTP/1.1 `Upgrade` (WebSocket) pass-through. The handshake goes through
//! the whole request path like any request (route, authentication,
//! authorization, identity headers), so a socket is authenticated once, at
//! the handshake. When the upstream answers `101 Switching Protocols`, the
//! two connections are spliced byte for byte until either side closes.
//!
//! Only the protocols the route allows (`upgrades`, default `websocket`)
//! are ever offered upstream. Anything else, `h2c` above all, is removed
//! with the rest of the hop-by-hop headers: after an h2c upgrade the
//! client would speak HTTP/2 straight to the app, every later request on
//! the connection unjudged. A `101` the gateway did not ask for is never
//! spliced (502).

use std::sync::Arc;

use http::header::{HeaderValue, CONNECTION, UPGRADE};
use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::sync::{watch, OwnedSemaphorePermit};
use tracing::debug;

use crate::error::{Body, GatewayError};
use crate::upstream::body::UpstreamBody;
use crate::upstream::proxy::UpstreamClient;

/// A connection's place in `max_connections`, shared with a WebSocket
/// spliced out of it, plus the signal that the shutdown grace period is
/// over. The connection code puts a clone in each request's extensions, so
/// a spliced socket keeps counting after hyper lets go of it.
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

/// A client's pending upgrade, taken from its request before the rewrite
/// step strips the hop-by-hop `Upgrade` and `Connection` headers.
pub struct PendingUpgrade {
    /// The one allowed protocol offered upstream, as the client wrote it.
    protocol: HeaderValue,
    on_upgrade: OnUpgrade,
    ticket: Option<ConnTicket>,
}

/// Takes the upgrade out of an HTTP/1.1 request that asks for one
/// (`Connection: upgrade` and an `Upgrade` header) of the `allowed`
/// protocols; `None` otherwise, and then nothing of the client's `Upgrade`
/// reaches the upstream (the rewrite step removes it as hop-by-hop).
pub fn take(req: &mut Request<Incoming>, allowed: &[String]) -> Option<PendingUpgrade> {
    if req.version() != Version::HTTP_11 || allowed.is_empty() {
        return None;
    }
    let wants =
        req.headers().get_all(CONNECTION).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if !wants {
        return None;
    }
    let protocol = choose(req.headers().get_all(UPGRADE).iter(), allowed)?;
    let ticket = req.extensions().get::<ConnTicket>().cloned();
    Some(PendingUpgrade { protocol, on_upgrade: hyper::upgrade::on(req), ticket })
}

/// The first protocol of the client's `Upgrade` list (RFC 9110 section
/// 7.8: in order of preference) whose name the route allows.
fn choose<'a>(values: impl Iterator<Item = &'a HeaderValue>, allowed: &[String]) -> Option<HeaderValue> {
    values
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find(|p| allowed.iter().any(|a| protocol_is(a, p)))
        .and_then(|p| HeaderValue::from_str(p).ok())
}

/// True when the offered (or agreed) protocol `p` is `allowed`: same name,
/// case-insensitively, and the same version when the config names one.
fn protocol_is(allowed: &str, p: &str) -> bool {
    if allowed.contains('/') {
        allowed.eq_ignore_ascii_case(p)
    } else {
        p.split('/').next().is_some_and(|name| name.eq_ignore_ascii_case(allowed))
    }
}

/// Sends the (already rewritten) handshake upstream with only the chosen
/// protocol in its `Upgrade`; on a `101` that switches to that protocol,
/// splices the two connections in a task of their own. A `101` to anything
/// else is a 502; any other answer is returned as an ordinary response.
pub async fn forward(upstream: &UpstreamClient, mut req: Request<UpstreamBody>, pending: PendingUpgrade) -> Result<Response<Body>, GatewayError> {
    if upstream.settings.protocol.is_h2() {
        return Err(GatewayError::UpstreamUnavailable(format!("upstream `{}` speaks HTTP/2; upgrades need protocol = \"http1\"", upstream.settings.name)));
    }
    let h = req.headers_mut();
    h.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(UPGRADE, pending.protocol.clone());
    let mut resp = upstream.request(req).await?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Ok(crate::upstream::proxy::finish_response(resp));
    }
    let agreed = resp.headers().get(UPGRADE).cloned();
    let offered = pending.protocol.to_str().unwrap_or("");
    if !agreed.as_ref().and_then(|a| a.to_str().ok()).is_some_and(|a| protocol_is(offered, a.trim())) {
        return Err(GatewayError::UpstreamUnavailable(format!("upstream `{}` switched to a protocol that was not asked for", upstream.settings.name)));
    }
    let upstream_upgrade = hyper::upgrade::on(&mut resp);
    let mut out = crate::upstream::proxy::finish_response(resp);
    let h = out.headers_mut();
    h.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    if let Some(p) = agreed {
        h.insert(UPGRADE, p);
    }
    tokio::spawn(splice(pending.on_upgrade, upstream_upgrade, pending.ticket));
    Ok(out)
}

/// Copies bytes both ways until either side closes. The ticket keeps the
/// socket counted as an open connection (`max_connections`, shutdown
/// grace); when the grace period ends the socket is cut.
async fn splice(client: OnUpgrade, upstream: OnUpgrade, ticket: Option<ConnTicket>) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            debug!(error = %e, "upgrade did not complete");
            return;
        }
    };
    let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
    let mut abort = ticket.as_ref().map(|t| t.abort.clone());
    let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
    tokio::select! {
        r = copy => match r {
            Ok((up, down)) => debug!(bytes_up = up, bytes_down = down, "upgraded connection closed"),
            Err(e) => debug!(error = %e, "upgraded connection ended with an error"),
        },
        _ = async { match abort.as_mut() { Some(a) => { let _ = a.wait_for(|v| *v).await; } None => std::future::pending().await } } => {
            debug!("upgraded connection cut at the end of the shutdown grace period");
        }
    }
    drop(ticket);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(header: &'static str, allowed: &[&str]) -> Option<String> {
        let allowed: Vec<String> = allowed.iter().map(|s| s.to_string()).collect();
        let v = HeaderValue::from_static(header);
        choose(std::iter::once(&v), &allowed).map(|v| v.to_str().unwrap_or("").to_owned())
    }

    #[test]
    fn only_allowed_protocols_are_chosen() {
        assert_eq!(pick("websocket", &["websocket"]).as_deref(), Some("websocket"));
        assert_eq!(pick("WebSocket", &["websocket"]).as_deref(), Some("WebSocket"));
        assert_eq!(pick("h2c", &["websocket"]), None);
        assert_eq!(pick("h2c, websocket", &["websocket"]).as_deref(), Some("websocket"));
        assert_eq!(pick("websocketx", &["websocket"]), None);
        assert_eq!(pick("websocket", &[]), None);
        assert_eq!(pick("SPDY/3.1", &["spdy/3.1"]).as_deref(), Some("SPDY/3.1"));
        assert_eq!(pick("SPDY/2", &["spdy/3.1"]), None);
        assert_eq!(pick("spdy/2", &["spdy"]).as_deref(), Some("spdy/2"));
    }
}

//! HTTP/1.1 `Upgrade` (WebSocket) pass-through. The handshake goes through
//! the whole request path like any request (route, authentication,
//! authorization, identity headers), so a socket is authenticated once, at
//! the handshake. When the upstream answers `101 Switching Protocols`, the
//! two connections are spliced byte for byte until either side closes.

use http::header::{HeaderValue, CONNECTION, UPGRADE};
use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tracing::debug;

use crate::error::GatewayError;
use crate::proxy::{UpstreamBody, UpstreamClient};
use crate::server::ConnTicket;
use crate::Body;

/// A client's pending upgrade, taken from its request before the rewrite
/// step strips the hop-by-hop `Upgrade` and `Connection` headers.
pub struct PendingUpgrade {
    protocol: HeaderValue,
    on_upgrade: OnUpgrade,
    ticket: Option<ConnTicket>,
}

/// Takes the upgrade out of an HTTP/1.1 request that asks for one
/// (`Connection: upgrade` and an `Upgrade` header); `None` otherwise.
pub fn take(req: &mut Request<Incoming>) -> Option<PendingUpgrade> {
    if req.version() != Version::HTTP_11 {
        return None;
    }
    let wants =
        req.headers().get_all(CONNECTION).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    let protocol = req.headers().get(UPGRADE)?.clone();
    if !wants {
        return None;
    }
    let ticket = req.extensions().get::<ConnTicket>().cloned();
    Some(PendingUpgrade { protocol, on_upgrade: hyper::upgrade::on(req), ticket })
}

/// Sends the (already rewritten) handshake upstream with its `Upgrade`
/// restored; on `101` splices the two connections in a task of their own.
/// Any other answer is returned as an ordinary response.
pub async fn forward(upstream: &UpstreamClient, mut req: Request<UpstreamBody>, pending: PendingUpgrade) -> Result<Response<Body>, GatewayError> {
    if upstream.settings.protocol.is_h2() {
        return Err(GatewayError::UpstreamUnavailable(format!("upstream `{}` speaks HTTP/2; upgrades need protocol = \"http1\"", upstream.settings.name)));
    }
    let h = req.headers_mut();
    h.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(UPGRADE, pending.protocol);
    let mut resp = upstream.request(req).await?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Ok(crate::proxy::finish_response(resp));
    }
    let upstream_upgrade = hyper::upgrade::on(&mut resp);
    let agreed = resp.headers().get(UPGRADE).cloned();
    let mut out = crate::proxy::finish_response(resp);
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

//! What became of a client's request body: written by the body wrappers as
//! it streams, read by the access log and by the request path to blame a
//! failed upstream exchange on the right side.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use crate::error::GatewayError;

/// What became of the client's request body on its way upstream: when
/// the upstream exchange fails, whether the client is to blame. The body
/// wrappers (`access::CountingBody`, `upstream::body::cap_body`) record it as it streams.
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

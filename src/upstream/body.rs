//! The client's request body on its way upstream: its type, and the cap at
//! the route's `max_body_size` (counted as it streams, nothing buffered).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::BodyExt;
use hyper::body::{Frame, SizeHint};

use crate::observe::body::BodyFate;

/// Any error a request body can end with on its way upstream.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of a request sent upstream: the client's, possibly capped.
pub type UpstreamBody = BoxBody<Bytes, BoxError>;

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

//! Access logging and request ids.
//!
//! One `access` log line per request, written when the response body has
//! been sent (or the client went away), so it can carry the bytes sent.
//! It never holds a token, a cookie or an `Authorization` value: only the
//! fields below.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::HeaderValue;
use http::HeaderMap;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use tracing::info;

use crate::Body;

/// The request id header, taken from clients when well-formed.
pub const REQUEST_ID: &str = "x-request-id";

/// Keeps a well-formed client `X-Request-Id` (1-128 characters of
/// `[A-Za-z0-9._:/+=@-]`), otherwise replaces it with a new random id, and
/// returns the id in force. A malformed id is dropped rather than logged,
/// so it cannot inject into log lines.
pub fn ensure_request_id(headers: &mut HeaderMap) -> HeaderValue {
    let mut values = headers.get_all(REQUEST_ID).iter();
    let good = match (values.next(), values.next()) {
        (Some(v), None) => {
            let b = v.as_bytes();
            (1..=128).contains(&b.len()) && b.iter().all(|c| c.is_ascii_alphanumeric() || b"._:/+=@-".contains(c))
        }
        _ => false,
    };
    if good {
        if let Some(v) = headers.get(REQUEST_ID) {
            return v.clone();
        }
    }
    let id = format!("{:032x}", rand::random::<u128>());
    let v = HeaderValue::from_str(&id).unwrap_or_else(|_| HeaderValue::from_static("0"));
    headers.insert(REQUEST_ID, v.clone());
    v
}

/// Everything the access-log line says about one request.
pub struct AccessRecord {
    pub request_id: HeaderValue,
    pub method: http::Method,
    pub path: Option<String>,
    pub route: Option<String>,
    pub status: u16,
    pub sub: Option<String>,
    pub reason: Option<&'static str>,
    pub client: std::net::IpAddr,
    pub started: Instant,
    /// Time to the upstream's response headers, when forwarded.
    pub upstream: Option<Duration>,
    /// Time to the response headers, measured by the gateway.
    pub to_headers: Duration,
    pub bytes_in: Arc<AtomicU64>,
}

impl AccessRecord {
    fn emit(&self, bytes_out: u64, complete: bool) {
        let upstream_us = self.upstream.map(|d| d.as_micros() as u64);
        let gateway_us = self.to_headers.saturating_sub(self.upstream.unwrap_or_default()).as_micros() as u64;
        info!(
            target: "access",
            request_id = self.request_id.to_str().unwrap_or("-"),
            method = %self.method,
            path = self.path.as_deref().unwrap_or("-"),
            route = self.route.as_deref().unwrap_or("-"),
            status = self.status,
            sub = self.sub.as_deref(),
            reason = self.reason,
            bytes_in = self.bytes_in.load(Ordering::Relaxed),
            bytes_out,
            gateway_us,
            upstream_us,
            total_us = self.started.elapsed().as_micros() as u64,
            client = %self.client,
            complete,
            "request"
        );
    }
}

/// A response body that counts what it sends and writes the access-log
/// line at its end (or when dropped early).
pub struct LoggedBody {
    inner: Body,
    record: Option<AccessRecord>,
    bytes_out: u64,
}

impl LoggedBody {
    /// Wraps `inner`; the line is written once.
    pub fn new(inner: Body, record: AccessRecord) -> Self {
        LoggedBody { inner, record: Some(record), bytes_out: 0 }
    }

    fn finish(&mut self, complete: bool) {
        if let Some(r) = self.record.take() {
            r.emit(self.bytes_out, complete);
        }
    }
}

impl HttpBody for LoggedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.bytes_out += d.len() as u64;
                }
            }
            Poll::Ready(None) => this.finish(true),
            Poll::Ready(Some(Err(_))) => this.finish(false),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        // An empty body may never be polled to its end.
        let complete = self.inner.is_end_stream();
        self.finish(complete);
    }
}

/// A request body that counts the bytes the upstream reads.
pub struct CountingBody {
    inner: Incoming,
    count: Arc<AtomicU64>,
}

impl CountingBody {
    /// Wraps `inner`, adding to `count`.
    pub fn new(inner: Incoming, count: Arc<AtomicU64>) -> Self {
        CountingBody { inner, count }
    }
}

impl HttpBody for CountingBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(d) = frame.data_ref() {
                this.count.fetch_add(d.len() as u64, Ordering::Relaxed);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_kept_when_well_formed_and_replaced_otherwise() {
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID, HeaderValue::from_static("abc-123_x.y:z"));
        assert_eq!(ensure_request_id(&mut h), "abc-123_x.y:z");
        for bad in ["", "has space", "quote\"", "<script>"] {
            let mut h = HeaderMap::new();
            h.insert(REQUEST_ID, HeaderValue::from_str(bad).unwrap());
            let id = ensure_request_id(&mut h);
            assert_eq!(id.len(), 32, "{bad:?}");
            assert_eq!(h[REQUEST_ID], id);
        }
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID, HeaderValue::from_str(&"a".repeat(129)).unwrap());
        assert_eq!(ensure_request_id(&mut h).len(), 32);
        let mut h = HeaderMap::new();
        h.append(REQUEST_ID, HeaderValue::from_static("one"));
        h.append(REQUEST_ID, HeaderValue::from_static("two"));
        assert_eq!(ensure_request_id(&mut h).len(), 32);
        assert_eq!(h.get_all(REQUEST_ID).iter().count(), 1);
        let mut h = HeaderMap::new();
        assert_eq!(ensure_request_id(&mut h).len(), 32);
    }
}

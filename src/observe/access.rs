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
use tracing::{info, warn};

use crate::error::Body;
use crate::observe::body::BodyFate;
use crate::observe::logwriter::{self, AccessFormat};
use crate::observe::text;

/// Lower-case hex digits, for request ids and JSON `\u00XX` escapes.
const HEX: &[u8; 16] = b"0123456789abcdef";

/// The request id header, taken from clients when well-formed.
pub const REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

/// Keeps a well-formed client `X-Request-Id` (1-128 characters of
/// `[A-Za-z0-9._:/+=@-]`), otherwise replaces it with a new random id, and
/// returns the id in force. A malformed id is dropped rather than logged,
/// so it cannot inject into log lines.
pub fn ensure_request_id(headers: &mut HeaderMap) -> HeaderValue {
    let mut values = headers.get_all(&REQUEST_ID).iter();
    let good = match (values.next(), values.next()) {
        (Some(v), None) => {
            let b = v.as_bytes();
            (1..=128).contains(&b.len()) && b.iter().all(|c| c.is_ascii_alphanumeric() || b"._:/+=@-".contains(c))
        }
        _ => false,
    };
    if good {
        if let Some(v) = headers.get(&REQUEST_ID) {
            return v.clone();
        }
    }
    let v = new_request_id();
    headers.insert(REQUEST_ID, v.clone());
    v
}

/// A fresh random request id: 32 lower-case hex digits.
pub fn new_request_id() -> HeaderValue {
    // Hex digits on the stack: one allocation (the header value) per id.
    let n = rand::random::<u128>();
    let mut id = [0u8; 32];
    for (i, c) in id.iter_mut().enumerate() {
        *c = HEX[((n >> (124 - 4 * i)) & 15) as usize];
    }
    HeaderValue::from_bytes(&id).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// Everything the access-log line says about one request.
pub struct AccessRecord {
    pub request_id: HeaderValue,
    /// `None` when the request was refused before its method was parsed.
    pub method: Option<http::Method>,
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
    /// Writes the line: `bytes_out` body bytes sent, `complete` when the
    /// whole response was.
    pub fn emit(&self, bytes_out: u64, complete: bool) {
        if !tracing::enabled!(target: "access", tracing::Level::INFO) {
            return;
        }
        let upstream_us = self.upstream.map(|d| d.as_micros() as u64);
        let gateway_us = self.to_headers.saturating_sub(self.upstream.unwrap_or_default()).as_micros() as u64;
        let total_us = self.started.elapsed().as_micros() as u64;
        let line = match logwriter::access_format() {
            Some(AccessFormat::Json) => self.json_line(bytes_out, complete, gateway_us, upstream_us, total_us),
            Some(AccessFormat::Text) => self.text_line(bytes_out, complete, gateway_us, upstream_us, total_us),
            None => return self.trace(bytes_out, complete, gateway_us, upstream_us, total_us),
        };
        logwriter::send_access(line);
    }

    /// The line as a tracing event (a terminal's coloured log, and the
    /// reference the direct lines are tested against).
    fn trace(&self, bytes_out: u64, complete: bool, gateway_us: u64, upstream_us: Option<u64>, total_us: u64) {
        info!(
            target: "access",
            request_id = self.request_id.to_str().unwrap_or("-"),
            method = self.method.as_ref().map_or("-", |m| m.as_str()),
            path = self.path.as_deref().unwrap_or("-"),
            route = self.route.as_deref().unwrap_or("-"),
            status = self.status,
            sub = self.sub.as_deref(),
            reason = self.reason,
            bytes_in = self.bytes_in.load(Ordering::Relaxed),
            bytes_out,
            gateway_us,
            upstream_us,
            total_us,
            client = %self.client,
            complete,
            "request"
        );
    }

    /// The line tracing's compact formatter (colours off) would write for
    /// the event in [`AccessRecord::trace`], built directly.
    fn text_line(&self, bytes_out: u64, complete: bool, gateway_us: u64, upstream_us: Option<u64>, total_us: u64) -> Vec<u8> {
        let mut t = TextLine(Vec::with_capacity(320));
        text::rfc3339_utc(&mut t.0, std::time::SystemTime::now());
        t.0.extend_from_slice(b"  INFO access: request");
        self.fields(&mut t, bytes_out, complete, gateway_us, upstream_us, total_us);
        t.0.push(b'\n');
        t.0
    }

    /// The line tracing's JSON formatter would write for the event in
    /// [`AccessRecord::trace`] (same keys; absent values left out), built
    /// directly.
    fn json_line(&self, bytes_out: u64, complete: bool, gateway_us: u64, upstream_us: Option<u64>, total_us: u64) -> Vec<u8> {
        let mut j = JsonLine(Vec::with_capacity(384));
        j.0.extend_from_slice(b"{\"timestamp\":\"");
        text::rfc3339_utc(&mut j.0, std::time::SystemTime::now());
        j.0.extend_from_slice(b"\",\"level\":\"INFO\",\"message\":\"request\"");
        self.fields(&mut j, bytes_out, complete, gateway_us, upstream_us, total_us);
        j.0.extend_from_slice(b",\"target\":\"access\"}\n");
        j.0
    }

    /// The event's fields in [`AccessRecord::trace`]'s order, for both
    /// direct formats.
    fn fields(&self, f: &mut impl Fields, bytes_out: u64, complete: bool, gateway_us: u64, upstream_us: Option<u64>, total_us: u64) {
        f.str("request_id", self.request_id.to_str().unwrap_or("-"));
        f.str("method", self.method.as_ref().map_or("-", |m| m.as_str()));
        f.str("path", self.path.as_deref().unwrap_or("-"));
        f.str("route", self.route.as_deref().unwrap_or("-"));
        f.num("status", self.status.into());
        if let Some(sub) = &self.sub {
            f.str("sub", sub);
        }
        if let Some(reason) = self.reason {
            f.str("reason", reason);
        }
        f.num("bytes_in", self.bytes_in.load(Ordering::Relaxed));
        f.num("bytes_out", bytes_out);
        f.num("gateway_us", gateway_us);
        if let Some(us) = upstream_us {
            f.num("upstream_us", us);
        }
        f.num("total_us", total_us);
        f.ip("client", self.client);
        f.flag("complete", complete);
    }
}

/// A response body that counts what it sends and writes the access-log
/// line at its end (or when dropped early).
pub struct LoggedBody {
    inner: Body,
    record: Option<AccessRecord>,
    bytes_out: u64,
    /// The request body's fate, when it was forwarded: tells whose fault a
    /// response body that fails mid-stream is.
    fate: Option<Arc<BodyFate>>,
}

impl LoggedBody {
    /// Wraps `inner`; the line is written once.
    pub fn new(inner: Body, record: AccessRecord, fate: Option<Arc<BodyFate>>) -> Self {
        LoggedBody { inner, record: Some(record), bytes_out: 0, fate }
    }

    /// The response body failed after its head went out: the status stands,
    /// the line says why it is incomplete. The client's broken body can be
    /// behind it (it takes the upstream connection down); otherwise it is
    /// the upstream's doing.
    fn failed(&mut self, e: &hyper::Error) {
        let Some(r) = self.record.as_mut() else { return };
        match self.fate.as_ref().and_then(|f| f.client_fault()) {
            Some(fault) => r.reason = Some(fault.reason()),
            None => {
                r.reason = Some("upstream_body_error");
                warn!(
                    request_id = r.request_id.to_str().unwrap_or("-"),
                    route = r.route.as_deref().unwrap_or("-"),
                    error = %crate::error::error_chain(e),
                    "the upstream's response body failed mid-stream"
                );
            }
        }
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
            Poll::Ready(Some(Err(e))) => {
                this.failed(e);
                this.finish(false);
            }
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

/// A request body that counts the bytes the upstream reads and records in
/// `fate` how the client's side of it went.
pub struct CountingBody {
    inner: Incoming,
    count: Arc<AtomicU64>,
    fate: Arc<BodyFate>,
    waiting: bool,
}

impl CountingBody {
    /// Wraps `inner`, adding to `count`.
    pub fn new(inner: Incoming, count: Arc<AtomicU64>, fate: Arc<BodyFate>) -> Self {
        CountingBody { inner, count, fate, waiting: false }
    }

    fn set_waiting(&mut self, yes: bool) {
        // A store only when it changes: most polls of a fast body are ready.
        if self.waiting != yes {
            self.waiting = yes;
            self.fate.waiting(yes);
        }
    }
}

impl HttpBody for CountingBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.count.fetch_add(d.len() as u64, Ordering::Relaxed);
                }
                this.set_waiting(false);
            }
            Poll::Ready(Some(Err(e))) => {
                this.fate.client_error(e);
                this.set_waiting(false);
            }
            Poll::Ready(None) => this.set_waiting(false),
            Poll::Pending => this.set_waiting(true),
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
            assert_eq!(h[&REQUEST_ID], id);
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

/// Where [`AccessRecord::fields`] writes: one method per kind of value, as
/// tracing records it (an address through `Display`).
trait Fields {
    fn str(&mut self, k: &str, v: &str);
    fn num(&mut self, k: &str, v: u64);
    fn flag(&mut self, k: &str, v: bool);
    fn ip(&mut self, k: &str, v: std::net::IpAddr);
}

/// A JSON object being written field by field.
struct JsonLine(Vec<u8>);

impl JsonLine {
    fn key(&mut self, k: &str) {
        self.0.extend_from_slice(b",\"");
        self.0.extend_from_slice(k.as_bytes());
        self.0.extend_from_slice(b"\":");
    }
}

impl Fields for JsonLine {
    fn num(&mut self, k: &str, v: u64) {
        self.key(k);
        self.0.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
    }

    fn flag(&mut self, k: &str, v: bool) {
        self.key(k);
        self.0.extend_from_slice(if v { b"true" } else { b"false" });
    }

    /// An address is a JSON string.
    fn ip(&mut self, k: &str, v: std::net::IpAddr) {
        self.key(k);
        self.0.push(b'"');
        text::write_ip(&mut self.0, v);
        self.0.push(b'"');
    }

    /// A string value, escaped for JSON (quotes, backslashes, controls).
    fn str(&mut self, k: &str, v: &str) {
        self.key(k);
        self.0.push(b'"');
        for &b in v.as_bytes() {
            match b {
                b'"' => self.0.extend_from_slice(b"\\\""),
                b'\\' => self.0.extend_from_slice(b"\\\\"),
                b'\n' => self.0.extend_from_slice(b"\\n"),
                b'\r' => self.0.extend_from_slice(b"\\r"),
                b'\t' => self.0.extend_from_slice(b"\\t"),
                0..=0x1f | 0x7f => {
                    self.0.extend_from_slice(b"\\u00");
                    self.0.push(HEX[usize::from(b >> 4)]);
                    self.0.push(HEX[usize::from(b & 15)]);
                }
                _ => self.0.push(b),
            }
        }
        self.0.push(b'"');
    }
}

/// A text access line: ` name=value` pairs as tracing writes them.
struct TextLine(Vec<u8>);

impl TextLine {
    /// ` name=`, before each value.
    fn key(&mut self, k: &str) {
        self.0.push(b' ');
        self.0.extend_from_slice(k.as_bytes());
        self.0.push(b'=');
    }
}

impl Fields for TextLine {
    // Numbers and flags by hand: `write!` costs ~500 instructions a field,
    // five or six fields a line.
    fn num(&mut self, k: &str, v: u64) {
        self.key(k);
        self.0.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
    }

    fn flag(&mut self, k: &str, v: bool) {
        self.key(k);
        self.0.extend_from_slice(if v { b"true" } else { b"false" });
    }

    fn ip(&mut self, k: &str, v: std::net::IpAddr) {
        self.key(k);
        text::write_ip(&mut self.0, v);
    }

    /// A string value as tracing records a `&str` field: its `Debug` form.
    fn str(&mut self, k: &str, v: &str) {
        self.key(k);
        // Printable ASCII other than the quote and the backslash is its own
        // `Debug` form, which is nearly every path, route and id.
        if v.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\') {
            self.0.push(b'"');
            self.0.extend_from_slice(v.as_bytes());
            self.0.push(b'"');
        } else {
            use std::io::Write;
            let _ = write!(self.0, "{v:?}");
        }
    }
}

#[cfg(test)]
mod json_tests {
    use super::*;

    /// A `MakeWriter` that keeps what tracing writes.
    #[derive(Clone, Default)]
    struct Capture(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
        type Writer = Capture;
        fn make_writer(&'a self) -> Capture {
            self.clone()
        }
    }

    fn record(path: &str, sub: Option<&str>, reason: Option<&'static str>) -> AccessRecord {
        AccessRecord {
            request_id: HeaderValue::from_static("id-1"),
            method: Some(http::Method::GET),
            path: Some(path.into()),
            route: None,
            status: 401,
            sub: sub.map(Into::into),
            reason,
            client: std::net::IpAddr::from([127, 0, 0, 1]),
            started: Instant::now(),
            upstream: None,
            to_headers: Duration::from_micros(12),
            bytes_in: Arc::new(AtomicU64::new(3)),
        }
    }

    #[test]
    fn direct_lines_are_what_tracing_writes() {
        let cases = [
            record("/plain/path", Some("user-1"), None),
            record("/a\"b\\c\u{1}d/é\t", Some("user\n\"x\""), Some("expired")),
            record("/", None, Some("missing_token")),
        ];
        for (i, rec) in cases.iter().enumerate() {
            let upstream = if i == 0 { Some(2413) } else { None };
            let text = Capture::default();
            let sub = tracing_subscriber::fmt().compact().with_ansi(false).with_writer(text.clone()).finish();
            tracing::subscriber::with_default(sub, || rec.trace(7, i != 1, 12, upstream, 15));
            let theirs = String::from_utf8(text.0.lock().unwrap().clone()).unwrap();
            let ours = String::from_utf8(rec.text_line(7, i != 1, 12, upstream, 15)).unwrap();
            // Equal but for the timestamp (27 bytes).
            assert_eq!(ours[27..], theirs[27..], "text line {i}");
            assert_eq!(ours.as_bytes()[10], b'T');

            let json = Capture::default();
            let sub = tracing_subscriber::fmt().json().flatten_event(true).with_current_span(false).with_writer(json.clone()).finish();
            tracing::subscriber::with_default(sub, || rec.trace(7, i != 1, 12, upstream, 15));
            let mut theirs: serde_json::Value = serde_json::from_slice(&json.0.lock().unwrap()).expect("tracing's JSON");
            let mut ours: serde_json::Value = serde_json::from_slice(&rec.json_line(7, i != 1, 12, upstream, 15)).expect("our JSON");
            theirs.as_object_mut().unwrap().remove("timestamp");
            ours.as_object_mut().unwrap().remove("timestamp");
            assert_eq!(ours, theirs, "JSON line {i}");
        }
    }

    #[test]
    fn lines_are_json_whatever_the_values() {
        let rec = AccessRecord {
            request_id: HeaderValue::from_static("id-1"),
            method: Some(http::Method::GET),
            path: Some("/a\"b\\c\u{1}d/é".into()),
            route: None,
            status: 401,
            sub: Some("user\n\"x\"".into()),
            reason: Some("expired"),
            client: std::net::IpAddr::from([127, 0, 0, 1]),
            started: Instant::now(),
            upstream: None,
            to_headers: Duration::from_micros(12),
            bytes_in: Arc::new(AtomicU64::new(3)),
        };
        let line = rec.json_line(7, false, 12, None, 15);
        assert_eq!(line.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&line).expect("valid JSON");
        assert_eq!(v["path"], "/a\"b\\c\u{1}d/é");
        assert_eq!(v["sub"], "user\n\"x\"");
        assert_eq!(v["route"], "-");
        assert_eq!(v["status"], 401);
        assert_eq!(v["bytes_in"], 3);
        assert_eq!(v["bytes_out"], 7);
        assert_eq!(v["complete"], false);
        assert_eq!(v["target"], "access");
        assert!(v.get("upstream_us").is_none());
    }
}

//! hyper's own HTTP/1.1 refusals, answered the gateway's way.
//!
//! hyper refuses some requests while it parses them, before any service
//! runs, and writes a bare head itself (hyper 1.x, `proto/h1/role.rs`:
//! `Server::on_error` picks the status, `Server::encode` writes it):
//!
//! ```text
//! HTTP/1.1 431 Request Header Fields Too Large    or 400 Bad Request, 414 URI Too Long
//! connection: close                               absent on an HTTP/1.0 connection
//! content-length: 0
//! date: Sun, 06 Nov 1994 08:49:37 GMT
//! ```
//!
//! 431 for a head that outgrew `max_buf_size` (a long request line just as
//! well as large headers) or has more than `max_headers` headers, 414 for a
//! target over 65534 bytes in a head that fit, 400 for a bad request line,
//! method, target, version or header line. It never writes 505 (a bad
//! version is 400) nor 408 (a head that times out is closed silently).
//! That head carries no JSON body and no request id, and nothing logs or
//! counts it. [`RefusalIo`] sits between hyper and the client's stream,
//! recognises exactly that head on its way out, and writes the gateway's
//! answer in its place: a [`GatewayError`]'s status and JSON body, a fresh
//! request id, an access-log line and the request counter.
//!
//! Why recognising it is exact, at a few comparisons per write:
//! - The connection builders write with `writev`: a head, each body frame
//!   and each piece of chunked framing are separate slices. hyper appends
//!   its refusal head only when no body is queued (and nothing after it),
//!   so that head is the end of the last slice.
//! - Every response of ours carries `x-request-id`, so none of our heads has
//!   only these three header lines; no header line can read `HTTP/1.1 ...`.
//! - A body frame never ends with CRLF CRLF: `conn::TrackedBody` splits one
//!   that does, so no slice of a body can end with a head.
//! - HTTP/2 connections and switched (upgraded) ones are passed through.
//!
//! hyper's 431 does not say whether the request line or the headers were
//! too large. The read side tells: it watches for a line end in what the
//! client sends after each write of ours (a client that waits for its
//! answers starts its next request after the last one), and a request line
//! longer than `max_uri_length` makes it 414. A client that pipelines (its
//! next request already on its way before our answer) may get 431 where 414
//! was meant or the reverse: a refusal with the gateway's answer either way.

use std::io::{self, IoSlice};
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tracing::debug;

use crate::error::GatewayError;
use crate::observe::access::{self, AccessRecord};
use crate::observe::metrics::{self, MethodClass, Outcome};
use crate::state::Gateway;

/// The HTTP/2 client preface: a connection opening with it is not HTTP/1.1.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What one client connection's episodes share.
pub struct RefusalContext {
    gw: Arc<Gateway>,
    client: IpAddr,
    /// How far to look for the end of a request line: hyper's head buffer.
    line_cap: usize,
    switched: AtomicBool,
}

impl RefusalContext {
    /// For a connection from `client`; `line_cap` is hyper's `max_buf_size`.
    pub fn new(gw: Arc<Gateway>, client: IpAddr, line_cap: usize) -> RefusalContext {
        RefusalContext { gw, client, line_cap: line_cap.max(1), switched: AtomicBool::new(false) }
    }

    /// The connection switched protocols (101, or a 2xx to CONNECT): what
    /// follows is not HTTP/1.1 any more and passes untouched.
    pub fn switched(&self) {
        self.switched.store(true, Ordering::Release);
    }
}

/// What the stream is known to carry.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Start {
    /// HTTP/1.1 (the first bytes were already told apart from HTTP/2).
    Http1,
    /// Unknown until the first bytes: HTTP/2 if they are its preface.
    Sniff,
    /// HTTP/2 (ALPN said so): nothing to watch.
    Http2,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Proto {
    /// This many bytes of the HTTP/2 preface seen so far.
    Sniffing(u8),
    Http1,
    /// HTTP/2 or a switched connection.
    Passthrough,
}

/// The request line of the head being read, as far as the read side knows.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Line {
    /// `len` bytes of it so far (once `started`: leading CRLFs are skipped,
    /// as hyper does), no line end yet.
    Scanning { started: bool, len: usize },
    /// A line end came after `len` bytes: the request line fit in the buffer.
    Ended { len: usize },
    /// No line end within `line_cap` bytes.
    Long,
}

const LINE_START: Line = Line::Scanning { started: false, len: 0 };

/// A client stream that replaces hyper's bare refusals with the gateway's.
pub struct RefusalIo<T> {
    inner: T,
    proto: Proto,
    line: Line,
    ctx: Arc<RefusalContext>,
    /// The answer being written in place of hyper's head.
    out: Option<Box<Substitute>>,
}

impl<T> RefusalIo<T> {
    /// Wraps `inner`, a client stream whose protocol is as `start` says.
    pub fn new(inner: T, ctx: Arc<RefusalContext>, start: Start) -> RefusalIo<T> {
        let proto = match start {
            Start::Http1 => Proto::Http1,
            Start::Sniff => Proto::Sniffing(0),
            Start::Http2 => Proto::Passthrough,
        };
        RefusalIo { inner, proto, line: LINE_START, ctx, out: None }
    }

    /// The stream back (an answer still unwritten is dropped and logged as
    /// incomplete).
    pub fn into_inner(self) -> T {
        self.inner
    }

    /// Looks at bytes just read: the HTTP/2 preface, and the request line's end.
    fn observe(&mut self, mut new: &[u8]) {
        if let Proto::Sniffing(seen) = self.proto {
            let seen = usize::from(seen);
            let k = new.len().min(H2_PREFACE.len() - seen);
            if new[..k] != H2_PREFACE[seen..seen + k] {
                self.proto = Proto::Http1;
            } else if seen + k == H2_PREFACE.len() {
                self.proto = Proto::Passthrough;
                return;
            } else {
                // (under 24, so it fits)
                self.proto = Proto::Sniffing((seen + k) as u8);
            }
        }
        let Line::Scanning { mut started, len } = self.line else { return };
        if !started {
            match new.iter().position(|&b| b != b'\r' && b != b'\n') {
                Some(i) => {
                    started = true;
                    new = &new[i..];
                }
                None => return,
            }
        }
        let look = &new[..new.len().min(self.ctx.line_cap.saturating_sub(len))];
        self.line = if let Some(i) = memchr::memchr(b'\n', look) {
            Line::Ended { len: len + i }
        } else if len + look.len() >= self.ctx.line_cap {
            Line::Long
        } else {
            Line::Scanning { started, len: len + look.len() }
        };
    }

    /// Before hyper's bytes go out: if they end with its bare refusal, takes
    /// them all (returns their length) and queues the gateway's answer,
    /// preceded by whatever came before the refusal in them.
    ///
    /// The refusal can also end the first slice (hyper's head buffer) with
    /// body bytes queued after it: hyper reads a pipelined request as soon
    /// as the last response is encoded, and (in release builds; debug ones
    /// assert) appends its refusal head while that response's body still
    /// waits to be written, ahead of it. Those bytes then go first.
    fn inspect(&mut self, bufs: &[IoSlice<'_>]) -> Option<usize> {
        if self.ctx.switched.load(Ordering::Acquire) {
            self.proto = Proto::Passthrough;
            return None;
        }
        let last = bufs.iter().rposition(|b| !b.is_empty())?;
        let mut before = Vec::new();
        let bare = if let Some(bare) = Bare::find(&bufs[last]) {
            for b in &bufs[..last] {
                before.extend_from_slice(b);
            }
            before.extend_from_slice(&bufs[last][..bare.start]);
            bare
        } else {
            let first = bufs.iter().position(|b| !b.is_empty())?;
            let bare = if first < last { Bare::find(&bufs[first]) } else { None };
            let Some(bare) = bare else {
                // Ours: the client's next request starts after this.
                self.line = LINE_START;
                return None;
            };
            before.extend_from_slice(&bufs[first][..bare.start]);
            for b in &bufs[first + 1..] {
                before.extend_from_slice(b);
            }
            bare
        };
        self.out = Some(Box::new(self.answer(&bare, before)));
        self.line = LINE_START;
        Some(bufs.iter().map(|b| b.len()).sum())
    }

    /// The gateway's answer for hyper's refusal `bare`, after `before`;
    /// counted now, logged once written.
    fn answer(&self, bare: &Bare, mut out: Vec<u8>) -> Substitute {
        let snap = self.ctx.gw.snapshot();
        // As `check_request_limits` judges the URI before the headers.
        let long_line = match self.line {
            Line::Long => true,
            Line::Scanning { len, .. } | Line::Ended { len } => len > snap.config.server.max_uri_length,
        };
        let err = match bare.status {
            400 => GatewayError::MalformedRequest,
            414 => GatewayError::UriTooLong,
            _ if long_line => GatewayError::UriTooLong,
            _ => GatewayError::HeadersTooLarge,
        };
        let reason = err.reason();
        let (head, body) = err.into_head(&snap.config.realm);
        let status = head.status();
        let request_id = access::new_request_id();
        out.extend_from_slice(if bare.http10 { b"HTTP/1.0 " } else { b"HTTP/1.1 " });
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
        out.extend_from_slice(b"\r\n");
        for (name, value) in head.headers() {
            header(&mut out, name.as_str().as_bytes(), value.as_bytes());
        }
        header(&mut out, access::REQUEST_ID.as_str().as_bytes(), request_id.as_bytes());
        header(&mut out, b"content-length", body.len().to_string().as_bytes());
        if bare.close {
            header(&mut out, b"connection", b"close");
        }
        header(&mut out, b"date", &bare.date);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&body);

        debug!(client = %self.ctx.client, status = status.as_u16(), hyper_status = bare.status, reason, request_id = request_id.to_str().unwrap_or("-"), "request refused while parsing");
        let m = metrics::metrics();
        m.request_class(None, MethodClass::other, Outcome::of_refusal(status.as_u16()));
        m.gateway_time(Duration::ZERO, None);
        let record = snap.config.log.access.then(|| AccessRecord {
            request_id,
            method: None,
            path: None,
            route: None,
            status: status.as_u16(),
            sub: None,
            reason: Some(reason),
            client: self.ctx.client,
            started: Instant::now(),
            upstream: None,
            to_headers: Duration::ZERO,
            bytes_in: Arc::new(AtomicU64::new(0)),
        });
        Substitute { bytes: out, written: 0, record, body_len: body.len() as u64 }
    }
}

fn header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

impl<T: AsyncWrite + Unpin> RefusalIo<T> {
    /// Writes what is left of a queued answer; logs it once all written.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(out) = self.out.as_mut() else { return Poll::Ready(Ok(())) };
        while out.written < out.bytes.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &out.bytes[out.written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => out.written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        if let Some(mut done) = self.out.take() {
            done.finish(true);
        }
        Poll::Ready(Ok(()))
    }
}

/// The gateway's answer in place of hyper's head, and its access-log line.
struct Substitute {
    bytes: Vec<u8>,
    written: usize,
    record: Option<AccessRecord>,
    body_len: u64,
}

impl Substitute {
    fn finish(&mut self, complete: bool) {
        if let Some(r) = self.record.take() {
            r.emit(if complete { self.body_len } else { 0 }, complete);
        }
    }
}

impl Drop for Substitute {
    fn drop(&mut self) {
        // The client went away (or hyper dropped the stream) mid-answer.
        self.finish(false);
    }
}

/// hyper's bare refusal head, found at the end of a slice.
struct Bare {
    /// Where it starts in the slice.
    start: usize,
    status: u16,
    http10: bool,
    close: bool,
    date: [u8; DATE_LEN],
}

/// `Sun, 06 Nov 1994 08:49:37 GMT`, the IMF-fixdate hyper writes.
const DATE_LEN: usize = 29;
const LENGTH_AND_DATE: &[u8] = b"content-length: 0\r\ndate: ";
const CLOSE: &[u8] = b"connection: close\r\n";
/// The statuses of `Server::on_error`, with hyper's reason phrases.
const STATUS_LINES: [(u16, &[u8]); 3] = [(400, b"400 Bad Request\r\n"), (414, b"414 URI Too Long\r\n"), (431, b"431 Request Header Fields Too Large\r\n")];

impl Bare {
    fn find(s: &[u8]) -> Option<Bare> {
        // Anything else of ours fails here, after at most 8 comparisons.
        if !s.ends_with(b" GMT\r\n\r\n") {
            return None;
        }
        let date_at = s.len().checked_sub(DATE_LEN + 4)?;
        let length_at = date_at.checked_sub(LENGTH_AND_DATE.len())?;
        if &s[length_at..date_at] != LENGTH_AND_DATE {
            return None;
        }
        let (end, close) = match length_at.checked_sub(CLOSE.len()) {
            Some(c) if &s[c..length_at] == CLOSE => (c, true),
            _ => (length_at, false),
        };
        for (status, line) in STATUS_LINES {
            let Some(v) = end.checked_sub(line.len() + 9) else { continue };
            if &s[v + 9..end] != line {
                continue;
            }
            let http10 = match &s[v..v + 9] {
                b"HTTP/1.1 " => false,
                b"HTTP/1.0 " => true,
                _ => continue,
            };
            // Only at the start of a head: the slice's start, or after a
            // whole earlier head still waiting to be written.
            if v > 0 && !s[..v].ends_with(b"\r\n\r\n") {
                continue;
            }
            let mut date = [0u8; DATE_LEN];
            date.copy_from_slice(&s[date_at..date_at + DATE_LEN]);
            return Some(Bare { start: v, status, http10, close, date });
        }
        None
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for RefusalIo<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        if this.proto != Proto::Passthrough && buf.filled().len() > before {
            this.observe(&buf.filled()[before..]);
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for RefusalIo<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Err(e) = std::task::ready!(this.drain(cx)) {
            return Poll::Ready(Err(e));
        }
        if this.proto == Proto::Http1 {
            if let Some(n) = this.inspect(&[IoSlice::new(buf)]) {
                return Poll::Ready(Ok(n));
            }
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Err(e) = std::task::ready!(this.drain(cx)) {
            return Poll::Ready(Err(e));
        }
        if this.proto == Proto::Http1 {
            if let Some(n) = this.inspect(bufs) {
                return Poll::Ready(Ok(n));
            }
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Err(e) = std::task::ready!(this.drain(cx)) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Err(e) = std::task::ready!(this.drain(cx)) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &str = "Sun, 06 Nov 1994 08:49:37 GMT";

    fn bare(status: &str, close: bool) -> String {
        let close = if close { "connection: close\r\n" } else { "" };
        format!("{status}\r\n{close}content-length: 0\r\ndate: {DATE}\r\n\r\n")
    }

    #[test]
    fn hypers_refusal_heads_are_found_and_nothing_else() {
        for (line, status) in [("HTTP/1.1 400 Bad Request", 400), ("HTTP/1.1 414 URI Too Long", 414), ("HTTP/1.1 431 Request Header Fields Too Large", 431)] {
            let b = Bare::find(bare(line, true).as_bytes()).expect(line);
            assert_eq!((b.start, b.status, b.http10, b.close), (0, status, false, true));
            assert_eq!(&b.date, DATE.as_bytes());
        }
        let b = Bare::find(bare("HTTP/1.0 400 Bad Request", false).as_bytes()).expect("1.0");
        assert!(b.http10 && !b.close);
        // After a whole earlier head that had not gone out yet.
        let earlier = format!("HTTP/1.1 204 No Content\r\nx-request-id: a\r\ndate: {DATE}\r\n\r\n");
        let joined = earlier.clone() + &bare("HTTP/1.1 400 Bad Request", true);
        assert_eq!(Bare::find(joined.as_bytes()).map(|b| b.start), Some(earlier.len()));

        // Ours carry more headers; other statuses are not hyper's refusals.
        for s in [
            format!("HTTP/1.1 400 Bad Request\r\nx-request-id: a\r\ncontent-length: 0\r\ndate: {DATE}\r\n\r\n"),
            bare("HTTP/1.1 404 Not Found", true),
            bare("HTTP/1.1 200 OK", true),
            format!("xHTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: {DATE}\r\n\r\n"),
            format!("body\r\n{}", bare("HTTP/1.1 400 Bad Request", true)),
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n".into(),
            " GMT\r\n\r\n".into(),
            String::new(),
        ] {
            assert!(Bare::find(s.as_bytes()).is_none(), "{s:?}");
        }
    }

    fn io() -> RefusalIo<()> {
        let text = "[upstream]\nurl = \"http://127.0.0.1:9\"\n[[routes]]\npath = \"/**\"\nauth = \"public\"\n";
        let cfg = crate::config::Config::from_toml(text, "t.toml").expect("config");
        let gw = Gateway::new(cfg).expect("gateway");
        RefusalIo::new((), Arc::new(RefusalContext::new(gw, IpAddr::from([127, 0, 0, 1]), 100)), Start::Sniff)
    }

    #[tokio::test]
    async fn the_read_side_tells_http2_and_where_the_request_line_ends() {
        let mut r = io();
        r.observe(b"PRI * HTTP/2.0\r\n");
        assert_eq!(r.proto, Proto::Sniffing(16));
        r.observe(b"\r\nSM\r\n\r\n");
        assert_eq!(r.proto, Proto::Passthrough);

        let mut r = io();
        r.observe(b"\r\n\r\nGET /aaaa");
        assert_eq!(r.proto, Proto::Http1);
        assert_eq!(r.line, Line::Scanning { started: true, len: 9 });
        r.observe(b"aa HTTP/1.1\r\nHost: x");
        assert_eq!(r.line, Line::Ended { len: 21 });

        let mut r = io();
        r.observe(&[b'a'; 60]);
        r.observe(&[b'a'; 60]);
        assert_eq!(r.line, Line::Long);
        // Our next write starts a new request.
        assert!(r.inspect(&[IoSlice::new(b"HTTP/1.1 200 OK\r\n\r\n")]).is_none());
        assert_eq!(r.line, LINE_START);
    }

    fn written(r: &RefusalIo<()>) -> String {
        String::from_utf8_lossy(&r.out.as_ref().expect("an answer").bytes).into_owned()
    }

    #[tokio::test]
    async fn the_answer_replaces_only_hypers_head_and_keeps_what_came_before() {
        let head = bare("HTTP/1.1 400 Bad Request", true);
        let earlier = "HTTP/1.1 204 No Content\r\nx-request-id: a\r\n\r\n";
        let mut r = io();
        r.proto = Proto::Http1;
        let joined = format!("{earlier}{head}");
        assert_eq!(r.inspect(&[IoSlice::new(b"body of before"), IoSlice::new(joined.as_bytes())]), Some(14 + joined.len()));
        let out = written(&r);
        assert!(out.starts_with(&format!("body of before{earlier}HTTP/1.1 400 Bad Request\r\n")), "{out}");
        assert!(
            out.contains("\r\nx-request-id: ") && out.contains("\r\nconnection: close\r\n") && out.contains(&format!("\r\ndate: {DATE}\r\n\r\n{{")),
            "{out}"
        );
        assert!(out.ends_with("}"), "{out}");

        // hyper's head ahead of a body still queued: the body goes first.
        let mut r = io();
        r.proto = Proto::Http1;
        assert_eq!(r.inspect(&[IoSlice::new(head.as_bytes()), IoSlice::new(b"tail"), IoSlice::new(b"")]), Some(head.len() + 4));
        assert!(written(&r).starts_with("tailHTTP/1.1 400 Bad Request\r\n"), "{}", written(&r));

        // A head of ours and its body are left alone.
        let mut r = io();
        r.proto = Proto::Http1;
        assert_eq!(r.inspect(&[IoSlice::new(earlier.as_bytes()), IoSlice::new(b"x")]), None);
        assert!(r.out.is_none());
    }
}

//! `_method` parameters: the method override that Rails (Rack), Laravel,
//! Symfony, Spring's `HiddenHttpMethodFilter` and Express's
//! `method-override` read from the query string or a POSTed form instead
//! of a header. There is no header to remove, so the gateway reads them:
//! from the query before routing (as the override headers), and from a
//! form body as it streams past, without buffering it.
//!
//! Names are compared as PHP reads them (`.`, ` ` and `[` fold to `_`,
//! a trailing `[]` is dropped), after percent-decoding, case-insensitively.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Method;
use hyper::body::{Frame, SizeHint};

use crate::policy::path::hex_val;
use crate::upstream::body::{BoxError, UpstreamBody};

/// A `_method` parameter whose value is not a method, or two that disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ambiguous;

/// The method a query string's `_method` parameters name, if any.
pub fn from_query(query: Option<&str>) -> Result<Option<Method>, Ambiguous> {
    let Some(q) = query else { return Ok(None) };
    if !q.bytes().any(|b| b == b'm' || b == b'M' || b == b'%') {
        return Ok(None);
    }
    let mut found: Option<Method> = None;
    for pair in q.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if !is_method_name(&decode(name.as_bytes())) {
            continue;
        }
        let m = method_of(&decode(value.as_bytes())).ok_or(Ambiguous)?;
        match &found {
            Some(prev) if *prev != m => return Err(Ambiguous),
            _ => found = Some(m),
        }
    }
    Ok(found)
}

/// Percent- and `+`-decodes form text (invalid escapes stay as written).
fn decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < s.len() => match (hex_val(s[i + 1]), hex_val(s[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// True when a decoded parameter name reads as `_method` to some framework.
fn is_method_name(name: &[u8]) -> bool {
    let name = name.strip_suffix(b"[]").unwrap_or(name);
    name.len() == 7 && name.iter().zip(b"_method").all(|(&a, &b)| a.to_ascii_lowercase() == b || (b == b'_' && matches!(a, b'.' | b' ' | b'[')))
}

/// A decoded `_method` value as a method; `None` when it is not one.
fn method_of(v: &[u8]) -> Option<Method> {
    crate::pipeline::screen::override_method(std::str::from_utf8(v).ok()?)
}

/// The form encodings whose bodies carry `_method` fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormKind {
    UrlEncoded,
    /// `multipart/form-data` with its boundary.
    Multipart(Vec<u8>),
}

/// The form kind of a `Content-Type`, or `None` for any other body.
pub fn form_kind(content_type: Option<&http::HeaderValue>) -> Option<FormKind> {
    let ct = content_type?.to_str().ok()?;
    let mut parts = ct.split(';');
    let essence = parts.next()?.trim();
    if essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Some(FormKind::UrlEncoded);
    }
    if !essence.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    let boundary = parts.filter_map(|p| p.trim().split_once('=')).find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))?.1.trim().trim_matches('"');
    (!boundary.is_empty()).then(|| FormKind::Multipart(boundary.as_bytes().to_vec()))
}

/// A `_method` field was found in the body whose method the route table
/// would judge by another rule than the one that judged the request.
#[derive(Debug)]
pub struct OverrideInBody;

impl std::fmt::Display for OverrideInBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a _method form field the route does not allow")
    }
}

impl std::error::Error for OverrideInBody {}

/// Longest field (name or value) the scanner looks at; longer ones cannot
/// be `_method` or a method.
const MAX_FIELD: usize = 32;
/// Longest multipart part head read while looking for a `_method` part.
const MAX_PART_HEAD: usize = 8 * 1024;

/// Scans a form body for `_method` fields as it streams, without keeping
/// more than a few bytes. `allowed` says whether a field's method would be
/// judged by the same rule as the request.
pub struct Scanner {
    kind: FormKind,
    allowed: Box<dyn Fn(&Method) -> bool + Send + Sync>,
    state: State,
    /// Bytes carried from one chunk to the next (a field, or the start of a
    /// multipart part head).
    carry: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Url-encoded: reading a field name; `true` while it may still be
    /// `_method` (short enough).
    Name(bool),
    /// Url-encoded: reading the value of a `_method` field (`true`) or of
    /// another one (`false`).
    Value(bool),
    /// Multipart: in a part's content, looking for the next delimiter.
    Content,
    /// Multipart: reading a part's head, up to the blank line.
    Head,
    /// Multipart: reading the content of a `_method` part.
    MethodContent,
    /// The body is past its closing delimiter, or scanning stopped.
    Done,
}

impl Scanner {
    /// A scanner for `kind`, calling `allowed` for each `_method` found.
    pub fn new(kind: FormKind, allowed: impl Fn(&Method) -> bool + Send + Sync + 'static) -> Scanner {
        let state = if matches!(kind, FormKind::UrlEncoded) { State::Name(true) } else { State::Content };
        // A multipart body starts with a delimiter without the leading CRLF.
        let carry = if matches!(kind, FormKind::Multipart(_)) { b"\r\n".to_vec() } else { Vec::new() };
        Scanner { kind, allowed: Box::new(allowed), state, carry }
    }

    /// Feeds the next chunk; an error once a `_method` field is refused.
    pub fn feed(&mut self, data: &[u8]) -> Result<(), OverrideInBody> {
        match self.kind.clone() {
            FormKind::UrlEncoded => self.feed_urlencoded(data),
            FormKind::Multipart(b) => self.feed_multipart(data, &b),
        }
    }

    /// The body ended: judges a field still being read.
    pub fn finish(&mut self) -> Result<(), OverrideInBody> {
        let verdict = match self.state {
            State::Value(true) => self.judge(),
            State::MethodContent => Err(OverrideInBody),
            _ => Ok(()),
        };
        self.state = State::Done;
        verdict
    }

    fn judge(&mut self) -> Result<(), OverrideInBody> {
        let m = method_of(&decode(&self.carry));
        self.carry.clear();
        match m {
            Some(m) if (self.allowed)(&m) => Ok(()),
            _ => Err(OverrideInBody),
        }
    }

    fn feed_urlencoded(&mut self, data: &[u8]) -> Result<(), OverrideInBody> {
        for &b in data {
            match (self.state, b) {
                (State::Name(_), b'&') => {
                    self.carry.clear();
                    self.state = State::Name(true);
                }
                (State::Name(maybe), b'=') => {
                    let hit = maybe && is_method_name(&decode(&self.carry));
                    self.carry.clear();
                    self.state = State::Value(hit);
                }
                (State::Name(true), b) => {
                    self.carry.push(b);
                    if self.carry.len() > MAX_FIELD {
                        self.carry.clear();
                        self.state = State::Name(false);
                    }
                }
                (State::Value(hit), b'&') => {
                    if hit {
                        self.judge()?;
                    }
                    self.state = State::Name(true);
                }
                (State::Value(true), b) => {
                    self.carry.push(b);
                    if self.carry.len() > MAX_FIELD {
                        return Err(OverrideInBody);
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn feed_multipart(&mut self, data: &[u8], boundary: &[u8]) -> Result<(), OverrideInBody> {
        let mut delim = Vec::with_capacity(boundary.len() + 4);
        delim.extend_from_slice(b"\r\n--");
        delim.extend_from_slice(boundary);
        let mut buf = std::mem::take(&mut self.carry);
        buf.extend_from_slice(data);
        let mut at = 0;
        loop {
            match self.state {
                State::Content | State::MethodContent => match find(&buf[at..], &delim) {
                    Some(i) => {
                        if self.state == State::MethodContent {
                            self.carry = buf[at..at + i].to_vec();
                            self.judge()?;
                        }
                        at += i + delim.len();
                        if buf[at..].starts_with(b"--") {
                            self.state = State::Done;
                        } else {
                            self.state = State::Head;
                        }
                    }
                    None => {
                        let keep = if self.state == State::MethodContent {
                            if buf.len() - at > MAX_FIELD + delim.len() {
                                return Err(OverrideInBody);
                            }
                            at
                        } else {
                            buf.len().saturating_sub(delim.len() - 1).max(at)
                        };
                        self.carry = buf[keep..].to_vec();
                        return Ok(());
                    }
                },
                State::Head => match find(&buf[at..], b"\r\n\r\n") {
                    Some(i) => {
                        let head = &buf[at..at + i];
                        self.state = if part_is_method(head) { State::MethodContent } else { State::Content };
                        // The content starts right after the blank line; a
                        // delimiter search needs its own leading CRLF there.
                        at += i + 2;
                    }
                    None if buf.len() - at > MAX_PART_HEAD => return Err(OverrideInBody),
                    None => {
                        self.carry = buf[at..].to_vec();
                        return Ok(());
                    }
                },
                State::Done | State::Name(_) | State::Value(_) => return Ok(()),
            }
        }
    }
}

/// True when a multipart part head names the field `_method`.
fn part_is_method(head: &[u8]) -> bool {
    let text = String::from_utf8_lossy(head);
    text.split("\r\n").filter(|l| l.len() > 20 && l[..20].eq_ignore_ascii_case("content-disposition:")).any(|l| {
        l.split(';')
            .filter_map(|p| p.trim().split_once('='))
            .any(|(k, v)| k.trim().eq_ignore_ascii_case("name") && is_method_name(v.trim().trim_matches('"').as_bytes()))
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A request body scanned by a [`Scanner`]; a refused field ends it with
/// an error and sets `refused`, so the caller answers 400 (the upstream
/// never gets the whole body, so it never acts on it).
pub fn guard(body: UpstreamBody, scanner: Scanner, refused: Arc<AtomicBool>) -> UpstreamBody {
    use http_body_util::BodyExt;
    let remaining = hyper::body::Body::size_hint(&body).exact();
    Guarded { inner: body, scanner, refused, remaining }.boxed()
}

struct Guarded {
    inner: UpstreamBody,
    scanner: Scanner,
    refused: Arc<AtomicBool>,
    /// Bytes still to come of a body with a declared length: the last
    /// field is judged before the chunk that completes the body is passed
    /// on, because the upstream's client stops reading at that length.
    remaining: Option<u64>,
}

impl hyper::body::Body for Guarded {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(f))) => f,
            Poll::Ready(None) => {
                return match this.scanner.finish() {
                    Ok(()) => Poll::Ready(None),
                    Err(e) => {
                        this.refused.store(true, Ordering::Release);
                        Poll::Ready(Some(Err(Box::new(e))))
                    }
                };
            }
            other => return other,
        };
        if let Some(data) = frame.data_ref() {
            let mut verdict = this.scanner.feed(data);
            if let Some(r) = this.remaining.as_mut() {
                *r = r.saturating_sub(data.len() as u64);
                if *r == 0 && verdict.is_ok() {
                    verdict = this.scanner.finish();
                }
            }
            if let Err(e) = verdict {
                this.refused.store(true, Ordering::Release);
                return Poll::Ready(Some(Err(Box::new(e))));
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        // The end is where `finish` judges a field still being read.
        false
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_read_as_frameworks_read_them() {
        assert_eq!(from_query(None), Ok(None));
        assert_eq!(from_query(Some("a=1&b=2")), Ok(None));
        assert_eq!(from_query(Some("_method=DELETE")), Ok(Some(Method::DELETE)));
        assert_eq!(from_query(Some("x=1&_method=delete")), Ok(Some(Method::DELETE)));
        assert_eq!(from_query(Some("%5fmethod=PUT")), Ok(Some(Method::PUT)));
        assert_eq!(from_query(Some(".method=PUT")), Ok(Some(Method::PUT)));
        assert_eq!(from_query(Some("_METHOD=PUT")), Ok(Some(Method::PUT)));
        assert_eq!(from_query(Some("_method[]=PUT")), Ok(Some(Method::PUT)));
        assert_eq!(from_query(Some("_method=DELETE&_method=GET")), Err(Ambiguous));
        assert_eq!(from_query(Some("_method=DE%20LETE")), Err(Ambiguous));
        assert_eq!(from_query(Some("_methods=PUT&method=PUT")), Ok(None));
    }

    fn scan(kind: FormKind, chunks: &[&[u8]]) -> Result<(), OverrideInBody> {
        let mut s = Scanner::new(kind, |m| *m == Method::POST || *m == Method::GET);
        for c in chunks {
            s.feed(c)?;
        }
        s.finish()
    }

    #[test]
    fn urlencoded_bodies_are_scanned_across_chunks() {
        let u = || FormKind::UrlEncoded;
        assert!(scan(u(), &[b"a=1&b=2"]).is_ok());
        assert!(scan(u(), &[b"_method=DELETE"]).is_err());
        assert!(scan(u(), &[b"a=1&_me", b"thod=DEL", b"ETE&b=2"]).is_err());
        assert!(scan(u(), &[b"%5Fmethod=put"]).is_err());
        assert!(scan(u(), &[b"_method=GET"]).is_ok());
        let mut twice = Scanner::new(u(), |m| *m == Method::POST);
        assert!(twice.feed(b"_method=POST").is_ok() && twice.finish().is_ok() && twice.finish().is_ok(), "a second finish judges nothing");
        assert!(scan(u(), &[b"_method=post&x=", &[b'y'; 100]]).is_ok());
        assert!(scan(u(), &[b"name=_method%3DDELETE"]).is_ok(), "a value that looks like a field is data");
    }

    #[test]
    fn multipart_bodies_are_scanned_across_chunks() {
        let ct = http::HeaderValue::from_static("multipart/form-data; boundary=XyZ");
        let kind = form_kind(Some(&ct)).expect("multipart");
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nhello\r\n--XyZ\r\nContent-Disposition: form-data; name=\"_method\"\r\n\r\nDELETE\r\n--XyZ--\r\n";
        assert!(scan(kind.clone(), &[body]).is_err());
        for split in 1..body.len() {
            assert!(scan(kind.clone(), &[&body[..split], &body[split..]]).is_err(), "split at {split}");
        }
        let ok = b"--XyZ\r\nContent-Disposition: form-data; name=\"_method\"\r\n\r\nPOST\r\n--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a\"\r\n\r\n_method=DELETE\r\n--XyZ--\r\n";
        for split in 1..ok.len() {
            assert!(scan(kind.clone(), &[&ok[..split], &ok[split..]]).is_ok(), "split at {split}");
        }
    }
}

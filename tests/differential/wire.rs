//! The harness's own clients, byte-exact on the wire: raw HTTP/1.1 with a
//! lenient response reader, raw HTTP/2 frames (any pseudo-header, in any
//! order and spelling), and what follows a `101`: an HTTP/2 exchange on the
//! upgraded connection, or the first WebSocket message.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

/// One HTTP response as read off the wire.
#[derive(Debug, Clone, Default)]
pub struct Resp {
    pub status: u16,
    /// Header names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// What one connection gave back: the responses in order, and the stream
/// when the last one was a `101` (the connection then belongs to whatever
/// protocol was switched to).
pub struct H1Outcome {
    pub responses: Vec<Resp>,
    pub upgraded: Option<(TcpStream, Vec<u8>)>,
    /// The peer closed or reset before a full response, or time ran out.
    pub cut: bool,
}

/// Writes `bytes` and reads responses: one, or with `pipeline` every
/// response until the peer closes or stays quiet for `quiet`. `head` says
/// the (first) request was a HEAD, whose response has no body.
pub async fn h1_exchange(addr: SocketAddr, bytes: &[u8], head: bool, pipeline: bool, limit: Duration) -> H1Outcome {
    let deadline = Instant::now() + limit;
    let mut out = H1Outcome { responses: Vec::new(), upgraded: None, cut: false };
    let Ok(Ok(mut s)) = timeout_at(deadline, TcpStream::connect(addr)).await else {
        out.cut = true;
        return out;
    };
    if s.write_all(bytes).await.is_err() {
        // The peer may have answered and closed before reading everything.
    }
    let mut buf = Vec::new();
    loop {
        let quiet = if pipeline && !out.responses.is_empty() { Some(Instant::now() + Duration::from_millis(400)) } else { None };
        match read_response(&mut s, &mut buf, head && out.responses.is_empty(), deadline, quiet).await {
            Ok(Some(r)) => {
                let switching = r.status == 101;
                out.responses.push(r);
                if switching {
                    out.upgraded = Some((s, std::mem::take(&mut buf)));
                    return out;
                }
                if !pipeline {
                    return out;
                }
            }
            Ok(None) => return out,
            Err(()) => {
                out.cut = out.responses.is_empty() || !pipeline;
                return out;
            }
        }
    }
}

/// Reads one response from `s` (bytes already read are in `buf`, left-over
/// bytes stay there). `Ok(None)`: the peer closed cleanly between responses
/// or stayed quiet past `quiet`; `Err`: cut mid-response or out of time.
async fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>, head: bool, deadline: Instant, quiet: Option<Instant>) -> Result<Option<Resp>, ()> {
    loop {
        let end = find(buf, b"\r\n\r\n");
        let Some(end) = end else {
            let until = quiet.filter(|_| buf.is_empty()).map_or(deadline, |q| q.min(deadline));
            match fill(s, buf, until).await {
                Fill::Data => continue,
                Fill::Closed if buf.is_empty() => return Ok(None),
                Fill::TimedOut if buf.is_empty() && quiet.is_some() => return Ok(None),
                _ => return Err(()),
            }
        };
        let head_text = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end + 4);
        let mut lines = head_text.split("\r\n");
        let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
        let headers: Vec<(String, String)> =
            lines.filter_map(|l| l.split_once(':')).map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned())).collect();
        let mut r = Resp { status, headers, body: Vec::new() };
        if (100..200).contains(&status) && status != 101 {
            continue; // 100 Continue and friends: the real answer follows.
        }
        if status == 101 || head || status == 204 || status == 304 {
            return Ok(Some(r));
        }
        let chunked = r.header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let length = r.header("content-length").and_then(|v| v.parse::<usize>().ok());
        if chunked {
            r.body = read_chunked(s, buf, deadline).await?;
        } else if let Some(n) = length {
            while buf.len() < n {
                if !matches!(fill(s, buf, deadline).await, Fill::Data) {
                    return Err(());
                }
            }
            r.body = buf.drain(..n).collect();
        } else {
            while matches!(fill(s, buf, deadline).await, Fill::Data) {}
            r.body = std::mem::take(buf);
        }
        return Ok(Some(r));
    }
}

async fn read_chunked(s: &mut TcpStream, buf: &mut Vec<u8>, deadline: Instant) -> Result<Vec<u8>, ()> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(i) = find(buf, b"\r\n") {
                break i;
            }
            if !matches!(fill(s, buf, deadline).await, Fill::Data) {
                return Err(());
            }
        };
        let line = String::from_utf8_lossy(&buf[..line_end]).into_owned();
        buf.drain(..line_end + 2);
        let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16).map_err(|_| ())?;
        if size == 0 {
            // Trailers, if any, end with an empty line.
            loop {
                if let Some(i) = find(buf, b"\r\n") {
                    let empty = i == 0;
                    buf.drain(..i + 2);
                    if empty {
                        return Ok(body);
                    }
                } else if !matches!(fill(s, buf, deadline).await, Fill::Data) {
                    return Ok(body);
                }
            }
        }
        while buf.len() < size + 2 {
            if !matches!(fill(s, buf, deadline).await, Fill::Data) {
                return Err(());
            }
        }
        body.extend(buf.drain(..size));
        buf.drain(..2);
    }
}

enum Fill {
    Data,
    Closed,
    TimedOut,
}

async fn fill(s: &mut TcpStream, buf: &mut Vec<u8>, until: Instant) -> Fill {
    let mut chunk = [0u8; 16 * 1024];
    match timeout_at(until, s.read(&mut chunk)).await {
        Ok(Ok(0)) | Ok(Err(_)) => Fill::Closed,
        Ok(Ok(n)) => {
            buf.extend_from_slice(&chunk[..n]);
            Fill::Data
        }
        Err(_) => Fill::TimedOut,
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

// ---- HTTP/2, frame by frame ----

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;

/// One HTTP/2 request: header fields sent exactly as listed (pseudo-headers
/// included), and an optional body.
#[derive(Debug, Clone)]
pub struct H2Request {
    pub stream: u32,
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: Vec<u8>,
}

/// What came back on one stream.
#[derive(Debug, Clone, Default)]
pub struct H2Stream {
    pub status: u16,
    pub body: Vec<u8>,
    /// RST_STREAM's error code, or GOAWAY's, when the stream was refused.
    pub reset: Option<u32>,
    pub ended: bool,
}

/// Everything an HTTP/2 connection answered, by stream id.
#[derive(Debug, Default)]
pub struct H2Outcome {
    pub streams: BTreeMap<u32, H2Stream>,
    /// No server preface at all: the connection was not HTTP/2.
    pub not_h2: bool,
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// HPACK "literal header field never indexed, new name", no Huffman: the
/// bytes arrive as written, with no table state to get out of step.
fn hpack_literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0x10);
    hpack_len(out, name.len());
    out.extend_from_slice(name);
    hpack_len(out, value.len());
    out.extend_from_slice(value);
}

/// An HPACK integer with a 7-bit prefix (the string-length form, H = 0).
fn hpack_len(out: &mut Vec<u8>, mut n: usize) {
    if n < 127 {
        out.push(n as u8);
        return;
    }
    out.push(127);
    n -= 127;
    while n >= 128 {
        out.push((n % 128 + 128) as u8);
        n /= 128;
    }
    out.push(n as u8);
}

/// The frames of `req`: HEADERS (END_STREAM when there is no body), then DATA.
pub fn request_frames(req: &H2Request) -> Vec<u8> {
    let mut block = Vec::new();
    for (n, v) in &req.fields {
        hpack_literal(&mut block, n, v);
    }
    let no_body = req.body.is_empty();
    let mut out = frame(HEADERS, END_HEADERS | if no_body { END_STREAM } else { 0 }, req.stream, &block);
    if !no_body {
        out.extend(frame(DATA, END_STREAM, req.stream, &req.body));
    }
    out
}

/// A client connection preface with empty SETTINGS.
pub fn client_preface() -> Vec<u8> {
    let mut out = PREFACE.to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    out
}

/// Prior-knowledge HTTP/2 to `addr`: preface, `requests`, then every frame
/// until each of `wait_for` streams ended or `limit` passed.
pub async fn h2_exchange(addr: SocketAddr, requests: &[H2Request], limit: Duration) -> H2Outcome {
    let Ok(Ok(mut s)) = tokio::time::timeout(limit, TcpStream::connect(addr)).await else {
        return H2Outcome { not_h2: true, ..Default::default() };
    };
    let mut bytes = client_preface();
    for r in requests {
        bytes.extend(request_frames(r));
    }
    let _ = s.write_all(&bytes).await;
    let ids: Vec<u32> = requests.iter().map(|r| r.stream).collect();
    h2_read(&mut s, Vec::new(), &ids, limit).await
}

/// Reads frames from an HTTP/2 connection (whose first bytes may already be
/// in `buf`) until every stream in `wait_for` ended, the peer closed, or
/// `limit` passed. Answers SETTINGS and PING so the peer keeps talking.
pub async fn h2_read(s: &mut TcpStream, mut buf: Vec<u8>, wait_for: &[u32], limit: Duration) -> H2Outcome {
    let deadline = Instant::now() + limit;
    let mut out = H2Outcome::default();
    let mut decoder = fluke_hpack::Decoder::new();
    let mut pending: Option<(u32, u8, Vec<u8>)> = None;
    let mut seen_frame = false;
    loop {
        if wait_for.iter().all(|id| out.streams.get(id).is_some_and(|st| st.ended)) {
            break;
        }
        while buf.len() < 9 || buf.len() < 9 + frame_len(&buf) {
            if !matches!(fill(s, &mut buf, deadline).await, Fill::Data) {
                out.not_h2 = !seen_frame;
                return out;
            }
        }
        let len = frame_len(&buf);
        let (kind, flags) = (buf[3], buf[4]);
        let stream = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
        let payload: Vec<u8> = buf[9..9 + len].to_vec();
        buf.drain(..9 + len);
        if !seen_frame && kind != SETTINGS {
            // Not a server preface: whatever this is, it is not HTTP/2.
            out.not_h2 = true;
            return out;
        }
        seen_frame = true;
        match kind {
            SETTINGS if flags & ACK == 0 => {
                let _ = s.write_all(&frame(SETTINGS, ACK, 0, &[])).await;
            }
            PING if flags & ACK == 0 => {
                let _ = s.write_all(&frame(PING, ACK, 0, &payload)).await;
            }
            HEADERS | CONTINUATION => {
                let fragment = if kind == HEADERS { headers_fragment(flags, &payload) } else { payload.clone() };
                let (id, first_flags, mut block) = pending.take().unwrap_or((stream, flags, Vec::new()));
                block.extend_from_slice(&fragment);
                if flags & END_HEADERS == 0 {
                    pending = Some((id, first_flags, block));
                    continue;
                }
                let st = out.streams.entry(id).or_default();
                if let Ok(fields) = decoder.decode(&block) {
                    for (n, v) in fields {
                        if n == b":status" {
                            st.status = String::from_utf8_lossy(&v).parse().unwrap_or(0);
                        }
                    }
                }
                if first_flags & END_STREAM != 0 {
                    st.ended = true;
                }
            }
            DATA => {
                let st = out.streams.entry(stream).or_default();
                st.body.extend_from_slice(&data_payload(flags, &payload));
                if flags & END_STREAM != 0 {
                    st.ended = true;
                }
                // Keep both windows open for bodies of any size.
                if !payload.is_empty() {
                    let inc = (payload.len() as u32).to_be_bytes();
                    let _ = s.write_all(&[frame(0x8, 0, 0, &inc), frame(0x8, 0, stream, &inc)].concat()).await;
                }
            }
            RST_STREAM => {
                let st = out.streams.entry(stream).or_default();
                st.reset = Some(payload.get(..4).map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]])));
                st.ended = true;
            }
            GOAWAY => {
                let code = payload.get(4..8).map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                for id in wait_for {
                    let st = out.streams.entry(*id).or_default();
                    if !st.ended {
                        st.reset = Some(code);
                        st.ended = true;
                    }
                }
            }
            _ => {}
        }
        if Instant::now() >= deadline {
            return out;
        }
    }
    out
}

fn frame_len(buf: &[u8]) -> usize {
    (buf[0] as usize) << 16 | (buf[1] as usize) << 8 | buf[2] as usize
}

/// A HEADERS payload without its padding and priority fields.
fn headers_fragment(flags: u8, p: &[u8]) -> Vec<u8> {
    let mut start = 0;
    let mut pad = 0;
    if flags & 0x8 != 0 {
        pad = p.first().copied().unwrap_or(0) as usize;
        start = 1;
    }
    if flags & 0x20 != 0 {
        start += 5;
    }
    p.get(start..p.len().saturating_sub(pad)).unwrap_or_default().to_vec()
}

fn data_payload(flags: u8, p: &[u8]) -> Vec<u8> {
    if flags & 0x8 == 0 {
        return p.to_vec();
    }
    let pad = p.first().copied().unwrap_or(0) as usize;
    p.get(1..p.len().saturating_sub(pad)).unwrap_or_default().to_vec()
}

/// After a `101` to h2c: the client preface, `smuggled` on the next
/// stream, then whatever the server says on stream 1 (the upgraded
/// request) and on the smuggled stream.
pub async fn after_h2c_upgrade(mut s: TcpStream, left: Vec<u8>, smuggled: &H2Request, limit: Duration) -> H2Outcome {
    let mut bytes = client_preface();
    bytes.extend(request_frames(smuggled));
    let _ = s.write_all(&bytes).await;
    h2_read(&mut s, left, &[1, smuggled.stream], limit).await
}

/// After a `101` to WebSocket: the payload of the server's first text or
/// binary message, if one comes within `limit`.
pub async fn first_ws_message(mut s: TcpStream, mut buf: Vec<u8>, limit: Duration) -> Option<Vec<u8>> {
    let deadline = Instant::now() + limit;
    loop {
        if buf.len() >= 2 {
            let opcode = buf[0] & 0x0f;
            let masked = buf[1] & 0x80 != 0;
            let (len, mut at) = match buf[1] & 0x7f {
                126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
                127 if buf.len() >= 10 => (u64::from_be_bytes(buf[2..10].try_into().ok()?) as usize, 10),
                n if n < 126 => (n as usize, 2),
                _ => (usize::MAX, 0),
            };
            if len != usize::MAX {
                let mask_at = at;
                if masked {
                    at += 4;
                }
                if buf.len() >= at + len {
                    let mut payload = buf[at..at + len].to_vec();
                    if masked {
                        let key = buf[mask_at..mask_at + 4].to_vec();
                        for (i, b) in payload.iter_mut().enumerate() {
                            *b ^= key[i % 4];
                        }
                    }
                    return matches!(opcode, 1 | 2).then_some(payload);
                }
            }
        }
        if !matches!(fill(&mut s, &mut buf, deadline).await, Fill::Data) {
            return None;
        }
    }
}

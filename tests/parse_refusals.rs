//! Requests hyper refuses while parsing them (a head past its buffer, too
//! many headers, a bad request line or header) get the gateway's answer,
//! like every other refusal: its status (a request line too long is 414,
//! headers 431, anything else malformed 400), its JSON body, a request id,
//! an access-log line and the request counter. Nothing reaches the upstream.

mod support;

use http::{Request, StatusCode};
use serde_json::Value;
use support::front::*;
use support::obs::*;
use support::rawhttp::*;
use support::*;

/// The metric deltas below are process-wide: one test at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn gateway(up: &Upstream, server: &str) -> Gw {
    capture_logs();
    start_gateway(&public_config(&format!("http://{}", up.addr), server, "", PUBLIC_ALL)).await
}

/// Asserts `a` is the gateway's refusal with `status` and, in the access
/// log, `reason`, with no method, path or route (none was parsed).
async fn assert_refusal(a: &RawAnswer, status: u16, reason: &str) {
    assert_answer(a, status, reason, &["-"]).await;
}

/// [`assert_refusal`], the access line's method one of `methods`.
async fn assert_answer(a: &RawAnswer, status: u16, reason: &str, methods: &[&str]) {
    assert_eq!(a.status, status, "{a:?}");
    assert_eq!(a.header("content-type"), Some("application/json"), "{a:?}");
    assert_eq!(a.header("content-length").and_then(|v| v.parse().ok()), Some(a.body.len()), "{a:?}");
    assert!(a.header("date").is_some_and(|d| d.ends_with(" GMT")), "{a:?}");
    let json = a.json();
    assert_eq!(json["error"], "invalid_request", "{a:?}");
    assert!(json["error_description"].as_str().is_some_and(|d| !d.is_empty()), "{a:?}");
    let id = a.header("x-request-id").unwrap_or_else(|| panic!("no request id: {a:?}"));
    assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    let line = access_line(id).await;
    assert_eq!(line["status"], Value::from(status), "{line:?}");
    assert_eq!(line["reason"], reason, "{line:?}");
    assert_eq!(line["client"], "127.0.0.1", "{line:?}");
    assert!(methods.iter().any(|m| line["method"] == *m), "{line:?}");
    for absent in ["path", "route"] {
        assert_eq!(line[absent], "-", "{line:?}");
    }
    assert_eq!(line["complete"], true, "{line:?}");
}

/// How many requests the gateways counted as refused before routing
/// (with no method: `other`; or as GET).
async fn unrouted_bad_requests(gw: &Gw) -> f64 {
    let s = scrape(gw).await;
    requests(&s, "(none)", "other", "bad_request") + requests(&s, "(none)", "GET", "bad_request")
}

#[tokio::test]
async fn request_lines_past_hypers_buffer_get_414_json_a_log_line_and_a_count() {
    let _one = SERIAL.lock().await;
    let up = Upstream::start().await;
    // Defaults: max_uri_length 8 KB and headers 32 KB, so hyper's head
    // buffer is 41 KB; past it, hyper used to answer a bare 431. (At 42 KB
    // a head that arrives in one read can still be parsed whole, and then
    // the request path's own check refuses it, method known; under the
    // buffer it always does.)
    let gw = gateway(&up, "").await;
    let before = unrouted_bad_requests(&gw).await;
    for (len, methods) in [(42_000, &["-", "GET"][..]), (70_000, &["-"]), (9000, &["GET"])] {
        let req = format!("GET /{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "a".repeat(len));
        let answers = exchange(gw.server.addr, req.as_bytes(), false).await;
        let [a] = answers.as_slice() else { panic!("{len}: one answer expected, got {answers:?}") };
        assert_eq!(a.version, "HTTP/1.1");
        assert_eq!(a.header("connection"), Some("close"), "{a:?}");
        assert_answer(a, 414, "uri_too_long", methods).await;
    }
    assert_eq!(unrouted_bad_requests(&gw).await - before, 3.0);
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn headers_past_hypers_buffer_or_count_get_431_json() {
    let _one = SERIAL.lock().await;
    let up = Upstream::start().await;
    // A head buffer of 8 + 8 + 1 KB: a 20 KB header overflows it.
    let gw = gateway(&up, "max_header_bytes = 8192\nmax_header_count = 20").await;
    let before = unrouted_bad_requests(&gw).await;
    let big = format!("GET /x HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "v".repeat(20_000));
    let many = format!("GET /x HTTP/1.1\r\nHost: x\r\n{}\r\n", (0..30).map(|i| format!("X-H{i}: v\r\n")).collect::<String>());
    // A request line longer than max_uri_length is judged first, as the
    // request path does.
    let both = format!("GET /{} HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(9000), "v".repeat(9000));
    for (req, status, reason) in [(big, 431, "headers_too_large"), (many, 431, "headers_too_large"), (both, 414, "uri_too_long")] {
        let answers = exchange(gw.server.addr, req.as_bytes(), false).await;
        let [a] = answers.as_slice() else { panic!("one answer expected, got {answers:?}") };
        // hyper closes after refusing; the gateway's answer says so, as hyper's did.
        assert_eq!(a.header("connection"), Some("close"), "{a:?}");
        assert_refusal(a, status, reason).await;
    }
    assert_eq!(unrouted_bad_requests(&gw).await - before, 3.0);

    // HTTP/2 (prior knowledge): h2's own header-list limit leaves room for
    // the gateway's check, which answers with its JSON.
    let mut h2 = h2_client(tokio::net::TcpStream::connect(gw.server.addr).await.expect("connect")).await;
    let req = Request::get(format!("http://{}/x", gw.server.addr)).header("x-big", "v".repeat(9000)).body(full("")).unwrap();
    let resp = h2.send_request(req).await.expect("an HTTP/2 answer, not a reset");
    assert_eq!(resp.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_eq!(resp.headers().get("x-request-id").map(|v| v.len()), Some(32));
    let (body, _) = read_all(resp.into_body()).await;
    assert_eq!(serde_json::from_slice::<Value>(&body).expect("JSON")["error"], "invalid_request");
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn unparseable_request_lines_and_headers_get_400_json() {
    let _one = SERIAL.lock().await;
    let up = Upstream::start().await;
    let gw = gateway(&up, "").await;
    let before = unrouted_bad_requests(&gw).await;
    let cases = [
        "G@T / HTTP/1.1\r\nHost: x\r\n\r\n",                  // not a method token
        "GET /a b HTTP/1.1\r\nHost: x\r\n\r\n",               // a space in the target
        "GET /\x7f HTTP/1.1\r\nHost: x\r\n\r\n",              // a control character in it
        "GET / HTTP/1.2\r\nHost: x\r\n\r\n",                  // no such version (hyper: 400, not 505)
        "GET / HTTP/1.1\r\nHost x\r\n\r\n",                   // a header line without a colon
        "GET / HTTP/1.1\r\nHost: x\r\nX-Bad: a\x01b\r\n\r\n", // a control character in a value
        // Framing that could smuggle a second request:
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\nab",
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ];
    for req in cases {
        let answers = exchange(gw.server.addr, req.as_bytes(), false).await;
        let [a] = answers.as_slice() else { panic!("{req:?}: one answer expected, got {answers:?}") };
        assert_refusal(a, 400, "malformed_request").await;
    }
    assert_eq!(unrouted_bad_requests(&gw).await - before, cases.len() as f64);
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn a_bad_request_after_a_good_one_on_the_same_connection_gets_the_json_too() {
    let _one = SERIAL.lock().await;
    let up = Upstream::start().await;
    let gw = gateway(&up, "").await;

    // Pipelined HTTP/1.1: the first is served, the second refused.
    let answers = exchange(gw.server.addr, b"GET /first HTTP/1.1\r\nHost: x\r\n\r\nG@T / HTTP/1.1\r\nHost: x\r\n\r\n", false).await;
    assert_eq!(answers.iter().map(|a| a.status).collect::<Vec<_>>(), [200, 400], "{answers:?}");
    assert_eq!(answers[0].body, b"ok");
    assert_refusal(&answers[1], 400, "malformed_request").await;

    // HTTP/1.0 with keep-alive: hyper answers the second in HTTP/1.0, and
    // so does the gateway (no `Connection: close` needed there).
    let answers = exchange(gw.server.addr, b"GET /ten HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /a b HTTP/1.0\r\n\r\n", false).await;
    assert_eq!(answers.iter().map(|a| a.status).collect::<Vec<_>>(), [200, 400], "{answers:?}");
    assert_eq!(answers[1].version, "HTTP/1.0");
    assert_eq!(answers[1].header("connection"), None);
    assert_refusal(&answers[1], 400, "malformed_request").await;
    assert_eq!(up.seen().iter().map(|r| r.target.as_str()).collect::<Vec<_>>(), ["/first", "/ten"]);
}

#[tokio::test]
async fn over_tls_the_answers_are_the_same() {
    let _one = SERIAL.lock().await;
    authgear_gateway::install_crypto_provider();
    let up = Upstream::start().await;
    let ca = support::tls::TestCa::new("refusal CA");
    let dir = temp_dir("tls-refusal");
    let (cert, key) = ca.write_leaf(&["localhost"], &dir, "server");
    let gw = gateway(&up, &format!("tls_cert = \"{}\"\ntls_key = \"{}\"", cert.display(), key.display())).await;
    let before = unrouted_bad_requests(&gw).await;
    // Offering http/1.1 by ALPN, and offering nothing (hyper then decides).
    for alpn in [&[b"http/1.1".as_slice()][..], &[]] {
        let long = format!("GET /{} HTTP/1.1\r\nHost: localhost\r\n\r\n", "a".repeat(70_000));
        for (req, status, reason) in [(long.as_str(), 414, "uri_too_long"), ("GET / HTTP/1.1\r\nHost localhost\r\n\r\n", 400, "malformed_request")] {
            let s = tls_connect(&tls_connector(&ca, alpn), gw.server.addr).await;
            let answers = exchange_on(s, req.as_bytes(), false).await;
            let [a] = answers.as_slice() else { panic!("one answer expected, got {answers:?}") };
            assert_refusal(a, status, reason).await;
        }
    }
    assert_eq!(unrouted_bad_requests(&gw).await - before, 4.0);

    // HTTP/2 over TLS: a 42 KB path reaches the gateway's own URI check.
    let mut h2 = h2_client(tls_connect(&tls_connector(&ca, &[b"h2"]), gw.server.addr).await).await;
    let resp = h2.send_request(Request::get(format!("https://localhost/{}", "a".repeat(42_000))).body(full("")).unwrap()).await.expect("h2 answer");
    assert_eq!(resp.status(), StatusCode::URI_TOO_LONG);
    assert_eq!(resp.headers().get("x-request-id").map(|v| v.len()), Some(32));
    assert_eq!(up.count(), 0);
    let _ = std::fs::remove_dir_all(dir);
}

/// Exactly what hyper writes when it refuses a request.
const LOOKALIKE: &[u8] = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n";

/// Bytes that look like hyper's refusal but are not (a response body, a
/// WebSocket's data) reach the client untouched: the gateway replaces only
/// what hyper itself writes.
#[tokio::test]
async fn lookalikes_of_hypers_refusal_pass_untouched() {
    use hyper_util::rt::TokioIo;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = spawn_server(None, |mut req: http::Request<hyper::body::Incoming>| async move {
        if req.headers().get("upgrade").is_none() {
            return http::Response::new(full(LOOKALIKE));
        }
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = on_upgrade.await {
                let (mut r, mut w) = tokio::io::split(TokioIo::new(up));
                let _ = tokio::io::copy(&mut r, &mut w).await;
            }
        });
        let mut r = http::Response::new(full(""));
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        r.headers_mut().insert("upgrade", http::HeaderValue::from_static("websocket"));
        r.headers_mut().insert("connection", http::HeaderValue::from_static("Upgrade"));
        r
    })
    .await;
    capture_logs();
    let gw = start_gateway(&public_config(&format!("http://{up}"), "", "", PUBLIC_ALL)).await;

    let answers = exchange(gw.server.addr, b"GET /file HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", false).await;
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(answers[0].status, 200);
    assert_eq!(answers[0].body, LOOKALIKE);

    let mut s = tokio::net::TcpStream::connect(gw.server.addr).await.expect("connect");
    let hs = "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    s.write_all(hs.as_bytes()).await.expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), s.read(&mut buf)).await.expect("in time").expect("read");
        assert!(n > 0, "closed during the handshake");
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(parse_responses(&got)[0].status, 101);
    s.write_all(LOOKALIKE).await.expect("write");
    let mut echoed = vec![0u8; LOOKALIKE.len()];
    tokio::time::timeout(std::time::Duration::from_secs(10), s.read_exact(&mut echoed)).await.expect("echo in time").expect("read");
    assert_eq!(echoed, LOOKALIKE);
}

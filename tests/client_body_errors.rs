//! A request body that fails is blamed on the side that broke it: a
//! client's malformed chunked body or one cut short is 400, one that stalls
//! past the upstream's timeout 408 (counted as `bad_request`, never as an
//! upstream error), while an upstream that is slow or whose response body
//! breaks mid-stream is still the upstream's (504, `upstream_body_error`).
//! A connection whose request body failed is never reused.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use support::front::*;
use support::obs::*;
use support::rawhttp::*;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A gateway in front of `upstream` whose one public route is named `tag`.
async fn gateway(upstream: SocketAddr, tag: &str, upstream_extra: &str) -> Gw {
    capture_logs();
    let routes = format!("[[routes]]\nname = \"{tag}\"\npath = \"/**\"\nauth = \"public\"\n");
    start_gateway(&public_config(&format!("http://{upstream}"), "", upstream_extra, &routes)).await
}

fn tag() -> String {
    format!("body{}", rand::random::<u32>())
}

/// Asserts `a` is the client's fault: `status`, JSON `error`, and the
/// access line's `reason` on route `tag`.
async fn assert_clients_fault(a: &RawAnswer, status: u16, error: &str, reason: &str, tag: &str) {
    assert_eq!(a.status, status, "{a:?}");
    assert_eq!(a.json()["error"], error, "{a:?}");
    let id = a.header("x-request-id").expect("request id");
    let line = access_line(id).await;
    assert_eq!(line["status"], Value::from(status), "{line:?}");
    assert_eq!(line["reason"], reason, "{line:?}");
    assert_eq!(line["route"], tag, "{line:?}");
    // Not a "request failed" warning: nothing went wrong with the upstream.
    assert!(lines(|l| l.get("request_id").and_then(Value::as_str) == Some(id) && l["level"] == "WARN").is_empty());
}

fn chunked(body: &str) -> String {
    format!("POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{body}")
}

#[tokio::test]
async fn malformed_chunked_bodies_are_400_and_the_clients_fault() {
    let up = Upstream::start().await;
    let tag = tag();
    let gw = gateway(up.addr, &tag, "").await;
    for body in [
        "zz\r\nabc\r\n0\r\n\r\n",                  // not a hex size
        "1ffffffffffffffffff\r\nabc\r\n0\r\n\r\n", // a size past u64
        "3\r\nabcXY0\r\n\r\n",                     // no CRLF after the chunk's data
    ] {
        let answers = exchange(gw.server.addr, chunked(body).as_bytes(), false).await;
        let [a] = answers.as_slice() else { panic!("{body:?}: one answer expected, got {answers:?}") };
        assert_clients_fault(a, 400, "invalid_request", "malformed_body", &tag).await;
    }
    let m = scrape(&gw).await;
    assert_eq!(requests(&m, &tag, "POST", "bad_request"), 3.0);
    assert_eq!(requests(&m, &tag, "POST", "upstream_error"), 0.0);
    // Whatever reached the upstream, it never got a whole body.
    assert!(up.seen().iter().all(|r| r.body.is_empty()), "{:?}", up.seen());
}

#[tokio::test]
async fn bodies_cut_short_by_the_client_are_400() {
    let up = Upstream::start().await;
    let tag = tag();
    let gw = gateway(up.addr, &tag, "").await;
    let short = "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc".to_owned();
    // Half-closed: the client still reads the answer.
    for req in [short, chunked("5\r\nhello\r\n")] {
        let answers = exchange(gw.server.addr, req.as_bytes(), true).await;
        let [a] = answers.as_slice() else { panic!("{req:?}: one answer expected, got {answers:?}") };
        assert_clients_fault(a, 400, "invalid_request", "incomplete_body", &tag).await;
    }
    let m = scrape(&gw).await;
    assert_eq!(requests(&m, &tag, "POST", "bad_request"), 2.0);
    assert_eq!(requests(&m, &tag, "POST", "upstream_error"), 0.0);
}

#[tokio::test]
async fn a_body_that_stalls_past_the_timeout_is_408_but_a_slow_upstream_stays_504() {
    let up = Upstream::start().await;
    let tag = tag();
    let gw = gateway(up.addr, &tag, "timeout = \"1s\"").await;

    // The upstream waits for the rest of the body, which never comes.
    let mut s = TcpStream::connect(gw.server.addr).await.expect("connect");
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc").await.expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") || parse_responses(&got)[0].body.len() < 10 {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await.expect("answered in time").expect("read");
        assert!(n > 0, "closed without an answer");
        got.extend_from_slice(&buf[..n]);
    }
    let a = &parse_responses(&got)[0];
    assert_clients_fault(a, 408, "request_timeout", "body_timeout", &tag).await;

    // The body is whole and the upstream is the slow one: still its 504.
    *up.delay.lock().unwrap() = Duration::from_millis(1500);
    let answers = exchange(gw.server.addr, b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc", false).await;
    assert_eq!(answers[0].status, 504, "{answers:?}");
    let line = access_line(answers[0].header("x-request-id").expect("id")).await;
    assert_eq!(line["reason"], "upstream_timeout");

    let m = scrape(&gw).await;
    assert_eq!(requests(&m, &tag, "POST", "bad_request"), 1.0);
    assert_eq!(requests(&m, &tag, "POST", "upstream_error"), 1.0);
}

/// An upstream spoken to by hand: each connection's bytes are kept, and
/// `answer` is written back after each request head it receives.
struct HandUpstream {
    addr: SocketAddr,
    conns: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl HandUpstream {
    async fn start(answer: &'static [u8], close_after: bool) -> HandUpstream {
        let listener = authgear_gateway::runtime::net::bind_loopback().expect("bind");
        let addr = listener.local_addr().expect("addr");
        let conns: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let all = conns.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let all = all.clone();
                tokio::spawn(async move {
                    let i = {
                        let mut v = all.lock().unwrap();
                        v.push(Vec::new());
                        v.len() - 1
                    };
                    let mut buf = [0u8; 4096];
                    let mut answered = 0;
                    loop {
                        let n = match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        let heads = {
                            let mut v = all.lock().unwrap();
                            v[i].extend_from_slice(&buf[..n]);
                            v[i].windows(4).filter(|w| *w == b"\r\n\r\n").count()
                        };
                        // Answers each head at once, without reading its body.
                        while answered < heads {
                            answered += 1;
                            if s.write_all(answer).await.is_err() {
                                return;
                            }
                            if close_after {
                                return;
                            }
                        }
                    }
                });
            }
        });
        HandUpstream { addr, conns }
    }

    fn conns(&self) -> Vec<String> {
        self.conns.lock().unwrap().iter().map(|c| String::from_utf8_lossy(c).into_owned()).collect()
    }
}

#[tokio::test]
async fn an_upstream_body_that_breaks_mid_stream_is_logged_as_the_upstreams() {
    // 100 bytes promised, 3 sent, then the connection closes.
    let up = HandUpstream::start(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc", true).await;
    let tag = tag();
    let gw = gateway(up.addr, &tag, "").await;
    for _ in 0..2 {
        let answers = exchange(gw.server.addr, b"GET /file HTTP/1.1\r\nHost: x\r\n\r\n", false).await;
        // The head went out before the break: the status stands.
        assert_eq!(answers.len(), 1, "{answers:?}");
        assert_eq!(answers[0].status, 200);
        assert!(answers[0].body.len() < 100);
        let id = answers[0].header("x-request-id").expect("id");
        let line = access_line(id).await;
        assert_eq!(line["reason"], "upstream_body_error", "{line:?}");
        assert_eq!(line["complete"], false, "{line:?}");
        let warned = lines(|l| l.get("request_id").and_then(Value::as_str) == Some(id) && l["level"] == "WARN");
        assert_eq!(warned.len(), 1, "{warned:?}");
    }
}

#[tokio::test]
async fn a_connection_whose_request_body_broke_is_never_reused() {
    // The upstream answers before reading the body (as an app may).
    let up = HandUpstream::start(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false).await;
    let tag = tag();
    let gw = gateway(up.addr, &tag, "").await;
    let mut s = TcpStream::connect(gw.server.addr).await.expect("connect");
    s.write_all(chunked("5\r\nhello\r\n").as_bytes()).await.expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with(b"ok") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await.expect("answered").expect("read");
        assert!(n > 0, "closed before the answer");
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(parse_responses(&got)[0].status, 200);
    // Now the body breaks; the upstream connection carries half a body.
    let _ = s.write_all(b"zz\r\n").await;
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got)).await;

    let answers = exchange(gw.server.addr, b"GET /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", false).await;
    assert_eq!(answers[0].status, 200, "{answers:?}");
    let conns = up.conns();
    assert_eq!(conns.len(), 2, "the next request needs a new connection: {conns:?}");
    assert!(conns[0].starts_with("POST /upload") && !conns[0].contains("GET /next"), "{conns:?}");
    assert!(conns[1].starts_with("GET /next"), "{conns:?}");
}

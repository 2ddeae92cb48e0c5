//! Idle HTTP/1.1 keep-alive connections release hyper's buffers ("park",
//! see `src/parkio.rs`) and pick up again when the client speaks: nothing a
//! client sends is lost across a park, a connection told `Connection:
//! close` is never reused, and parked connections still honour the idle
//! timeout and shutdown.
//!
//! The park/parked counters are process-wide, so the tests in this file run
//! one at a time (`SERIAL`) and no other test binary shares them.

mod support;

use std::time::{Duration, Instant};

use authgear_gateway::observe::metrics::metrics;
use support::front::*;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::const_new(());

/// This file's turn (see `SERIAL`), a recording upstream, and a gateway
/// with `server` lines in its `[server]` table.
async fn setup(server: &str) -> (tokio::sync::MutexGuard<'static, ()>, Upstream, Gw) {
    let serial = SERIAL.lock().await;
    let up = Upstream::start().await;
    let gw = start_gateway(&public_config(&format!("http://{}", up.addr), server, "", PUBLIC_ALL)).await;
    (serial, up, gw)
}

/// A connection that has served `GET /first` and then been parked.
async fn parked_connection(gw: &Gw) -> TcpStream {
    let mut s = TcpStream::connect(gw.server.addr).await.expect("connect");
    let before = metrics().parking_counts().1;
    s.write_all(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
    assert_eq!(raw_status(&read_response(&mut s).await), 200);
    parks_reach(before, 1).await;
    s
}

/// Reads one HTTP/1.1 response (head + Content-Length body) off `s`.
async fn read_response(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "no complete response within 10 s: {:?}", String::from_utf8_lossy(&buf));
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut byte)).await.expect("read timed out").expect("read");
        assert_eq!(n, 1, "connection closed mid-response: {:?}", String::from_utf8_lossy(&buf));
        buf.push(byte[0]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head.lines().find_map(|l| l.strip_prefix("content-length:")).map(|v| v.trim().parse().expect("length")).unwrap_or(0);
            if buf.len() == end + 4 + len {
                return String::from_utf8_lossy(&buf).into_owned();
            }
        }
    }
}

/// Waits until the process has parked `n` more connections than `before`.
async fn parks_reach(before: u64, n: u64) {
    assert!(eventually(|| async { metrics().parking_counts().1 >= before + n }).await, "the connection was never parked");
}

#[tokio::test]
async fn a_parked_connection_serves_the_next_request_on_the_same_socket() {
    let (_serial, up, gw) = setup("").await;
    let mut s = TcpStream::connect(gw.server.addr).await.expect("connect");
    let before = metrics().parking_counts();

    s.write_all(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
    let first = read_response(&mut s).await;
    assert_eq!(raw_status(&first), 200);
    assert!(!first.to_ascii_lowercase().contains("connection: close"), "keep-alive was not offered: {first}");

    parks_reach(before.1, 1).await;
    assert!(metrics().parking_counts().0 > before.0, "the parked gauge did not count it");

    s.write_all(b"GET /second HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
    assert_eq!(raw_status(&read_response(&mut s).await), 200, "the parked connection did not serve again");
    let targets: Vec<String> = up.seen().iter().map(|r| r.target.clone()).collect();
    assert_eq!(targets, ["/first", "/second"]);
}

#[tokio::test]
async fn a_request_split_across_the_park_is_served_whole() {
    let (_serial, up, gw) = setup("").await;
    let mut s = TcpStream::connect(gw.server.addr).await.expect("connect");
    s.write_all(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
    assert_eq!(raw_status(&read_response(&mut s).await), 200);

    // Half a head: hyper has read it when the connection parks, so those
    // bytes must be handed back and replayed to the next hyper connection.
    let before = metrics().parking_counts().1;
    s.write_all(b"POST /split HTTP/1.1\r\nHost: x\r\nX-Half: on").await.expect("write");
    parks_reach(before, 1).await;
    s.write_all(b"e side\r\nContent-Length: 5\r\n\r\nhello").await.expect("write");
    assert_eq!(raw_status(&read_response(&mut s).await), 200);
    let last = up.last();
    assert_eq!(last.target, "/split");
    assert_eq!(last.headers["x-half"], "one side");
    assert_eq!(last.body, "hello");
}

#[tokio::test]
async fn pipelined_requests_are_all_answered_in_order() {
    let (_serial, up, gw) = setup("").await;
    let mut s = TcpStream::connect(gw.server.addr).await.expect("connect");
    s.write_all(b"GET /p1 HTTP/1.1\r\nHost: x\r\n\r\nGET /p2 HTTP/1.1\r\nHost: x\r\n\r\nGET /p3 HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
    for _ in 0..3 {
        assert_eq!(raw_status(&read_response(&mut s).await), 200);
    }
    let targets: Vec<String> = up.seen().iter().map(|r| r.target.clone()).collect();
    assert_eq!(targets, ["/p1", "/p2", "/p3"]);
    // And once parked, pipelining still works.
    let before = metrics().parking_counts().1;
    parks_reach(before, 1).await;
    s.write_all(b"GET /p4 HTTP/1.1\r\nHost: x\r\n\r\nGET /p5 HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
    for _ in 0..2 {
        assert_eq!(raw_status(&read_response(&mut s).await), 200);
    }
    assert_eq!(up.count(), 5);
}

#[tokio::test]
async fn a_client_asking_to_close_is_closed_not_parked() {
    let (_serial, _up, gw) = setup("").await;
    let mut s = TcpStream::connect(gw.server.addr).await.expect("connect");
    s.write_all(b"GET /bye HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.expect("write");
    let mut got = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got)).await;
    assert!(r.is_ok(), "the connection was not closed after `Connection: close`");
    let answer = String::from_utf8_lossy(&got).to_ascii_lowercase();
    assert_eq!(raw_status(&answer), 200);
    assert!(answer.contains("connection: close"));
}

#[tokio::test]
async fn a_parked_connection_is_closed_at_the_idle_timeout() {
    let (_serial, _up, gw) = setup("idle_timeout = \"3s\"\nrequest_header_timeout = \"60s\"").await;
    let started = Instant::now();
    let mut s = parked_connection(&gw).await;
    let mut rest = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut rest)).await;
    assert!(matches!(r, Ok(Ok(_))), "the parked connection was not closed");
    assert!(rest.is_empty(), "nothing is sent when an idle connection is closed");
    assert!(started.elapsed() >= Duration::from_millis(2900), "closed before the idle timeout: {:?}", started.elapsed());
}

#[tokio::test]
async fn shutdown_closes_parked_connections_at_once() {
    // The grace period (5 s in `public_config`) is for requests in progress;
    // a parked connection has none and is closed at once.
    let (_serial, _up, gw) = setup("").await;
    let mut s = parked_connection(&gw).await;
    let started = Instant::now();
    gw.server.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(4), "shutdown waited {:?} for a parked connection", started.elapsed());
    let mut rest = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    assert!(matches!(r, Ok(Ok(0))), "the parked connection was not closed by the shutdown");
}

#[tokio::test]
async fn a_head_still_arriving_when_the_park_timer_fires_ends_with_close() {
    let (_serial, _up, gw) = setup("").await;
    let mut s = parked_connection(&gw).await;

    // The woken connection gets half a head, then nothing for longer than
    // the park timer (1 s): hyper is mid-request and cannot hand the socket
    // back, so it answers with `Connection: close` — and the socket must
    // then really be closed, not parked again.
    s.write_all(b"GET /slow-head HTTP/1.1\r\nHost: x\r\n").await.expect("write");
    // 2.5 s: well past the 1 s timer even on a loaded machine.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    s.write_all(b"\r\n").await.expect("write");
    let mut got = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got)).await;
    let answer = String::from_utf8_lossy(&got).to_ascii_lowercase();
    assert!(r.is_ok(), "the connection stayed open after answering `Connection: close`: {answer}");
    assert_eq!(raw_status(&answer), 200);
    assert!(answer.contains("connection: close"), "{answer}");
}

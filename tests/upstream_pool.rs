//! The keep-alive pool for plain-HTTP/1.1 upstreams (`src/pool.rs`):
//! connections are reused, a connection is never reused when its last
//! response was not read to the end or the upstream closed it, and idle
//! connections are closed after `pool_idle_timeout` and beyond
//! `pool_max_idle`. Every answer is checked against the path that asked
//! for it, so a response landing on the wrong request fails the test.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::front::*;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A hand-written HTTP/1.1 upstream that counts connections. It answers
/// each GET with its path as the body; the path picks the behaviour:
/// `/drop/..` closes the socket right after the answer (no header says
/// so), `/close/..` answers `Connection: close`, `/endless` streams a
/// chunked body until the reader goes away, `/slow/..` waits 800 ms.
/// `/vanish/..` and `/reset/..` are answered only as the first request of
/// a connection; later on one, the upstream reads the head and closes
/// (`vanish`: a plain close; `reset`: a reset, as a server that closed an
/// idle connection just as the request arrived sends).
/// Request bodies are never read: a body's bytes would be taken for the
/// next request head, so a connection that carried one is not reused.
struct RawUpstream {
    addr: std::net::SocketAddr,
    accepted: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
    /// Every request path read, answered or not, in order.
    heads: Arc<Mutex<Vec<String>>>,
}

impl RawUpstream {
    async fn start() -> RawUpstream {
        let listener = authgear_gateway::runtime::net::bind_loopback().expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let heads: Arc<Mutex<Vec<String>>> = Arc::default();
        let (a, c, h) = (accepted.clone(), closed.clone(), heads.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                a.fetch_add(1, SeqCst);
                let (c, h) = (c.clone(), h.clone());
                tokio::spawn(async move {
                    serve(stream, &h).await;
                    c.fetch_add(1, SeqCst);
                });
            }
        });
        RawUpstream { addr, accepted, closed, heads }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(SeqCst)
    }

    fn closed(&self) -> usize {
        self.closed.load(SeqCst)
    }

    /// How many times a request for `path` reached the upstream.
    fn times_seen(&self, path: &str) -> usize {
        self.heads.lock().unwrap().iter().filter(|p| *p == path).count()
    }
}

/// Serves one connection until it closes (or the behaviour closes it).
async fn serve(mut s: TcpStream, heads: &Mutex<Vec<String>>) {
    let mut buf = Vec::new();
    for nth in 0.. {
        let Some(path) = read_request_path(&mut s, &mut buf).await else { return };
        heads.lock().unwrap().push(path.clone());
        if nth > 0 && path.starts_with("/vanish/") {
            return;
        }
        if nth > 0 && path.starts_with("/reset/") {
            let _ = s.set_zero_linger();
            return;
        }
        if path.starts_with("/slow/") {
            tokio::time::sleep(Duration::from_millis(800)).await;
        }
        if path == "/endless" {
            if s.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").await.is_err() {
                return;
            }
            let chunk = format!("{:x}\r\n{}\r\n", 4096, "x".repeat(4096));
            while s.write_all(chunk.as_bytes()).await.is_ok() {}
            return;
        }
        let close = if path.starts_with("/close/") { "connection: close\r\n" } else { "" };
        let answer = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n{close}\r\n{path}", path.len());
        if s.write_all(answer.as_bytes()).await.is_err() || path.starts_with("/drop/") || !close.is_empty() {
            return;
        }
    }
}

/// The path of the next request head on `s`; `None` once the peer closed.
async fn read_request_path(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            return head.split_whitespace().nth(1).map(str::to_owned);
        }
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A gateway with one worker (so every request uses the same idle list)
/// in front of `up`, with extra `[upstream]` lines.
async fn gateway(up: &RawUpstream, upstream: &str) -> Gw {
    start_gateway(&public_config(&format!("http://{}", up.addr), "workers = 1", upstream, PUBLIC_ALL)).await
}

/// Sends `request` on a new connection and waits for the first bytes of a
/// 200 answer; the connection stays open for the caller.
async fn start_of_answer(gw: &Gw, request: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(gw.server.addr).await.expect("connect");
    s.write_all(request).await.expect("write");
    let mut first = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut first)).await.expect("answer in time").expect("read");
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"), "{:?}", String::from_utf8_lossy(&first[..n]));
    s
}

/// GETs `path` and checks the answer is the one for that path.
async fn expect_own_answer(gw: &Gw, path: &str) {
    let (status, a) = get(&gw.url(path), &[]).await;
    assert_eq!(status, 200, "{path}: {}", a.body);
    assert_eq!(a.body, path, "the answer to {path} was another request's");
}

#[tokio::test]
async fn sequential_requests_share_one_upstream_connection() {
    let up = RawUpstream::start().await;
    let gw = gateway(&up, "").await;
    for i in 0..20 {
        expect_own_answer(&gw, &format!("/n/{i}")).await;
    }
    assert_eq!(up.accepted(), 1, "each request should reuse the pooled connection");
}

#[tokio::test]
async fn an_upstream_closing_after_each_answer_costs_no_request() {
    let up = RawUpstream::start().await;
    let gw = gateway(&up, "").await;
    for i in 0..20 {
        expect_own_answer(&gw, &format!("/drop/{i}")).await;
    }
    assert_eq!(up.accepted(), 20);
}

#[tokio::test]
async fn connection_close_from_the_upstream_is_honoured() {
    let up = RawUpstream::start().await;
    let gw = gateway(&up, "").await;
    for i in 0..10 {
        expect_own_answer(&gw, &format!("/close/{i}")).await;
    }
    assert_eq!(up.accepted(), 10);
    assert!(eventually(|| async { up.closed() == 10 }).await, "closed: {}", up.closed());
}

#[tokio::test]
async fn a_response_abandoned_midway_closes_its_upstream_connection() {
    let up = RawUpstream::start().await;
    let gw = gateway(&up, "").await;
    let s = start_of_answer(&gw, b"GET /endless HTTP/1.1\r\nHost: x\r\n\r\n").await;
    drop(s);
    // The rest of that body must never be read as the next answer.
    assert!(eventually(|| async { up.closed() == 1 }).await, "the abandoned upstream connection stayed open");
    expect_own_answer(&gw, "/after").await;
    assert_eq!(up.accepted(), 2);
}

#[tokio::test]
async fn idle_upstream_connections_close_after_pool_idle_timeout() {
    let up = RawUpstream::start().await;
    let gw = gateway(&up, "pool_idle_timeout = \"300ms\"").await;
    expect_own_answer(&gw, "/once").await;
    assert!(eventually(|| async { up.closed() == 1 }).await, "the idle connection was never closed");
    expect_own_answer(&gw, "/again").await;
    assert_eq!(up.accepted(), 2);
}

#[tokio::test]
async fn no_more_than_pool_max_idle_connections_are_kept() {
    let up = RawUpstream::start().await;
    let gw = gateway(&up, "pool_max_idle = 2").await;
    let all: Vec<_> = (0..6)
        .map(|i| {
            let url = gw.url(&format!("/slow/{i}"));
            tokio::spawn(async move { get(&url, &[]).await })
        })
        .collect();
    for (i, task) in all.into_iter().enumerate() {
        let (status, a) = task.await.expect("request task");
        assert_eq!((status.as_u16(), a.body.as_str()), (200, format!("/slow/{i}").as_str()));
    }
    assert_eq!(up.accepted(), 6, "six requests at once need six connections");
    assert!(eventually(|| async { up.closed() == 4 }).await, "closed: {} (expected 6 - pool_max_idle)", up.closed());
    expect_own_answer(&gw, "/n/1").await;
    expect_own_answer(&gw, "/n/2").await;
    assert_eq!(up.accepted(), 6, "the kept connections are reused");
}

#[tokio::test]
async fn a_slow_upload_the_upstream_answered_early_holds_up_no_one() {
    let up = RawUpstream::start().await;
    let gw = gateway(&up, "").await;
    // The upstream answers before the body has arrived; the client keeps
    // the rest of its body back, so that upstream connection stays busy.
    let s = start_of_answer(&gw, b"POST /early HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\npart of it").await;
    // Another client must not wait for that upload to finish.
    let other = tokio::time::timeout(Duration::from_secs(5), expect_own_answer(&gw, "/other")).await;
    assert!(other.is_ok(), "a request waited for another client's upload");
    assert_eq!(up.accepted(), 2);
    drop(s);
}

#[tokio::test]
async fn concurrent_requests_never_get_each_others_answers() {
    let up = RawUpstream::start().await;
    let gw = start_gateway(&public_config(&format!("http://{}", up.addr), "workers = 2", "pool_max_idle = 4", PUBLIC_ALL)).await;
    let base = gw.base.clone();
    let tasks: Vec<_> = (0..16)
        .map(|t| {
            let base = base.clone();
            tokio::spawn(async move {
                for i in 0..25 {
                    // Kept, dropped by the upstream, closed by header, and
                    // kept again: every way a connection can end, mixed.
                    let kind = ["n", "drop", "close", "n"][(t + i) % 4];
                    let path = format!("/{kind}/{t}-{i}");
                    let (status, a) = get(&format!("{base}{path}"), &[]).await;
                    assert_eq!((status.as_u16(), a.body.as_str()), (200, path.as_str()), "task {t} request {i}");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a request got another's answer (see above)");
    }
    assert!(up.accepted() < 400, "kept connections should be reused: {} connections for 400 requests", up.accepted());
}

/// Replay copies are made only for connections that have been idle that
/// long (an upstream's idle timer is what closes them unannounced).
async fn idle_long_enough_to_replay() {
    tokio::time::sleep(authgear_gateway::upstream::pool::REPLAY_AFTER_IDLE + Duration::from_millis(50)).await;
}

#[tokio::test]
async fn an_idempotent_request_a_reused_connection_lost_is_sent_again_on_a_new_one() {
    for how in ["vanish", "reset"] {
        let up = RawUpstream::start().await;
        let gw = gateway(&up, "").await;
        expect_own_answer(&gw, &format!("/{how}/warm")).await;
        idle_long_enough_to_replay().await;
        // The pooled connection is reused, and the upstream closes it with
        // the request read but not answered.
        let lost = format!("/{how}/lost");
        expect_own_answer(&gw, &lost).await;
        assert_eq!(up.times_seen(&lost), 2, "{how}: sent once on the old connection, once on a new one");
        assert_eq!(up.accepted(), 2, "{how}");
    }
}

#[tokio::test]
async fn a_request_with_a_body_or_a_post_is_never_sent_twice() {
    for (method, path, body) in [("POST", "/vanish/post", ""), ("PUT", "/vanish/put-with-body", "data")] {
        let up = RawUpstream::start().await;
        let gw = gateway(&up, "").await;
        expect_own_answer(&gw, "/vanish/warm").await;
        idle_long_enough_to_replay().await;
        let a = send(method, &gw.url(path), &[], body.as_bytes()).await;
        assert_eq!(a.status, 502, "{method} {path}");
        assert_eq!(up.times_seen(path), 1, "{method} {path} reached the upstream again");
        // The next request gets a new connection and its own answer.
        expect_own_answer(&gw, "/vanish/after").await;
    }
}

//! Hostile and slow clients: body size per route (413), header count and
//! size (431) on HTTP/1.1 and HTTP/2, URI length (414), slowloris cut at the
//! header timeout while others are served, idle keep-alive connections
//! closed (busy ones never), and max_connections holding new connections
//! back instead of failing.

mod support;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::front::*;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ROUTES: &str = r#"
[[routes]]
path = "/small/**"
auth = "public"
max_body_size = "1KB"

[[routes]]
path = "/**"
auth = "public"
"#;

async fn gateway(up: &Upstream, server: &str) -> Gw {
    start_gateway(&public_config(&format!("http://{}", up.addr), server, "", ROUTES)).await
}

#[tokio::test]
async fn bodies_over_the_routes_limit_get_413() {
    let up = Upstream::start().await;
    let gw = gateway(&up, "").await;

    // Declared too large: refused before anything is forwarded.
    let a = send("POST", &gw.url("/small/x"), &[], &[b'a'; 2000]).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(a.json()["error"], "invalid_request");
    assert_eq!(up.count(), 0);

    // Within the limit, and any size on a route without one.
    assert_eq!(send("POST", &gw.url("/small/x"), &[], &[b'a'; 1024]).await.status, StatusCode::OK);
    assert_eq!(up.last().body.len(), 1024);
    assert_eq!(send("POST", &gw.url("/big/x"), &[], &[b'a'; 100_000]).await.status, StatusCode::OK);
    assert_eq!(up.last().body.len(), 100_000);

    // Chunked, no Content-Length: cut while streaming, still a 413.
    let mut c = h1_client(TcpStream::connect(gw.server.addr).await.expect("connect")).await;
    let chunks: VecDeque<Frame<Bytes>> = (0..4).map(|_| Frame::data(Bytes::from(vec![b'b'; 600]))).collect();
    let req = Request::post("/small/stream").header("host", "x").body(Frames(chunks).boxed()).unwrap();
    let resp = c.send_request(req).await.expect("response");
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn too_many_or_too_large_headers_get_431_and_long_uris_414() {
    let up = Upstream::start().await;
    let gw = gateway(&up, "max_header_count = 20\nmax_header_bytes = 8192").await;

    let many: String = (0..30).map(|i| format!("X-H{i}: v\r\n")).collect();
    let a = raw(gw.server.addr, &format!("GET /x HTTP/1.1\r\nHost: x\r\n{many}Connection: close\r\n\r\n")).await;
    assert_eq!(raw_status(&a), 431, "{a}");

    let big = "v".repeat(9000);
    let a = raw(gw.server.addr, &format!("GET /x HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\nConnection: close\r\n\r\n")).await;
    assert_eq!(raw_status(&a), 431, "{a}");

    let long = "a".repeat(9000);
    let a = raw(gw.server.addr, &format!("GET /{long} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")).await;
    assert_eq!(raw_status(&a), 414, "{a}");

    // HTTP/2: the same limits.
    let mut h2 = h2_client(TcpStream::connect(gw.server.addr).await.expect("connect")).await;
    let mut req = Request::get(format!("http://{}/x", gw.server.addr));
    for i in 0..30 {
        req = req.header(format!("x-h{i}"), "v");
    }
    let resp = h2.send_request(req.body(full("")).unwrap()).await.expect("h2 response");
    assert_eq!(resp.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    let resp = h2.send_request(Request::get(format!("http://{}/x", gw.server.addr)).header("x-big", &big).body(full("")).unwrap()).await;
    // h2 itself may refuse a header block over SETTINGS_MAX_HEADER_LIST_SIZE
    // with 431 or a stream reset; either way nothing is forwarded.
    if let Ok(r) = resp {
        assert_eq!(r.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }
    assert_eq!(up.count(), 0);

    // Normal requests are fine.
    assert_eq!(get(&gw.url("/ok"), &[]).await.0, StatusCode::OK);
}

#[tokio::test]
async fn slowloris_is_cut_at_the_header_timeout_while_others_are_served() {
    let up = Upstream::start().await;
    let gw = gateway(&up, "request_header_timeout = \"2s\"").await;
    let header = "GET /slow HTTP/1.1\r\nHost: example.com\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";

    // A client that connects and never sends a byte is cut too.
    let mut silent = TcpStream::connect(gw.server.addr).await.expect("connect");

    let mut s = TcpStream::connect(gw.server.addr).await.expect("connect");
    let started = Instant::now();
    let (mut rd, mut wr) = s.split();
    let mut sent = 0;
    let mut buf = [0u8; 512];
    let mut cut = false;
    // One byte per second; between bytes, check whether the gateway hung up
    // and that other clients are still answered.
    for b in header.bytes() {
        if wr.write_all(&[b]).await.is_err() {
            cut = true;
            break;
        }
        sent += 1;
        match tokio::time::timeout(Duration::from_secs(1), rd.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                cut = true;
                break;
            }
            Ok(Ok(n)) => {
                // A 408 before closing is fine too.
                assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408"), "unexpected answer");
            }
            Err(_) => {}
        }
        assert_eq!(get(&gw.url("/other"), &[]).await.0, StatusCode::OK, "other clients are served meanwhile");
    }
    assert!(cut, "the slow client was never cut off");
    assert!(sent < header.len(), "cut before the header was complete ({sent} of {} bytes)", header.len());
    eprintln!("slowloris cut after {:?} and {sent} bytes", started.elapsed());
    assert!(up.seen().iter().all(|r| r.target != "/slow"));
    let closed = tokio::time::timeout(Duration::from_secs(20), silent.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "the silent connection was not closed");
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_but_busy_ones_are_not() {
    let up = Upstream::start().await;
    // The header timeout (which hyper also runs between HTTP/1.1 requests)
    // is far longer, so the close below is the idle timeout's doing.
    let gw = gateway(&up, "idle_timeout = \"1s\"\nrequest_header_timeout = \"60s\"").await;

    // HTTP/1.1: one request, then silence.
    let mut s = TcpStream::connect(gw.server.addr).await.expect("connect");
    s.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
    let mut got = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut got)).await;
    assert!(r.is_ok(), "the idle connection was not closed within 20 s");
    assert_eq!(raw_status(&String::from_utf8_lossy(&got)), 200);

    // HTTP/2: the connection future ends once the gateway says GOAWAY.
    let io = TokioIo::new(TcpStream::connect(gw.server.addr).await.expect("connect"));
    let (mut h2, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await.expect("h2");
    let conn = tokio::spawn(conn);
    let resp = h2.send_request(Request::get(format!("http://{}/b", gw.server.addr)).body(full("")).unwrap()).await.expect("h2 response");
    assert_eq!(resp.status(), StatusCode::OK);
    drop(resp);
    assert!(tokio::time::timeout(Duration::from_secs(20), conn).await.is_ok(), "the idle h2 connection was not closed");

    // A request slower than the idle timeout is not cut.
    *up.delay.lock().unwrap() = Duration::from_millis(2500);
    let (status, a) = get(&gw.url("/slow"), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(a.body, "ok");
}

/// An open keep-alive connection, served once, that holds the permit of a
/// gateway with `max_connections = 1`.
async fn take_the_only_connection_slot(gw: &Gw) -> TcpStream {
    let mut first = TcpStream::connect(gw.server.addr).await.expect("connect");
    first.write_all(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
    let mut buf = [0u8; 1024];
    let n = first.read(&mut buf).await.expect("read");
    assert_eq!(raw_status(&String::from_utf8_lossy(&buf[..n])), 200);
    first
}

#[tokio::test]
async fn connections_beyond_max_connections_wait_and_are_then_served() {
    let up = Upstream::start().await;
    let gw = gateway(&up, "max_connections = 1").await;

    let first = take_the_only_connection_slot(&gw).await;
    let mut buf = [0u8; 1024];

    // The second connection is not accepted while the first is open...
    let mut second = TcpStream::connect(gw.server.addr).await.expect("the kernel still accepts into the backlog");
    second.write_all(b"GET /second HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.expect("write");
    let early = tokio::time::timeout(Duration::from_millis(500), second.read(&mut buf)).await;
    assert!(early.is_err(), "served beyond max_connections");
    assert!(up.seen().iter().all(|r| r.target != "/second"));

    // ...and is served as soon as the first one closes.
    drop(first);
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), second.read_to_end(&mut out)).await.expect("served in time").expect("read");
    assert_eq!(raw_status(&String::from_utf8_lossy(&out)), 200);
}

/// The kernel's accept queue is what holds connections beyond
/// `max_connections`; with a backlog of 128 (tokio's own) the rest of a
/// burst had their SYNs dropped and waited a full second to retry.
#[tokio::test]
async fn a_burst_held_back_by_max_connections_is_queued_by_the_kernel_not_dropped() {
    raise_fd_limit();
    let up = Upstream::start().await;
    let gw = gateway(&up, "max_connections = 1").await;
    let first = take_the_only_connection_slot(&gw).await;

    // Linux caps the backlog at somaxconn; stay under it so the test asks
    // only what any machine's kernel grants (4096 by default).
    let somaxconn: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(4096);
    let burst = 400.min(somaxconn.saturating_sub(8));
    // A dropped SYN is retried after 1 s, so a connect that is not done in
    // 900 ms was dropped; one queued completes within the system call.
    let connects: Vec<_> = (0..burst).map(|_| tokio::spawn(tokio::time::timeout(Duration::from_millis(900), TcpStream::connect(gw.server.addr)))).collect();
    let mut queued = Vec::new();
    for c in connects {
        if let Ok(Ok(s)) = c.await.expect("task") {
            queued.push(s);
        }
    }
    assert_eq!(queued.len(), burst, "connections beyond max_connections were dropped by a full accept queue");

    // Once the first closes, every queued connection is served in turn.
    drop(first);
    for (i, s) in queued.iter_mut().enumerate() {
        s.write_all(format!("GET /queued/{i} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await.expect("write");
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await.expect("served in time").expect("read");
        assert_eq!(raw_status(&String::from_utf8_lossy(&out)), 200, "queued connection {i}");
    }
    assert_eq!(up.seen().iter().filter(|r| r.target.starts_with("/queued/")).count(), burst);
}

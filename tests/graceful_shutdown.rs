//! SIGTERM on the real binary while a stream of requests flows: `/readyz`
//! turns 503 first, every request already sent (including one longer than
//! the drain period) completes with 200, and the process exits 0.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use support::front::*;
use tokio::net::TcpStream;

/// When one request started and ended, and how it went.
type Span = (Instant, Instant, Result<(), String>);

/// One request on a fresh connection; `Err` names what failed.
async fn one_request(addr: SocketAddr, path: &str) -> Result<(), String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    let mut c = h1_client(stream).await;
    let resp = c.send_request(Request::get(path).header("host", "app").body(full("")).unwrap()).await.map_err(|e| format!("{path}: {e}"))?;
    if resp.status() != StatusCode::OK {
        return Err(format!("{path}: status {}", resp.status()));
    }
    let (body, _) = read_all(resp.into_body()).await;
    if body != "done" {
        return Err(format!("{path}: body {body:?}"));
    }
    Ok(())
}

async fn readyz(admin: SocketAddr) -> Option<StatusCode> {
    let stream = TcpStream::connect(admin).await.ok()?;
    let mut c = h1_client(stream).await;
    c.send_request(Request::get("/readyz").header("host", "admin").body(full("")).unwrap()).await.ok().map(|r| r.status())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_stream_of_requests_loses_none() {
    let upstream_hits = Arc::new(Mutex::new(0u64));
    let hits = upstream_hits.clone();
    let up = spawn_server(None, move |req: Request<Incoming>| {
        let hits = hits.clone();
        async move {
            *hits.lock().unwrap() += 1;
            let wait = if req.uri().path() == "/long" { 2500 } else { 200 };
            tokio::time::sleep(Duration::from_millis(wait)).await;
            Response::new(full("done"))
        }
    })
    .await;
    let dir = temp_dir("sigterm");
    let config = dir.join("gateway.toml");
    let text = public_config(&format!("http://{up}"), "", "", PUBLIC_ALL)
        .replace("shutdown_drain = \"0s\"", "shutdown_drain = \"1s\"")
        .replace("shutdown_grace = \"5s\"", "shutdown_grace = \"20s\"")
        + "\n[log]\nformat = \"json\"\n";
    std::fs::write(&config, text).expect("write config");
    let (mut child, addr, admin) = support::process::spawn_gateway(&config);
    let pid = child.id() as i32;
    for _ in 0..500 {
        if readyz(admin).await == Some(StatusCode::OK) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(readyz(admin).await, Some(StatusCode::OK));

    // Eight clients send requests back to back until they see not-ready,
    // as a load balancer would.
    let stop = Arc::new(AtomicBool::new(false));
    let spans: Arc<Mutex<Vec<Span>>> = Arc::default();
    let mut loops = Vec::new();
    for _ in 0..8 {
        let (stop, spans) = (stop.clone(), spans.clone());
        loops.push(tokio::spawn(async move {
            while !stop.load(Ordering::Acquire) {
                let t0 = Instant::now();
                let r = one_request(addr, "/work").await;
                spans.lock().unwrap().push((t0, Instant::now(), r));
            }
        }));
    }
    // One request that outlives the drain period.
    let long = tokio::spawn(one_request(addr, "/long"));
    while *upstream_hits.lock().unwrap() < 20 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let signalled = Instant::now();
    // SAFETY: kill(2) on the child we spawned; no memory is involved.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let mut not_ready = false;
    for _ in 0..250 {
        if readyz(admin).await == Some(StatusCode::SERVICE_UNAVAILABLE) {
            not_ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Release);
    assert!(not_ready, "/readyz never reported not-ready after SIGTERM");
    for l in loops {
        l.await.expect("client loop");
    }
    assert_eq!(long.await.expect("long request task"), Ok(()), "the long request was cut");

    let status = {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = child.try_wait().expect("wait") {
                break s;
            }
            assert!(Instant::now() < deadline, "the gateway did not exit");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    assert_eq!(status.code(), Some(0), "exit status {status:?}");

    let spans = spans.lock().unwrap();
    let failed: Vec<&String> = spans.iter().filter_map(|(_, _, r)| r.as_ref().err()).collect();
    assert!(failed.is_empty(), "requests failed: {failed:?}");
    let across = spans.iter().filter(|(t0, t1, _)| *t0 < signalled && *t1 > signalled).count();
    assert!(across > 0, "no request was in flight when SIGTERM arrived");
    eprintln!("{} requests, {across} in flight at SIGTERM, none failed", spans.len());
    let _ = std::fs::remove_dir_all(dir);
}

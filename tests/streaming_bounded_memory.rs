//! Bodies stream through the gateway: a 100 MB upload and a 100 MB
//! download arrive intact (SHA-256 computed on both sides as the bytes flow,
//! nothing collected), and server-sent events reach the client one by one,
//! not when the stream ends, even past the upstream's header timeout.
//!
//! The gateway runs in this process, so VmHWM (peak RSS) before and after
//! the transfers bounds what the whole path kept in memory; it is printed
//! (run with `--nocapture`), not asserted.

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use support::front::*;
use support::*;
use tokio::sync::{mpsc, Mutex as AsyncMutex};

const SIZE: u64 = 100 * 1024 * 1024;

/// 100 MB, or `AGW_STREAM_MB` megabytes for a manual measurement.
fn size() -> u64 {
    std::env::var("AGW_STREAM_MB").ok().and_then(|v| v.parse::<u64>().ok()).map_or(SIZE, |m| m << 20)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_megabytes_up_and_down_with_matching_checksums() {
    authgear_gateway::install_crypto_provider();
    let download_hash = Arc::new(std::sync::Mutex::new(None::<SharedHash>));
    let dh = download_hash.clone();
    let up = spawn_server(None, move |req: Request<Incoming>| {
        let dh = dh.clone();
        async move {
            if req.uri().path() == "/upload" {
                let (n, hash) = hash_body(req.into_body()).await;
                return Response::new(full(format!("{n} {hash}")));
            }
            let body = PatternBody::new(size());
            *dh.lock().unwrap() = Some(body.hash.clone());
            Response::new(body.boxed())
        }
    })
    .await;
    let gw = start_gateway(&public_config(&format!("http://{up}"), "", "", PUBLIC_ALL)).await;
    let before = peak_rss_kb();

    // Upload: generated on the fly, hashed by the upstream as it arrives.
    let mut c = h1_client(tokio::net::TcpStream::connect(gw.server.addr).await.expect("connect")).await;
    let body = PatternBody::new(size());
    let sent = body.hash.clone();
    let req = Request::post("/upload").header("host", "x").body(body.boxed()).unwrap();
    let resp = c.send_request(req).await.expect("upload response");
    assert_eq!(resp.status(), StatusCode::OK);
    let (answer, _) = read_all(resp.into_body()).await;
    assert_eq!(String::from_utf8_lossy(&answer), format!("{} {}", size(), sent.finish()));
    let after_upload = peak_rss_kb();

    // Download: hashed here as it arrives.
    c.ready().await.expect("connection ready for the next request");
    let resp = c.send_request(Request::get("/download").header("host", "x").body(full("")).unwrap()).await.expect("download response");
    assert_eq!(resp.status(), StatusCode::OK);
    let (n, got) = hash_body(resp.into_body()).await;
    assert_eq!(n, size());
    let expected = download_hash.lock().unwrap().clone().expect("upstream generated the body").finish();
    assert_eq!(got, expected);
    let after = peak_rss_kb();
    eprintln!(
        "VmHWM (test process: client + gateway + upstream): before {before} KB, after the {mb} MB upload {after_upload} KB, after the {mb} MB download {after} KB; growth {} KB",
        after.saturating_sub(before),
        mb = size() >> 20
    );
}

#[tokio::test]
async fn server_sent_events_are_not_buffered_or_cut_by_the_header_timeout() {
    authgear_gateway::install_crypto_provider();
    // The upstream sends one event, then waits for the test to say the
    // client has it before sending the next: if the gateway buffered, the
    // client would never see the first event and the test would time out.
    let (tx, rx) = mpsc::channel::<()>(1);
    let rx = Arc::new(AsyncMutex::new(rx));
    let up = spawn_server(None, move |_req: Request<Incoming>| {
        let rx = rx.clone();
        async move {
            let (ftx, frx) = mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
            tokio::spawn(async move {
                let mut rx = rx.lock().await;
                for i in 0..3 {
                    let _ = ftx.send(Ok(Frame::data(Bytes::from(format!("data: event {i}\n\n"))))).await;
                    if rx.recv().await.is_none() {
                        return;
                    }
                }
            });
            let stream = futures_stream(frx);
            let mut r = Response::new(StreamBody::new(stream).boxed());
            r.headers_mut().insert("content-type", http::HeaderValue::from_static("text/event-stream"));
            r
        }
    })
    .await;
    // timeout = 1s: the events keep coming after it, so only the response
    // headers are bound by it.
    let gw = start_gateway(&public_config(&format!("http://{up}"), "", "timeout = \"1s\"", PUBLIC_ALL)).await;
    let mut c = h1_client(tokio::net::TcpStream::connect(gw.server.addr).await.expect("connect")).await;
    let resp = c.send_request(Request::get("/events").header("host", "x").body(full("")).unwrap()).await.expect("response");
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    for i in 0..3 {
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame()).await.expect("event in time").expect("frame").expect("ok");
        assert_eq!(frame.into_data().expect("data"), format!("data: event {i}\n\n"));
        if i == 1 {
            // Outlive the upstream timeout between two events.
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        tx.send(()).await.expect("upstream listening");
    }
}

/// An mpsc receiver as a `Stream` of frames.
fn futures_stream(rx: mpsc::Receiver<Result<Frame<Bytes>, BoxError>>) -> impl futures_core::Stream<Item = Result<Frame<Bytes>, BoxError>> + Send + Sync {
    struct Rx(mpsc::Receiver<Result<Frame<Bytes>, BoxError>>);
    impl futures_core::Stream for Rx {
        type Item = Result<Frame<Bytes>, BoxError>;
        fn poll_next(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<Self::Item>> {
            self.0.poll_recv(cx)
        }
    }
    Rx(rx)
}

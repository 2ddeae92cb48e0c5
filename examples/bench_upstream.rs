//! The benchmark's upstream: answers every request with 200 `ok`, as fast as
//! hyper can, so the numbers measure the gateway and not the app behind it.
//! It speaks HTTP/1.1 and h2c (prior knowledge) on the same port, answers a
//! gRPC request (`content-type: application/grpc`) with an empty message and
//! `grpc-status: 0` in the trailers, and accepts WebSocket upgrades, holding
//! each upgraded connection open until the peer closes it.
//!
//! `cargo run --release --example bench_upstream -- 127.0.0.1:18080 [THREADS]`

use std::convert::Infallible;

use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

type Body = BoxBody<Bytes, Infallible>;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:18080".to_owned());
    let threads: usize = args.next().and_then(|t| t.parse().ok()).unwrap_or(1);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()?;
    rt.block_on(serve(addr))
}

async fn serve(addr: String) -> std::io::Result<()> {
    let listener = TcpListener::bind(&addr).await?;
    println!("bench upstream on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let svc = service_fn(|req: Request<Incoming>| async move { Ok::<_, Infallible>(answer(req).await) });
            let _ = auto::Builder::new(TokioExecutor::new()).serve_connection_with_upgrades(TokioIo::new(stream), svc).await;
        });
    }
}

async fn answer(req: Request<Incoming>) -> Response<Body> {
    let grpc = req.headers().get(http::header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    if grpc {
        return grpc_ok(req).await;
    }
    if let Some(key) = websocket_key(&req) {
        return websocket_accept(req, &key);
    }
    Response::new(Full::new(Bytes::from_static(b"ok")).boxed())
}

/// A unary gRPC answer: one empty message (a 5-byte frame), then trailers.
async fn grpc_ok(req: Request<Incoming>) -> Response<Body> {
    // The request body is read whole first, as a real unary server would.
    let _ = req.into_body().collect().await;
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let frames = [Ok::<_, Infallible>(Frame::data(Bytes::from_static(&[0, 0, 0, 0, 0]))), Ok(Frame::trailers(trailers))];
    let body = StreamBody::new(frames_stream(frames));
    let mut resp = Response::new(BodyExt::boxed(body));
    resp.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    resp
}

/// A stream over a fixed array of frames (no futures-util dependency).
fn frames_stream<const N: usize>(
    frames: [Result<Frame<Bytes>, Infallible>; N],
) -> impl futures_core::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send + Sync + 'static {
    struct Iter<I>(I);
    impl<I: Iterator + Unpin> futures_core::Stream for Iter<I> {
        type Item = I::Item;
        fn poll_next(mut self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<Option<I::Item>> {
            std::task::Poll::Ready(self.0.next())
        }
    }
    Iter(frames.into_iter())
}

fn websocket_key(req: &Request<Incoming>) -> Option<String> {
    let upgrade = req.headers().get(http::header::UPGRADE)?;
    if !upgrade.as_bytes().eq_ignore_ascii_case(b"websocket") {
        return None;
    }
    req.headers().get("sec-websocket-key")?.to_str().ok().map(str::to_owned)
}

/// 101 with the RFC 6455 accept value; the upgraded stream is read until
/// the peer closes it (what it sends is dropped).
fn websocket_accept(req: Request<Incoming>, key: &str) -> Response<Body> {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11").as_bytes());
    let accept = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
    tokio::spawn(async move {
        if let Ok(upgraded) = hyper::upgrade::on(req).await {
            let mut io = TokioIo::new(upgraded);
            let mut buf = [0u8; 1024];
            while matches!(io.read(&mut buf).await, Ok(n) if n > 0) {}
        }
    });
    let mut resp = Response::new(Full::new(Bytes::new()).boxed());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(http::header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(http::header::CONNECTION, HeaderValue::from_static("upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert("sec-websocket-accept", v);
    }
    resp
}

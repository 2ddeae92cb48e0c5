//! gRPC behind the gateway: HTTP/2 end to end (prior-knowledge h2c on both
//! legs), authenticated like any request, with `TE: trailers` kept and
//! trailers passed through in both directions.

mod support;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use serde_json::json;
use support::front::*;
use support::*;

#[derive(Default, Clone)]
struct Call {
    version: Option<Version>,
    headers: HeaderMap,
    body: Bytes,
    trailers: Option<HeaderMap>,
}

/// An h2c upstream that records the call and answers the way a gRPC server
/// does: a data frame, then `grpc-status` in the trailers.
async fn grpc_upstream(calls: Arc<Mutex<Vec<Call>>>) -> std::net::SocketAddr {
    spawn_server(None, move |req: Request<Incoming>| {
        let calls = calls.clone();
        async move {
            let (parts, body) = req.into_parts();
            let (body, trailers) = read_all(body).await;
            calls.lock().unwrap().push(Call { version: Some(parts.version), headers: parts.headers, body, trailers });
            let mut t = HeaderMap::new();
            t.insert("grpc-status", HeaderValue::from_static("0"));
            t.insert("grpc-message", HeaderValue::from_static("done"));
            let frames = Frames(VecDeque::from([Frame::data(Bytes::from_static(b"\0\0\0\0\x05reply")), Frame::trailers(t)]));
            let mut r = Response::new(frames.boxed());
            r.headers_mut().insert("content-type", HeaderValue::from_static("application/grpc"));
            r
        }
    })
    .await
}

#[tokio::test]
async fn grpc_call_with_trailers_both_ways_over_h2c() {
    authgear_gateway::install_crypto_provider();
    let iss = authgear_gateway::commands::devissuer::DevIssuer::start().await.expect("issuer");
    let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
    let up = grpc_upstream(calls.clone()).await;
    let routes = format!("[auth]\nissuer = \"{}\"\n\n[[routes]]\npath = \"/**\"\nauth = \"required\"\n", iss.issuer);
    let gw = start_ready(&public_config(&format!("http://{up}"), "", "protocol = \"h2c\"", &routes)).await;
    let token = iss.mint("grpc-user", json!({}));

    let mut client = h2_client(tokio::net::TcpStream::connect(gw.server.addr).await.expect("connect")).await;
    let mut client_trailers = HeaderMap::new();
    client_trailers.insert("x-client-checksum", HeaderValue::from_static("abc123"));
    let body = Frames(VecDeque::from([Frame::data(Bytes::from_static(b"\0\0\0\0\x05hello")), Frame::trailers(client_trailers)]));
    let req = Request::post(format!("http://{}/pkg.Greeter/SayHello", gw.server.addr))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("authorization", format!("Bearer {token}"))
        .header("x-authgear-user-id", "spoofed-admin")
        .body(body.boxed())
        .unwrap();
    let resp = client.send_request(req).await.expect("response");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.version(), Version::HTTP_2);
    assert_eq!(resp.headers()["content-type"], "application/grpc");
    let (data, trailers) = read_all(resp.into_body()).await;
    assert_eq!(&data[..], b"\0\0\0\0\x05reply");
    let trailers = trailers.expect("the upstream's trailers reach the client");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["grpc-message"], "done");

    let call = calls.lock().unwrap().last().cloned().expect("the upstream saw the call");
    assert_eq!(call.version, Some(Version::HTTP_2));
    assert_eq!(call.headers["te"], "trailers");
    assert_eq!(call.headers["x-authgear-user-id"], "grpc-user");
    assert_eq!(&call.body[..], b"\0\0\0\0\x05hello");
    assert_eq!(call.trailers.expect("the client's trailers reach the upstream")["x-client-checksum"], "abc123");

    // No token: refused before the upstream, still a proper HTTP/2 answer.
    let n = calls.lock().unwrap().len();
    let req = Request::post(format!("http://{}/pkg.Greeter/SayHello", gw.server.addr)).header("te", "trailers").body(full("")).unwrap();
    let resp = client.send_request(req).await.expect("response");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(calls.lock().unwrap().len(), n);
}

#[tokio::test]
async fn http1_clients_reach_an_h2c_upstream() {
    authgear_gateway::install_crypto_provider();
    let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
    let up = grpc_upstream(calls.clone()).await;
    let gw = start_gateway(&public_config(&format!("http://{up}"), "", "protocol = \"h2c\"", PUBLIC_ALL)).await;
    let a = send("POST", &gw.url("/plain"), &[("host", "app.example.com")], b"body").await;
    assert_eq!(a.status, StatusCode::OK);
    let call = calls.lock().unwrap().last().cloned().expect("call");
    assert_eq!(call.version, Some(Version::HTTP_2));
    assert_eq!(&call.body[..], b"body");
    assert!(call.headers.get("host").is_none(), "HTTP/2 carries the host as :authority");
    assert_eq!(call.headers["x-forwarded-host"], "app.example.com");
}

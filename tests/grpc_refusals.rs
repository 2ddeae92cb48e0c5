//! gRPC clients see the gateway's refusals as gRPC statuses: a real client
//! (Python's grpcio) gets `grpc-status` and the decoded `grpc-message`
//! from a trailers-only HTTP 200, not a transport error over a 401.

mod support;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::process::Command;

use authgear_gateway::commands::devissuer::DevIssuer;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Body as _;
use hyper::body::{Frame, Incoming};
use serde_json::{json, Value};
use support::front::*;
use support::*;

/// An h2c upstream answering every call with one message and status 0.
async fn grpc_upstream() -> SocketAddr {
    spawn_server(None, |req: Request<Incoming>| async move {
        let _ = read_all(req.into_body()).await;
        let mut t = HeaderMap::new();
        t.insert("grpc-status", HeaderValue::from_static("0"));
        let frames = Frames(VecDeque::from([Frame::data(Bytes::from_static(b"\0\0\0\0\x05reply")), Frame::trailers(t)]));
        let mut r = http::Response::new(frames.boxed());
        r.headers_mut().insert("content-type", HeaderValue::from_static("application/grpc"));
        r
    })
    .await
}

/// One call with grpcio: (status code, details, reply hex).
fn grpc_call(gw: &Gw, method: &str, token: Option<&str>) -> (u64, String, String) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/servers/grpc_call.py");
    let mut cmd = Command::new(support::tools::python());
    cmd.arg(script).arg(gw.server.addr.to_string()).arg(method);
    if let Some(t) = token {
        cmd.arg(t);
    }
    let out = cmd.output().expect("python runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(text.trim()).unwrap_or_else(|_| panic!("grpc_call.py: {text}\n{}", String::from_utf8_lossy(&out.stderr)));
    (v["code"].as_u64().unwrap_or(99), v["details"].as_str().unwrap_or_default().to_owned(), v["reply"].as_str().unwrap_or_default().to_owned())
}

const ROUTES: &str = r#"
[[routes]]
path = "/pkg.Greeter/**"
auth = "required"

[[routes]]
path = "/pkg.Admin/**"
roles = ["admin"]
"#;

async fn grpc_gateway() -> (DevIssuer, Gw) {
    authgear_gateway::install_crypto_provider();
    let iss = DevIssuer::start().await.expect("issuer");
    let up = grpc_upstream().await;
    let text = public_config(&format!("http://{up}"), "", "protocol = \"h2c\"", &format!("[auth]\nissuer = \"{}\"\n{ROUTES}", iss.issuer));
    (iss, start_ready(&text).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_refusals_arrive_as_grpc_statuses_with_the_reason() {
    let (iss, gw) = grpc_gateway().await;
    let good = iss.mint("grpc-user", json!({}));
    let expired = iss.mint("grpc-user", json!({"exp": authgear_gateway::auth::now_unix() - 3600}));
    let cases: [(&str, Option<&str>, u64, &str); 5] = [
        ("/pkg.Greeter/SayHello", None, 16, "a bearer token is required"),
        ("/pkg.Greeter/SayHello", Some("not-a-jwt"), 16, ""),
        ("/pkg.Greeter/SayHello", Some(&expired), 16, ""),
        ("/pkg.Admin/Delete", Some(&good), 7, ""),
        ("/other.Service/Call", Some(&good), 12, "no route matches this request"),
    ];
    for (method, token, code, details) in cases {
        let (got, got_details, _) = tokio::task::block_in_place(|| grpc_call(&gw, method, token));
        assert_eq!(got, code, "{method} with {token:?}: {got_details}");
        assert!(!got_details.is_empty() && !got_details.contains("http2 header"), "{method}: the gateway's reason is lost: {got_details}");
        if !details.is_empty() {
            assert_eq!(got_details, details, "{method}");
        }
    }
    // Authorized calls still go through to the gRPC upstream.
    let (code, _, reply) = tokio::task::block_in_place(|| grpc_call(&gw, "/pkg.Greeter/SayHello", Some(&good)));
    assert_eq!((code, reply.as_str()), (0, "7265706c79"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_upstream_is_unavailable_to_grpc_clients() {
    authgear_gateway::install_crypto_provider();
    let closed = support::process::free_port();
    let text = public_config(&format!("http://127.0.0.1:{closed}"), "", "protocol = \"h2c\"", PUBLIC_ALL);
    let gw = start_gateway(&text).await;
    let (code, details, _) = tokio::task::block_in_place(|| grpc_call(&gw, "/pkg.Greeter/SayHello", None));
    assert_eq!(code, 14, "{details}");
    assert_eq!(details, "the upstream could not be reached");
}

#[tokio::test]
async fn the_refusal_is_trailers_only_http_200() {
    let (_iss, gw) = grpc_gateway().await;
    let mut client = h2_client(tokio::net::TcpStream::connect(gw.server.addr).await.expect("connect")).await;
    let req = Request::post(format!("http://{}/pkg.Greeter/SayHello", gw.server.addr))
        .header("content-type", "application/grpc+proto")
        .header("te", "trailers")
        .body(full(Bytes::from_static(b"\0\0\0\0\x05hello")))
        .unwrap();
    let resp = client.send_request(req).await.expect("response");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/grpc");
    assert_eq!(resp.headers()["grpc-status"], "16");
    assert_eq!(resp.headers()["grpc-message"], "a bearer token is required");
    assert!(resp.headers().contains_key("www-authenticate"));
    assert!(resp.body().is_end_stream(), "the header block must end the stream");
    let (data, trailers) = read_all(resp.into_body()).await;
    assert!(data.is_empty() && trailers.is_none());

    // Not gRPC: the plain HTTP refusal, unchanged.
    let req = Request::post(format!("http://{}/pkg.Greeter/SayHello", gw.server.addr)).header("content-type", "application/json").body(full("{}")).unwrap();
    let resp = client.send_request(req).await.expect("response");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.headers().get("grpc-status").is_none());
}

//! A real OTLP trace receiver for tests: one listener on 127.0.0.1 that
//! answers OTLP/HTTP (`POST /v1/traces`, protobuf) and OTLP/gRPC
//! (`TraceService/Export` over h2c), decoding each body as the
//! collector's `ExportTraceServiceRequest` and keeping the raw bytes too.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message;

/// One received span, flattened with its resource's `service.name`.
#[derive(Debug, Clone)]
pub struct Span {
    pub service: String,
    pub name: String,
    /// `SpanKind` as the protocol numbers it (2 server, 3 client, 1 internal).
    pub kind: i32,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub attributes: Vec<(String, String)>,
    /// `Status.code`: 0 unset, 1 ok, 2 error.
    pub status: i32,
}

impl Span {
    /// An attribute's value as text.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// Which protocol delivered an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Http,
    Grpc,
}

#[derive(Default)]
struct Received {
    spans: Vec<Span>,
    raw: Vec<u8>,
    exports: Vec<Via>,
}

/// The receiver; its address takes both protocols.
pub struct Receiver {
    pub addr: SocketAddr,
    got: Arc<Mutex<Received>>,
}

impl Receiver {
    /// Starts listening on an OS-assigned port.
    pub async fn start() -> Receiver {
        let listener = authgear_gateway::runtime::net::bind_loopback().expect("bind receiver");
        let addr = listener.local_addr().expect("addr");
        let got: Arc<Mutex<Received>> = Arc::default();
        let g = got.clone();
        tokio::spawn(async move {
            let builder = auto::Builder::new(TokioExecutor::new());
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let g2 = g.clone();
                let svc = service_fn(move |req: Request<Incoming>| {
                    let g3 = g2.clone();
                    async move { Ok::<_, Infallible>(answer(req, &g3).await) }
                });
                tokio::spawn(builder.serve_connection(TokioIo::new(stream), svc).into_owned());
            }
        });
        Receiver { addr, got }
    }

    /// The OTLP/HTTP traces URL.
    pub fn http_url(&self) -> String {
        format!("http://{}/v1/traces", self.addr)
    }

    /// The OTLP/gRPC endpoint.
    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Span> {
        self.got.lock().unwrap().spans.clone()
    }

    /// Every export body received, concatenated (for "never a token").
    pub fn raw(&self) -> Vec<u8> {
        self.got.lock().unwrap().raw.clone()
    }

    /// The protocol of each export received.
    pub fn exports(&self) -> Vec<Via> {
        self.got.lock().unwrap().exports.clone()
    }

    /// Polls until `n` spans of `trace_id` arrived (fails after 10 s).
    pub async fn wait_for_trace(&self, trace_id: &str, n: usize) -> Vec<Span> {
        for _ in 0..1000 {
            let spans: Vec<Span> = self.spans().into_iter().filter(|s| s.trace_id == trace_id).collect();
            if spans.len() >= n {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("fewer than {n} spans of trace {trace_id} arrived: {:#?}", self.spans());
    }
}

async fn answer(req: Request<Incoming>, got: &Mutex<Received>) -> Response<http_body_util::combinators::BoxBody<Bytes, Infallible>> {
    let grpc = req.headers().get(http::header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    let path = req.uri().path().to_owned();
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    if grpc {
        // A gRPC message: 1 byte "compressed" flag, 4 bytes length, message.
        let mut b = body.clone();
        let ok = path == "/opentelemetry.proto.collector.trace.v1.TraceService/Export" && b.len() >= 5 && b.get_u8() == 0 && b.get_u32() as usize == b.len();
        if ok {
            record(got, &b, Via::Grpc);
        }
        let mut msg = vec![0u8];
        let reply = ExportTraceServiceResponse::default().encode_to_vec();
        msg.extend_from_slice(&(reply.len() as u32).to_be_bytes());
        msg.extend_from_slice(&reply);
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static(if ok { "0" } else { "3" }));
        let frames = vec![Ok::<_, Infallible>(Frame::data(Bytes::from(msg))), Ok(Frame::trailers(trailers))];
        let body = StreamBody::new(futures_stream(frames)).boxed();
        return Response::builder().header("content-type", "application/grpc").body(body).unwrap();
    }
    if path != "/v1/traces" {
        return Response::builder().status(StatusCode::NOT_FOUND).body(Full::new(Bytes::new()).boxed()).unwrap();
    }
    record(got, &body, Via::Http);
    let reply = ExportTraceServiceResponse::default().encode_to_vec();
    Response::builder().header("content-type", "application/x-protobuf").body(Full::new(Bytes::from(reply)).boxed()).unwrap()
}

fn record(got: &Mutex<Received>, body: &[u8], via: Via) {
    let Ok(req) = ExportTraceServiceRequest::decode(body) else { return };
    let mut g = got.lock().unwrap();
    g.raw.extend_from_slice(body);
    g.exports.push(via);
    for rs in req.resource_spans {
        let service = rs.resource.as_ref().and_then(|r| r.attributes.iter().find(|a| a.key == "service.name")).map(text).unwrap_or_default();
        for ss in rs.scope_spans {
            for s in ss.spans {
                g.spans.push(Span {
                    service: service.clone(),
                    name: s.name,
                    kind: s.kind,
                    trace_id: hex(&s.trace_id),
                    span_id: hex(&s.span_id),
                    parent_span_id: hex(&s.parent_span_id),
                    attributes: s.attributes.iter().map(|a| (a.key.clone(), text(a))).collect(),
                    status: s.status.map_or(0, |st| st.code),
                });
            }
        }
    }
}

fn text(a: &KeyValue) -> String {
    match a.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A stream over ready frames, without a stream crate.
fn futures_stream<T: Unpin>(items: Vec<T>) -> impl futures_core::Stream<Item = T> {
    struct Iter<T>(std::collections::VecDeque<T>);
    impl<T: Unpin> futures_core::Stream for Iter<T> {
        type Item = T;
        fn poll_next(mut self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<Option<T>> {
            std::task::Poll::Ready(self.0.pop_front())
        }
    }
    Iter(items.into())
}

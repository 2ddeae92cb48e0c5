//! OpenTelemetry traces: the OTLP exporter's lifecycle ([`Tracing`]), the
//! request's server span and the child spans the stages open under it
//! ([`Child`]). Off unless `[tracing] enabled = true`; when off, nothing
//! here runs past one relaxed load, and `traceparent` passes untouched.
//!
//! The request's span travels as the ambient OpenTelemetry [`Context`] of
//! the request's future (attached on every poll), so a stage deep below the
//! pipeline (a JWKS fetch, a resolver call) opens its child span without
//! being handed anything. The context also carries the tracer, so two
//! gateways in one process (tests, benches) each export to their own place.
//!
//! Attributes follow the OpenTelemetry HTTP semantic conventions; query
//! strings, cookies, `Authorization` and token material are never recorded.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::future::Either;
use http::{HeaderMap, Method, Version};
use opentelemetry::context::{FutureExt as _, WithContext};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_otlp::{SpanExporter, WithExportConfig as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::{BatchConfigBuilder, Sampler, SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;

pub use opentelemetry::trace::SpanKind as Kind;

/// How spans reach the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OtlpProtocol {
    /// OTLP/HTTP with protobuf bodies (`POST .../v1/traces`), port 4318.
    #[default]
    HttpProtobuf,
    /// OTLP/gRPC (`TraceService/Export`), port 4317.
    Grpc,
}

/// Which requests are recorded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplerSettings {
    /// Fraction of new traces recorded, 0.0 to 1.0 (by trace id).
    pub ratio: f64,
    /// Follow the caller's sampled flag when a `traceparent` came in.
    pub parent_based: bool,
}

/// The compiled `[tracing]` section (OTEL_* variables already applied).
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSettings {
    pub enabled: bool,
    pub protocol: OtlpProtocol,
    /// The full URL spans are sent to (for HTTP, ending in `/v1/traces`).
    pub endpoint: String,
    pub sampler: SamplerSettings,
    pub service_name: String,
    /// One export's deadline.
    pub timeout: Duration,
    /// How long finished spans wait to be sent in one batch.
    pub export_delay: Duration,
}

impl Default for TraceSettings {
    fn default() -> Self {
        TraceSettings {
            enabled: false,
            protocol: OtlpProtocol::HttpProtobuf,
            endpoint: "http://localhost:4318/v1/traces".into(),
            sampler: SamplerSettings { ratio: 1.0, parent_based: true },
            service_name: "authgear-gateway".into(),
            timeout: Duration::from_secs(10),
            export_delay: Duration::from_secs(5),
        }
    }
}

/// True once any gateway in the process started tracing: until then the
/// stages' [`Child::start`] is one relaxed load and nothing else.
static ANY_TRACING: AtomicBool = AtomicBool::new(false);

/// The running exporter and the tracer the request spans come from.
pub struct Tracing {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    propagator: TraceContextPropagator,
}

/// Kept in the request's context so stages below find the tracer.
#[derive(Clone)]
struct TracerHandle(SdkTracer);

impl Tracing {
    /// Starts the OTLP exporter (batched, on the current Tokio runtime);
    /// `Ok(None)` when tracing is off. Call from inside the runtime.
    pub fn start(s: &TraceSettings) -> Result<Option<Tracing>, String> {
        if !s.enabled {
            return Ok(None);
        }
        let exporter = match s.protocol {
            OtlpProtocol::HttpProtobuf => SpanExporter::builder().with_http().with_endpoint(&s.endpoint).with_timeout(s.timeout).build(),
            OtlpProtocol::Grpc => SpanExporter::builder().with_tonic().with_endpoint(&s.endpoint).with_timeout(s.timeout).build(),
        }
        .map_err(|e| format!("tracing: cannot build the OTLP exporter for {}: {e}", s.endpoint))?;
        let batch = BatchConfigBuilder::default().with_scheduled_delay(s.export_delay).build();
        let processor = BatchSpanProcessor::builder(exporter, opentelemetry_sdk::runtime::Tokio).with_batch_config(batch).build();
        let ratio = Sampler::TraceIdRatioBased(s.sampler.ratio);
        let sampler = if s.sampler.parent_based { Sampler::ParentBased(Box::new(ratio)) } else { ratio };
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(sampler)
            .with_resource(Resource::builder().with_service_name(s.service_name.clone()).build())
            .build();
        let tracer = provider.tracer("authgear-gateway");
        ANY_TRACING.store(true, Ordering::Relaxed);
        tracing::info!(endpoint = %s.endpoint, protocol = ?s.protocol, ratio = s.sampler.ratio, "exporting OpenTelemetry traces");
        Ok(Some(Tracing { provider, tracer, propagator: TraceContextPropagator::new() }))
    }

    /// Sends the spans still queued and stops the exporter. Blocking work,
    /// so it runs beside the runtime's workers rather than on one.
    pub async fn shutdown(&self) {
        let provider = self.provider.clone();
        let done = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        if let Ok(Err(e)) = done {
            tracing::warn!(error = %e, "tracing: the last spans could not be exported");
        }
    }

    /// Sends the spans queued so far and waits for the collector's answer.
    pub async fn flush(&self) {
        let provider = self.provider.clone();
        let _ = tokio::task::spawn_blocking(move || provider.force_flush()).await;
    }

    /// Opens the server span of one request, continuing the caller's trace
    /// when its `traceparent` is valid. Named `{method}` until the route is
    /// known ([`RequestSpan::finish`] renames it).
    pub fn request_span(&self, headers: &HeaderMap, method: &Method, version: Version, scheme: &'static str, client: std::net::IpAddr) -> RequestSpan {
        let parent = self.propagator.extract(&HeaderExtractor(headers));
        let mut attrs = vec![
            KeyValue::new("http.request.method", semconv_method(method)),
            KeyValue::new("url.scheme", scheme),
            KeyValue::new("network.protocol.version", protocol_version(version)),
            KeyValue::new("client.address", client.to_string()),
        ];
        if let Some(host) = headers.get(http::header::HOST).and_then(|h| h.to_str().ok()) {
            let (name, port) = split_host(host);
            attrs.push(KeyValue::new("server.address", name.to_owned()));
            if let Some(p) = port {
                attrs.push(KeyValue::new("server.port", p));
            }
        }
        if let Some(ua) = headers.get(http::header::USER_AGENT).and_then(|h| h.to_str().ok()) {
            attrs.push(KeyValue::new("user_agent.original", ua.to_owned()));
        }
        let span =
            self.tracer.span_builder(semconv_method(method)).with_kind(SpanKind::Server).with_attributes(attrs).start_with_context(&self.tracer, &parent);
        let cx = parent.with_span(span).with_value(TracerHandle(self.tracer.clone()));
        RequestSpan { cx }
    }
}

impl Drop for Tracing {
    fn drop(&mut self) {
        // The SDK's shutdown blocks until the batch task answers, and that
        // task lives on a runtime thread: blocking one (a current-thread
        // runtime's only one, say) would never return. A thread of its own
        // waits instead; after `shutdown` it returns at once.
        let provider = self.provider.clone();
        let _ = std::thread::Builder::new().name("otel-shutdown".into()).spawn(move || provider.shutdown());
    }
}

/// The server span of one request; ended when dropped.
pub struct RequestSpan {
    cx: Context,
}

impl RequestSpan {
    /// Runs `fut` with this span as the parent of every span opened inside.
    ///
    /// Not an `async fn`: one would hold `fut` twice (the argument and the
    /// awaited copy), and the request's future is the largest there is.
    pub fn run<F: Future>(&self, fut: F) -> WithContext<F> {
        fut.with_context(self.cx.clone())
    }

    /// Records the outcome: the route (`http.route` is its path pattern),
    /// the judged path, the status, and the refusal reason for a refusal.
    pub fn finish(&self, method: &Method, route: Option<(&str, &str)>, path: Option<&str>, status: u16, reason: Option<&'static str>, request_id: &str) {
        let span = self.cx.span();
        if let Some((name, pattern)) = route {
            span.update_name(format!("{} {pattern}", semconv_method(method)));
            span.set_attribute(KeyValue::new("http.route", pattern.to_owned()));
            span.set_attribute(KeyValue::new("authgear_gateway.route", name.to_owned()));
        }
        if let Some(p) = path {
            span.set_attribute(KeyValue::new("url.path", p.to_owned()));
        }
        span.set_attribute(KeyValue::new("http.response.status_code", i64::from(status)));
        span.set_attribute(KeyValue::new("authgear_gateway.request_id", request_id.to_owned()));
        if let Some(r) = reason {
            span.set_attribute(KeyValue::new("authgear_gateway.refusal", r));
        }
        // Server spans: only 5xx is the server's error (semconv).
        if status >= 500 {
            span.set_attribute(KeyValue::new("error.type", status.to_string()));
            span.set_status(Status::error(reason.unwrap_or("server error")));
        }
    }
}

impl Drop for RequestSpan {
    fn drop(&mut self) {
        self.cx.span().end();
    }
}

/// A span a stage opens under the request's (token verification, a JWKS
/// fetch, a resolver call, the upstream call); ended when dropped. Without
/// a traced request around it every method is a no-op.
pub struct Child {
    cx: Option<Context>,
}

impl Child {
    /// Opens `name` as a child of the current request's span, if traced.
    pub fn start(name: &'static str, kind: SpanKind) -> Child {
        if !ANY_TRACING.load(Ordering::Relaxed) {
            return Child { cx: None };
        }
        let parent = Context::current();
        let Some(TracerHandle(tracer)) = parent.get::<TracerHandle>().cloned() else { return Child { cx: None } };
        let span = tracer.span_builder(name).with_kind(kind).start_with_context(&tracer, &parent);
        Child { cx: Some(parent.with_span(span)) }
    }

    /// An HTTP client span (`{method}`, kind client) for a call to `url`;
    /// the query is left out (it may carry secrets).
    pub fn http_client(method: &Method, uri: &http::Uri) -> Child {
        let c = Child::start(semconv_method(method), SpanKind::Client);
        if c.cx.is_some() {
            c.set("http.request.method", semconv_method(method));
            c.set_url(uri);
        }
        c
    }

    /// The hook for refreshing the gateway's own browser session (the
    /// login flow, issue 16): open it around the refresh call.
    pub fn session_refresh() -> Child {
        Child::start("session refresh", SpanKind::Internal)
    }

    /// True when the request is traced (sampled or not): worth building
    /// an attribute's value for.
    pub fn is_active(&self) -> bool {
        self.cx.is_some()
    }

    /// True when this span records (its request is traced and sampled).
    pub fn is_recording(&self) -> bool {
        self.cx.as_ref().is_some_and(|c| c.span().is_recording())
    }

    /// Sets one attribute.
    pub fn set(&self, key: &'static str, value: impl Into<Value>) {
        if let Some(cx) = &self.cx {
            cx.span().set_attribute(KeyValue::new(key, value));
        }
    }

    /// `url.full`, `server.address` and `server.port` of a client call,
    /// without the query or any user info.
    pub fn set_url(&self, uri: &http::Uri) {
        let Some(cx) = &self.cx else { return };
        let span = cx.span();
        if let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host()) {
            let port = uri.port_u16().unwrap_or(if scheme == "https" { 443 } else { 80 });
            span.set_attribute(KeyValue::new("url.full", format!("{scheme}://{host}:{port}{}", uri.path())));
            span.set_attribute(KeyValue::new("server.address", host.to_owned()));
            span.set_attribute(KeyValue::new("server.port", i64::from(port)));
        }
    }

    /// The answer's status; 4xx and 5xx mark a client span failed.
    pub fn set_status_code(&self, status: u16) {
        self.set("http.response.status_code", i64::from(status));
        if status >= 400 {
            self.fail(status.to_string(), "error status");
        }
    }

    /// Marks the span failed: `error.type` and an error status.
    pub fn fail(&self, error_type: impl Into<Value>, description: &'static str) {
        if let Some(cx) = &self.cx {
            let span = cx.span();
            span.set_attribute(KeyValue::new("error.type", error_type));
            span.set_status(Status::error(description));
        }
    }

    /// Writes `traceparent` (and `tracestate`) naming this span as the
    /// parent, replacing what the client sent. Untouched when not traced.
    pub fn inject(&self, headers: &mut HeaderMap) {
        if let Some(cx) = &self.cx {
            TraceContextPropagator::new().inject_context(cx, &mut HeaderInjector(headers));
        }
    }

    /// Runs `fut` with this span as the parent of the spans opened inside
    /// (not an `async fn`, for the reason given at [`RequestSpan::run`]).
    pub fn run<F: Future>(&self, fut: F) -> Either<WithContext<F>, F> {
        match &self.cx {
            Some(cx) => Either::Left(fut.with_context(cx.clone())),
            None => Either::Right(fut),
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Some(cx) = &self.cx {
            cx.span().end();
        }
    }
}

/// `fut`, carrying the current request's span into a task it is spawned
/// as (a shared lookup outlives the request that started it).
pub fn carry<F: Future>(fut: F) -> Either<WithContext<F>, F> {
    let cx = ANY_TRACING.load(Ordering::Relaxed).then(Context::current).filter(|c| c.get::<TracerHandle>().is_some());
    match cx {
        Some(cx) => Either::Left(fut.with_context(cx)),
        None => Either::Right(fut),
    }
}

/// The semconv spelling of a method: a known one as is, others `_OTHER`
/// (an unbounded name would make span names unbounded).
fn semconv_method(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "_OTHER",
    }
}

fn protocol_version(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

/// `host[:port]` (an IPv6 literal in brackets) into its two parts.
fn split_host(host: &str) -> (&str, Option<i64>) {
    let (name, port) = match host.rfind(':') {
        Some(i) if !host[i..].contains(']') => (&host[..i], host[i + 1..].parse().ok()),
        _ => (host, None),
    };
    (name.trim_start_matches('[').trim_end_matches(']'), port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port_are_split_as_semconv_wants() {
        assert_eq!(split_host("api.example.com:8443"), ("api.example.com", Some(8443)));
        assert_eq!(split_host("api.example.com"), ("api.example.com", None));
        assert_eq!(split_host("[::1]:80"), ("::1", Some(80)));
        assert_eq!(split_host("[::1]"), ("::1", None));
    }

    #[test]
    fn an_untraced_child_is_inert_and_leaves_traceparent_alone() {
        let c = Child::start("x", SpanKind::Internal);
        assert!(!c.is_recording());
        let mut h = HeaderMap::new();
        h.insert("traceparent", http::HeaderValue::from_static("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"));
        c.inject(&mut h);
        assert_eq!(h.get("traceparent").map(|v| v.as_bytes()), Some(&b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"[..]));
    }
}

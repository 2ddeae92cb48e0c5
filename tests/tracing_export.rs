//! OpenTelemetry traces, checked against a real OTLP receiver started here
//! (`support::otlp`: OTLP/HTTP protobuf and OTLP/gRPC): the span tree of a
//! request and its ids, the upstream seeing the gateway's span as parent in
//! `traceparent`, the semantic-convention attributes, and no token, cookie
//! or query text anywhere in what is exported. With tracing off,
//! `traceparent` passing untouched is pinned by `tests/observability.rs`.

mod support;

use std::sync::Arc;

use authgear_gateway::commands::devissuer::{DevIssuer, DevKey};
use authgear_gateway::observe::trace::OtlpProtocol;
use authgear_gateway::Config;
use http::StatusCode;
use serde_json::json;
use support::otlp::{Receiver, Span, Via};
use support::resolver::{Session, TestResolver};
use support::*;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
const SERVER: i32 = 2;
const CLIENT: i32 = 3;
const INTERNAL: i32 = 1;

fn tracing_section(endpoint: &str, protocol: &str, ratio: f64) -> String {
    format!("[tracing]\nenabled = true\nendpoint = \"{endpoint}\"\nprotocol = \"{protocol}\"\nsample_ratio = {ratio}\nservice_name = \"gw-under-test\"\nexport_delay = \"20ms\"\n")
}

const ROUTES_WITH_SESSION: &str = r#"
[[routes]]
path = "/api/**"

[[routes]]
path = "/web/**"
method = "session"
"#;

struct World {
    iss: DevIssuer,
    up: Upstream,
    otlp: Receiver,
    gw: Gw,
    res: TestResolver,
}

async fn world(protocol: &str, ratio: f64) -> World {
    authgear_gateway::install_crypto_provider();
    let iss = DevIssuer::start().await.expect("issuer");
    let up = Upstream::start().await;
    let otlp = Receiver::start().await;
    let res = TestResolver::start().await;
    let endpoint = if protocol == "grpc" { otlp.grpc_url() } else { otlp.http_url() };
    let rest = format!("{ROUTES_WITH_SESSION}\n{}", tracing_section(&endpoint, protocol, ratio));
    let gw = start_ready(&config_text(&iss, up.addr, &format!("resolver_url = \"{}\"", res.url()), &rest)).await;
    World { iss, up, otlp, gw, res }
}

fn traceparent(span: &str) -> String {
    format!("00-{TRACE_ID}-{span}-01")
}

fn one<'a>(spans: &'a [Span], kind: i32, name_prefix: &str) -> &'a Span {
    let found: Vec<&Span> = spans.iter().filter(|s| s.kind == kind && s.name.starts_with(name_prefix)).collect();
    assert_eq!(found.len(), 1, "expected one span `{name_prefix}`* of kind {kind}: {spans:#?}");
    found[0]
}

fn assert_no_secret(otlp: &Receiver, secrets: &[&str]) {
    let raw = otlp.raw();
    assert!(!raw.is_empty(), "nothing was exported");
    for s in secrets {
        assert!(!raw.windows(s.len()).any(|w| w == s.as_bytes()), "`{s}` appears in the exported spans");
    }
}

#[tokio::test]
async fn a_request_is_a_server_span_continuing_the_callers_trace_with_its_steps_as_children() {
    let w = world("http/protobuf", 1.0).await;
    let token = w.iss.mint("user-7", json!({}));
    let auth = format!("Bearer {token}");
    let tp = traceparent(CALLER_SPAN);
    let a = send(
        "GET",
        &w.gw.url("/api/orders?access_token=query-secret-1"),
        &[("authorization", &auth), ("traceparent", &tp), ("cookie", "session=cookie-secret-2"), ("user-agent", "trace-test/1")],
        b"",
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);

    let spans = w.otlp.wait_for_trace(TRACE_ID, 3).await;
    let server = one(&spans, SERVER, "GET");
    let verify = one(&spans, INTERNAL, "verify token");
    let call = one(&spans, CLIENT, "GET");
    assert_eq!(server.service, "gw-under-test");
    assert_eq!(server.parent_span_id, CALLER_SPAN, "the server span continues the caller's trace");
    assert_eq!(verify.parent_span_id, server.span_id);
    assert_eq!(call.parent_span_id, server.span_id);

    // The upstream's traceparent names the gateway's upstream call as parent.
    let seen = w.up.last();
    let up_tp = seen.headers.get("traceparent").and_then(|v| v.to_str().ok()).expect("upstream got a traceparent");
    assert_eq!(up_tp, format!("00-{TRACE_ID}-{}-01", call.span_id));
    assert_eq!(seen.headers.get_all("traceparent").iter().count(), 1);

    assert_eq!(server.name, "GET /api/**");
    assert_eq!(server.attr("http.request.method"), Some("GET"));
    assert_eq!(server.attr("http.route"), Some("/api/**"));
    assert_eq!(server.attr("url.path"), Some("/api/orders"));
    assert_eq!(server.attr("url.scheme"), Some("http"));
    assert_eq!(server.attr("http.response.status_code"), Some("200"));
    assert_eq!(server.attr("network.protocol.version"), Some("1.1"));
    assert_eq!(server.attr("user_agent.original"), Some("trace-test/1"));
    assert_eq!(server.attr("client.address"), Some("127.0.0.1"));
    assert_eq!(server.status, 0, "a 200 leaves the status unset");
    assert_eq!(verify.attr("authgear_gateway.token.outcome"), Some("ok"));
    assert_eq!(verify.attr("authgear_gateway.token.issuer"), Some(w.iss.issuer.as_str()));
    assert_eq!(call.attr("http.response.status_code"), Some("200"));
    assert_eq!(call.attr("server.address"), Some("127.0.0.1"));
    assert_eq!(call.attr("server.port"), Some(w.up.addr.port().to_string().as_str()));
    assert_eq!(call.attr("url.full"), Some(format!("http://127.0.0.1:{}/api/orders", w.up.addr.port()).as_str()));

    let signature = token.rsplit('.').next().unwrap_or_default();
    assert_no_secret(&w.otlp, &[&token, signature, "query-secret-1", "cookie-secret-2", "access_token"]);
}

#[tokio::test]
async fn a_key_fetch_for_an_unknown_kid_is_a_child_of_token_verification() {
    let w = world("http/protobuf", 1.0).await;
    // Signed by a key the JWKS does not publish: one refetch, then 401.
    w.iss.sign_with(Arc::new(DevKey::rsa("key-unpublished")));
    let token = w.iss.mint("user-8", json!({}));
    let a = send("GET", &w.gw.url("/api/x"), &[("authorization", &format!("Bearer {token}")), ("traceparent", &traceparent(CALLER_SPAN))], b"").await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);

    let spans = w.otlp.wait_for_trace(TRACE_ID, 3).await;
    let server = one(&spans, SERVER, "GET");
    let verify = one(&spans, INTERNAL, "verify token");
    let fetch = one(&spans, CLIENT, "GET");
    assert_eq!(verify.parent_span_id, server.span_id);
    assert_eq!(fetch.parent_span_id, verify.span_id, "the JWKS fetch ran for this token");
    assert_eq!(fetch.attr("url.full"), Some(w.iss.jwks_uri().as_str()));
    assert_eq!(fetch.attr("http.response.status_code"), Some("200"));
    assert_eq!(verify.attr("authgear_gateway.token.outcome"), Some("unknown_kid"));
    assert_eq!(verify.status, 2, "a refused token marks its span failed");
    assert_eq!(server.attr("http.response.status_code"), Some("401"));
    assert_eq!(server.attr("authgear_gateway.refusal"), Some("unknown_kid"));
    assert_eq!(server.status, 0, "a 4xx is the client's error, not the server span's");
    assert_no_secret(&w.otlp, &[&token, token.rsplit('.').next().unwrap_or_default()]);
}

#[tokio::test]
async fn a_resolver_call_is_a_child_span_without_the_cookie() {
    let w = world("http/protobuf", 1.0).await;
    w.res.add("cookie-secret-3", Session::user("u-9"));
    let a = send("GET", &w.gw.url("/web/home"), &[("cookie", "session=cookie-secret-3"), ("traceparent", &traceparent(CALLER_SPAN))], b"").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);

    let spans = w.otlp.wait_for_trace(TRACE_ID, 3).await;
    let server = one(&spans, SERVER, "GET");
    let calls: Vec<&Span> = spans.iter().filter(|s| s.kind == CLIENT).collect();
    let resolver = calls.iter().find(|s| s.attr("authgear_gateway.call") == Some("session_resolver")).expect("a resolver span");
    assert_eq!(resolver.parent_span_id, server.span_id, "the shared lookup task still reports under the request");
    assert_eq!(resolver.attr("url.full"), Some(w.res.url().as_str()));
    assert_eq!(resolver.attr("http.response.status_code"), Some("200"));
    assert_no_secret(&w.otlp, &["cookie-secret-3"]);
}

#[tokio::test]
async fn spans_also_travel_over_otlp_grpc() {
    let w = world("grpc", 1.0).await;
    let token = w.iss.mint("user-10", json!({}));
    let a = send("GET", &w.gw.url("/api/grpc"), &[("authorization", &format!("Bearer {token}")), ("traceparent", &traceparent(CALLER_SPAN))], b"").await;
    assert_eq!(a.status, StatusCode::OK);
    let spans = w.otlp.wait_for_trace(TRACE_ID, 3).await;
    let server = one(&spans, SERVER, "GET");
    assert_eq!(one(&spans, CLIENT, "GET").parent_span_id, server.span_id);
    assert!(w.otlp.exports().iter().all(|v| *v == Via::Grpc), "{:?}", w.otlp.exports());
    assert_no_secret(&w.otlp, &[&token]);
}

#[tokio::test]
async fn a_new_trace_starts_at_the_gateway_when_no_traceparent_came() {
    let w = world("http/protobuf", 1.0).await;
    let token = w.iss.mint("user-11", json!({}));
    let a = send("GET", &w.gw.url("/api/root"), &[("authorization", &format!("Bearer {token}"))], b"").await;
    assert_eq!(a.status, StatusCode::OK);
    let up_tp = w.up.last().headers.get("traceparent").and_then(|v| v.to_str().ok()).map(str::to_owned).expect("a traceparent upstream");
    let parts: Vec<&str> = up_tp.split('-').collect();
    assert_eq!(parts.len(), 4, "{up_tp}");
    let spans = w.otlp.wait_for_trace(parts[1], 3).await;
    let server = one(&spans, SERVER, "GET");
    assert_eq!(server.parent_span_id, "", "the gateway's span is the root");
    assert_eq!(one(&spans, CLIENT, "GET").span_id, parts[2]);
}

#[tokio::test]
async fn with_sampling_zero_nothing_is_exported_and_the_upstream_learns_it_is_unsampled() {
    let w = world("http/protobuf", 0.0).await;
    let token = w.iss.mint("user-12", json!({}));
    let a = send("GET", &w.gw.url("/api/quiet"), &[("authorization", &format!("Bearer {token}"))], b"").await;
    assert_eq!(a.status, StatusCode::OK);
    let up_tp = w.up.last().headers.get("traceparent").and_then(|v| v.to_str().ok()).map(str::to_owned).expect("a traceparent upstream");
    assert!(up_tp.starts_with("00-") && up_tp.ends_with("-00"), "unsampled flag: {up_tp}");
    w.gw.server.gateway.tracing().expect("tracing on").flush().await;
    assert!(w.otlp.spans().is_empty(), "{:#?}", w.otlp.spans());

    // Parent-based by default: a caller that sampled is followed.
    let a = send("GET", &w.gw.url("/api/followed"), &[("authorization", &format!("Bearer {token}")), ("traceparent", &traceparent(CALLER_SPAN))], b"").await;
    assert_eq!(a.status, StatusCode::OK);
    w.otlp.wait_for_trace(TRACE_ID, 3).await;
}

#[test]
fn the_file_wins_over_otel_variables_which_win_over_defaults() {
    let env = |k: &str| {
        match k {
            "OTEL_EXPORTER_OTLP_ENDPOINT" => Some("http://collector:4318/"),
            "OTEL_TRACES_SAMPLER" => Some("parentbased_traceidratio"),
            "OTEL_TRACES_SAMPLER_ARG" => Some("0.25"),
            "OTEL_SERVICE_NAME" => Some("from-env"),
            _ => None,
        }
        .map(str::to_owned)
    };
    let base = "[upstream]\nurl = \"http://127.0.0.1:9\"\n[auth]\nissuer = \"https://x.authgear.cloud\"\n[[routes]]\npath = \"/**\"\n";
    let c = Config::from_toml_with_env(&format!("{base}[tracing]\nenabled = true\n"), "t.toml", &env).expect("valid");
    assert!(c.tracing.enabled);
    assert_eq!(c.tracing.endpoint, "http://collector:4318/v1/traces");
    assert_eq!(c.tracing.protocol, OtlpProtocol::HttpProtobuf);
    assert_eq!((c.tracing.sampler.ratio, c.tracing.sampler.parent_based), (0.25, true));
    assert_eq!(c.tracing.service_name, "from-env");

    let c = Config::from_toml_with_env(
        &format!("{base}[tracing]\nenabled = true\nendpoint = \"http://127.0.0.1:4317\"\nprotocol = \"grpc\"\nsample_ratio = 1.0\nparent_based = false\nservice_name = \"edge\"\n"),
        "t.toml",
        &env,
    )
    .expect("valid");
    assert_eq!(c.tracing.endpoint, "http://127.0.0.1:4317");
    assert_eq!(c.tracing.protocol, OtlpProtocol::Grpc);
    assert_eq!((c.tracing.sampler.ratio, c.tracing.sampler.parent_based), (1.0, false));
    assert_eq!(c.tracing.service_name, "edge");

    let off = Config::from_toml_with_env(base, "t.toml", &env).expect("valid");
    assert!(!off.tracing.enabled, "off unless the file turns it on");
    let disabled = |k: &str| (k == "OTEL_SDK_DISABLED").then(|| "true".to_owned());
    assert!(!Config::from_toml_with_env(&format!("{base}[tracing]\nenabled = true\n"), "t.toml", &disabled).expect("valid").tracing.enabled);
}

#[test]
fn bad_tracing_values_are_refused_with_key_and_line() {
    let base = "[upstream]\nurl = \"http://127.0.0.1:9\"\n[auth]\nissuer = \"https://x.authgear.cloud\"\n[[routes]]\npath = \"/**\"\n";
    let text = format!("{base}[tracing]\nenabled = true\nprotocol = \"http/json\"\nsample_ratio = 1.5\nendpoint = \"collector:4318\"\n");
    let Err(diags) = Config::from_toml_with_env(&text, "t.toml", &|_| None) else { panic!("bad [tracing] values were accepted") };
    let err = diags.to_string();
    for (key, line) in [("tracing.protocol", 9), ("tracing.sample_ratio", 10), ("tracing.endpoint", 11)] {
        assert!(err.contains(key) && err.contains(&format!(":{line}:")), "`{key}` at line {line} in:\n{err}");
    }
}

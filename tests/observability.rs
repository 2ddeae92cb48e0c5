//! What operators see: Prometheus metrics that move as they should, one JSON
//! access-log line per request with no secret in it, and request ids.

mod support;

use std::collections::HashMap;

use authgear_gateway::commands::devissuer::DevIssuer;
use http::StatusCode;
use serde_json::{json, Value};
use support::*;

async fn scrape(gw: &Gw) -> prometheus_parse::Scrape {
    let (s, a) = get(&format!("{}/metrics", gw.admin), &[]).await;
    assert_eq!(s, StatusCode::OK);
    assert!(a.header("content-type").unwrap_or_default().starts_with("text/plain"));
    prometheus_parse::Scrape::parse(a.body.lines().map(|l| Ok(l.to_owned()))).expect("valid Prometheus text")
}

fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Histogram(ref h) => h.iter().map(|c| c.count).fold(0.0, f64::max),
            _ => 0.0,
        })
        .sum()
}

#[tokio::test]
async fn metrics_count_requests_tokens_keys_and_reloads() {
    authgear_gateway::install_crypto_provider();
    let iss = DevIssuer::start().await.unwrap();
    let up = Upstream::start().await;
    let tag = format!("obs{}", rand::random::<u32>());
    let routes = format!(
        r#"
[[routes]]
name = "{tag}-public"
path = "/public/**"
auth = "public"
[[routes]]
name = "{tag}-admin"
path = "/admin/**"
roles = ["admin"]
[[routes]]
name = "{tag}-api"
path = "/api/**"
"#
    );
    let gw = start_ready(&config_text(&iss, up.addr, "", &routes)).await;
    let before = scrape(&gw).await;
    let ok_tokens_before = value(&before, "authgear_gateway_token_verifications_total", &[("result", "ok")]);
    let expired_before = value(&before, "authgear_gateway_token_verifications_total", &[("result", "expired")]);

    let good = iss.mint("u", json!({}));
    let expired = iss.mint("u", json!({"exp": authgear_gateway::auth::now_unix() - 3600}));
    for _ in 0..3 {
        assert_eq!(get(&gw.url("/public/a"), &[]).await.0, StatusCode::OK);
    }
    assert_eq!(get_with(&gw.url("/api/a"), &good).await.status, StatusCode::OK);
    assert_eq!(get_with(&gw.url("/api/a"), &good).await.status, StatusCode::OK);
    assert_eq!(get_with(&gw.url("/api/a"), &expired).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(get(&gw.url("/api/a"), &[]).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(get_with(&gw.url("/admin/a"), &good).await.status, StatusCode::FORBIDDEN);
    assert_eq!(send("POST", &gw.url("/public/a"), &[], b"x").await.status, StatusCode::OK);
    assert_eq!(get(&gw.url("/nowhere"), &[]).await.0, StatusCode::NOT_FOUND);

    let after = scrape(&gw).await;
    let req = |route: &str, method: &str, outcome: &str| {
        value(&after, "authgear_gateway_requests_total", &[("route", &format!("{tag}-{route}")), ("method", method), ("outcome", outcome)])
    };
    assert_eq!(req("public", "GET", "forwarded"), 3.0);
    assert_eq!(req("public", "POST", "forwarded"), 1.0);
    assert_eq!(req("api", "GET", "forwarded"), 2.0);
    assert_eq!(req("api", "GET", "unauthorized"), 2.0);
    assert_eq!(req("admin", "GET", "forbidden"), 1.0);
    assert!(value(&after, "authgear_gateway_requests_total", &[("route", "(none)"), ("outcome", "not_found")]) >= 1.0);
    assert_eq!(value(&after, "authgear_gateway_token_verifications_total", &[("result", "ok")]) - ok_tokens_before, 3.0);
    assert_eq!(value(&after, "authgear_gateway_token_verifications_total", &[("result", "expired")]) - expired_before, 1.0);
    assert_eq!(value(&after, "authgear_gateway_jwks_keys", &[("issuer", &iss.issuer)]), 1.0);
    assert!(value(&after, "authgear_gateway_jwks_key_age_seconds", &[("issuer", &iss.issuer)]) >= 0.0);
    assert!(value(&after, "authgear_gateway_jwks_fetches_total", &[("issuer", &iss.issuer), ("result", "ok")]) >= 1.0);
    assert!(value(&after, "authgear_gateway_upstream_duration_seconds_count", &[("upstream", "default")]) >= 6.0);
    assert!(value(&after, "authgear_gateway_gateway_duration_seconds_count", &[]) >= 10.0);
    assert!(value(&after, "authgear_gateway_open_connections", &[]) >= 0.0);
    // Label values come from the config, never from client input.
    let routes: Vec<&str> = after.samples.iter().filter_map(|s| s.labels.get("route")).collect();
    assert!(routes.iter().all(|r| !r.contains("nowhere")));
}

#[tokio::test]
async fn request_ids_are_generated_kept_or_replaced_and_trace_context_passes() {
    let (_iss, up, gw) = setup().await;
    let a = send(
        "GET",
        &gw.url("/public/x"),
        &[("x-request-id", "req-42.abc"), ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), ("tracestate", "vendor=x")],
        b"",
    )
    .await;
    assert_eq!(a.header("x-request-id"), Some("req-42.abc"));
    let seen = up.last();
    assert_eq!(seen.headers["x-request-id"], "req-42.abc");
    assert_eq!(seen.headers["traceparent"], "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    assert_eq!(seen.headers["tracestate"], "vendor=x");

    let a = send("GET", &gw.url("/public/x"), &[], b"").await;
    let generated = a.header("x-request-id").expect("generated id").to_owned();
    assert_eq!(generated.len(), 32);
    assert_eq!(up.last().headers["x-request-id"], generated.as_str());

    let a = send("GET", &gw.url("/public/x"), &[("x-request-id", "bad id with spaces")], b"").await;
    let replaced = a.header("x-request-id").expect("replacement id").to_owned();
    assert_ne!(replaced, "bad id with spaces");
    assert_eq!(up.last().headers["x-request-id"], replaced.as_str());
    // Refusals carry one too.
    let (s, a) = get(&gw.url("/api/x"), &[]).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(a.header("x-request-id").map(str::len), Some(32));
}

#[tokio::test]
async fn json_access_log_has_the_fields_and_no_secrets() {
    authgear_gateway::install_crypto_provider();
    let iss = DevIssuer::start().await.unwrap();
    let up = Upstream::start().await;
    let dir = std::env::temp_dir().join(format!("agw-log-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = config_text(&iss, up.addr, "", ROUTES) + "\n[log]\nformat = \"json\"\nlevel = \"info\"\n";
    let bin = Binary::start(&text, &dir.join("gateway.toml"), std::process::Stdio::piped()).await;
    let base = bin.base.clone();
    let token = iss.mint("log-user", json!({}));
    let auth = format!("Bearer {token}");
    let cookie = "session=s3cr3t-cookie-value";
    let a =
        send("POST", &format!("{base}/api/items?q=1"), &[("authorization", &auth), ("cookie", cookie), ("x-request-id", "log-test-1")], b"hello body").await;
    assert_eq!(a.status, StatusCode::OK);
    let a = send("GET", &format!("{base}/admin/x"), &[("authorization", &auth), ("cookie", cookie)], b"").await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let mut tampered = token.clone().into_bytes();
    let i = token.rfind('.').unwrap() + 5;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let bad = format!("Bearer {}", String::from_utf8(tampered).unwrap());
    assert_eq!(send("GET", &format!("{base}/api/x"), &[("authorization", &bad)], b"").await.status, StatusCode::UNAUTHORIZED);
    // A servlet session id in the URL is a session credential too.
    assert_eq!(send("GET", &format!("{base}/public/x;jsessionid=S3SS10N1D"), &[], b"").await.status, StatusCode::OK);
    assert_eq!(up.last().target, "/public/x;jsessionid=S3SS10N1D");
    bin.signal(libc::SIGTERM);
    let out = bin.child.wait_with_output().expect("wait");
    assert!(out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<Value> = log.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}"))).collect();
    let access: Vec<&Value> = lines.iter().filter(|l| l["target"] == "access").collect();
    assert_eq!(access.len(), 4, "{log}");
    let first: HashMap<&str, &Value> = access[0].as_object().unwrap().iter().map(|(k, v)| (k.as_str(), v)).collect();
    assert_eq!(first["request_id"], "log-test-1");
    assert_eq!(first["method"], "POST");
    assert_eq!(first["path"], "/api/items");
    assert_eq!(first["route"], "/api/**");
    assert_eq!(first["status"], 200);
    assert_eq!(first["sub"], "log-user");
    assert_eq!(first["bytes_in"], 10);
    assert_eq!(first["bytes_out"], 2);
    assert_eq!(first["client"], "127.0.0.1");
    for k in ["timestamp", "gateway_us", "upstream_us", "total_us"] {
        assert!(first.contains_key(k), "missing {k}");
    }
    assert_eq!(access[1]["status"], 403);
    assert_eq!(access[1]["reason"], "missing_role");
    assert_eq!(access[2]["reason"], "bad_signature");
    assert_eq!(access[3]["path"], "/public/x");
    // No token (or any part of its signature), cookie or Authorization value anywhere.
    let sig = token.rsplit('.').next().unwrap();
    assert!(!log.contains(sig) && !log.contains(&token[..40]), "a token leaked into the log");
    assert!(!log.contains("s3cr3t-cookie-value"), "a cookie leaked into the log");
    assert!(!log.contains("S3SS10N1D"), "a URL session id leaked into the log");
    assert!(!log.to_ascii_lowercase().contains("bearer "), "an Authorization value leaked into the log");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn the_access_log_can_be_turned_off() {
    authgear_gateway::install_crypto_provider();
    let iss = DevIssuer::start().await.unwrap();
    let up = Upstream::start().await;
    let dir = std::env::temp_dir().join(format!("agw-nolog-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = config_text(&iss, up.addr, "", ROUTES) + "\n[log]\nformat = \"json\"\nlevel = \"info\"\naccess = false\n";
    let bin = Binary::start(&text, &dir.join("gateway.toml"), std::process::Stdio::piped()).await;
    assert_eq!(send("GET", &format!("{}/public/x", bin.base), &[], b"").await.status, StatusCode::OK);
    assert_eq!(get(&format!("{}/api/x", bin.base), &[]).await.0, StatusCode::UNAUTHORIZED);
    bin.signal(libc::SIGTERM);
    let out = bin.child.wait_with_output().expect("wait");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("gateway listening"), "{log}");
    assert!(!log.contains("\"access\""), "access lines were written: {log}");
    assert_eq!(up.count(), 1);
    let _ = std::fs::remove_dir_all(dir);
}

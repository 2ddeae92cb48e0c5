//! `/metrics` as the Prometheus tools read it: the classic text format by
//! default (accepted by `promtool check metrics`), OpenMetrics when asked
//! (accepted by the reference OpenMetrics parser), and a real Prometheus
//! server storing the counters with their type.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use http::StatusCode;
use serde_json::{json, Value};
use support::process::{free_port, ChildServer};
use support::*;

const OPENMETRICS: &str = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";

/// A gateway whose request, token and stripped-header counters have moved.
async fn busy_gateway() -> (authgear_gateway::commands::devissuer::DevIssuer, Upstream, Gw) {
    let (iss, up, gw) = setup().await;
    let token = iss.mint("metrics-user", json!({}));
    let bearer = format!("Bearer {token}");
    assert_eq!(send("GET", &gw.url("/api/x"), &[("authorization", &bearer), ("x-authgear-user-id", "spoof")], b"").await.status, StatusCode::OK);
    assert_eq!(send("GET", &gw.url("/api/x"), &[], b"").await.status, StatusCode::UNAUTHORIZED);
    (iss, up, gw)
}

/// Runs `promtool check metrics` on `body`; its exit status and output.
fn promtool(body: &str) -> (bool, String) {
    let mut child = Command::new(support::tools::prometheus_bin("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool starts");
    child.stdin.take().expect("stdin").write_all(body.as_bytes()).expect("feed promtool");
    let out = child.wait_with_output().expect("promtool runs");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test]
async fn classic_text_by_default_passes_promtool() {
    let (_iss, _up, gw) = busy_gateway().await;
    let (s, a) = get(&format!("{}/metrics", gw.admin), &[]).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(a.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    assert!(a.body.contains("# TYPE authgear_gateway_requests_total counter\n"), "{}", a.body);
    assert!(a.body.contains("# HELP authgear_gateway_requests_total "), "{}", a.body);
    assert!(!a.body.contains("# EOF"), "the classic format has no EOF marker");
    let (ok, out) = promtool(&a.body);
    assert!(ok, "promtool rejects the classic format:\n{out}\n{}", a.body);
}

#[tokio::test]
async fn openmetrics_when_the_scraper_asks_parses_strictly() {
    let (_iss, _up, gw) = busy_gateway().await;
    let (s, a) = get(&format!("{}/metrics", gw.admin), &[("accept", OPENMETRICS)]).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(a.header("content-type"), Some("application/openmetrics-text; version=1.0.0; charset=utf-8"));
    assert!(a.body.contains("# TYPE authgear_gateway_requests counter\n"), "{}", a.body);
    assert!(a.body.ends_with("# EOF\n"), "{}", a.body);
    // promtool's linter reads the classic format only (it reports every
    // OpenMetrics counter as having "no help text"), so the OpenMetrics body
    // goes through the reference Python client's strict OpenMetrics parser.
    let (ok, out) = openmetrics_parse(&a.body);
    assert!(ok, "the OpenMetrics parser rejects the output:\n{out}\n{}", a.body);
    assert!(out.contains("authgear_gateway_requests counter"), "{out}");
}

/// Parses `body` with prometheus_client's OpenMetrics parser, printing each
/// family's name and type.
fn openmetrics_parse(body: &str) -> (bool, String) {
    const SCRIPT: &str = "import sys\nfrom prometheus_client.openmetrics.parser import text_string_to_metric_families as p\nfor f in p(sys.stdin.read()):\n    print(f.name, f.type, len(f.samples))\n";
    let mut child = Command::new(support::tools::python())
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python starts");
    child.stdin.take().expect("stdin").write_all(body.as_bytes()).expect("feed the parser");
    let out = child.wait_with_output().expect("python runs");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test]
async fn every_family_has_help_text() {
    let (_iss, _up, gw) = busy_gateway().await;
    let (_, a) = get(&format!("{}/metrics", gw.admin), &[]).await;
    let types: Vec<&str> = a.body.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next()).collect();
    assert!(types.len() >= 10, "{}", a.body);
    for name in types {
        let help = a.body.lines().find_map(|l| l.strip_prefix(&format!("# HELP {name} ")));
        assert!(help.is_some_and(|h| h.len() > 5), "{name} has no help text");
    }
}

/// Starts Prometheus scraping `target` every second.
async fn prometheus(target: &str) -> ChildServer {
    let dir = support::front::temp_dir("prometheus");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: gateway\n    static_configs:\n      - targets: ['{target}']\n"
    );
    std::fs::write(dir.join("prometheus.yml"), config).expect("write prometheus.yml");
    let port = free_port();
    let mut cmd = Command::new(support::tools::prometheus_bin("prometheus"));
    cmd.arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"));
    ChildServer::start("prometheus", cmd, port).await
}

async fn prom_json(prom: &ChildServer, path: &str) -> Value {
    let (s, a) = get(&format!("http://{}{}", prom.addr, path), &[]).await;
    if s != StatusCode::OK {
        return Value::Null;
    }
    serde_json::from_str(&a.body).unwrap_or(Value::Null)
}

#[tokio::test]
async fn a_real_prometheus_records_the_counters_with_their_type() {
    let (_iss, _up, gw) = busy_gateway().await;
    let target = gw.admin.trim_start_matches("http://").to_owned();
    let prom = prometheus(&target).await;

    // The type Prometheus stored for a metric, once it has scraped.
    let type_of = |metric: &'static str| {
        let prom = &prom;
        async move {
            let v = prom_json(prom, &format!("/api/v1/targets/metadata?metric={metric}")).await;
            v["data"].as_array().and_then(|d| d.first()).and_then(|m| m["type"].as_str()).map(str::to_owned)
        }
    };
    let mut found = None;
    for _ in 0..300 {
        if let Some(t) = type_of("authgear_gateway_requests").await {
            found = Some(t);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(found.as_deref(), Some("counter"), "Prometheus recorded no counter type for the request counter");
    for family in ["authgear_gateway_token_verifications", "authgear_gateway_stripped_headers", "authgear_gateway_connection_parks"] {
        assert_eq!(type_of(family).await.as_deref(), Some("counter"), "{family}");
    }
    assert_eq!(type_of("authgear_gateway_open_connections").await.as_deref(), Some("gauge"));
    assert_eq!(type_of("authgear_gateway_upstream_duration_seconds").await.as_deref(), Some("histogram"));

    // The samples are stored under their `_total` names, not left untyped.
    let q = prom_json(&prom, "/api/v1/query?query=authgear_gateway_requests_total").await;
    assert!(q["data"]["result"].as_array().is_some_and(|r| !r.is_empty()), "no request series stored: {q}");
    let up = prom_json(&prom, "/api/v1/query?query=up").await;
    assert_eq!(up["data"]["result"][0]["value"][1], "1", "the scrape failed: {up}");
}

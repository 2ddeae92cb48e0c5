//! What an operator sees of the in-process gateway: its log events (access
//! lines included, found by request id) and its Prometheus counters.

use std::collections::BTreeMap;
use std::sync::{Mutex, Once};

use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// One captured event: its fields plus `target` and `level`.
pub type Line = BTreeMap<String, Value>;

static LINES: Mutex<Vec<Line>> = Mutex::new(Vec::new());

/// Captures, for the rest of this test binary, the gateway's events at
/// info and above and every `access` line. Call before starting a gateway;
/// later calls do nothing.
pub fn capture_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let filter = Targets::new().with_target("access", LevelFilter::INFO).with_target("authgear_gateway", LevelFilter::INFO);
        let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Capture.with_filter(filter)));
    });
}

struct Capture;

impl<S: Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut line = Fields(BTreeMap::new());
        event.record(&mut line);
        line.0.insert("target".into(), event.metadata().target().into());
        line.0.insert("level".into(), event.metadata().level().as_str().into());
        LINES.lock().unwrap_or_else(|p| p.into_inner()).push(line.0);
    }
}

struct Fields(Line);

impl Visit for Fields {
    fn record_str(&mut self, f: &Field, v: &str) {
        self.0.insert(f.name().into(), v.into());
    }
    fn record_u64(&mut self, f: &Field, v: u64) {
        self.0.insert(f.name().into(), v.into());
    }
    fn record_i64(&mut self, f: &Field, v: i64) {
        self.0.insert(f.name().into(), v.into());
    }
    fn record_bool(&mut self, f: &Field, v: bool) {
        self.0.insert(f.name().into(), v.into());
    }
    fn record_debug(&mut self, f: &Field, v: &dyn std::fmt::Debug) {
        self.0.insert(f.name().into(), format!("{v:?}").into());
    }
}

/// Captured events for which `pick` holds, so far.
pub fn lines(pick: impl Fn(&Line) -> bool) -> Vec<Line> {
    LINES.lock().unwrap_or_else(|p| p.into_inner()).iter().filter(|l| pick(l)).cloned().collect()
}

/// The access line of the request with this id, waiting for it (it is
/// written once the response is); fails the test after 10 s.
pub async fn access_line(request_id: &str) -> Line {
    for _ in 0..500 {
        let found = lines(|l| l.get("target").and_then(Value::as_str) == Some("access") && l.get("request_id").and_then(Value::as_str) == Some(request_id));
        if let [one] = found.as_slice() {
            return one.clone();
        }
        assert!(found.len() < 2, "two access lines for {request_id}: {found:?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("no access line for request {request_id}");
}

/// The gateway's `/metrics`, parsed.
pub async fn scrape(gw: &super::Gw) -> prometheus_parse::Scrape {
    let (status, a) = super::get(&format!("{}/metrics", gw.admin), &[]).await;
    assert_eq!(status, http::StatusCode::OK);
    prometheus_parse::Scrape::parse(a.body.lines().map(|l| Ok(l.to_owned()))).expect("valid Prometheus text")
}

/// `authgear_gateway_requests_total` for this route, method class and outcome.
pub fn requests(scrape: &prometheus_parse::Scrape, route: &str, method: &str, outcome: &str) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == "authgear_gateway_requests_total")
        .filter(|s| s.labels.get("route") == Some(route) && s.labels.get("method") == Some(method) && s.labels.get("outcome") == Some(outcome))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

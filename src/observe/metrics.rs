//! Prometheus metrics, served on the admin listener's `/metrics` in the
//! format the scraper asked for (`exposition`).
//!
//! One process-wide registry: counters survive config reloads, and every
//! label value comes from the config or a fixed list (route names, issuers,
//! upstream names, outcome and reason enums), never from what clients send,
//! so cardinality stays bounded.

use std::sync::OnceLock;
use std::time::Duration;

use http::Method;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::exposition::Format;

/// Request method, folded into a fixed set.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum MethodClass {
    GET,
    HEAD,
    POST,
    PUT,
    PATCH,
    DELETE,
    OPTIONS,
    other,
}

impl MethodClass {
    /// The class of `m`.
    pub fn of(m: &Method) -> Self {
        match *m {
            Method::GET => MethodClass::GET,
            Method::HEAD => MethodClass::HEAD,
            Method::POST => MethodClass::POST,
            Method::PUT => MethodClass::PUT,
            Method::PATCH => MethodClass::PATCH,
            Method::DELETE => MethodClass::DELETE,
            Method::OPTIONS => MethodClass::OPTIONS,
            _ => MethodClass::other,
        }
    }
}

/// What happened to a request.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Outcome {
    /// Sent upstream (whatever the upstream answered).
    forwarded,
    bad_request,
    unauthorized,
    forbidden,
    not_found,
    unavailable,
    upstream_error,
    other,
}

impl Outcome {
    /// The outcome of a gateway refusal with this status.
    pub fn of_refusal(status: u16) -> Self {
        match status {
            400 | 408 | 413 | 414 | 421 | 431 => Outcome::bad_request,
            401 => Outcome::unauthorized,
            403 => Outcome::forbidden,
            404 => Outcome::not_found,
            503 => Outcome::unavailable,
            502 | 504 => Outcome::upstream_error,
            _ => Outcome::other,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: MethodClass,
    outcome: Outcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IssuerLabels {
    issuer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IssuerResultLabels {
    issuer: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    upstream: String,
}

/// Every metric the gateway exports.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    gateway_seconds: Histogram,
    upstream_seconds: Family<UpstreamLabels, Histogram, fn() -> Histogram>,
    token_verifications: Family<ReasonLabels, Counter>,
    jwks_fetches: Family<IssuerResultLabels, Counter>,
    jwks_keys: Family<IssuerLabels, Gauge>,
    jwks_key_age: Family<IssuerLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    reloads: Family<ReasonLabels, Counter>,
    resolver_calls: Family<ReasonLabels, Counter>,
    session_lookups: Family<ReasonLabels, Counter>,
    open_connections: Gauge,
    /// Request counters of requests that matched no route.
    unmatched: RouteCounters,
    /// The `ok` token counter, the one counted on almost every request.
    token_ok: OnceLock<Counter>,
    parked_connections: Gauge,
    connection_parks: Counter,
    upstream_in_flight: Family<UpstreamLabels, Gauge>,
    stripped_headers: Family<KindLabels, Counter>,
    forward_auth: Family<ReasonLabels, Counter>,
}

fn latency_histogram() -> Histogram {
    // 50 µs .. ~1.6 s, doubling.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

const OUTCOMES: usize = 8;
const METHOD_CLASSES: usize = 8;
const _: () = assert!(Outcome::other as usize + 1 == OUTCOMES && MethodClass::other as usize + 1 == METHOD_CLASSES);

/// One route's request counters, one per (method class, outcome), fetched
/// from the family on first use: counting a request then neither builds a
/// label nor takes the family's lock. Part of each compiled route, so it
/// is rebuilt with every config.
pub struct RouteCounters(Box<[OnceLock<Counter>]>);

impl std::fmt::Debug for RouteCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RouteCounters")
    }
}

impl RouteCounters {
    /// Empty slots for every method class and outcome.
    pub fn new() -> RouteCounters {
        RouteCounters((0..METHOD_CLASSES * OUTCOMES).map(|_| OnceLock::new()).collect())
    }
}

impl Default for RouteCounters {
    fn default() -> Self {
        RouteCounters::new()
    }
}

/// One upstream's in-flight gauge and response-time histogram.
pub struct UpstreamMetrics {
    in_flight: Gauge,
    seconds: Histogram,
}

impl UpstreamMetrics {
    /// Counts one request in flight until the guard drops.
    pub fn in_flight(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }

    /// Records the time to an upstream's response headers.
    pub fn observe(&self, d: Duration) {
        self.seconds.observe(d.as_secs_f64());
    }
}

/// One parked connection, counted in the gauge until dropped.
pub struct Parked(Gauge);

impl Drop for Parked {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(Metrics::new)
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("authgear_gateway");
        let m = Metrics {
            requests: Family::default(),
            gateway_seconds: latency_histogram(),
            upstream_seconds: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            token_verifications: Family::default(),
            jwks_fetches: Family::default(),
            jwks_keys: Family::default(),
            jwks_key_age: Family::default(),
            reloads: Family::default(),
            resolver_calls: Family::default(),
            session_lookups: Family::default(),
            open_connections: Gauge::default(),
            unmatched: RouteCounters::new(),
            token_ok: OnceLock::new(),
            parked_connections: Gauge::default(),
            connection_parks: Counter::default(),
            upstream_in_flight: Family::default(),
            stripped_headers: Family::default(),
            forward_auth: Family::default(),
            registry: Registry::default(),
        };
        registry.register("requests", "Requests by route, method class and outcome", m.requests.clone());
        registry.register("forward_auth_decisions", "Forward-auth decisions by result (allowed or the refusal reason)", m.forward_auth.clone());
        registry.register("gateway_duration_seconds", "Time the gateway itself added to a request (total minus upstream)", m.gateway_seconds.clone());
        registry.register("upstream_duration_seconds", "Time until the upstream's response headers", m.upstream_seconds.clone());
        registry.register("token_verifications", "Token verifications by result (ok or the refusal reason)", m.token_verifications.clone());
        registry.register("jwks_fetches", "JWKS fetch attempts by issuer and result", m.jwks_fetches.clone());
        registry.register("jwks_keys", "Usable signing keys per issuer", m.jwks_keys.clone());
        registry.register("jwks_key_age_seconds", "Seconds since the issuer's keys were last loaded", m.jwks_key_age.clone());
        registry.register("config_reloads", "Config reloads by result", m.reloads.clone());
        registry.register("session_resolver_calls", "Calls to Authgear's resolver by result (valid, invalid, absent, failed)", m.resolver_calls.clone());
        registry.register("session_lookups", "Session verdict lookups by source (hit, called, joined)", m.session_lookups.clone());
        registry.register("open_connections", "Client connections currently open", m.open_connections.clone());
        registry.register("parked_connections", "Idle HTTP/1.1 connections holding no buffers now", m.parked_connections.clone());
        registry.register("connection_parks", "Times an idle HTTP/1.1 connection released its buffers", m.connection_parks.clone());
        registry.register("upstream_in_flight_requests", "Requests currently waiting on or streaming from each upstream", m.upstream_in_flight.clone());
        registry.register(
            "stripped_headers",
            "Client-sent headers removed before forwarding, by kind (identity, rerouting, method_override, forwarding)",
            m.stripped_headers.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Counts a finished request under its route (name and counter cache),
    /// or under `(none)`.
    pub fn request(&self, route: Option<(&str, &RouteCounters)>, method: &Method, outcome: Outcome) {
        self.request_class(route, MethodClass::of(method), outcome);
    }

    /// [`request`](Self::request) by method class: a request refused
    /// while hyper parsed it has no method, and counts as `other`.
    pub fn request_class(&self, route: Option<(&str, &RouteCounters)>, method: MethodClass, outcome: Outcome) {
        let (name, cache) = route.unwrap_or(("(none)", &self.unmatched));
        let slot = &cache.0[method as usize * OUTCOMES + outcome as usize];
        slot.get_or_init(|| self.requests.get_or_create(&RequestLabels { route: name.to_owned(), method, outcome }).clone()).inc();
    }

    /// Records the time the gateway itself added (`total` minus `upstream`).
    pub fn gateway_time(&self, total: Duration, upstream: Option<Duration>) {
        self.gateway_seconds.observe(total.saturating_sub(upstream.unwrap_or_default()).as_secs_f64());
    }

    /// The metric handles of one upstream, fetched once (see `UpstreamClient`).
    pub fn upstream(&self, name: &str) -> UpstreamMetrics {
        let labels = UpstreamLabels { upstream: name.to_owned() };
        UpstreamMetrics { in_flight: self.upstream_in_flight.get_or_create(&labels).clone(), seconds: self.upstream_seconds.get_or_create(&labels).clone() }
    }

    /// Counts one resolver call by its result.
    pub fn resolver_call(&self, result: &'static str) {
        self.resolver_calls.get_or_create(&ReasonLabels { result: result.into() }).inc();
    }

    /// Counts one session verdict lookup by where its answer came from.
    pub fn session_lookup(&self, source: &'static str) {
        self.session_lookups.get_or_create(&ReasonLabels { result: source.into() }).inc();
    }

    /// Counts one client-sent header removed before forwarding.
    pub fn stripped_header(&self, kind: &'static str) {
        self.stripped_headers.get_or_create(&KindLabels { kind: kind.into() }).inc();
    }

    /// Counts one token verification (`ok` or the refusal reason).
    pub fn token(&self, result: &str) {
        if result == "ok" {
            let ok = self.token_ok.get_or_init(|| self.token_verifications.get_or_create(&ReasonLabels { result: "ok".into() }).clone());
            ok.inc();
            return;
        }
        self.token_verifications.get_or_create(&ReasonLabels { result: result.to_owned() }).inc();
    }

    /// Counts one forward-auth decision: `allowed` or the refusal reason.
    pub fn forward_auth(&self, result: &str) {
        self.forward_auth.get_or_create(&ReasonLabels { result: result.to_owned() }).inc();
    }

    /// Counts one JWKS fetch attempt.
    pub fn jwks_fetch(&self, issuer: &str, result: &str) {
        self.jwks_fetches.get_or_create(&IssuerResultLabels { issuer: issuer.to_owned(), result: result.to_owned() }).inc();
    }

    /// Counts one config reload (`ok` or `failed`).
    pub fn reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.reloads.get_or_create(&ReasonLabels { result: result.into() }).inc();
    }

    /// Tracks open client connections.
    pub fn connection_opened(&self) {
        self.open_connections.inc();
    }

    /// Tracks open client connections.
    pub fn connection_closed(&self) {
        self.open_connections.dec();
    }

    /// Counts an idle connection whose buffers were released (see `parkio`).
    pub fn connection_park(&self) {
        self.connection_parks.inc();
    }

    /// Parked connections now and parks so far (for tests and `/metrics`).
    pub fn parking_counts(&self) -> (i64, u64) {
        (self.parked_connections.get(), self.connection_parks.get())
    }

    /// Counts a connection as parked and waiting until the guard drops.
    pub fn connection_parked(&self) -> Parked {
        self.parked_connections.inc();
        Parked(self.parked_connections.clone())
    }

    /// Sets one issuer's key gauges: how many keys its JWKS holds and how
    /// old they are (`None`: nothing loaded yet, shown as -1).
    pub fn issuer_keys(&self, issuer: &str, count: usize, age: Option<Duration>) {
        let l = IssuerLabels { issuer: issuer.to_owned() };
        self.jwks_keys.get_or_create(&l).set(i64::try_from(count).unwrap_or(i64::MAX));
        self.jwks_key_age.get_or_create(&l).set(age.map_or(-1.0, |a| a.as_secs_f64()));
    }

    /// The exposition in `format`.
    pub fn render(&self, format: Format) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; an encoder error would only
        // shorten the body, which the scraper then reports.
        let _ = match format {
            Format::Classic => prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry),
            Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &self.registry),
        };
        out
    }
}

/// Decrements an in-flight gauge when dropped (also on error or cancel).
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

//! When Authgear's resolver is down, slow or failing, session routes answer
//! 503 with Retry-After: never a pass-through, never a 401 (and never a
//! login redirect) for a user whose session may be fine.

mod support;

use std::sync::atomic::Ordering::Relaxed;

use authgear_gateway::commands::devissuer::DevIssuer;
use http::StatusCode;
use support::resolver::{ResolverMode, Session, TestResolver};
use support::*;

fn routes() -> &'static str {
    r#"
[[routes]]
path = "/app/**"
method = "session"
login_redirect = true

[[routes]]
path = "/api/**"
method = "session"
"#
}

async fn gateway(resolver_url: &str) -> (DevIssuer, Upstream, Gw) {
    authgear_gateway::install_crypto_provider();
    let iss = DevIssuer::start().await.expect("issuer");
    let up = Upstream::start().await;
    let auth = format!("resolver_url = \"{resolver_url}\"\nresolver_timeout = \"300ms\"\nresolver_connect_timeout = \"200ms\"\nlogin_url = \"/login\"");
    let gw = start_ready(&config_text(&iss, up.addr, &auth, routes())).await;
    (iss, up, gw)
}

fn failures(gw: &Gw) -> u64 {
    gw.server.gateway.snapshot().sessions.as_ref().expect("sessions").stats.resolver_failures.load(Relaxed)
}

#[tokio::test]
async fn every_kind_of_resolver_failure_gives_503_and_no_pass_through() {
    let res = TestResolver::start().await;
    let (_iss, up, gw) = gateway(&res.url()).await;
    res.add("good", Session::user("u-1"));
    let mut n = 0;
    for mode in [ResolverMode::Error500, ResolverMode::Hang, ResolverMode::Reset] {
        res.set_mode(mode);
        for (path, accept) in [("/api/x", "application/json"), ("/app/x", "text/html")] {
            n += 1;
            // A new cookie each time, so no cached verdict can answer.
            res.add(&format!("s{n}"), Session::user("u"));
            let cookie = format!("session=s{n}");
            let a = send("GET", &gw.url(path), &[("cookie", &cookie), ("accept", accept)], b"").await;
            assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{mode:?} {path}: {}", a.body);
            assert_eq!(a.header("retry-after"), Some("5"));
            assert!(a.header("location").is_none());
            assert_eq!(a.json()["error"], "temporarily_unavailable");
        }
        assert_eq!(up.count(), 0, "{mode:?}: a request passed without a verdict");
    }
    assert!(failures(&gw) >= 6, "failures were not counted: {}", failures(&gw));
    // Failures are not cached: once Authgear is back, the same cookie works.
    res.set_mode(ResolverMode::Up);
    let a = send("GET", &gw.url("/api/x"), &[("cookie", "session=s1")], b"").await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(gw.server.gateway.snapshot().sessions.as_ref().is_some_and(|s| s.is_reachable()));
}

#[tokio::test]
async fn a_refused_connection_gives_503() {
    // A port that was just free: nothing listens there.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let (_iss, up, gw) = gateway(&format!("http://{closed}/_resolver/resolve")).await;
    let a = send("GET", &gw.url("/api/x"), &[("cookie", "session=anything")], b"").await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(a.header("retry-after").is_some());
    assert_eq!(up.count(), 0);
    assert_eq!(failures(&gw), 1);
    assert!(gw.server.gateway.snapshot().sessions.as_ref().is_some_and(|s| !s.is_reachable()));
    // /readyz shows the outage but stays ready: JWT and public routes still work.
    let (status, ready) = get(&format!("{}/readyz", gw.admin), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ready.json()["session_resolver"]["reachable"], false);
    assert_eq!(ready.json()["session_resolver"]["failures"], 1);
    let (_, metrics) = get(&format!("{}/metrics", gw.admin), &[]).await;
    let failed = metrics
        .body
        .lines()
        .find_map(|l| l.strip_prefix("authgear_gateway_session_resolver_calls_total{result=\"failed\"} "))
        .and_then(|v| v.trim().parse::<u64>().ok());
    assert!(failed.is_some_and(|n| n >= 1), "no failed resolver calls in /metrics:\n{}", metrics.body);
    // Without any credential the resolver is not needed: plain 401.
    assert_eq!(send("GET", &gw.url("/api/x"), &[], b"").await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_flood_of_distinct_cookies_is_capped_at_the_concurrency_limit() {
    authgear_gateway::install_crypto_provider();
    let res = TestResolver::start().await;
    res.set_delay(std::time::Duration::from_millis(100));
    let iss = DevIssuer::start().await.expect("issuer");
    let up = Upstream::start().await;
    let auth = format!("resolver_url = \"{}\"\nresolver_timeout = \"5s\"\nresolver_max_concurrent_calls = 3\nlogin_url = \"/login\"", res.url());
    let gw = std::sync::Arc::new(start_ready(&config_text(&iss, up.addr, &auth, routes())).await);
    let tasks: Vec<_> = (0..60)
        .map(|i| {
            let gw = gw.clone();
            tokio::spawn(async move {
                let cookie = format!("session=random-{i}-{}", rand::random::<u64>());
                send("GET", &gw.url("/api/x"), &[("cookie", &cookie)], b"").await.status
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::UNAUTHORIZED);
    }
    eprintln!("flood: 60 distinct cookies, {} resolver calls, at most {} at once", res.calls(), res.max_in_flight());
    assert_eq!(res.calls(), 60);
    assert!(res.max_in_flight() <= 3, "{} calls in flight at once", res.max_in_flight());
    assert_eq!(up.count(), 0);
}

//! Issuer outages never lock users out: a failing refresh keeps the last good
//! keys, retries back off, and `max_key_age` (when set) ends the trust.

mod support;

use std::time::Duration;

use authgear_gateway::commands::devissuer::{DevIssuer, Mode};
use http::StatusCode;
use serde_json::json;
use support::*;

const FAST: &str = "refresh_interval = \"100ms\"\nmin_refresh_interval = \"100ms\"\nretry_initial = \"50ms\"\nretry_max = \"400ms\"\nfetch_timeout = \"300ms\"\nconnect_timeout = \"200ms\"";

#[tokio::test]
async fn valid_tokens_keep_passing_through_every_kind_of_outage() {
    authgear_gateway::install_crypto_provider();
    let iss = DevIssuer::start().await.unwrap();
    let up = Upstream::start().await;
    let gw = start_ready(&config_text(&iss, up.addr, FAST, ROUTES)).await;
    let t = iss.mint("u", json!({}));
    let mut served = 0;
    for mode in [Mode::Refuse, Mode::Hang, Mode::Error500, Mode::Garbage, Mode::Huge] {
        iss.set_mode(mode);
        let (attempts_before, failures_before, _, _) = key_stats(&gw);
        let start = std::time::Instant::now();
        // Serve valid tokens until the outage has cost at least five
        // failed fetches (bounded at 20 s on a very busy machine).
        while key_stats(&gw).1 < failures_before + 5 && start.elapsed() < Duration::from_secs(20) {
            let a = get_with(&gw.url("/api/x"), &t).await;
            assert_eq!(a.status, StatusCode::OK, "{mode:?}: a valid token was refused: {}", a.body);
            served += 1;
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let elapsed = start.elapsed();
        let (attempts, failures, _, _) = key_stats(&gw);
        let tried = attempts - attempts_before;
        eprintln!("{mode:?}: {tried} fetch attempts in {elapsed:?}, {} failed; requests still served", failures - failures_before);
        assert!(failures >= failures_before + 5, "{mode:?}: the outage was not observed");
        // Without backoff the 100 ms refresh would try every 100 ms; with
        // backoff capped at 400 ms (jittered down to 200 ms at least), the
        // attempts after the first few are at least 200 ms apart.
        let bound = 4 + elapsed.as_millis() as u64 / 200;
        assert!(tried <= bound, "{mode:?}: {tried} attempts in {elapsed:?}: backoff not applied");
        assert_eq!(get(&format!("{}/readyz", gw.admin), &[]).await.0, StatusCode::OK, "{mode:?}: keys were dropped");
    }
    iss.set_mode(Mode::Up);
    eprintln!("outage: {served} requests served during outages, 0 failed");
}

#[tokio::test]
async fn max_key_age_stops_trusting_stale_keys() {
    authgear_gateway::install_crypto_provider();
    let iss = DevIssuer::start().await.unwrap();
    let up = Upstream::start().await;
    let extra = format!("{FAST}\nmax_key_age = \"600ms\"");
    let gw = start_ready(&config_text(&iss, up.addr, &extra, ROUTES)).await;
    let t = iss.mint("u", json!({}));
    iss.set_mode(Mode::Refuse);
    assert_eq!(get_with(&gw.url("/api/x"), &t).await.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(900)).await;
    let a = get_with(&gw.url("/api/x"), &t).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(a.header("retry-after").is_some());
    assert_eq!(get(&format!("{}/readyz", gw.admin), &[]).await.0, StatusCode::SERVICE_UNAVAILABLE);
    // Public routes are unaffected.
    assert_eq!(get(&gw.url("/public/x"), &[]).await.0, StatusCode::OK);
    iss.set_mode(Mode::Up);
    wait_ready(&gw).await;
    assert_eq!(get_with(&gw.url("/api/x"), &t).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_hanging_issuer_at_start_does_not_stall_the_gateway() {
    authgear_gateway::install_crypto_provider();
    let iss = DevIssuer::start().await.unwrap();
    iss.set_mode(Mode::Hang);
    let up = Upstream::start().await;
    let gw = start_gateway(&config_text(&iss, up.addr, &format!("{FAST}\nunknown_kid_cooldown = \"10s\""), ROUTES)).await;
    let t = iss.mint("u", json!({}));
    let started = std::time::Instant::now();
    let a = get_with(&gw.url("/api/x"), &t).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(started.elapsed() < Duration::from_secs(5), "a request waited {:?} on a hanging issuer", started.elapsed());
    assert_eq!(get(&gw.url("/public/x"), &[]).await.0, StatusCode::OK);
}

#[tokio::test]
async fn an_outage_is_logged_once_per_state_change_not_per_retry() {
    authgear_gateway::install_crypto_provider();
    let iss = DevIssuer::start().await.unwrap();
    let up = Upstream::start().await;
    let dir = std::env::temp_dir().join(format!("agw-logonce-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = config_text(&iss, up.addr, FAST, ROUTES) + "\n[log]\nformat = \"json\"\nlevel = \"info\"\n";
    let bin = Binary::start(&text, &dir.join("gateway.toml"), std::process::Stdio::piped()).await;
    iss.set_mode(Mode::Error500);
    let metrics = format!("{}/metrics", bin.admin);
    let failures = || async {
        let (_, a) = get(&metrics, &[]).await;
        a.body
            .lines()
            .filter(|l| l.starts_with("authgear_gateway_jwks_fetches_total") && l.contains("result=\"status\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    assert!(eventually(|| async { failures().await >= 4.0 }).await, "the outage never produced 4 failed fetches");
    iss.set_mode(Mode::Up);
    let before = iss.jwks_fetches();
    assert!(eventually(|| async { iss.jwks_fetches() > before + 1 }).await);
    bin.signal(libc::SIGTERM);
    let out = bin.child.wait_with_output().expect("wait");
    let log = String::from_utf8_lossy(&out.stderr);
    let count = |needle: &str| log.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(count("fetching signing keys failed"), 1, "{log}");
    assert_eq!(count("signing keys refreshed again after failures"), 1, "{log}");
    let _ = std::fs::remove_dir_all(dir);
}

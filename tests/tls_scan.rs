//! The TLS listener as a scanner sees it: `testssl.sh` (Debian's package)
//! run against the gateway finds nothing of MEDIUM severity or worse, the
//! server's cipher order is enforced, and HSTS is sent over TLS only.

mod support;

use std::process::Command;
use std::time::Duration;

use http::StatusCode;
use serde_json::Value;
use support::front::*;
use support::tls::TestCa;
use support::*;

/// A gateway terminating TLS with a certificate a scanner has no reason to
/// complain about (90 days, a CRL distribution point), HSTS on, and a
/// plain-HTTP twin with the same HSTS setting.
async fn tls_gateway(dir: &std::path::Path) -> (TestCa, Gw, std::net::SocketAddr) {
    authgear_gateway::install_crypto_provider();
    let ca = TestCa::new("agw scan CA");
    let leaf = ca.leaf_with(&["localhost"], |p| {
        let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock");
        p.not_before = rcgen::date_time_ymd(1970, 1, 1) + (since_epoch - Duration::from_secs(86_400));
        p.not_after = p.not_before + Duration::from_secs(90 * 86_400);
        p.crl_distribution_points = vec![rcgen::CrlDistributionPoint { uris: vec!["http://crl.example.test/agw.crl".into()] }];
    });
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&cert, format!("{}{}", leaf.cert_pem, ca.cert_pem)).expect("write cert");
    std::fs::write(&key, &leaf.key_pem).expect("write key");
    std::fs::write(dir.join("ca.pem"), &ca.cert_pem).expect("write ca");
    let up = app().await;
    let server = format!("tls_cert = \"{}\"\ntls_key = \"{}\"\nhsts = \"max-age=31536000; includeSubDomains\"", cert.display(), key.display());
    let gw = start_gateway(&public_config(&format!("http://{up}"), &server, "", PUBLIC_ALL)).await;
    (ca, gw, up)
}

/// An app that sets the security headers a web app should: testssl.sh
/// grades them (MEDIUM when none is there), and they are the app's to set,
/// the gateway passes them through.
async fn app() -> std::net::SocketAddr {
    spawn_server(None, |_req: http::Request<hyper::body::Incoming>| async {
        let mut r = http::Response::new(full("ok"));
        let h = r.headers_mut();
        h.insert("x-frame-options", http::HeaderValue::from_static("DENY"));
        h.insert("x-content-type-options", http::HeaderValue::from_static("nosniff"));
        h.insert("content-security-policy", http::HeaderValue::from_static("default-src 'self'"));
        h.insert("referrer-policy", http::HeaderValue::from_static("no-referrer"));
        r
    })
    .await
}

#[tokio::test]
async fn hsts_is_sent_over_tls_and_never_over_plain_http() {
    let dir = temp_dir("hsts");
    let (ca, gw, up) = tls_gateway(&dir).await;
    let mut c = h1_client(tls_connect(&tls_connector(&ca, &[b"http/1.1"]), gw.server.addr).await).await;
    let resp = c.send_request(http::Request::get("/x").header("host", "localhost").body(full("")).unwrap()).await.expect("response");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["strict-transport-security"], "max-age=31536000; includeSubDomains");

    let plain = start_gateway(&public_config(&format!("http://{up}"), "hsts = \"max-age=31536000\"", "", PUBLIC_ALL)).await;
    let a = send("GET", &plain.url("/x"), &[], b"").await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.header("strict-transport-security").is_none(), "HSTS over plain HTTP");
}

#[test]
fn a_malformed_hsts_value_is_a_config_error_naming_the_key() {
    let text = public_config("http://127.0.0.1:1", "hsts = \"max-age=1y\"", "", PUBLIC_ALL);
    let err = match authgear_gateway::config::Config::from_toml(&text, "test.toml") {
        Ok(_) => panic!("a malformed hsts value was accepted"),
        Err(d) => d.to_string(),
    };
    assert!(err.contains("server.hsts") && err.contains("max-age"), "{err}");
}

/// The findings testssl.sh wrote, as (id, severity, finding).
fn findings(path: &std::path::Path) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(path).expect("testssl wrote its JSON");
    let v: Value = serde_json::from_str(&text).expect("testssl JSON");
    let list = v.as_array().cloned().or_else(|| v["scanResult"][0]["serverDefaults"].as_array().cloned()).unwrap_or_default();
    list.iter()
        .map(|f| (f["id"].as_str().unwrap_or("").to_owned(), f["severity"].as_str().unwrap_or("").to_owned(), f["finding"].as_str().unwrap_or("").to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn testssl_finds_nothing_medium_or_worse() {
    let dir = temp_dir("testssl");
    let (_ca, gw, _up) = tls_gateway(&dir).await;
    let json = dir.join("testssl.json");
    let target = format!("https://localhost:{}/", gw.server.addr.port());
    let mut cmd = Command::new("testssl");
    cmd.args(["--quiet", "--color", "0", "--warnings", "off", "--connect-timeout", "10", "--ip", "127.0.0.1"])
        .arg("--add-ca")
        .arg(dir.join("ca.pem"))
        .arg("--jsonfile")
        .arg(&json)
        .arg(&target);
    let out = match tokio::task::block_in_place(|| cmd.output()) {
        Ok(o) => o,
        Err(e) => panic!("cannot run testssl ({e}); `.ci/install-protocols.sh` installs the testssl.sh package"),
    };
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    let all = findings(&json);
    assert!(all.len() > 50, "testssl produced too few findings ({}):\n{report}", all.len());
    let pick = |id: &str| all.iter().find(|f| f.0 == id).map(|f| format!("{} ({})", f.2, f.1)).unwrap_or_else(|| "-".into());
    println!(
        "testssl: cipher_order {}; session resumption tickets {}, ID {}; OCSP stapling {}; HSTS {}",
        pick("cipher_order"),
        pick("sessionresumption_ticket"),
        pick("sessionresumption_ID"),
        pick("OCSP_stapling"),
        pick("HSTS_time")
    );
    let bad: Vec<_> = all.iter().filter(|f| matches!(f.1.as_str(), "MEDIUM" | "HIGH" | "CRITICAL")).collect();
    assert!(bad.is_empty(), "testssl findings of MEDIUM or worse: {bad:#?}\n{report}");
    assert!(all.iter().any(|f| f.0 == "cipher_order" && f.1 == "OK"), "the server's cipher order is not enforced: {}", pick("cipher_order"));
}

//! The gateway terminating TLS itself: HTTP/1.1 and HTTP/2 chosen by ALPN,
//! X-Forwarded-Proto https, and a renewed certificate served to new
//! connections without a restart (a broken renewal is refused and the old
//! certificate keeps serving).

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use http::{Request, StatusCode, Version};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use support::front::*;
use support::tls::TestCa;
use support::*;

fn tls_lines(cert: &Path, key: &Path) -> String {
    format!("tls_cert = \"{}\"\ntls_key = \"{}\"\ntls_reload_interval = \"100ms\"", cert.display(), key.display())
}

/// The leaf certificate the gateway presents to a new connection.
async fn served_cert(ca: &TestCa, addr: SocketAddr) -> CertificateDer<'static> {
    let s = tls_connect(&tls_connector(ca, &[b"http/1.1"]), addr).await;
    s.get_ref().1.peer_certificates().expect("peer certs")[0].clone().into_owned()
}

fn leaf_on_disk(path: &Path) -> CertificateDer<'static> {
    CertificateDer::pem_file_iter(path).expect("read").next().expect("one cert").expect("pem")
}

/// Replaces `dst` with `src` in one rename, as a secret volume update does.
fn replace(src: &Path, dst: &Path) {
    std::fs::rename(src, dst).expect("rename");
}

#[tokio::test]
async fn h1_and_h2_by_alpn_with_forwarded_proto_https() {
    authgear_gateway::install_crypto_provider();
    let up = Upstream::start().await;
    let ca = TestCa::new("listener CA");
    let dir = temp_dir("tls-alpn");
    let (cert, key) = ca.write_leaf(&["localhost"], &dir, "server");
    let gw = start_gateway(&public_config(&format!("http://{}", up.addr), &tls_lines(&cert, &key), "", PUBLIC_ALL)).await;
    let addr = gw.server.addr;

    let s = tls_connect(&tls_connector(&ca, &[b"h2", b"http/1.1"]), addr).await;
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]), "h2 is preferred when offered");
    // The client offers AES-256-GCM first (rustls' order); the listener's
    // order, with its cheaper SHA-256 key schedule, decides.
    let suite = s.get_ref().1.negotiated_cipher_suite().map(|s| s.suite());
    assert_eq!(suite, Some(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256));
    let mut h2 = h2_client(s).await;
    let resp = h2.send_request(Request::get("https://localhost/over-h2").body(full("")).unwrap()).await.expect("h2 response");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.version(), Version::HTTP_2);
    assert_eq!(read_all(resp.into_body()).await.0, "ok");
    let seen = up.last();
    assert_eq!(seen.target, "/over-h2");
    assert_eq!(seen.headers["x-forwarded-proto"], "https");
    assert_eq!(seen.headers["x-forwarded-host"], "localhost");

    let s = tls_connect(&tls_connector(&ca, &[b"http/1.1"]), addr).await;
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let mut h1 = h1_client(s).await;
    let resp = h1.send_request(Request::get("/over-h1").header("host", "localhost").body(full("")).unwrap()).await.expect("h1 response");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.version(), Version::HTTP_11);
    assert_eq!(up.last().headers["x-forwarded-proto"], "https");

    // Plain HTTP on the TLS port gets no HTTP answer.
    let answer = raw(addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(!answer.starts_with("HTTP/"), "plain HTTP must not be served on the TLS listener: {answer:?}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn renewed_certificate_is_served_to_new_connections_and_a_broken_one_is_refused() {
    authgear_gateway::install_crypto_provider();
    let up = Upstream::start().await;
    let ca = TestCa::new("rotation CA");
    let dir = temp_dir("tls-rotate");
    let (cert, key) = ca.write_leaf(&["localhost"], &dir, "server");
    let gw = start_gateway(&public_config(&format!("http://{}", up.addr), &tls_lines(&cert, &key), "", PUBLIC_ALL)).await;
    let addr = gw.server.addr;
    let first = leaf_on_disk(&cert);
    assert_eq!(served_cert(&ca, addr).await, first);

    // A connection opened before the renewal keeps working after it.
    let mut old_conn = h1_client(tls_connect(&tls_connector(&ca, &[b"http/1.1"]), addr).await).await;

    // cert-manager renews: both files replaced.
    let (new_cert, new_key) = ca.write_leaf(&["localhost"], &dir, "renewed");
    let second = leaf_on_disk(&new_cert);
    assert_ne!(first, second);
    replace(&new_key, &key);
    replace(&new_cert, &cert);
    let mut served = served_cert(&ca, addr).await;
    // Up to 15 s: the file poll runs every interval, and CI machines are busy.
    for _ in 0..600 {
        if served == second {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
        served = served_cert(&ca, addr).await;
    }
    assert_eq!(served, second, "the renewed certificate was never served");
    let resp = old_conn.send_request(Request::get("/still-open").header("host", "localhost").body(full("")).unwrap()).await.expect("old connection");
    assert_eq!(resp.status(), StatusCode::OK);

    // A broken renewal: a certificate with somebody else's key.
    let (bad_cert, _) = ca.write_leaf(&["localhost"], &dir, "bad");
    let (_, other_key) = ca.write_leaf(&["localhost"], &dir, "other");
    replace(&other_key, &key);
    replace(&bad_cert, &cert);
    let tls = gw.server.tls.as_ref().expect("listener TLS");
    let err = tls.reload().expect_err("a mismatched pair must be refused");
    assert!(err.contains("usable pair"), "{err}");
    assert_eq!(served_cert(&ca, addr).await, second, "the previous certificate keeps serving");
    std::fs::write(&key, "-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n").expect("write");
    assert!(tls.reload().is_err());
    assert_eq!(served_cert(&ca, addr).await, second);

    // Fixed again: the poller picks it up after having refused the broken one.
    let (third_cert, third_key) = ca.write_leaf(&["localhost"], &dir, "third");
    let third = leaf_on_disk(&third_cert);
    replace(&third_key, &key);
    replace(&third_cert, &cert);
    let mut served = served_cert(&ca, addr).await;
    for _ in 0..200 {
        if served == third {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
        served = served_cert(&ca, addr).await;
    }
    assert_eq!(served, third);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_missing_or_broken_certificate_stops_the_start() {
    authgear_gateway::install_crypto_provider();
    let dir = temp_dir("tls-bad");
    let cert = dir.join("none.crt");
    let key = dir.join("none.key");
    let cfg = authgear_gateway::Config::from_toml(&public_config("http://127.0.0.1:9", &tls_lines(&cert, &key), "", PUBLIC_ALL), "t.toml").expect("config");
    let err = authgear_gateway::start(cfg).await.err().expect("start must fail");
    assert!(err.contains("listener TLS") && err.contains("none.crt"), "{err}");

    // Only one of the pair configured is a config error with its line.
    let text = public_config("http://127.0.0.1:9", &format!("tls_cert = \"{}\"", cert.display()), "", PUBLIC_ALL);
    let d = authgear_gateway::Config::from_toml(&text, "t.toml").expect_err("half a pair");
    assert!(d.to_string().contains("server.tls_key"), "{d}");
    let _ = std::fs::remove_dir_all(dir);
}

//! https upstreams: verified against a configured CA (not trusted without
//! it), mutual TLS with a client certificate, HTTP/2 by ALPN, and the
//! explicit `insecure_skip_verify` escape hatch.

mod support;

use std::path::Path;

use http::{Request, StatusCode};
use support::front::*;
use support::tls::TestCa;
use support::*;

struct Pki {
    server_ca: TestCa,
    client_ca: TestCa,
    dir: std::path::PathBuf,
}

fn pki() -> Pki {
    Pki { server_ca: TestCa::new("upstream server CA"), client_ca: TestCa::new("gateway client CA"), dir: temp_dir("up-tls") }
}

/// An upstream that requires a client certificate signed by `client_ca` and
/// answers with the HTTP version it was spoken to in.
async fn mtls_upstream(p: &Pki) -> std::net::SocketAddr {
    let leaf = p.server_ca.leaf(&["localhost"]);
    let tls = upstream_tls(&leaf, Some(&p.client_ca), &[b"h2", b"http/1.1"]);
    spawn_server(Some(tls), |req: Request<hyper::body::Incoming>| async move {
        let who = req.headers().get("x-forwarded-proto").and_then(|v| v.to_str().ok()).unwrap_or("-").to_owned();
        http::Response::new(full(format!("{:?} {who}", req.version())))
    })
    .await
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p.display().to_string()
}

async fn gateway(url: &str, upstream_lines: &str) -> Gw {
    start_gateway(&public_config(url, "", upstream_lines, PUBLIC_ALL)).await
}

#[tokio::test]
async fn mutual_tls_to_an_upstream_that_requires_a_client_certificate() {
    authgear_gateway::install_crypto_provider();
    let p = pki();
    let addr = mtls_upstream(&p).await;
    let url = format!("https://localhost:{}", addr.port());
    let ca = write(&p.dir, "server-ca.pem", &p.server_ca.cert_pem);
    let (cert, key) = p.client_ca.write_leaf(&["gateway"], &p.dir, "client");
    let client = format!("ca_file = \"{ca}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"", cert.display(), key.display());

    let gw = gateway(&url, &client).await;
    let (s, a) = get(&gw.url("/x"), &[]).await;
    assert_eq!(s, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body, "HTTP/1.1 http");

    // The same upstream over HTTP/2, negotiated by ALPN.
    let gw = gateway(&url, &format!("{client}\nprotocol = \"h2\"")).await;
    let (s, a) = get(&gw.url("/x"), &[]).await;
    assert_eq!(s, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body, "HTTP/2.0 http");

    // Without the client certificate the upstream refuses the handshake.
    let gw = gateway(&url, &format!("ca_file = \"{ca}\"")).await;
    let (s, a) = get(&gw.url("/x"), &[]).await;
    assert_eq!(s, StatusCode::BAD_GATEWAY);
    assert_eq!(a.json()["error"], "bad_gateway");
    let _ = std::fs::remove_dir_all(&p.dir);
}

#[tokio::test]
async fn an_upstream_certificate_from_an_unknown_ca_is_refused_unless_verification_is_explicitly_off() {
    authgear_gateway::install_crypto_provider();
    let p = pki();
    let addr = mtls_upstream(&p).await;
    let url = format!("https://localhost:{}", addr.port());
    let (cert, key) = p.client_ca.write_leaf(&["gateway"], &p.dir, "client");
    let client = format!("client_cert = \"{}\"\nclient_key = \"{}\"", cert.display(), key.display());

    // Platform roots only: the private CA is not trusted.
    let gw = gateway(&url, &client).await;
    assert_eq!(get(&gw.url("/x"), &[]).await.0, StatusCode::BAD_GATEWAY);

    let gw = gateway(&url, &format!("{client}\ninsecure_skip_verify = true")).await;
    let (s, a) = get(&gw.url("/x"), &[]).await;
    assert_eq!(s, StatusCode::OK, "{}", a.body);

    // The config says out loud that this is insecure.
    let text = public_config(&url, "", &format!("{client}\ninsecure_skip_verify = true"), PUBLIC_ALL);
    let cfg = authgear_gateway::Config::from_toml(&text, "t.toml").expect("valid");
    assert!(cfg.warnings.warnings().any(|w| w.key == "upstream.insecure_skip_verify" && w.message.contains("NOT verified")));
    let _ = std::fs::remove_dir_all(&p.dir);
}

#[test]
fn protocol_and_scheme_must_agree() {
    let bad = |url: &str, lines: &str| authgear_gateway::Config::from_toml(&public_config(url, "", lines, PUBLIC_ALL), "t.toml").err().map(|d| d.to_string());
    assert!(bad("http://127.0.0.1:1", "protocol = \"h2\"").is_some_and(|e| e.contains("needs an https:// URL")));
    assert!(bad("https://127.0.0.1:1", "protocol = \"h2c\"").is_some_and(|e| e.contains("needs an http:// URL")));
    assert!(bad("http://127.0.0.1:1", "protocol = \"http3\"").is_some_and(|e| e.contains("unknown protocol")));
    assert!(bad("https://127.0.0.1:1", "client_cert = \"/c.pem\"").is_some_and(|e| e.contains("client_key")));
    assert!(bad("http://127.0.0.1:1", "protocol = \"h2c\"").is_none());
}

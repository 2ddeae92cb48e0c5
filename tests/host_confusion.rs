//! The host a request is judged for is the host the upstream serves: a
//! server-wide allow-list (`server.allowed_hosts`) keeps a client from
//! asking a virtual-hosting upstream for a site no route was written for,
//! and a `Host` that servers could read differently is refused.

mod support;

use http::StatusCode;
use support::front::*;
use support::*;

async fn allow_listed() -> (Upstream, Gw) {
    authgear_gateway::install_crypto_provider();
    let up = Upstream::start().await;
    let server = "allowed_hosts = [\"app.example.test\", \"*.apps.example.test\"]";
    let gw = start_ready(&public_config(&format!("http://{}", up.addr), server, "", PUBLIC_ALL)).await;
    (up, gw)
}

fn get_for(host: &str) -> String {
    format!("GET /public/x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
}

#[tokio::test]
async fn a_host_outside_the_allow_list_gets_421_and_never_reaches_the_upstream() {
    let (up, gw) = allow_listed().await;
    for host in ["admin.example.test", "app.example.test.evil", "apps.example.test", "127.0.0.1"] {
        let a = raw(gw.server.addr, &get_for(host)).await;
        assert_eq!(raw_status(&a), 421, "{host}: {a}");
        assert!(a.contains("\"misdirected_request\""), "{a}");
    }
    // An absolute-form target naming another host is judged by its authority.
    let a = raw(gw.server.addr, "GET http://admin.example.test/x HTTP/1.1\r\nHost: app.example.test\r\nConnection: close\r\n\r\n").await;
    assert_eq!(raw_status(&a), 421, "{a}");
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn an_allowed_host_is_forwarded_in_the_spelling_that_was_judged() {
    let (up, gw) = allow_listed().await;
    for (host, forwarded) in
        [("app.example.test", "app.example.test"), ("APP.Example.Test.", "app.example.test"), ("x.apps.example.test:8080", "x.apps.example.test:8080")]
    {
        let a = raw(gw.server.addr, &get_for(host)).await;
        assert_eq!(raw_status(&a), 200, "{host}: {a}");
        let seen = up.last();
        assert_eq!(seen.headers["host"], forwarded);
        assert_eq!(seen.headers["x-forwarded-host"], forwarded);
    }
}

#[tokio::test]
async fn hosts_servers_could_read_differently_are_refused() {
    authgear_gateway::install_crypto_provider();
    let up = Upstream::start().await;
    let gw = start_ready(&public_config(&format!("http://{}", up.addr), "", "", PUBLIC_ALL)).await;
    let cases = [
        "GET /x HTTP/1.1\r\nHost: app.example.test\r\nHost: admin.example.test\r\nConnection: close\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: admin.example.test:80@app.example.test\r\nConnection: close\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: app.example.test/admin\r\nConnection: close\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: app..example.test\r\nConnection: close\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: app.example.test:x\r\nConnection: close\r\n\r\n",
        "GET /x HTTP/1.1\r\nConnection: close\r\n\r\n",
        "GET http://user@admin.example.test/x HTTP/1.1\r\nHost: admin.example.test\r\nConnection: close\r\n\r\n",
        "GET ftp://admin.example.test/x HTTP/1.1\r\nHost: app.example.test\r\nConnection: close\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: app.example.test, admin.example.test\r\nConnection: close\r\n\r\n",
    ];
    for c in cases {
        let a = raw(gw.server.addr, c).await;
        assert_eq!(raw_status(&a), 400, "{c:?}: {a}");
    }
    assert_eq!(up.count(), 0);
    // HTTP/1.0 without Host is still served when no allow-list is set.
    let a = raw(gw.server.addr, "GET /x HTTP/1.0\r\n\r\n").await;
    assert_eq!(raw_status(&a), 200, "{a}");
}

#[tokio::test]
async fn an_http2_authority_that_disagrees_with_host_is_refused() {
    let (up, gw) = allow_listed().await;
    let io = tokio::net::TcpStream::connect(gw.server.addr).await.expect("connect");
    let mut h2 = h2_client(io).await;
    let req = http::Request::builder().uri("http://app.example.test/x").header("host", "admin.example.test").body(full("")).expect("request");
    let resp = h2.send_request(req).await.expect("response");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let req = http::Request::builder().uri("http://app.example.test/x").body(full("")).expect("request");
    let resp = h2.send_request(req).await.expect("response");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(up.count(), 1);
    assert_eq!(up.last().headers["host"], "app.example.test");
}

#[test]
fn check_warns_when_preserve_host_has_no_allow_list() {
    let warned = |server: &str, routes: &str| {
        let text = public_config("http://127.0.0.1:9", server, "", routes);
        let cfg = authgear_gateway::Config::from_toml(&text, "t.toml").expect("valid");
        let found = cfg.warnings.warnings().any(|w| w.key == "server.allowed_hosts");
        found
    };
    assert!(warned("", PUBLIC_ALL));
    assert!(!warned("allowed_hosts = [\"app.example.test\"]", PUBLIC_ALL));
    assert!(!warned("", "[[routes]]\nhost = \"app.example.test\"\npath = \"/**\"\nauth = \"public\"\n"));
    let text = public_config("http://127.0.0.1:9", "allowed_hosts = []", "", PUBLIC_ALL);
    let err = authgear_gateway::Config::from_toml(&text, "t.toml").expect_err("empty list refused").to_string();
    assert!(err.contains("server.allowed_hosts"), "{err}");
}

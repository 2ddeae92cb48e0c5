//! What tracing costs a request: one GET with a cached token, through a
//! real gateway on loopback to a real upstream, with `[tracing]` off, on
//! with `sample_ratio = 0` and on with `sample_ratio = 1` (spans exported
//! over OTLP/HTTP to a local receiver that accepts and drops them).
//!
//! `cargo bench --bench tracing_overhead` (the figures are in the README's
//! Benchmarks section).

use std::convert::Infallible;
use std::sync::OnceLock;
use std::time::Duration;

use authgear_gateway::commands::devissuer::DevIssuer;
use authgear_gateway::{Config, Server};
use bytes::Bytes;
use divan::Bencher;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;

fn main() {
    divan::main();
}

struct World {
    rt: tokio::runtime::Runtime,
    _issuer: DevIssuer,
    gateways: Vec<(&'static str, Server)>,
    token: String,
    client: Client<HttpConnector, Empty<Bytes>>,
}

/// Answers 200 to anything: the upstream, and the OTLP receiver.
async fn sink() -> std::net::SocketAddr {
    let listener = authgear_gateway::runtime::net::bind_loopback().expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let svc = service_fn(|req: Request<Incoming>| async move {
                let _ = req.into_body().collect().await;
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
            });
            tokio::spawn(hyper_util::server::conn::auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), svc).into_owned());
        }
    });
    addr
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        authgear_gateway::install_crypto_provider();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        let (issuer, gateways) = rt.block_on(async {
            let issuer = DevIssuer::start().await.expect("issuer");
            let upstream = sink().await;
            let otlp = sink().await;
            let mut gateways = Vec::new();
            for (label, tracing) in [
                ("off", String::new()),
                ("on_ratio_0", format!("[tracing]\nenabled = true\nendpoint = \"http://{otlp}/v1/traces\"\nsample_ratio = 0.0\nexport_delay = \"100ms\"\n")),
                ("on_ratio_1", format!("[tracing]\nenabled = true\nendpoint = \"http://{otlp}/v1/traces\"\nsample_ratio = 1.0\nexport_delay = \"100ms\"\n")),
            ] {
                let text = format!(
                    "[server]\nlisten = \"127.0.0.1:0\"\nworkers = 1\n[admin]\nlisten = \"127.0.0.1:0\"\n[log]\naccess = false\n[upstream]\nurl = \"http://{upstream}\"\n[auth]\nissuer = \"{}\"\n[[routes]]\npath = \"/api/**\"\n{tracing}",
                    issuer.issuer
                );
                let cfg = Config::from_toml(&text, "bench.toml").expect("bench config");
                let server = authgear_gateway::start(cfg).await.expect("gateway");
                for _ in 0..500 {
                    if server.gateway.is_ready() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                gateways.push((label, server));
            }
            (issuer, gateways)
        });
        let token = issuer.mint("bench-user", json!({}));
        World { rt, _issuer: issuer, gateways, token, client: Client::builder(TokioExecutor::new()).build_http() }
    })
}

#[divan::bench(args = ["off", "on_ratio_0", "on_ratio_1"], sample_count = 200, sample_size = 20)]
fn request_round_trip(b: Bencher, mode: &str) {
    let w = world();
    let server = &w.gateways.iter().find(|(l, _)| *l == mode).expect("mode").1;
    let url: http::Uri = format!("http://{}/api/items/1", server.addr).parse().expect("url");
    let auth = format!("Bearer {}", w.token);
    b.bench(|| {
        w.rt.block_on(async {
            let req = Request::get(url.clone()).header("authorization", &auth).body(Empty::new()).expect("request");
            let resp = w.client.request(req).await.expect("answer");
            assert_eq!(resp.status(), 200);
            let _ = resp.into_body().collect().await;
        })
    });
}

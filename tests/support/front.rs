//! Parts for the HTTP-front tests: a programmable upstream (plain, TLS,
//! h1/h2, upgrades), TLS and HTTP/2 clients, bodies generated and hashed as
//! they stream, and temporary directories.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use aws_lc_rs::digest;
use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::tls::{Leaf, TestCa};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type TestBody = BoxBody<Bytes, BoxError>;

/// A whole body from bytes.
pub fn full(b: impl Into<Bytes>) -> TestBody {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// A fresh, empty directory under the system temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("agw-{tag}-{}-{}", std::process::id(), rand::random::<u64>()));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// Serves `handler` on 127.0.0.1 (TLS when `tls` is set; h1 and h2, with
/// upgrades) and returns the address.
pub async fn spawn_server<F, Fut>(tls: Option<Arc<rustls::ServerConfig>>, handler: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<TestBody>> + Send + 'static,
{
    let listener = authgear_gateway::runtime::net::bind_loopback().expect("bind");
    let addr = listener.local_addr().expect("addr");
    let acceptor = tls.map(TlsAcceptor::from);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let (handler, acceptor) = (handler.clone(), acceptor.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let h = handler.clone();
                    async move { Ok::<_, Infallible>(h(req).await) }
                });
                let builder = auto::Builder::new(TokioExecutor::new());
                match acceptor {
                    None => {
                        let _ = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc).await;
                    }
                    Some(a) => {
                        // A refused client certificate ends here, as it should.
                        if let Ok(s) = a.accept(stream).await {
                            let _ = builder.serve_connection_with_upgrades(TokioIo::new(s), svc).await;
                        }
                    }
                }
            });
        }
    });
    addr
}

/// A TLS server config for an upstream; with `client_ca`, client
/// certificates signed by it are required (mutual TLS).
pub fn upstream_tls(leaf: &Leaf, client_ca: Option<&TestCa>, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions().expect("versions");
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.der()).expect("client CA");
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build().expect("verifier");
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder.with_single_cert(leaf.chain.clone(), leaf.key.clone_key()).expect("cert");
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

/// A TLS client trusting `ca`, offering `alpn`.
pub fn tls_connector(ca: &TestCa, alpn: &[&[u8]]) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der()).expect("CA");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(cfg))
}

/// Connects with TLS to `addr`, verifying the name `localhost`.
pub async fn tls_connect(connector: &TlsConnector, addr: SocketAddr) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    connector.connect(ServerName::try_from("localhost").expect("name"), tcp).await.expect("TLS handshake")
}

/// An HTTP/1.1 client on one connection.
pub async fn h1_client<T>(io: T) -> http1::SendRequest<TestBody>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) = http1::handshake(TokioIo::new(io)).await.expect("h1 handshake");
    tokio::spawn(conn.with_upgrades());
    send
}

/// An HTTP/2 client on one connection (prior knowledge, or after ALPN).
pub async fn h2_client<T>(io: T) -> http2::SendRequest<TestBody>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(io)).await.expect("h2 handshake");
    tokio::spawn(conn);
    send
}

/// Reads a whole body: its data and its trailers.
pub async fn read_all(body: Incoming) -> (Bytes, Option<HeaderMap>) {
    let c = body.collect().await.expect("body");
    let trailers = c.trailers().cloned();
    (c.to_bytes(), trailers)
}

/// A body made of the given frames, trailers included.
pub struct Frames(pub VecDeque<Frame<Bytes>>);

impl Body for Frames {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.0.pop_front().map(Ok))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }
}

/// A SHA-256 that can be finished once and read by others.
#[derive(Clone)]
pub struct SharedHash(Arc<Mutex<(Option<digest::Context>, Option<String>)>>);

impl SharedHash {
    pub fn new() -> SharedHash {
        SharedHash(Arc::new(Mutex::new((Some(digest::Context::new(&digest::SHA256)), None))))
    }

    pub fn update(&self, data: &[u8]) {
        if let Some(c) = self.0.lock().unwrap().0.as_mut() {
            c.update(data);
        }
    }

    pub fn finish(&self) -> String {
        let mut g = self.0.lock().unwrap();
        if let Some(c) = g.0.take() {
            g.1 = Some(hex(c.finish().as_ref()));
        }
        g.1.clone().unwrap_or_default()
    }
}

impl Default for SharedHash {
    fn default() -> Self {
        Self::new()
    }
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `len` bytes generated 64 KB at a time (a random block, each chunk
/// stamped with its index so reordering would show) and hashed as they are
/// produced; nothing is held beyond one chunk.
pub struct PatternBody {
    remaining: u64,
    index: u64,
    block: Bytes,
    pub hash: SharedHash,
}

impl PatternBody {
    pub fn new(len: u64) -> PatternBody {
        let block: Vec<u8> = (0..64 * 1024).map(|_| rand::random::<u8>()).collect();
        PatternBody { remaining: len, index: 0, block: Bytes::from(block), hash: SharedHash::new() }
    }
}

impl Body for PatternBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.remaining == 0 {
            self.hash.finish();
            return Poll::Ready(None);
        }
        let n = self.remaining.min(self.block.len() as u64) as usize;
        let mut chunk = self.block[..n].to_vec();
        let stamp = self.index.to_le_bytes();
        let k = stamp.len().min(n);
        chunk[..k].copy_from_slice(&stamp[..k]);
        self.index += 1;
        self.remaining -= n as u64;
        self.hash.update(&chunk);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// Hashes a body as it arrives; returns (bytes, hex SHA-256).
pub async fn hash_body<B>(mut body: B) -> (u64, String)
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Debug,
{
    let mut ctx = digest::Context::new(&digest::SHA256);
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("body frame").into_data() {
            n += data.len() as u64;
            ctx.update(&data);
        }
    }
    (n, hex(ctx.finish().as_ref()))
}

/// This process's peak resident set (VmHWM), in KB.
pub fn peak_rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// A config with no issuer: every route public. `server` and `upstream`
/// are extra lines for those tables.
pub fn public_config(upstream_url: &str, server: &str, upstream: &str, routes: &str) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"
shutdown_drain = "0s"
shutdown_grace = "5s"
{server}

[admin]
listen = "127.0.0.1:0"

[upstream]
url = "{upstream_url}"
connect_timeout = "2s"
{upstream}

{routes}
"#
    )
}

/// One public catch-all route.
pub const PUBLIC_ALL: &str = "[[routes]]\npath = \"/**\"\nauth = \"public\"\n";

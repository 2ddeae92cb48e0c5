//! authgear-gateway: a reverse proxy that verifies Authgear access tokens
//! and forwards requests with the caller's identity as headers.
//!
//! The request path is [`server::handle_request`]; see `docs/LIFECYCLE.md`.

pub mod access;
pub mod admin;
pub mod auth;
pub mod authz;
pub mod config;
pub mod conn;
pub mod demo;
pub mod devissuer;
pub mod error;
pub mod explain;
pub mod fetch;
pub mod headers;
pub mod logwriter;
pub mod memory;
pub mod method_param;
pub mod metrics;
pub mod net;
pub mod parkio;
pub mod path;
pub mod pool;
pub mod proxy;
pub mod refusal;
pub mod reload;
pub mod routes;
pub mod screen;
pub mod server;
pub mod session;
pub mod state;
pub mod tls;
pub mod upgrade;
pub mod workers;

/// The body type of every response the gateway produces.
pub type Body = http_body_util::combinators::BoxBody<bytes::Bytes, hyper::Error>;

/// Everything built on this crate allocates through it: the system
/// allocator plus the connection workers' buffer stash (see `memory`).
#[global_allocator]
static ALLOCATOR: memory::Allocator = memory::Allocator;

pub use config::Config;
pub use server::Server;
pub use state::Gateway;

/// Installs the process-wide rustls crypto provider (aws-lc-rs). Call once
/// at start; later calls are harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Builds the gateway from a compiled config and starts its listeners.
pub async fn start(config: Config) -> Result<Server, String> {
    install_crypto_provider();
    let gw = Gateway::new(config)?;
    Server::start(gw).await.map_err(|e| format!("cannot listen: {e}"))
}

/// Runs the gateway until SIGTERM or SIGINT; SIGHUP reloads `config_path`.
pub async fn run(config: Config, config_path: std::path::PathBuf) -> Result<(), String> {
    use tokio::signal::unix::{signal, SignalKind};
    let server = start(config).await?;
    let gw = server.gateway.clone();
    let watcher = reload::spawn_watcher(gw.clone(), config_path.clone());
    memory::spawn_trimmer();
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let mut hup = signal(SignalKind::hangup()).map_err(|e| e.to_string())?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => { reload::reload_from(&gw, &config_path); }
        }
    }
    tracing::info!("shutdown signal received");
    watcher.abort();
    server.shutdown().await;
    Ok(())
}

//! authgear-gateway: a reverse proxy that verifies Authgear access tokens
//! and forwards requests with the caller's identity as headers.
//!
//! The request path is [`pipeline::handle_request`]; see `docs/LIFECYCLE.md`
//! for its steps and `docs/ARCHITECTURE.md` for where each part lives.

// The folders, from the stage that meets the client to the floor everything
// stands on; a module imports only from those listed below it (checked by
// tests/architecture.rs, explained in docs/ARCHITECTURE.md).
pub mod auth;
pub mod commands;
pub mod config;
pub mod error;
pub mod front;
pub mod login;
pub mod observe;
pub mod pipeline;
pub mod policy;
pub mod reload;
pub mod runtime;
pub mod session;
pub mod state;
pub mod upstream;

pub use error::Body;

/// Everything built on this crate allocates through it: the system
/// allocator plus the connection workers' buffer stash (see `memory`).
#[cfg(not(any(feature = "mimalloc", feature = "jemalloc", feature = "glibc")))]
#[global_allocator]
static ALLOCATOR: runtime::memory::Allocator = runtime::memory::Allocator;

/// The `mimalloc` feature's allocator, in place of the default above.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The `jemalloc` feature's allocator, in place of the default above.
#[cfg(all(feature = "jemalloc", not(feature = "mimalloc")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

pub use config::Config;
pub use front::server::Server;
pub use state::Gateway;

/// Installs the process-wide rustls crypto provider (aws-lc-rs). Call once
/// at start; later calls are harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Builds the gateway from a compiled config and starts its listeners.
pub async fn start(config: Config) -> Result<Server, String> {
    install_crypto_provider();
    let tracing = observe::trace::Tracing::start(&config.tracing)?;
    let gw = Gateway::with_tracing(config, tracing)?;
    Server::start(gw).await.map_err(|e| format!("cannot listen: {e}"))
}

/// Runs the gateway until SIGTERM or SIGINT; SIGHUP reloads `config_path`.
pub async fn run(config: Config, config_path: std::path::PathBuf) -> Result<(), String> {
    use tokio::signal::unix::{signal, SignalKind};
    let server = start(config).await?;
    let gw = server.gateway.clone();
    let watcher = reload::spawn_watcher(gw.clone(), config_path.clone());
    runtime::memory::spawn_trimmer();
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
    // After the last request: its spans are the ones most worth sending.
    if let Some(t) = gw.tracing() {
        t.shutdown().await;
    }
    Ok(())
}

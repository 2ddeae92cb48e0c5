//! TLS on the listener: a rustls `ServerConfig` (TLS 1.2 and 1.3 only, ALPN `h2` then
//! `http/1.1`) whose certificate comes from a resolver behind `ArcSwap`. A
//! poller checks the PEM files' size and mtime every `tls_reload_interval`
//! and swaps in the new pair when they change (cert-manager renewing a
//! Kubernetes secret), so new handshakes use it without a restart. A pair
//! that does not load (bad PEM, key not matching the certificate, a file
//! half written) is refused with a log and the previous pair keeps serving.
//! Polling rather than inotify: secrets are swapped through symlinks, which
//! `metadata` follows, and a poll has no missed-event cases to reason about.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tracing::{error, info};

use crate::config::TlsFiles;
use crate::runtime::tls::{load_chain, load_key, provider, VERSIONS};

/// Loads a certificate chain and its key, checking that they belong together.
pub fn load_certified_key(files: &TlsFiles) -> Result<CertifiedKey, String> {
    let chain = load_chain(&files.cert)?;
    let key = load_key(&files.key)?;
    CertifiedKey::from_der(chain, key, &provider()).map_err(|e| format!("{} and {} do not form a usable pair: {e}", files.cert.display(), files.key.display()))
}

/// Hands every handshake the current pair.
struct ReloadingResolver {
    current: ArcSwap<CertifiedKey>,
}

impl fmt::Debug for ReloadingResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReloadingResolver")
    }
}

impl ResolvesServerCert for ReloadingResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The crypto provider for the listener: aws-lc-rs with the TLS 1.3 suites
/// in the order Mozilla's guidelines and Go's server give them, AES-128-GCM
/// first. Its key schedule runs on SHA-256, which CPUs accelerate (SHA-NI),
/// where AES-256-GCM's runs on SHA-384, which they do not: on this project's
/// bench machine SHA-384 was the largest single cost of a handshake after
/// the key exchange (bench/README.md). TLS 1.2 suites keep the provider's
/// order, after these.
fn listener_provider() -> rustls::crypto::CryptoProvider {
    use rustls::CipherSuite as S;
    let mut p = rustls::crypto::aws_lc_rs::default_provider();
    // A stable sort: anything not named keeps its place, after these.
    p.cipher_suites.sort_by_key(|s| match s.suite() {
        S::TLS13_AES_128_GCM_SHA256 => 0,
        S::TLS13_AES_256_GCM_SHA384 => 1,
        S::TLS13_CHACHA20_POLY1305_SHA256 => 2,
        _ => 3,
    });
    p
}

/// The listener's TLS: an acceptor whose certificate can be swapped live.
#[derive(Clone)]
pub struct ListenerTls {
    pub acceptor: TlsAcceptor,
    resolver: Arc<ReloadingResolver>,
    files: TlsFiles,
}

impl ListenerTls {
    /// Loads the pair (an error here stops the start) and builds the acceptor.
    pub fn load(files: &TlsFiles) -> Result<ListenerTls, String> {
        let key = load_certified_key(files)?;
        let resolver = Arc::new(ReloadingResolver { current: ArcSwap::from_pointee(key) });
        let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(listener_provider()))
            .with_protocol_versions(VERSIONS)
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        // The listener's order (AEADs with forward secrecy only, see
        // `listener_provider`) decides; letting the client pick would let an
        // old or misconfigured client settle on a weaker one of them.
        cfg.ignore_client_order = true;
        Ok(ListenerTls { acceptor: TlsAcceptor::from(Arc::new(cfg)), resolver, files: files.clone() })
    }

    /// Re-reads the files; on success new handshakes use the new pair, on
    /// failure the old pair stays and the error is returned.
    pub fn reload(&self) -> Result<(), String> {
        let key = load_certified_key(&self.files)?;
        self.resolver.current.store(Arc::new(key));
        Ok(())
    }

    /// Polls the files every `interval` until `stop` flips; reloads when
    /// their size or mtime changed since the last look.
    pub async fn watch(self, interval: Duration, mut stop: watch::Receiver<bool>) {
        let mut last = fingerprint(&self.files);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stop.changed() => return,
            }
            let now = fingerprint(&self.files);
            if now == last {
                continue;
            }
            // Remember what was seen even when the load fails, so a broken
            // pair is logged once, and retried as soon as either file moves.
            last = now;
            match self.reload() {
                Ok(()) => info!(target: "tls", cert = %self.files.cert.display(), "TLS certificate reloaded; new connections use it"),
                Err(e) => error!(target: "tls", error = %e, "TLS certificate reload refused; the previous certificate keeps serving"),
            }
        }
    }
}

type FileStamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> FileStamp {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

fn fingerprint(files: &TlsFiles) -> (FileStamp, FileStamp) {
    (stamp(&files.cert), stamp(&files.key))
}

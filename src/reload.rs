//! Config reload: re-read, validate and compile the file, then swap the
//! snapshot whole. A bad file leaves the running config untouched.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tracing::{error, info, warn};

use crate::config::Config;
use crate::state::Gateway;

/// Reloads `path` into `gw`. Returns whether the new config is live.
pub fn reload_from(gw: &Gateway, path: &Path) -> bool {
    match Config::load(path) {
        Err(diags) => {
            gw.reload_rejected();
            crate::observe::metrics::metrics().reload(false);
            for d in diags.errors() {
                error!(target: "reload", "{d}");
            }
            error!(target: "reload", file = %path.display(), errors = diags.errors().count(), "config reload rejected; the previous config keeps serving");
            false
        }
        Ok(cfg) => {
            let old = gw.snapshot();
            if cfg.server.listen != old.config.server.listen {
                warn!(target: "reload", old = %old.config.server.listen, new = %cfg.server.listen, "server.listen changed: it takes effect only after a restart");
            }
            if cfg.server.listen_backlog != old.config.server.listen_backlog {
                warn!(target: "reload", old = old.config.server.listen_backlog, new = cfg.server.listen_backlog, "server.listen_backlog changed: it takes effect only after a restart");
            }
            if cfg.server.tls != old.config.server.tls {
                warn!(target: "reload", "server.tls_cert/tls_key paths changed: they take effect only after a restart (the files themselves are reloaded live)");
            }
            if cfg.server.workers != old.config.server.workers {
                warn!(target: "reload", old = old.config.server.workers, new = cfg.server.workers, "server.workers changed: it takes effect only after a restart");
            }
            if cfg.admin_listen != old.config.admin_listen {
                warn!(target: "reload", "admin.listen changed: it takes effect only after a restart");
            }
            if cfg.tracing != old.config.tracing {
                warn!(target: "reload", "[tracing] changed: it takes effect only after a restart");
            }
            for w in cfg.warnings.warnings() {
                warn!(target: "reload", "{w}");
            }
            match gw.reload(cfg) {
                Ok(v) => {
                    crate::observe::metrics::metrics().reload(true);
                    info!(target: "reload", version = v, file = %path.display(), "config reloaded");
                    true
                }
                Err(e) => {
                    gw.reload_rejected();
                    crate::observe::metrics::metrics().reload(false);
                    error!(target: "reload", error = %e, "config reload failed; the previous config keeps serving");
                    false
                }
            }
        }
    }
}

fn fingerprint(path: &Path) -> Option<u64> {
    let bytes = std::fs::read(path).ok()?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    Some(h.finish())
}

/// Watches the config file and reloads it when its content changes.
///
/// It polls (every `server.config_watch_interval`) and compares content,
/// rather than using inotify: Kubernetes updates a mounted ConfigMap by
/// swapping a `..data` symlink in the parent directory, which a watch on
/// the file itself never sees, and polling a small file costs nothing and
/// behaves the same on every filesystem (overlayfs, NFS, bind mounts).
pub fn spawn_watcher(gw: Arc<Gateway>, path: PathBuf) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last = fingerprint(&path);
        loop {
            let interval = gw.snapshot().config.server.config_watch_interval;
            if interval.is_zero() {
                // Watching is off; check again later in case a reload turns it on.
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
            tokio::time::sleep(interval).await;
            let now = fingerprint(&path);
            if now.is_some() && now != last {
                last = now;
                info!(target: "reload", file = %path.display(), "config file changed");
                reload_from(&gw, &path);
            }
        }
    })
}

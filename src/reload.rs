//! Config reload: re-read, validate and compile the file, then swap the
//! snapshot whole. A bad file leaves the running config untouched.

use std::path::Path;
use std::sync::atomic::Ordering;

use tracing::{error, info, warn};

use crate::config::Config;
use crate::state::Gateway;

/// Reloads `path` into `gw`. Returns whether the new config is live.
pub fn reload_from(gw: &Gateway, path: &Path) -> bool {
    match Config::load(path) {
        Err(diags) => {
            gw.reloads_failed.fetch_add(1, Ordering::Relaxed);
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
            if cfg.admin_listen != old.config.admin_listen {
                warn!(target: "reload", "admin.listen changed: it takes effect only after a restart");
            }
            for w in cfg.warnings.warnings() {
                warn!(target: "reload", "{w}");
            }
            match gw.reload(cfg) {
                Ok(v) => {
                    info!(target: "reload", version = v, file = %path.display(), "config reloaded");
                    true
                }
                Err(e) => {
                    gw.reloads_failed.fetch_add(1, Ordering::Relaxed);
                    error!(target: "reload", error = %e, "config reload failed; the previous config keeps serving");
                    false
                }
            }
        }
    }
}

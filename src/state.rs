//! Live state: one immutable snapshot (compiled config + key caches +
//! upstream pools) behind an `ArcSwap`, replaced whole on reload. A request
//! loads the snapshot once and uses it to the end, so it is judged by one
//! config only, even if a reload lands midway.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use tracing::info;

use crate::auth::cache::TokenCache;
use crate::auth::jwks::{KeyState, KeyStore};
use crate::auth::Identity;
use crate::config::Config;
use crate::error::GatewayError;
use crate::login::LoginService;
use crate::policy::routes::AuthMode;
use crate::policy::routes::Route;
use crate::session::SessionResolver;
use crate::upstream::assertion::AssertionSigner;
use crate::upstream::proxy::UpstreamClient;

/// Everything one request needs, fixed for its lifetime.
pub struct Snapshot {
    pub config: Config,
    /// Aligned with `config.issuers`.
    pub keys: Vec<Arc<KeyStore>>,
    /// Aligned with `config.upstreams`.
    pub upstreams: Vec<Arc<UpstreamClient>>,
    /// Authgear's resolver and the verdict cache; `None` when no route uses
    /// session mode.
    pub sessions: Option<Arc<SessionResolver>>,
    /// The gateway's own browser login; `None` without `[login]`. Kept
    /// across reloads while `[login]` is unchanged.
    pub login: Option<Arc<LoginService>>,
    /// Verified tokens; `None` when `token_cache_size = 0`. Kept across
    /// reloads (every hit re-checks against the current config and keys).
    pub token_cache: Option<Arc<TokenCache>>,
    /// The identity assertion's signer; `None` without `[assertion]`. Kept
    /// across reloads (with its cache) while `[assertion]` is unchanged.
    pub assertion: Option<Arc<AssertionSigner>>,
    /// Increments with every successful reload.
    pub version: u64,
}

impl Snapshot {
    /// With `[assertion]`, puts the signed assertion for `identity` on
    /// `route` into `headers` (see [`AssertionSigner::insert`]).
    pub fn add_assertion(
        &self,
        route: &Route,
        identity: Option<&Identity>,
        headers: &mut http::HeaderMap,
        empty_when_anonymous: bool,
    ) -> Result<(), GatewayError> {
        let Some(signer) = &self.assertion else { return Ok(()) };
        let upstream = self.config.upstreams.get(route.upstream).ok_or_else(|| GatewayError::Internal("route names a missing upstream".into()))?;
        signer.insert(upstream, route, identity, headers, empty_when_anonymous)
    }
}

/// The gateway's shared state; listeners live outside it.
pub struct Gateway {
    current: ArcSwap<Snapshot>,
    draining: AtomicBool,
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
    /// 0: no reload yet, 1: the last one succeeded, 2: it failed.
    last_reload: std::sync::atomic::AtomicU8,
    /// Unix seconds of the last reload attempt (0: none yet), for `/readyz?verbose`.
    last_reload_at: AtomicU64,
    /// The OTLP exporter; `None` when tracing is off (read at start only).
    tracing: Option<crate::observe::trace::Tracing>,
}

impl Gateway {
    /// Builds the first snapshot and starts the key refreshers.
    pub fn new(config: Config) -> Result<Arc<Gateway>, String> {
        Self::with_tracing(config, None)
    }

    /// [`new`](Self::new), exporting request spans through `tracing`.
    pub fn with_tracing(config: Config, tracing: Option<crate::observe::trace::Tracing>) -> Result<Arc<Gateway>, String> {
        let snap = build_snapshot(config, None, 1)?;
        Ok(Arc::new(Gateway {
            current: ArcSwap::from_pointee(snap),
            draining: AtomicBool::new(false),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            last_reload: std::sync::atomic::AtomicU8::new(0),
            last_reload_at: AtomicU64::new(0),
            tracing,
        }))
    }

    /// The trace exporter, when tracing is on.
    pub fn tracing(&self) -> Option<&crate::observe::trace::Tracing> {
        self.tracing.as_ref()
    }

    /// The snapshot to serve one request with.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Swaps in a new config, keeping key caches whose issuer and key source
    /// are unchanged and upstream pools whose settings are unchanged.
    pub fn reload(&self, config: Config) -> Result<u64, String> {
        let old = self.snapshot();
        let snap = build_snapshot(config, Some(&old), old.version + 1)?;
        let v = snap.version;
        self.current.store(Arc::new(snap));
        self.reloads_ok.fetch_add(1, Ordering::Relaxed);
        self.last_reload.store(1, Ordering::Relaxed);
        self.last_reload_at.store(crate::auth::now_unix(), Ordering::Relaxed);
        Ok(v)
    }

    /// Records a rejected reload (the running config stays).
    pub fn reload_rejected(&self) {
        self.reloads_failed.fetch_add(1, Ordering::Relaxed);
        self.last_reload.store(2, Ordering::Relaxed);
        self.last_reload_at.store(crate::auth::now_unix(), Ordering::Relaxed);
    }

    /// Unix seconds of the last reload attempt, good or rejected.
    pub fn last_reload_at(&self) -> Option<u64> {
        Some(self.last_reload_at.load(Ordering::Relaxed)).filter(|&t| t != 0)
    }

    /// `None` before any reload, then whether the last one succeeded.
    pub fn last_reload_ok(&self) -> Option<bool> {
        match self.last_reload.load(Ordering::Relaxed) {
            1 => Some(true),
            2 => Some(false),
            _ => None,
        }
    }

    /// Marks the gateway as shutting down: `/readyz` answers 503.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// True once shutdown began.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Ready means: not draining and every issuer has usable keys.
    pub fn is_ready(&self) -> bool {
        !self.is_draining() && self.snapshot().keys.iter().all(|k| k.state() == KeyState::Ready)
    }
}

fn build_snapshot(config: Config, old: Option<&Snapshot>, version: u64) -> Result<Snapshot, String> {
    let mut keys = Vec::with_capacity(config.issuers.len());
    for iss in &config.issuers {
        let reused = old.and_then(|o| o.keys.iter().find(|k| k.same_source(iss)).cloned());
        match reused {
            Some(store) => {
                store.update_settings(iss);
                keys.push(store);
            }
            None => {
                let store = KeyStore::new(iss).map_err(|e| format!("issuer {}: {e}", iss.issuer))?;
                store.spawn_refresher();
                info!(issuer = %iss.issuer, "watching signing keys");
                keys.push(store);
            }
        }
    }
    let mut upstreams = Vec::with_capacity(config.upstreams.len());
    for u in &config.upstreams {
        let reused = old.and_then(|o| o.upstreams.iter().find(|c| *c.settings == **u).cloned());
        match reused {
            Some(c) => upstreams.push(c),
            None => upstreams.push(Arc::new(UpstreamClient::new(u.clone(), config.server.workers).map_err(|e| format!("upstream {}: {e}", u.name))?)),
        }
    }
    let sessions = build_sessions(&config, old)?;
    let login = build_login(&config, old)?;
    let tc = config.token_cache;
    let token_cache = match old {
        Some(o) if o.config.token_cache == tc => o.token_cache.clone(),
        _ if tc.entries == 0 => None,
        _ => Some(Arc::new(TokenCache::new(tc.entries, tc.max_bytes))),
    };
    let assertion = match (&config.assertion, old.and_then(|o| o.assertion.as_ref())) {
        (None, _) => None,
        (Some(a), Some(o)) if o.settings() == a => Some(o.clone()),
        (Some(a), _) => {
            info!(keys = a.keys.len(), kid = %a.keys.first().map_or("", |k| k.kid.as_str()), "signing identity assertions");
            Some(Arc::new(AssertionSigner::new(a.clone()).map_err(|e| format!("assertion: {e}"))?))
        }
    };
    Ok(Snapshot { config, keys, upstreams, sessions, login, token_cache, assertion, version })
}

/// The session service, reused from the old snapshot when its settings are
/// unchanged so a reload keeps the verdict cache and the connection pool.
fn build_sessions(config: &Config, old: Option<&Snapshot>) -> Result<Option<Arc<SessionResolver>>, String> {
    let needed = config.routes.routes.iter().any(|r| r.auth != AuthMode::Public && r.method.uses_resolver());
    let Some(url) = config.session.resolver_url.clone().filter(|_| needed) else { return Ok(None) };
    let roles_claim = config.issuers.first().map(|i| i.roles_claim.as_str());
    if let Some(s) = old.and_then(|o| o.sessions.as_ref()).filter(|s| s.same_settings(&config.session, roles_claim)) {
        return Ok(Some(s.clone()));
    }
    info!(resolver = %url, "session mode: verdicts from Authgear's resolver");
    Ok(Some(Arc::new(SessionResolver::new(&config.session, url, roles_claim).map_err(|e| format!("session resolver: {e}"))?)))
}

/// The login service, reused while `[login]` is unchanged so a reload keeps
/// the discovered endpoints and the spent states and ended sessions.
fn build_login(config: &Config, old: Option<&Snapshot>) -> Result<Option<Arc<LoginService>>, String> {
    let Some(settings) = config.login.clone() else { return Ok(None) };
    if let Some(l) = old.and_then(|o| o.login.as_ref()).filter(|l| l.same_settings(&settings)) {
        return Ok(Some(l.clone()));
    }
    let issuer = config.issuers.get(settings.issuer).ok_or("login: no issuer")?;
    Ok(Some(Arc::new(LoginService::new(settings, issuer).map_err(|e| format!("login: {e}"))?)))
}

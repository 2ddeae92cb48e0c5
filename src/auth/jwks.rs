//! The per-issuer key cache: discovery, JWKS fetches, background refresh,
//! and the single-flight, rate-limited refetch for unknown `kid`s.
//!
//! Requests only ever read the current key set (one atomic load). A
//! scheduled refresh never blocks them; only a token with an unknown `kid`
//! waits, and then only for one shared fetch.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::{ArcSwap, ArcSwapOption};
use rand::Rng;
use tracing::{debug, info, warn};

use super::keys::KeySet;
use crate::auth::fetch::{cache_max_age, FetchError, Fetcher};
use crate::config::IssuerSettings;

/// Largest JWKS or discovery document accepted.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// One loaded key set and when it arrived.
#[derive(Debug)]
pub struct KeySnapshot {
    pub keys: KeySet,
    pub loaded_at: Instant,
    pub loaded_unix: u64,
}

/// Whether the store can verify tokens now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    Ready,
    /// No key set has ever loaded.
    NotLoaded,
    /// Keys are older than `max_key_age` (only when configured).
    Stale,
}

/// Counters, for tests, logs and metrics.
#[derive(Debug, Default)]
pub struct KeyStats {
    pub fetch_attempts: AtomicU64,
    pub fetch_failures: AtomicU64,
    pub demand_fetches: AtomicU64,
    pub rate_limited: AtomicU64,
}

/// The keys of one issuer.
pub struct KeyStore {
    pub issuer: String,
    settings: ArcSwap<IssuerSettings>,
    fetcher: Fetcher,
    current: ArcSwapOption<KeySnapshot>,
    generation: AtomicU64,
    fetch_lock: tokio::sync::Mutex<()>,
    last_demand: Mutex<Option<Instant>>,
    discovered_uri: Mutex<Option<String>>,
    failing: AtomicBool,
    pub stats: KeyStats,
}

impl KeyStore {
    /// Creates the store; call [`spawn_refresher`](Self::spawn_refresher) to start fetching.
    pub fn new(settings: &IssuerSettings) -> Result<Arc<Self>, String> {
        let fetcher = Fetcher::new(settings.connect_timeout, settings.fetch_timeout, MAX_DOCUMENT_BYTES, settings.ca_file.as_deref())?;
        Ok(Arc::new(KeyStore {
            issuer: settings.issuer.clone(),
            settings: ArcSwap::from_pointee(settings.clone()),
            fetcher,
            current: ArcSwapOption::empty(),
            generation: AtomicU64::new(0),
            fetch_lock: tokio::sync::Mutex::new(()),
            last_demand: Mutex::new(None),
            discovered_uri: Mutex::new(None),
            failing: AtomicBool::new(false),
            stats: KeyStats::default(),
        }))
    }

    /// True when `settings` can reuse this store's keys (same key source).
    pub fn same_source(&self, settings: &IssuerSettings) -> bool {
        let cur = self.settings.load();
        cur.issuer == settings.issuer && cur.jwks_uri == settings.jwks_uri && cur.ca_file == settings.ca_file
    }

    /// Applies new timing settings after a config reload.
    pub fn update_settings(&self, settings: &IssuerSettings) {
        self.settings.store(Arc::new(settings.clone()));
    }

    /// The current keys, if any have loaded.
    pub fn snapshot(&self) -> Option<Arc<KeySnapshot>> {
        self.current.load_full()
    }

    /// True when the current key set still holds `key` (for cached tokens).
    pub fn holds(&self, key: &Arc<super::keys::VerifyKey>) -> bool {
        self.current.load().as_ref().is_some_and(|s| s.keys.contains(key))
    }

    /// Ready, not loaded, or stale.
    pub fn state(&self) -> KeyState {
        match self.current.load().as_ref() {
            None => KeyState::NotLoaded,
            Some(s) => match self.settings.load().max_key_age {
                Some(max) if s.loaded_at.elapsed() > max => KeyState::Stale,
                _ => KeyState::Ready,
            },
        }
    }

    /// Seconds since the keys last loaded.
    pub fn key_age(&self) -> Option<Duration> {
        self.current.load().as_ref().map(|s| s.loaded_at.elapsed())
    }

    /// Starts the background refresh task. It holds only a weak reference,
    /// so it ends once the store is dropped (issuer removed by a reload).
    pub fn spawn_refresher(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(refresh_loop(weak));
    }

    /// Called when a token names a `kid` the current set lacks: joins (or
    /// starts) one shared fetch, subject to the cooldown. Returns the
    /// snapshot to retry with, or `None` when no new keys can be had now.
    pub async fn refetch_for_unknown_kid(&self) -> Option<Arc<KeySnapshot>> {
        let seen = self.generation.load(Ordering::Acquire);
        let guard = match self.fetch_lock.try_lock() {
            Ok(g) => g,
            Err(_) => {
                // A fetch is running: wait for it, it may bring the key.
                let g = self.fetch_lock.lock().await;
                if self.generation.load(Ordering::Acquire) != seen {
                    return self.snapshot();
                }
                g
            }
        };
        if self.generation.load(Ordering::Acquire) != seen {
            return self.snapshot();
        }
        {
            let cooldown = self.settings.load().unknown_kid_cooldown;
            let mut last = self.last_demand.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| t.elapsed() < cooldown) {
                self.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            *last = Some(Instant::now());
        }
        self.stats.demand_fetches.fetch_add(1, Ordering::Relaxed);
        let result = self.fetch_and_store().await;
        drop(guard);
        match result {
            Ok(_) => self.snapshot(),
            Err(_) => None,
        }
    }

    /// Fetches the JWKS once now (for `explain`); the error says why not.
    pub async fn fetch_now(&self) -> Result<(), FetchError> {
        let _g = self.fetch_lock.lock().await;
        self.fetch_and_store().await.map(|_| ())
    }

    fn jwks_uri_configured(&self) -> Option<String> {
        self.settings.load().jwks_uri.clone()
    }

    async fn resolve_jwks_uri(&self) -> Result<String, FetchError> {
        if let Some(u) = self.jwks_uri_configured() {
            return Ok(u);
        }
        if let Some(u) = self.discovered_uri.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Ok(u);
        }
        let url = format!("{}/.well-known/openid-configuration", self.issuer.trim_end_matches('/'));
        let doc = self.fetcher.get(&url).await?;
        let v: serde_json::Value = serde_json::from_slice(&doc.body).map_err(|e| FetchError::Invalid(format!("discovery document is not JSON: {e}")))?;
        let iss = v.get("issuer").and_then(|i| i.as_str()).unwrap_or_default();
        if iss.trim_end_matches('/') != self.issuer.trim_end_matches('/') {
            // OpenID Connect Discovery 1.0 section 4.3: a mismatch means the
            // document is not this issuer's.
            return Err(FetchError::Invalid(format!("discovery names issuer `{iss}`, not `{}`", self.issuer)));
        }
        let uri = v
            .get("jwks_uri")
            .and_then(|j| j.as_str())
            .filter(|j| j.starts_with("https://") || j.starts_with("http://"))
            .ok_or_else(|| FetchError::Invalid("discovery document has no http(s) jwks_uri".into()))?
            .to_owned();
        *self.discovered_uri.lock().unwrap_or_else(|p| p.into_inner()) = Some(uri.clone());
        Ok(uri)
    }

    /// Fetches and installs the JWKS. Returns the `Cache-Control` max-age.
    /// Callers hold `fetch_lock`.
    async fn fetch_and_store(&self) -> Result<Option<Duration>, FetchError> {
        self.stats.fetch_attempts.fetch_add(1, Ordering::Relaxed);
        let result = self.fetch_keys().await;
        crate::observe::metrics::metrics().jwks_fetch(&self.issuer, result.as_ref().map_or_else(|e| e.kind(), |_| "ok"));
        match result {
            Ok((set, max_age)) => {
                let kids = set.kids().join(",");
                let count = set.len();
                let loaded_unix = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
                self.current.store(Some(Arc::new(KeySnapshot { keys: set, loaded_at: Instant::now(), loaded_unix })));
                self.generation.fetch_add(1, Ordering::AcqRel);
                if self.failing.swap(false, Ordering::AcqRel) {
                    info!(issuer = %self.issuer, keys = count, kids = %kids, "signing keys refreshed again after failures");
                } else {
                    debug!(issuer = %self.issuer, keys = count, kids = %kids, "signing keys loaded");
                }
                Ok(max_age)
            }
            Err(e) => {
                self.stats.fetch_failures.fetch_add(1, Ordering::Relaxed);
                if !self.failing.swap(true, Ordering::AcqRel) {
                    let age = self.key_age().map(|a| a.as_secs());
                    warn!(issuer = %self.issuer, error = %e, key_age_secs = ?age, "fetching signing keys failed; keeping the last good keys and retrying with backoff");
                } else {
                    debug!(issuer = %self.issuer, error = %e, "signing key fetch still failing");
                }
                // A stale discovered URI may be the cause: look it up again next time.
                *self.discovered_uri.lock().unwrap_or_else(|p| p.into_inner()) = None;
                Err(e)
            }
        }
    }

    async fn fetch_keys(&self) -> Result<(KeySet, Option<Duration>), FetchError> {
        let uri = self.resolve_jwks_uri().await?;
        let resp = self.fetcher.get(&uri).await?;
        let (set, skipped) = KeySet::from_jwks(&resp.body).map_err(FetchError::Invalid)?;
        for s in &skipped {
            warn!(issuer = %self.issuer, "skipping a key in the JWKS: {s}");
        }
        if set.is_empty() {
            return Err(FetchError::Invalid("the JWKS holds no usable signing key".into()));
        }
        Ok((set, cache_max_age(&resp.headers)))
    }

    fn next_refresh(&self, max_age: Option<Duration>) -> Duration {
        let s = self.settings.load();
        let wanted = max_age.unwrap_or(s.refresh_interval);
        wanted.clamp(s.min_refresh_interval, s.max_refresh_interval.max(s.min_refresh_interval))
    }
}

/// A random delay in `[d/2, d]` ("equal jitter"), so gateways restarted
/// together do not retry in lockstep.
fn jitter(d: Duration) -> Duration {
    let ms = d.as_millis().max(2) as u64;
    Duration::from_millis(rand::rng().random_range(ms / 2..=ms))
}

async fn refresh_loop(weak: Weak<KeyStore>) {
    let mut failures: u32 = 0;
    loop {
        let Some(store) = weak.upgrade() else { return };
        let result = {
            let _g = store.fetch_lock.lock().await;
            store.fetch_and_store().await
        };
        let delay = match result {
            Ok(max_age) => {
                failures = 0;
                store.next_refresh(max_age)
            }
            Err(_) => {
                let s = store.settings.load();
                let base = s.retry_initial.saturating_mul(2u32.saturating_pow(failures.min(20)));
                failures = failures.saturating_add(1);
                jitter(base.min(s.retry_max))
            }
        };
        drop(store);
        tokio::time::sleep(delay).await;
    }
}

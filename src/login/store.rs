//! The Redis session store: the browser's cookie holds only a sealed random
//! id (256 bits), and the session lives in Redis under the SHA-256 of that
//! id, so a copy of the database gives no usable cookie. Every key expires
//! with its session. Indexes by `sid` and by `sub` (Redis sets of hashed
//! ids) let a back-channel logout end every session of one login or one
//! user. All commands go through one multiplexed connection that
//! reconnects by itself; each one gives up after `redis_timeout`, and a
//! failure is [`StoreDown`], which the request path answers with 503.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use aws_lc_rs::digest::{digest, SHA256};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tracing::warn;

use crate::config::{RedisSettings, SessionStoreSettings};

/// Where sessions live.
pub enum Store {
    Cookie,
    Redis(Box<RedisStore>),
}

impl Store {
    /// The store `settings` ask for (Redis is connected on first use).
    pub fn new(settings: &SessionStoreSettings) -> Result<Store, String> {
        Ok(match settings {
            SessionStoreSettings::Cookie => Store::Cookie,
            SessionStoreSettings::Redis(r) => Store::Redis(Box::new(RedisStore::new(r)?)),
        })
    }

    /// The Redis store, when that is the store.
    pub fn redis(&self) -> Option<&RedisStore> {
        match self {
            Store::Redis(r) => Some(r),
            Store::Cookie => None,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Redis could not be asked (down, timed out, or answered an error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreDown;

/// After a failed connection attempt, requests fail at once for this long
/// instead of each waiting for its own attempt.
const RECONNECT_PAUSE: Duration = Duration::from_millis(500);

/// Releases a lock only when it still holds our token (it may have
/// expired and been taken by another replica meanwhile).
const UNLOCK: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

/// One Redis server (or proxy) shared by every replica of the gateway.
pub struct RedisStore {
    client: redis::Client,
    conn: ArcSwapOption<ConnectionManager>,
    connecting: tokio::sync::Mutex<()>,
    last_failure: Mutex<Option<Instant>>,
    timeout: Duration,
    prefix: String,
    /// The last command's outcome: 0 none yet, 1 answered, 2 failed.
    health: AtomicU8,
}

/// The SHA-256 of `text`, base64url: what Redis keys hold instead of ids.
pub fn hashed(text: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest(&SHA256, text.as_bytes()).as_ref())
}

impl RedisStore {
    /// Parses the URL; connects on first use, so a gateway starts (and
    /// serves its other routes) while Redis is down.
    pub fn new(s: &RedisSettings) -> Result<RedisStore, String> {
        // The error text of a bad URL could quote it: say only that.
        let client = redis::Client::open(s.url.as_str()).map_err(|_| "login.redis_url is not a usable Redis URL".to_owned())?;
        Ok(RedisStore {
            client,
            conn: ArcSwapOption::empty(),
            connecting: tokio::sync::Mutex::new(()),
            last_failure: Mutex::new(None),
            timeout: s.timeout,
            prefix: s.key_prefix.clone(),
            health: AtomicU8::new(0),
        })
    }

    fn key(&self, kind: &str, hash: &str) -> String {
        format!("{}{kind}:{hash}", self.prefix)
    }

    async fn connection(&self) -> Result<ConnectionManager, StoreDown> {
        if let Some(c) = self.conn.load_full() {
            return Ok((*c).clone());
        }
        if lock(&self.last_failure).is_some_and(|t| t.elapsed() < RECONNECT_PAUSE) {
            return Err(StoreDown);
        }
        let _one = self.connecting.lock().await;
        if let Some(c) = self.conn.load_full() {
            return Ok((*c).clone());
        }
        // Requests queued behind a failed attempt fail with it instead of
        // each trying (and waiting) in turn.
        if lock(&self.last_failure).is_some_and(|t| t.elapsed() < RECONNECT_PAUSE) {
            return Err(StoreDown);
        }
        let cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(self.timeout)
            .set_response_timeout(self.timeout)
            .set_number_of_retries(1)
            .set_max_delay(self.timeout.as_millis().try_into().unwrap_or(u64::MAX));
        let attempt = tokio::time::timeout(self.timeout * 2, ConnectionManager::new_with_config(self.client.clone(), cfg)).await;
        match attempt {
            Ok(Ok(c)) => {
                self.conn.store(Some(std::sync::Arc::new(c.clone())));
                *lock(&self.last_failure) = None;
                Ok(c)
            }
            Ok(Err(e)) => {
                warn!(error_kind = ?e.kind(), "session store: cannot connect to Redis");
                *lock(&self.last_failure) = Some(Instant::now());
                Err(StoreDown)
            }
            Err(_) => {
                warn!("session store: connecting to Redis timed out");
                *lock(&self.last_failure) = Some(Instant::now());
                Err(StoreDown)
            }
        }
    }

    /// Runs one command or pipeline under the timeout.
    async fn run<T: redis::FromRedisValue>(&self, what: &'static str, cmd: impl FnOnce() -> redis::Pipeline) -> Result<T, StoreDown> {
        let out = self.run_once(what, cmd).await;
        self.health.store(if out.is_ok() { 1 } else { 2 }, Ordering::Relaxed);
        out
    }

    async fn run_once<T: redis::FromRedisValue>(&self, what: &'static str, cmd: impl FnOnce() -> redis::Pipeline) -> Result<T, StoreDown> {
        let mut conn = self.connection().await?;
        let pipe = cmd();
        match tokio::time::timeout(self.timeout, pipe.query_async::<T>(&mut conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                warn!(op = what, error_kind = ?e.kind(), "session store: Redis command failed");
                Err(StoreDown)
            }
            Err(_) => {
                warn!(op = what, "session store: Redis command timed out");
                Err(StoreDown)
            }
        }
    }

    /// `unknown` (nothing asked yet), `reachable` or `unreachable`, as
    /// the last command found Redis (for `/readyz?verbose`).
    pub fn state(&self) -> &'static str {
        match self.health.load(Ordering::Relaxed) {
            1 => "reachable",
            2 => "unreachable",
            _ => "unknown",
        }
    }

    /// The stored session under `id` (serialized), `None` when unknown,
    /// expired or ended. With `idle` set, the key's time to live slides to
    /// `idle` in the same round trip (GETEX); the session's own `expires`
    /// still bounds it, checked by the caller.
    pub async fn load(&self, id: &str, idle: Duration) -> Result<Option<Vec<u8>>, StoreDown> {
        let key = self.key("s", &hashed(id));
        let (raw,): (Option<Vec<u8>>,) = self
            .run("load", || {
                let mut p = redis::pipe();
                if idle.is_zero() {
                    p.cmd("GET").arg(&key);
                } else {
                    p.cmd("GETEX").arg(&key).arg("PX").arg(idle.as_millis().max(1) as u64);
                }
                p
            })
            .await?;
        Ok(raw)
    }

    /// Stores a new session (`fresh`: also indexed under each of
    /// `indexes`, e.g. `("sid", sid)`) or replaces one that still exists (a
    /// refresh never revives a session logged out meanwhile). `ttl` is its
    /// remaining life; false when there was nothing to replace.
    pub async fn save(&self, id: &str, body: Vec<u8>, indexes: &[(&str, &str)], ttl: Duration, fresh: bool) -> Result<bool, StoreDown> {
        let hid = hashed(id);
        let key = self.key("s", &hid);
        let ms = ttl.as_millis().max(1) as u64;
        let indexes = self.index_keys(indexes);
        let (ok,): (Option<String>,) = self
            .run("save", || {
                let mut p = redis::pipe();
                p.cmd("SET").arg(&key).arg(body).arg("PX").arg(ms);
                if !fresh {
                    p.arg("XX");
                }
                if fresh {
                    for ix in &indexes {
                        // An index lives as long as its longest session.
                        p.cmd("SADD").arg(ix).arg(&hid).ignore();
                        p.cmd("PEXPIRE").arg(ix).arg(ms).arg("GT").ignore();
                        p.cmd("PEXPIRE").arg(ix).arg(ms).arg("NX").ignore();
                    }
                }
                p
            })
            .await?;
        Ok(ok.is_some())
    }

    fn index_keys(&self, indexes: &[(&str, &str)]) -> Vec<String> {
        indexes.iter().map(|(kind, value)| self.key(kind, &hashed(value))).collect()
    }

    /// Deletes the session under `id` and its entries in `indexes`.
    pub async fn delete(&self, id: &str, indexes: &[(&str, &str)]) -> Result<(), StoreDown> {
        let hid = hashed(id);
        let key = self.key("s", &hid);
        let indexes = self.index_keys(indexes);
        self.run::<(i64,)>("delete", || {
            let mut p = redis::pipe();
            p.cmd("DEL").arg(&key);
            for ix in &indexes {
                p.cmd("SREM").arg(ix).arg(&hid).ignore();
            }
            p
        })
        .await
        .map(|_| ())
    }

    /// Ends every session of the login `sid` (of user `sub`, when both are
    /// given), or every session of `sub`. Returns how many were live.
    pub async fn end_matching(&self, sid: Option<&str>, sub: Option<&str>) -> Result<usize, StoreDown> {
        let sid_key = sid.map(|s| self.key("sid", &hashed(s)));
        let sub_key = sub.map(|s| self.key("sub", &hashed(s)));
        let members: (Vec<String>,) = self
            .run("end_matching", || {
                let mut p = redis::pipe();
                match (&sid_key, &sub_key) {
                    (Some(a), Some(b)) => p.cmd("SINTER").arg(a).arg(b),
                    (Some(a), None) => p.cmd("SMEMBERS").arg(a),
                    (None, Some(b)) => p.cmd("SMEMBERS").arg(b),
                    (None, None) => p.cmd("SMEMBERS").arg(self.key("none", "")),
                };
                p
            })
            .await?;
        let keys: Vec<String> = members.0.iter().map(|h| self.key("s", h)).collect();
        if keys.is_empty() {
            return Ok(0);
        }
        let (n,): (usize,) = self
            .run("end_matching", || {
                let mut p = redis::pipe();
                p.cmd("DEL").arg(&keys);
                for ix in sid_key.iter().chain(sub_key.iter()) {
                    p.cmd("SREM").arg(ix).arg(&members.0).ignore();
                }
                p
            })
            .await?;
        Ok(n)
    }

    /// Records a logout token's `jti` for `ttl`; false when it was seen.
    pub async fn first_use(&self, issuer: &str, jti: &str, ttl: Duration) -> Result<bool, StoreDown> {
        let key = self.key("jti", &hashed(&format!("{issuer} {jti}")));
        let (set,): (Option<String>,) = self
            .run("jti", || {
                let mut p = redis::pipe();
                p.cmd("SET").arg(&key).arg(1).arg("NX").arg("PX").arg(ttl.as_millis().max(1) as u64);
                p
            })
            .await?;
        Ok(set.is_some())
    }

    /// Takes the refresh lock of session `id` for `ttl`: `Some(token)` when
    /// this process holds it, `None` when another does.
    pub async fn lock_refresh(&self, id: &str, ttl: Duration) -> Result<Option<String>, StoreDown> {
        let key = self.key("lock", &hashed(id));
        let token = super::seal::random_token(16).ok_or(StoreDown)?;
        let (set,): (Option<String>,) = self
            .run("lock", || {
                let mut p = redis::pipe();
                p.cmd("SET").arg(&key).arg(&token).arg("NX").arg("PX").arg(ttl.as_millis().max(1) as u64);
                p
            })
            .await?;
        Ok(set.map(|_| token))
    }

    /// Releases the refresh lock if it is still ours.
    pub async fn unlock_refresh(&self, id: &str, token: &str) {
        let key = self.key("lock", &hashed(id));
        let _ = self
            .run::<(i64,)>("unlock", || {
                let mut p = redis::pipe();
                p.cmd("EVAL").arg(UNLOCK).arg(1).arg(&key).arg(token);
                p
            })
            .await;
    }
}

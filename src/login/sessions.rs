//! The one contract both session stores keep: open the cookie, create a
//! session (always a new id), replace it after a refresh, delete it, and
//! keep it alive under `idle_timeout`. The cookie store seals the whole
//! session into the cookie; the Redis store seals only a random id into it
//! (sealed rather than plain so that a forged or stale-key cookie is
//! refused without a Redis round trip, and rotating `cookie_keys` still
//! ends old sessions) and keeps the session in Redis (`store.rs`).

use std::time::Duration;

use http::HeaderMap;

use super::store::{RedisStore, Store, StoreDown};
use super::{cookies, lock, LoginService, Lookup, Session};

/// The start of a sealed Redis session id; a sealed cookie-store session
/// is JSON and starts with `{`, so neither store opens the other's cookie.
const ID_PREFIX: &[u8] = b"rid:";

/// Why a cookie gave no session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    /// Refused: the label says why (logs only).
    Invalid(&'static str),
    /// The store could not be asked.
    Down,
}

/// Why a session could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsaved {
    Down,
    /// Too large for cookies, or sealing failed.
    TooLarge,
    /// Replaced after it was deleted (logged out meanwhile).
    Gone,
}

impl From<StoreDown> for Miss {
    fn from(_: StoreDown) -> Miss {
        Miss::Down
    }
}

/// The index entries of a session: its login (`sid`) and its user (`sub`).
fn indexes(session: &Session) -> Vec<(&'static str, &str)> {
    let claim = |k: &str| session.claims.get(k).and_then(serde_json::Value::as_str);
    [("sid", claim("sid")), ("sub", claim("sub"))].into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).collect()
}

/// The session stored under `id` (`None`: unknown, expired or ended).
pub async fn stored(r: &RedisStore, id: &str, idle: Duration) -> Result<Option<Session>, StoreDown> {
    let Some(raw) = r.load(id, idle).await? else { return Ok(None) };
    // A value this version cannot read is a session it cannot serve.
    let Ok(mut s) = serde_json::from_slice::<Session>(&raw) else { return Ok(None) };
    s.id = id.to_owned();
    Ok(Some(s))
}

impl LoginService {
    /// Opens the request's session cookie (and, with the Redis store,
    /// reads the session) and checks it is still good at `now`.
    pub async fn lookup(&self, headers: &HeaderMap, now: u64) -> Lookup {
        let jar = cookies::request_cookies(headers);
        let Some(value) = cookies::joined(&jar, &self.settings.cookie_name) else { return Lookup::Absent };
        let session = match self.load(&value).await {
            Ok(s) => s,
            Err(Miss::Invalid(reason)) => return Lookup::Invalid(reason),
            Err(Miss::Down) => return Lookup::Unavailable,
        };
        if session.expires <= now {
            return Lookup::Invalid("session_expired");
        }
        if lock(&self.ended).contains_key(&session.id) {
            return Lookup::Invalid("session_ended");
        }
        if self.is_idle(&session, now) {
            return Lookup::Invalid("session_idle");
        }
        if session.access_exp > now.saturating_add(self.settings.refresh_margin.as_secs()) {
            return Lookup::Valid(Box::new(session));
        }
        match (&session.refresh_token, session.access_exp > now) {
            (Some(_), _) => Lookup::Stale(Box::new(session)),
            (None, true) => Lookup::Valid(Box::new(session)),
            (None, false) => Lookup::Invalid("access_token_expired"),
        }
    }

    /// The session a cookie value stands for.
    pub(super) async fn load(&self, value: &str) -> Result<Session, Miss> {
        let plain = self.sealer.open(&self.settings.cookie_name, value).map_err(|e| Miss::Invalid(e.reason()))?;
        match &self.store {
            Store::Cookie => serde_json::from_slice(&plain).map_err(|_| Miss::Invalid("cookie_malformed")),
            Store::Redis(r) => {
                let id = plain.strip_prefix(ID_PREFIX).and_then(|b| std::str::from_utf8(b).ok()).ok_or(Miss::Invalid("cookie_malformed"))?;
                stored(r, id, self.settings.idle_timeout).await?.ok_or(Miss::Invalid("session_unknown"))
            }
        }
    }

    /// Writes `session` and returns the `Set-Cookie` lines for it. `fresh`
    /// for a new login; otherwise a replacement of a live session (with
    /// the Redis store the cookie does not change, so there are no lines).
    pub(super) async fn persist(&self, session: &Session, jar: &[(&str, &str)], now: u64, fresh: bool) -> Result<Vec<String>, Unsaved> {
        let s = &self.settings;
        let left = session.expires.saturating_sub(now);
        let plain = match &self.store {
            Store::Cookie => serde_json::to_vec(session).map_err(|_| Unsaved::TooLarge)?,
            Store::Redis(r) => {
                let ttl = Duration::from_secs(left);
                let ttl = if s.idle_timeout.is_zero() { ttl } else { ttl.min(s.idle_timeout) };
                // The stored copy never holds the id itself.
                let mut copy = session.clone();
                copy.id = String::new();
                let body = serde_json::to_vec(&copy).map_err(|_| Unsaved::TooLarge)?;
                let saved = r.save(&session.id, body, &indexes(session), ttl, fresh).await.map_err(|_| Unsaved::Down)?;
                if !saved {
                    return Err(Unsaved::Gone);
                }
                if !fresh {
                    return Ok(Vec::new());
                }
                [ID_PREFIX, session.id.as_bytes()].concat()
            }
        };
        let sealed = self.sealer.seal(&s.cookie_name, &plain).ok_or(Unsaved::TooLarge)?;
        cookies::session_lines(&s.cookie_name, &sealed, left, s.secure, jar).ok_or(Unsaved::TooLarge)
    }

    /// Ends `session`: forgotten here, and deleted from Redis.
    pub(super) async fn end_session(&self, session: &Session, now: u64) -> Result<(), StoreDown> {
        Self::remember(&self.ended, session.id.clone(), session.expires, now);
        match &self.store {
            Store::Cookie => Ok(()),
            Store::Redis(r) => r.delete(&session.id, &indexes(session)).await,
        }
    }

    /// Cookie store: true when the session went unused for `idle_timeout`
    /// (the Redis store lets the key expire instead).
    pub(super) fn is_idle(&self, session: &Session, now: u64) -> bool {
        let idle = self.settings.idle_timeout.as_secs();
        matches!(self.store, Store::Cookie) && idle > 0 && session.last_seen.saturating_add(idle) <= now
    }

    /// How often (seconds) a cookie-store session is re-sealed to move its
    /// `last_seen`: a quarter of `idle_timeout`, so a user who keeps
    /// clicking is never timed out and not every request rewrites the
    /// cookie; an unused session ends after between 3/4 and all of it.
    pub fn touch_every(&self) -> u64 {
        (self.settings.idle_timeout.as_secs() / 4).max(1)
    }

    /// Cookie store with `idle_timeout`: the re-sealed cookie when
    /// `last_seen` is older than [`touch_every`](Self::touch_every).
    pub async fn touch(&self, session: &mut Session, jar: &[(&str, &str)], now: u64) -> Vec<String> {
        if !matches!(self.store, Store::Cookie) || self.settings.idle_timeout.is_zero() || now.saturating_sub(session.last_seen) < self.touch_every() {
            return Vec::new();
        }
        session.last_seen = now;
        self.persist(session, jar, now, false).await.unwrap_or_default()
    }
}

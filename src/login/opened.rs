//! Session cookies opened a moment ago, so a logged-in browser's next
//! requests skip the base64, AES-256-GCM and JSON work of opening the same
//! sealed value again (the cost a cached bearer token skips too).
//!
//! What a hit still does, every time: the whole sealed value is compared
//! (a keyed hash of its tail, where the GCM tag sits, only picks the slot),
//! and the same checks as `LoginService::lookup` run on the kept times:
//! the session's end, the access token's `refresh_margin`, and the list of
//! sessions logged out here. Only values that opened as simply valid are
//! kept (never a failure, never a session due for refresh), so the answer
//! is always the one `lookup` gives; anything else goes down `lookup`. The
//! cache lives in its `LoginService`: a reload that changes `[login]` (a
//! retired key, say) starts an empty one. Bounded: [`SHARDS`] x
//! [`PER_SHARD`] entries, about 5 KB each with Authgear-sized tokens.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, RwLock};

use serde_json::{Map, Value};

use crate::auth::Identity;
use crate::policy::headers::RenderedHeaders;

/// Shards, each behind its own lock (readers share it).
pub const SHARDS: usize = 16;
/// Entries per shard: 4096 sessions in all.
pub const PER_SHARD: usize = 256;
/// Bytes of the sealed value's end that pick the slot.
const TAIL: usize = 48;

/// One opened session, as a hit serves it.
pub struct Opened {
    /// The whole sealed value, compared on every hit.
    value: Box<str>,
    id: String,
    claims: Arc<Map<String, Value>>,
    /// For `pass_access_token`.
    pub access_token: String,
    access_exp: u64,
    expires: u64,
    /// Not served at or after this (Unix seconds): the Redis store's
    /// `redis_cache_ttl`; `u64::MAX` for the cookie store, whose value is
    /// the session itself.
    until: u64,
    /// Its identity headers, rendered on first use.
    rendered: Arc<RenderedHeaders>,
}

impl Opened {
    /// A session just opened from the sealed `value`.
    pub fn new(value: &str, id: String, claims: Map<String, Value>, access_token: String, access_exp: u64, expires: u64, until: u64) -> Opened {
        Opened { value: value.into(), id, claims: Arc::new(claims), access_token, access_exp, expires, until, rendered: Arc::default() }
    }

    /// The session id (for the logout list).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Still simply valid at `now`: before its end and with more than
    /// `margin` seconds left on the access token.
    pub fn fresh(&self, now: u64, margin: u64) -> bool {
        self.expires > now && self.until > now && self.access_exp > now.saturating_add(margin)
    }

    /// The identity for the route checks and headers (claims shared, headers
    /// kept rendered as a cached token's are).
    pub fn identity(&self, issuer: usize) -> Identity {
        Identity { claims: self.claims.clone(), issuer, rendered: Some(self.rendered.clone()) }
    }
}

/// The opened-cookie cache of one `LoginService`.
pub struct OpenedCache {
    shards: Vec<RwLock<HashMap<u64, Arc<Opened>>>>,
    hasher: RandomState,
}

impl Default for OpenedCache {
    fn default() -> Self {
        OpenedCache { shards: (0..SHARDS).map(|_| RwLock::default()).collect(), hasher: RandomState::new() }
    }
}

impl OpenedCache {
    fn slot(&self, value: &str) -> (usize, u64) {
        let tail = &value.as_bytes()[value.len().saturating_sub(TAIL)..];
        let h = self.hasher.hash_one((value.len(), tail));
        ((h as usize) % SHARDS, h)
    }

    /// The entry for exactly this sealed value.
    pub fn get(&self, value: &str) -> Option<Arc<Opened>> {
        let (s, h) = self.slot(value);
        let shard = self.shards[s].read().unwrap_or_else(|p| p.into_inner());
        shard.get(&h).filter(|o| *o.value == *value).cloned()
    }

    /// Forgets the entry for this sealed value, if any.
    pub fn remove(&self, value: &str) {
        let (s, h) = self.slot(value);
        let mut shard = self.shards[s].write().unwrap_or_else(|p| p.into_inner());
        if shard.get(&h).is_some_and(|o| *o.value == *value) {
            shard.remove(&h);
        }
    }

    /// Forgets everything (a back-channel logout ended sessions this
    /// process may hold opened).
    pub fn clear(&self) {
        for shard in &self.shards {
            shard.write().unwrap_or_else(|p| p.into_inner()).clear();
        }
    }

    /// Keeps `o`, making room in its shard (what has expired goes first).
    pub fn insert(&self, o: Arc<Opened>, now: u64) {
        let (s, h) = self.slot(&o.value);
        let mut shard = self.shards[s].write().unwrap_or_else(|p| p.into_inner());
        if shard.len() >= PER_SHARD && !shard.contains_key(&h) {
            shard.retain(|_, e| e.expires > now && e.until > now && e.access_exp > now);
            if shard.len() >= PER_SHARD {
                // Full of live sessions: any one goes (the map's order is
                // keyed per process); it is opened again on its next request.
                if let Some(k) = shard.keys().next().copied() {
                    shard.remove(&k);
                }
            }
        }
        shard.insert(h, o);
    }
}

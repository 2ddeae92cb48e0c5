//! The verified-token cache: skips the signature check (the expensive part)
//! for a token this gateway verified a moment ago, and nothing else.
//!
//! What a hit still does, every time (see `auth::verify_token`): the full
//! token is compared (the hash only picks the slot), the entry is refused at
//! the token's own `exp`, the issuer must still be configured and its key
//! set must still hold the very key that verified the token (same `kid`,
//! same material), and every claim check (`typ`, `iss`, `aud` with the
//! route's override, `exp`/`nbf`/`iat` with the current leeway) runs again
//! on the cached claims. Route requirements (roles, scopes, claims) are
//! evaluated per request in `server::authorize`, never cached. Only tokens
//! that passed every check are inserted: a failure is never remembered.
//! An entry also keeps the token's identity headers once rendered
//! (`headers::RenderedHeaders`, tied to the mapping that made them), so a
//! hit does not format its claims again.
//!
//! Layout: a fixed number of shards, each a map from a 64-bit keyed hash
//! (SipHash-1-3 with a per-process random key, so clients cannot aim
//! collisions at a shard) to a slot in a vector. A lookup takes the shard's
//! read lock, which readers share; only inserts (after a full verification,
//! which costs far more) take the write lock. Each shard is bounded in
//! entries and in bytes and evicts with CLOCK (second chance): a hit sets the
//! slot's reference bit, the eviction hand clears bits as it passes and
//! evicts the first slot whose bit is clear (or whose token has expired), so
//! tokens in steady use stay while one-off tokens go first.
//!
//! Admission: a token is stored on its second full verification, not its
//! first (`Doorkeeper`, the "doorkeeper" of TinyLFU). A token used once
//! costs nothing more than its verification: no entry built, nothing evicted
//! for it, no cold entry freed. In `bench/` a never-seen token on every
//! request was ~8% faster with the cache off than with store-on-first-use
//! (7 paired rounds); a token in steady use pays one extra verification in
//! its lifetime. A flood of one-off tokens cannot flush the tokens in use.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use serde_json::{Map, Value};

use super::keys::VerifyKey;
use crate::policy::headers::RenderedHeaders;

/// Number of shards: enough that two writers rarely meet on a small box,
/// few enough that per-shard bounds stay meaningful for small caches.
const SHARDS: usize = 16;

/// Bytes charged per entry on top of the token and claims: the slot, the
/// map entry and allocator overhead.
const ENTRY_OVERHEAD: usize = 512;

/// A token that passed every check, as the cache keeps it.
pub struct Verified {
    /// The whole token, compared on every hit.
    token: Box<str>,
    pub claims: Arc<Map<String, Value>>,
    /// The header's `typ`, for the `token_types` check on a hit.
    pub typ: Option<Box<str>>,
    /// The key that verified the signature.
    pub key: Arc<VerifyKey>,
    /// The token's `exp`: the entry is never served at or after it.
    pub exp: u64,
    /// Its identity headers, rendered on first use.
    pub rendered: Arc<RenderedHeaders>,
    charge: usize,
}

impl Verified {
    /// Builds an entry; `payload_len` is the decoded claims' size in bytes,
    /// used to charge the entry against the memory bound.
    pub fn new(token: &str, claims: Arc<Map<String, Value>>, typ: Option<&str>, key: Arc<VerifyKey>, exp: u64, payload_len: usize) -> Self {
        // Parsed claims (a map of small heap strings) take about four times
        // their JSON size: measured as ~4 KB of RSS per Authgear-shaped
        // token of ~900 bytes in bench/run.sh. The rendered headers are a
        // subset of the claims: charged once more.
        let charge = token.len() + 5 * payload_len + ENTRY_OVERHEAD;
        Verified { token: token.into(), claims, typ: typ.map(Into::into), key, exp, rendered: Arc::default(), charge }
    }
}

/// Hit/miss counters (relaxed; for tests, logs and metrics).
#[derive(Debug, Default)]
pub struct CacheStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub inserts: AtomicU64,
    pub evictions: AtomicU64,
    /// Verified tokens not stored because this was their first use.
    pub deferred: AtomicU64,
}

/// Remembers which tokens were verified recently, so only a token's second
/// verification stores it. A Bloom filter of two bits per token over the
/// token's keyed hash, about eight bits per cache entry (about 5% of
/// one-off tokens are stored anyway), lock-free, cleared whole after as
/// many first uses as the cache holds entries. Races are harmless: at
/// worst a token is stored one use early or late.
struct Doorkeeper {
    words: Box<[AtomicU64]>,
    /// Bits in the filter, minus one (a power of two minus one).
    mask: u64,
    added: AtomicUsize,
    window: usize,
}

impl Doorkeeper {
    fn new(max_entries: usize) -> Doorkeeper {
        let bits = (max_entries.saturating_mul(8)).clamp(1024, 1 << 30).next_power_of_two();
        let words = (0..bits / 64).map(|_| AtomicU64::new(0)).collect();
        Doorkeeper { words, mask: bits as u64 - 1, added: AtomicUsize::new(0), window: max_entries.max(1) }
    }

    /// True when `hash` was seen in this window; otherwise records it.
    fn seen_before(&self, hash: u64) -> bool {
        // Two positions from independent halves of the SipHash output.
        let a = hash & self.mask;
        let b = hash.rotate_left(32) & self.mask;
        let set = |pos: u64| {
            let bit = 1u64 << (pos % 64);
            self.words[(pos / 64) as usize].fetch_or(bit, Ordering::Relaxed) & bit != 0
        };
        let (had_a, had_b) = (set(a), set(b));
        if had_a && had_b {
            return true;
        }
        if self.added.fetch_add(1, Ordering::Relaxed) + 1 >= self.window {
            self.added.store(0, Ordering::Relaxed);
            for w in self.words.iter() {
                w.store(0, Ordering::Relaxed);
            }
        }
        false
    }
}

struct Slot {
    hash: u64,
    entry: Verified,
    referenced: AtomicBool,
}

/// The map's keys are already SipHash outputs: hashing them again is waste.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; fold anything else in for completeness.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[derive(Default)]
struct Shard {
    index: HashMap<u64, usize, BuildHasherDefault<PassThrough>>,
    slots: Vec<Slot>,
    hand: usize,
    bytes: usize,
}

impl Shard {
    /// Removes one slot chosen by CLOCK; false when the shard is empty.
    fn evict_one(&mut self, now: u64) -> bool {
        if self.slots.is_empty() {
            return false;
        }
        // Two sweeps at most: the first clears every reference bit.
        loop {
            if self.hand >= self.slots.len() {
                self.hand = 0;
            }
            let slot = &self.slots[self.hand];
            let expired = slot.entry.exp <= now;
            if !expired && slot.referenced.swap(false, Ordering::Relaxed) {
                self.hand += 1;
                continue;
            }
            self.remove_at(self.hand);
            return true;
        }
    }

    fn remove_at(&mut self, i: usize) {
        let gone = self.slots.swap_remove(i);
        self.index.remove(&gone.hash);
        self.bytes -= gone.entry.charge;
        if let Some(moved) = self.slots.get(i) {
            self.index.insert(moved.hash, i);
        }
    }
}

/// A token's place in the cache (see [`TokenCache::key`]).
#[derive(Debug, Clone, Copy)]
pub struct TokenKey(u64);

/// A bounded map from token to [`Verified`].
pub struct TokenCache {
    shards: Box<[RwLock<Shard>]>,
    hasher: RandomState,
    max_entries_per_shard: usize,
    max_bytes_per_shard: usize,
    doorkeeper: Doorkeeper,
    pub stats: CacheStats,
}

impl TokenCache {
    /// A cache of at most `max_entries` tokens taking at most about
    /// `max_bytes`. Both must be positive.
    pub fn new(max_entries: usize, max_bytes: usize) -> TokenCache {
        let shards = (0..SHARDS).map(|_| RwLock::new(Shard::default())).collect();
        TokenCache {
            shards,
            hasher: RandomState::new(),
            max_entries_per_shard: max_entries.div_ceil(SHARDS).max(1),
            max_bytes_per_shard: (max_bytes / SHARDS).max(1),
            doorkeeper: Doorkeeper::new(max_entries),
            stats: CacheStats::default(),
        }
    }

    /// The token's keyed hash: computed once for a lookup and, after a
    /// miss and a full verification, the insert (a SipHash over a token of
    /// a kilobyte is not free).
    pub fn key(&self, token: &str) -> TokenKey {
        TokenKey(self.hasher.hash_one(token))
    }

    fn shard(&self, key: TokenKey) -> &RwLock<Shard> {
        // The map indexes by the low bits and tags by the top ones, so pick
        // the shard from the middle.
        &self.shards[((key.0 >> 32) as usize) % SHARDS]
    }

    /// Runs `check` on the entry for `token` if there is one and its `exp`
    /// has not passed. The shard's read lock is held during `check`, so keep
    /// it short and never await in it.
    pub fn lookup<R>(&self, key: TokenKey, token: &str, now: u64, check: impl FnOnce(&Verified) -> R) -> Option<R> {
        let hash = key.0;
        let guard = self.shard(key).read().unwrap_or_else(|p| p.into_inner());
        let found = guard.index.get(&hash).map(|&i| &guard.slots[i]).filter(|s| *s.entry.token == *token && s.entry.exp > now);
        let Some(slot) = found else {
            self.stats.misses.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        // Only write the bit when it changes: a hot token read on several
        // cores then keeps its cache line shared.
        if !slot.referenced.load(Ordering::Relaxed) {
            slot.referenced.store(true, Ordering::Relaxed);
        }
        self.stats.hits.fetch_add(1, Ordering::Relaxed);
        Some(check(&slot.entry))
    }

    /// Asked after a full verification, before an entry is built: true
    /// when the token was verified before in the current window and should
    /// be stored now (see `Doorkeeper`).
    pub fn admits(&self, key: TokenKey) -> bool {
        let admit = self.doorkeeper.seen_before(key.0);
        if !admit {
            self.stats.deferred.fetch_add(1, Ordering::Relaxed);
        }
        admit
    }

    /// Stores a token that passed every check under `key` (its
    /// [`TokenCache::key`]). Tokens already expired at `now`, or too large
    /// for a shard's byte budget, are not stored.
    pub fn insert(&self, key: TokenKey, entry: Verified, now: u64) {
        if entry.exp <= now || entry.charge > self.max_bytes_per_shard {
            return;
        }
        debug_assert_eq!(key.0, self.key(&entry.token).0, "inserted under another token's key");
        let hash = key.0;
        let mut s = self.shard(key).write().unwrap_or_else(|p| p.into_inner());
        if let Some(&i) = s.index.get(&hash) {
            // The same token verified twice by racing requests (or, with
            // odds of 2^-64, another token): keep the newest.
            s.remove_at(i);
        }
        let mut evicted = 0;
        while s.slots.len() >= self.max_entries_per_shard || s.bytes + entry.charge > self.max_bytes_per_shard {
            if !s.evict_one(now) {
                break;
            }
            evicted += 1;
        }
        s.bytes += entry.charge;
        let i = s.slots.len();
        s.slots.push(Slot { hash, entry, referenced: AtomicBool::new(false) });
        s.index.insert(hash, i);
        drop(s);
        self.stats.inserts.fetch_add(1, Ordering::Relaxed);
        if evicted > 0 {
            self.stats.evictions.fetch_add(evicted, Ordering::Relaxed);
        }
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().unwrap_or_else(|p| p.into_inner()).slots.len()).sum()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes charged now (tokens plus estimated claims and overhead).
    pub fn bytes(&self) -> usize {
        self.shards.iter().map(|s| s.read().unwrap_or_else(|p| p.into_inner()).bytes).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::keys::KeySet;

    fn key() -> Arc<VerifyKey> {
        // The P-256 public key of RFC 7515 appendix A.3; nothing is signed here.
        let jwk = serde_json::json!({
            "kty": "EC", "crv": "P-256", "kid": "k", "alg": "ES256", "use": "sig",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
        });
        let jwks = serde_json::json!({ "keys": [jwk] }).to_string();
        let (set, _) = KeySet::from_jwks(jwks.as_bytes()).unwrap();
        set.all()[0].clone()
    }

    fn entry(token: &str, exp: u64, k: &Arc<VerifyKey>) -> Verified {
        Verified::new(token, Arc::new(Map::new()), None, k.clone(), exp, 10)
    }

    #[test]
    fn hit_needs_the_whole_token_and_a_live_exp() {
        let k = key();
        let c = TokenCache::new(100, 1 << 20);
        c.insert(c.key("a.b.c"), entry("a.b.c", 1000, &k), 10);
        assert_eq!(c.lookup(c.key("a.b.c"), "a.b.c", 10, |v| v.exp), Some(1000));
        assert_eq!(c.lookup(c.key("a.b.cd"), "a.b.cd", 10, |v| v.exp), None);
        assert_eq!(c.lookup(c.key("a.b.c"), "a.b.c", 1000, |v| v.exp), None, "never served at or after exp");
        c.insert(c.key("x.y.z"), entry("x.y.z", 5, &k), 10);
        assert_eq!(c.lookup(c.key("x.y.z"), "x.y.z", 1, |_| ()), None, "an expired token is not stored");
    }

    #[test]
    fn bounded_in_entries_and_bytes_and_keeps_hot_tokens() {
        let k = key();
        let c = TokenCache::new(SHARDS * 4, 1 << 30);
        c.insert(c.key("hot"), entry("hot", 1000, &k), 0);
        for i in 0..2000 {
            assert!(c.lookup(c.key("hot"), "hot", 0, |_| ()).is_some(), "hot token evicted after {i} inserts");
            let t = format!("cold-{i}");
            c.insert(c.key(&t), entry(&t, 1000, &k), 0);
        }
        assert!(c.len() <= SHARDS * 4);
        let small = TokenCache::new(1_000_000, SHARDS * 2000);
        for i in 0..5000 {
            let t = format!("t-{i:04}-{}", "x".repeat(300));
            small.insert(small.key(&t), entry(&t, 1000, &k), 0);
        }
        assert!(small.bytes() <= SHARDS * 2000, "{}", small.bytes());
        assert!(!small.is_empty());
    }

    #[test]
    fn a_token_is_admitted_on_its_second_verification_and_one_offs_mostly_not() {
        let c = TokenCache::new(1000, 1 << 20);
        let k = c.key("a.b.c");
        assert!(!c.admits(k), "first use: not stored");
        assert!(c.admits(k), "second use: stored");
        let one_offs = (0..900).filter(|i| c.admits(c.key(&format!("once-{i}")))).count();
        assert!(one_offs < 90, "{one_offs} of 900 one-off tokens admitted");
        // The 1,000th first use in the window clears the filter.
        let deferred = || c.stats.deferred.load(Ordering::Relaxed);
        let mut i = 0;
        while deferred() < 1000 {
            c.admits(c.key(&format!("more-{i}")));
            i += 1;
        }
        assert!(!c.admits(k), "a new window starts empty");
    }
}

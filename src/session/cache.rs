//! The verdict cache: a bounded map from a credential's hash to the
//! resolver's last verdict, with per-entry expiry, and single-flight so that
//! concurrent misses for one credential make one resolver call.
//!
//! The resolver call runs in its own task: a client that disconnects
//! cancels its own request, never the lookup other requests are waiting on.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::resolver::{ResolverError, Verdict};

/// SHA-256 of a credential: raw cookie and token values are never kept.
pub type Key = [u8; 32];

/// The result of one resolver lookup, shared by everyone waiting on it.
pub type Outcome = Result<Verdict, ResolverError>;

/// Hashes the credential parts into a cache key.
pub fn key_of(parts: &[&[u8]]) -> Key {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for p in parts {
        // Length-prefixed so ("ab", "c") and ("a", "bc") differ.
        ctx.update(&(p.len() as u64).to_be_bytes());
        ctx.update(p);
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(ctx.finish().as_ref());
    key
}

enum Slot {
    Ready {
        verdict: Verdict,
        expires: Instant,
    },
    /// A lookup is running; its result arrives on this channel.
    Pending(watch::Receiver<Option<Outcome>>),
}

/// How a lookup was answered, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// From the cache, no resolver call.
    Hit,
    /// This request started the resolver call.
    Called,
    /// Joined a call another request had started.
    Joined,
}

struct Inner {
    map: HashMap<Key, Slot>,
    last_sweep: Instant,
}

/// Bounded, expiring, single-flight verdict cache.
pub struct VerdictCache {
    inner: Mutex<Inner>,
    ttl: Duration,
    negative_ttl: Duration,
    max_entries: usize,
}

/// Expired entries are swept at most this often (the sweep is O(n)).
const SWEEP_EVERY: Duration = Duration::from_millis(500);

impl VerdictCache {
    /// `ttl` for valid verdicts, `negative_ttl` for the others; zero keeps
    /// nothing (lookups are still shared while in flight).
    pub fn new(ttl: Duration, negative_ttl: Duration, max_entries: usize) -> Self {
        VerdictCache { inner: Mutex::new(Inner { map: HashMap::new(), last_sweep: Instant::now() }), ttl, negative_ttl, max_entries: max_entries.max(1) }
    }

    /// The cached verdict for `key`, or the result of `lookup` (started at
    /// most once per key at a time, in its own task).
    pub async fn get_or_resolve<F>(self: &Arc<Self>, key: Key, lookup: F) -> (Outcome, Source)
    where
        F: Future<Output = Outcome> + Send + 'static,
    {
        let (mut rx, source) = {
            let mut inner = self.lock();
            match inner.map.get(&key) {
                Some(Slot::Ready { verdict, expires }) if *expires > Instant::now() => return (Ok(verdict.clone()), Source::Hit),
                // A lookup whose task died (sender gone, slot never settled)
                // is replaced rather than joined.
                Some(Slot::Pending(rx)) if rx.has_changed().is_ok() => (rx.clone(), Source::Joined),
                _ => {
                    let (tx, rx) = watch::channel(None);
                    inner.map.insert(key, Slot::Pending(rx.clone()));
                    let cache = self.clone();
                    tokio::spawn(async move {
                        let outcome = lookup.await;
                        cache.settle(key, &outcome);
                        let _ = tx.send(Some(outcome));
                    });
                    (rx, Source::Called)
                }
            }
        };
        let outcome = match rx.wait_for(Option::is_some).await {
            Ok(v) => v.clone().unwrap_or(Err(ResolverError::Abandoned)),
            Err(_) => Err(ResolverError::Abandoned),
        };
        (outcome, source)
    }

    /// Number of entries (pending lookups included).
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// True when nothing is cached or pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stores a finished lookup (failures are never stored) and keeps the
    /// map within its bound.
    fn settle(&self, key: Key, outcome: &Outcome) {
        let mut inner = self.lock();
        let ttl = match outcome {
            Ok(Verdict::Valid(_)) => self.ttl,
            Ok(_) => self.negative_ttl,
            Err(_) => Duration::ZERO,
        };
        let Ok(verdict) = outcome else {
            inner.map.remove(&key);
            return;
        };
        if ttl.is_zero() {
            inner.map.remove(&key);
            return;
        }
        let now = Instant::now();
        inner.map.insert(key, Slot::Ready { verdict: verdict.clone(), expires: now + ttl });
        if inner.map.len() <= self.max_entries {
            return;
        }
        if now.duration_since(inner.last_sweep) >= SWEEP_EVERY {
            inner.last_sweep = now;
            inner.map.retain(|_, s| !matches!(s, Slot::Ready { expires, .. } if *expires <= now));
        }
        // Still full: drop arbitrary finished entries (never in-flight ones,
        // never the one just stored).
        while inner.map.len() > self.max_entries {
            let victim = inner.map.iter().find(|(k, s)| **k != key && matches!(s, Slot::Ready { .. })).map(|(k, _)| *k);
            match victim {
                Some(k) => {
                    inner.map.remove(&k);
                }
                None => break,
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves a map that is still valid.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn counting(calls: &Arc<AtomicUsize>, v: Verdict) -> impl Future<Output = Outcome> + Send + 'static {
        let calls = calls.clone();
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
            Ok(v)
        }
    }

    #[tokio::test]
    async fn hits_do_not_call_and_expiry_does() {
        let cache = Arc::new(VerdictCache::new(Duration::from_secs(60), Duration::ZERO, 10));
        let calls = Arc::new(AtomicUsize::new(0));
        let k = key_of(&[b"session=a"]);
        let (_, s1) = cache.get_or_resolve(k, counting(&calls, Verdict::Absent)).await;
        assert_eq!(s1, Source::Called);
        // Negative TTL zero: not kept.
        let (_, s2) = cache.get_or_resolve(k, counting(&calls, Verdict::Valid(Arc::default()))).await;
        assert_eq!(s2, Source::Called);
        let (o, s3) = cache.get_or_resolve(k, counting(&calls, Verdict::Invalid)).await;
        assert_eq!((o, s3), (Ok(Verdict::Valid(Arc::default())), Source::Hit));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn failures_are_not_cached() {
        let cache = Arc::new(VerdictCache::new(Duration::from_secs(60), Duration::from_secs(60), 10));
        let k = key_of(&[b"x"]);
        let (o, _) = cache.get_or_resolve(k, async { Err(ResolverError::Timeout) }).await;
        assert_eq!(o, Err(ResolverError::Timeout));
        assert!(cache.is_empty());
    }

    #[tokio::test]
    async fn concurrent_misses_share_one_call() {
        let cache = Arc::new(VerdictCache::new(Duration::from_secs(60), Duration::from_secs(1), 10));
        let calls = Arc::new(AtomicUsize::new(0));
        let k = key_of(&[b"same"]);
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (cache, calls) = (cache.clone(), calls.clone());
            tasks.push(tokio::spawn(async move { cache.get_or_resolve(k, counting(&calls, Verdict::Invalid)).await }));
        }
        for t in tasks {
            assert_eq!(t.await.ok().map(|r| r.0), Some(Ok(Verdict::Invalid)));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn size_is_bounded() {
        let cache = Arc::new(VerdictCache::new(Duration::from_secs(60), Duration::from_secs(60), 5));
        for i in 0..100u32 {
            let k = key_of(&[&i.to_be_bytes()]);
            assert_eq!(cache.get_or_resolve(k, async { Ok(Verdict::Invalid) }).await.0, Ok(Verdict::Invalid));
            assert!(cache.len() <= 5);
        }
    }

    #[test]
    fn keys_are_hashes_with_boundaries() {
        assert_ne!(key_of(&[b"ab", b"c"]), key_of(&[b"a", b"bc"]));
        assert_eq!(key_of(&[b"a"]), key_of(&[b"a"]));
    }
}

//! Session mode: Authgear's resolver endpoint judges session cookies and
//! opaque tokens, the gateway enforces its verdict. [`SessionResolver`] is
//! the per-snapshot service: the credentials it forwards, the verdict cache,
//! the resolver's health and counters.

pub mod cache;
pub mod redirect;
pub mod resolver;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use http::header::{HeaderValue, COOKIE};
use http::{HeaderMap, Uri};
use tracing::{info, warn};

use crate::config::SessionSettings;
use cache::{key_of, Source, VerdictCache};
use resolver::{Credentials, ResolverClient, ResolverError, Verdict};

/// Counters for `/readyz` and tests.
#[derive(Debug, Default)]
pub struct SessionStats {
    /// Requests answered from the cache.
    pub cache_hits: AtomicU64,
    /// Resolver calls made.
    pub resolver_calls: AtomicU64,
    /// Requests that waited on another request's call.
    pub joined: AtomicU64,
    /// Calls that failed (refused, timeout, 5xx, malformed).
    pub resolver_failures: AtomicU64,
}

/// The resolver client, its verdict cache and its health, shared by every
/// request of the snapshots whose session settings are equal.
pub struct SessionResolver {
    pub settings: SessionSettings,
    roles_claim: Option<String>,
    client: Arc<ResolverClient>,
    cache: Arc<VerdictCache>,
    reachable: Arc<AtomicBool>,
    pub stats: Arc<SessionStats>,
}

impl SessionResolver {
    /// Builds the service; `roles_claim` is the issuer's roles claim name.
    pub fn new(settings: &SessionSettings, url: Uri, roles_claim: Option<&str>) -> Result<Self, String> {
        let client = ResolverClient::new(settings, url, roles_claim)?;
        let cache = VerdictCache::new(settings.cache_ttl, settings.negative_ttl, settings.cache_max_entries);
        Ok(SessionResolver {
            settings: settings.clone(),
            roles_claim: roles_claim.map(str::to_owned),
            client: Arc::new(client),
            cache: Arc::new(cache),
            reachable: Arc::new(AtomicBool::new(true)),
            stats: Arc::default(),
        })
    }

    /// True when a reload can keep this service (and its cache and pool).
    pub fn same_settings(&self, settings: &SessionSettings, roles_claim: Option<&str>) -> bool {
        self.settings == *settings && self.roles_claim.as_deref() == roles_claim
    }

    /// False after a failed call, until a call succeeds again.
    pub fn is_reachable(&self) -> bool {
        self.reachable.load(Ordering::Relaxed)
    }

    /// What would be sent to the resolver for this request: only the
    /// configured session cookies and a `Bearer` token (`bearer`, already
    /// taken from the single Authorization header).
    pub fn credentials(&self, headers: &HeaderMap, bearer: Option<&str>) -> Credentials {
        Credentials {
            cookie: session_cookies(headers, &self.settings.cookies),
            authorization: bearer.and_then(|t| HeaderValue::from_str(&format!("Bearer {t}")).ok()),
        }
    }

    /// The resolver's verdict on `creds`, from the cache when fresh.
    pub async fn resolve(&self, creds: Credentials) -> Result<Verdict, ResolverError> {
        let cookie = creds.cookie.as_ref().map_or(&b""[..], HeaderValue::as_bytes);
        let authz = creds.authorization.as_ref().map_or(&b""[..], HeaderValue::as_bytes);
        let key = key_of(&[cookie, authz]);
        let (client, reachable, stats) = (self.client.clone(), self.reachable.clone(), self.stats.clone());
        let lookup = crate::observe::trace::carry(async move {
            stats.resolver_calls.fetch_add(1, Ordering::Relaxed);
            let outcome = client.resolve(&creds).await;
            crate::observe::metrics::metrics().resolver_call(match &outcome {
                Ok(Verdict::Valid(_)) => "valid",
                Ok(Verdict::Invalid) => "invalid",
                Ok(Verdict::Absent) => "absent",
                Err(_) => "failed",
            });
            // Logged once per change of state, not once per request.
            match &outcome {
                // Shedding load is the gateway's choice, not the resolver failing.
                Err(ResolverError::Saturated) => {
                    stats.resolver_failures.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    stats.resolver_failures.fetch_add(1, Ordering::Relaxed);
                    if reachable.swap(false, Ordering::Relaxed) {
                        warn!(error = %e, "session resolver unavailable; session routes answer 503");
                    }
                }
                Ok(_) => {
                    if !reachable.swap(true, Ordering::Relaxed) {
                        info!("session resolver reachable again");
                    }
                }
            }
            outcome
        });
        let (outcome, source) = self.cache.get_or_resolve(key, lookup).await;
        let label = match source {
            Source::Hit => {
                self.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
                "hit"
            }
            Source::Joined => {
                self.stats.joined.fetch_add(1, Ordering::Relaxed);
                "joined"
            }
            Source::Called => "called",
        };
        crate::observe::metrics::metrics().session_lookup(label);
        outcome
    }
}

/// The request's cookies whose names are in `names`, re-joined as one
/// `Cookie` value; `None` when there are none. Every other cookie stays out.
pub fn session_cookies(headers: &HeaderMap, names: &[String]) -> Option<HeaderValue> {
    let mut out = String::new();
    // HTTP/2 clients may split cookies over several headers.
    for v in headers.get_all(COOKIE).iter().filter_map(|v| v.to_str().ok()) {
        for pair in v.split(';') {
            let Some((name, value)) = pair.trim().split_once('=') else { continue };
            if value.trim().is_empty() || !names.iter().any(|n| n == name.trim()) {
                continue;
            }
            if !out.is_empty() {
                out.push_str("; ");
            }
            out.push_str(name.trim());
            out.push('=');
            out.push_str(value.trim());
        }
    }
    if out.is_empty() {
        None
    } else {
        HeaderValue::from_str(&out).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_session_cookies_are_kept() {
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static("theme=dark; session=abc; tracking=1"));
        h.append(COOKIE, HeaderValue::from_static("sessionx=no; other_session=nope"));
        let names = vec!["session".to_owned()];
        assert_eq!(session_cookies(&h, &names), Some(HeaderValue::from_static("session=abc")));
        let two = vec!["session".to_owned(), "sessionx".to_owned()];
        assert_eq!(session_cookies(&h, &two), Some(HeaderValue::from_static("session=abc; sessionx=no")));
        let mut empty = HeaderMap::new();
        empty.insert(COOKIE, HeaderValue::from_static("session=; theme=x"));
        assert_eq!(session_cookies(&empty, &names), None);
        assert_eq!(session_cookies(&HeaderMap::new(), &names), None);
    }
}

//! Bearer JWTs: the token from the request, verified against the issuer's
//! keys (discovery and JWKS fetched and kept fresh, verified tokens cached),
//! giving the caller's identity. Which method a route uses is the request
//! path's choice (`pipeline::authenticate`).

pub mod cache;
pub mod fetch;
pub mod jwks;
pub mod jwt;
pub mod keys;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use http::header::AUTHORIZATION;
use http::HeaderMap;
use serde_json::{Map, Value};

use crate::config::Config;
use crate::error::GatewayError;
use crate::policy::headers::RenderedHeaders;
use cache::{TokenCache, Verified};
use jwks::{KeyState, KeyStore};
use jwt::{ClaimRules, TokenError};

/// A verified caller.
#[derive(Debug, Clone)]
pub struct Identity {
    pub claims: Arc<Map<String, Value>>,
    /// Index of the issuer (in `Config::issuers`) that vouched for it.
    pub issuer: usize,
    /// The identity headers kept with the token's cache entry, when it has
    /// one (see `headers::RenderedHeaders`).
    pub rendered: Option<Arc<RenderedHeaders>>,
}

impl Identity {
    /// The `sub` claim, for logs.
    pub fn subject(&self) -> Option<&str> {
        self.claims.get("sub").and_then(Value::as_str)
    }
}

/// Why verification did not produce an identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFailure {
    /// 401: the token is bad.
    Token(TokenError),
    /// 503: no trustworthy keys to check it with (not loaded yet, or stale).
    KeysUnavailable,
}

impl From<TokenError> for AuthFailure {
    fn from(e: TokenError) -> Self {
        AuthFailure::Token(e)
    }
}

/// The bearer token of a request. `Ok(None)` when there is no
/// `Authorization` header or it uses another scheme; an error for two
/// headers or an empty bearer value. Tokens in query strings or cookies are
/// never looked at.
pub fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, GatewayError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(v) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(GatewayError::MultipleAuthorization);
    }
    let Ok(v) = v.to_str() else {
        return Err(GatewayError::InvalidToken(TokenError::Malformed("Authorization header is not ASCII")));
    };
    let v = v.trim();
    let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    let token = rest.trim();
    if token.is_empty() || memchr::memchr(b' ', token.as_bytes()).is_some() {
        return Err(GatewayError::InvalidToken(TokenError::Malformed("bearer value is empty or has spaces")));
    }
    Ok(Some(token))
}

/// Current Unix time in seconds.
pub fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Milliseconds since the Unix epoch (0 before it).
pub fn now_unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A compact JWS has exactly three dot-separated parts; Authgear's opaque
/// tokens have none.
pub fn looks_like_jwt(token: &str) -> bool {
    token.bytes().filter(|&b| b == b'.').count() == 2
}

/// Verifies a token: from the verified-token cache when it holds this exact
/// token (every check but the signature runs again, see `cache.rs`), else
/// fully: shape and algorithm, issuer, signature (with one shared JWKS
/// refetch for an unknown `kid`), then the claims. Only a token that passed
/// everything is cached, and only from its second verification on.
pub async fn verify_token(
    cfg: &Config,
    stores: &[Arc<KeyStore>],
    cache: Option<&TokenCache>,
    token: &str,
    audiences: Option<&[String]>,
    now: u64,
) -> Result<Identity, AuthFailure> {
    let slot = cache.map(|c| (c, c.key(token)));
    if let Some(hit) = slot.and_then(|(c, k)| c.lookup(k, token, now, |v| recheck(cfg, stores, v, audiences, now))).flatten() {
        return hit;
    }
    let parsed = jwt::parse(token)?;
    // The issuer picks the key cache; an untrusted one never reaches a
    // key lookup or a fetch.
    let iss = parsed.claims.get("iss").and_then(Value::as_str).ok_or(TokenError::MissingClaim("iss"))?;
    let idx = cfg.issuer_index(iss).ok_or(TokenError::UnknownIssuer)?;
    let settings = &cfg.issuers[idx];
    let store = stores.get(idx).ok_or(AuthFailure::KeysUnavailable)?;
    let snapshot = match store.state() {
        KeyState::Ready => store.snapshot(),
        KeyState::Stale => return Err(AuthFailure::KeysUnavailable),
        // Nothing loaded yet: one shared, rate-limited attempt now.
        KeyState::NotLoaded => store.refetch_for_unknown_kid().await,
    };
    let snapshot = snapshot.ok_or(AuthFailure::KeysUnavailable)?;
    let key = match jwt::verify_signature(&parsed, &snapshot.keys) {
        Ok(k) => k.clone(),
        Err(TokenError::UnknownKid) => {
            let fresh = store.refetch_for_unknown_kid().await.ok_or(TokenError::UnknownKid)?;
            jwt::verify_signature(&parsed, &fresh.keys)?.clone()
        }
        Err(e) => return Err(e.into()),
    };
    let rules = ClaimRules {
        issuer: &settings.issuer,
        audiences: audiences.unwrap_or(&settings.audiences),
        leeway: settings.leeway,
        token_types: &settings.token_types,
    };
    jwt::check_claims(&parsed, &rules, now)?;
    let claims = Arc::new(parsed.claims);
    let mut rendered = None;
    // A token is stored on its second verification (`TokenCache::admits`).
    if let (Some((c, k)), Some(exp)) = (slot.filter(|(c, k)| c.admits(*k)), jwt::expiry(&claims)) {
        let payload_len = parsed.signing_input.len() * 3 / 4;
        let entry = Verified::new(token, claims.clone(), parsed.header.typ.as_deref(), key, exp, payload_len);
        rendered = Some(entry.rendered.clone());
        c.insert(k, entry, now);
    }
    Ok(Identity { claims, issuer: idx, rendered })
}

/// The checks a cache hit still needs. `None` sends the token down the full
/// path: its issuer's keys are not loaded, or the key that verified it is no
/// longer in the JWKS (the full path then answers exactly as for a token
/// never seen: unknown `kid` after a refetch, or a bad signature when the
/// `kid` now names another key).
fn recheck(cfg: &Config, stores: &[Arc<KeyStore>], v: &Verified, audiences: Option<&[String]>, now: u64) -> Option<Result<Identity, AuthFailure>> {
    let iss = v.claims.get("iss").and_then(Value::as_str)?;
    let idx = cfg.issuer_index(iss)?;
    let settings = &cfg.issuers[idx];
    let store = stores.get(idx)?;
    match store.state() {
        KeyState::Ready => {}
        KeyState::Stale => return Some(Err(AuthFailure::KeysUnavailable)),
        KeyState::NotLoaded => return None,
    }
    if !store.holds(&v.key) {
        return None;
    }
    let rules = ClaimRules {
        issuer: &settings.issuer,
        audiences: audiences.unwrap_or(&settings.audiences),
        leeway: settings.leeway,
        token_types: &settings.token_types,
    };
    let view = jwt::ClaimsView { typ: v.typ.as_deref(), claims: &v.claims };
    Some(match jwt::check_claims_of(&view, &rules, now) {
        Ok(()) => Ok(Identity { claims: v.claims.clone(), issuer: idx, rendered: Some(v.rendered.clone()) }),
        Err(e) => Err(e.into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn h(vals: &[&'static str]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for v in vals {
            m.append(AUTHORIZATION, HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn bearer_extraction() {
        assert_eq!(bearer_token(&h(&[])).ok(), Some(None));
        assert_eq!(bearer_token(&h(&["Bearer abc"])).ok(), Some(Some("abc")));
        assert_eq!(bearer_token(&h(&["bEaReR abc"])).ok(), Some(Some("abc")));
        assert_eq!(bearer_token(&h(&["Basic dXNlcjpw"])).ok(), Some(None));
        assert!(matches!(bearer_token(&h(&["Bearer a", "Bearer b"])), Err(GatewayError::MultipleAuthorization)));
        assert!(matches!(bearer_token(&h(&["Bearer "])), Err(GatewayError::InvalidToken(_))));
        assert!(matches!(bearer_token(&h(&["Bearer a b"])), Err(GatewayError::InvalidToken(_))));
    }
}

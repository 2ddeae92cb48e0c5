//! Authentication: find the bearer token, verify it against the issuer's
//! keys, and produce the caller's identity.

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
use crate::routes::{AuthMode, Route};
use jwks::{KeyState, KeyStore};
use jwt::{ClaimRules, TokenError};

/// A verified caller.
#[derive(Debug, Clone)]
pub struct Identity {
    pub claims: Arc<Map<String, Value>>,
    /// Index of the issuer (in `Config::issuers`) that vouched for it.
    pub issuer: usize,
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
    if token.is_empty() || token.contains(' ') {
        return Err(GatewayError::InvalidToken(TokenError::Malformed("bearer value is empty or has spaces")));
    }
    Ok(Some(token))
}

/// Current Unix time in seconds.
pub fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Applies the route's auth mode: `Ok(None)` for an anonymous request the
/// route lets through, `Ok(Some)` for a verified caller.
pub async fn authenticate(cfg: &Config, stores: &[Arc<KeyStore>], route: &Route, headers: &HeaderMap) -> Result<Option<Identity>, GatewayError> {
    if route.auth == AuthMode::Public {
        return Ok(None);
    }
    let token = match bearer_token(headers)? {
        Some(t) => t,
        None if route.auth == AuthMode::Optional => return Ok(None),
        None => return Err(GatewayError::MissingToken),
    };
    let audiences = route.audiences.as_deref();
    let m = crate::metrics::metrics();
    match verify_token(cfg, stores, token, audiences, now_unix()).await {
        Ok(id) => {
            m.token("ok");
            Ok(Some(id))
        }
        Err(AuthFailure::Token(e)) => {
            m.token(e.reason());
            Err(GatewayError::InvalidToken(e))
        }
        Err(AuthFailure::KeysUnavailable) => {
            m.token("keys_unavailable");
            Err(GatewayError::KeysUnavailable)
        }
    }
}

/// Verifies a token fully: shape and algorithm, issuer, signature (with one
/// shared JWKS refetch for an unknown `kid`), then the claims.
pub async fn verify_token(cfg: &Config, stores: &[Arc<KeyStore>], token: &str, audiences: Option<&[String]>, now: u64) -> Result<Identity, AuthFailure> {
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
    match jwt::verify_signature(&parsed, &snapshot.keys) {
        Ok(()) => {}
        Err(TokenError::UnknownKid) => {
            let fresh = store.refetch_for_unknown_kid().await.ok_or(TokenError::UnknownKid)?;
            jwt::verify_signature(&parsed, &fresh.keys)?;
        }
        Err(e) => return Err(e.into()),
    }
    let rules = ClaimRules {
        issuer: &settings.issuer,
        audiences: audiences.unwrap_or(&settings.audiences),
        leeway: settings.leeway,
        token_types: &settings.token_types,
    };
    jwt::check_claims(&parsed, &rules, now)?;
    Ok(Identity { claims: Arc::new(parsed.claims), issuer: idx })
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

//! Refreshing a session's tokens before the access token expires, once per
//! session however many requests arrive together: the first runs the
//! refresh, the others wait for its result, and requests that still carry
//! the old cookie shortly after get the same result (the provider rotates
//! refresh tokens, so a second refresh with the old one would end the
//! session).

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::digest::{digest, SHA256};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;
use tokio::sync::OnceCell;
use tracing::{info, warn};

use super::oidc::ProviderError;
use super::sessions::{stored, Unsaved};
use super::store::RedisStore;
use super::{cookies, lock, Flight, LoginService, Refreshed, Session};
use crate::auth::jwks::KeyStore;
use crate::auth::{looks_like_jwt, verify_token};
use crate::config::Config;

/// How long a refresh's result answers requests with the old cookie.
pub const RESULT_TTL: u64 = 60;
/// The Redis refresh lock outlives a slow token endpoint call.
const LOCK_TTL: Duration = Duration::from_secs(15);
/// How long a replica waits for another one's refresh.
const LOCK_WAIT: Duration = Duration::from_secs(10);
const LOCK_POLL: Duration = Duration::from_millis(50);

impl LoginService {
    /// Refreshes `session` (single-flight per session and refresh token).
    pub async fn refresh(&self, cfg: &Config, keys: &[Arc<KeyStore>], session: Session, present: &[(&str, &str)], now: u64) -> Refreshed {
        // Keyed by the refresh token spent (rotation makes each one a new
        // flight), hashed so the map holds no token.
        let spent = session.refresh_token.as_deref().unwrap_or("");
        let key = format!("{}:{}", session.id, URL_SAFE_NO_PAD.encode(digest(&SHA256, spent.as_bytes()).as_ref()));
        let flight: Flight = {
            let mut m = lock(&self.flights);
            m.retain(|_, (until, _)| *until > now);
            m.entry(key.clone()).or_insert_with(|| (now + RESULT_TTL, Arc::new(OnceCell::new()))).1.clone()
        };
        let owned: Vec<(String, String)> = present.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect();
        let result = flight.get_or_init(|| self.run_refresh(cfg, keys, session, owned, now)).await.clone();
        if matches!(result, Refreshed::Down) {
            // Nothing to share: the next request tries again.
            lock(&self.flights).remove(&key);
        }
        result
    }

    async fn run_refresh(&self, cfg: &Config, keys: &[Arc<KeyStore>], session: Session, present: Vec<(String, String)>, now: u64) -> Refreshed {
        let jar: Vec<(&str, &str)> = present.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        match self.store.redis() {
            None => self.at_provider(cfg, keys, session, &jar, now).await,
            Some(r) => self.locked(r, cfg, keys, session, &jar, now).await,
        }
    }

    /// Redis store: one replica refreshes a session at a time. The holder
    /// of the lock re-reads the session first (another replica may have
    /// refreshed it just before); a replica that finds the lock taken
    /// re-reads the session until its refresh token changes, the session
    /// is gone, or [`LOCK_WAIT`] passes (then it is [`Refreshed::Down`]:
    /// the current access token serves while valid, never a logout).
    async fn locked(&self, r: &RedisStore, cfg: &Config, keys: &[Arc<KeyStore>], session: Session, jar: &[(&str, &str)], now: u64) -> Refreshed {
        let s = &self.settings;
        let deadline = Instant::now() + LOCK_WAIT;
        let gone = || Refreshed::Ended(cookies::clear_session(&s.cookie_name, s.secure, jar));
        loop {
            let token = match r.lock_refresh(&session.id, LOCK_TTL).await {
                Ok(t) => t,
                Err(_) => return Refreshed::Down,
            };
            let current = stored(r, &session.id, Duration::ZERO).await;
            let result = match current {
                Err(_) => Some(Refreshed::Down),
                Ok(None) => Some(gone()),
                Ok(Some(c)) if c.refresh_token != session.refresh_token => Some(Refreshed::Fresh(Box::new(c), Vec::new())),
                Ok(Some(c)) => match &token {
                    Some(_) => Some(self.at_provider(cfg, keys, c, jar, now).await),
                    None => None,
                },
            };
            if let Some(t) = &token {
                r.unlock_refresh(&session.id, t).await;
            }
            if let Some(result) = result {
                return result;
            }
            if Instant::now() >= deadline {
                info!("refresh: another replica holds the lock too long");
                return Refreshed::Down;
            }
            tokio::time::sleep(LOCK_POLL).await;
        }
    }

    /// The refresh itself, at the provider's token endpoint.
    async fn at_provider(&self, cfg: &Config, keys: &[Arc<KeyStore>], mut session: Session, jar: &[(&str, &str)], now: u64) -> Refreshed {
        let s = &self.settings;
        let jar = jar.to_vec();
        let Some(rt) = session.refresh_token.clone() else { return Refreshed::Ended(cookies::clear_session(&s.cookie_name, s.secure, &jar)) };
        let endpoints = match self.provider.endpoints().await {
            Ok(e) => e,
            Err(e) => {
                warn!(error = %e, "refresh: provider discovery failed");
                return Refreshed::Down;
            }
        };
        let tokens = match self.provider.post_form(&endpoints.token, s, &[("grant_type", "refresh_token"), ("refresh_token", &rt)]).await {
            Ok(t) => t,
            Err(ProviderError::Down(e)) => {
                warn!(error = %e, "refresh: token endpoint unavailable");
                return Refreshed::Down;
            }
            Err(e) => {
                info!(error = %e, "refresh refused: the session ends");
                if self.end_session(&session, now).await.is_err() {
                    warn!("refresh refused, and the session store could not delete the session");
                }
                return Refreshed::Ended(cookies::clear_session(&s.cookie_name, s.secure, &jar));
            }
        };
        let text = |k: &str| tokens.get(k).and_then(Value::as_str).filter(|t| !t.is_empty()).map(str::to_owned);
        let Some(access) = text("access_token") else { return Refreshed::Down };
        let sub = session.claims.get("sub").cloned();
        let mut exp = tokens.get("expires_in").and_then(Value::as_u64).map(|e| now.saturating_add(e));
        if looks_like_jwt(&access) {
            if let Ok(at) = verify_token(cfg, keys, None, &access, None, now).await {
                if at.claims.get("sub") != sub.as_ref() {
                    return Refreshed::Ended(cookies::clear_session(&s.cookie_name, s.secure, &jar));
                }
                exp = exp.or_else(|| crate::auth::jwt::expiry(&at.claims));
                for (k, v) in at.claims.iter().filter(|(k, _)| matches!(k.as_str(), "scope" | "https://authgear.com/claims/user/roles")) {
                    session.claims.insert(k.clone(), v.clone());
                }
            }
        }
        if let Some(id_token) = text("id_token") {
            let audience = [s.client_id.clone()];
            match verify_token(cfg, keys, None, &id_token, Some(&audience), now).await {
                Ok(id) if id.claims.get("sub") == sub.as_ref() => {
                    for (k, v) in id.claims.iter().filter(|(k, _)| !matches!(k.as_str(), "nonce" | "at_hash" | "c_hash")) {
                        session.claims.insert(k.clone(), v.clone());
                    }
                    session.id_token = id_token;
                }
                _ => return Refreshed::Ended(cookies::clear_session(&s.cookie_name, s.secure, &jar)),
            }
        }
        session.access_token = access;
        session.access_exp = exp.unwrap_or(now + 60);
        if let Some(new_rt) = text("refresh_token") {
            session.refresh_token = Some(new_rt);
        }
        session.last_seen = now;
        match self.persist(&session, &jar, now, false).await {
            Ok(lines) => Refreshed::Fresh(Box::new(session), lines),
            Err(Unsaved::Gone) => Refreshed::Ended(cookies::clear_session(&s.cookie_name, s.secure, &jar)),
            Err(Unsaved::Down) => {
                // The provider rotated the refresh token already: this
                // request is served, the stored session keeps the old one.
                warn!("refresh: the session store could not keep the new tokens");
                Refreshed::Fresh(Box::new(session), Vec::new())
            }
            Err(Unsaved::TooLarge) => Refreshed::Down,
        }
    }
}

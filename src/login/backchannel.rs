//! OpenID Connect Back-Channel Logout 1.0 (Redis store only): the provider
//! POSTs a signed logout token naming a login (`sid`) or a user (`sub`),
//! and every matching session ends on every replica at once. The token is
//! verified through the same key cache as bearer tokens, with the checks
//! of the spec's section 2.6: signature, `iss`, `aud` = client id, `iat`,
//! `exp`, the back-channel logout event, `sid` or `sub`, no `nonce` (so an
//! ID token is never taken for a logout token), and a `jti` not seen
//! before (remembered in Redis, so a replay to another replica fails too).

use std::sync::Arc;
use std::time::Duration;

use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Response, StatusCode};
use serde_json::Value;
use tracing::{info, warn};

use super::store::RedisStore;
use super::LoginService;
use crate::auth::jwks::{KeyState, KeyStore};
use crate::auth::jwt::{self, ClaimRules};
use crate::config::Config;
use crate::error::{full, Body, TokenError};

/// The event a logout token must carry.
pub const LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// Most bytes of form body read (a logout token is well under 8 KiB).
pub const MAX_FORM: usize = 16 * 1024;
/// `jti`s are remembered at least this long, and until the token expires.
const JTI_TTL: Duration = Duration::from_secs(600);

/// Why a logout token was refused (logged; the body says `invalid_request`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    NoToken,
    Token(TokenError),
    KeysUnavailable,
    NotForThisClient,
    NoEvent,
    HasNonce,
    NoSubject,
    NoJti,
    Replayed,
}

impl Refused {
    fn reason(&self) -> &'static str {
        match self {
            Refused::NoToken => "no_logout_token",
            Refused::Token(e) => e.reason(),
            Refused::KeysUnavailable => "keys_unavailable",
            Refused::NotForThisClient => "wrong_issuer",
            Refused::NoEvent => "no_logout_event",
            Refused::HasNonce => "nonce_present",
            Refused::NoSubject => "no_sid_or_sub",
            Refused::NoJti => "no_jti",
            Refused::Replayed => "jti_replayed",
        }
    }
}

fn answer(status: StatusCode, body: Option<(&str, &str)>) -> Response<Body> {
    let text = body.map_or(String::new(), |(e, d)| serde_json::json!({ "error": e, "error_description": d }).to_string());
    let mut r = Response::new(full(text));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if body.is_some() {
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        h.insert(http::header::RETRY_AFTER, HeaderValue::from_static("5"));
    }
    r
}

impl LoginService {
    /// The POST on `backchannel_logout_path`, with its form body.
    pub async fn backchannel_logout(&self, cfg: &Config, keys: &[Arc<KeyStore>], body: &[u8], now: u64) -> Response<Body> {
        let Some(redis) = self.store.redis() else {
            return answer(StatusCode::NOT_IMPLEMENTED, Some(("invalid_request", "back-channel logout needs the Redis session store")));
        };
        let token = form_urlencoded::parse(body).find(|(k, _)| k == "logout_token").map(|(_, v)| v.into_owned());
        let checked = match token {
            None => Err(Ok(Refused::NoToken)),
            Some(t) => self.verify_logout_token(cfg, keys, redis, &t, now).await,
        };
        let (sid, sub) = match checked {
            Ok(found) => found,
            Err(Ok(r)) => {
                info!(reason = r.reason(), "back-channel logout refused");
                return answer(StatusCode::BAD_REQUEST, Some(("invalid_request", "the logout token is not valid")));
            }
            Err(Err(())) => return answer(StatusCode::SERVICE_UNAVAILABLE, Some(("temporarily_unavailable", "the session store is not reachable"))),
        };
        match redis.end_matching(sid.as_deref(), sub.as_deref()).await {
            Ok(n) => {
                // This process may hold some of them opened (redis_cache_ttl).
                self.forget_opened();
                info!(sessions = n, by_sid = sid.is_some(), "back-channel logout");
                answer(StatusCode::OK, None)
            }
            Err(_) => {
                warn!("back-channel logout: the session store could not end the sessions");
                answer(StatusCode::SERVICE_UNAVAILABLE, Some(("temporarily_unavailable", "the session store is not reachable")))
            }
        }
    }

    /// `Ok((sid, sub))`; `Err(Ok(why))` for a bad token, `Err(Err(()))`
    /// when Redis could not record the `jti`.
    async fn verify_logout_token(
        &self,
        cfg: &Config,
        keys: &[Arc<KeyStore>],
        redis: &RedisStore,
        token: &str,
        now: u64,
    ) -> Result<(Option<String>, Option<String>), Result<Refused, ()>> {
        let bad = |r: Refused| Err(Ok(r));
        let parsed = jwt::parse(token).map_err(|e| Ok(Refused::Token(e)))?;
        let idx = self.settings.issuer;
        let settings = cfg.issuers.get(idx).ok_or(Ok(Refused::NotForThisClient))?;
        if parsed.claims.get("iss").and_then(Value::as_str) != Some(settings.issuer.as_str()) {
            return bad(Refused::NotForThisClient);
        }
        let store = keys.get(idx).ok_or(Ok(Refused::KeysUnavailable))?;
        let snapshot = match store.state() {
            KeyState::Ready => store.snapshot(),
            KeyState::Stale => None,
            KeyState::NotLoaded => store.refetch_for_unknown_kid().await,
        };
        let snapshot = snapshot.ok_or(Ok(Refused::KeysUnavailable))?;
        match jwt::verify_signature(&parsed, &snapshot.keys) {
            Ok(_) => {}
            Err(TokenError::UnknownKid) => {
                let fresh = store.refetch_for_unknown_kid().await.ok_or(Ok(Refused::Token(TokenError::UnknownKid)))?;
                jwt::verify_signature(&parsed, &fresh.keys).map_err(|e| Ok(Refused::Token(e)))?;
            }
            Err(e) => return bad(Refused::Token(e)),
        }
        // The spec's media type, and plain JWT from providers that send it.
        let types = ["logout+jwt".to_owned(), "JWT".to_owned()];
        let audience = [self.settings.client_id.clone()];
        let rules = ClaimRules { issuer: &settings.issuer, audiences: &audience, leeway: settings.leeway, token_types: &types };
        jwt::check_claims(&parsed, &rules, now).map_err(|e| Ok(Refused::Token(e)))?;
        let c = &parsed.claims;
        if c.get("iat").and_then(Value::as_u64).is_none() {
            return bad(Refused::Token(TokenError::MissingClaim("iat")));
        }
        if !c.get("events").and_then(Value::as_object).is_some_and(|e| e.get(LOGOUT_EVENT).is_some_and(Value::is_object)) {
            return bad(Refused::NoEvent);
        }
        if c.contains_key("nonce") {
            return bad(Refused::HasNonce);
        }
        let text = |k: &str| c.get(k).and_then(Value::as_str).filter(|v| !v.is_empty()).map(str::to_owned);
        let (sid, sub) = (text("sid"), text("sub"));
        if sid.is_none() && sub.is_none() {
            return bad(Refused::NoSubject);
        }
        let Some(jti) = text("jti") else { return bad(Refused::NoJti) };
        let until = jwt::expiry(c).map_or(0, |e| e.saturating_sub(now).saturating_add(settings.leeway.as_secs()));
        let ttl = JTI_TTL.max(Duration::from_secs(until));
        match redis.first_use(&settings.issuer, &jti, ttl).await {
            Ok(true) => Ok((sid, sub)),
            Ok(false) => bad(Refused::Replayed),
            Err(_) => Err(Err(())),
        }
    }
}

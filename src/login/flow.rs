//! The login itself: [`LoginService::start`] sends a browser to the
//! authorization endpoint with a fresh `state`, `nonce` and PKCE pair kept
//! in a sealed cookie of its own (one per flow, so several tabs can log in
//! at once; the oldest beyond `max_login_flows` is dropped), and
//! [`LoginService::callback`] checks the answer, exchanges the code and
//! creates a new session.

use std::sync::Arc;

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest::{digest, SHA256};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::{HeaderMap, Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::{info, warn};

use super::cookies;
use super::oidc::ProviderError;
use super::pages;
use super::seal::random_token;
use super::sessions::Unsaved;
use super::{LoginService, Session};
use crate::auth::jwks::KeyStore;
use crate::auth::{looks_like_jwt, verify_token, AuthFailure};
use crate::config::Config;
use crate::error::{Body, GatewayError};

/// How long a login may take between the redirect and the callback.
pub const FLOW_TTL: u64 = 600;

/// One pending login, sealed into its state cookie.
#[derive(Serialize, Deserialize)]
struct Pending {
    state: String,
    verifier: String,
    nonce: String,
    /// A path on this site (checked by the caller), with its query.
    ret: String,
    created: u64,
}

/// Claims of the access token that the session does not take over the
/// ID token's: they describe the token, not the user.
const TOKEN_ONLY: &[&str] = &["aud", "exp", "iat", "nbf", "jti", "nonce", "azp", "at_hash", "c_hash"];

impl LoginService {
    fn state_cookie(&self, state: &str) -> String {
        // The first 10 characters (60 random bits) tell flows apart; the
        // whole state is checked inside the sealed value.
        format!("{}-state-{}", self.settings.cookie_name, &state[..state.len().min(10)])
    }

    fn state_prefix(&self) -> String {
        format!("{}-state-", self.settings.cookie_name)
    }

    /// The redirect to the authorization endpoint for a browser that asked
    /// for `ret` (a same-site path and query, already checked).
    pub async fn start(&self, ret: &str, headers: &HeaderMap, now: u64) -> Result<GatewayError, GatewayError> {
        let s = &self.settings;
        let endpoints = self.provider.endpoints().await.map_err(|e| {
            warn!(error = %e, "login: provider discovery failed");
            GatewayError::KeysUnavailable
        })?;
        let rnd = |n| random_token(n).ok_or_else(|| GatewayError::Internal("no randomness".into()));
        let (state, nonce, verifier) = (rnd(32)?, rnd(32)?, rnd(32)?);
        let challenge = URL_SAFE_NO_PAD.encode(digest(&SHA256, verifier.as_bytes()).as_ref());
        let pending = Pending { state: state.clone(), verifier, nonce: nonce.clone(), ret: ret.to_owned(), created: now };
        let name = self.state_cookie(&state);
        let body = serde_json::to_vec(&pending).map_err(|e| GatewayError::Internal(e.to_string()))?;
        let sealed = self.sealer.seal(&name, &body).ok_or_else(|| GatewayError::Internal("sealing failed".into()))?;
        let mut set = vec![cookies::set(&name, &sealed, Some(FLOW_TTL), s.secure)];
        set.extend(self.drop_old_flows(headers));
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("response_type", "code")
            .append_pair("client_id", &s.client_id)
            .append_pair("redirect_uri", &format!("{}{}", s.public_origin, s.redirect_path))
            .append_pair("scope", &s.scopes.join(" "))
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        let sep = if endpoints.authorization.contains('?') { '&' } else { '?' };
        Ok(GatewayError::LoginStart(Box::new((format!("{}{sep}{}", endpoints.authorization, q.finish()), set))))
    }

    /// Deletes the oldest state cookies so that, with the new one, at most
    /// `max_login_flows` remain. Ages are read from the sealed values; one
    /// that does not open is the first to go.
    fn drop_old_flows(&self, headers: &HeaderMap) -> Vec<String> {
        let jar = cookies::request_cookies(headers);
        let prefix = self.state_prefix();
        let mut flows: Vec<(u64, &str)> = jar
            .iter()
            .filter(|(n, _)| n.starts_with(&prefix))
            .map(|(n, v)| {
                let created = self.sealer.open(n, v).ok().and_then(|p| serde_json::from_slice::<Pending>(&p).ok()).map_or(0, |p| p.created);
                (created, *n)
            })
            .collect();
        let keep = self.settings.max_login_flows.saturating_sub(1);
        if flows.len() <= keep {
            return Vec::new();
        }
        flows.sort();
        let excess = flows.len() - keep;
        flows.iter().take(excess).map(|(_, n)| cookies::clear(n, self.settings.secure)).collect()
    }

    /// The callback: checks `state` against its cookie, exchanges the code,
    /// verifies the ID token, and answers with a new session and a
    /// redirect to where the browser was going, or with a plain error page.
    pub async fn callback(&self, cfg: &Config, keys: &[Arc<KeyStore>], query: Option<&str>, headers: &HeaderMap, now: u64) -> Response<Body> {
        let s = &self.settings;
        let params: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or("").as_bytes()).into_owned().collect();
        let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let home = "/".to_owned();
        let fail = |status: StatusCode, reason: &'static str, message: &str, again: &str, cookies: &[String]| {
            info!(reason, "login callback refused");
            pages::page(status, "Login failed", message, Some((again, "Try again")), cookies)
        };
        let Some(state) = param("state").filter(|s| !s.is_empty()) else {
            return fail(StatusCode::BAD_REQUEST, "missing_state", "The login answer has no state.", &home, &[]);
        };
        let name = self.state_cookie(state);
        let jar = cookies::request_cookies(headers);
        let Some(value) = cookies::get(&jar, &name) else {
            return fail(StatusCode::BAD_REQUEST, "no_state_cookie", "This login was not started in this browser, or it took too long.", &home, &[]);
        };
        let clear = vec![cookies::clear(&name, s.secure)];
        let pending: Option<Pending> = self.sealer.open(&name, value).ok().and_then(|p| serde_json::from_slice(&p).ok());
        let Some(pending) = pending else {
            return fail(StatusCode::BAD_REQUEST, "state_cookie_invalid", "The login state could not be read.", &home, &clear);
        };
        if verify_slices_are_equal(pending.state.as_bytes(), state.as_bytes()).is_err() {
            return fail(StatusCode::BAD_REQUEST, "state_mismatch", "The login answer does not belong to this login.", &home, &clear);
        }
        let again = pending.ret.clone();
        if pending.created.saturating_add(FLOW_TTL) <= now {
            return fail(StatusCode::BAD_REQUEST, "state_expired", "The login took too long.", &again, &clear);
        }
        if !Self::remember(&self.spent_states, pending.state.clone(), pending.created + FLOW_TTL, now) {
            return fail(StatusCode::BAD_REQUEST, "state_replayed", "This login answer was already used.", &again, &clear);
        }
        if let Some(err) = param("error") {
            let code: String = err.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(40).collect();
            info!(error = %code, "login: the provider ended the login");
            let msg = format!("The login was not completed ({code}).");
            return pages::page(StatusCode::FORBIDDEN, "Login failed", &msg, Some((&again, "Try again")), &clear);
        }
        let Some(code) = param("code").filter(|c| !c.is_empty()) else {
            return fail(StatusCode::BAD_REQUEST, "missing_code", "The login answer has no code.", &again, &clear);
        };
        let endpoints = match self.provider.endpoints().await {
            Ok(e) => e,
            Err(e) => {
                warn!(error = %e, "login: provider discovery failed");
                return fail(StatusCode::SERVICE_UNAVAILABLE, "provider_down", "The login service is not reachable; try again shortly.", &again, &clear);
            }
        };
        let redirect_uri = format!("{}{}", s.public_origin, s.redirect_path);
        let fields = [("grant_type", "authorization_code"), ("code", code), ("redirect_uri", &redirect_uri), ("code_verifier", &pending.verifier)];
        let tokens = match self.provider.post_form(&endpoints.token, s, &fields).await {
            Ok(t) => t,
            Err(ProviderError::Down(e)) => {
                warn!(error = %e, "login: token endpoint unavailable");
                return fail(StatusCode::SERVICE_UNAVAILABLE, "provider_down", "The login service is not reachable; try again shortly.", &again, &clear);
            }
            Err(e) => {
                info!(error = %e, "login: code exchange refused");
                return fail(StatusCode::BAD_REQUEST, "code_refused", "The login could not be completed.", &again, &clear);
            }
        };
        let session = match self.session_from(cfg, keys, &tokens, &pending, now).await {
            Ok(s) => s,
            Err(reason) => return fail(StatusCode::BAD_REQUEST, reason, "The login answer could not be verified.", &again, &clear),
        };
        let mut set = match self.persist(&session, &jar, now, true).await {
            Ok(lines) => lines,
            Err(Unsaved::Down) => {
                // The state is spent; a new login (the link) starts afresh.
                let mut r =
                    fail(StatusCode::SERVICE_UNAVAILABLE, "session_store_unavailable", "The session could not be stored; try again shortly.", &again, &clear);
                r.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("5"));
                return r;
            }
            Err(_) => return fail(StatusCode::INTERNAL_SERVER_ERROR, "session_too_large", "The session is too large for cookies.", &again, &clear),
        };
        set.extend(clear);
        let sub = session.claims.get("sub").and_then(serde_json::Value::as_str).unwrap_or("-");
        info!(sub, "login: new session");
        pages::redirect(&format!("{}{}", s.public_origin, pending.ret), &set)
    }

    /// Verifies the token response and builds a fresh session from it.
    async fn session_from(&self, cfg: &Config, keys: &[Arc<KeyStore>], tokens: &Value, pending: &Pending, now: u64) -> Result<Session, &'static str> {
        let s = &self.settings;
        let text = |k: &str| tokens.get(k).and_then(Value::as_str).filter(|t| !t.is_empty()).map(str::to_owned);
        let id_token = text("id_token").ok_or("no_id_token")?;
        let access_token = text("access_token").ok_or("no_access_token")?;
        let audience = [s.client_id.clone()];
        let id = match verify_token(cfg, keys, None, &id_token, Some(&audience), now).await {
            Ok(id) => id,
            Err(AuthFailure::Token(e)) => {
                info!(reason = e.reason(), "login: ID token refused");
                return Err("id_token_invalid");
            }
            Err(AuthFailure::KeysUnavailable) => return Err("keys_unavailable"),
        };
        if id.issuer != s.issuer {
            return Err("id_token_issuer");
        }
        let c = &id.claims;
        let nonce = c.get("nonce").and_then(Value::as_str).unwrap_or("");
        if verify_slices_are_equal(nonce.as_bytes(), pending.nonce.as_bytes()).is_err() {
            return Err("nonce_mismatch");
        }
        if c.get("azp").is_some_and(|a| a.as_str() != Some(s.client_id.as_str())) {
            return Err("azp_mismatch");
        }
        if c.get("iat").and_then(Value::as_u64).is_none() || c.get("sub").and_then(Value::as_str).is_none() {
            return Err("id_token_claims");
        }
        let mut claims = serde_json::Map::new();
        let mut access_exp = tokens.get("expires_in").and_then(Value::as_u64).map(|e| now.saturating_add(e));
        if looks_like_jwt(&access_token) {
            // An access token that does not verify adds nothing, but the
            // login stands: the ID token is what proves who logged in.
            if let Ok(at) = verify_token(cfg, keys, None, &access_token, None, now).await {
                if at.claims.get("sub") != c.get("sub") {
                    return Err("access_token_subject");
                }
                access_exp = access_exp.or_else(|| crate::auth::jwt::expiry(&at.claims));
                claims.extend(at.claims.iter().filter(|(k, _)| !TOKEN_ONLY.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        claims.extend(c.iter().filter(|(k, _)| !matches!(k.as_str(), "nonce" | "at_hash" | "c_hash")).map(|(k, v)| (k.clone(), v.clone())));
        let id_exp = crate::auth::jwt::expiry(c).unwrap_or(now);
        Ok(Session {
            id: random_token(32).ok_or("no_randomness")?,
            claims,
            access_token,
            refresh_token: text("refresh_token"),
            id_token,
            access_exp: access_exp.unwrap_or(id_exp),
            expires: now.saturating_add(s.session_lifetime.as_secs()),
            last_seen: now,
        })
    }
}

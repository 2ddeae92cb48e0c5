//! The signed identity assertion (`[assertion]`): a short-lived JWT that
//! tells the app who the gateway judged the caller to be, for apps that
//! verify instead of trusting the network path (see `docs/ASSERTION.md`).
//!
//! Signing is the costly part (an ECDSA signature per request), so a signed
//! assertion is kept for the same content: issuer, `aud`, `sub` and the
//! mapped claims. It is only ever handed to a request that was just
//! authenticated, so it never stands for a credential that no longer
//! checks out at the time it is sent. Two requests with equal content
//! may share one assertion because it says nothing else. It is re-signed
//! when less than a third of its lifetime is left, so an app always gets at
//! least two thirds of `lifetime` to check it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, Method, Response};
use serde_json::{Map, Value};

use crate::auth::Identity;
use crate::config::{AssertionKeyPair, AssertionSettings, UpstreamSettings};
use crate::error::{full, Body, GatewayError};
use crate::policy::headers::ClaimSource;
use crate::policy::routes::Route;

/// Signed assertions kept at once; past it, stale ones go first, then all.
const CACHE_ENTRIES: usize = 10_000;

/// The assertion's own claims, never copied from the token.
const RESERVED_CLAIMS: &[&str] = &["iss", "aud", "sub", "iat", "exp", "nbf", "jti"];

/// Signs assertions with the first key, keeps them, and serves the JWKS.
pub struct AssertionSigner {
    settings: Arc<AssertionSettings>,
    /// The protected header, base64url-encoded once.
    header_b64: String,
    jwks: Bytes,
    rng: aws_lc_rs::rand::SystemRandom,
    cache: Mutex<HashMap<Vec<u8>, Cached>>,
}

struct Cached {
    value: HeaderValue,
    /// Unix milliseconds after which it is signed anew.
    fresh_until_ms: u64,
}

impl AssertionSigner {
    /// The signer for `settings` (which holds at least one key).
    pub fn new(settings: Arc<AssertionSettings>) -> Result<AssertionSigner, String> {
        let first = settings.keys.first().ok_or("no signing key")?;
        let header = serde_json::json!({ "alg": settings.algorithm.as_str(), "kid": first.kid, "typ": "JWT" }).to_string();
        let keys: Vec<&Value> = settings.keys.iter().map(|k| &k.jwk).collect();
        let jwks = Bytes::from(serde_json::json!({ "keys": keys }).to_string());
        Ok(AssertionSigner {
            header_b64: URL_SAFE_NO_PAD.encode(header),
            jwks,
            settings,
            rng: aws_lc_rs::rand::SystemRandom::new(),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The settings it was built from (a reload keeps the signer, and so
    /// its cache, while they are equal).
    pub fn settings(&self) -> &Arc<AssertionSettings> {
        &self.settings
    }

    /// The JWKS document: every key's public half.
    pub fn jwks(&self) -> Bytes {
        self.jwks.clone()
    }

    /// The JWKS as an HTTP answer, cacheable for a minute (a rotation is
    /// seen within that; see `docs/ASSERTION.md` for the order of steps).
    pub fn jwks_response(&self, method: &Method) -> Response<Body> {
        let body = if method == Method::HEAD { full("") } else { full(self.jwks()) };
        let mut r = Response::new(body);
        let h = r.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/jwk-set+json"));
        h.insert(CACHE_CONTROL, HeaderValue::from_static("public, max-age=60"));
        r
    }

    /// The JWKS answer for a GET or HEAD of `jwks_path` on the main
    /// listener, before any route is matched; `None` for any other request.
    pub fn own_path(&self, method: &Method, path: &str) -> Option<Response<Body>> {
        let wanted = self.settings.jwks_path.as_deref()?;
        (path == wanted && (method == Method::GET || method == Method::HEAD)).then(|| self.jwks_response(method))
    }

    /// Puts the assertion for `identity` on `route` in `headers`. Without an
    /// identity it removes any copy, or with `empty_when_anonymous` (the
    /// forward-auth answer, which an ingress copies over the client's
    /// header) sets it empty.
    pub fn insert(
        &self,
        upstream: &UpstreamSettings,
        route: &Route,
        identity: Option<&Identity>,
        headers: &mut HeaderMap,
        empty_when_anonymous: bool,
    ) -> Result<(), GatewayError> {
        let name = self.settings.header.clone();
        match identity {
            Some(id) => {
                let value = self.assertion(&audience(upstream), route, &id.claims, crate::auth::now_unix_ms())?;
                headers.insert(name, value);
            }
            None if empty_when_anonymous => {
                headers.insert(name, HeaderValue::from_static(""));
            }
            None => {
                headers.remove(name);
            }
        }
        Ok(())
    }

    /// The signed assertion for these claims, from the cache while fresh.
    pub fn assertion(&self, aud: &str, route: &Route, claims: &Map<String, Value>, now_ms: u64) -> Result<HeaderValue, GatewayError> {
        let lifetime_ms = u64::try_from(self.settings.lifetime.as_millis()).unwrap_or(u64::MAX);
        // The key is the content itself, written without building the
        // payload: a hit costs one pass over the mapped claims.
        let mapped = || {
            route.headers.entries.iter().filter_map(|(_, src)| match src {
                // A mapping of the token's own `aud` or `iss` must not
                // replace the assertion's.
                ClaimSource::Claim(c) if !RESERVED_CLAIMS.contains(&c.as_str()) => claims.get(c).filter(|v| !v.is_null()).map(|v| (c, v)),
                _ => None,
            })
        };
        let sub = claims.get("sub").filter(|v| !v.is_null());
        let mut key = Vec::with_capacity(256);
        key.extend_from_slice(aud.as_bytes());
        for (name, v) in sub.map(|v| ("sub", v)).into_iter().chain(mapped().map(|(c, v)| (c.as_str(), v))) {
            key.push(0);
            key.extend_from_slice(name.as_bytes());
            key.push(0);
            serde_json::to_writer(&mut key, v).map_err(|e| GatewayError::Internal(format!("assertion claims: {e}")))?;
        }
        if let Some(c) = self.lock().get(&key).filter(|c| now_ms < c.fresh_until_ms) {
            return Ok(c.value.clone());
        }
        let mut body = Map::new();
        body.insert("iss".into(), self.settings.issuer.clone().into());
        body.insert("aud".into(), aud.into());
        if let Some(sub) = sub {
            body.insert("sub".into(), sub.clone());
        }
        for (c, v) in mapped() {
            body.insert(c.clone(), v.clone());
        }
        let iat = now_ms / 1000;
        let exp = iat.saturating_add(lifetime_ms.div_ceil(1000));
        body.insert("iat".into(), iat.into());
        body.insert("exp".into(), exp.into());
        body.insert("jti".into(), URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>()).into());
        let value = self.sign(&Value::Object(body).to_string())?;
        let fresh_until_ms = exp.saturating_mul(1000).saturating_sub(lifetime_ms / 3);
        let mut cache = self.lock();
        if cache.len() >= CACHE_ENTRIES {
            cache.retain(|_, c| now_ms < c.fresh_until_ms);
            if cache.len() >= CACHE_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(key, Cached { value: value.clone(), fresh_until_ms });
        Ok(value)
    }

    /// A compact JWS of `payload` under the first key.
    fn sign(&self, payload: &str) -> Result<HeaderValue, GatewayError> {
        let mut jws = String::with_capacity(self.header_b64.len() + payload.len() * 4 / 3 + 100);
        jws.push_str(&self.header_b64);
        jws.push('.');
        URL_SAFE_NO_PAD.encode_string(payload, &mut jws);
        let key = self.settings.keys.first().ok_or_else(|| GatewayError::Internal("no assertion key".into()))?;
        let sig = match &key.pair {
            AssertionKeyPair::Es256(k) => {
                k.sign(&self.rng, jws.as_bytes()).map_err(|_| GatewayError::Internal("signing the assertion failed".into()))?.as_ref().to_vec()
            }
            AssertionKeyPair::EdDsa(k) => k.sign(jws.as_bytes()).as_ref().to_vec(),
        };
        jws.push('.');
        URL_SAFE_NO_PAD.encode_string(sig, &mut jws);
        HeaderValue::try_from(jws).map_err(|_| GatewayError::Internal("assertion is not a header value".into()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, Cached>> {
        // A panic while holding it cannot leave an entry half-written.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `aud` of an assertion: the upstream's origin, `scheme://host[:port]`.
pub fn audience(upstream: &UpstreamSettings) -> String {
    format!("{}://{}", upstream.scheme, upstream.authority)
}

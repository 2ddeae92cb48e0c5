//! The development issuer's authorization server: an authorization
//! endpoint with a one-click login page (two demo users), a token endpoint
//! (authorization code with PKCE S256, refresh with rotation), revocation
//! and end-session. Enough of OpenID Connect for the gateway's browser
//! login to run against it in the demo and the tests; loopback only.

use std::collections::HashMap;
use std::sync::Mutex;

use aws_lc_rs::digest::{digest, SHA256};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use http::request::Parts;
use http::{Method, Response, StatusCode};
use serde_json::{json, Value};

use crate::error::{full, Body};

/// Signs claims as a JWT of the given `typ` with the issuer's current key.
pub type Signer<'a> = &'a dyn Fn(&str, &Value) -> String;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn json_response(body: String, cache_control: Option<&'static str>) -> Response<Body> {
    let mut r = Response::new(full(body));
    r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    if let Some(cc) = cache_control {
        r.headers_mut().insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static(cc));
    }
    r
}

/// The demo users: (user name, `sub`, roles).
pub const DEMO_USERS: &[(&str, &str, &[&str])] = &[("alice", "user-alice", &["admin"]), ("bob", "user-bob", &[])];

/// Something the tests make the authorization server do wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// ID tokens name this audience instead of the client.
    IdTokenAudience(String),
    /// ID tokens carry a nonce other than the one asked for.
    WrongNonce,
    /// The token endpoint answers 500.
    TokenDown,
}

#[derive(Debug, Clone)]
struct Grant {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    nonce: String,
    sub: String,
    roles: Vec<String>,
    scope: String,
    state: String,
    sid: String,
}

/// Codes, refresh tokens and counters of the authorization server.
#[derive(Debug, Default)]
pub struct OAuthState {
    pending: HashMap<String, Grant>,
    codes: HashMap<String, Grant>,
    refresh: HashMap<String, Grant>,
    /// Tokens sent to the revocation endpoint.
    pub revoked: Vec<String>,
    /// Query strings the end-session endpoint was called with.
    pub end_sessions: Vec<String>,
    /// Token endpoint calls, by `grant_type`.
    pub token_calls: HashMap<String, u64>,
    /// How the last token call authenticated the client (`basic`, `post`, `none`).
    pub last_client_auth: Option<String>,
    pub fault: Option<Fault>,
    /// Access-token lifetime in seconds (0: 300).
    pub access_ttl: u64,
    /// Every token endpoint answer waits this long (tests of overlapping refreshes).
    pub token_delay: std::time::Duration,
}

/// True for the paths this file answers.
pub fn is_oauth_path(path: &str) -> bool {
    matches!(path, "/oauth2/authorize" | "/oauth2/authorize/done" | "/oauth2/token" | "/oauth2/revoke" | "/oauth2/end_session")
}

fn params(text: &str) -> HashMap<String, String> {
    form_urlencoded::parse(text.as_bytes()).into_owned().collect()
}

fn random() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 24]>())
}

fn oauth_error(status: StatusCode, code: &str) -> Response<Body> {
    let mut r = json_response(json!({"error": code}).to_string(), Some("no-store"));
    *r.status_mut() = status;
    r
}

fn html(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/html; charset=utf-8"));
    r
}

fn found(location: &str) -> Response<Body> {
    let mut r = Response::new(full(""));
    *r.status_mut() = StatusCode::FOUND;
    if let Ok(v) = http::HeaderValue::from_str(location) {
        r.headers_mut().insert(http::header::LOCATION, v);
    }
    r
}

fn with_query(base: &str, pairs: &[(&str, &str)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        q.append_pair(k, v);
    }
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}{}", q.finish())
}

/// Answers one request to an OAuth path.
pub fn answer(oauth: &Mutex<OAuthState>, sign: Signer<'_>, issuer: &str, parts: &Parts, body: &[u8]) -> Response<Body> {
    let query = params(parts.uri.query().unwrap_or(""));
    match (parts.uri.path(), &parts.method) {
        ("/oauth2/authorize", &Method::GET) => authorize(oauth, &query),
        ("/oauth2/authorize/done", &Method::GET) => done(oauth, &query),
        ("/oauth2/token", &Method::POST) => token(oauth, sign, issuer, parts, &params(&String::from_utf8_lossy(body))),
        ("/oauth2/revoke", &Method::POST) => {
            let form = params(&String::from_utf8_lossy(body));
            let mut st = lock(oauth);
            if let Some(t) = form.get("token") {
                st.refresh.remove(t);
                st.revoked.push(t.clone());
            }
            json_response("{}".into(), None)
        }
        ("/oauth2/end_session", &Method::GET) => {
            lock(oauth).end_sessions.push(parts.uri.query().unwrap_or("").to_owned());
            match query.get("post_logout_redirect_uri") {
                Some(u) => found(u),
                None => html(StatusCode::OK, "<!doctype html><p>You are logged out.</p>".into()),
            }
        }
        _ => oauth_error(StatusCode::METHOD_NOT_ALLOWED, "invalid_request"),
    }
}

/// The one-click login page: the request is checked and kept under an id.
fn authorize(oauth: &Mutex<OAuthState>, q: &HashMap<String, String>) -> Response<Body> {
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    if get("response_type") != "code" || get("code_challenge_method") != "S256" || get("code_challenge").is_empty() {
        return html(StatusCode::BAD_REQUEST, "<!doctype html><p>Unsupported request: code flow with PKCE S256 only.</p>".into());
    }
    if get("client_id").is_empty() || !get("redirect_uri").starts_with("http") || !get("scope").split(' ').any(|s| s == "openid") {
        return html(StatusCode::BAD_REQUEST, "<!doctype html><p>Missing client_id, redirect_uri or the openid scope.</p>".into());
    }
    let rid = random();
    let grant = Grant {
        client_id: get("client_id"),
        redirect_uri: get("redirect_uri"),
        challenge: get("code_challenge"),
        nonce: get("nonce"),
        sub: String::new(),
        roles: Vec::new(),
        scope: get("scope"),
        state: get("state"),
        sid: String::new(),
    };
    lock(oauth).pending.insert(rid.clone(), grant);
    let mut links = String::new();
    for (name, _, roles) in DEMO_USERS {
        links.push_str(&format!("<li><a href=\"/oauth2/authorize/done?rid={rid}&amp;user={name}\">Log in as {name}</a> (roles: {})</li>", roles.join(", ")));
    }
    links.push_str(&format!("<li><a href=\"/oauth2/authorize/done?rid={rid}&amp;user=\">Cancel</a></li>"));
    html(StatusCode::OK, format!("<!doctype html><html><head><title>Dev issuer login</title></head><body><h1>Log in</h1><ul>{links}</ul></body></html>"))
}

/// The click: a code for the user (or `access_denied`) back to the client.
fn done(oauth: &Mutex<OAuthState>, q: &HashMap<String, String>) -> Response<Body> {
    let mut st = lock(oauth);
    let Some(mut grant) = q.get("rid").and_then(|r| st.pending.remove(r)) else {
        return html(StatusCode::BAD_REQUEST, "<!doctype html><p>Unknown or used login request.</p>".into());
    };
    let user = q.get("user").map(String::as_str).unwrap_or("");
    let Some((_, sub, roles)) = DEMO_USERS.iter().find(|(n, _, _)| *n == user) else {
        return found(&with_query(&grant.redirect_uri, &[("error", "access_denied"), ("state", &grant.state)]));
    };
    grant.sub = (*sub).to_owned();
    grant.roles = roles.iter().map(|r| (*r).to_owned()).collect();
    grant.sid = random();
    let code = random();
    let location = with_query(&grant.redirect_uri, &[("code", &code), ("state", &grant.state)]);
    st.codes.insert(code, grant);
    found(&location)
}

fn token(oauth: &Mutex<OAuthState>, sign: Signer<'_>, issuer: &str, parts: &Parts, form: &HashMap<String, String>) -> Response<Body> {
    let mut st = lock(oauth);
    let grant_type = form.get("grant_type").cloned().unwrap_or_default();
    *st.token_calls.entry(grant_type.clone()).or_default() += 1;
    if st.fault == Some(Fault::TokenDown) {
        return oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error");
    }
    let basic = parts.headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Basic "));
    let client_id = match basic.and_then(|b| STANDARD.decode(b).ok()).and_then(|b| String::from_utf8(b).ok()) {
        Some(pair) => {
            st.last_client_auth = Some("basic".into());
            pair.split(':').next().unwrap_or("").to_owned()
        }
        None => {
            st.last_client_auth = Some(if form.contains_key("client_secret") { "post" } else { "none" }.into());
            form.get("client_id").cloned().unwrap_or_default()
        }
    };
    let grant = match grant_type.as_str() {
        "authorization_code" => {
            // A code works once: a replay finds nothing.
            let Some(g) = form.get("code").and_then(|c| st.codes.remove(c)) else { return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant") };
            let verifier = form.get("code_verifier").cloned().unwrap_or_default();
            let computed = URL_SAFE_NO_PAD.encode(digest(&SHA256, verifier.as_bytes()).as_ref());
            if computed != g.challenge || form.get("redirect_uri") != Some(&g.redirect_uri) || client_id != g.client_id {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
            }
            g
        }
        "refresh_token" => {
            // Rotation: the old refresh token is spent by this call.
            let Some(g) = form.get("refresh_token").and_then(|t| st.refresh.remove(t)) else { return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant") };
            if client_id != g.client_id {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
            }
            g
        }
        _ => return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type"),
    };
    let now = crate::auth::now_unix();
    let ttl = if st.access_ttl == 0 { 300 } else { st.access_ttl };
    let roles_claim = crate::policy::headers::claims::ROLES;
    let access = json!({
        "iss": issuer, "aud": [issuer], "sub": g_sub(&grant), "client_id": grant.client_id, "scope": grant.scope,
        "iat": now, "exp": now + ttl, "jti": random(), "sid": grant.sid, roles_claim: grant.roles,
    });
    let aud = match &st.fault {
        Some(Fault::IdTokenAudience(a)) => a.clone(),
        _ => grant.client_id.clone(),
    };
    let nonce = if st.fault == Some(Fault::WrongNonce) { "not-your-nonce".to_owned() } else { grant.nonce.clone() };
    let user = grant.sub.trim_start_matches("user-");
    let id = json!({
        "iss": issuer, "aud": aud, "azp": grant.client_id, "sub": g_sub(&grant), "sid": grant.sid, "nonce": nonce,
        "iat": now, "exp": now + 3600, "auth_time": now, "email": format!("{user}@example.com"), roles_claim: grant.roles,
    });
    let at = sign("at+jwt", &access);
    let it = sign("JWT", &id);
    let rt = random();
    st.refresh.insert(rt.clone(), grant);
    let body = json!({"access_token": at, "token_type": "Bearer", "expires_in": ttl, "refresh_token": rt, "id_token": it, "scope": access["scope"]});
    json_response(body.to_string(), Some("no-store"))
}

fn g_sub(g: &Grant) -> Value {
    Value::String(g.sub.clone())
}

//! `explain --cookie`: what a `method = "login"` route makes of a browser
//! session cookie, opened by the same `LoginService::lookup` as the request
//! path (keys, chunks, expiry, refresh margin), and the identity it carries.
//! The session's access, refresh and ID tokens are never printed.

use std::fmt::Write as _;
use std::sync::Arc;

use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};
use serde_json::{Map, Value};

use crate::auth::Identity;
use crate::config::Config;
use crate::login::{cookies, LoginService, Lookup, Session};
use crate::policy::authz::{self, Requirements};
use crate::policy::routes::{AuthMode, Route};

/// What the session amounts to for the route.
pub struct SessionVerdict {
    /// The `verdict` line.
    pub verdict: String,
    /// The identity the upstream headers are built from, when forwarded.
    pub identity: Option<Identity>,
}

fn line(out: &mut String, label: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "{label:<15}{value}");
}

/// Explains the session cookie of `cookie` (a whole `Cookie` header value)
/// on `route` at `now`, appending to `out`.
pub async fn explain_session(out: &mut String, cfg: &Config, route: &Route, cookie: Option<&str>, now: u64) -> SessionVerdict {
    let refused = |verdict: String| SessionVerdict { verdict, identity: None };
    out.push_str("\nsession cookie\n");
    let Some(settings) = cfg.login.as_ref() else {
        return refused("500: a login route without [login]".into());
    };
    let Some(issuer) = cfg.issuers.get(settings.issuer) else {
        return refused("500: [login] names a missing issuer".into());
    };
    let service = match LoginService::new(settings.clone(), issuer) {
        Ok(s) => s,
        Err(e) => return refused(format!("500: the login cannot start: {e}")),
    };
    let mut headers = HeaderMap::new();
    if let Some(c) = cookie {
        match HeaderValue::from_str(c) {
            Ok(v) => {
                headers.insert(COOKIE, v);
            }
            Err(_) => {
                line(out, "  cookie", "not a valid Cookie header value");
                return refused("400 invalid_request: the Cookie header is malformed".into());
            }
        }
    }
    let jar = cookies::request_cookies(&headers);
    let name = &settings.cookie_name;
    let form = match (cookies::get(&jar, name), cookies::get(&jar, &format!("{name}-n"))) {
        (Some(_), _) => "one cookie".to_owned(),
        (None, Some(n)) => format!("in {n} chunks ({name}-0...)"),
        (None, None) => "not sent".to_owned(),
    };
    line(out, "  name", format!("{name} ({form})"));
    let lookup = service.lookup(&headers, now).await;
    let (session, stale) = match lookup {
        Lookup::Absent => {
            line(out, "  session", "absent");
            return refused(not_logged_in(route, "no session cookie"));
        }
        Lookup::Invalid(reason) => {
            line(out, "  session", format!("invalid: {reason} ({})", describe(reason)));
            return refused(not_logged_in(route, reason));
        }
        Lookup::Unavailable => {
            line(out, "  session", "not known: the session store (Redis) did not answer");
            return refused("503 session_store_unavailable".into());
        }
        Lookup::Valid(s) => (*s, false),
        Lookup::Stale(s) => (*s, true),
    };
    let kid = cookies::joined(&jar, name).and_then(|v| v.strip_prefix("v1.").and_then(|r| r.split('.').next()).map(str::to_owned));
    if let Some(kid) = kid {
        let first = settings.cookie_keys.first().map(|k| k.id.as_str());
        let note = if first == Some(kid.as_str()) { "the current key" } else { "an older listed key; the next refresh or login reseals it" };
        line(out, "  sealed", format!("ok   key `{kid}` ({note})"));
    }
    describe_session(out, &session, settings.refresh_margin.as_secs(), stale, now);
    let roles_claim = &issuer.roles_claim;
    let claims = Arc::new(session.claims);
    if !route.require.is_empty() {
        out.push_str("  checks\n");
    }
    if let Some(f) = requirement_lines(out, route, &claims, roles_claim) {
        return refused(f);
    }
    let verdict = if stale {
        "forwarded with identity, after the gateway refreshes the access token at the issuer (explain does not; the refreshed claims may differ)"
    } else {
        "forwarded with identity (session cookie)"
    };
    SessionVerdict { verdict: verdict.into(), identity: Some(Identity { claims, issuer: settings.issuer, rendered: None }) }
}

/// Times, who, and which tokens the session holds (never their values).
fn describe_session(out: &mut String, s: &Session, margin: u64, stale: bool, now: u64) {
    let state = if stale { "stale: the access token is within refresh_margin, or past it" } else { "valid" };
    line(out, "  session", state);
    line(out, "  ends", format!("in {} s (session_lifetime)", s.expires.saturating_sub(now)));
    let access = if s.access_exp > now {
        format!("expires in {} s (refresh_margin {margin} s)", s.access_exp - now)
    } else {
        format!("expired {} s ago", now - s.access_exp)
    };
    line(out, "  access token", access);
    let held = if s.refresh_token.is_some() {
        "access, refresh and ID tokens held (never shown)"
    } else {
        "access and ID tokens held, no refresh token (never shown)"
    };
    line(out, "  tokens", held);
    line(out, "  logged out", "not known here: a logout is remembered by the gateway that served it");
    out.push_str("  claims\n");
    let pretty = serde_json::to_string_pretty(&Value::Object(s.claims.clone())).unwrap_or_default();
    for l in pretty.lines() {
        let _ = writeln!(out, "    {l}");
    }
}

/// One line per route requirement (roles, scopes, claims) the identity is
/// checked against; the refusal verdict of the first that fails.
pub fn requirement_lines(out: &mut String, route: &Route, claims: &Arc<Map<String, Value>>, roles_claim: &str) -> Option<String> {
    let req = &route.require;
    let parts = [
        ("roles", Requirements { roles: req.roles.clone(), ..Default::default() }),
        ("scopes", Requirements { scopes: req.scopes.clone(), ..Default::default() }),
        ("claims", Requirements { claims: req.claims.clone(), ..Default::default() }),
    ];
    let mut failure = None;
    for (label, r) in parts.iter().filter(|(_, r)| !r.is_empty()) {
        match authz::authorize(r, claims, roles_claim) {
            Ok(()) => line(out, &format!("    {label}"), "ok"),
            Err(d) => {
                let held = match *label {
                    "roles" => format!(" (user has: {})", claims.get(roles_claim).map_or("none".to_owned(), |v| v.to_string())),
                    "scopes" => format!(" (token has: {})", claims.get("scope").map_or("none".to_owned(), |v| v.to_string())),
                    _ => String::new(),
                };
                line(out, &format!("    {label}"), format!("FAIL {}{held}", d.describe()));
                failure.get_or_insert(format!("403 insufficient_scope: {}", d.describe()));
            }
        }
    }
    failure
}

/// The verdict for a request without a usable session, as the request path gives it.
fn not_logged_in(route: &Route, reason: &str) -> String {
    match route.auth {
        AuthMode::Optional => format!("forwarded anonymously (optional route; {reason})"),
        _ => format!("401 ({reason}): a page load (GET or HEAD navigation) gets 302 to the login instead; scripts and API clients get the 401"),
    }
}

fn describe(reason: &str) -> &'static str {
    match reason {
        "cookie_malformed" => "not a sealed value, or a chunk is missing",
        "cookie_retired_key" => "sealed under a key id no longer in login.cookie_keys",
        "cookie_tampered" => "does not verify under its key: altered, truncated, or sealed for another cookie or another key",
        "session_expired" => "past session_lifetime",
        "session_ended" => "logged out",
        "access_token_expired" => "the access token expired and there is no refresh token",
        _ => "refused",
    }
}

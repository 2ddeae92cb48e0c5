//! The decision, in the language of the ingress that asked.
//!
//! nginx's `auth_request` turns every answer but 2xx, 401 and 403 into a
//! 500 for the client, so in that flavour a refusal for a malformed or
//! ambiguous request is a 403 with the reason, and a login redirect is a
//! 401 naming the login page in `X-Auth-Signin`. Traefik, Caddy and Envoy
//! hand a non-2xx answer to the client as it is.

use http::header::{HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_TYPE, SET_COOKIE};
use http::{Response, StatusCode};

use super::flavour::Malformed;
use crate::auth::Identity;
use crate::config::Flavour;
use crate::error::{full, Body, GatewayError};
use crate::pipeline::Decision;
use crate::policy::headers::{render_claim, ClaimSource};
use crate::policy::routes::Route;
use crate::state::Snapshot;

/// Why a request was refused, for the ingress's logs and the tests.
pub const REASON: HeaderName = HeaderName::from_static("x-forward-auth-reason");
/// nginx flavour: where a browser goes to log in (`auth_request_set`
/// reads it; ingress-nginx's `auth-signin` annotation can point at it).
pub const SIGNIN: HeaderName = HeaderName::from_static("x-auth-signin");
/// nginx flavour: the n-th `Set-Cookie` line is also sent as
/// `X-Auth-Cookie-<n>` (from 1), because nginx 1.22's
/// `$upstream_http_set_cookie` holds only the first line.
pub const COOKIE_PREFIX: &str = "x-auth-cookie-";

/// The allow answer for a decision: [`allow`], the signed assertion when
/// `[assertion]` is on (empty for an anonymous caller, so the ingress
/// overwrites a client's copy), and the session's new cookies.
pub fn allow_decided(snap: &Snapshot, kind: Flavour, d: &Decision<'_>) -> Result<Response<Body>, GatewayError> {
    let mut resp = allow(d.route, d.identity.as_ref());
    snap.add_assertion(d.route, d.identity.as_ref(), resp.headers_mut(), true)?;
    add_cookies(kind, &mut resp, &d.set_cookies);
    Ok(resp)
}

/// 200 with every identity header of the route. A header whose claim is
/// absent (or the whole set, for an anonymous caller) is present and
/// empty, so an ingress that copies a fixed list overwrites a client's own
/// copy instead of letting it through.
pub fn allow(route: &Route, identity: Option<&Identity>) -> Response<Body> {
    let mut resp = Response::new(full(""));
    let h = resp.headers_mut();
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let empty = HeaderValue::from_static("");
    for (name, src) in &route.headers.entries {
        let value = identity.and_then(|id| match src {
            ClaimSource::Authenticated => Some(HeaderValue::from_static("true")),
            ClaimSource::Claim(c) => id.claims.get(c).and_then(render_claim),
        });
        h.insert(name.clone(), value.unwrap_or_else(|| empty.clone()));
    }
    resp
}

/// The session cookies the gateway set or refreshed while deciding: the
/// `Set-Cookie` lines themselves (Envoy, Traefik and Caddy copy them to
/// the client), and in the nginx flavour numbered copies as well.
pub fn add_cookies(flavour: Flavour, resp: &mut Response<Body>, lines: &[String]) {
    let h = resp.headers_mut();
    for (i, v) in lines.iter().filter_map(|l| HeaderValue::from_str(l).ok()).enumerate() {
        if flavour == Flavour::Nginx {
            if let Ok(name) = HeaderName::from_bytes(format!("{COOKIE_PREFIX}{}", i + 1).as_bytes()) {
                h.insert(name, v.clone());
            }
        }
        h.append(SET_COOKIE, v);
    }
}

/// A refusal by the judging steps, translated for `flavour`.
pub fn refuse(flavour: Flavour, e: GatewayError, realm: &str) -> Response<Body> {
    let reason = e.reason();
    let (login, cookies) = match &e {
        GatewayError::LoginRedirect(location) => (HeaderValue::from_str(location).ok(), Vec::new()),
        GatewayError::LoginStart(start) => (HeaderValue::from_str(&start.0).ok(), start.1.clone()),
        _ => (None, Vec::new()),
    };
    let mut resp = e.into_response(realm);
    if flavour == Flavour::Nginx {
        let status = resp.status();
        if login.is_some() {
            resp.headers_mut().remove(http::header::LOCATION);
            *resp.status_mut() = StatusCode::UNAUTHORIZED;
        } else if status.is_client_error() && status != StatusCode::UNAUTHORIZED {
            *resp.status_mut() = StatusCode::FORBIDDEN;
        }
        if let Some(l) = login {
            resp.headers_mut().insert(SIGNIN, l);
        }
        // The state cookie of a login start: its Set-Cookie lines are
        // already in the answer, the numbered copies are nginx's.
        resp.headers_mut().remove(SET_COOKIE);
        add_cookies(flavour, &mut resp, &cookies);
    }
    resp.headers_mut().insert(REASON, HeaderValue::from_static(reason));
    resp
}

/// The ingress's description of the request could not be believed.
pub fn malformed(flavour: Flavour, m: &Malformed) -> Response<Body> {
    let status = if flavour == Flavour::Nginx { StatusCode::FORBIDDEN } else { StatusCode::BAD_REQUEST };
    json(status, "invalid_request", &m.describe(), m.reason())
}

/// The caller is not one of `trusted_proxies`.
pub fn untrusted() -> Response<Body> {
    json(StatusCode::FORBIDDEN, "access_denied", "this endpoint answers only the configured trusted_proxies", UNTRUSTED)
}

/// The reason for a caller outside `trusted_proxies`.
pub const UNTRUSTED: &str = "forward_auth_untrusted_proxy";

fn json(status: StatusCode, code: &str, description: &str, reason: &'static str) -> Response<Body> {
    let body = serde_json::json!({ "error": code, "error_description": description }).to_string();
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(REASON, HeaderValue::from_static(reason));
    resp
}

//! Step 2: the route's auth mode and method decide how the caller is known:
//! a bearer JWT verified locally (`auth`), or Authgear's resolver asked
//! about the session (`session`), or a login redirect for a browser.

use http::{HeaderMap, Method};

use crate::auth::{bearer_token, looks_like_jwt, now_unix, verify_token, AuthFailure, Identity};
use crate::error::GatewayError;
use crate::login::{Lookup, Refreshed};
use crate::observe::trace::{Child, Kind};
use crate::policy::routes::{AuthMethod, AuthMode, Route};
use crate::session::redirect;
use crate::session::resolver::Verdict;
use crate::state::Snapshot;

/// The parts of a request that authentication reads.
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo<'a> {
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
    /// The normalized path and the raw query: the login redirect's return URL.
    pub path: &'a str,
    pub query: Option<&'a str>,
}

/// Applies the route's auth mode and method: `Ok(None)` for an anonymous
/// request the route lets through, `Ok(Some)` for a verified caller. On a
/// `login_redirect` route, a browser that is not logged in gets
/// [`GatewayError::LoginRedirect`] instead of a 401.
pub async fn authenticate(snap: &Snapshot, route: &Route, req: &RequestInfo<'_>) -> Result<Option<Identity>, GatewayError> {
    if route.auth == AuthMode::Public {
        return Ok(None);
    }
    let result = match route.method {
        AuthMethod::Jwt => match bearer_token(req.headers)? {
            Some(token) => authenticate_jwt(snap, route, token).await.map(Some),
            None if route.auth == AuthMode::Optional => Ok(None),
            None => Err(GatewayError::MissingToken),
        },
        // Boxed: each is larger than the bearer path, and inline they
        // would make every request's future as large as the largest.
        AuthMethod::Session | AuthMethod::JwtOrSession => Box::pin(authenticate_session(snap, route, req.headers)).await,
        AuthMethod::Login => return Box::pin(login(snap, route, req)).await.map(|l| l.identity),
    };
    match result {
        Err(e) if route.login_redirect && e.is_unauthenticated() => {
            let location = snap.config.session.login.as_ref().and_then(|l| redirect::login_location(l, req.method, req.headers, req.path, req.query));
            Err(location.map_or(e, GatewayError::LoginRedirect))
        }
        other => other,
    }
}

/// A bearer JWT, verified locally.
async fn authenticate_jwt(snap: &Snapshot, route: &Route, token: &str) -> Result<Identity, GatewayError> {
    let m = crate::observe::metrics::metrics();
    let span = Child::start("verify token", Kind::Internal);
    let verified = span.run(verify_token(&snap.config, &snap.keys, snap.token_cache.as_deref(), token, route.audiences.as_deref(), now_unix())).await;
    let (outcome, result) = match verified {
        Ok(id) => {
            if let Some(iss) = snap.config.issuers.get(id.issuer).filter(|_| span.is_active()) {
                span.set("authgear_gateway.token.issuer", iss.issuer.clone());
            }
            ("ok", Ok(id))
        }
        Err(AuthFailure::Token(e)) => (e.reason(), Err(GatewayError::InvalidToken(e))),
        Err(AuthFailure::KeysUnavailable) => ("keys_unavailable", Err(GatewayError::KeysUnavailable)),
    };
    m.token(outcome);
    // The outcome is a fixed label (`ok`, `expired`, ...), never token text.
    span.set("authgear_gateway.token.outcome", outcome);
    if outcome != "ok" {
        span.fail(outcome, "token refused");
    }
    result
}

/// Session mode. With `jwt_or_session`, a bearer token shaped like a JWT is
/// verified locally (and never sent to Authgear); everything else (session
/// cookie, opaque token) is judged by the resolver.
async fn authenticate_session(snap: &Snapshot, route: &Route, headers: &HeaderMap) -> Result<Option<Identity>, GatewayError> {
    let bearer = bearer_token(headers)?;
    if route.method == AuthMethod::JwtOrSession {
        if let Some(token) = bearer.filter(|t| looks_like_jwt(t)) {
            return authenticate_jwt(snap, route, token).await.map(Some);
        }
    }
    let sessions = snap.sessions.as_ref().ok_or_else(|| GatewayError::Internal("session route without a resolver".into()))?;
    let creds = sessions.credentials(headers, bearer);
    if creds.is_empty() {
        return if route.auth == AuthMode::Optional { Ok(None) } else { Err(GatewayError::MissingSession) };
    }
    let cookie_only = creds.authorization.is_none();
    match sessions.resolve(creds).await {
        // Resolver identities belong to the first issuer's project.
        Ok(Verdict::Valid(claims)) => Ok(Some(Identity { claims, issuer: 0, rendered: None })),
        // A stale cookie is normal for a logged-out browser; on an optional
        // route it means anonymous. A bad bearer token is still refused.
        Ok(_) if route.auth == AuthMode::Optional && cookie_only => Ok(None),
        Ok(_) => Err(GatewayError::InvalidSession),
        Err(_) => Err(GatewayError::ResolverUnavailable),
    }
}

/// What a `method = "login"` route learned from the session cookie.
#[derive(Default)]
pub struct LoginAuth {
    /// `None` for an anonymous request on an optional route.
    pub identity: Option<Identity>,
    /// The session's access token (for `pass_access_token`).
    pub access_token: Option<String>,
    /// `Set-Cookie` lines for the response (a refreshed session).
    pub set_cookies: Vec<String>,
}

/// `method = "login"`: the gateway's own sealed session, refreshed first
/// when its access token is about to expire. A browser navigation without
/// a usable session is sent to log in ([`GatewayError::LoginStart`]);
/// anything else gets the 401. A provider that cannot refresh is never a
/// logout: the current access token serves while it is valid, then 503.
pub async fn login(snap: &Snapshot, route: &Route, req: &RequestInfo<'_>) -> Result<LoginAuth, GatewayError> {
    if route.auth == AuthMode::Public {
        return Ok(LoginAuth::default());
    }
    let service = snap.login.as_ref().ok_or_else(|| GatewayError::Internal("login route without [login]".into()))?;
    let now = now_unix();
    if let Some(o) = service.open_valid(req.headers, now) {
        let access_token = route.pass_access_token.then(|| o.access_token.clone());
        return Ok(LoginAuth { identity: Some(o.identity(service.settings.issuer)), access_token, set_cookies: Vec::new() });
    }
    let (refusal, mut clear) = match service.lookup(req.headers, now).await {
        Lookup::Valid(mut session) => {
            let jar = crate::login::cookies::request_cookies(req.headers);
            let lines = service.touch(&mut session, &jar, now).await;
            service.keep_opened(req.headers, &session, now);
            return Ok(signed_in(service, *session, lines));
        }
        Lookup::Unavailable => return Err(GatewayError::SessionStoreUnavailable),
        Lookup::Stale(session) => {
            let jar = crate::login::cookies::request_cookies(req.headers);
            let still_valid = session.access_exp > now;
            let span = Child::session_refresh();
            // Boxed: a refresh is rare, and its future is the largest here.
            match Box::pin(span.run(service.refresh(&snap.config, &snap.keys, (*session).clone(), &jar, now))).await {
                Refreshed::Fresh(fresh, lines) => return Ok(signed_in(service, *fresh, lines)),
                Refreshed::Down if still_valid => return Ok(signed_in(service, *session, Vec::new())),
                Refreshed::Down => return Err(GatewayError::ResolverUnavailable),
                Refreshed::Ended(lines) => (GatewayError::InvalidSession, lines),
            }
        }
        Lookup::Absent => (GatewayError::MissingSession, Vec::new()),
        Lookup::Invalid(reason) => {
            tracing::debug!(reason, route = %route.name, "login session refused");
            (GatewayError::InvalidSession, Vec::new())
        }
    };
    if route.auth == AuthMode::Optional {
        return Ok(LoginAuth { set_cookies: clear, ..LoginAuth::default() });
    }
    if !is_navigation(req.method, req.headers) {
        return Err(refusal);
    }
    match return_path(req.path, req.query) {
        Some(ret) => match service.start(&ret, req.headers, now).await? {
            GatewayError::LoginStart(mut start) => {
                start.1.append(&mut clear);
                Err(GatewayError::LoginStart(start))
            }
            other => Err(other),
        },
        None => Err(refusal),
    }
}

fn signed_in(service: &crate::login::LoginService, session: crate::login::Session, set_cookies: Vec<String>) -> LoginAuth {
    let token = session.access_token.clone();
    LoginAuth { identity: Some(service.identity(session)), access_token: Some(token), set_cookies }
}

/// A browser loading a page: GET or HEAD, announced by Fetch Metadata
/// (`Sec-Fetch-Mode: navigate` or `Sec-Fetch-Dest: document`), or, from a
/// browser that sends neither, an `Accept` preferring HTML. Never a request
/// marked `X-Requested-With` (a script, which cannot follow a redirect to
/// another site).
pub fn is_navigation(method: &Method, headers: &HeaderMap) -> bool {
    if !(method == Method::GET || method == Method::HEAD) || headers.contains_key("x-requested-with") {
        return false;
    }
    let mode = headers.get("sec-fetch-mode");
    let dest = headers.get("sec-fetch-dest");
    if mode.is_some() || dest.is_some() {
        return mode.is_some_and(|m| m.as_bytes() == b"navigate") || dest.is_some_and(|d| d.as_bytes() == b"document");
    }
    redirect::prefers_html(headers)
}

/// The same-site path and query a login returns to, or `None` when the
/// path is not unmistakably one of this site's (the `login_redirect` rules).
pub fn return_path(path: &str, query: Option<&str>) -> Option<String> {
    if !redirect::is_local_path(path) || query.is_some_and(|q| q.bytes().any(|b| !(0x21..=0x7e).contains(&b) || b == b'#')) {
        return None;
    }
    Some(match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    })
}

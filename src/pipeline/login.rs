//! Step 0c: the gateway's own paths of the browser login (`[login]`
//! `redirect_path` and `logout_path`), answered here before any route is
//! matched, after the same limits and screening as every request. Also the
//! `Authorization` header of a `method = "login"` route.

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue, Method, Request, Response};

use crate::auth::now_unix;
use crate::error::{Body, GatewayError};
use http_body_util::BodyExt;

use crate::login::backchannel::MAX_FORM;
use crate::login::pages;
use crate::policy::routes::{AuthMethod, Route};
use crate::state::Snapshot;

/// True for the callback and logout paths (compared exactly, before any
/// normalization: another spelling is an ordinary request for the routes).
pub fn is_own_path(snap: &Snapshot, path: &str) -> bool {
    snap.login.as_ref().is_some_and(|l| path == l.settings.redirect_path || path == l.settings.logout_path) || is_backchannel_path(snap, path)
}

/// True for `backchannel_logout_path`, answered only with the Redis store.
pub fn is_backchannel_path(snap: &Snapshot, path: &str) -> bool {
    snap.login.as_ref().is_some_and(|l| l.store.redis().is_some() && path == l.settings.backchannel_logout_path)
}

/// The provider's back-channel logout POST: the form body is read (at
/// most [`MAX_FORM`] bytes) and the logout token judged by the service.
pub async fn backchannel<B>(snap: &Snapshot, req: Request<B>) -> Result<Response<Body>, GatewayError>
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let service = snap.login.as_ref().ok_or_else(|| GatewayError::Internal("back-channel logout without [login]".into()))?;
    if req.method() != Method::POST {
        let mut r = pages::page(http::StatusCode::METHOD_NOT_ALLOWED, "Not allowed", "This method is not used here.", None, &[]);
        r.headers_mut().insert(http::header::ALLOW, HeaderValue::from_static("POST"));
        return Ok(r);
    }
    let declared = req.headers().get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_FORM) {
        return Err(GatewayError::PayloadTooLarge);
    }
    let body = match http_body_util::Limited::new(req.into_body(), MAX_FORM).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(GatewayError::PayloadTooLarge),
        Err(_) => return Err(GatewayError::IncompleteBody),
    };
    Ok(service.backchannel_logout(&snap.config, &snap.keys, &body, now_unix()).await)
}

/// The response for the callback or logout path (the caller screened the
/// request as any other); `None` for any other path.
pub async fn own_paths<B>(snap: &Snapshot, req: &Request<B>) -> Result<Option<Response<Body>>, GatewayError> {
    let Some(service) = snap.login.as_ref() else { return Ok(None) };
    let s = &service.settings;
    let path = req.uri().path();
    let is_callback = path == s.redirect_path;
    if !is_callback && path != s.logout_path {
        return Ok(None);
    }
    let now = now_unix();
    let (method, headers, query) = (req.method(), req.headers(), req.uri().query());
    let resp = match (is_callback, method) {
        (true, &Method::GET) => service.callback(&snap.config, &snap.keys, query, headers, now).await,
        (false, &Method::GET) => pages::logout_form(&logout_action(&s.logout_path, query)),
        (false, &Method::POST) => service.logout(headers, query, now).await,
        _ => {
            let mut r = pages::page(http::StatusCode::METHOD_NOT_ALLOWED, "Not allowed", "This method is not used here.", None, &[]);
            let allow = if is_callback { "GET" } else { "GET, POST" };
            r.headers_mut().insert(http::header::ALLOW, HeaderValue::from_static(allow));
            r
        }
    };
    Ok(Some(resp))
}

/// The confirmation form posts back to the logout path with the same
/// `post_logout_redirect_uri` (still checked against the allow-list).
fn logout_action(path: &str, query: Option<&str>) -> String {
    let wanted = query.and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "post_logout_redirect_uri").map(|(_, v)| v.into_owned()));
    match wanted {
        Some(w) => format!("{path}?{}", form_urlencoded::Serializer::new(String::new()).append_pair("post_logout_redirect_uri", &w).finish()),
        None => path.to_owned(),
    }
}

/// On a `method = "login"` route, a client's own `Authorization` never
/// travels upstream: the session's access token replaces it when the route
/// passes it (`pass_access_token`), else it is removed.
pub fn set_authorization(route: &Route, access_token: Option<&str>, headers: &mut HeaderMap) {
    if route.method != AuthMethod::Login {
        return;
    }
    headers.remove(AUTHORIZATION);
    if let (true, Some(t)) = (route.pass_access_token, access_token) {
        if let Ok(v) = HeaderValue::from_str(&format!("Bearer {t}")) {
            headers.insert(AUTHORIZATION, v);
        }
    }
}

/// Appends the session's new cookies (after a refresh) to the response;
/// the app's own `Set-Cookie` lines stay.
pub fn add_cookies(headers: &mut HeaderMap, lines: &[String]) {
    for v in lines.iter().filter_map(|l| HeaderValue::from_str(l).ok()) {
        headers.append(http::header::SET_COOKIE, v);
    }
}

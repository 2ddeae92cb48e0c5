//! Logout: a POST from this site only (a third-party page cannot end a
//! session), which forgets the session here, revokes its refresh token at
//! the provider, clears the cookies, and sends the browser to the
//! provider's end-session endpoint with a `post_logout_redirect_uri` from
//! the exact allow-list.

use http::header::ORIGIN;
use http::{HeaderMap, Response, StatusCode};
use tracing::{info, warn};

use super::sessions::Miss;
use super::{cookies, pages, LoginService};
use crate::error::Body;

impl LoginService {
    /// True for a request sent by a page of the public origin itself.
    pub fn same_origin(&self, headers: &HeaderMap) -> bool {
        match headers.get(ORIGIN).map(|o| o.to_str().unwrap_or("")) {
            Some(o) => o.eq_ignore_ascii_case(&self.settings.public_origin),
            // No Origin (older browsers on a same-origin POST): fall back
            // to Fetch Metadata, and refuse when there is neither.
            None => headers.get("sec-fetch-site").is_some_and(|v| v.as_bytes() == b"same-origin"),
        }
    }

    /// The POST on the logout path. `query` may name a
    /// `post_logout_redirect_uri`, used only when it is on the allow-list.
    pub async fn logout(&self, headers: &HeaderMap, query: Option<&str>, now: u64) -> Response<Body> {
        let s = &self.settings;
        if !self.same_origin(headers) {
            info!(reason = "cross_site_logout", "logout refused");
            return pages::page(StatusCode::FORBIDDEN, "Logout refused", "Logging out is only possible from this site.", Some(("/", "Home")), &[]);
        }
        let jar = cookies::request_cookies(headers);
        let mut clear = cookies::clear_session(&s.cookie_name, s.secure, &jar);
        let prefix = format!("{}-state-", s.cookie_name);
        clear.extend(jar.iter().filter(|(n, _)| n.starts_with(&prefix)).map(|(n, _)| cookies::clear(n, s.secure)));
        let session = match cookies::joined(&jar, &s.cookie_name) {
            None => None,
            Some(v) => {
                // A copy kept here (redis_cache_ttl) goes whatever Redis says.
                self.opened.remove(&v);
                match self.load(&v).await {
                    Ok(sess) => Some(sess),
                    Err(Miss::Invalid(_)) => None,
                    Err(Miss::Down) => return store_down(),
                }
            }
        };
        if let Some(sess) = &session {
            // Deleted server-side before the cookies go: a copied cookie
            // must not outlive the logout on another replica.
            if self.end_session(sess, now).await.is_err() {
                return store_down();
            }
        }
        let endpoints = self.provider.endpoints().await.ok();
        if let Some(sess) = &session {
            if let (Some(rt), Some(url)) = (&sess.refresh_token, endpoints.as_ref().and_then(|e| e.revocation.as_ref())) {
                // The session ends here whatever the provider says; a
                // failed revocation is logged for the operator.
                if let Err(e) = self.provider.post_form(url, s, &[("token", rt), ("token_type_hint", "refresh_token")]).await {
                    warn!(error = %e, "logout: refresh token revocation failed");
                }
            }
        }
        let wanted = query.and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "post_logout_redirect_uri").map(|(_, v)| v.into_owned()));
        let after = wanted.filter(|w| s.post_logout_redirect_uris.iter().any(|u| u == w)).or_else(|| s.post_logout_redirect_uris.first().cloned());
        let location = match (endpoints.and_then(|e| e.end_session), &session) {
            (Some(end), Some(sess)) => {
                let mut q = form_urlencoded::Serializer::new(String::new());
                q.append_pair("id_token_hint", &sess.id_token).append_pair("client_id", &s.client_id);
                if let Some(a) = &after {
                    q.append_pair("post_logout_redirect_uri", a);
                }
                let sep = if end.contains('?') { '&' } else { '?' };
                format!("{end}{sep}{}", q.finish())
            }
            _ => after.unwrap_or_else(|| format!("{}/", s.public_origin)),
        };
        info!(had_session = session.is_some(), "logout");
        pages::redirect(&location, &clear)
    }
}

/// The session store cannot be asked: nothing is cleared, so the same
/// logout can be sent again and really ends the session.
fn store_down() -> Response<Body> {
    info!(reason = "session_store_unavailable", "logout deferred");
    let mut r = pages::page(StatusCode::SERVICE_UNAVAILABLE, "Try again", "Logging out is not possible right now; try again shortly.", None, &[]);
    r.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("5"));
    r
}

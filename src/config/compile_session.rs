//! The session-mode keys of `[auth]` (resolver, verdict cache, login
//! redirect): the third part of [`super::compile`].

use std::ops::Range;
use std::time::Duration;

use super::raw::{RawAuthMethod, RawSession};
use super::settings::{IssuerSettings, LoginSettings, SessionSettings};
use super::values::{is_loopback_host, Compiler};
use crate::policy::routes::AuthMethod;

/// Authgear's session cookie name (`idpsession.CookieName` in its server).
pub const DEFAULT_SESSION_COOKIE: &str = "session";

impl Compiler<'_> {
    /// Compiles the session keys; also returns the routes' default method.
    pub(super) fn session(&mut self, r: &RawSession, issuers: &[IssuerSettings]) -> (SessionSettings, AuthMethod) {
        let method = r.method.as_ref().map_or(AuthMethod::Jwt, |m| method_of(*m.get_ref()));
        let resolver_url = match &r.resolver_url {
            Some(u) => self.resolver_url(u.get_ref(), u.span()),
            None => issuers.first().and_then(|i| format!("{}/_resolver/resolve", i.issuer.trim_end_matches('/')).parse().ok()),
        };
        let cookies = match &r.session_cookies {
            None => vec![DEFAULT_SESSION_COOKIE.to_owned()],
            Some(list) => {
                if list.get_ref().is_empty() {
                    self.rep.error(list.span(), "auth.session_cookies", "must name at least one cookie");
                }
                let mut out = Vec::new();
                for c in list.get_ref() {
                    if is_cookie_name(c.get_ref()) {
                        out.push(c.get_ref().clone());
                    } else {
                        self.rep.error(c.span(), "auth.session_cookies", format!("`{}` is not a cookie name", c.get_ref()));
                    }
                }
                out
            }
        };
        let cache_ttl = self.duration(&r.session_cache_ttl, "auth.session_cache_ttl", Duration::from_secs(10));
        // Negative verdicts are kept briefly by default so a flood of bad
        // cookies cannot hammer Authgear, but never longer than good ones.
        let negative_ttl = self.duration(&r.session_negative_cache_ttl, "auth.session_negative_cache_ttl", cache_ttl.min(Duration::from_secs(2)));
        let settings = SessionSettings {
            resolver_url,
            timeout: self.duration(&r.resolver_timeout, "auth.resolver_timeout", Duration::from_secs(5)),
            connect_timeout: self.duration(&r.resolver_connect_timeout, "auth.resolver_connect_timeout", Duration::from_secs(2)),
            cookies,
            cache_ttl,
            negative_ttl,
            cache_max_entries: self.count(&r.session_cache_max_entries, "auth.session_cache_max_entries", 10_000),
            max_concurrent_calls: self.count(&r.resolver_max_concurrent_calls, "auth.resolver_max_concurrent_calls", 64),
            ca_file: issuers.first().and_then(|i| i.ca_file.clone()),
            login: self.login(r),
        };
        (settings, method)
    }

    fn resolver_url(&mut self, text: &str, span: Range<usize>) -> Option<http::Uri> {
        let key = "auth.resolver_url";
        match text.parse::<http::Uri>() {
            Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some() => {
                if u.scheme_str() == Some("http") && !is_loopback_host(u.host().unwrap_or("")) {
                    self.rep.warning(span, key, "plain http resolver: session cookies travel without TLS");
                }
                Some(u)
            }
            _ => {
                self.rep.error(span, key, "must be an http(s) URL such as \"https://myapp.authgear.cloud/_resolver/resolve\"");
                None
            }
        }
    }

    fn login(&mut self, r: &RawSession) -> Option<LoginSettings> {
        let return_param = match &r.login_return_param {
            None => "redirect_uri".to_owned(),
            Some(p) => {
                let ok = !p.get_ref().is_empty() && p.get_ref().bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'));
                if !ok {
                    self.rep.error(p.span(), "auth.login_return_param", "must be a plain query parameter name (letters, digits, - _ . ~)");
                }
                p.get_ref().clone()
            }
        };
        let return_origin = r.login_return_origin.as_ref().and_then(|o| {
            let origin = origin_of(o.get_ref());
            if origin.is_none() {
                self.rep.error_hint(
                    o.span(),
                    "auth.login_return_origin",
                    "must be an origin",
                    "like \"https://app.example.com\": scheme and host (and port), no path",
                );
            }
            origin
        });
        let url = r.login_url.as_ref()?;
        let u = url.get_ref();
        let absolute = u.parse::<http::Uri>().is_ok_and(|p| matches!(p.scheme_str(), Some("http" | "https")) && p.authority().is_some());
        let local_path = u.starts_with('/') && !u.starts_with("//") && !u.contains('\\');
        if !(absolute || local_path) || u.contains('#') || u.bytes().any(|b| !(0x21..=0x7e).contains(&b)) {
            self.rep.error_hint(
                url.span(),
                "auth.login_url",
                format!("`{u}` is not a login URL"),
                "an https URL such as \"https://myapp.authgear.cloud/login\" or a path such as \"/login\"",
            );
            return None;
        }
        if r.login_return_origin.is_none() && absolute {
            self.rep.warning(
                url.span(),
                "auth.login_url",
                "the login page is on another site but login_return_origin is unset, so it receives a path, not a full URL",
            );
        }
        Some(LoginSettings { url: u.clone(), return_param, return_origin })
    }
}

fn method_of(m: RawAuthMethod) -> AuthMethod {
    match m {
        RawAuthMethod::Jwt => AuthMethod::Jwt,
        RawAuthMethod::Session => AuthMethod::Session,
        RawAuthMethod::JwtOrSession => AuthMethod::JwtOrSession,
        RawAuthMethod::Login => AuthMethod::Login,
    }
}

/// The route-level spelling of a method.
pub(super) fn route_method(m: Option<RawAuthMethod>, default: AuthMethod) -> AuthMethod {
    m.map_or(default, method_of)
}

/// RFC 6265 cookie-name: an RFC 9110 token.
fn is_cookie_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// `https://host[:port]` (a trailing `/` allowed), lower-cased, or `None`.
pub(super) fn origin_of(s: &str) -> Option<String> {
    let u: http::Uri = s.parse().ok()?;
    let scheme = u.scheme_str().filter(|sc| matches!(*sc, "http" | "https"))?;
    let auth = u.authority()?;
    let bare_path = matches!(u.path(), "" | "/");
    if !bare_path || u.query().is_some() || auth.as_str().contains('@') {
        return None;
    }
    Some(format!("{scheme}://{}", auth.as_str().to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        assert_eq!(origin_of("https://App.example.com").as_deref(), Some("https://app.example.com"));
        assert_eq!(origin_of("https://app.example.com:8443/").as_deref(), Some("https://app.example.com:8443"));
        assert_eq!(origin_of("https://app.example.com/x"), None);
        assert_eq!(origin_of("https://u@app.example.com"), None);
        assert_eq!(origin_of("ftp://app.example.com"), None);
        assert_eq!(origin_of("/relative"), None);
    }

    #[test]
    fn cookie_names() {
        assert!(is_cookie_name("session"));
        assert!(is_cookie_name("__Host-session"));
        assert!(!is_cookie_name("a=b"));
        assert!(!is_cookie_name("a b"));
        assert!(!is_cookie_name(""));
    }
}

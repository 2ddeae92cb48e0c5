//! The login redirect: a browser asking for a page on a `login_redirect`
//! route is sent to the login page with the URL it wanted, instead of a 401.
//!
//! The return URL is built by the gateway from the normalized path (never
//! from the Host header or a client-supplied URL), and checked once more to
//! be a path on this site, so the login page cannot be turned into an open
//! redirect.

use http::header::ACCEPT;
use http::{HeaderMap, Method};

use crate::config::LoginSettings;

/// The `Location` for an unauthenticated request, or `None` when the request
/// should get the plain 401 (not a browser page load, or no safe return URL).
pub fn login_location(login: &LoginSettings, method: &Method, headers: &HeaderMap, path: &str, query: Option<&str>) -> Option<String> {
    // Other methods carry bodies that a redirect would lose.
    if !(method == Method::GET || method == Method::HEAD) || !prefers_html(headers) {
        return None;
    }
    let ret = return_url(login, path, query)?;
    let sep = if login.url.ends_with(['?', '&']) {
        ""
    } else if login.url.contains('?') {
        "&"
    } else {
        "?"
    };
    Some(format!("{}{sep}{}={}", login.url, login.return_param, encode_component(&ret)))
}

/// True when `Accept` names `text/html` with a weight above zero and at least
/// that of `application/json`. `*/*` alone (curl, most API clients) is not a
/// browser.
pub fn prefers_html(headers: &HeaderMap) -> bool {
    let mut html = 0.0f32;
    let mut json = 0.0f32;
    for v in headers.get_all(ACCEPT).iter().filter_map(|v| v.to_str().ok()) {
        for range in v.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q=").or_else(|| p.trim().strip_prefix("Q=")))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0)
                .clamp(0.0, 1.0);
            match media.as_str() {
                "text/html" | "application/xhtml+xml" => html = html.max(q),
                "application/json" => json = json.max(q),
                _ => {}
            }
        }
    }
    html > 0.0 && html >= json
}

/// The URL the login page should send the user back to: the configured
/// origin (if any) plus the request's normalized path and query. `None` when
/// the path is not unmistakably a path on this site.
pub fn return_url(login: &LoginSettings, path: &str, query: Option<&str>) -> Option<String> {
    if !is_local_path(path) || query.is_some_and(|q| q.bytes().any(|b| !(0x21..=0x7e).contains(&b) || b == b'#')) {
        return None;
    }
    let mut out = String::with_capacity(path.len() + query.map_or(0, str::len) + 64);
    if let Some(origin) = &login.return_origin {
        out.push_str(origin);
    }
    out.push_str(path);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Some(out)
}

/// A path that every browser resolves on the current origin: one leading
/// `/` not followed by `/` or `\`, no backslash anywhere (browsers read it as
/// `/`), only visible ASCII, and no `%` that decodes to a separator.
pub fn is_local_path(p: &str) -> bool {
    let b = p.as_bytes();
    if b.first() != Some(&b'/') || matches!(b.get(1), Some(b'/' | b'\\')) {
        return false;
    }
    if b.iter().any(|&c| c == b'\\' || !(0x21..=0x7e).contains(&c) || c == b'?' || c == b'#') {
        return false;
    }
    let lower = p.to_ascii_lowercase();
    !(lower.contains("%2f") || lower.contains("%5c") || lower.contains("%09") || lower.contains("%0a") || lower.contains("%0d"))
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn encode_component(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len() * 3);
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 0xf) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn login(origin: Option<&str>) -> LoginSettings {
        LoginSettings { url: "https://myapp.authgear.cloud/login".into(), return_param: "redirect_uri".into(), return_origin: origin.map(str::to_owned) }
    }

    fn accept(v: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT, HeaderValue::from_static(v));
        h
    }

    #[test]
    fn browsers_and_api_clients() {
        assert!(prefers_html(&accept("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")));
        assert!(!prefers_html(&accept("*/*")));
        assert!(!prefers_html(&accept("application/json")));
        assert!(!prefers_html(&accept("application/json, text/html;q=0.5")));
        assert!(!prefers_html(&accept("text/html;q=0")));
        assert!(!prefers_html(&HeaderMap::new()));
    }

    #[test]
    fn location_carries_the_encoded_return_url() {
        let h = accept("text/html");
        let l = login_location(&login(Some("https://app.example.com")), &Method::GET, &h, "/orders/1", Some("a=1&b=2"));
        assert_eq!(l.as_deref(), Some("https://myapp.authgear.cloud/login?redirect_uri=https%3A%2F%2Fapp.example.com%2Forders%2F1%3Fa%3D1%26b%3D2"));
        let mut with_query = login(None);
        with_query.url = "/login?lang=en".into();
        assert_eq!(login_location(&with_query, &Method::GET, &h, "/x", None).as_deref(), Some("/login?lang=en&redirect_uri=%2Fx"));
        assert_eq!(login_location(&with_query, &Method::POST, &h, "/x", None), None);
    }

    #[test]
    fn open_redirect_spellings_are_refused() {
        for bad in [
            "//evil.com",
            "/\\evil.com",
            "https://evil.com",
            "/%2F%2Fevil.com",
            "/%2fevil.com",
            "/%5Cevil.com",
            "/%5cevil.com",
            "\\\\evil.com",
            "/\tevil",
            "evil.com",
            "",
            "/a\r\nLocation: x",
        ] {
            assert_eq!(return_url(&login(None), bad, None), None, "{bad:?}");
            assert_eq!(return_url(&login(Some("https://app.example.com")), bad, None), None, "{bad:?}");
        }
        assert_eq!(return_url(&login(None), "/ok", Some("x=1#frag")), None);
        assert_eq!(return_url(&login(None), "/ok", Some("next=//evil.com")).as_deref(), Some("/ok?next=//evil.com"));
    }
}

//! Step 0 of the request path: the request's own framing, judged before a
//! route is looked at. Each check closes a way of being judged as one
//! request and served as another: a method spelled in another case, a host
//! no route was written for (or spelled so that the upstream reads another
//! one), a method-override header the route did not ask for.

use http::header::{HeaderValue, HOST};
use http::{HeaderMap, Method, Request, Version};

use crate::config::ServerSettings;
use crate::error::{BadRequest, GatewayError};
use crate::headers::{self, Untrusted};

/// The methods of RFC 9110 and RFC 5789, which frameworks upper-case
/// before routing (Werkzeug, and so Flask).
const STANDARD_METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"];

/// Refuses a method that differs from a standard one only by letter case:
/// `post` would skip a rule written for `POST` while the app runs its POST
/// handler. Extension methods (`PROPFIND`, `purge`) pass as sent.
pub fn check_method(m: &Method) -> Result<(), GatewayError> {
    let s = m.as_str();
    match STANDARD_METHODS.iter().find(|std| std.eq_ignore_ascii_case(s)) {
        Some(std) if *std != s => Err(GatewayError::BadRequest(BadRequest::MethodCase)),
        _ => Ok(()),
    }
}

/// Validates the host a request is for and makes its `Host` header the one
/// spelling the upstream will see; returns that host lower-cased, without
/// port or trailing dot, for route matching.
///
/// - more than one `Host`, a `Host` that is not a plain `host[:port]`
///   (user info, stray characters), or an HTTP/1.1 request without one: 400
///   (RFC 9112 section 3.2);
/// - an HTTP/2 `:authority` and a `Host` that disagree: 400 (RFC 9113
///   section 8.3.1);
/// - an absolute-form target's authority wins over `Host` (RFC 9112
///   section 3.2.2), and replaces it;
/// - with `allowed_hosts`, any other host (or none at all): 421.
pub fn request_host<B>(s: &ServerSettings, req: &mut Request<B>) -> Result<Option<String>, GatewayError> {
    let mut hosts = req.headers().get_all(HOST).iter();
    let header = hosts.next().cloned();
    if hosts.next().is_some() {
        return Err(GatewayError::BadRequest(BadRequest::DuplicateHost));
    }
    let authority = req.uri().authority().map(|a| a.as_str().to_owned());
    let raw = match (&authority, &header) {
        (Some(a), Some(h)) if req.version() == Version::HTTP_2 && !h.as_bytes().eq_ignore_ascii_case(a.as_bytes()) => {
            return Err(GatewayError::BadRequest(BadRequest::AuthorityConflict));
        }
        (Some(a), _) => Some(a.clone()),
        (None, Some(h)) => Some(h.to_str().map_err(|_| GatewayError::BadRequest(BadRequest::InvalidHost))?.to_owned()),
        (None, None) => None,
    };
    let Some(raw) = raw else {
        if req.version() == Version::HTTP_11 {
            return Err(GatewayError::BadRequest(BadRequest::MissingHost));
        }
        return match &s.allowed_hosts {
            Some(_) => Err(GatewayError::MisdirectedHost),
            None => Ok(None),
        };
    };
    let (name, port) = split_host(&raw).ok_or(GatewayError::BadRequest(BadRequest::InvalidHost))?;
    if let Some(allowed) = &s.allowed_hosts {
        if !allowed.iter().any(|p| p.matches(&name)) {
            return Err(GatewayError::MisdirectedHost);
        }
    }
    // The header the upstream gets: exactly what was judged. Reused as is
    // in the common case (already lower-case, no trailing dot).
    let canonical = match port {
        Some(p) => format!("{name}:{p}"),
        None => name.clone(),
    };
    if header.as_ref().map(HeaderValue::as_bytes) != Some(canonical.as_bytes()) {
        let v = HeaderValue::from_str(&canonical).map_err(|_| GatewayError::BadRequest(BadRequest::InvalidHost))?;
        req.headers_mut().insert(HOST, v);
    }
    Ok(Some(name))
}

/// Splits `host[:port]` into the lower-cased host (trailing dot removed)
/// and the port; `None` unless it is a plain registered name, IPv4 or
/// bracketed IPv6 address with an optional numeric port.
fn split_host(raw: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = raw.strip_prefix('[') {
        let end = rest.find(']')?;
        let (v6, after) = (&rest[..end], &rest[end + 1..]);
        v6.parse::<std::net::Ipv6Addr>().ok()?;
        (&raw[..end + 2], after)
    } else {
        match raw.find(':') {
            Some(i) => (&raw[..i], &raw[i..]),
            None => (raw, ""),
        }
    };
    let port = match port {
        "" => None,
        p => {
            let digits = p.strip_prefix(':')?;
            if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Some(digits.parse::<u16>().ok()?)
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() {
        return None;
    }
    if !host.starts_with('[') {
        // A registered name or IPv4 address: letters, digits, `-`, `.`
        // and `_` (seen in internal names); no empty label.
        let ok = host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')) && !host.split('.').any(str::is_empty);
        if !ok {
            return None;
        }
    }
    Some((host.to_ascii_lowercase(), port))
}

/// The method a client asks the app to run instead of its own, from the
/// method-override headers: `None` without one; 400 when they disagree or
/// do not name a method. A standard method is read upper-cased, as the
/// override middlewares do.
pub fn method_override(h: &HeaderMap) -> Result<Option<Method>, GatewayError> {
    let mut found: Option<Method> = None;
    for (name, value) in h {
        let folded: String = name.as_str().bytes().map(|b| headers::fold_byte(b) as char).collect();
        if !headers::METHOD_OVERRIDE.contains(&folded.as_str()) {
            continue;
        }
        let text = value.to_str().map_err(|_| GatewayError::BadRequest(BadRequest::MethodOverride))?.trim();
        let upper = STANDARD_METHODS.iter().find(|m| m.eq_ignore_ascii_case(text)).copied().unwrap_or(text);
        let m = Method::from_bytes(upper.as_bytes()).map_err(|_| GatewayError::BadRequest(BadRequest::MethodOverride))?;
        match &found {
            Some(prev) if *prev != m => return Err(GatewayError::BadRequest(BadRequest::MethodOverride)),
            _ => found = Some(m),
        }
    }
    Ok(found)
}

/// Removes every method-override header (the route did not opt in, or the
/// override did not pick the route), logged and counted.
pub fn drop_method_override(h: &mut HeaderMap) {
    let names: Vec<_> = h
        .keys()
        .filter(|n| {
            let folded: String = n.as_str().bytes().map(|b| headers::fold_byte(b) as char).collect();
            headers::METHOD_OVERRIDE.contains(&folded.as_str())
        })
        .cloned()
        .collect();
    for n in names {
        headers::remove_counted(h, &n, Untrusted::MethodOverride);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_case_variants_of_standard_methods_are_refused() {
        for m in ["post", "Get", "pUT", "delete", "Patch", "options"] {
            assert!(check_method(&Method::from_bytes(m.as_bytes()).unwrap()).is_err(), "{m}");
        }
        for m in ["GET", "POST", "PROPFIND", "purge", "BREW"] {
            assert!(check_method(&Method::from_bytes(m.as_bytes()).unwrap()).is_ok(), "{m}");
        }
    }

    #[test]
    fn hosts_split_strictly() {
        assert_eq!(split_host("App.Example.COM"), Some(("app.example.com".into(), None)));
        assert_eq!(split_host("app.example.com.:8443"), Some(("app.example.com".into(), Some(8443))));
        assert_eq!(split_host("[::1]:80"), Some(("[::1]".into(), Some(80))));
        assert_eq!(split_host("10.0.0.1"), Some(("10.0.0.1".into(), None)));
        for bad in ["", ":80", "a@b", "admin.example.test:80@evil", "a b", "a:", "a:x", "a:99999", "a..b", "[zz]", "a/b", "a\\b", "ex%61mple"] {
            assert_eq!(split_host(bad), None, "{bad}");
        }
    }

    #[test]
    fn override_headers_must_agree() {
        let mut h = HeaderMap::new();
        assert_eq!(method_override(&h).ok(), Some(None));
        h.insert("x-http-method-override", HeaderValue::from_static("delete"));
        assert_eq!(method_override(&h).ok(), Some(Some(Method::DELETE)));
        h.insert("x-method-override", HeaderValue::from_static("DELETE"));
        assert_eq!(method_override(&h).ok(), Some(Some(Method::DELETE)));
        h.insert("x_http_method", HeaderValue::from_static("PUT"));
        assert!(method_override(&h).is_err());
        drop_method_override(&mut h);
        assert!(h.is_empty());
    }
}

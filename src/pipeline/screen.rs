//! Step 0 of the request path: the request's own framing, judged before a
//! route is looked at. Each check closes a way of being judged as one
//! request and served as another: a method spelled in another case, a host
//! no route was written for (or spelled so that the upstream reads another
//! one), a method-override header the route did not ask for.

use http::header::{HeaderValue, HOST};
use http::{HeaderMap, Method, Request, Version};

use crate::config::ServerSettings;
use crate::error::{BadRequest, GatewayError};
use crate::policy::headers::{self, Untrusted};

/// The methods of RFC 9110 and RFC 5789, which frameworks upper-case
/// before routing (Werkzeug, and so Flask).
pub const STANDARD_METHODS: [Method; 9] =
    [Method::GET, Method::HEAD, Method::POST, Method::PUT, Method::DELETE, Method::CONNECT, Method::OPTIONS, Method::TRACE, Method::PATCH];

/// Refuses a method that differs from a standard one only by letter case:
/// `post` would skip a rule written for `POST` while the app runs its POST
/// handler. Extension methods (`PROPFIND`, `purge`) pass as sent.
pub fn check_method(m: &Method) -> Result<(), GatewayError> {
    let s = m.as_str();
    match STANDARD_METHODS.iter().find(|std| std.as_str().eq_ignore_ascii_case(s)) {
        Some(std) if std.as_str() != s => Err(GatewayError::BadRequest(BadRequest::MethodCase)),
        _ => Ok(()),
    }
}

/// Validates the host a request is for and makes its `Host` header the one
/// spelling the upstream will see (lower-cased, no trailing dot, the port
/// as sent); [`judged_host`] then reads the host for route matching.
///
/// - more than one `Host`, a `Host` that is not a plain `host[:port]`
///   (user info, stray characters), or an HTTP/1.1 request without one: 400
///   (RFC 9112 section 3.2);
/// - an HTTP/2 `:authority` and a `Host` that disagree: 400 (RFC 9113
///   section 8.3.1);
/// - an absolute-form target's authority wins over `Host` (RFC 9112
///   section 3.2.2), and replaces it;
/// - with `allowed_hosts`, any other host (or none at all): 421.
///
/// Nothing is allocated for an ordinary request (one `Host`, already in
/// its canonical spelling).
pub fn canonical_host<B>(s: &ServerSettings, req: &mut Request<B>) -> Result<(), GatewayError> {
    let bad = || GatewayError::BadRequest(BadRequest::InvalidHost);
    let mut hosts = req.headers().get_all(HOST).iter();
    let header = hosts.next();
    if hosts.next().is_some() {
        return Err(GatewayError::BadRequest(BadRequest::DuplicateHost));
    }
    // An absolute-form target names the origin it is for; only http(s)
    // origins are served (an `ftp://` authority must not pick the Host).
    if req.uri().scheme().is_some_and(|sc| *sc != http::uri::Scheme::HTTP && *sc != http::uri::Scheme::HTTPS) {
        return Err(bad());
    }
    let raw: &str = match (req.uri().authority(), header) {
        (Some(a), Some(h)) if req.version() == Version::HTTP_2 && !h.as_bytes().eq_ignore_ascii_case(a.as_str().as_bytes()) => {
            return Err(GatewayError::BadRequest(BadRequest::AuthorityConflict));
        }
        (Some(a), _) => a.as_str(),
        (None, Some(h)) => h.to_str().map_err(|_| bad())?,
        (None, None) if req.version() == Version::HTTP_11 => return Err(GatewayError::BadRequest(BadRequest::MissingHost)),
        (None, None) => return if s.allowed_hosts.is_some() { Err(GatewayError::MisdirectedHost) } else { Ok(()) },
    };
    let (name, port) = split_host(raw).ok_or_else(bad)?;
    if let Some(allowed) = &s.allowed_hosts {
        let lower;
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = name.to_ascii_lowercase();
            lower.as_str()
        } else {
            name
        };
        if !allowed.iter().any(|p| p.matches(name)) {
            return Err(GatewayError::MisdirectedHost);
        }
    }
    let already = !name.bytes().any(|b| b.is_ascii_uppercase())
        && header.and_then(|h| h.as_bytes().strip_prefix(name.as_bytes())).is_some_and(|rest| match port {
            None => rest.is_empty(),
            Some(p) => rest.strip_prefix(b":") == Some(p.as_bytes()),
        });
    if !already {
        let mut v = name.to_ascii_lowercase();
        if let Some(p) = port {
            v.push(':');
            v.push_str(p);
        }
        let v = HeaderValue::from_str(&v).map_err(|_| bad())?;
        req.headers_mut().insert(HOST, v);
    }
    Ok(())
}

/// The host a request was judged for, after [`canonical_host`]: the `Host`
/// header without its port (IPv6 literals keep their brackets).
pub fn judged_host(h: &HeaderMap) -> Option<&str> {
    let v = h.get(HOST)?.to_str().ok()?;
    let end = if v.starts_with('[') { v.find(']').map_or(v.len(), |i| i + 1) } else { v.find(':').unwrap_or(v.len()) };
    Some(&v[..end])
}

/// Splits `host[:port]` into the host (trailing dot removed) and the
/// port's digits; `None` unless it is a plain registered name, IPv4 or
/// bracketed IPv6 address with an optional numeric port.
fn split_host(raw: &str) -> Option<(&str, Option<&str>)> {
    let (host, port) = if let Some(rest) = raw.strip_prefix('[') {
        let end = rest.find(']')?;
        rest[..end].parse::<std::net::Ipv6Addr>().ok()?;
        (&raw[..end + 2], &rest[end + 1..])
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
            if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.parse::<u16>().is_err() {
                return None;
            }
            Some(digits)
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() {
        return None;
    }
    // A registered name or IPv4 address: letters, digits, `-`, `.` and `_`
    // (seen in internal names); no empty label.
    let plain = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_');
    if !host.starts_with('[') && (!host.bytes().all(plain) || host.split('.').any(str::is_empty)) {
        return None;
    }
    Some((host, port))
}

/// The method a client asks the app to run instead of its own, from the
/// method-override headers: `None` without one; 400 when they disagree or
/// do not name a method. A standard method is read upper-cased, as the
/// override middlewares do.
pub fn method_override(h: &HeaderMap) -> Result<Option<Method>, GatewayError> {
    let mut found: Option<Method> = None;
    for (name, value) in h {
        if !is_override(name.as_str()) {
            continue;
        }
        let m = value.to_str().ok().and_then(override_method).ok_or(GatewayError::BadRequest(BadRequest::MethodOverride))?;
        match &found {
            Some(prev) if *prev != m => return Err(GatewayError::BadRequest(BadRequest::MethodOverride)),
            _ => found = Some(m),
        }
    }
    Ok(found)
}

/// An override's value (a header's, or a `_method` parameter's) as the
/// method the app will run: trimmed, and a standard method upper-cased, as
/// the override middlewares read it; `None` when it names no method.
pub fn override_method(text: &str) -> Option<Method> {
    let text = text.trim();
    match STANDARD_METHODS.iter().find(|m| m.as_str().eq_ignore_ascii_case(text)) {
        Some(m) => Some(m.clone()),
        None => Method::from_bytes(text.as_bytes()).ok(),
    }
}

/// True for a method-override header name, in any folded spelling
/// (compared without allocating: this runs for every header).
fn is_override(name: &str) -> bool {
    headers::METHOD_OVERRIDE.iter().any(|m| m.len() == name.len() && m.bytes().zip(name.bytes()).all(|(a, b)| a == headers::fold_byte(b)))
}

/// Removes every method-override header (the route did not opt in, or the
/// override did not pick the route), logged and counted.
pub fn drop_method_override(h: &mut HeaderMap) {
    let names: Vec<_> = h.keys().filter(|n| is_override(n.as_str())).cloned().collect();
    for n in names {
        headers::remove_counted(h, &n, Untrusted::MethodOverride);
    }
}

/// A CORS preflight: `OPTIONS` with one `Origin` and one
/// `Access-Control-Request-Method` naming a method token. Any other
/// `OPTIONS` (or a GET wearing these headers) is an ordinary request.
pub fn is_cors_preflight(method: &Method, headers: &HeaderMap) -> bool {
    let one = |name: &str| {
        let mut all = headers.get_all(name).iter();
        match (all.next(), all.next()) {
            (Some(v), None) => Some(v),
            _ => None,
        }
    };
    method == Method::OPTIONS
        && one("origin").is_some_and(|o| !o.is_empty())
        && one("access-control-request-method").is_some_and(|m| Method::from_bytes(m.as_bytes()).is_ok())
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
        assert_eq!(split_host("App.Example.COM"), Some(("App.Example.COM", None)));
        assert_eq!(split_host("app.example.com.:8443"), Some(("app.example.com", Some("8443"))));
        assert_eq!(split_host("[::1]:80"), Some(("[::1]", Some("80"))));
        assert_eq!(split_host("10.0.0.1"), Some(("10.0.0.1", None)));
        let mut h = HeaderMap::new();
        h.insert(HOST, HeaderValue::from_static("[::1]:80"));
        assert_eq!(judged_host(&h), Some("[::1]"));
        h.insert(HOST, HeaderValue::from_static("app.test:8080"));
        assert_eq!(judged_host(&h), Some("app.test"));
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

//! Rebuilding the original request from what the ingress says about it,
//! in the one flavour the config names. The result is judged by the same
//! steps as a proxied request, so everything here only translates: no
//! normalization, no route knowledge.

use http::header::{HeaderName, HeaderValue, HOST};
use http::{HeaderMap, Method, Request, Uri, Version};

use crate::config::Flavour;

/// Why the ingress's description of the original request was not believed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Malformed {
    /// A header the flavour needs is missing.
    Missing(&'static str),
    /// Sent more than once: two descriptions of one request.
    Repeated(&'static str),
    /// Present but not a valid value.
    Invalid(&'static str),
    /// The original-request header of another flavour than the configured
    /// one: a client's own copy that the ingress passed through.
    Foreign(&'static str),
}

impl Malformed {
    /// The reason in the answer's body, header, log line and metric.
    pub fn reason(&self) -> &'static str {
        match self {
            Malformed::Missing(_) => "forward_auth_missing_header",
            Malformed::Repeated(_) => "forward_auth_repeated_header",
            Malformed::Invalid(_) => "forward_auth_invalid_header",
            Malformed::Foreign(_) => "forward_auth_foreign_header",
        }
    }

    /// One sentence for the answer's body.
    pub fn describe(&self) -> String {
        match self {
            Malformed::Missing(h) => format!("the ingress did not send {h}"),
            Malformed::Repeated(h) => format!("{h} was sent more than once"),
            Malformed::Invalid(h) => format!("{h} does not hold a valid value"),
            Malformed::Foreign(h) => format!("{h} belongs to another ingress flavour than the configured one"),
        }
    }
}

const X_ORIGINAL_URL: &str = "x-original-url";
const X_ORIGINAL_METHOD: &str = "x-original-method";
const X_FORWARDED_METHOD: &str = "x-forwarded-method";
const X_FORWARDED_PROTO: &str = "x-forwarded-proto";
const X_FORWARDED_HOST: &str = "x-forwarded-host";
const X_FORWARDED_URI: &str = "x-forwarded-uri";

/// The headers that describe the original request in each flavour: a
/// request carrying another flavour's is refused.
fn own_headers(f: Flavour) -> &'static [&'static str] {
    match f {
        Flavour::Nginx => &[X_ORIGINAL_URL, X_ORIGINAL_METHOD],
        Flavour::Traefik => &[X_FORWARDED_METHOD, X_FORWARDED_URI],
        Flavour::Envoy | Flavour::EnvoyGrpc => &[],
    }
}

fn foreign_headers(f: Flavour) -> &'static [&'static str] {
    match f {
        Flavour::Nginx => own_headers(Flavour::Traefik),
        Flavour::Traefik => own_headers(Flavour::Nginx),
        // Envoy describes the request by the check request itself: every
        // description header is a client's own.
        Flavour::Envoy | Flavour::EnvoyGrpc => &[X_ORIGINAL_URL, X_ORIGINAL_METHOD, X_FORWARDED_METHOD, X_FORWARDED_URI],
    }
}

/// The decision request as it arrived: its method, target and headers.
#[derive(Debug, Clone, Copy)]
pub struct Asked<'a> {
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub headers: &'a HeaderMap,
}

/// The original request: method, origin-form target, `Host`, and the
/// client's headers the ingress passed on (credentials among them).
/// `path_prefix` is the Envoy flavour's (empty for none).
pub fn rebuild(flavour: Flavour, path_prefix: &str, asked: Asked<'_>) -> Result<Request<()>, Malformed> {
    let headers = asked.headers;
    refuse_foreign(flavour, headers)?;
    let (method, host, target) = match flavour {
        Flavour::Nginx => nginx(headers)?,
        Flavour::Traefik => traefik(headers)?,
        Flavour::Envoy => envoy(path_prefix, asked)?,
        // Its description is a message in the body (`grpc_check.rs`).
        Flavour::EnvoyGrpc => return Err(Malformed::Invalid("the gRPC Check call")),
    };
    Ok(assemble(method, host, target, headers))
}

/// Another flavour's description header is a client's own.
pub fn refuse_foreign(flavour: Flavour, headers: &HeaderMap) -> Result<(), Malformed> {
    match foreign_headers(flavour).iter().find(|name| headers.contains_key(**name)) {
        Some(name) => Err(Malformed::Foreign(name)),
        None => Ok(()),
    }
}

/// The original request from its method, `Host`, origin-form target and
/// the client's headers the ingress passed on.
pub fn assemble(method: Method, host: HeaderValue, target: Uri, headers: &HeaderMap) -> Request<()> {
    let mut req = Request::new(());
    *req.method_mut() = method;
    *req.uri_mut() = target;
    *req.version_mut() = Version::HTTP_11;
    let h = req.headers_mut();
    for (name, value) in headers {
        if !carried_over(name) {
            continue;
        }
        h.append(name.clone(), value.clone());
    }
    h.insert(HOST, host);
    req
}

/// The client's headers that belong to the original request: not the
/// description of it, not the ingress-to-gateway hop's own.
fn carried_over(name: &HeaderName) -> bool {
    let n = name.as_str();
    !(n == "host"
        || n.starts_with("x-original-")
        || n.starts_with("x-forwarded-")
        || n == "forwarded"
        || n == "content-length"
        || n == "transfer-encoding"
        || n == "connection"
        || n == "keep-alive"
        || n == "te"
        || n == "upgrade"
        || n.starts_with("proxy-"))
}

/// `X-Original-URL: scheme://host/path?query` and `X-Original-Method`.
fn nginx(headers: &HeaderMap) -> Result<(Method, HeaderValue, Uri), Malformed> {
    let url = single(headers, X_ORIGINAL_URL)?.ok_or(Malformed::Missing("X-Original-URL"))?;
    let method = single(headers, X_ORIGINAL_METHOD)?.ok_or(Malformed::Missing("X-Original-Method"))?;
    let bad = Malformed::Invalid("X-Original-URL");
    let text = url.to_str().map_err(|_| bad.clone())?;
    // A fragment never reaches a server: one here was put there by hand.
    if text.contains('#') {
        return Err(bad);
    }
    let uri: Uri = text.parse().map_err(|_| bad.clone())?;
    let scheme_ok = uri.scheme_str().is_some_and(|s| s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https"));
    let (Some(authority), Some(pq), true) = (uri.authority(), uri.path_and_query(), scheme_ok) else { return Err(bad) };
    if authority.as_str().contains('@') || !pq.as_str().starts_with('/') {
        return Err(bad);
    }
    let host = HeaderValue::from_str(authority.as_str()).map_err(|_| bad.clone())?;
    let target = Uri::try_from(pq.as_str()).map_err(|_| bad)?;
    Ok((parse_method(method, "X-Original-Method")?, host, target))
}

/// `X-Forwarded-Method`, `-Proto`, `-Host` and `-Uri` (path and query).
fn traefik(headers: &HeaderMap) -> Result<(Method, HeaderValue, Uri), Malformed> {
    let method = single(headers, X_FORWARDED_METHOD)?.ok_or(Malformed::Missing("X-Forwarded-Method"))?;
    let proto = single(headers, X_FORWARDED_PROTO)?.ok_or(Malformed::Missing("X-Forwarded-Proto"))?;
    let host = single(headers, X_FORWARDED_HOST)?.ok_or(Malformed::Missing("X-Forwarded-Host"))?;
    let uri = single(headers, X_FORWARDED_URI)?.ok_or(Malformed::Missing("X-Forwarded-Uri"))?;
    if !(proto.as_bytes().eq_ignore_ascii_case(b"http") || proto.as_bytes().eq_ignore_ascii_case(b"https")) {
        return Err(Malformed::Invalid("X-Forwarded-Proto"));
    }
    let bad = Malformed::Invalid("X-Forwarded-Uri");
    let text = uri.to_str().map_err(|_| bad.clone())?;
    if !text.starts_with('/') || text.starts_with("//") || text.contains('#') {
        return Err(bad);
    }
    let target = Uri::try_from(text).map_err(|_| bad)?;
    Ok((parse_method(method, "X-Forwarded-Method")?, host.clone(), target))
}

/// Envoy `ext_authz` (HTTP): the check request is the original one, its
/// path behind `path_prefix`, its `Host` the original authority.
fn envoy(path_prefix: &str, asked: Asked<'_>) -> Result<(Method, HeaderValue, Uri), Malformed> {
    let bad = Malformed::Invalid("the path after path_prefix");
    let pq = asked.uri.path_and_query().map_or("/", |p| p.as_str());
    let rest = pq.strip_prefix(path_prefix).ok_or_else(|| bad.clone())?;
    if !rest.starts_with('/') {
        return Err(bad);
    }
    let target = Uri::try_from(rest).map_err(|_| bad)?;
    let host = single(asked.headers, "host")?.ok_or(Malformed::Missing("Host"))?;
    Ok((asked.method.clone(), host.clone(), target))
}

fn parse_method(v: &HeaderValue, header: &'static str) -> Result<Method, Malformed> {
    Method::from_bytes(v.as_bytes()).map_err(|_| Malformed::Invalid(header))
}

/// The header's one value; two copies are refused, not picked from.
fn single<'h>(headers: &'h HeaderMap, name: &'static str) -> Result<Option<&'h HeaderValue>, Malformed> {
    let mut all = headers.get_all(name).iter();
    match (all.next(), all.next()) {
        (None, _) => Ok(None),
        (Some(v), None) => Ok(Some(v)),
        (Some(_), Some(_)) => Err(Malformed::Repeated(display_name(name))),
    }
}

fn display_name(name: &'static str) -> &'static str {
    match name {
        X_ORIGINAL_URL => "X-Original-URL",
        X_ORIGINAL_METHOD => "X-Original-Method",
        X_FORWARDED_METHOD => "X-Forwarded-Method",
        X_FORWARDED_PROTO => "X-Forwarded-Proto",
        X_FORWARDED_HOST => "X-Forwarded-Host",
        "host" => "Host",
        _ => "X-Forwarded-Uri",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked<'a>(h: &'a HeaderMap) -> Asked<'a> {
        static GET: Method = Method::GET;
        static ROOT: std::sync::OnceLock<Uri> = std::sync::OnceLock::new();
        Asked { method: &GET, uri: ROOT.get_or_init(|| Uri::from_static("/")), headers: h }
    }

    fn headers(list: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in list {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn nginx_rebuilds_method_host_and_raw_target() {
        let h = headers(&[
            ("x-original-url", "https://app.example.test/a/%2e%2e/b?x=1"),
            ("x-original-method", "DELETE"),
            ("authorization", "Bearer t"),
            ("x-forwarded-for", "1.2.3.4"),
        ]);
        let r = rebuild(Flavour::Nginx, "", asked(&h)).expect("rebuilt");
        assert_eq!(r.method(), Method::DELETE);
        assert_eq!(r.uri().to_string(), "/a/%2e%2e/b?x=1");
        assert_eq!(r.headers()["host"], "app.example.test");
        assert_eq!(r.headers()["authorization"], "Bearer t");
        assert!(!r.headers().contains_key("x-forwarded-for"));
    }

    #[test]
    fn another_flavours_headers_are_refused() {
        let h = headers(&[("x-original-url", "http://a/x"), ("x-original-method", "GET"), ("x-forwarded-uri", "/admin")]);
        assert_eq!(rebuild(Flavour::Nginx, "", asked(&h)).unwrap_err(), Malformed::Foreign("x-forwarded-uri"));
        let h = headers(&[
            ("x-forwarded-method", "GET"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-host", "a"),
            ("x-forwarded-uri", "/x"),
            ("x-original-url", "http://a/admin"),
        ]);
        assert_eq!(rebuild(Flavour::Traefik, "", asked(&h)).unwrap_err(), Malformed::Foreign("x-original-url"));
    }

    #[test]
    fn envoy_takes_the_check_request_itself_behind_the_prefix() {
        let h = headers(&[("host", "app.example.test"), ("authorization", "Bearer t")]);
        let uri = Uri::from_static("/agw-check/a/%2e%2e/b?x=1");
        let r = rebuild(Flavour::Envoy, "/agw-check", Asked { method: &Method::PUT, uri: &uri, headers: &h }).expect("rebuilt");
        assert_eq!(r.method(), Method::PUT);
        assert_eq!(r.uri().to_string(), "/a/%2e%2e/b?x=1");
        assert_eq!(r.headers()["host"], "app.example.test");
        for bad in ["/other/a", "/agw-checkx/a", "/agw-check"] {
            let uri = Uri::from_static(bad);
            assert!(rebuild(Flavour::Envoy, "/agw-check", Asked { method: &Method::GET, uri: &uri, headers: &h }).is_err(), "{bad}");
        }
        let h = headers(&[("host", "a"), ("x-original-url", "http://a/public")]);
        let uri = Uri::from_static("/agw-check/admin");
        let e = rebuild(Flavour::Envoy, "/agw-check", Asked { method: &Method::GET, uri: &uri, headers: &h }).unwrap_err();
        assert_eq!(e, Malformed::Foreign("x-original-url"));
    }

    #[test]
    fn malformed_descriptions_are_refused() {
        for (url, method) in [("/relative", "GET"), ("ftp://a/x", "GET"), ("http://u@a/x", "GET"), ("http://a/x#f", "GET"), ("http://a/x", "G T")] {
            let h = headers(&[("x-original-url", url), ("x-original-method", method)]);
            assert!(rebuild(Flavour::Nginx, "", asked(&h)).is_err(), "{url} {method}");
        }
        let h = headers(&[("x-original-url", "http://a/x"), ("x-original-url", "http://a/y"), ("x-original-method", "GET")]);
        assert_eq!(rebuild(Flavour::Nginx, "", asked(&h)).unwrap_err(), Malformed::Repeated("X-Original-URL"));
        let h = headers(&[("x-original-url", "http://a/x")]);
        assert_eq!(rebuild(Flavour::Nginx, "", asked(&h)).unwrap_err(), Malformed::Missing("X-Original-Method"));
    }
}

//! Header work, one small function per job: hop-by-hop removal, identity
//! stripping, forwarding headers, and rendering claims as header values.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwapOption;

use http::header::{HeaderName, HeaderValue, CONNECTION};
use http::HeaderMap;
use serde_json::{Map, Value};

/// Where an identity header's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimSource {
    /// A claim of the verified token, by name.
    Claim(String),
    /// The literal `true` on every authenticated request (`@authenticated`).
    Authenticated,
}

/// Ordered list of identity headers to send upstream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderMapping {
    pub entries: Vec<(HeaderName, ClaimSource)>,
}

/// Authgear's claim names.
pub mod claims {
    pub const IS_ANONYMOUS: &str = "https://authgear.com/claims/user/is_anonymous";
    pub const IS_VERIFIED: &str = "https://authgear.com/claims/user/is_verified";
    pub const CAN_REAUTHENTICATE: &str = "https://authgear.com/claims/user/can_reauthenticate";
    pub const ROLES: &str = "https://authgear.com/claims/user/roles";
}

impl HeaderMapping {
    /// The headers of Authgear's own resolver endpoint, so apps written for
    /// Authgear's backend integration work unchanged behind the gateway.
    pub fn authgear_default() -> Self {
        let e = |n: &'static str, c: ClaimSource| (HeaderName::from_static(n), c);
        let c = |s: &str| ClaimSource::Claim(s.to_owned());
        HeaderMapping {
            entries: vec![
                e("x-authgear-session-valid", ClaimSource::Authenticated),
                e("x-authgear-user-id", c("sub")),
                e("x-authgear-user-anonymous", c(claims::IS_ANONYMOUS)),
                e("x-authgear-user-verified", c(claims::IS_VERIFIED)),
                e("x-authgear-user-can-reauthenticate", c(claims::CAN_REAUTHENTICATE)),
                e("x-authgear-user-roles", c(claims::ROLES)),
                e("x-authgear-session-amr", c("amr")),
                e("x-authgear-session-authenticated-at", c("auth_time")),
            ],
        }
    }

    /// Renders the identity headers for `claims`. A claim that is absent (or
    /// null) sends no header.
    pub fn render(&self, claims: &Map<String, Value>) -> Vec<(HeaderName, HeaderValue)> {
        let mut out = Vec::with_capacity(self.entries.len());
        for (name, src) in &self.entries {
            let value = match src {
                ClaimSource::Authenticated => Some(HeaderValue::from_static("true")),
                ClaimSource::Claim(c) => claims.get(c).and_then(render_claim),
            };
            if let Some(v) = value {
                out.push((name.clone(), v));
            }
        }
        out
    }
}

/// One token's identity headers, rendered on its first request and kept
/// with its verified-token cache entry, so a cache hit inserts ready-made
/// values instead of formatting every claim again. Re-rendered when a route
/// with another mapping (or a reloaded config) uses the token.
#[derive(Debug, Default)]
pub struct RenderedHeaders(ArcSwapOption<Rendered>);

#[derive(Debug)]
struct Rendered {
    /// Held, not just compared by address: while this lives, no other
    /// mapping can be allocated at its address and be taken for it.
    mapping: Arc<HeaderMapping>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl RenderedHeaders {
    /// Inserts the headers `mapping` gives for `claims` (always the same
    /// claims: those of the token this belongs to) into `h`.
    pub fn insert_into(&self, mapping: &Arc<HeaderMapping>, claims: &Map<String, Value>, h: &mut HeaderMap) {
        let kept = self.0.load();
        let fresh;
        let rendered = match kept.as_deref().filter(|r| Arc::ptr_eq(&r.mapping, mapping)) {
            Some(r) => r,
            None => {
                fresh = Arc::new(Rendered { mapping: mapping.clone(), headers: mapping.render(claims) });
                self.0.store(Some(fresh.clone()));
                &fresh
            }
        };
        for (name, value) in &rendered.headers {
            h.insert(name.clone(), value.clone());
        }
    }
}

/// Turns a claim into a header value: strings as they are, booleans
/// `true`/`false`, numbers as written, arrays joined with `,`, objects as
/// compact JSON; null and `[]` send nothing. Bytes that cannot appear in a header (controls, non-ASCII)
/// and `%` itself are percent-encoded, so decoding is unambiguous and
/// nothing can inject a header line. Array items also encode `,`. A space
/// at either end of the value (of each item, for arrays) is encoded too:
/// recipients strip it (RFC 9110 5.5), so the app would read another value.
pub fn render_claim(v: &Value) -> Option<HeaderValue> {
    let mut s = String::new();
    match v {
        Value::Null => return None,
        // Authgear's resolver omits the roles header when there are none.
        Value::Array(items) if items.is_empty() => return None,
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                encode_into(&scalar_text(item), true, &mut s);
            }
        }
        other => encode_into(&scalar_text(other), false, &mut s),
    }
    HeaderValue::from_str(&s).ok()
}

fn scalar_text(v: &Value) -> std::borrow::Cow<'_, str> {
    match v {
        Value::String(s) => s.as_str().into(),
        Value::Bool(b) => if *b { "true" } else { "false" }.into(),
        Value::Number(n) => n.to_string().into(),
        Value::Null => "null".into(),
        other => other.to_string().into(),
    }
}

fn encode_into(text: &str, in_list: bool, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let last = text.len().saturating_sub(1);
    for (i, &b) in text.as_bytes().iter().enumerate() {
        let edge_space = b == b' ' && (i == 0 || i == last);
        let needs = edge_space || !(0x20..=0x7e).contains(&b) || b == b'%' || (in_list && b == b',');
        if needs {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 0xf) as usize] as char);
        } else {
            out.push(b as char);
        }
    }
}

/// What a client-sent header is, when the gateway must not pass it on as
/// sent. Names are compared folded (see [`fold_byte`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Untrusted {
    /// A configured identity header or any `x-authgear-*` name.
    Identity,
    /// Makes an app serve another path than the one the gateway judged
    /// (`X-Original-URL`, `X-Rewrite-URL`: IIS URL Rewrite, Laminas, old
    /// Symfony).
    Rerouting,
    /// Makes an app run another method than the one the gateway judged
    /// (`X-HTTP-Method-Override` and friends: Express, Rack, Symfony,
    /// Laravel); kept only where a route opts in.
    MethodOverride,
    /// Claims where the request came from or how it was addressed
    /// (`X-Forwarded-*`, `Forwarded`, `X-Real-IP` and the client-address
    /// headers CDNs set); kept only behind a trusted proxy, and then only
    /// the ones in [`TRUSTED_FORWARDING`].
    Forwarding,
}

impl Untrusted {
    /// Label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Untrusted::Identity => "identity",
            Untrusted::Rerouting => "rerouting",
            Untrusted::MethodOverride => "method_override",
            Untrusted::Forwarding => "forwarding",
        }
    }
}

/// Re-routing header names, folded.
const REROUTING: &[&str] = &["x-original-url", "x-rewrite-url", "x-original-uri"];

/// Method-override header names, folded.
pub const METHOD_OVERRIDE: &[&str] = &["x-http-method-override", "x-http-method", "x-method-override"];

/// Client-address headers apps and frameworks read (Rails' `remote_ip`
/// reads `Client-IP`, many apps trust a CDN's header), folded.
const CLIENT_ADDRESS: &[&str] = &[
    "forwarded",
    "x-real-ip",
    "x-client-ip",
    "client-ip",
    "true-client-ip",
    "x-cluster-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "x-original-forwarded-for",
];

/// The forwarding headers kept from a trusted proxy (`trust_forwarded_headers`),
/// in exactly this spelling: a proxy writes them so, and `_` or `.`
/// spellings are a client's.
pub const TRUSTED_FORWARDING: &[&str] =
    &["forwarded", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-forwarded-port", "x-forwarded-prefix", "x-real-ip"];

/// Folds one byte of a header name: lower case, and `_` and `.` read as
/// `-`, because PHP, CGI and WSGI build `HTTP_X_USER_ID` from
/// `X-User-Id`, `X_User_Id` and `X.User.Id` alike.
pub fn fold_byte(b: u8) -> u8 {
    match b {
        b'_' | b'.' => b'-',
        b => b.to_ascii_lowercase(),
    }
}

/// Client headers the gateway never passes on as sent: every configured
/// identity header and every `x-authgear-*` name, the re-routing and
/// method-override headers, and the forwarding headers. Names are compared
/// folded (see [`fold_byte`]).
#[derive(Debug, Clone, Default)]
pub struct IdentityStrip {
    names: HashSet<String>,
}

impl IdentityStrip {
    /// Builds the set from every mapping in the config.
    pub fn new<'a>(mappings: impl IntoIterator<Item = &'a HeaderMapping>) -> Self {
        let mut names = HashSet::new();
        for m in mappings {
            for (n, _) in &m.entries {
                names.insert(fold(n.as_str()));
            }
        }
        IdentityStrip { names }
    }

    /// Also strips `name` (folded), as an identity header.
    pub fn add(&mut self, name: &str) {
        self.names.insert(fold(name));
    }

    /// True when a client must not be allowed to send this header.
    pub fn is_identity(&self, name: &str) -> bool {
        self.classify(name) == Some(Untrusted::Identity)
    }

    /// What `name` is, if the gateway must not pass it on as sent.
    pub fn classify(&self, name: &str) -> Option<Untrusted> {
        // Fold on the stack: this runs for every header of every request.
        let mut buf = [0u8; 96];
        let owned;
        let f: &str = if name.len() <= buf.len() && name.is_ascii() {
            for (d, b) in buf.iter_mut().zip(name.bytes()) {
                *d = fold_byte(b);
            }
            std::str::from_utf8(&buf[..name.len()]).unwrap_or("x-authgear-")
        } else {
            owned = fold(name);
            &owned
        };
        if f.starts_with("x-authgear-") || self.names.contains(f) {
            Some(Untrusted::Identity)
        } else if f.starts_with("x-forwarded") || CLIENT_ADDRESS.contains(&f) {
            Some(Untrusted::Forwarding)
        } else if REROUTING.contains(&f) {
            Some(Untrusted::Rerouting)
        } else if METHOD_OVERRIDE.contains(&f) {
            Some(Untrusted::MethodOverride)
        } else {
            None
        }
    }

    /// Removes every identity and re-routing header, and every forwarding
    /// header except, when `trust_forwarded`, those in
    /// [`TRUSTED_FORWARDING`]. Each removal is logged at debug and counted.
    /// Method-override headers are left to route matching, which removes
    /// them unless the route that judged the overriding method opted in
    /// (`screen::drop_method_override`).
    pub fn strip(&self, headers: &mut HeaderMap, trust_forwarded: bool) {
        let doomed = |n: &HeaderName| match self.classify(n.as_str()) {
            None | Some(Untrusted::MethodOverride) => None,
            Some(Untrusted::Forwarding) if trust_forwarded && TRUSTED_FORWARDING.contains(&n.as_str()) => None,
            Some(kind) => Some(kind),
        };
        // Nearly every request has none: look before collecting.
        if !headers.keys().any(|n| doomed(n).is_some()) {
            return;
        }
        let found: Vec<(HeaderName, Untrusted)> = headers.keys().filter_map(|n| doomed(n).map(|k| (n.clone(), k))).collect();
        for (n, kind) in found {
            remove_counted(headers, &n, kind);
        }
    }
}

/// Removes a client-sent header the gateway does not pass on, with a debug
/// line (the name only, never the value) and a count in the metrics.
pub fn remove_counted(headers: &mut HeaderMap, name: &HeaderName, kind: Untrusted) {
    if headers.remove(name).is_some() {
        tracing::debug!(header = name.as_str(), kind = kind.as_str(), "removed a client-sent header");
        crate::observe::metrics::metrics().stripped_header(kind.as_str());
    }
}

fn fold(name: &str) -> String {
    name.bytes().map(|b| fold_byte(b) as char).collect()
}

/// Hop-by-hop headers (RFC 9110 section 7.6.1) plus the ones proxies
/// conventionally treat the same way.
/// `HTTP2-Settings` belongs to the h2c upgrade (RFC 7540 section 3.2.1)
/// and never travels past the hop it was sent on.
/// Names, not strings: removing by `&str` parses the name again on every
/// call, twice per request (callgrind: 7,000 instructions a request).
static HOP_BY_HOP: [HeaderName; 10] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    http::header::PROXY_AUTHENTICATE,
    http::header::PROXY_AUTHORIZATION,
    http::header::TE,
    http::header::TRAILER,
    http::header::TRANSFER_ENCODING,
    http::header::UPGRADE,
    HeaderName::from_static("http2-settings"),
];

/// Removes hop-by-hop headers, including any that `Connection` names.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // A message has a handful of headers: one pass over the names present,
    // noting which listed ones occur, is cheaper than ten lookups (each a
    // hash and a probe; callgrind: 2,500 instructions for a response). A
    // name that `Connection` lists needs `Connection`, which is listed.
    let mut present = 0u16;
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| h == name) {
            present |= 1 << i;
        }
    }
    if present == 0 {
        return;
    }
    let mut named: Vec<HeaderName> = Vec::new();
    for token in headers.get_all(CONNECTION).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')) {
        let token = token.trim();
        // `keep-alive` and the like go below anyway: no name to build.
        if HOP_BY_HOP.iter().any(|h| token.eq_ignore_ascii_case(h.as_str())) {
            continue;
        }
        if let Ok(n) = HeaderName::from_bytes(token.as_bytes()) {
            named.push(n);
        }
    }
    for n in named {
        headers.remove(n);
    }
    for (i, n) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(n);
        }
    }
}

/// True when `TE` lists `trailers` (gRPC clients send `TE: trailers`; it is
/// hop-by-hop, so the rewrite step puts it back deliberately).
pub fn accepts_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("trailers")))
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Sets `X-Forwarded-For/-Proto/-Host`, after [`IdentityStrip::strip`]
/// removed the client's own unless they come from a trusted proxy: then
/// the client address is appended to its `X-Forwarded-For`, and its
/// `-Proto` and `-Host` are kept.
pub fn set_forwarded(headers: &mut HeaderMap, client: IpAddr, proto: &'static str, host: Option<&HeaderValue>) {
    let host = host.cloned();
    let xff = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.trim().is_empty() => HeaderValue::from_str(&format!("{prev}, {client}")).ok(),
        _ => ip_header_value(client),
    };
    if let Some(v) = xff {
        headers.insert(X_FORWARDED_FOR, v);
    }
    if !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    }
    if let Some(h) = host {
        if !headers.contains_key(&X_FORWARDED_HOST) {
            headers.insert(X_FORWARDED_HOST, h);
        }
    }
}

/// An IP address as a header value, formatted on the stack.
fn ip_header_value(ip: IpAddr) -> Option<HeaderValue> {
    let mut buf = Vec::with_capacity(40);
    crate::observe::text::write_ip(&mut buf, ip);
    HeaderValue::from_maybe_shared(bytes::Bytes::from(buf)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn claim_rendering() {
        let r = |v: Value| render_claim(&v).map(|h| h.to_str().unwrap_or("").to_owned());
        assert_eq!(r(json!("user-1")).as_deref(), Some("user-1"));
        assert_eq!(r(json!(true)).as_deref(), Some("true"));
        assert_eq!(r(json!(1700000000)).as_deref(), Some("1700000000"));
        assert_eq!(r(json!(["a", "b"])).as_deref(), Some("a,b"));
        assert_eq!(r(json!(["a,b", "c"])).as_deref(), Some("a%2Cb,c"));
        assert_eq!(r(json!({"k": 1})).as_deref(), Some("{\"k\":1}"));
        assert_eq!(r(json!("evil\r\nx-authgear-user-id: admin")).as_deref(), Some("evil%0D%0Ax-authgear-user-id: admin"));
        assert_eq!(r(json!("café 100%")).as_deref(), Some("caf%C3%A9 100%25"));
        assert_eq!(r(json!(" admin ")).as_deref(), Some("%20admin%20"), "a recipient would trim edge spaces");
        assert_eq!(r(json!([" a", "b c", "d "])).as_deref(), Some("%20a,b c,d%20"));
        assert_eq!(r(json!(" ")).as_deref(), Some("%20"));
        assert_eq!(r(Value::Null), None);
        assert_eq!(r(json!([])), None);
    }

    #[test]
    fn identity_names_fold_underscores() {
        let mut m = HeaderMapping::default();
        m.entries.push((HeaderName::from_static("x-user-id"), ClaimSource::Claim("sub".into())));
        let s = IdentityStrip::new([&m]);
        assert!(s.is_identity("x-user-id"));
        assert!(s.is_identity("X-User_Id"));
        assert!(s.is_identity("x-authgear-anything"));
        assert!(s.is_identity("x_authgear_session_valid"));
        assert!(s.is_identity("X.User.Id"));
        assert!(!s.is_identity("x-user-ids"));
    }

    #[test]
    fn hop_by_hop_and_connection_named() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("close, x-secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut h);
        assert!(h.get("x-secret").is_none() && h.get("te").is_none() && h.get("connection").is_none());
        assert!(h.get("x-keep").is_some());
        // Every hop-by-hop name, spelled here apart from the list itself.
        let names = [
            "Connection",
            "Keep-Alive",
            "Proxy-Connection",
            "Proxy-Authenticate",
            "Proxy-Authorization",
            "TE",
            "Trailer",
            "Transfer-Encoding",
            "Upgrade",
            "HTTP2-Settings",
        ];
        // The names left after removal from `x-keep` plus `sent`.
        let left = |sent: &[(&str, &'static str)]| {
            let mut h = HeaderMap::new();
            h.insert("x-keep", HeaderValue::from_static("1"));
            for (n, v) in sent {
                h.append(HeaderName::from_bytes(n.as_bytes()).unwrap(), HeaderValue::from_static(v));
            }
            remove_hop_by_hop(&mut h);
            h.keys().map(|k| k.as_str().to_owned()).collect::<Vec<_>>()
        };
        let all: Vec<_> = names.iter().map(|n| (*n, "x")).collect();
        assert_eq!(left(&all), ["x-keep"]);
        // Each one alone too (no `Connection` to send it down the long path).
        for n in names {
            assert_eq!(left(&[(n, "x")]), ["x-keep"], "{n}");
        }
        // `Connection` naming a listed header and an unlisted one.
        assert_eq!(left(&[("connection", "Keep-Alive, X-Private"), ("keep-alive", "timeout=5"), ("x-private", "1")]), ["x-keep"]);
    }

    #[test]
    fn te_trailers_detected() {
        let mut h = HeaderMap::new();
        assert!(!accepts_trailers(&h));
        h.insert("te", HeaderValue::from_static("gzip, Trailers;q=1"));
        assert!(accepts_trailers(&h));
        h.insert("te", HeaderValue::from_static("trailersx"));
        assert!(!accepts_trailers(&h));
    }

    #[test]
    fn forwarded_headers_not_trusted_by_default() {
        let strip = IdentityStrip::default();
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
        h.insert("x-forwarded-prefix", HeaderValue::from_static("/admin"));
        h.insert("x_forwarded_host", HeaderValue::from_static("admin.example.test"));
        h.insert("true-client-ip", HeaderValue::from_static("6.6.6.6"));
        strip.strip(&mut h, false);
        let host = HeaderValue::from_static("app.example.com");
        set_forwarded(&mut h, "10.0.0.1".parse().unwrap(), "http", Some(&host));
        assert_eq!(h["x-forwarded-for"], "10.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "app.example.com");
        assert!(h.get("x-forwarded-prefix").is_none() && h.get("x_forwarded_host").is_none() && h.get("true-client-ip").is_none());

        let mut h2 = HeaderMap::new();
        h2.insert("x-forwarded-for", HeaderValue::from_static("1.2.3.4"));
        h2.insert("x-forwarded-prefix", HeaderValue::from_static("/app"));
        h2.insert("x-forwarded-uri", HeaderValue::from_static("/admin"));
        h2.insert("x.forwarded.prefix", HeaderValue::from_static("/admin"));
        strip.strip(&mut h2, true);
        set_forwarded(&mut h2, "10.0.0.1".parse().unwrap(), "https", None);
        assert_eq!(h2["x-forwarded-for"], "1.2.3.4, 10.0.0.1");
        assert_eq!(h2["x-forwarded-prefix"], "/app");
        assert!(h2.get("x-forwarded-uri").is_none() && h2.get("x.forwarded.prefix").is_none());
    }

    #[test]
    fn names_fold_every_separator_php_folds() {
        let s = IdentityStrip::default();
        for n in ["X.Authgear.User.Id", "X.Authgear-User-Id", "x-authgear.user.id", "X_AUTHGEAR_USER_ROLES", "x.authgear.session.valid"] {
            assert_eq!(s.classify(n), Some(Untrusted::Identity), "{n}");
        }
        for n in ["X-Original-URL", "x_original_url", "X.Rewrite.URL"] {
            assert_eq!(s.classify(n), Some(Untrusted::Rerouting), "{n}");
        }
        for n in ["X-HTTP-Method-Override", "x-http-method", "X_Method_Override"] {
            assert_eq!(s.classify(n), Some(Untrusted::MethodOverride), "{n}");
        }
        for n in ["X-Forwarded-Prefix", "x-forwarded-path", "X.Forwarded.Uri", "Forwarded", "X-Real-IP", "CF-Connecting-IP"] {
            assert_eq!(s.classify(n), Some(Untrusted::Forwarding), "{n}");
        }
        for n in ["accept", "x-authgearish", "x-user", "content-type", "x-original", "x-http-methods"] {
            assert_eq!(s.classify(n), None, "{n}");
        }
    }
}

//! Fuzz target bodies, shared by the AFL binaries (`fuzz/bin/*.rs`) and the
//! corpus replay test (`tests/fuzz_corpus_replay.rs`), so CI replays every
//! committed input through exactly the code AFL ran. Each body takes
//! arbitrary bytes, must never panic on its own, and asserts the invariants
//! of the code under test: a failed assert is a finding, like a crash.
//!
//! Only the gateway's public API and crates the gateway already depends on
//! are used, so the replay test builds in the ordinary debug build.

use std::io::Cursor;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use authgear_gateway::auth::jwt::{self, ClaimRules};
use authgear_gateway::auth::keys::KeySet;
use authgear_gateway::auth::{bearer_token, looks_like_jwt, Identity};
use authgear_gateway::config::Severity;
use authgear_gateway::policy::headers::{claims, render_claim, ClaimSource, HeaderMapping};
use authgear_gateway::policy::path::{normalize, NormalPath};
use authgear_gateway::session;
use authgear_gateway::session::resolver::{verdict_from_headers, Verdict};
use authgear_gateway::upstream::proxy::{rewrite_request, ClientInfo};
use authgear_gateway::Config;
use authgear_import::mapping::{Identifier, Mapping};
use authgear_import::reader::{rows_from, Format};
use authgear_import::schema;
use http::header::{HeaderName, HeaderValue, AUTHORIZATION, COOKIE};
use http::{HeaderMap, Method, Request, Uri};
use serde_json::{Map, Value};

/// One target's body.
pub type Target = fn(&[u8]);

/// Every target by name, as the binaries and `fuzz/corpus/<name>/` call it.
pub const TARGETS: &[(&str, Target)] = &[
    ("path_normalize", path_normalize),
    ("auth_token", auth_token),
    ("claim_render", claim_render),
    ("config_load", config_load),
    ("session_cookies", session_cookies),
    ("resolver_headers", resolver_headers),
    ("import_reader", import_reader),
    ("import_mapping", import_mapping),
    ("forward_headers", forward_headers),
];

// ---------------------------------------------------------------- paths

/// The routes the path target matches against: a public area, a prefix
/// rewrite and a protected catch-all, behind an upstream with a base path.
const PATH_CONFIG: &str = r#"
[upstream]
url = "http://127.0.0.1:9/base"
[auth]
issuer = "https://fuzz.authgear.test"
jwks_uri = "https://fuzz.authgear.test/jwks"
[[routes]]
path = "/public/**"
auth = "public"
[[routes]]
path = "/api/**"
strip_prefix = "/api"
add_prefix = "/v1"
[[routes]]
path = "/admin/**"
[[routes]]
path = "/**"
"#;

fn path_config() -> &'static Config {
    static CFG: OnceLock<Config> = OnceLock::new();
    CFG.get_or_init(|| match Config::from_toml_with_env(PATH_CONFIG, "path-fuzz.toml", &|_| None) {
        Ok(c) => c,
        Err(d) => panic!("the path target's own config does not load:\n{d}"),
    })
}

/// `path::normalize` on any text, then, for a request target the `http`
/// crate accepts (what hyper hands the gateway), the route match and the
/// upstream request built from the same normalized path.
pub fn path_normalize(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        check_normal_form(text);
    }
    let Ok(uri) = Uri::try_from(data) else { return };
    let Some(p) = check_normal_form(uri.path()) else { return };
    if p.forwarded() == "*" {
        return;
    }
    let cfg = path_config();
    let route = cfg.routes.find(&Method::GET, None, p.judged());
    let Some(route) = route else { panic!("the catch-all route did not match {p:?}") };
    let (parts, ()) = Request::get(uri.clone()).body(()).map(Request::into_parts).unwrap_or_else(|e| panic!("a parsed URI is not a request: {e}"));
    let client = ClientInfo { addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 1), proto: "http" };
    let up = match rewrite_request(cfg, route, &cfg.upstreams[0], parts, (), &p, None, client) {
        Ok(r) => r,
        Err(e) => panic!("a normalized path cannot be forwarded: {p:?}: {e:?}"),
    };
    // Judged and forwarded: the same string (plus the route's rewrite and
    // the last segment's `;` parameters).
    let expected = format!("{}{}", cfg.upstreams[0].base_path, route.upstream_path(&p));
    assert_eq!(up.uri().path(), expected, "forwarded path differs from the judged one for {p:?}");
    assert_eq!(up.uri().query(), uri.query(), "query changed on the way upstream");
    let below_base = up.uri().path().strip_prefix(cfg.upstreams[0].base_path.as_str()).unwrap_or("");
    let again = normalize(below_base).map(|n| n.forwarded().to_owned());
    assert_eq!(again.as_deref(), Ok(below_base), "the upstream receives a path that is not normal");
}

/// Checks the invariants of one `normalize` answer; returns it.
fn check_normal_form(raw: &str) -> Option<NormalPath> {
    let n = normalize(raw).ok()?;
    if n.forwarded() == "*" {
        assert_eq!(raw, "*", "only `*` normalizes to `*`");
        return Some(n);
    }
    let (p, full) = (n.judged(), n.forwarded());
    assert!(full.starts_with(p) && (full == p || full[p.len()..].starts_with(';')), "{n:?}: the forwarded path is not the judged one plus parameters");
    assert!(p.starts_with('/'), "{p:?} does not start with /");
    assert!(!p.contains("//") && !p.contains(';'), "{p:?} has an empty segment or a parameter");
    for seg in p.split('/') {
        assert!(seg != "." && seg != "..", "{p:?} keeps a dot segment");
        // A dot segment spelled with escapes would be one for the upstream.
        let once = percent_decode(seg);
        assert!(once != b"." && once != b"..", "{p:?} keeps an encoded dot segment");
        // Nor one an app that decodes twice would see (finding 3).
        let twice = percent_decode(&String::from_utf8_lossy(&once));
        assert!(twice != b"." && twice != b"..", "{p:?} keeps a double-encoded dot segment");
    }
    assert!(!full.bytes().any(|b| b == b'\\' || b < 0x20 || b == 0x7f), "{full:?} keeps a backslash or control byte");
    assert_eq!(normalize(full).as_ref(), Ok(&n), "normalize is not idempotent on {raw:?}");
    Some(n)
}

/// One standard percent-decoding (invalid escapes kept as written).
fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(v) = hex {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

// ---------------------------------------------------------------- tokens

/// The fixed time the token target judges at; the seed tokens were minted
/// around it, so the corpus replays the same way forever.
pub const TOKEN_NOW: u64 = 1_750_000_000;
/// The issuer of the seed tokens (`fuzz/seedgen.rs`).
pub const TOKEN_ISSUER: &str = "https://fuzz.authgear.test";
const TOKEN_AUDIENCE: &str = "https://fuzz.authgear.test";

fn token_keys() -> &'static KeySet {
    static KEYS: OnceLock<KeySet> = OnceLock::new();
    KEYS.get_or_init(|| match KeySet::from_jwks(include_bytes!("jwks.json")) {
        Ok((set, _skipped)) => set,
        Err(e) => panic!("fuzz/jwks.json does not load: {e}"),
    })
}

/// `Authorization` header values (one per input line) through
/// `auth::bearer_token`, then `jwt::parse`, the signature check against
/// the fixed JWKS in `fuzz/jwks.json` and the claim checks.
pub fn auth_token(data: &[u8]) {
    let mut h = HeaderMap::new();
    let mut count = 0;
    for line in data.split(|&b| b == b'\n') {
        if let Ok(v) = HeaderValue::from_bytes(line) {
            h.append(AUTHORIZATION, v);
            count += 1;
        }
    }
    let token = match bearer_token(&h) {
        Ok(Some(t)) => t,
        Ok(None) => {
            assert!(count <= 1, "two Authorization headers were not refused");
            return;
        }
        Err(_) => return,
    };
    assert_eq!(count, 1, "a token was taken from {count} Authorization headers");
    assert!(!token.is_empty() && !token.contains(' '), "bearer value {token:?} kept a space");
    let _ = looks_like_jwt(token);
    let Ok(mut parsed) = jwt::parse(token) else { return };
    assert!(token.starts_with(parsed.signing_input), "signing input is not the token's prefix");
    assert!(!parsed.signature.is_empty(), "a token without a signature parsed");
    let keys = token_keys();
    if let Ok(key) = jwt::verify_signature(&parsed, keys) {
        assert!(key.allows(parsed.header.alg), "a key verified an algorithm it does not allow");
        let last = parsed.signature.len() - 1;
        parsed.signature[last] ^= 1;
        assert!(jwt::verify_signature(&parsed, keys).is_err(), "a tampered signature verified");
        parsed.signature[last] ^= 1;
    }
    let audiences = [TOKEN_AUDIENCE.to_owned()];
    let types = ["at+jwt".to_owned(), "jwt".to_owned()];
    let rules = ClaimRules { issuer: TOKEN_ISSUER, audiences: &audiences, leeway: Duration::from_secs(60), token_types: &types };
    if jwt::check_claims(&parsed, &rules, TOKEN_NOW).is_ok() {
        assert_eq!(parsed.claims.get("iss").and_then(Value::as_str), Some(TOKEN_ISSUER), "claims passed with another issuer");
        let exp = jwt::expiry(&parsed.claims);
        assert!(exp.is_some_and(|e| TOKEN_NOW < e.saturating_add(60)), "claims passed without a live exp");
    }
}

// ---------------------------------------------------------------- claims

/// `headers::render_claim` on the input as a JSON value and as a plain
/// string, and `HeaderMapping::render` when it is an object.
pub fn claim_render(data: &[u8]) {
    check_rendered(&Value::String(String::from_utf8_lossy(data).into_owned()));
    let Ok(v) = serde_json::from_slice::<Value>(data) else { return };
    check_rendered(&v);
    if let Value::Array(items) = &v {
        for item in items {
            check_rendered(item);
        }
    }
    if let Value::Object(map) = &v {
        for item in map.values() {
            check_rendered(item);
        }
        check_mapping(&HeaderMapping::authgear_default(), map);
        let custom = HeaderMapping {
            entries: vec![
                (HeaderName::from_static("x-user-email"), ClaimSource::Claim("email".into())),
                (HeaderName::from_static("x-user-roles"), ClaimSource::Claim("roles".into())),
                (HeaderName::from_static("x-user-custom"), ClaimSource::Claim("custom".into())),
                (HeaderName::from_static("x-user-authenticated"), ClaimSource::Authenticated),
            ],
        };
        check_mapping(&custom, map);
    }
}

fn check_mapping(mapping: &HeaderMapping, claims: &Map<String, Value>) {
    let out = mapping.render(claims);
    let mut expected = Vec::new();
    for (name, src) in &mapping.entries {
        let present = match src {
            ClaimSource::Authenticated => true,
            ClaimSource::Claim(c) => claims.get(c).is_some_and(|v| !v.is_null() && v.as_array().map_or(true, |a| !a.is_empty())),
        };
        if present {
            expected.push(name.clone());
        }
    }
    let got: Vec<HeaderName> = out.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(got, expected, "rendered headers are not the mapping's present claims");
}

/// The text a claim stands for once its header value is decoded.
fn claim_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

fn check_rendered(v: &Value) {
    let rendered = render_claim(v);
    let empty = matches!(v, Value::Null) || v.as_array().is_some_and(Vec::is_empty);
    let Some(hv) = rendered else {
        assert!(empty, "claim {v} rendered no header");
        return;
    };
    assert!(!empty, "claim {v} rendered a header");
    let bytes = hv.as_bytes();
    assert!(bytes.iter().all(|b| (0x20..=0x7e).contains(b)), "rendered value holds a byte outside visible ASCII and space");
    // A recipient trims the whitespace around a field value (RFC 9110
    // 5.5), and around each item of a list: the app would read another
    // value than the claim.
    let Ok(text) = hv.to_str() else { panic!("rendered value is not text") };
    let items: Vec<&str> = if v.is_array() { text.split(',').collect() } else { vec![text] };
    for item in &items {
        assert_eq!(item.trim_matches([' ', '\t']), *item, "rendered item {item:?} has whitespace an HTTP recipient strips");
    }
    match v {
        Value::Array(list) => {
            assert_eq!(items.len(), list.len(), "list items do not split back on `,`");
            for (item, want) in items.iter().zip(list) {
                assert_eq!(percent_decode(item), claim_text(want).into_bytes(), "list item does not decode back");
            }
        }
        other => assert_eq!(percent_decode(text), claim_text(other).into_bytes(), "value does not decode back to the claim"),
    }
}

// ---------------------------------------------------------------- config

/// `Config::from_toml_with_env` on any text: an answer, never a panic, and
/// every diagnostic placed on a real line.
pub fn config_load(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let env = |k: &str| match k {
        "FUZZ_HOST" => Some("fuzz.example.test".to_owned()),
        "FUZZ_EMPTY" => Some(String::new()),
        _ => None,
    };
    let lines = text.split('\n').count();
    let check_places = |d: &authgear_gateway::config::Diagnostics| {
        for item in &d.items {
            assert!(item.line >= 1 && item.line <= lines, "diagnostic on line {} of a {lines}-line file: {item}", item.line);
            assert!(item.column >= 1, "diagnostic without a column: {item}");
            assert!(!item.message.is_empty(), "diagnostic without a message: {item}");
            let _ = item.to_string();
        }
    };
    match Config::from_toml_with_env(text, "fuzz.toml", &env) {
        Ok(cfg) => {
            assert!(!cfg.warnings.has_errors(), "a config loaded with errors");
            check_places(&cfg.warnings);
            assert!(!cfg.upstreams.is_empty(), "a config loaded without an upstream");
        }
        Err(d) => {
            assert!(d.has_errors(), "a config was refused without an error");
            check_places(&d);
            // A TOML syntax error comes before any key is known: it names a
            // line only (the toml crate's own message says what is wrong).
            let syntax_ok = toml::de::DeTable::parse(text).is_ok();
            for e in d.errors() {
                assert!(e.severity == Severity::Error);
                assert!(!syntax_ok || !e.key.is_empty(), "error names no key: {e}");
            }
        }
    }
}

// ---------------------------------------------------------------- session

const SESSION_NAMES: [&str; 2] = ["session", "ag_refresh"];

/// `session::session_cookies` on `Cookie` headers, one per input line.
pub fn session_cookies(data: &[u8]) {
    let names: Vec<String> = SESSION_NAMES.iter().map(|s| (*s).to_owned()).collect();
    let mut h = HeaderMap::new();
    let mut sent = Vec::new();
    for line in data.split(|&b| b == b'\n') {
        if let Ok(v) = HeaderValue::from_bytes(line) {
            if let Ok(t) = v.to_str() {
                sent.push(t.to_owned());
            }
            h.append(COOKIE, v);
        }
    }
    let Some(out) = session::session_cookies(&h, &names) else {
        let offered =
            sent.iter().flat_map(|v| v.split(';')).any(|p| p.split_once('=').is_some_and(|(n, v)| SESSION_NAMES.contains(&n.trim()) && !v.trim().is_empty()));
        assert!(!offered, "a session cookie was offered and not kept");
        return;
    };
    let Ok(text) = out.to_str() else { panic!("kept cookies are not text") };
    for pair in text.split("; ") {
        let Some((name, value)) = pair.split_once('=') else { panic!("kept cookie {pair:?} has no `=`") };
        assert!(SESSION_NAMES.contains(&name), "cookie {name:?} is not a session cookie");
        assert!(!value.is_empty() && value.trim() == value, "kept cookie value {value:?} is empty or padded");
        assert!(sent.iter().any(|s| s.contains(value)), "kept cookie value was never sent");
    }
    let mut again = HeaderMap::new();
    again.insert(COOKIE, out.clone());
    assert_eq!(session::session_cookies(&again, &names), Some(out), "reading the kept cookies again changes them");
}

/// `resolver::verdict_from_headers` on `name: value` lines, and the
/// identity it gives rendered back as the gateway's headers.
pub fn resolver_headers(data: &[u8]) {
    let mut h = HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let (Ok(name), Ok(value)) = (HeaderName::from_bytes(line[..colon].trim_ascii()), HeaderValue::from_bytes(line[colon + 1..].trim_ascii())) else {
            continue;
        };
        h.append(name, value);
    }
    let valid_headers = h.get_all("x-authgear-session-valid").iter().count();
    for extra in [None, Some("roles")] {
        match verdict_from_headers(&h, extra) {
            Ok(Verdict::Absent) => assert_eq!(valid_headers, 0, "Absent although X-Authgear-Session-Valid was sent"),
            Ok(Verdict::Invalid) => assert!(valid_headers >= 1, "Invalid without X-Authgear-Session-Valid"),
            Ok(Verdict::Valid(c)) => {
                assert_eq!(valid_headers, 1, "Valid with {valid_headers} X-Authgear-Session-Valid headers");
                let said = h.get("x-authgear-session-valid").and_then(|v| v.to_str().ok()).map(str::trim);
                assert!(said.is_some_and(|s| s.eq_ignore_ascii_case("true")), "Valid without `true`");
                let sub = c.get("sub").and_then(Value::as_str).unwrap_or("");
                assert!(!sub.is_empty() && sub.trim() == sub, "valid identity with sub {sub:?}");
                if let Some(roles) = c.get(claims::ROLES) {
                    let Some(list) = roles.as_array() else { panic!("roles claim is not a list") };
                    assert!(!list.is_empty(), "empty roles list");
                    for r in list {
                        assert!(r.as_str().is_some_and(|s| !s.is_empty() && !s.contains(',') && s.trim() == s), "role {r} is empty, padded or holds `,`");
                    }
                    if extra.is_some() {
                        assert_eq!(c.get("roles"), Some(roles), "the configured roles claim differs from Authgear's");
                    }
                }
                round_trip(&c);
            }
            Err(_) => {}
        }
    }
}

/// The resolver's identity rendered as the gateway's default headers and
/// read back: the user id and roles survive when they hold no `%`.
fn round_trip(c: &Map<String, Value>) {
    let mut h = HeaderMap::new();
    for (n, v) in HeaderMapping::authgear_default().render(c) {
        h.insert(n, v);
    }
    let Ok(Verdict::Valid(back)) = verdict_from_headers(&h, None) else { return };
    let plain = |v: &Value| claim_text(v).bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b'%');
    if c.get("sub").is_some_and(plain) {
        assert_eq!(back.get("sub"), c.get("sub"), "user id changed through the identity headers");
    }
    if let Some(Value::Array(roles)) = c.get(claims::ROLES) {
        if roles.iter().all(plain) {
            assert_eq!(back.get(claims::ROLES), c.get(claims::ROLES), "roles changed through the identity headers");
        }
    }
}

// ---------------------------------------------------------------- import

/// Most rows read from one input; the readers must finish long before.
const MAX_ROWS: usize = 100_000;

/// The importer's CSV, JSON and NDJSON readers (first byte picks the
/// format), each row then mapped automatically and schema-checked.
pub fn import_reader(data: &[u8]) {
    let Some((&pick, body)) = data.split_first() else { return };
    let format = match pick % 3 {
        0 => Format::Csv,
        1 => Format::Json,
        _ => Format::Ndjson,
    };
    let Ok(rows) = rows_from(Cursor::new(body.to_vec()), format) else { return };
    let lines = body.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
    let mapping = Mapping::automatic(Identifier::Email);
    let mut last_line = 0;
    let mut n = 0;
    for row in rows {
        n += 1;
        assert!(n <= body.len() + 1 && n <= MAX_ROWS, "the reader yields more rows than the input has bytes");
        let Ok(row) = row else { continue };
        assert!(row.line <= lines, "row on line {} of a {lines}-line input", row.line);
        assert!(row.line >= last_line, "row lines go backwards: {} after {last_line}", row.line);
        last_line = row.line;
        if let Ok(fields) = row.data {
            if let Ok(mut record) = mapping.apply(fields) {
                let mut check = schema::Check::default();
                let _ = schema::check(&mut record, Identifier::Email, &mut check);
            }
        }
    }
}

/// A mapping file parsed by `Mapping::parse`, then applied to a few rows.
pub fn import_mapping(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(mapping) = Mapping::parse(text) else { return };
    let rows = [
        serde_json::json!({"Email": " User1@Example.com ", "Email Verified": "yes", "Name": "A", "Roles": "admin, ops", "Plan": "3", "Password Hash": "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy"}),
        serde_json::json!({"email": "b@example.com", "email_verified": 1, "roles": ["x"], "custom_attributes": {"plan": 2}, "Phone": "+85298765432"}),
        serde_json::json!({"Email": "", "Plan": "x", "Age": "1e400", "Groups": "[1, {\"a\": 2}]"}),
    ];
    for row in rows {
        let Value::Object(fields) = row else { continue };
        if let Ok(mut record) = mapping.apply(fields) {
            let mut check = schema::Check::default();
            let _ = schema::check(&mut record, mapping.identifier, &mut check);
        }
    }
}

// ---------------------------------------------------------------- forwarding

/// Identity headers of their own (beside Authgear's `x-authgear-*`), a
/// route that keeps `Authorization` and one that drops it.
const FORWARD_CONFIG: &str = r#"
[upstream]
url = "http://127.0.0.1:9"
[auth]
issuer = "https://fuzz.authgear.test"
jwks_uri = "https://fuzz.authgear.test/jwks"
[headers]
"x-authgear-session-valid" = "@authenticated"
"x-authgear-user-id" = "sub"
"x-user-id" = "sub"
"x-user-roles" = "https://authgear.com/claims/user/roles"
"x-user-email" = "email"
[[routes]]
path = "/public/**"
auth = "public"
[[routes]]
path = "/admin/**"
pass_authorization = false
[[routes]]
path = "/**"
"#;

fn forward_config() -> &'static Config {
    static CFG: OnceLock<Config> = OnceLock::new();
    CFG.get_or_init(|| match Config::from_toml_with_env(FORWARD_CONFIG, "forward-fuzz.toml", &|_| None) {
        Ok(c) => c,
        Err(d) => panic!("the forward target's own config does not load:\n{d}"),
    })
}

/// Header names an app server may read as the same name (CGI, PHP, Rails
/// fold `_` and `.` into `-`), lower-cased.
fn folded(name: &str) -> String {
    name.bytes().map(|b| if b == b'_' || b == b'.' { '-' } else { b.to_ascii_lowercase() as char }).collect()
}

/// `proxy::rewrite_request` on client headers (`name: value` lines after a
/// first byte that picks the route and whether a caller is verified): no
/// identity header the client sent reaches the upstream, the verified ones
/// arrive exactly as rendered, hop-by-hop headers and the ones `Connection`
/// names are gone, and `X-Forwarded-For` is the client's address only.
pub fn forward_headers(data: &[u8]) {
    let Some((&pick, body)) = data.split_first() else { return };
    let path = ["/public/x", "/admin/x", "/app/x"][usize::from(pick % 3)];
    let verified = pick & 4 != 0;
    let mut req = Request::get(path);
    let mut sent: Vec<(HeaderName, HeaderValue)> = Vec::new();
    for line in body.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let (Ok(name), Ok(value)) = (HeaderName::from_bytes(line[..colon].trim_ascii()), HeaderValue::from_bytes(line[colon + 1..].trim_ascii())) else {
            continue;
        };
        sent.push((name.clone(), value.clone()));
        req = req.header(name, value);
    }
    let Ok(req) = req.body(()) else { return };
    let (parts, ()) = req.into_parts();
    let cfg = forward_config();
    let Ok(normal) = normalize(path) else { panic!("{path} is not normal") };
    let Some(route) = cfg.routes.find(&Method::GET, None, normal.judged()) else { panic!("no route for {path}") };
    let claims: Map<String, Value> = match serde_json::json!({
        "sub": "user-1", "email": "u@example.test", claims::ROLES: ["admin", "ops"],
    }) {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let identity = verified.then(|| Identity { claims: Arc::new(claims), issuer: 0, rendered: None });
    let client = ClientInfo { addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)), 1), proto: "http" };
    let up = match rewrite_request(cfg, route, &cfg.upstreams[0], parts, (), &normal, identity.as_ref(), client) {
        Ok(r) => r,
        Err(e) => panic!("rewrite refused a request: {e:?}"),
    };
    let out = up.headers();
    let rendered = identity.as_ref().map(|id| route.headers.render(&id.claims)).unwrap_or_default();
    let identity_names: Vec<String> = cfg.default_headers.entries.iter().map(|(n, _)| folded(n.as_str())).collect();
    for name in out.keys() {
        let f = folded(name.as_str());
        if f.starts_with("x-authgear-") || identity_names.contains(&f) {
            let values: Vec<&HeaderValue> = out.get_all(name).iter().collect();
            let ours = rendered.iter().find(|(n, _)| n == name).map(|(_, v)| v);
            assert!(
                values.len() == 1 && ours == values.first().copied(),
                "identity header {name} reached the upstream with a value the gateway did not render"
            );
        }
    }
    for (n, v) in &rendered {
        assert_eq!(out.get(n), Some(v), "verified identity header {n} missing or replaced");
    }
    for hop in ["connection", "keep-alive", "proxy-connection", "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade"] {
        assert!(!out.contains_key(hop), "hop-by-hop header {hop} was forwarded");
    }
    // What the gateway sets itself may come back under a name the client
    // listed in Connection; nothing else may.
    let own = ["host", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"];
    for (n, v) in sent.iter().filter(|(n, _)| n == http::header::CONNECTION) {
        for token in v.to_str().unwrap_or("").split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let Ok(named) = HeaderName::from_bytes(token.as_bytes()) else { continue };
            if own.contains(&named.as_str()) || rendered.iter().any(|(r, _)| *r == named) {
                continue;
            }
            assert!(!out.contains_key(&named), "{named}, named by Connection ({n}), was forwarded");
        }
    }
    assert_eq!(
        out.get_all("x-forwarded-for").iter().collect::<Vec<_>>(),
        [&HeaderValue::from_static("192.0.2.7")],
        "X-Forwarded-For is not the client's address"
    );
    let connection_named = |name: &str| {
        sent.iter()
            .filter(|(n, _)| n == http::header::CONNECTION)
            .any(|(_, v)| v.to_str().unwrap_or("").split(',').any(|t| t.trim().eq_ignore_ascii_case(name)))
    };
    if route.pass_authorization && !connection_named("authorization") {
        let sent_auth: Vec<&HeaderValue> = sent.iter().filter(|(n, _)| n == AUTHORIZATION).map(|(_, v)| v).collect();
        assert_eq!(out.get_all(AUTHORIZATION).iter().collect::<Vec<_>>(), sent_auth, "Authorization changed on a route that passes it");
    } else {
        assert!(!out.contains_key(AUTHORIZATION), "Authorization forwarded on a route that drops it");
    }
}

//! The route table: which rule a request falls under. First match wins; a
//! request that matches nothing is refused (404) and never forwarded.

use std::sync::Arc;

use http::Method;

use crate::policy::authz::Requirements;
use crate::policy::headers::HeaderMapping;
use crate::policy::path::{self, NormalPath, PathError};

/// How much authentication a route asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// No token looked at; identity headers are still stripped.
    Public,
    /// Anonymous passes without identity; a bad token is still rejected.
    Optional,
    /// A valid token is needed.
    Required,
}

impl AuthMode {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::Public => "public",
            AuthMode::Optional => "optional",
            AuthMode::Required => "required",
        }
    }
}

/// How a route authenticates a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// A bearer JWT, verified locally against the issuer's keys.
    Jwt,
    /// Authgear's resolver judges the session cookie or opaque token.
    Session,
    /// A bearer JWT is verified locally; anything else goes to the resolver.
    JwtOrSession,
    /// The gateway's own browser login: a session it sealed itself.
    Login,
}

impl AuthMethod {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Jwt => "jwt",
            AuthMethod::Session => "session",
            AuthMethod::JwtOrSession => "jwt_or_session",
            AuthMethod::Login => "login",
        }
    }

    /// True when the method may call the resolver.
    pub fn uses_resolver(self) -> bool {
        matches!(self, AuthMethod::Session | AuthMethod::JwtOrSession)
    }
}

/// How a route compares a request path with its pattern.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PathCase {
    /// Byte for byte (RFC 3986).
    #[default]
    Sensitive,
    /// ASCII letters match in either case, for apps that route that way
    /// (Express by default, IIS, ASP.NET). Percent-encoded octets still
    /// compare exactly (normalization upper-cases their hex), so non-ASCII
    /// letters are not folded; the ones some servers fold to ASCII are
    /// refused instead ([`path::check_case_fold`]).
    Insensitive,
}

impl PathCase {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PathCase::Sensitive => "sensitive",
            PathCase::Insensitive => "insensitive",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Lit(Box<str>),
    /// `*`: exactly one non-empty segment.
    One,
}

/// A compiled path pattern: literal segments, `*` for one segment, and at
/// most one `**` for any number of segments (zero included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    raw: String,
    head: Vec<Seg>,
    /// `Some(tail)` when the pattern has a `**`; `tail` follows it.
    tail: Option<Vec<Seg>>,
    case: PathCase,
}

impl PathPattern {
    /// Parses a pattern such as `/api/*/items/**`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if !raw.starts_with('/') {
            return Err("must start with `/`".into());
        }
        let mut head = Vec::new();
        let mut tail: Option<Vec<Seg>> = None;
        for seg in raw[1..].split('/') {
            let parsed = match seg {
                "**" => {
                    if tail.is_some() {
                        return Err("only one `**` is allowed in a pattern".into());
                    }
                    tail = Some(Vec::new());
                    continue;
                }
                "*" => Seg::One,
                s if s.contains('*') => {
                    return Err(format!("`*` must be a whole segment (found `{s}`)"));
                }
                "." | ".." => return Err("dot segments are not allowed in patterns".into()),
                s if s.contains(['%', ';', '\\', '?', '#']) => {
                    return Err(format!("segment `{s}` holds a character that normalized paths never match"));
                }
                // Spelled as normalized paths spell it, so `/café` matches.
                s => Seg::Lit(path::encode_non_ascii(s).into()),
            };
            match tail.as_mut() {
                Some(t) => t.push(parsed),
                None => head.push(parsed),
            }
        }
        Ok(PathPattern { raw: raw.to_owned(), head, tail, case: PathCase::Sensitive })
    }

    /// The same pattern, compared with paths as `case` says.
    pub fn with_case(mut self, case: PathCase) -> Self {
        self.case = case;
        self
    }

    /// How this pattern compares paths.
    pub fn case(&self) -> PathCase {
        self.case
    }

    fn folds(&self) -> bool {
        self.case == PathCase::Insensitive
    }

    /// The pattern as written in the config.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// True when the normalized `path` matches.
    pub fn matches(&self, path: &str) -> bool {
        self.matches_segments(&segments(path))
    }

    /// Same as [`matches`](Self::matches) on a path already split by [`segments`].
    pub fn matches_segments(&self, segs: &[&str]) -> bool {
        let fold = self.folds();
        match &self.tail {
            None => seg_all(&self.head, segs, fold),
            Some(tail) => {
                segs.len() >= self.head.len() + tail.len()
                    && seg_all(&self.head, &segs[..self.head.len()], fold)
                    && seg_all(tail, &segs[segs.len() - tail.len()..], fold)
            }
        }
    }

    /// The literal prefix before the first wildcard, for shadowing checks.
    fn literal_prefix(&self) -> Vec<&str> {
        self.head
            .iter()
            .map_while(|s| match s {
                Seg::Lit(l) => Some(&**l),
                Seg::One => None,
            })
            .collect()
    }

    /// True when every path this pattern matches is also matched by `self`
    /// being a `prefix/**` pattern (a conservative check: it may miss some
    /// shadowing but never reports a false one).
    pub fn covers(&self, other: &PathPattern) -> bool {
        let fold = self.folds();
        let same = |a: &str, b: &str| if fold { a.eq_ignore_ascii_case(b) } else { a == b };
        // A case-insensitive pattern matches spellings that a sensitive one
        // with letters in its literals never does.
        if other.folds() && !fold && self.literal_prefix().iter().any(|l| l.bytes().any(|b| b.is_ascii_alphabetic())) {
            return false;
        }
        if same(&self.raw, &other.raw) {
            return true;
        }
        match &self.tail {
            Some(t) if t.is_empty() && self.head.iter().all(|s| matches!(s, Seg::Lit(_))) => {
                let mine = self.literal_prefix();
                let theirs = other.literal_prefix();
                let other_min_len = other.head.len();
                theirs.len() >= mine.len() && theirs.iter().zip(&mine).all(|(t, m)| same(t, m)) && other_min_len >= mine.len()
            }
            _ => false,
        }
    }

    /// True when the two patterns differ only by the case of ASCII letters.
    pub fn differs_only_by_case(&self, other: &PathPattern) -> bool {
        self.raw != other.raw && self.raw.eq_ignore_ascii_case(&other.raw)
    }
}

/// Splits a normalized path into segments (`/` gives one empty segment).
pub fn segments(path: &str) -> Vec<&str> {
    path.strip_prefix('/').unwrap_or(path).split('/').collect()
}

fn seg_all(pat: &[Seg], segs: &[&str], fold: bool) -> bool {
    pat.len() == segs.len()
        && pat.iter().zip(segs).all(|(p, s)| match p {
            Seg::Lit(l) if fold => l.eq_ignore_ascii_case(s),
            Seg::Lit(l) => **l == **s,
            Seg::One => !s.is_empty(),
        })
}

/// A host rule: `api.example.com` or `*.example.com` (any depth of
/// subdomain, never the bare domain). Compared case-insensitively, port
/// ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Exact(String),
    Suffix(String),
}

impl HostPattern {
    /// Parses a host rule from the config.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let lower = raw.trim().to_ascii_lowercase();
        if lower.is_empty() {
            return Err("empty host".into());
        }
        if let Some(rest) = lower.strip_prefix("*.") {
            if rest.is_empty() || rest.contains('*') {
                return Err("a wildcard host looks like `*.example.com`".into());
            }
            return Ok(HostPattern::Suffix(format!(".{rest}")));
        }
        if lower.contains(['*', '/', ':']) {
            return Err("a host has no `*` (except a leading `*.`), scheme, port or path".into());
        }
        Ok(HostPattern::Exact(lower))
    }

    /// True when `host` (already lower-cased, without port) matches.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(h) => h == host,
            HostPattern::Suffix(s) => host.len() > s.len() && host.ends_with(s.as_str()),
        }
    }
}

/// Extracts the lower-cased host (port and trailing dot removed) of a
/// request, from the URI authority (HTTP/2) or the Host header.
pub fn request_host<'r>(uri: &'r http::Uri, headers: &'r http::HeaderMap) -> Option<std::borrow::Cow<'r, str>> {
    let raw = match uri.authority() {
        Some(a) => a.host(),
        None => {
            let h = headers.get(http::header::HOST)?.to_str().ok()?;
            host_of(h)?
        }
    };
    let raw = raw.strip_suffix('.').unwrap_or(raw);
    // Borrow in the common case (already lower-case): one less allocation
    // per request.
    Some(if raw.bytes().any(|b| b.is_ascii_uppercase()) { raw.to_ascii_lowercase().into() } else { raw.into() })
}

/// The host part of a `Host` header value (port removed; IPv6 literals keep
/// their brackets, as `http::uri::Authority::host` gives them), or `None`
/// when it is not a valid authority.
fn host_of(h: &str) -> Option<&str> {
    // Validate exactly as before (the same parser), then slice the input.
    let auth: http::uri::Authority = h.parse().ok()?;
    let host_len = auth.host().len();
    let start = h.find(auth.host())?;
    h.get(start..start + host_len)
}

/// One compiled `[[routes]]` entry.
#[derive(Debug)]
pub struct Route {
    /// Metric/log label: the `name` key, or the path pattern.
    pub name: String,
    /// Position in the table (0-based) and line in the file, for `explain`.
    pub index: usize,
    pub line: usize,
    pub path: PathPattern,
    pub host: Option<HostPattern>,
    pub methods: Option<Vec<Method>>,
    pub auth: AuthMode,
    pub method: AuthMethod,
    /// Unauthenticated browsers are sent to the login page instead of a 401.
    pub login_redirect: bool,
    pub require: Requirements,
    /// Index into `Config::upstreams`.
    pub upstream: usize,
    pub strip_prefix: Option<String>,
    pub add_prefix: Option<String>,
    pub headers: Arc<HeaderMapping>,
    pub pass_authorization: bool,
    /// `method = "login"` routes: send the session's access token upstream
    /// as `Authorization: Bearer`.
    pub pass_access_token: bool,
    /// `cors_preflight = "allow"`: a CORS preflight (`OPTIONS` with
    /// `Origin` and `Access-Control-Request-Method`) passes anonymously.
    pub cors_preflight: bool,
    /// Replaces the issuer's audiences for this route when set.
    pub audiences: Option<Vec<String>>,
    /// Request bodies larger than this get 413; `None` streams any size.
    pub max_body_size: Option<u64>,
    /// `Upgrade` protocols passed to the upstream, lower-case (default
    /// `websocket`); any other is removed and the request goes as plain
    /// HTTP/1.1.
    pub upgrades: Vec<String>,
    /// Method-override headers are honoured (and judged) here.
    pub method_override: bool,
    /// This route's request counters (filled on first use).
    pub counters: crate::observe::metrics::RouteCounters,
}

/// Why a route did not match a request (for `explain`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mismatch {
    Host,
    Method,
    Path,
}

impl Route {
    /// Checks host, method and path, in that order.
    pub fn check(&self, method: &Method, host: Option<&str>, segs: &[&str]) -> Result<(), Mismatch> {
        if let Some(hp) = &self.host {
            if !host.is_some_and(|h| hp.matches(h)) {
                return Err(Mismatch::Host);
            }
        }
        if let Some(ms) = &self.methods {
            if !ms.contains(method) {
                return Err(Mismatch::Method);
            }
        }
        if !self.path.matches_segments(segs) {
            return Err(Mismatch::Path);
        }
        Ok(())
    }

    /// The path the upstream receives: the judged path with `strip_prefix`
    /// removed (in the route's case mode, as it was matched) and
    /// `add_prefix` prepended, then the last segment's `;` parameters.
    pub fn upstream_path<'a>(&self, path: &'a NormalPath) -> std::borrow::Cow<'a, str> {
        let judged = path.judged();
        let mut p: Option<std::borrow::Cow<'a, str>> = None;
        if let Some(rest) = self.strip_prefix.as_deref().and_then(|sp| self.after_prefix(judged, sp)) {
            if rest.is_empty() {
                p = Some("/".into());
            } else if rest.starts_with('/') {
                p = Some(rest.into());
            }
        }
        if let Some(ap) = &self.add_prefix {
            let base = p.as_deref().unwrap_or(judged);
            p = Some(if base == "/" { format!("{ap}/") } else { format!("{ap}{base}") }.into());
        }
        match (p, path.params()) {
            (None, _) => path.forwarded().into(),
            (Some(p), None) => p,
            (Some(p), Some(params)) => format!("{p};{params}").into(),
        }
    }

    fn after_prefix<'p>(&self, path: &'p str, prefix: &str) -> Option<&'p str> {
        let head = path.get(..prefix.len())?;
        let same = if self.path.folds() { head.eq_ignore_ascii_case(prefix) } else { head == prefix };
        same.then(|| &path[prefix.len()..])
    }
}

/// The ordered routes of one config.
#[derive(Debug, Default)]
pub struct RouteTable {
    pub routes: Vec<Route>,
    /// True when any route matches case-insensitively.
    pub folds_case: bool,
}

impl RouteTable {
    /// Refuses a judged path that a case-insensitive route could misjudge
    /// (see [`path::check_case_fold`]); any path passes when no route folds
    /// case.
    pub fn check_path(&self, judged: &str) -> Result<(), PathError> {
        if self.folds_case {
            path::check_case_fold(judged)?;
        }
        Ok(())
    }

    /// First route that matches, or `None` (404).
    pub fn find(&self, method: &Method, host: Option<&str>, path: &str) -> Option<&Route> {
        // Split onto the stack for ordinary paths; only very deep ones
        // allocate.
        let mut stack: [&str; 24] = [""; 24];
        let mut n = 0;
        for s in path.strip_prefix('/').unwrap_or(path).split('/') {
            if n == stack.len() {
                let segs = segments(path);
                return self.routes.iter().find(|r| r.check(method, host, &segs).is_ok());
            }
            stack[n] = s;
            n += 1;
        }
        let segs = &stack[..n];
        self.routes.iter().find(|r| r.check(method, host, segs).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, path: &str) -> bool {
        PathPattern::parse(p).unwrap().matches(path)
    }

    #[test]
    fn exact_and_wildcards() {
        assert!(m("/", "/"));
        assert!(!m("/", "/a"));
        assert!(m("/a/b", "/a/b"));
        assert!(!m("/a/b", "/a/b/"));
        assert!(!m("/a/b", "/a/bc"));
        assert!(m("/a/*", "/a/x"));
        assert!(!m("/a/*", "/a/"));
        assert!(!m("/a/*", "/a/x/y"));
        assert!(m("/public/**", "/public"));
        assert!(m("/public/**", "/public/"));
        assert!(m("/public/**", "/public/a/b/c"));
        assert!(!m("/public/**", "/publicity"));
        assert!(!m("/public/**", "/"));
        assert!(m("/**", "/"));
        assert!(m("/**", "/anything/at/all"));
        assert!(m("/api/**/edit", "/api/edit"));
        assert!(m("/api/**/edit", "/api/x/y/edit"));
        assert!(!m("/api/**/edit", "/api/x/y/view"));
        assert!(m("/a/*/c/**", "/a/b/c"));
    }

    #[test]
    fn case_insensitive_patterns_fold_ascii_only() {
        let p = PathPattern::parse("/admin/*/Edit/**").unwrap().with_case(PathCase::Insensitive);
        assert!(p.matches("/ADMIN/x/edit") && p.matches("/Admin/X/EDIT/more") && p.matches("/admin/x/Edit"));
        assert!(!p.matches("/ADMINS/x/edit") && !p.matches("/admin/x/edits"));
        assert!(!PathPattern::parse("/admin/**").unwrap().matches("/ADMIN/x"));
        // Non-ASCII literals are spelled as normalized paths are, and not folded.
        let cafe = PathPattern::parse("/caf\u{e9}/**").unwrap().with_case(PathCase::Insensitive);
        assert!(cafe.matches("/caf%C3%A9/x") && cafe.matches("/CAF%C3%A9/x"));
        assert!(!cafe.matches("/CAF%C3%89/x"));
    }

    #[test]
    fn covers_under_case_folding() {
        let p = |s, c| PathPattern::parse(s).unwrap().with_case(c);
        use PathCase::{Insensitive as I, Sensitive as S};
        assert!(p("/admin/**", I).covers(&p("/ADMIN/x", S)));
        assert!(p("/Admin/**", I).covers(&p("/admin/**", I)));
        assert!(!p("/admin/**", S).covers(&p("/ADMIN/x", S)));
        // A sensitive `/admin/**` misses `/ADMIN/x`, which an insensitive
        // `/admin/x` matches; `/**` has no letters to miss.
        assert!(!p("/admin/**", S).covers(&p("/admin/x", I)));
        assert!(!p("/admin/**", S).covers(&p("/admin/**", I)));
        assert!(p("/**", S).covers(&p("/admin/**", I)));
        assert!(p("/Admin/**", S).differs_only_by_case(&p("/admin/**", S)));
        assert!(!p("/admin/**", S).differs_only_by_case(&p("/admin/**", I)));
    }

    #[test]
    fn bad_patterns() {
        assert!(PathPattern::parse("a").is_err());
        assert!(PathPattern::parse("/a/**/b/**").is_err());
        assert!(PathPattern::parse("/a*").is_err());
        assert!(PathPattern::parse("/a/../b").is_err());
        assert!(PathPattern::parse("/a%2f").is_err());
    }

    #[test]
    fn hosts() {
        let e = HostPattern::parse("API.example.com").unwrap();
        assert!(e.matches("api.example.com"));
        assert!(!e.matches("x.api.example.com"));
        let w = HostPattern::parse("*.example.com").unwrap();
        assert!(w.matches("a.example.com"));
        assert!(w.matches("a.b.example.com"));
        assert!(!w.matches("example.com"));
        assert!(!w.matches("evilexample.com"));
        assert!(HostPattern::parse("a.*.com").is_err());
    }

    #[test]
    fn covers() {
        let p = |s| PathPattern::parse(s).unwrap();
        assert!(p("/**").covers(&p("/admin/**")));
        assert!(p("/api/**").covers(&p("/api/x")));
        assert!(!p("/api/**").covers(&p("/apix")));
        assert!(!p("/api/*").covers(&p("/api/x")) || p("/api/*") == p("/api/x"));
        assert!(!p("/a/**").covers(&p("/*/x")));
    }
}

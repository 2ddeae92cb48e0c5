//! Route and header-mapping compilation (the `[[routes]]` and `[headers]`
//! half of [`super::compile`]).

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use http::header::HeaderName;
use http::Method;
use toml::de::DeValue;
use toml::Spanned;

use super::compile_session::route_method;
use super::raw::{RawAuthMode, RawRoute};
use super::settings::{IssuerSettings, SessionSettings};
use super::values::Compiler;
use crate::policy::authz::Requirements;
use crate::policy::headers::{ClaimSource, HeaderMapping};
use crate::policy::routes::{AuthMethod, AuthMode, HostPattern, PathCase, PathPattern, Route, RouteTable};

/// Headers the gateway manages itself or that carry credentials; never
/// valid as identity header names.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "authorization",
    "cookie",
    "set-cookie",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "forwarded",
    "x-request-id",
];

/// What every route is compiled against.
#[derive(Clone, Copy)]
pub(super) struct RouteContext<'c> {
    /// Names of the defined upstreams, index-aligned with `Config::upstreams`.
    pub(super) upstreams: &'c [String],
    /// True when `[upstream]` (the default) is defined.
    pub(super) has_default: bool,
    pub(super) default_headers: &'c Arc<HeaderMapping>,
    pub(super) issuers: &'c [IssuerSettings],
    pub(super) default_method: AuthMethod,
    pub(super) session: &'c SessionSettings,
    pub(super) login: Option<&'c super::settings::BrowserLoginSettings>,
    /// `[server] path_case`: routes without their own follow it.
    pub(super) default_case: PathCase,
}

impl Compiler<'_> {
    /// A `path_case` value, or `default` when unset (or misspelled, which
    /// is reported).
    pub(super) fn path_case(&mut self, raw: &Option<Spanned<String>>, key: &str, default: PathCase) -> PathCase {
        let Some(v) = raw else { return default };
        match v.get_ref().as_str() {
            "sensitive" => PathCase::Sensitive,
            "insensitive" => PathCase::Insensitive,
            other => {
                self.rep.error_hint(v.span(), key, format!("unknown path_case `{other}`"), "use \"sensitive\" or \"insensitive\"");
                default
            }
        }
    }

    pub(super) fn mapping(&mut self, map: &BTreeMap<Spanned<String>, Spanned<String>>, key: &str) -> HeaderMapping {
        let mut m = HeaderMapping::default();
        for (name, claim) in map {
            let hk = format!("{key}.\"{}\"", name.get_ref());
            let lower = name.get_ref().to_ascii_lowercase();
            let Ok(hn) = HeaderName::from_bytes(lower.as_bytes()) else {
                self.rep.error(name.span(), hk, "not a valid header name");
                continue;
            };
            if RESERVED_HEADERS.contains(&hn.as_str()) {
                self.rep.error(name.span(), hk, "this header is managed by the gateway and cannot carry identity");
                continue;
            }
            let src = match claim.get_ref().as_str() {
                "" => {
                    self.rep.error(claim.span(), hk, "the claim name is empty");
                    continue;
                }
                "@authenticated" => ClaimSource::Authenticated,
                c if c.starts_with('@') => {
                    self.rep.error_hint(claim.span(), hk, format!("unknown special value `{c}`"), "the only one is \"@authenticated\"");
                    continue;
                }
                c => ClaimSource::Claim(c.to_owned()),
            };
            m.entries.push((hn, src));
        }
        m
    }

    pub(super) fn routes(&mut self, v: Option<Spanned<DeValue<'_>>>, ctx: &RouteContext<'_>) -> RouteTable {
        let mut table = RouteTable::default();
        let Some(v) = v else {
            self.rep.error_hint(0..0, "routes", "no routes: every request would be refused", "add at least one [[routes]] entry");
            return table;
        };
        let span = v.span();
        let DeValue::Array(items) = v.into_inner() else {
            self.rep.error(span, "routes", "must be an array of tables ([[routes]])");
            return table;
        };
        for (i, item) in items.iter().enumerate() {
            let key = format!("routes[{i}]");
            let rspan = item.span();
            // A route with a type error is skipped so it does not also
            // produce "missing" errors for the keys serde gave up on.
            let Some(raw) = self.try_de::<RawRoute>(Some(item.clone()), &key) else { continue };
            if let Some(r) = self.route(i, &raw, &key, rspan, ctx) {
                table.routes.push(r);
            }
        }
        table.folds_case = table.routes.iter().any(|r| r.path.case() == PathCase::Insensitive);
        self.shadow_warnings(&table);
        table
    }

    fn route(&mut self, index: usize, r: &RawRoute, key: &str, span: Range<usize>, ctx: &RouteContext<'_>) -> Option<Route> {
        let RouteContext { upstreams, has_default, default_headers, issuers, .. } = *ctx;
        let line = self.rep_line(span.start);
        let Some(path_raw) = &r.path else {
            self.rep.error(span, format!("{key}.path"), "missing: the path pattern, e.g. \"/api/**\"");
            return None;
        };
        let path = match PathPattern::parse(path_raw.get_ref()) {
            Ok(p) => p.with_case(self.path_case(&r.path_case, &format!("{key}.path_case"), ctx.default_case)),
            Err(msg) => {
                self.rep.error(path_raw.span(), format!("{key}.path"), msg);
                return None;
            }
        };
        let host = r.host.as_ref().and_then(|h| match HostPattern::parse(h.get_ref()) {
            Ok(p) => Some(p),
            Err(msg) => {
                self.rep.error(h.span(), format!("{key}.host"), msg);
                None
            }
        });
        let methods = r.methods.as_ref().map(|ms| {
            ms.iter()
                .filter_map(|m| {
                    let up = m.get_ref().to_ascii_uppercase();
                    match Method::from_bytes(up.as_bytes()) {
                        Ok(meth) => Some(meth),
                        Err(_) => {
                            self.rep.error(m.span(), format!("{key}.methods"), format!("`{}` is not an HTTP method", m.get_ref()));
                            None
                        }
                    }
                })
                .collect::<Vec<_>>()
        });
        let auth = match r.auth.as_ref().map(|a| *a.get_ref()) {
            None | Some(RawAuthMode::Required) => AuthMode::Required,
            Some(RawAuthMode::Optional) => AuthMode::Optional,
            Some(RawAuthMode::Public) => AuthMode::Public,
        };
        let strs = |v: &Option<Vec<Spanned<String>>>| v.as_ref().map(|l| l.iter().map(|s| s.get_ref().clone()).collect::<Vec<_>>()).unwrap_or_default();
        let mut require = Requirements { roles: strs(&r.roles), scopes: strs(&r.scopes), claims: Vec::new() };
        for (name, val) in r.claims.iter().flatten() {
            match toml_to_json(val.get_ref()) {
                Some(j) => require.claims.push((name.clone(), j)),
                None => self.rep.error(val.span(), format!("{key}.claims.\"{name}\""), "dates cannot be compared with claims; use a string or number"),
            }
        }
        if auth != AuthMode::Required && !require.is_empty() {
            let a = r.auth.as_ref().map_or(span.clone(), |a| a.span());
            self.rep.error_hint(
                a,
                format!("{key}.auth"),
                format!("a `{}` route cannot require roles, scopes or claims", auth.as_str()),
                "set auth = \"required\"",
            );
        }
        let method = route_method(r.method.as_ref().map(|m| *m.get_ref()), ctx.default_method);
        if auth != AuthMode::Public && method != AuthMethod::Session && issuers.is_empty() {
            self.rep.error_hint(
                span.clone(),
                format!("{key}.auth"),
                "this route needs tokens but no issuer is configured",
                "add [auth] issuer = \"https://<your project>.authgear.cloud\"",
            );
        }
        if auth != AuthMode::Public && method.uses_resolver() && ctx.session.resolver_url.is_none() {
            let s = r.method.as_ref().map_or(span.clone(), |m| m.span());
            self.rep.error_hint(
                s,
                format!("{key}.method"),
                format!("method `{}` needs Authgear's resolver", method.as_str()),
                "set [auth] issuer (the resolver defaults to <issuer>/_resolver/resolve) or [auth] resolver_url",
            );
        }
        if auth != AuthMode::Public && method == AuthMethod::Login && ctx.login.is_none() {
            let s = r.method.as_ref().map_or(span.clone(), |m| m.span());
            self.rep.error_hint(
                s,
                format!("{key}.method"),
                "method `login` needs a [login] table",
                "add [login] with public_origin, client_id and cookie_keys",
            );
        }
        let login_redirect = r.login_redirect.as_ref().is_some_and(|b| *b.get_ref());
        if let (true, Some(lr)) = (login_redirect, &r.login_redirect) {
            if auth == AuthMode::Public {
                self.rep.error(lr.span(), format!("{key}.login_redirect"), "a public route never asks anyone to log in");
            } else if ctx.session.login.is_none() {
                self.rep.error_hint(
                    lr.span(),
                    format!("{key}.login_redirect"),
                    "no login page to send browsers to",
                    "set [auth] login_url, e.g. \"https://myapp.authgear.cloud/login\"",
                );
            }
        }
        let upstream = match &r.upstream {
            None if has_default => 0,
            None => {
                self.rep.error_hint(span.clone(), format!("{key}.upstream"), "no upstream for this route", "add [upstream] url = ... or upstream = \"NAME\"");
                return None;
            }
            Some(name) => match upstreams.iter().position(|u| u == name.get_ref()) {
                Some(i) => i,
                None => {
                    let known: Vec<&str> = upstreams.iter().map(String::as_str).collect();
                    let hint = super::diag::suggest(name.get_ref(), &known)
                        .map_or_else(|| format!("defined upstreams: {}", known.join(", ")), |s| format!("did you mean `{s}`?"));
                    self.rep.error_hint(name.span(), format!("{key}.upstream"), format!("unknown upstream `{}`", name.get_ref()), hint);
                    return None;
                }
            },
        };
        let prefix = |c: &mut Self, v: &Option<Spanned<String>>, k: &str| -> Option<String> {
            let s = v.as_ref()?;
            let p = s.get_ref();
            if !p.starts_with('/') || p.ends_with('/') || p.contains(['?', '#', '%', '\\', ';']) || p.split('/').any(|seg| seg == "." || seg == "..") {
                c.rep.error_hint(s.span(), format!("{key}.{k}"), format!("`{p}` is not a plain path prefix"), "like \"/api\": leading /, no trailing /");
                return None;
            }
            // Spelled as normalized paths spell non-ASCII, or it never matches.
            Some(crate::policy::path::encode_non_ascii(p))
        };
        let strip_prefix = prefix(self, &r.strip_prefix, "strip_prefix");
        let add_prefix = prefix(self, &r.add_prefix, "add_prefix");
        let headers = match &r.headers {
            None => default_headers.clone(),
            Some(map) => Arc::new(self.mapping(map, &format!("{key}.headers"))),
        };
        let audiences = match &r.audiences {
            Some(a) if a.is_empty() => {
                self.rep.error(span.clone(), format!("{key}.audiences"), "must hold at least one audience");
                None
            }
            Some(a) => Some(a.iter().map(|s| s.get_ref().clone()).collect()),
            None => None,
        };
        let name = r.name.as_ref().map_or_else(|| path.as_str().to_owned(), |n| n.get_ref().clone());
        Some(Route {
            name,
            index,
            line,
            path,
            host,
            methods,
            auth,
            method,
            login_redirect,
            require,
            upstream,
            strip_prefix,
            add_prefix,
            headers,
            pass_authorization: r.pass_authorization.unwrap_or(true),
            pass_access_token: self.pass_access_token(r, method, key),
            cors_preflight: self.cors_preflight(r, key),
            audiences,
            max_body_size: self.size(&r.max_body_size, &format!("{key}.max_body_size")),
            upgrades: self.upgrades(&r.upgrades, key),
            method_override: r.method_override.as_ref().is_some_and(|b| *b.get_ref()),
            counters: Default::default(),
        })
    }

    /// `cors_preflight`: `"authenticate"` (the default: a preflight is
    /// judged like any request) or `"allow"`.
    fn cors_preflight(&mut self, r: &RawRoute, key: &str) -> bool {
        let Some(v) = &r.cors_preflight else { return false };
        match v.get_ref().as_str() {
            "allow" => true,
            "authenticate" => false,
            other => {
                self.rep.error_hint(
                    v.span(),
                    format!("{key}.cors_preflight"),
                    format!("`{other}` is not a preflight policy"),
                    "\"allow\" (an OPTIONS with Origin and Access-Control-Request-Method passes without identity) or \"authenticate\"",
                );
                false
            }
        }
    }

    fn rep_line(&self, offset: usize) -> usize {
        self.rep.line_of(offset)
    }

    /// `upgrades`: lower-cased protocol tokens. `h2c` (and `h2`) are
    /// refused: after such an upgrade every HTTP/2 stream would reach the
    /// upstream without being judged.
    fn upgrades(&mut self, v: &Option<Spanned<Vec<Spanned<String>>>>, key: &str) -> Vec<String> {
        let Some(list) = v else { return vec!["websocket".to_owned()] };
        let mut out = Vec::new();
        for p in list.get_ref() {
            let t = p.get_ref().trim().to_ascii_lowercase();
            let name = t.split('/').next().unwrap_or("");
            if name == "h2c" || name == "h2" {
                self.rep.error_hint(
                    p.span(),
                    format!("{key}.upgrades"),
                    format!("`{t}` cannot be allowed: after an HTTP/2 upgrade, every request on the connection would reach the upstream unjudged"),
                    "clients reach HTTP/2 upstreams through the gateway's own HTTP/2 listener",
                );
            } else if t.is_empty() || !t.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/".contains(&b)) {
                self.rep.error(p.span(), format!("{key}.upgrades"), format!("`{t}` is not an upgrade protocol token"));
            } else {
                out.push(t);
            }
        }
        out
    }

    fn shadow_warnings(&mut self, table: &RouteTable) {
        for (j, later) in table.routes.iter().enumerate() {
            for earlier in &table.routes[..j] {
                let host_covers = match (&earlier.host, &later.host) {
                    (None, _) => true,
                    (Some(a), Some(b)) => a == b,
                    (Some(_), None) => false,
                };
                let methods_cover = match (&earlier.methods, &later.methods) {
                    (None, _) => true,
                    (Some(a), Some(b)) => b.iter().all(|m| a.contains(m)),
                    (Some(_), None) => false,
                };
                let by_case = earlier.path.differs_only_by_case(&later.path);
                if host_covers && methods_cover && earlier.path.covers(&later.path) {
                    let why = if by_case { " (the patterns differ only by letter case, and it matches case-insensitively)" } else { "" };
                    let msg = format!(
                        "route `{}` can never match: route #{} (`{}`, line {}) matches every request it would{why}",
                        later.name,
                        earlier.index + 1,
                        earlier.path.as_str(),
                        earlier.line
                    );
                    self.rep.warning_at_line(later.line, &format!("routes[{}]", later.index), msg);
                    break;
                }
                let folds = earlier.path.case() == PathCase::Insensitive || later.path.case() == PathCase::Insensitive;
                if by_case && folds {
                    let msg = format!(
                        "route `{}` (`{}`) differs from route #{} (`{}`, line {}) only by letter case: matched case-insensitively both name the same paths, and the earlier route wins wherever it matches",
                        later.name,
                        later.path.as_str(),
                        earlier.index + 1,
                        earlier.path.as_str(),
                        earlier.line
                    );
                    self.rep.warning_at_line(later.line, &format!("routes[{}]", later.index), msg);
                    break;
                }
            }
        }
    }
}

/// TOML claim values as JSON, for comparison with token claims.
fn toml_to_json(v: &toml::Value) -> Option<serde_json::Value> {
    Some(match v {
        toml::Value::String(s) => serde_json::Value::String(s.clone()),
        toml::Value::Integer(i) => serde_json::Value::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f).map(serde_json::Value::Number)?,
        toml::Value::Boolean(b) => serde_json::Value::Bool(*b),
        toml::Value::Array(a) => serde_json::Value::Array(a.iter().map(toml_to_json).collect::<Option<_>>()?),
        toml::Value::Table(t) => serde_json::Value::Object(t.iter().map(|(k, v)| Some((k.clone(), toml_to_json(v)?))).collect::<Option<_>>()?),
        toml::Value::Datetime(_) => return None,
    })
}

//! `authgear-gateway explain`: what the gateway would do with one request,
//! step by step, using the same functions as the request path. It never
//! prints a token's signature or a secret.

use std::fmt::Write as _;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::header::{HeaderValue, AUTHORIZATION, COOKIE, HOST};
use http::{Method, Request};
use serde_json::Value;

use super::explain_session::{explain_session, requirement_lines};
use crate::auth::jwks::KeyStore;
use crate::auth::jwt::{self, ClaimRules, CLAIM_CHECKS};
use crate::auth::Identity;
use crate::config::Config;
use crate::policy::path;
use crate::policy::routes::{self, AuthMethod, AuthMode, Mismatch, Route};
use crate::upstream::proxy::{self, ClientInfo};

/// Whether `explain` may contact the issuer to check signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keys {
    Fetch,
    Skip,
}

struct Out(String);

impl Out {
    fn line(&mut self, label: &str, value: impl std::fmt::Display) {
        let _ = writeln!(self.0, "{label:<15}{value}");
    }
    fn raw(&mut self, s: impl std::fmt::Display) {
        let _ = writeln!(self.0, "{s}");
    }
}

/// Explains `method url` (with an optional bearer `token`) under `cfg` at
/// Unix time `now`.
pub async fn explain(cfg: &Config, method: &str, url: &str, token: Option<&str>, keys: Keys, now: u64) -> Result<String, String> {
    explain_with(cfg, method, url, token, None, keys, now).await
}

/// [`explain`] with a `Cookie` header too: on a `method = "login"` route
/// the session cookie in it is opened and its identity shown.
pub async fn explain_with(cfg: &Config, method: &str, url: &str, token: Option<&str>, cookie: Option<&str>, keys: Keys, now: u64) -> Result<String, String> {
    let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).map_err(|_| format!("`{method}` is not an HTTP method"))?;
    let uri: http::Uri = url.parse().map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    let mut req = Request::builder().method(method.clone()).uri(uri.clone());
    if let Some(a) = uri.authority() {
        req = req.header(HOST, a.as_str());
    }
    if let Some(t) = token {
        req = req.header(AUTHORIZATION, format!("Bearer {t}"));
    }
    if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(c).ok()) {
        req = req.header(COOKIE, c);
    }
    let mut req = req.body(crate::error::full("")).map_err(|e| e.to_string())?;
    let mut o = Out(String::new());
    o.line("request", format!("{method} {url}"));
    let normalized = match path::normalize(uri.path()) {
        Ok(p) => p,
        Err(e) => {
            o.line("normalized", format!("refused: {e}"));
            o.line("verdict", "400 invalid_request");
            return Ok(o.0);
        }
    };
    o.line("normalized", normalized.forwarded());
    if normalized.params().is_some() {
        o.line("judged as", format!("{} (routes never see the last segment's ;parameters; the upstream does)", normalized.judged()));
    }
    if let Err(e) = cfg.routes.check_path(normalized.judged()) {
        o.line("refused", e);
        o.line("verdict", "400 invalid_request");
        return Ok(o.0);
    }
    let host = match crate::pipeline::screen::check_method(&method).and_then(|()| crate::pipeline::screen::canonical_host(&cfg.server, &mut req)) {
        Ok(()) => crate::pipeline::screen::judged_host(req.headers()).map(str::to_owned),
        Err(e) => {
            o.line("verdict", format!("{} {}: nothing reaches the upstream", e.status().as_u16(), e.reason()));
            return Ok(o.0);
        }
    };
    o.line("host", host.as_deref().unwrap_or("(none)"));
    o.raw("");
    o.raw("routes (first match wins)");
    let segs = routes::segments(normalized.judged());
    let mut matched: Option<&Route> = None;
    for r in &cfg.routes.routes {
        let verdict = match r.check(&method, host.as_deref(), &segs) {
            Ok(()) if matched.is_none() => "MATCH".to_owned(),
            Ok(()) => "(would match, but an earlier route won)".to_owned(),
            Err(Mismatch::Host) => format!("no: host is not {}", describe_host(r)),
            Err(Mismatch::Method) => format!("no: method is not one of {}", r.methods.iter().flatten().map(Method::as_str).collect::<Vec<_>>().join(", ")),
            Err(Mismatch::Path) => "no: path".to_owned(),
        };
        if verdict == "MATCH" {
            matched = Some(r);
        }
        o.raw(format!("  #{:<3}{:<24}{:<28}line {:<5}{verdict}", r.index + 1, format!("`{}`", r.name), r.path.as_str(), r.line));
    }
    o.raw("");
    let Some(route) = matched else {
        o.line("verdict", "404 not_found: no route matches; nothing reaches the upstream");
        return Ok(o.0);
    };
    describe_route(&mut o, cfg, route, req.uri(), &normalized);

    let mut identity = None;
    let verdict = match (route.auth, token) {
        (AuthMode::Public, _) => "forwarded without identity (public route; any token is ignored)".to_owned(),
        (_, t) if route.method.uses_resolver() && !(route.method == AuthMethod::JwtOrSession && t.is_some_and(crate::auth::looks_like_jwt)) => {
            "decided by Authgear's resolver (session mode; explain does not contact it)".to_owned()
        }
        (_, _) if route.method == AuthMethod::Login => {
            let s = explain_session(&mut o.0, cfg, route, cookie, now).await;
            identity = s.identity;
            s.verdict
        }
        (AuthMode::Optional, None) => "forwarded anonymously (optional route, no token)".to_owned(),
        (AuthMode::Required, None) => "401: a bearer token is required".to_owned(),
        (_, Some(t)) => {
            let (v, id) = explain_token(&mut o, cfg, route, t, keys, now).await;
            identity = id;
            v
        }
    };
    o.raw("");
    o.line("verdict", &verdict);
    if verdict.starts_with("forwarded") {
        let upstream = cfg.upstreams.get(route.upstream).ok_or("route names a missing upstream")?;
        // What `pass_access_token` would send; the session's own token
        // never enters explain's output, so a stand-in takes its place.
        let stand_in = identity.as_ref().map(|_| "session-access-token");
        crate::pipeline::login::set_authorization(route, stand_in, req.headers_mut());
        let (parts, body) = req.into_parts();
        let client = ClientInfo { addr: ([127, 0, 0, 1], 0).into(), proto: "http" };
        let up = proxy::rewrite_request(cfg, route, upstream, parts, body, &normalized, identity.as_ref(), client).map_err(|e| e.reason().to_owned())?;
        o.raw("");
        o.raw("the upstream would receive (as if the client were 127.0.0.1)");
        o.raw(format!("  {} {}", up.method(), up.uri().path_and_query().map_or("/", |p| p.as_str())));
        let mut names: Vec<_> = up.headers().keys().collect();
        names.sort_by_key(|n| n.as_str());
        names.dedup();
        for n in names {
            for v in up.headers().get_all(n) {
                o.raw(format!("  {}: {}", n, shown(n.as_str(), v)));
            }
        }
    }
    Ok(o.0)
}

fn describe_host(r: &Route) -> String {
    match &r.host {
        Some(routes::HostPattern::Exact(h)) => h.clone(),
        Some(routes::HostPattern::Suffix(s)) => format!("*{s}"),
        None => "(any)".into(),
    }
}

fn describe_route(o: &mut Out, cfg: &Config, route: &Route, uri: &http::Uri, normalized: &path::NormalPath) {
    o.line("matched route", format!("#{} `{}` (line {})", route.index + 1, route.name, route.line));
    o.line("  auth", route.auth.as_str());
    if route.path.case() == routes::PathCase::Insensitive {
        o.line("  path_case", "insensitive (ASCII letters match in either case)");
    }
    if route.method != AuthMethod::Jwt || route.login_redirect {
        o.line("  method", format!("{}{}", route.method.as_str(), if route.login_redirect { ", browsers redirected to log in" } else { "" }));
    }
    if !route.require.roles.is_empty() {
        o.line("  roles", format!("any of: {}", route.require.roles.join(", ")));
    }
    if !route.require.scopes.is_empty() {
        o.line("  scopes", format!("all of: {}", route.require.scopes.join(", ")));
    }
    for (c, v) in &route.require.claims {
        o.line("  claim", format!("{c} = {v}"));
    }
    if let Some(up) = cfg.upstreams.get(route.upstream) {
        let mut target = format!("{}://{}{}{}", up.scheme, up.authority, up.base_path, route.upstream_path(normalized));
        if let Some(q) = uri.query() {
            target.push('?');
            target.push_str(q);
        }
        o.line("upstream", format!("{} -> {target}", up.name));
    }
}

/// Decoded header and claims, each check's result, and the verdict.
async fn explain_token(o: &mut Out, cfg: &Config, route: &Route, token: &str, keys: Keys, now: u64) -> (String, Option<Identity>) {
    o.raw("");
    o.raw("token");
    let part = |i: usize| token.split('.').nth(i).and_then(|p| URL_SAFE_NO_PAD.decode(p).ok()).and_then(|b| serde_json::from_slice::<Value>(&b).ok());
    match part(0) {
        Some(h) => o.line("  header", h),
        None => o.line("  header", "(not decodable)"),
    }
    if let Some(c) = part(1) {
        let pretty = serde_json::to_string_pretty(&c).unwrap_or_default();
        o.raw("  claims");
        for l in pretty.lines() {
            o.raw(format!("    {l}"));
        }
    }
    o.raw("  checks");
    let parsed = match jwt::parse(token) {
        Ok(p) => p,
        Err(e) => {
            o.line("    format", format!("FAIL {}", e.describe()));
            return (format!("401 invalid_token: {}", e.describe()), None);
        }
    };
    o.line("    alg", format!("ok   {} is accepted", parsed.header.alg.name()));
    let iss = parsed.claims.get("iss").and_then(Value::as_str).unwrap_or_default().to_owned();
    let Some(idx) = cfg.issuer_index(&iss) else {
        o.line("    issuer", format!("FAIL `{iss}` is not a configured issuer"));
        return ("401 invalid_token: token issuer is not trusted".into(), None);
    };
    let settings = &cfg.issuers[idx];
    o.line("    issuer", format!("ok   {iss} is configured"));
    let mut failure: Option<String> = None;
    let mut unchecked = true;
    match keys {
        Keys::Skip => o.line("    signature", "not checked (--no-fetch)"),
        Keys::Fetch => match KeyStore::new(settings) {
            Err(e) => o.line("    signature", format!("not checked: {e}")),
            Ok(store) => match store.fetch_now().await {
                Err(e) => o.line("    signature", format!("not checked: the issuer's keys could not be fetched ({e})")),
                Ok(()) => {
                    let snap = store.snapshot();
                    match snap.map(|s| jwt::verify_signature(&parsed, &s.keys).map(|_| ())) {
                        Some(Ok(())) => {
                            unchecked = false;
                            o.line("    signature", format!("ok   verified with key `{}`", parsed.header.kid.as_deref().unwrap_or("(no kid)")));
                        }
                        Some(Err(e)) => {
                            o.line("    signature", format!("FAIL {}", e.describe()));
                            failure.get_or_insert(format!("401 invalid_token: {}", e.describe()));
                        }
                        None => o.line("    signature", "not checked: no keys"),
                    }
                }
            },
        },
    }
    let rules = ClaimRules {
        issuer: &settings.issuer,
        audiences: route.audiences.as_deref().unwrap_or(&settings.audiences),
        leeway: settings.leeway,
        token_types: &settings.token_types,
    };
    for (name, check) in CLAIM_CHECKS {
        match check(&parsed.view(), &rules, now) {
            Ok(()) => o.line(&format!("    {name}"), format!("ok{}", claim_note(name, &parsed.claims, &rules, now))),
            Err(e) => {
                o.line(&format!("    {name}"), format!("FAIL {}{}", e.describe(), claim_note(name, &parsed.claims, &rules, now)));
                failure.get_or_insert(format!("401 invalid_token: {}", e.describe()));
            }
        }
    }
    let claims = Arc::new(parsed.claims);
    if let Some(f) = requirement_lines(&mut o.0, route, &claims, &settings.roles_claim) {
        failure.get_or_insert(f);
    }
    match failure {
        Some(f) => (f, None),
        None if unchecked => {
            ("forwarded with identity, if the signature is valid (it was not checked)".into(), Some(Identity { claims, issuer: idx, rendered: None }))
        }
        None => ("forwarded with identity".into(), Some(Identity { claims, issuer: idx, rendered: None })),
    }
}

fn claim_note(name: &str, claims: &serde_json::Map<String, Value>, rules: &ClaimRules<'_>, now: u64) -> String {
    let secs = |c: &str| claims.get(c).and_then(Value::as_u64);
    match name {
        "aud" => format!("   token: {}, accepted: {}", claims.get("aud").map_or("none".into(), |v| v.to_string()), rules.audiences.join(", ")),
        "exp" => secs("exp").map_or(String::new(), |e| {
            if e > now {
                format!("   expires in {} s", e - now)
            } else {
                format!("   expired {} s ago (leeway {} s)", now - e, rules.leeway.as_secs())
            }
        }),
        "iss" => format!("   {}", rules.issuer),
        _ => String::new(),
    }
}

/// Header values as shown: credentials are never printed.
fn shown(name: &str, v: &HeaderValue) -> String {
    match name {
        "authorization" => "Bearer <the token, not shown>".into(),
        "cookie" | "proxy-authorization" => "<not shown>".into(),
        _ => String::from_utf8_lossy(v.as_bytes()).into_owned(),
    }
}

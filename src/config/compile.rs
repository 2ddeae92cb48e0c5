//! Raw config -> compiled [`Config`], reporting every problem found.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::compile_routes::RouteContext;
use super::diag::{check_unknown_keys, expand_env, Diagnostics, Reporter};
use super::raw::{RawAdmin, RawIssuer, RawLog, RawServer, RawSession, RawUpstream, SESSION_KEYS};
use super::settings::{Config, IssuerSettings, LogFormat, LogSettings, ServerSettings, TlsFiles, TokenCacheSettings, UpstreamProtocol, UpstreamSettings};
use super::values::{is_loopback_host, Compiler};
use crate::policy::headers::{HeaderMapping, IdentityStrip};
use crate::policy::routes::PathCase;

struct Sections<'i> {
    server: Option<Spanned<DeValue<'i>>>,
    admin: Option<Spanned<DeValue<'i>>>,
    forward_auth: Option<Spanned<DeValue<'i>>>,
    assertion: Option<Spanned<DeValue<'i>>>,
    upstream: Option<Spanned<DeValue<'i>>>,
    upstreams: Option<Spanned<DeValue<'i>>>,
    auth: Option<Spanned<DeValue<'i>>>,
    headers: Option<Spanned<DeValue<'i>>>,
    routes: Option<Spanned<DeValue<'i>>>,
    log: Option<Spanned<DeValue<'i>>>,
    login: Option<Spanned<DeValue<'i>>>,
}

pub(super) fn compile(text: &str, file: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, Diagnostics> {
    let mut rep = Reporter::new(file, text);
    let mut root = match DeTable::parse(text) {
        Ok(t) => t,
        Err(e) => {
            rep.toml_error(0..0, "", &e);
            return Err(rep.finish());
        }
    };
    check_unknown_keys(&mut rep, root.get_mut());
    expand_env(&mut rep, root.get_mut(), env);
    let mut tracing = None;
    let mut s = Sections {
        server: None,
        admin: None,
        forward_auth: None,
        assertion: None,
        upstream: None,
        upstreams: None,
        auth: None,
        headers: None,
        routes: None,
        log: None,
        login: None,
    };
    for (k, v) in root.into_inner() {
        match &**k.get_ref() {
            "server" => s.server = Some(v),
            "admin" => s.admin = Some(v),
            "forward_auth" => s.forward_auth = Some(v),
            "assertion" => s.assertion = Some(v),
            "upstream" => s.upstream = Some(v),
            "upstreams" => s.upstreams = Some(v),
            "auth" => s.auth = Some(v),
            "headers" => s.headers = Some(v),
            "routes" => s.routes = Some(v),
            "log" => s.log = Some(v),
            "tracing" => tracing = Some(v),
            "login" => s.login = Some(v),
            _ => {}
        }
    }
    let mut c = Compiler { rep };
    let cfg = c.build(s);
    let tracing = c.tracing(tracing, env);
    let diags = c.rep.finish();
    match cfg {
        Some(mut cfg) if !diags.has_errors() => {
            cfg.warnings = diags;
            cfg.tracing = tracing;
            Ok(cfg)
        }
        _ => Err(diags),
    }
}

impl Compiler<'_> {
    fn build(&mut self, s: Sections<'_>) -> Option<Config> {
        let server: RawServer = self.de(s.server, "server");
        let admin: RawAdmin = self.de(s.admin, "admin");
        let log: RawLog = self.de(s.log, "log");
        let server = self.server(&server)?;
        let admin_listen = self.addr(&admin.listen, "admin.listen", "127.0.0.1:9090");
        let forward_auth = self.forward_auth(s.forward_auth);
        let assertion = self.assertion(s.assertion).map(Arc::new);
        let log = self.log(&log);

        let mut upstream_names: Vec<String> = Vec::new();
        let mut upstreams = Vec::new();
        let default_upstream_span = s.upstream.as_ref().map(|v| v.span());
        // Routes may rely on [upstream] even when it has errors of its own;
        // those are reported once, at [upstream].
        let has_default = s.upstream.is_some();
        if let Some(v) = s.upstream {
            let raw: RawUpstream = self.de(Some(v), "upstream");
            if let Some(u) = self.upstream("default", &raw, "upstream", default_upstream_span.clone().unwrap_or(0..0)) {
                upstreams.push(Arc::new(u));
                upstream_names.push("default".into());
            }
        }
        if let Some(v) = s.upstreams {
            let span = v.span();
            let map: BTreeMap<String, Spanned<DeValue<'_>>> = match v.into_inner() {
                DeValue::Table(t) => t.into_iter().map(|(k, v)| (k.into_inner().into_owned(), v)).collect(),
                _ => {
                    self.rep.error(span, "upstreams", "must be a table of named upstreams ([upstreams.NAME])");
                    BTreeMap::new()
                }
            };
            for (name, v) in map {
                let key = format!("upstreams.{name}");
                let span = v.span();
                let raw: RawUpstream = self.de(Some(v), &key);
                if let Some(u) = self.upstream(&name, &raw, &key, span) {
                    upstreams.push(Arc::new(u));
                    upstream_names.push(name);
                }
            }
        }

        let (issuers, realm, raw_session, token_cache) = self.auth(s.auth);
        let (session, default_method) = self.session(&raw_session, &issuers);
        let login = self.browser_login(s.login, &issuers);
        let default_headers = match s.headers {
            None => Arc::new(HeaderMapping::authgear_default()),
            Some(v) => {
                let map: BTreeMap<Spanned<String>, Spanned<String>> = self.de(Some(v), "headers");
                Arc::new(self.mapping(&map, "headers"))
            }
        };
        let ctx = RouteContext {
            upstreams: &upstream_names,
            has_default,
            default_headers: &default_headers,
            issuers: &issuers,
            default_method,
            session: &session,
            login: login.as_deref(),
            default_case: server.path_case,
        };
        let routes = self.routes(s.routes, &ctx);
        // The Authgear names are always stripped too (they start with
        // `x-authgear-`), so listing the configured mappings is enough.
        let mut all_mappings: Vec<&HeaderMapping> = vec![&default_headers];
        for r in &routes.routes {
            all_mappings.push(&r.headers);
        }
        let mut strip = IdentityStrip::new(all_mappings);
        if let Some(a) = &assertion {
            // A client's own copy would pass for the gateway's.
            strip.add(a.header.as_str());
        }
        if server.allowed_hosts.is_none() && upstreams.iter().any(|u| u.preserve_host) && routes.routes.iter().any(|r| r.host.is_none()) {
            self.rep.warning(
                0..0,
                "server.allowed_hosts",
                "preserve_host sends the client's Host upstream, and no allowed_hosts (or route host) limits it: a client can ask a virtual-hosting upstream for any of its sites",
            );
        }
        Some(Config {
            server,
            admin_listen,
            forward_auth,
            assertion,
            upstreams,
            issuers,
            session,
            login,
            realm,
            token_cache,
            default_headers: default_headers.clone(),
            routes,
            strip,
            log,
            tracing: Default::default(),
            warnings: Diagnostics::default(),
        })
    }

    fn server(&mut self, r: &RawServer) -> Option<ServerSettings> {
        Some(ServerSettings {
            listen: self.addr(&r.listen, "server.listen", "0.0.0.0:8080").unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 8080))),
            trust_forwarded_headers: r.trust_forwarded_headers.unwrap_or(false),
            request_header_timeout: self.duration(&r.request_header_timeout, "server.request_header_timeout", Duration::from_secs(10)),
            idle_timeout: self.duration(&r.idle_timeout, "server.idle_timeout", Duration::from_secs(60)),
            max_connections: self.count(&r.max_connections, "server.max_connections", 10_000),
            listen_backlog: self.backlog(&r.listen_backlog),
            max_header_count: self.count(&r.max_header_count, "server.max_header_count", 100),
            max_uri_length: self.count(&r.max_uri_length, "server.max_uri_length", 8192),
            shutdown_drain: self.duration(&r.shutdown_drain, "server.shutdown_drain", Duration::from_secs(5)),
            shutdown_grace: self.duration(&r.shutdown_grace, "server.shutdown_grace", Duration::from_secs(30)),
            config_watch_interval: self.duration(&r.config_watch_interval, "server.config_watch_interval", Duration::from_secs(2)),
            max_header_bytes: self.count(&r.max_header_bytes, "server.max_header_bytes", 32 * 1024),
            tls: self.pair(&r.tls_cert, &r.tls_key, "server.tls_cert", "server.tls_key").map(|(cert, key)| TlsFiles { cert, key }),
            tls_reload_interval: self.duration(&r.tls_reload_interval, "server.tls_reload_interval", Duration::from_secs(10)),
            hsts: r.hsts.as_ref().and_then(|v| match crate::policy::hsts::parse(v.get_ref()) {
                Ok(h) => Some(h),
                Err(msg) => {
                    self.rep.error(v.span(), "server.hsts", msg);
                    None
                }
            }),
            workers: match &r.workers {
                None => crate::runtime::workers::default_count(),
                some => self.count(some, "server.workers", 1),
            },
            allowed_hosts: self.allowed_hosts(&r.allowed_hosts),
            path_case: self.path_case(&r.path_case, "server.path_case", PathCase::Sensitive),
        })
    }

    fn allowed_hosts(&mut self, v: &Option<Spanned<Vec<Spanned<String>>>>) -> Option<Vec<crate::policy::routes::HostPattern>> {
        let list = v.as_ref()?;
        if list.get_ref().is_empty() {
            self.rep.error_hint(list.span(), "server.allowed_hosts", "an empty list would refuse every request", "list the hosts, or leave the key out");
            return None;
        }
        let mut out = Vec::new();
        for h in list.get_ref() {
            match crate::policy::routes::HostPattern::parse(h.get_ref()) {
                Ok(p) => out.push(p),
                Err(msg) => self.rep.error(h.span(), "server.allowed_hosts", msg),
            }
        }
        Some(out)
    }

    fn log(&mut self, r: &RawLog) -> LogSettings {
        let format = match r.format.as_ref().map(|s| (s.get_ref().as_str(), s.span())) {
            None | Some(("pretty", _)) => LogFormat::Pretty,
            Some(("json", _)) => LogFormat::Json,
            Some((other, span)) => {
                self.rep.error_hint(span, "log.format", format!("unknown format `{other}`"), "use \"pretty\" or \"json\"");
                LogFormat::Pretty
            }
        };
        let level = r.level.as_ref().map_or_else(|| "info".to_owned(), |s| s.get_ref().clone());
        if !matches!(level.as_str(), "trace" | "debug" | "info" | "warn" | "error") {
            if let Some(s) = &r.level {
                self.rep.error_hint(s.span(), "log.level", format!("unknown level `{level}`"), "use trace, debug, info, warn or error");
            }
        }
        LogSettings { format, level, access: r.access.unwrap_or(true) }
    }

    fn upstream(&mut self, name: &str, r: &RawUpstream, key: &str, span: Range<usize>) -> Option<UpstreamSettings> {
        let Some(url) = &r.url else {
            self.rep.error(span, format!("{key}.url"), "missing: the upstream's URL, e.g. \"http://127.0.0.1:3000\"");
            return None;
        };
        let uk = format!("{key}.url");
        let uri: http::Uri = match url.get_ref().parse() {
            Ok(u) => u,
            Err(e) => {
                self.rep.error(url.span(), uk, format!("not a URL: {e}"));
                return None;
            }
        };
        let scheme = match uri.scheme_str() {
            Some("http") => http::uri::Scheme::HTTP,
            Some("https") => http::uri::Scheme::HTTPS,
            _ => {
                self.rep.error(url.span(), uk, "must start with http:// or https://");
                return None;
            }
        };
        let Some(authority) = uri.authority().cloned() else {
            self.rep.error(url.span(), uk, "has no host");
            return None;
        };
        if uri.query().is_some() {
            self.rep.error(url.span(), uk.clone(), "must not have a query string");
        }
        let base_path = uri.path().trim_end_matches('/').to_owned();
        let protocol = match r.protocol.as_ref().map(|p| (p.get_ref().as_str(), p.span())) {
            None | Some(("http1", _)) => UpstreamProtocol::Http1,
            Some(("h2", span)) => {
                if scheme != http::uri::Scheme::HTTPS {
                    self.rep.error_hint(span, format!("{key}.protocol"), "\"h2\" needs an https:// URL", "use \"h2c\" for HTTP/2 without TLS");
                }
                UpstreamProtocol::H2
            }
            Some(("h2c", span)) => {
                if scheme != http::uri::Scheme::HTTP {
                    self.rep.error_hint(
                        span,
                        format!("{key}.protocol"),
                        "\"h2c\" is HTTP/2 without TLS and needs an http:// URL",
                        "use \"h2\" for HTTP/2 over TLS",
                    );
                }
                UpstreamProtocol::H2c
            }
            Some((other, span)) => {
                self.rep.error_hint(span, format!("{key}.protocol"), format!("unknown protocol `{other}`"), "use \"http1\", \"h2\" or \"h2c\"");
                UpstreamProtocol::Http1
            }
        };
        let client_auth = self.pair(&r.client_cert, &r.client_key, &format!("{key}.client_cert"), &format!("{key}.client_key"));
        let insecure_skip_verify = r.insecure_skip_verify.as_ref().is_some_and(|v| *v.get_ref());
        if scheme == http::uri::Scheme::HTTP {
            let tls_keys = [(r.ca_file.as_ref().map(|s| s.span()), "ca_file"), (r.client_cert.as_ref().map(|s| s.span()), "client_cert")];
            for (span, k) in tls_keys {
                if let Some(span) = span {
                    self.rep.warning(span, format!("{key}.{k}"), "has no effect: the upstream URL is http://");
                }
            }
        }
        if let Some(v) = r.insecure_skip_verify.as_ref().filter(|v| *v.get_ref()) {
            self.rep.warning(v.span(), format!("{key}.insecure_skip_verify"), "the upstream's TLS certificate is NOT verified: for test setups only");
        }
        Some(UpstreamSettings {
            name: name.to_owned(),
            scheme,
            authority,
            base_path,
            connect_timeout: self.duration(&r.connect_timeout, &format!("{key}.connect_timeout"), Duration::from_secs(5)),
            timeout: self.duration(&r.timeout, &format!("{key}.timeout"), Duration::from_secs(60)),
            preserve_host: r.preserve_host.unwrap_or(true),
            pool_idle_timeout: self.duration(&r.pool_idle_timeout, &format!("{key}.pool_idle_timeout"), Duration::from_secs(90)),
            pool_max_idle: self.count(&r.pool_max_idle, &format!("{key}.pool_max_idle"), 256),
            protocol,
            ca_file: r.ca_file.as_ref().map(|s| s.get_ref().into()),
            client_auth,
            insecure_skip_verify,
        })
    }

    /// `[auth]`: the issuers, the realm, the session-mode keys (taken out
    /// of the table here, compiled by `session`) and the token cache.
    fn auth(&mut self, v: Option<Spanned<DeValue<'_>>>) -> (Vec<IssuerSettings>, String, RawSession, TokenCacheSettings) {
        let mut realm = "authgear-gateway".to_owned();
        let mut issuers = Vec::new();
        let mut cache = TokenCacheSettings::default();
        let Some(v) = v else { return (issuers, realm, RawSession::default(), cache) };
        let span = v.span();
        let DeValue::Table(mut t) = v.into_inner() else {
            self.rep.error(span.clone(), "auth", "must be a table");
            return (issuers, realm, RawSession::default(), cache);
        };
        let mut session_table = DeTable::new();
        for k in SESSION_KEYS {
            if let Some((key, value)) = t.remove_entry(*k) {
                session_table.insert(key, value);
            }
        }
        let raw_session: RawSession = self.de(Some(Spanned::new(span.clone(), DeValue::Table(session_table))), "auth");
        if let Some(n) = t.remove("token_cache_size") {
            let ns = n.span();
            match self.try_de::<i64>(Some(n), "auth.token_cache_size") {
                Some(n) if n >= 0 => cache.entries = usize::try_from(n).unwrap_or(usize::MAX),
                Some(_) => self.rep.error(ns, "auth.token_cache_size", "must be 0 (no cache) or a positive number of tokens"),
                None => {}
            }
        }
        if let Some(n) = t.remove("token_cache_memory_mb") {
            let ns = n.span();
            match self.try_de::<i64>(Some(n), "auth.token_cache_memory_mb") {
                Some(n) if (1..=65536).contains(&n) => cache.max_bytes = usize::try_from(n).unwrap_or(1) << 20,
                Some(_) => self.rep.error(ns, "auth.token_cache_memory_mb", "must be between 1 and 65536 (MiB)"),
                None => {}
            }
        }
        if let Some(r) = t.remove("realm") {
            let rs = r.span();
            match r.into_inner() {
                DeValue::String(s) if !s.contains(['"', '\\']) && !s.is_empty() => realm = s.into_owned(),
                _ => self.rep.error(rs, "auth.realm", "must be a non-empty string without quotes or backslashes"),
            }
        }
        let list = t.remove("issuers");
        if t.contains_key("issuer") || t.keys().next().is_some() {
            let raw: RawIssuer = self.de(Some(Spanned::new(span.clone(), DeValue::Table(t))), "auth");
            if let Some(i) = self.issuer(&raw, "auth", span.clone()) {
                issuers.push(i);
            }
        }
        if let Some(list) = list {
            let lspan = list.span();
            match list.into_inner() {
                DeValue::Array(items) => {
                    for (n, item) in items.iter().enumerate() {
                        let key = format!("auth.issuers[{n}]");
                        let ispan = item.span();
                        let raw: RawIssuer = self.de(Some(item.clone()), &key);
                        if let Some(i) = self.issuer(&raw, &key, ispan) {
                            issuers.push(i);
                        }
                    }
                }
                _ => self.rep.error(lspan, "auth.issuers", "must be an array of tables ([[auth.issuers]])"),
            }
        }
        let mut seen = std::collections::HashSet::new();
        for i in &issuers {
            if !seen.insert(i.issuer.clone()) {
                self.rep.error(span.clone(), "auth.issuers", format!("issuer `{}` is configured twice", i.issuer));
            }
        }
        (issuers, realm, raw_session, cache)
    }

    fn issuer(&mut self, r: &RawIssuer, key: &str, span: Range<usize>) -> Option<IssuerSettings> {
        let Some(iss) = &r.issuer else {
            self.rep.error(span, format!("{key}.issuer"), "missing: the issuer URL that tokens' `iss` must equal");
            return None;
        };
        let issuer = iss.get_ref().clone();
        let ik = format!("{key}.issuer");
        match issuer.parse::<http::Uri>() {
            Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some() => {
                if u.scheme_str() == Some("http") && !is_loopback_host(u.host().unwrap_or("")) {
                    self.rep.warning(iss.span(), ik.clone(), "plain http issuer: keys are fetched without TLS");
                }
            }
            _ => self.rep.error(iss.span(), ik.clone(), "must be an http(s) URL such as \"https://myapp.authgear.cloud\""),
        }
        if let Some(j) = &r.jwks_uri {
            if !j.get_ref().starts_with("http://") && !j.get_ref().starts_with("https://") {
                self.rep.error(j.span(), format!("{key}.jwks_uri"), "must be an http(s) URL");
            }
        }
        let audiences: Vec<String> = match &r.audiences {
            None => vec![issuer.clone()],
            Some(a) if a.get_ref().is_empty() => {
                self.rep.error(a.span(), format!("{key}.audiences"), "must hold at least one audience");
                vec![]
            }
            Some(a) => a.get_ref().iter().map(|s| s.get_ref().clone()).collect(),
        };
        let d = |c: &mut Self, v: &Option<Spanned<String>>, k: &str, def: u64| c.duration(v, &format!("{key}.{k}"), Duration::from_secs(def));
        let refresh_interval = d(self, &r.refresh_interval, "refresh_interval", 600);
        let min_refresh_interval = d(self, &r.min_refresh_interval, "min_refresh_interval", 60);
        let max_refresh_interval = d(self, &r.max_refresh_interval, "max_refresh_interval", 86_400);
        if min_refresh_interval > max_refresh_interval {
            if let Some(s) = &r.min_refresh_interval {
                self.rep.error(s.span(), format!("{key}.min_refresh_interval"), "is larger than max_refresh_interval");
            }
        }
        let max_key_age = r.max_key_age.as_ref().map(|s| self.duration(&Some(s.clone()), &format!("{key}.max_key_age"), Duration::ZERO));
        let token_types = match &r.token_types {
            None => vec!["at+jwt".into(), "application/at+jwt".into(), "jwt".into()],
            Some(t) => t.get_ref().iter().map(|s| s.get_ref().to_ascii_lowercase()).collect(),
        };
        Some(IssuerSettings {
            issuer,
            jwks_uri: r.jwks_uri.as_ref().map(|s| s.get_ref().clone()),
            audiences,
            leeway: d(self, &r.leeway, "leeway", 30),
            refresh_interval,
            min_refresh_interval,
            max_refresh_interval,
            unknown_kid_cooldown: d(self, &r.unknown_kid_cooldown, "unknown_kid_cooldown", 30),
            retry_initial: self.duration(&r.retry_initial, &format!("{key}.retry_initial"), Duration::from_secs(1)),
            retry_max: self.duration(&r.retry_max, &format!("{key}.retry_max"), Duration::from_secs(300)),
            max_key_age,
            fetch_timeout: d(self, &r.fetch_timeout, "fetch_timeout", 10),
            connect_timeout: d(self, &r.connect_timeout, "connect_timeout", 5),
            ca_file: r.ca_file.as_ref().map(|s| s.get_ref().into()),
            token_types,
            roles_claim: r.roles_claim.as_ref().map_or_else(|| crate::policy::headers::claims::ROLES.to_owned(), |s| s.get_ref().clone()),
        })
    }
}

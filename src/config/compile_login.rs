//! `[login]`: the gateway's own browser login (issue 16), compiled into
//! [`BrowserLoginSettings`]. The secret and the cookie keys are checked here
//! and never echoed in a diagnostic.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use toml::de::DeValue;
use toml::Spanned;

use super::raw::{RawLogin, RawRoute};
use super::settings::{BrowserLoginSettings, ClientAuth, CookieKey, IssuerSettings, RedisSettings, SessionStoreSettings};
use super::values::{is_loopback_host, Compiler};
use crate::policy::routes::AuthMethod;

/// Default name of the session cookie (before the `__Host-` prefix).
pub const DEFAULT_COOKIE_NAME: &str = "agw_session";

impl Compiler<'_> {
    /// `None` when the file has no `[login]` or it has errors (reported).
    pub(super) fn browser_login(&mut self, v: Option<Spanned<DeValue<'_>>>, issuers: &[IssuerSettings]) -> Option<Arc<BrowserLoginSettings>> {
        let v = v?;
        let span = v.span();
        let r: RawLogin = self.try_de(Some(v), "login")?;
        let mut ok = true;
        let public_origin = match &r.public_origin {
            None => {
                self.rep.error_hint(span.clone(), "login.public_origin", "missing", "the app's origin as browsers see it, e.g. \"https://app.example.com\"");
                None
            }
            Some(o) => {
                let origin = super::compile_session::origin_of(o.get_ref());
                if origin.is_none() {
                    self.rep.error_hint(o.span(), "login.public_origin", "must be an origin", "scheme and host (and port), no path");
                }
                origin
            }
        };
        let secure = public_origin.as_deref().is_some_and(|o| o.starts_with("https://"));
        if let (Some(o), false) = (&public_origin, secure) {
            let host = o.trim_start_matches("http://").rsplit_once(':').map_or(o.trim_start_matches("http://"), |(h, _)| h);
            let span = r.public_origin.as_ref().map_or(0..0, |p| p.span());
            let what = if is_loopback_host(host) { "plain http origin (loopback)" } else { "plain http origin on a non-loopback host" };
            self.rep.warning(
                span,
                "login.public_origin",
                format!("{what}: the session cookie is sent without Secure and without the __Host- prefix, readable by anyone on the network path"),
            );
        }
        let client_id = match &r.client_id {
            Some(c) if !c.get_ref().is_empty() => c.get_ref().clone(),
            Some(c) => {
                self.rep.error(c.span(), "login.client_id", "must not be empty");
                String::new()
            }
            None => {
                self.rep.error_hint(span.clone(), "login.client_id", "missing", "the OAuth client id of this app in Authgear's portal");
                String::new()
            }
        };
        let client_secret = match (&r.client_secret, &r.client_secret_file) {
            (Some(_), Some(f)) => {
                self.rep.error(f.span(), "login.client_secret_file", "set either client_secret or client_secret_file, not both");
                None
            }
            (Some(s), None) => Some(s.get_ref().clone()).filter(|s| !s.is_empty()),
            (None, Some(f)) => match std::fs::read_to_string(f.get_ref()) {
                Ok(t) => Some(t.trim().to_owned()).filter(|s| !s.is_empty()),
                Err(e) => {
                    self.rep.error(f.span(), "login.client_secret_file", format!("cannot read it: {e}"));
                    None
                }
            },
            (None, None) => None,
        };
        let client_auth = match (r.token_endpoint_auth.as_ref().map(|s| (s.get_ref().as_str(), s.span())), client_secret.is_some()) {
            (None, true) | (Some(("client_secret_basic", _)), true) => ClientAuth::SecretBasic,
            (Some(("client_secret_post", _)), true) => ClientAuth::SecretPost,
            (None, false) | (Some(("none", _)), _) => ClientAuth::None,
            (Some((m @ ("client_secret_basic" | "client_secret_post"), s)), false) => {
                self.rep.error_hint(s, "login.token_endpoint_auth", format!("`{m}` needs a client secret"), "set client_secret or client_secret_file");
                ClientAuth::None
            }
            (Some((other, s)), _) => {
                self.rep.error_hint(s, "login.token_endpoint_auth", format!("unknown method `{other}`"), "client_secret_basic, client_secret_post or none");
                ClientAuth::None
            }
        };
        let scopes: Vec<String> = match &r.scopes {
            None => vec!["openid".into(), "offline_access".into()],
            Some(l) => {
                let v: Vec<String> = l.get_ref().iter().map(|s| s.get_ref().clone()).collect();
                if !v.iter().any(|s| s == "openid") {
                    self.rep.error(l.span(), "login.scopes", "must include `openid` (the login needs an ID token)");
                }
                if v.iter().any(|s| s.is_empty() || s.bytes().any(|b| !(0x21..=0x7e).contains(&b) || b == b'"' || b == b'\\')) {
                    self.rep.error(l.span(), "login.scopes", "a scope is empty or has a space or a quote");
                }
                v
            }
        };
        let redirect_path = self.own_path(&r.redirect_path, "login.redirect_path", "/_gateway/callback");
        let logout_path = self.own_path(&r.logout_path, "login.logout_path", "/_gateway/logout");
        if redirect_path == logout_path {
            self.rep.error(span.clone(), "login.logout_path", "must differ from redirect_path");
        }
        let store = self.session_store(&r, span.clone());
        let backchannel_logout_path = self.own_path(&r.backchannel_logout_path, "login.backchannel_logout_path", "/_gateway/backchannel-logout");
        if backchannel_logout_path == redirect_path || backchannel_logout_path == logout_path {
            self.rep.error(span.clone(), "login.backchannel_logout_path", "must differ from redirect_path and logout_path");
        }
        if let (Some(p), SessionStoreSettings::Cookie) = (&r.backchannel_logout_path, &store) {
            self.rep.error_hint(p.span(), "login.backchannel_logout_path", "back-channel logout needs the Redis store", "set store = \"redis\"");
        }
        let base_name = match &r.cookie_name {
            None => DEFAULT_COOKIE_NAME.to_owned(),
            Some(n) => {
                let good = !n.get_ref().is_empty() && n.get_ref().len() <= 64 && n.get_ref().bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                if !good || n.get_ref().starts_with("__") {
                    self.rep.error_hint(n.span(), "login.cookie_name", "must be 1 to 64 letters, digits or `_`", "the __Host- prefix is added by the gateway");
                }
                n.get_ref().clone()
            }
        };
        let cookie_name = if secure { format!("__Host-{base_name}") } else { base_name };
        let cookie_keys = self.cookie_keys(&r, span.clone());
        if cookie_keys.is_empty() {
            ok = false;
        }
        let session_lifetime = self.duration(&r.session_lifetime, "login.session_lifetime", Duration::from_secs(12 * 3600));
        let refresh_margin = self.duration(&r.refresh_margin, "login.refresh_margin", Duration::from_secs(60));
        let max_login_flows = self.count(&r.max_login_flows, "login.max_login_flows", 5).min(20);
        let idle_timeout = self.duration(&r.idle_timeout, "login.idle_timeout", Duration::ZERO);
        if let Some(v) = r.idle_timeout.as_ref().filter(|_| !idle_timeout.is_zero() && idle_timeout < Duration::from_secs(1)) {
            self.rep.error(v.span(), "login.idle_timeout", "must be at least 1s (or 0s for off)");
        }
        // Reads served from the local copy do not slide the key's idle time
        // to live, so the copy must live well inside the idle timeout.
        if let (SessionStoreSettings::Redis(rs), Some(v)) = (&store, r.redis_cache_ttl.as_ref().or(r.idle_timeout.as_ref())) {
            if !idle_timeout.is_zero() && rs.cache_ttl.saturating_mul(2) > idle_timeout {
                self.rep.error_hint(v.span(), "login.redis_cache_ttl", "must be at most half of idle_timeout (default 2s)", "lower it, or set 0s");
            }
        }
        let mut post_logout_redirect_uris = Vec::new();
        for u in r.post_logout_redirect_uris.iter().flat_map(|l| l.get_ref()) {
            let text = u.get_ref();
            let fine =
                text.parse::<http::Uri>().is_ok_and(|p| matches!(p.scheme_str(), Some("http" | "https")) && p.authority().is_some()) && !text.contains('#');
            if fine {
                post_logout_redirect_uris.push(text.clone());
            } else {
                self.rep.error(u.span(), "login.post_logout_redirect_uris", format!("`{text}` is not an absolute http(s) URL without a fragment"));
            }
        }
        if issuers.is_empty() {
            self.rep.error_hint(span, "login", "the login needs an issuer", "add [auth] issuer = \"https://<your project>.authgear.cloud\"");
            ok = false;
        }
        let public_origin = public_origin?;
        (ok && !client_id.is_empty()).then(|| {
            Arc::new(BrowserLoginSettings {
                public_origin,
                issuer: 0,
                client_id,
                client_secret,
                client_auth,
                scopes,
                redirect_path,
                logout_path,
                cookie_name,
                secure,
                cookie_keys,
                session_lifetime,
                refresh_margin,
                max_login_flows,
                post_logout_redirect_uris,
                store,
                idle_timeout,
                backchannel_logout_path,
            })
        })
    }

    /// `store`, and for `"redis"` its URL (inline, `${ENV}` included, or
    /// from a file; never echoed), timeout and key prefix.
    fn session_store(&mut self, r: &RawLogin, span: std::ops::Range<usize>) -> SessionStoreSettings {
        let redis_keys = [&r.redis_url, &r.redis_url_file, &r.redis_timeout, &r.redis_key_prefix, &r.redis_cache_ttl];
        match r.store.as_ref().map(|s| (s.get_ref().as_str(), s.span())) {
            None | Some(("cookie", _)) => {
                if let Some(k) = redis_keys.iter().find_map(|k| k.as_ref()) {
                    self.rep.error_hint(k.span(), "login.redis_url", "Redis keys are set but the store is the cookie", "set store = \"redis\" or remove them");
                }
                SessionStoreSettings::Cookie
            }
            Some(("redis", s)) => {
                let key = "login.redis_url";
                let url = match (&r.redis_url, &r.redis_url_file) {
                    (Some(u), None) => Some(u.get_ref().trim().to_owned()),
                    (None, Some(f)) => match std::fs::read_to_string(f.get_ref()) {
                        Ok(t) => Some(t.trim().to_owned()),
                        Err(e) => {
                            self.rep.error(f.span(), "login.redis_url_file", format!("cannot read it: {e}"));
                            None
                        }
                    },
                    (None, None) => {
                        self.rep.error_hint(s, key, "store = \"redis\" needs a Redis URL", "set redis_url (\"${REDIS_URL}\" works) or redis_url_file");
                        None
                    }
                    (Some(_), Some(_)) => {
                        self.rep.error(span, key, "set either redis_url or redis_url_file, not both");
                        None
                    }
                };
                let url = url.filter(|u| {
                    // The URL may carry a password: the message never quotes it.
                    let fine = (u.starts_with("redis://") || u.starts_with("rediss://") || u.starts_with("unix://")) && redis::Client::open(u.as_str()).is_ok();
                    if !fine {
                        let at = r.redis_url.as_ref().or(r.redis_url_file.as_ref()).map_or(0..0, |v| v.span());
                        self.rep.error_hint(at, key, "not a usable Redis URL", "redis://[:password@]host[:port][/db] or rediss://...");
                    }
                    fine
                });
                let timeout = self.duration(&r.redis_timeout, "login.redis_timeout", Duration::from_millis(500));
                if timeout.is_zero() {
                    self.rep.error(r.redis_timeout.as_ref().map_or(0..0, |v| v.span()), "login.redis_timeout", "must be more than 0s");
                }
                let key_prefix = match &r.redis_key_prefix {
                    None => "agw:".to_owned(),
                    Some(p) => {
                        if p.get_ref().len() > 64 || p.get_ref().bytes().any(|b| !(0x21..=0x7e).contains(&b)) {
                            self.rep.error(p.span(), "login.redis_key_prefix", "must be at most 64 printable characters without spaces");
                        }
                        p.get_ref().clone()
                    }
                };
                let cache_ttl = self.duration(&r.redis_cache_ttl, "login.redis_cache_ttl", Duration::from_secs(2));
                if cache_ttl > Duration::from_secs(60) {
                    let at = r.redis_cache_ttl.as_ref().map_or(0..0, |v| v.span());
                    self.rep.error_hint(at, "login.redis_cache_ttl", "must be at most 60s", "it is how long a logout elsewhere may be ignored here");
                }
                match url {
                    Some(url) => SessionStoreSettings::Redis(RedisSettings { url, timeout, key_prefix, cache_ttl }),
                    None => SessionStoreSettings::Cookie,
                }
            }
            Some((other, s)) => {
                self.rep.error_hint(s, "login.store", format!("unknown store `{other}`"), "\"cookie\" or \"redis\"");
                SessionStoreSettings::Cookie
            }
        }
    }

    /// A path the gateway answers itself: absolute, plain ASCII, no dot
    /// segment, no query.
    fn own_path(&mut self, v: &Option<Spanned<String>>, key: &str, default: &str) -> String {
        let Some(p) = v else { return default.to_owned() };
        let t = p.get_ref();
        let good = t.starts_with('/')
            && !t.starts_with("//")
            && t.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b'~'))
            && !t.split('/').any(|seg| seg == "." || seg == "..");
        if !good {
            self.rep.error_hint(p.span(), key, format!("`{t}` is not a plain path"), "e.g. \"/_gateway/callback\"");
        }
        t.clone()
    }

    /// `cookie_keys = ["<id>:<32 bytes, base64>", ...]`: never echoed.
    fn cookie_keys(&mut self, r: &RawLogin, span: std::ops::Range<usize>) -> Vec<CookieKey> {
        let key = "login.cookie_keys";
        let Some(list) = &r.cookie_keys else {
            self.rep.error_hint(span, key, "missing", "one or more \"<id>:<32 random bytes, base64>\", e.g. from `openssl rand -base64 32`");
            return Vec::new();
        };
        let mut out: Vec<CookieKey> = Vec::new();
        for k in list.get_ref() {
            let Some((id, material)) = k.get_ref().split_once(':') else {
                self.rep.error_hint(k.span(), key, "an entry has no key id", "write \"<id>:<base64 key>\"");
                continue;
            };
            if id.is_empty() || id.len() > 16 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
                self.rep.error(k.span(), key, "a key id must be 1 to 16 letters, digits, `-` or `_`");
                continue;
            }
            let bytes = STANDARD.decode(material.trim()).or_else(|_| URL_SAFE_NO_PAD.decode(material.trim().trim_end_matches('=')));
            let Some(bytes) = bytes.ok().and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok()) else {
                self.rep.error_hint(k.span(), key, format!("key `{id}` is not 32 bytes of base64"), "generate one with `openssl rand -base64 32`");
                continue;
            };
            if out.iter().any(|c| c.id == id) {
                self.rep.error(k.span(), key, format!("key id `{id}` appears twice"));
                continue;
            }
            out.push(CookieKey { id: id.to_owned(), key: bytes });
        }
        if list.get_ref().is_empty() {
            self.rep.error(list.span(), key, "must hold at least one key");
        }
        out
    }

    /// `pass_access_token` on a route: only meaningful with `method = "login"`.
    pub(super) fn pass_access_token(&mut self, r: &RawRoute, method: AuthMethod, key: &str) -> bool {
        let Some(v) = &r.pass_access_token else { return false };
        if *v.get_ref() && method != AuthMethod::Login {
            self.rep.error(v.span(), format!("{key}.pass_access_token"), "only routes with method = \"login\" hold an access token to pass");
        }
        *v.get_ref()
    }
}

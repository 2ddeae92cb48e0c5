//! `[forward_auth]`: the decision endpoint's listener, the proxies it
//! believes and the flavour of its callers.

use toml::de::DeValue;
use toml::Spanned;

use super::raw::RawForwardAuth;
use super::settings::{under, Flavour, FlavourPrefix, ForwardAuthSettings};

const FLAVOURS: &str =
    "one of \"nginx\" (nginx auth_request, ingress-nginx), \"traefik\", \"caddy\" \"envoy\" (ext_authz HTTP mode) or \"envoy_grpc\" (ext_authz gRPC Check)";
use super::values::Compiler;

impl Compiler<'_> {
    /// `None` when the section is absent or wrong (every problem reported).
    pub(super) fn forward_auth(&mut self, v: Option<Spanned<DeValue<'_>>>) -> Option<ForwardAuthSettings> {
        let span = v.as_ref()?.span();
        let raw: RawForwardAuth = self.try_de(v, "forward_auth")?;
        let listen = match &raw.listen {
            Some(_) => self.addr(&raw.listen, "forward_auth.listen", ""),
            None => {
                self.rep.error_hint(
                    span.clone(),
                    "forward_auth.listen",
                    "the decision endpoint needs its own listener",
                    "an address the ingress reaches inside the cluster, never the public one, e.g. \"10.0.0.5:9091\"",
                );
                None
            }
        };
        let trusted_proxies = self.trusted_proxies(&raw, span.clone());
        let flavour = match &raw.flavour {
            None => {
                self.rep.error_hint(
                    span,
                    "forward_auth.flavour",
                    "the flavour of the calling ingress is required (it is never guessed from the headers)",
                    FLAVOURS,
                );
                None
            }
            Some(f) => self.flavour(f, "forward_auth.flavour"),
        };
        let path_prefix = self.path_prefix(&raw, flavour)?;
        let prefixes = self.prefixes(&raw, flavour, &path_prefix)?;
        Some(ForwardAuthSettings { listen: listen?, trusted_proxies: trusted_proxies?, flavour: flavour?, path_prefix, prefixes })
    }

    fn flavour(&mut self, f: &Spanned<String>, key: &str) -> Option<Flavour> {
        match f.get_ref().as_str() {
            "nginx" => Some(Flavour::Nginx),
            // Caddy's forward_auth sends Traefik's headers.
            "traefik" | "caddy" => Some(Flavour::Traefik),
            "envoy" => Some(Flavour::Envoy),
            "envoy_grpc" => Some(Flavour::EnvoyGrpc),
            other => {
                self.rep.error_hint(f.span(), key, format!("`{other}` is not a known flavour"), FLAVOURS);
                None
            }
        }
    }

    /// `[[forward_auth.prefixes]]`; `None` on an error. A decision path
    /// must never be read by two flavours, so prefixes may not overlap
    /// each other or the default's `path_prefix`; and a default Envoy
    /// flavour without `path_prefix` would put the client's own path
    /// where a prefix could match it.
    fn prefixes(&mut self, raw: &RawForwardAuth, default: Option<Flavour>, path_prefix: &str) -> Option<Vec<FlavourPrefix>> {
        let Some(list) = &raw.prefixes else { return Some(Vec::new()) };
        let mut out: Vec<(FlavourPrefix, usize)> = Vec::new();
        let mut ok = true;
        for (i, item) in list.iter().enumerate() {
            let key = format!("forward_auth.prefixes[{i}]");
            let span = item.span();
            let p = item.get_ref();
            let Some(path) = &p.path else {
                self.rep.error_hint(span.clone(), format!("{key}.path"), "each prefix needs its path", "e.g. path = \"/envoy\"");
                ok = false;
                continue;
            };
            let Some(f) = &p.flavour else {
                self.rep.error_hint(span, format!("{key}.flavour"), "each prefix needs its flavour", FLAVOURS);
                ok = false;
                continue;
            };
            let line = self.rep.line_of(path.span().start);
            let (Some(text), Some(flavour)) = (self.plain_prefix(path, &format!("{key}.path")), self.flavour(f, &format!("{key}.flavour"))) else {
                ok = false;
                continue;
            };
            if text.is_empty() {
                self.rep.error_hint(path.span(), format!("{key}.path"), "`/` would take every decision path", "set the listener's flavour instead");
                ok = false;
                continue;
            }
            if let Some((other, other_line)) = out.iter().find(|(o, _)| under(&text, &o.path) || under(&o.path, &text)) {
                self.rep.error_hint(
                    path.span(),
                    format!("{key}.path"),
                    format!("`{text}` overlaps `{}` (line {other_line}): a decision path would have two flavours", other.path),
                    "give each flavour its own prefix, none inside another",
                );
                ok = false;
                continue;
            }
            if !path_prefix.is_empty() && (under(&text, path_prefix) || under(path_prefix, &text)) {
                self.rep.error_hint(
                    path.span(),
                    format!("{key}.path"),
                    format!("`{text}` overlaps forward_auth.path_prefix `{path_prefix}`"),
                    "use prefixes that do not nest",
                );
                ok = false;
                continue;
            }
            out.push((FlavourPrefix { path: text, flavour }, line));
        }
        if default == Some(Flavour::Envoy) && path_prefix.is_empty() && !list.is_empty() {
            let span = list[0].span();
            self.rep.error_hint(
                span,
                "forward_auth.path_prefix",
                "with prefixes, a default envoy flavour needs its own path_prefix",
                "Envoy puts the client's path in the check path: without a prefix of its own, a client path under another prefix would pick that flavour",
            );
            ok = false;
        }
        ok.then(|| out.into_iter().map(|(p, _)| p).collect())
    }

    /// `path_prefix`: only for the Envoy flavour (the others carry the
    /// original path in a header); `None` on an error.
    fn path_prefix(&mut self, raw: &RawForwardAuth, flavour: Option<Flavour>) -> Option<String> {
        let key = "forward_auth.path_prefix";
        let Some(p) = &raw.path_prefix else { return Some(String::new()) };
        if flavour.is_some_and(|f| f != Flavour::Envoy) {
            self.rep.error_hint(p.span(), key, "only the envoy flavour puts the original path after a prefix", "remove the key");
            return None;
        }
        self.plain_prefix(p, key)
    }

    /// A plain path prefix (`/a/b`, trailing `/` dropped; empty for `/`).
    fn plain_prefix(&mut self, p: &Spanned<String>, key: &str) -> Option<String> {
        let raw = p.get_ref();
        let text = raw.trim_end_matches('/');
        let plain = text.bytes().all(|b| b.is_ascii_alphanumeric() || b"/-._~".contains(&b));
        if !(raw.is_empty() || raw.starts_with('/')) || !plain || text.contains("//") || text.split('/').any(|s| s == "." || s == "..") {
            self.rep.error_hint(p.span(), key, format!("`{raw}` is not a plain path prefix"), "a path such as \"/agw-check\", as in Envoy's path_prefix");
            return None;
        }
        Some(text.to_owned())
    }

    fn trusted_proxies(&mut self, raw: &RawForwardAuth, span: std::ops::Range<usize>) -> Option<Vec<ipnet::IpNet>> {
        let key = "forward_auth.trusted_proxies";
        let hint = "list the ingress's addresses as CIDRs, e.g. [\"10.0.0.0/8\"]; a request from any other address is refused";
        let Some(list) = &raw.trusted_proxies else {
            self.rep.error_hint(span, key, "required: the endpoint believes the original-request headers only from these addresses", hint);
            return None;
        };
        if list.get_ref().is_empty() {
            self.rep.error_hint(list.span(), key, "an empty list would refuse every request", hint);
            return None;
        }
        let mut out = Vec::new();
        let mut ok = true;
        for item in list.get_ref() {
            let text = item.get_ref().trim();
            // A bare address is a one-address network.
            let parsed = text.parse::<ipnet::IpNet>().or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
            match parsed {
                Ok(n) if n.prefix_len() == 0 => {
                    self.rep.error_hint(item.span(), key, format!("`{text}` trusts every address"), hint);
                    ok = false;
                }
                Ok(n) => out.push(n.trunc()),
                Err(_) => {
                    self.rep.error_hint(item.span(), key, format!("`{text}` is not a CIDR or an IP address"), hint);
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }
}

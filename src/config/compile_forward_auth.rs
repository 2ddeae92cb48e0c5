//! `[forward_auth]`: the decision endpoint's listener, the proxies it
//! believes and the flavour of its callers.

use toml::de::DeValue;
use toml::Spanned;

use super::raw::RawForwardAuth;
use super::settings::{Flavour, ForwardAuthSettings};
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
                    "one of \"nginx\" (nginx auth_request, ingress-nginx), \"traefik\", \"caddy\" or \"envoy\" (ext_authz HTTP mode)",
                );
                None
            }
            Some(f) => match f.get_ref().as_str() {
                "nginx" => Some(Flavour::Nginx),
                // Caddy's forward_auth sends Traefik's headers.
                "traefik" | "caddy" => Some(Flavour::Traefik),
                "envoy" => Some(Flavour::Envoy),
                other => {
                    self.rep.error_hint(
                        f.span(),
                        "forward_auth.flavour",
                        format!("`{other}` is not a known flavour"),
                        "one of \"nginx\", \"traefik\", \"caddy\"",
                    );
                    None
                }
            },
        };
        let path_prefix = self.path_prefix(&raw, flavour)?;
        Some(ForwardAuthSettings { listen: listen?, trusted_proxies: trusted_proxies?, flavour: flavour?, path_prefix })
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
        let text = p.get_ref().trim_end_matches('/');
        let plain = text.bytes().all(|b| b.is_ascii_alphanumeric() || b"/-._~".contains(&b));
        if !(text.is_empty() || text.starts_with('/')) || !plain || text.contains("//") || text.split('/').any(|s| s == "." || s == "..") {
            self.rep.error_hint(
                p.span(),
                key,
                format!("`{}` is not a plain path prefix", p.get_ref()),
                "a path such as \"/agw-check\", as in Envoy's path_prefix",
            );
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

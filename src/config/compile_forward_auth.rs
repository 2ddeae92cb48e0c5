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
                    "one of \"nginx\" (nginx auth_request, ingress-nginx), \"traefik\" or \"caddy\"",
                );
                None
            }
            Some(f) => match f.get_ref().as_str() {
                "nginx" => Some(Flavour::Nginx),
                // Caddy's forward_auth sends Traefik's headers.
                "traefik" | "caddy" => Some(Flavour::Traefik),
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
        Some(ForwardAuthSettings { listen: listen?, trusted_proxies: trusted_proxies?, flavour: flavour? })
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

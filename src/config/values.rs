//! The config compiler's state (the diagnostics reporter) and its readers
//! of single values: typed sections, durations, counts, sizes, addresses.
//! The sections are compiled by `compile`, `compile_routes` and
//! `compile_session`, each adding its own `impl Compiler` block.

use std::net::SocketAddr;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::de::IntoDeserializer;
use toml::de::DeValue;
use toml::Spanned;

use super::diag::Reporter;
use super::raw::RawSize;
use super::settings::{parse_duration, parse_size};

pub(super) struct Compiler<'a> {
    pub(super) rep: Reporter<'a>,
}

impl Compiler<'_> {
    pub(super) fn de<T: DeserializeOwned + Default>(&mut self, v: Option<Spanned<DeValue<'_>>>, key: &str) -> T {
        self.try_de(v, key).unwrap_or_default()
    }

    /// `None` when the value is absent or has a type error (already reported).
    pub(super) fn try_de<T: DeserializeOwned>(&mut self, v: Option<Spanned<DeValue<'_>>>, key: &str) -> Option<T> {
        let v = v?;
        let span = v.span();
        match T::deserialize(v.into_deserializer()) {
            Ok(t) => Some(t),
            Err(e) => {
                self.rep.toml_error(span, key, &e);
                None
            }
        }
    }

    pub(super) fn duration(&mut self, v: &Option<Spanned<String>>, key: &str, default: Duration) -> Duration {
        match v {
            None => default,
            Some(s) => match parse_duration(s.get_ref()) {
                Ok(d) => d,
                Err(msg) => {
                    self.rep.error(s.span(), key, msg);
                    default
                }
            },
        }
    }

    pub(super) fn count(&mut self, v: &Option<Spanned<i64>>, key: &str, default: usize) -> usize {
        match v {
            None => default,
            Some(n) if *n.get_ref() > 0 => usize::try_from(*n.get_ref()).unwrap_or(usize::MAX),
            Some(n) => {
                self.rep.error(n.span(), key, "must be a positive number");
                default
            }
        }
    }

    /// `server.listen_backlog`: what `listen(2)` takes, 1 to 65535.
    pub(super) fn backlog(&mut self, v: &Option<Spanned<i64>>) -> u32 {
        match v {
            None => crate::runtime::net::DEFAULT_BACKLOG,
            Some(n) => match u32::try_from(*n.get_ref()) {
                Ok(b @ 1..=65535) => b,
                _ => {
                    self.rep.error(n.span(), "server.listen_backlog", "must be between 1 and 65535");
                    crate::runtime::net::DEFAULT_BACKLOG
                }
            },
        }
    }

    /// A byte size (number of bytes or "10MB"); `None` when absent or wrong.
    pub(super) fn size(&mut self, v: &Option<Spanned<RawSize>>, key: &str) -> Option<u64> {
        let v = v.as_ref()?;
        let parsed = match v.get_ref() {
            RawSize::Bytes(n) if *n > 0 => Ok(*n as u64),
            RawSize::Bytes(_) => Err("must be a positive number of bytes".to_owned()),
            RawSize::Text(t) => parse_size(t).and_then(|n| if n == 0 { Err("must be larger than 0".into()) } else { Ok(n) }),
        };
        match parsed {
            Ok(n) => Some(n),
            Err(msg) => {
                self.rep.error_hint(v.span(), key, msg, "e.g. 10485760 or \"10MB\"");
                None
            }
        }
    }

    /// Two keys that only make sense together (cert and key files).
    pub(super) fn pair(
        &mut self,
        a: &Option<Spanned<String>>,
        b: &Option<Spanned<String>>,
        key_a: &str,
        key_b: &str,
    ) -> Option<(std::path::PathBuf, std::path::PathBuf)> {
        match (a, b) {
            (Some(a), Some(b)) => Some((a.get_ref().into(), b.get_ref().into())),
            (None, None) => None,
            (Some(a), None) => {
                self.rep.error(a.span(), key_b, format!("missing: `{key_a}` needs `{key_b}` too"));
                None
            }
            (None, Some(b)) => {
                self.rep.error(b.span(), key_a, format!("missing: `{key_b}` needs `{key_a}` too"));
                None
            }
        }
    }

    pub(super) fn addr(&mut self, v: &Option<Spanned<String>>, key: &str, default: &str) -> Option<SocketAddr> {
        let (text, span) = match v {
            Some(s) => (s.get_ref().as_str(), s.span()),
            None => (default, 0..0),
        };
        match text.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.rep.error_hint(span, key, format!("`{text}` is not a socket address"), "write it as IP:PORT, e.g. \"0.0.0.0:8080\"");
                None
            }
        }
    }
}

pub(super) fn is_loopback_host(h: &str) -> bool {
    h == "localhost" || h.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()) || h == "[::1]"
}

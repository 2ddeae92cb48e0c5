//! The `server.hsts` value: a `Strict-Transport-Security` header (RFC 6797)
//! checked when the config loads, so a typo is an error with its line and
//! not a header browsers silently ignore.

use http::HeaderValue;

/// Checks `v` (`max-age=N`, optionally `includeSubDomains` and `preload`)
/// and returns it as a header value.
pub fn parse(v: &str) -> Result<HeaderValue, String> {
    let mut max_age = None;
    let mut seen = Vec::new();
    for d in v.split(';').map(str::trim) {
        let name = d.split('=').next().unwrap_or_default().trim().to_ascii_lowercase();
        if seen.contains(&name) {
            return Err(format!("`{name}` appears twice"));
        }
        match name.as_str() {
            "max-age" => {
                let n = d.split_once('=').map(|(_, n)| n.trim().trim_matches('"')).unwrap_or_default();
                max_age = Some(n.parse::<u64>().map_err(|_| format!("max-age must be a number of seconds, not `{n}`"))?);
            }
            "includesubdomains" | "preload" if !d.contains('=') => {}
            "" => return Err("an empty directive (a stray `;`)".into()),
            _ => return Err(format!("unknown directive `{d}` (expected max-age=N, includeSubDomains, preload)")),
        }
        seen.push(name);
    }
    if max_age.is_none() {
        return Err("max-age=N is required, for example \"max-age=31536000\"".into());
    }
    HeaderValue::from_str(v.trim()).map_err(|_| "not a valid header value".to_string())
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn accepts_the_usual_forms() {
        for v in ["max-age=31536000", "max-age=0", "max-age=63072000; includeSubDomains; preload", "max-age=\"10\""] {
            assert!(parse(v).is_ok(), "{v}");
        }
    }

    #[test]
    fn refuses_typos() {
        for v in ["", "max-age", "max-age=1y", "includeSubDomains", "max-age=1; max-age=2", "max-age=1;", "max-age=1; preloaded", "max-age=1; preload=yes"] {
            assert!(parse(v).is_err(), "{v}");
        }
    }
}

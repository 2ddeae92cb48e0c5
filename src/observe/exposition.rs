//! The two exposition formats `/metrics` speaks, and which one a scraper
//! asked for in its `Accept` header.
//!
//! The classic Prometheus text format is the default: it is what `curl`,
//! old scrapers and `promtool check metrics` read. OpenMetrics 1.0.0 is
//! served only to a scraper that lists it (Prometheus does, with a higher
//! weight than the classic format).

/// An exposition format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4.
    Classic,
    /// OpenMetrics text 1.0.0.
    OpenMetrics,
}

impl Format {
    /// The `Content-Type` of a body in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Classic => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// The format to answer with: OpenMetrics when `accept` lists it (with
    /// no version or 1.0.0) at a weight above zero and not below the
    /// classic format's; the classic format otherwise, including when the
    /// header is absent or unreadable.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else { return Format::Classic };
        let (mut open, mut classic) = (0.0_f32, 0.0_f32);
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default().to_ascii_lowercase();
            let (mut q, mut version) = (1.0_f32, None);
            for p in parts {
                let Some((k, v)) = p.split_once('=') else { continue };
                let v = v.trim().trim_matches('"');
                match k.trim().to_ascii_lowercase().as_str() {
                    "q" => q = v.parse().ok().filter(|q: &f32| (0.0..=1.0).contains(q)).unwrap_or(0.0),
                    "version" => version = Some(v.to_owned()),
                    _ => {}
                }
            }
            match media.as_str() {
                "application/openmetrics-text" if version.as_deref().map_or(true, |v| v == "1.0.0") => open = open.max(q),
                "text/plain" => classic = classic.max(q),
                _ => {}
            }
        }
        if open > 0.0 && open >= classic {
            Format::OpenMetrics
        } else {
            Format::Classic
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Format;

    #[test]
    fn prometheus_own_accept_header_gets_openmetrics() {
        let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prom)), Format::OpenMetrics);
    }

    #[test]
    fn everyone_else_gets_the_classic_format() {
        for accept in [None, Some("*/*"), Some("text/plain"), Some("application/openmetrics-text;q=0"), Some("application/openmetrics-text;version=0.0.1")] {
            assert_eq!(Format::negotiate(accept), Format::Classic, "{accept:?}");
        }
        assert_eq!(Format::negotiate(Some("text/plain;q=0.9, application/openmetrics-text;q=0.5")), Format::Classic);
    }
}

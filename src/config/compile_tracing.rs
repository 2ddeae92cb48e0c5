//! `[tracing]`: OpenTelemetry trace export. A key in the file wins; what the
//! file leaves out comes from the standard OTEL_* variables, then from the
//! defaults (off; OTLP/HTTP to localhost; every new trace sampled).

use std::time::Duration;

use toml::de::DeValue;
use toml::Spanned;

use super::raw::RawTracing;
use super::values::Compiler;
use crate::observe::trace::{OtlpProtocol, SamplerSettings, TraceSettings};

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

impl Compiler<'_> {
    /// Compiles `[tracing]` with the process's OTEL_* variables from `env`.
    pub(super) fn tracing(&mut self, v: Option<Spanned<DeValue<'_>>>, env: Env<'_>) -> TraceSettings {
        let r: RawTracing = self.de(v, "tracing");
        let d = TraceSettings::default();
        let var = |k: &str| env(k).map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
        let disabled_by_env =
            var("OTEL_SDK_DISABLED").is_some_and(|s| s.eq_ignore_ascii_case("true")) || var("OTEL_TRACES_EXPORTER").is_some_and(|s| s == "none");
        let enabled = r.enabled.as_ref().is_some_and(|e| *e.get_ref()) && !disabled_by_env;

        let protocol = match &r.protocol {
            Some(p) => self.protocol(p.get_ref(), p.span(), "tracing.protocol"),
            None => match var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                .map(|p| ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", p))
                .or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL").map(|p| ("OTEL_EXPORTER_OTLP_PROTOCOL", p)))
            {
                Some((key, p)) => self.protocol(&p, 0..0, key),
                None => OtlpProtocol::HttpProtobuf,
            },
        };
        let endpoint = match &r.endpoint {
            Some(e) => self.endpoint(e.get_ref(), e.span(), "tracing.endpoint"),
            None => {
                if let Some(e) = var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
                    // The per-signal variable is the full URL, used as is.
                    self.endpoint(&e, 0..0, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                } else if let Some(e) = var("OTEL_EXPORTER_OTLP_ENDPOINT") {
                    // The base URL: OTLP/HTTP appends the signal's path.
                    let base = self.endpoint(&e, 0..0, "OTEL_EXPORTER_OTLP_ENDPOINT");
                    match protocol {
                        OtlpProtocol::HttpProtobuf => format!("{}/v1/traces", base.trim_end_matches('/')),
                        OtlpProtocol::Grpc => base,
                    }
                } else {
                    match protocol {
                        OtlpProtocol::HttpProtobuf => d.endpoint.clone(),
                        OtlpProtocol::Grpc => "http://localhost:4317".into(),
                    }
                }
            }
        };
        let sampler = self.sampler(&r, &var);
        let service_name = match &r.service_name {
            Some(s) if s.get_ref().trim().is_empty() => {
                self.rep.error(s.span(), "tracing.service_name", "must not be empty");
                d.service_name.clone()
            }
            Some(s) => s.get_ref().clone(),
            None => var("OTEL_SERVICE_NAME").unwrap_or(d.service_name.clone()),
        };
        let timeout = match (&r.timeout, var("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT").or_else(|| var("OTEL_EXPORTER_OTLP_TIMEOUT"))) {
            (Some(_), _) => self.duration(&r.timeout, "tracing.timeout", d.timeout),
            (None, Some(ms)) => self.millis(&ms, "OTEL_EXPORTER_OTLP_TIMEOUT", d.timeout),
            (None, None) => d.timeout,
        };
        let export_delay = match (&r.export_delay, var("OTEL_BSP_SCHEDULE_DELAY")) {
            (Some(_), _) => self.duration(&r.export_delay, "tracing.export_delay", d.export_delay),
            (None, Some(ms)) => self.millis(&ms, "OTEL_BSP_SCHEDULE_DELAY", d.export_delay),
            (None, None) => d.export_delay,
        };
        for (v, key) in [(timeout, "tracing.timeout"), (export_delay, "tracing.export_delay")] {
            if v.is_zero() {
                let span = if key == "tracing.timeout" { r.timeout.as_ref().map(|t| t.span()) } else { r.export_delay.as_ref().map(|t| t.span()) };
                self.rep.error(span.unwrap_or(0..0), key, "must be longer than zero");
            }
        }
        TraceSettings { enabled, protocol, endpoint, sampler, service_name, timeout, export_delay }
    }

    fn protocol(&mut self, text: &str, span: std::ops::Range<usize>, key: &str) -> OtlpProtocol {
        match text {
            "http/protobuf" => OtlpProtocol::HttpProtobuf,
            "grpc" => OtlpProtocol::Grpc,
            other => {
                self.rep.error_hint(span, key, format!("unknown OTLP protocol `{other}`"), "use \"http/protobuf\" or \"grpc\" (http/json is not offered)");
                OtlpProtocol::HttpProtobuf
            }
        }
    }

    fn endpoint(&mut self, text: &str, span: std::ops::Range<usize>, key: &str) -> String {
        match text.parse::<http::Uri>() {
            Ok(u) if matches!(u.scheme_str(), Some("http")) && u.authority().is_some() => text.to_owned(),
            Ok(u) if matches!(u.scheme_str(), Some("https")) => {
                // The exporter carries no TLS stack of its own (the gateway
                // has exactly one, and a second provider would break it).
                self.rep.error_hint(
                    span,
                    key,
                    "https collectors are not supported",
                    "send to a local collector or agent over http, and let it forward with TLS",
                );
                text.to_owned()
            }
            _ => {
                self.rep.error(span, key, format!("`{text}` is not an http URL such as \"http://localhost:4318/v1/traces\""));
                text.to_owned()
            }
        }
    }

    fn millis(&mut self, text: &str, key: &str, default: Duration) -> Duration {
        match text.parse::<u64>() {
            Ok(ms) => Duration::from_millis(ms),
            Err(_) => {
                self.rep.error(0..0, key, format!("`{text}` is not a number of milliseconds"));
                default
            }
        }
    }

    /// `sample_ratio` and `parent_based`, else OTEL_TRACES_SAMPLER (and its
    /// argument), else ParentBased(AlwaysOn) as the specification says.
    fn sampler(&mut self, r: &RawTracing, var: &dyn Fn(&str) -> Option<String>) -> SamplerSettings {
        let mut s = SamplerSettings { ratio: 1.0, parent_based: true };
        if r.sample_ratio.is_none() && r.parent_based.is_none() {
            if let Some(name) = var("OTEL_TRACES_SAMPLER") {
                let arg = var("OTEL_TRACES_SAMPLER_ARG");
                let ratio = || arg.as_deref().and_then(|a| a.parse::<f64>().ok()).filter(|r| (0.0..=1.0).contains(r));
                s = match name.as_str() {
                    "always_on" => SamplerSettings { ratio: 1.0, parent_based: false },
                    "always_off" => SamplerSettings { ratio: 0.0, parent_based: false },
                    "parentbased_always_on" => SamplerSettings { ratio: 1.0, parent_based: true },
                    "parentbased_always_off" => SamplerSettings { ratio: 0.0, parent_based: true },
                    "traceidratio" | "parentbased_traceidratio" => match ratio() {
                        Some(r) => SamplerSettings { ratio: r, parent_based: name.starts_with("parentbased") },
                        None => {
                            self.rep.error(0..0, "OTEL_TRACES_SAMPLER_ARG", "must be a number from 0 to 1");
                            s
                        }
                    },
                    other => {
                        self.rep.error_hint(
                            0..0,
                            "OTEL_TRACES_SAMPLER",
                            format!("unknown sampler `{other}`"),
                            "use always_on, always_off, traceidratio or their parentbased_ forms",
                        );
                        s
                    }
                };
            }
            return s;
        }
        if let Some(p) = &r.parent_based {
            s.parent_based = *p.get_ref();
        }
        if let Some(ratio) = &r.sample_ratio {
            let v = *ratio.get_ref();
            if (0.0..=1.0).contains(&v) {
                s.ratio = v;
            } else {
                self.rep.error(ratio.span(), "tracing.sample_ratio", "must be from 0.0 (no new trace recorded) to 1.0 (every one)");
            }
        }
        s
    }
}

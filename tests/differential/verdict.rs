//! What the app said it served, and the properties every answer must keep.

use std::collections::BTreeMap;

use super::corpus::{Entry, Expect, Level};

/// An app's account of one request (the `agw-diff` body every app sends).
#[derive(Debug, Clone, Default)]
pub struct Echo {
    pub area: String,
    pub path: String,
    pub method: String,
    pub host: String,
    pub rid: String,
    pub prefix: String,
    /// Identity headers as the app reads them: (folded name, value).
    pub ids: Vec<(String, String)>,
    /// Re-routing and override headers the app saw.
    pub steer: Vec<(String, String)>,
}

impl Echo {
    pub fn parse(body: &[u8]) -> Option<Echo> {
        let text = String::from_utf8_lossy(body);
        let mut lines = text.lines();
        if lines.next() != Some("agw-diff") {
            return None;
        }
        let mut e = Echo::default();
        for l in lines {
            let Some((k, v)) = l.split_once('=') else { continue };
            let v = v.to_owned();
            match k {
                "area" => e.area = v,
                "path" => e.path = v,
                "method" => e.method = v,
                "host" => e.host = v,
                "rid" => e.rid = v,
                "prefix" => e.prefix = v,
                // nginx prints every name it knows, empty when absent.
                _ if v.is_empty() => {}
                _ => {
                    if let Some(n) = k.strip_prefix("id.") {
                        e.ids.push((fold(n), v));
                    } else if let Some(n) = k.strip_prefix("steer.") {
                        e.steer.push((fold(n), v));
                    }
                }
            }
        }
        e.ids.sort();
        e.steer.sort();
        Some(e)
    }

    /// The identity an app needs to be allowed to serve this area.
    pub fn needs(&self) -> Level {
        match self.area.as_str() {
            "admin" => Level::Admin,
            "account" => Level::User,
            _ => Level::Anonymous,
        }
    }

    pub fn summary(&self) -> String {
        let ids: Vec<String> = self.ids.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let steer: Vec<String> = self.steer.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut s = format!("area={} path={:?} method={} host={}", self.area, self.path, self.method, self.host);
        if !self.prefix.is_empty() {
            s.push_str(&format!(" prefix={}", self.prefix));
        }
        if !ids.is_empty() {
            s.push_str(&format!(" ids=[{}]", ids.join(", ")));
        }
        if !steer.is_empty() {
            s.push_str(&format!(" steer=[{}]", steer.join(", ")));
        }
        s
    }
}

/// One header-name spelling for every app: PHP's `HTTP_X_AUTHGEAR_USER_ID`,
/// CGI's and nginx's underscores and Node's lower case all become
/// `x-authgear-user-id`.
pub fn fold(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    let lower = lower.strip_prefix("http_").unwrap_or(&lower);
    lower.replace(['_', '.'], "-")
}

/// Who produced an answer.
#[derive(Debug, Clone)]
pub enum Origin {
    /// The app, with its account of what it served.
    App(Echo),
    /// The gateway refused (its JSON error, a bare parse refusal, a reset
    /// HTTP/2 stream, or no answer at all).
    Gateway,
    /// Forwarded, but the server answered by itself (its own error page).
    Server,
}

/// Classifies a response body and status.
pub fn origin(status: u16, body: &[u8]) -> Origin {
    if let Some(e) = Echo::parse(body) {
        return Origin::App(e);
    }
    let gateway_json = body.starts_with(b"{\"error\"");
    if status == 0 || gateway_json || (status >= 400 && body.is_empty()) {
        Origin::Gateway
    } else {
        Origin::Server
    }
}

/// Everything the harness read for one entry on one server and gateway.
#[derive(Debug, Default)]
pub struct Observed {
    /// The first answer's status (0: none).
    pub status: u16,
    /// Each answer the app gave, where it was read, the identity that
    /// applies to it and the request ids it may carry.
    pub served: Vec<Served>,
    pub first: Option<Origin>,
    pub switched: bool,
    /// The server's own answer to the same bytes, when the gateway refused
    /// them with 400 (to see refusals of what the server treats as public).
    pub direct: Option<Origin>,
}

#[derive(Debug)]
pub struct Served {
    pub context: String,
    pub echo: Echo,
    pub level: Level,
    pub rids: Vec<String>,
    /// Read on the connection after a `101`: not a request the gateway saw.
    pub smuggled: bool,
}

/// A broken property.
#[derive(Debug, Clone)]
pub struct Violation {
    pub server: String,
    pub variant: &'static str,
    pub id: String,
    pub category: &'static str,
    pub findings: Vec<u32>,
    pub sent: String,
    pub served: String,
}

/// The categories, in table order, with what each means.
pub const CATEGORIES: [(&str, &str); 7] = [
    ("admin-served", "the app served its admin area to a request without a valid admin identity"),
    ("account-served", "the app served a signed-in area to an anonymous request"),
    ("h2c-smuggled", "after a 101, an HTTP/2 stream the gateway never judged was served"),
    ("identity-forged", "the app saw identity headers other than the gateway's own"),
    ("steering-header", "a client-sent re-routing, override or prefix header reached the app"),
    ("desync", "an answer belonged to another request"),
    ("expectation", "the entry's own promise (expect=...) was not kept"),
];

/// Checks one entry's observations against the properties; `baseline`
/// holds the identity headers the gateway itself sends for each level.
pub fn judge(server: &str, variant: &'static str, entry: &Entry, obs: &Observed, baseline: &BTreeMap<Level, Vec<(String, String)>>) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut flag = |category: &'static str, served: String| {
        out.push(Violation {
            server: server.to_owned(),
            variant,
            id: entry.id.clone(),
            category,
            findings: entry.findings.clone(),
            sent: entry.summary(),
            served,
        });
    };
    for s in &obs.served {
        let e = &s.echo;
        let what = format!("{}: {}", s.context, e.summary());
        if e.needs() > s.level {
            let cat = if s.smuggled {
                "h2c-smuggled"
            } else if e.area == "admin" {
                "admin-served"
            } else {
                "account-served"
            };
            flag(cat, what.clone());
        }
        let allowed = baseline.get(&s.level).cloned().unwrap_or_default();
        if !e.ids.is_empty() && e.ids != allowed {
            flag("identity-forged", what.clone());
        }
        if !e.steer.is_empty() {
            flag("steering-header", what.clone());
        }
        if !s.rids.contains(&e.rid) {
            flag("desync", format!("{what} rid={:?}", e.rid));
        }
    }
    if let Some(expect) = &entry.expect {
        let first = obs.first.as_ref();
        let kept = match (expect, first) {
            (Expect::Public, Some(Origin::App(e))) => e.area == "public",
            (Expect::Admin, Some(Origin::App(e))) => e.area == "admin",
            (Expect::Public | Expect::Admin, _) => false,
            (Expect::Forwarded, first) => !matches!(first, Some(Origin::Gateway)),
            (Expect::Refused, first) => !matches!(first, Some(Origin::App(_))),
            (Expect::Status(code), _) => obs.status == *code,
        };
        if !kept {
            let got = match first {
                Some(Origin::App(e)) => format!("status {} from the app: {}", obs.status, e.summary()),
                Some(Origin::Gateway) => format!("status {} from the gateway", obs.status),
                Some(Origin::Server) => format!("status {} from the server itself", obs.status),
                None => "no answer".to_owned(),
            };
            flag("expectation", format!("expected {expect:?}, got {got}"));
        }
    }
    out
}

//! Config diagnostics: errors and warnings that name the file, line, column
//! and key, plus the two passes that run on the parsed document before serde
//! sees it (unknown keys with suggestions, `${ENV}` expansion).

use std::fmt;
use std::ops::Range;

use serde::Serialize;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::raw::known_keys;

/// How bad a diagnostic is: errors stop a load, warnings do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// Dotted key path, e.g. `routes[2].auth`.
    pub key: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{}:{}:{}: {sev}: ", self.file, self.line, self.column)?;
        if !self.key.is_empty() {
            write!(f, "`{}`: ", self.key)?;
        }
        f.write_str(&self.message)?;
        if let Some(h) = &self.hint {
            write!(f, " ({h})")?;
        }
        Ok(())
    }
}

/// The diagnostics of one load, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Diagnostics {
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    /// True when at least one item is an error.
    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }

    /// Only the errors.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter().filter(|d| d.severity == Severity::Error)
    }

    /// Only the warnings.
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter().filter(|d| d.severity == Severity::Warning)
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.items {
            writeln!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// Collects diagnostics against one source text, turning byte spans into
/// line and column.
pub struct Reporter<'a> {
    file: &'a str,
    text: &'a str,
    pub out: Diagnostics,
    /// Values already reported (e.g. a failed `${VAR}`): later complaints
    /// about the same value would only repeat the first.
    reported: Vec<Range<usize>>,
}

impl<'a> Reporter<'a> {
    pub fn new(file: &'a str, text: &'a str) -> Self {
        Reporter { file, text, out: Diagnostics::default(), reported: Vec::new() }
    }

    /// 1-based line of a byte offset.
    pub fn line_of(&self, offset: usize) -> usize {
        self.line_col(offset).0
    }

    /// Records a warning at the start of `line`.
    pub fn warning_at_line(&mut self, line: usize, key: &str, message: String) {
        self.out.items.push(Diagnostic { severity: Severity::Warning, file: self.file.to_owned(), line, column: 1, key: key.to_owned(), message, hint: None });
    }

    fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text.as_bytes()[..offset];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        let column = self.text[line_start..offset].chars().count() + 1;
        (line, column)
    }

    /// Records an error at `span`.
    pub fn error(&mut self, span: Range<usize>, key: impl Into<String>, message: impl Into<String>) {
        self.push(Severity::Error, span, key.into(), message.into(), None);
    }

    /// Records an error with a suggested fix.
    pub fn error_hint(&mut self, span: Range<usize>, key: impl Into<String>, message: impl Into<String>, hint: impl Into<String>) {
        self.push(Severity::Error, span, key.into(), message.into(), Some(hint.into()));
    }

    /// Records a warning at `span`.
    pub fn warning(&mut self, span: Range<usize>, key: impl Into<String>, message: impl Into<String>) {
        self.push(Severity::Warning, span, key.into(), message.into(), None);
    }

    fn push(&mut self, severity: Severity, span: Range<usize>, key: String, message: String, hint: Option<String>) {
        if !span.is_empty() && self.reported.iter().any(|r| r.contains(&span.start)) {
            return;
        }
        let (line, column) = self.line_col(span.start);
        self.out.items.push(Diagnostic { severity, file: self.file.to_owned(), line, column, key, message, hint });
    }

    /// Records a serde/toml error, using its span when it has one.
    pub fn toml_error(&mut self, fallback: Range<usize>, key: &str, err: &toml::de::Error) {
        let span = err.span().unwrap_or(fallback);
        let snippet = self.text.get(span.clone()).unwrap_or("").lines().next().unwrap_or("").trim();
        let key = if key.is_empty() && !snippet.is_empty() && snippet.len() <= 60 { snippet } else { key };
        // toml's message can span lines with a source excerpt; keep the gist.
        let msg = err.message().trim().to_owned();
        let hint = unknown_field_hint(&msg);
        self.push(Severity::Error, span, key.to_owned(), msg, hint);
    }

    /// Sorts by position so the output reads top to bottom.
    pub fn finish(mut self) -> Diagnostics {
        self.out.items.sort_by_key(|d| (d.line, d.column));
        self.out
    }
}

fn unknown_field_hint(msg: &str) -> Option<String> {
    // serde: "unknown field `audience`, expected one of `a`, `b`"
    let rest = msg.strip_prefix("unknown field `").or_else(|| msg.strip_prefix("unknown variant `"))?;
    let (name, tail) = rest.split_once('`')?;
    let candidates: Vec<&str> = tail.split('`').skip(1).step_by(2).collect();
    suggest(name, &candidates).map(|s| format!("did you mean `{s}`?"))
}

/// Levenshtein distance, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest known name, if it is close enough to be a likely typo.
pub fn suggest<'k>(name: &str, known: &[&'k str]) -> Option<&'k str> {
    let lower = name.to_ascii_lowercase().replace('-', "_");
    known.iter().map(|k| (distance(&lower, k), *k)).filter(|(d, k)| *d <= 2.max(k.len() / 3)).min_by_key(|(d, _)| *d).map(|(_, k)| k)
}

/// Reports every key the schema does not know, with a suggestion where a
/// known key is close. Sub-tables that hold user-chosen names (`headers`,
/// `claims`, upstream names) are not checked by name.
pub fn check_unknown_keys(rep: &mut Reporter<'_>, root: &mut DeTable<'_>) {
    walk_table(rep, root, "", "");
}

fn walk_table(rep: &mut Reporter<'_>, table: &mut DeTable<'_>, schema: &str, display: &str) {
    let Some(known) = known_keys(schema) else { return };
    // Unknown keys are reported here, all at once, then dropped so serde
    // does not report them a second time.
    let unknown: Vec<(String, std::ops::Range<usize>)> =
        table.iter().filter(|(k, _)| !known.contains(&&**k.get_ref())).map(|(k, _)| (k.get_ref().to_string(), k.span())).collect();
    for (name, span) in unknown {
        let path = if display.is_empty() { name.clone() } else { format!("{display}.{name}") };
        let where_ = if schema.is_empty() { "at the top level".to_owned() } else { format!("in [{schema}]") };
        match suggest(&name, known) {
            Some(s) => rep.error_hint(span, path, format!("unknown key {where_}"), format!("did you mean `{s}`?")),
            None => rep.error_hint(span, path, format!("unknown key {where_}"), format!("expected one of: {}", known.join(", "))),
        }
        table.remove(name.as_str());
    }
    for (k, v) in table.iter_mut() {
        let name: &str = k.get_ref();
        let path = if display.is_empty() { name.to_owned() } else { format!("{display}.{name}") };
        let child_schema = match (schema, name) {
            ("", "upstreams") => {
                if let DeValue::Table(t) = v.get_mut() {
                    for (uk, uv) in t.iter_mut() {
                        if let DeValue::Table(ut) = uv.get_mut() {
                            walk_table(rep, ut, "upstreams.*", &format!("upstreams.{}", uk.get_ref()));
                        }
                    }
                }
                continue;
            }
            ("", other) => other.to_owned(),
            ("auth", "issuers") => "auth.issuers".to_owned(),
            ("forward_auth", "prefixes") => "forward_auth.prefixes".to_owned(),
            _ => continue,
        };
        match v.get_mut() {
            DeValue::Table(t) => walk_table(rep, t, &child_schema, &path),
            DeValue::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    if let DeValue::Table(t) = item.get_mut() {
                        walk_table(rep, t, &child_schema, &format!("{path}[{i}]"));
                    }
                }
            }
            _ => {}
        }
    }
}

/// Expands `${VAR}` and `${VAR:-default}` in every string value, in place.
/// `$${` escapes a literal `${`.
pub fn expand_env(rep: &mut Reporter<'_>, table: &mut DeTable<'_>, lookup: &dyn Fn(&str) -> Option<String>) {
    for (k, v) in table.iter_mut() {
        let key: String = k.get_ref().to_string();
        expand_value(rep, v, &key, lookup);
    }
}

fn expand_value(rep: &mut Reporter<'_>, v: &mut Spanned<DeValue<'_>>, key: &str, lookup: &dyn Fn(&str) -> Option<String>) {
    let span = v.span();
    match v.get_mut() {
        DeValue::String(s) if s.contains('$') => match expand_str(s, lookup) {
            Ok(new) => *s = new.into(),
            Err(msg) => {
                rep.error(span.clone(), key, msg);
                rep.reported.push(span);
            }
        },
        DeValue::Table(t) => {
            for (k, child) in t.iter_mut() {
                let path = format!("{key}.{}", k.get_ref());
                expand_value(rep, child, &path, lookup);
            }
        }
        DeValue::Array(items) => {
            for (i, child) in items.iter_mut().enumerate() {
                expand_value(rep, child, &format!("{key}[{i}]"), lookup);
            }
        }
        _ => {}
    }
}

/// Expands one string; the error names the missing variable.
pub fn expand_str(s: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
            continue;
        }
        let Some(body_start) = after.strip_prefix("${") else {
            out.push('$');
            rest = &after[1..];
            continue;
        };
        let Some(end) = body_start.find('}') else {
            return Err("unterminated `${` in value".to_owned());
        };
        let body = &body_start[..end];
        let (name, default) = match body.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (body, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("invalid environment variable name `{name}` in `${{...}}`"));
        }
        match (lookup(name), default) {
            (Some(v), _) if !v.is_empty() || default.is_none() => out.push_str(&v),
            (_, Some(d)) => out.push_str(d),
            (None, None) => return Err(format!("environment variable `{name}` is not set and has no default (write `${{{name}:-default}}`)")),
            (Some(v), None) => out.push_str(&v),
        }
        rest = &body_start[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("example.com".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn env_expansion() {
        assert_eq!(expand_str("https://${HOST}/x", &env).unwrap(), "https://example.com/x");
        assert_eq!(expand_str("${NOPE:-fallback}", &env).unwrap(), "fallback");
        assert_eq!(expand_str("${EMPTY:-d}", &env).unwrap(), "d");
        assert_eq!(expand_str("cost $5 $${HOST}", &env).unwrap(), "cost $5 ${HOST}");
        let err = expand_str("${NOPE}", &env).unwrap_err();
        assert!(err.contains("`NOPE`"), "{err}");
        assert!(expand_str("${HOST", &env).is_err());
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest("audience", &["audiences", "issuer"]), Some("audiences"));
        assert_eq!(suggest("lisen", &["listen"]), Some("listen"));
        assert_eq!(suggest("zzzzzz", &["listen"]), None);
    }
}

//! The corpus file: one tricky request per entry, kept as data.
//!
//! ```text
//! === <id> <category> [finding=N] [expect=E] [gw=strict|catchall] [pipeline] [h2] [eol=lf] [# note]
//! GET /public/%252e%252e/admin/x HTTP/1.1
//! Host: {host}
//! @body <escaped bytes>
//! ```
//!
//! HTTP/1.1 entries are head lines, joined with CRLF (LF with `eol=lf`)
//! and ended by an empty line; `@body` appends bytes after it. HTTP/2
//! entries (`h2`) are `name value` lines sent as listed, pseudo-headers
//! included. In both, `\r \n \t \0 \\ \xHH` are escapes and `{host}`,
//! `{user}`, `{admin}` (bearer tokens) and `{pad:N}` (N letters) are
//! filled in. `expect` is a further promise the gateway makes for the
//! entry: `public` (the app serves its public area), `admin` (the app
//! serves the admin area: admin-token controls), `forwarded` (the gateway
//! passes it on, whatever the server then makes of it), `refused` (never
//! reaches the app) or `status:NNN` (the gateway answers that status).

/// What an entry promises beyond the properties every request must keep.
#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    Public,
    Forwarded,
    Admin,
    Refused,
    Status(u16),
}

/// Which gateway config(s) an entry runs against.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Variants {
    Both,
    Strict,
    CatchAll,
}

/// One corpus entry, as written.
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: String,
    pub category: String,
    pub findings: Vec<u32>,
    pub expect: Option<Expect>,
    pub variants: Variants,
    pub pipeline: bool,
    pub h2: bool,
    pub lf: bool,
    pub note: String,
    pub lines: Vec<String>,
    pub body: Option<String>,
}

/// Values for the placeholders.
pub struct Fill<'a> {
    pub host: &'a str,
    pub user: &'a str,
    pub admin: &'a str,
}

/// How much identity the request carries: what the gateway could at most
/// have judged it to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Anonymous = 0,
    User = 1,
    Admin = 2,
}

impl Entry {
    /// The identity the entry's tokens carry (the gateway can only lower it).
    pub fn level(&self) -> Level {
        let all = || self.lines.iter().chain(self.body.iter());
        if all().any(|l| l.contains("{admin}")) {
            Level::Admin
        } else if all().any(|l| l.contains("{user}")) {
            Level::User
        } else {
            Level::Anonymous
        }
    }

    /// Whether the (first) request is a HEAD, whose response has no body.
    pub fn is_head(&self) -> bool {
        self.lines.first().is_some_and(|l| l.starts_with("HEAD "))
    }

    /// The HTTP/1.1 bytes, with `X-Diff-Id: <rid>` right after the request
    /// line so every answer can be matched to its request.
    pub fn h1_bytes(&self, fill: &Fill, rid: &str) -> Vec<u8> {
        let eol: &[u8] = if self.lf { b"\n" } else { b"\r\n" };
        let mut out = Vec::new();
        for (i, line) in self.lines.iter().enumerate() {
            out.extend(unescape(&substitute(line, fill)));
            out.extend_from_slice(eol);
            if i == 0 {
                out.extend_from_slice(format!("X-Diff-Id: {rid}").as_bytes());
                out.extend_from_slice(eol);
            }
        }
        out.extend_from_slice(eol);
        if let Some(b) = &self.body {
            out.extend(unescape(&substitute(b, fill)));
        }
        out
    }

    /// The HTTP/2 header fields, as listed, plus `x-diff-id`.
    pub fn h2_fields(&self, fill: &Fill, rid: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out: Vec<(Vec<u8>, Vec<u8>)> = self
            .lines
            .iter()
            .map(|l| {
                let l = substitute(l, fill);
                let (n, v) = l.split_once(' ').unwrap_or((l.as_str(), ""));
                (unescape(n), unescape(v))
            })
            .collect();
        out.push((b"x-diff-id".to_vec(), rid.as_bytes().to_vec()));
        out
    }

    pub fn h2_body(&self, fill: &Fill) -> Vec<u8> {
        self.body.as_ref().map(|b| unescape(&substitute(b, fill))).unwrap_or_default()
    }

    /// A one-line, printable summary of what was sent.
    pub fn summary(&self) -> String {
        let mut s = self.lines.iter().take(12).cloned().collect::<Vec<_>>().join(" | ");
        if let Some(b) = &self.body {
            s.push_str(" | @body ");
            s.push_str(b);
        }
        if !self.note.is_empty() {
            s.push_str("  # ");
            s.push_str(&self.note);
        }
        if s.len() > 300 {
            let mut cut = 300;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s.truncate(cut);
            s.push_str("...");
        }
        s
    }
}

/// Parses the corpus; every problem is an error naming its line.
pub fn parse(text: &str) -> Result<Vec<Entry>, String> {
    let mut entries: Vec<Entry> = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let lineno = n + 1;
        if let Some(rest) = raw.strip_prefix("=== ") {
            let (meta, note) = rest.split_once(" # ").unwrap_or((rest, ""));
            let mut words = meta.split_whitespace();
            let (Some(id), Some(category)) = (words.next(), words.next()) else {
                return Err(format!("line {lineno}: an entry needs an id and a category"));
            };
            let mut e = Entry {
                id: id.to_owned(),
                category: category.to_owned(),
                findings: Vec::new(),
                expect: None,
                variants: Variants::Both,
                pipeline: false,
                h2: false,
                lf: false,
                note: note.trim().to_owned(),
                lines: Vec::new(),
                body: None,
            };
            for w in words {
                match w.split_once('=') {
                    Some(("finding", v)) => {
                        for f in v.split(',') {
                            e.findings.push(f.parse().map_err(|_| format!("line {lineno}: bad finding {f:?}"))?);
                        }
                    }
                    Some(("expect", v)) => e.expect = Some(parse_expect(v).ok_or_else(|| format!("line {lineno}: bad expect {v:?}"))?),
                    Some(("gw", "strict")) => e.variants = Variants::Strict,
                    Some(("gw", "catchall")) => e.variants = Variants::CatchAll,
                    Some(("eol", "lf")) => e.lf = true,
                    None if w == "pipeline" => e.pipeline = true,
                    None if w == "h2" => e.h2 = true,
                    _ => return Err(format!("line {lineno}: unknown entry key {w:?}")),
                }
            }
            if entries.iter().any(|x| x.id == e.id) {
                return Err(format!("line {lineno}: duplicate id {}", e.id));
            }
            entries.push(e);
            continue;
        }
        if raw.trim().is_empty() || raw.starts_with('#') {
            continue;
        }
        let Some(e) = entries.last_mut() else {
            return Err(format!("line {lineno}: text before the first entry"));
        };
        if let Some(b) = raw.strip_prefix("@body ") {
            e.body = Some(b.to_owned());
        } else {
            e.lines.push(raw.to_owned());
        }
    }
    if let Some(e) = entries.iter().find(|e| e.lines.is_empty()) {
        return Err(format!("entry {} has no request", e.id));
    }
    Ok(entries)
}

fn parse_expect(v: &str) -> Option<Expect> {
    match v {
        "public" => Some(Expect::Public),
        "forwarded" => Some(Expect::Forwarded),
        "admin" => Some(Expect::Admin),
        "refused" => Some(Expect::Refused),
        _ => v.strip_prefix("status:").and_then(|s| s.parse().ok()).map(Expect::Status),
    }
}

fn substitute(s: &str, fill: &Fill) -> String {
    let mut out = s.replace("{host}", fill.host).replace("{user}", fill.user).replace("{admin}", fill.admin);
    while let Some(start) = out.find("{pad:") {
        let Some(len) = out[start..].find('}') else { break };
        let n: usize = out[start + 5..start + len].parse().unwrap_or(0);
        out.replace_range(start..start + len + 1, &"a".repeat(n));
    }
    out
}

/// Decodes `\r \n \t \0 \\ \xHH`; any other backslash stays as it is.
pub fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            let next = b[i + 1];
            let simple = match next {
                b'r' => Some(b'\r'),
                b'n' => Some(b'\n'),
                b't' => Some(b'\t'),
                b'0' => Some(0),
                b'\\' => Some(b'\\'),
                _ => None,
            };
            if let Some(c) = simple {
                out.push(c);
                i += 2;
                continue;
            }
            if next == b'x' && i + 3 < b.len() {
                let hex = |c: u8| (c as char).to_digit(16);
                if let (Some(h), Some(l)) = (hex(b[i + 2]), hex(b[i + 3])) {
                    out.push((h * 16 + l) as u8);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(unescape(r"a\r\n\x41\\b\q"), b"a\r\nA\\b\\q");
        assert_eq!(unescape(r"\x4"), b"\\x4");
    }
}

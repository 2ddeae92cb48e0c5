//! Request-path normalization: the one spelling of a path that routes are
//! matched on and that the upstream receives.
//!
//! Matching and forwarding the *same* string is what closes the classic
//! bypasses (`/public/../admin`, `/public/%2e%2e/admin`, `//admin`,
//! `/public/..;/admin`): whatever the client wrote, the upstream can only see
//! a path that the route table has already judged.

use std::fmt;

/// Why a path was refused; each maps to 400 Bad Request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// The path does not start with `/` (and is not `*`).
    NotAbsolute,
    /// `%` not followed by two hex digits.
    BadPercentEncoding,
    /// `%2F` or `%5C`: an encoded separator means different things to
    /// different servers, so it is never let through.
    EncodedSeparator,
    /// A raw backslash, which some servers treat as `/`.
    Backslash,
    /// NUL or another control character, raw or encoded.
    ControlCharacter,
    /// `..` that would climb above the root.
    AboveRoot,
    /// A `;` (path parameter), raw or encoded: servlet containers strip
    /// `;...` from segments, so `/public/..;/admin` would reach `/admin`.
    Semicolon,
}

impl PathError {
    /// Short, client-safe description used in the JSON error body.
    pub fn describe(self) -> &'static str {
        match self {
            PathError::NotAbsolute => "path must start with /",
            PathError::BadPercentEncoding => "malformed percent-encoding in path",
            PathError::EncodedSeparator => "encoded slash or backslash in path",
            PathError::Backslash => "backslash in path",
            PathError::ControlCharacter => "control character in path",
            PathError::AboveRoot => "path climbs above the root",
            PathError::Semicolon => "path parameters (;) are not accepted",
        }
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Decodes percent-encoded unreserved characters and upper-cases the hex of
/// the rest, refusing encodings that could change the path's structure.
fn canonical_segment(seg: &str, out: &mut String) -> Result<(), PathError> {
    let bytes = seg.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                let (Some(&h), Some(&l)) = (bytes.get(i + 1), bytes.get(i + 2)) else {
                    return Err(PathError::BadPercentEncoding);
                };
                let (Some(h), Some(l)) = (hex_val(h), hex_val(l)) else {
                    return Err(PathError::BadPercentEncoding);
                };
                let v = h * 16 + l;
                match v {
                    b'/' | b'\\' => return Err(PathError::EncodedSeparator),
                    b';' => return Err(PathError::Semicolon),
                    0..=0x1f | 0x7f => return Err(PathError::ControlCharacter),
                    _ if is_unreserved(v) => out.push(v as char),
                    _ => {
                        out.push('%');
                        out.push(HEX_UPPER[(v >> 4) as usize] as char);
                        out.push(HEX_UPPER[(v & 0xf) as usize] as char);
                    }
                }
                i += 3;
            }
            b'\\' => return Err(PathError::Backslash),
            b';' => return Err(PathError::Semicolon),
            0..=0x1f | 0x7f => return Err(PathError::ControlCharacter),
            _ => {
                // The input is a &str split on ASCII '/', so pushing whole
                // chars keeps any (already validated by hyper) UTF-8 intact.
                let ch_len = utf8_len(b);
                let end = (i + ch_len).min(bytes.len());
                out.push_str(&seg[i..end]);
                i = end;
                continue;
            }
        }
    }
    Ok(())
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

/// Normalizes a request path (no query): percent-decodes unreserved
/// characters, resolves `.` and `..`, merges repeated slashes and keeps a
/// trailing slash. Returns 400-worthy errors for anything ambiguous.
pub fn normalize(raw: &str) -> Result<String, PathError> {
    if raw == "*" {
        return Ok("*".to_owned());
    }
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if is_already_normal(raw) {
        return Ok(raw.to_owned());
    }
    normalize_segments(raw)
}

/// The full normalization of an absolute path.
fn normalize_segments(raw: &str) -> Result<String, PathError> {
    let mut segments: Vec<String> = Vec::with_capacity(8);
    let mut buf = String::with_capacity(raw.len());
    let mut trailing_slash = false;
    for seg in raw[1..].split('/') {
        buf.clear();
        canonical_segment(seg, &mut buf)?;
        trailing_slash = false;
        match buf.as_str() {
            "" | "." => trailing_slash = true,
            ".." => {
                if segments.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
                trailing_slash = true;
            }
            _ => segments.push(buf.clone()),
        }
    }
    let mut out = String::with_capacity(raw.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    Ok(out)
}

/// True when `normalize` would return `raw` unchanged: no percent sign, no
/// byte it refuses, no empty segment except a final one (a trailing slash)
/// and no `.` or `..` segment. Most paths are like this, and skip the
/// per-segment work.
fn is_already_normal(raw: &str) -> bool {
    let rest = &raw[1..];
    if rest.bytes().any(|b| matches!(b, b'%' | b'\\' | b';' | 0..=0x1f | 0x7f)) {
        return false;
    }
    let mut segs = rest.split('/').peekable();
    while let Some(seg) = segs.next() {
        let last = segs.peek().is_none();
        match seg {
            "." | ".." => return false,
            "" if !last => return false,
            _ => {}
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_are_unchanged() {
        for p in ["/", "/a", "/a/b", "/a/b/", "/a%20b", "/caf%C3%A9", "/x.json"] {
            assert_eq!(normalize(p).as_deref(), Ok(p), "{p}");
        }
    }

    #[test]
    fn dot_segments_and_slashes() {
        assert_eq!(normalize("/public/../admin").unwrap(), "/admin");
        assert_eq!(normalize("/public/./x").unwrap(), "/public/x");
        assert_eq!(normalize("//admin//x").unwrap(), "/admin/x");
        assert_eq!(normalize("/a/b/..").unwrap(), "/a/");
        assert_eq!(normalize("/a/.").unwrap(), "/a/");
        assert_eq!(normalize("/public/%2e%2e/admin").unwrap(), "/admin");
        assert_eq!(normalize("/public/%2E./admin").unwrap(), "/admin");
        assert_eq!(normalize("/%61dmin").unwrap(), "/admin");
        assert_eq!(normalize("/a%7e").unwrap(), "/a~");
        assert_eq!(normalize("/a%3f").unwrap(), "/a%3F");
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        assert_eq!(normalize("/.."), Err(PathError::AboveRoot));
        assert_eq!(normalize("/a/../.."), Err(PathError::AboveRoot));
        assert_eq!(normalize("/public%2f..%2fadmin"), Err(PathError::EncodedSeparator));
        assert_eq!(normalize("/public%5cadmin"), Err(PathError::EncodedSeparator));
        assert_eq!(normalize("/public\\admin"), Err(PathError::Backslash));
        assert_eq!(normalize("/public/..;/admin"), Err(PathError::Semicolon));
        assert_eq!(normalize("/admin%3bx"), Err(PathError::Semicolon));
        assert_eq!(normalize("/a%00"), Err(PathError::ControlCharacter));
        assert_eq!(normalize("/a%zz"), Err(PathError::BadPercentEncoding));
        assert_eq!(normalize("/a%2"), Err(PathError::BadPercentEncoding));
        assert_eq!(normalize("a/b"), Err(PathError::NotAbsolute));
    }

    #[test]
    fn the_fast_path_agrees_with_the_full_one() {
        for p in ["/", "/a", "/a/", "//", "/a//b", "/.", "/a/.", "/a/..", "/a/./b", "/.a/b.", "/...", "/a%41", "/caf\u{e9}", "/a b", "/a/b/c/"] {
            if is_already_normal(p) {
                assert_eq!(normalize_segments(p).as_deref(), Ok(p), "{p}");
            }
        }
        assert!(is_already_normal("/api/v1/items/") && !is_already_normal("/a//b") && !is_already_normal("/a/.."));
    }
}

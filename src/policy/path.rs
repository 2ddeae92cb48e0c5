//! Request-path normalization: the one spelling of a path that routes are
//! matched on and that the upstream receives.
//!
//! Matching and forwarding the *same* string is what closes the classic
//! bypasses (`/public/../admin`, `/public/%2e%2e/admin`, `//admin`,
//! `/public/..;/admin`): whatever the client wrote, the upstream can only see
//! a path that the route table has already judged. The one exception is a
//! `;` parameter on the last segment (`/x;jsessionid=1`): routes judge the
//! path without it, and the upstream receives it, because servlet
//! containers read it as a parameter of the same resource.

/// Defined with every other refusal reason in `error`.
pub use crate::error::PathError;

/// A normalized request path in its two forms: the one routes are judged
/// on, and the one sent upstream (the same, plus the last segment's `;`
/// parameters when it had any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalPath {
    /// The forwarded form; the judged form is its first `judged_len` bytes.
    full: String,
    judged_len: usize,
}

impl NormalPath {
    fn plain(full: String) -> Self {
        NormalPath { judged_len: full.len(), full }
    }

    /// The path routes are matched on: no `;` parameters.
    pub fn judged(&self) -> &str {
        &self.full[..self.judged_len]
    }

    /// The path the upstream receives (before any prefix rewrite).
    pub fn forwarded(&self) -> &str {
        &self.full
    }

    /// The last segment's parameters, without their leading `;`.
    pub fn params(&self) -> Option<&str> {
        self.full.get(self.judged_len + 1..)
    }
}

/// The value of one hex digit.
pub(crate) fn hex_val(b: u8) -> Option<u8> {
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

/// What a last-segment parameter may hold: enough for session ids (Tomcat's
/// `ABC.node1`, WebLogic's `!`, WebSphere's `:`), `;.css` and matrix
/// variables (`;a=1,2;b=3`). No `%`, so nothing in it decodes to anything.
fn is_param_byte(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'=' | b',' | b';' | b'!' | b':' | b'+')
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

fn push_encoded(out: &mut String, v: u8) {
    out.push('%');
    out.push(HEX_UPPER[(v >> 4) as usize] as char);
    out.push(HEX_UPPER[(v & 0xf) as usize] as char);
}

/// Decodes percent-encoded unreserved characters, percent-encodes raw
/// non-ASCII bytes and upper-cases the hex of the rest, refusing encodings
/// that could change the path's structure. `out` holds this segment only.
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
                    b';' => return Err(PathError::EncodedSemicolon),
                    0..=0x1f | 0x7f => return Err(PathError::ControlCharacter),
                    _ if is_unreserved(v) => out.push(v as char),
                    _ => push_encoded(out, v),
                }
                i += 3;
            }
            b'\\' => return Err(PathError::Backslash),
            b';' => return Err(PathError::Semicolon),
            0..=0x1f | 0x7f => return Err(PathError::ControlCharacter),
            // One spelling for non-ASCII: `/café` and `/caf%C3%A9` are the
            // same path to every server, so they must be one path here.
            0x80.. => {
                push_encoded(out, b);
                i += 1;
            }
            _ => {
                out.push(b as char);
                i += 1;
            }
        }
    }
    // Checked on the output: `%25%32%65` decodes to `%252e` as well.
    if out.as_bytes().windows(5).any(|w| w.starts_with(b"%25") && w[3].is_ascii_hexdigit() && w[4].is_ascii_hexdigit()) {
        return Err(PathError::DoubleEncoding);
    }
    if out.as_bytes().windows(6).any(is_overlong) {
        return Err(PathError::OverlongUtf8);
    }
    Ok(())
}

/// True for the first two octets (`%XX%YY`, upper-case hex) of an overlong
/// UTF-8 sequence: a lead byte C0 or C1 with a continuation byte, E0 with
/// 80-9F or F0 with 80-8F. No encoder produces them; Tomcat once decoded
/// `%C0%AE` as `.`.
fn is_overlong(w: &[u8]) -> bool {
    let [b'%', l1, l2, b'%', c1, _] = *w else { return false };
    match (l1, l2) {
        (b'C', b'0' | b'1') => matches!(c1, b'8' | b'9' | b'A' | b'B'),
        (b'E', b'0') => matches!(c1, b'8' | b'9'),
        (b'F', b'0') => c1 == b'8',
        _ => false,
    }
}

/// Normalizes a request path (no query): percent-decodes unreserved
/// characters, resolves `.` and `..`, merges repeated slashes and keeps a
/// trailing slash; the last segment may keep `;` parameters (see
/// [`NormalPath`]). Returns 400-worthy errors for anything ambiguous.
pub fn normalize(raw: &str) -> Result<NormalPath, PathError> {
    if raw == "*" {
        return Ok(NormalPath::plain("*".to_owned()));
    }
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if is_already_normal(raw) {
        return Ok(NormalPath::plain(raw.to_owned()));
    }
    normalize_segments(raw)
}

/// The full normalization of an absolute path.
fn normalize_segments(raw: &str) -> Result<NormalPath, PathError> {
    // Only the last segment may carry parameters: split them off first, so
    // that a `;` anywhere else reaches `canonical_segment` and is refused.
    let last_start = raw.rfind('/').map_or(0, |i| i + 1);
    let (path, params) = match raw[last_start..].find(';') {
        Some(k) => {
            let params = &raw[last_start + k + 1..];
            if !params.bytes().all(is_param_byte) {
                return Err(PathError::BadParameter);
            }
            (&raw[..last_start + k], Some(params))
        }
        None => (raw, None),
    };
    let mut segments: Vec<String> = Vec::with_capacity(8);
    let mut buf = String::with_capacity(path.len());
    let mut trailing_slash = false;
    for seg in path[1..].split('/') {
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
    // An empty or dot name before the `;` (`/x/;p`, `/x/..;p`): a container
    // that strips the parameter then sees a directory or climbs.
    if params.is_some() && trailing_slash {
        return Err(PathError::Semicolon);
    }
    let mut out = String::with_capacity(raw.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    let judged_len = out.len();
    if let Some(p) = params {
        out.push(';');
        out.push_str(p);
    }
    Ok(NormalPath { full: out, judged_len })
}

/// True when `normalize` would return `raw` unchanged and without
/// parameters: no percent sign, no `;`, no non-ASCII byte, no byte it
/// refuses, no empty segment except a final one (a trailing slash) and no
/// `.` or `..` segment. Most paths are like this, and skip the per-segment
/// work.
fn is_already_normal(raw: &str) -> bool {
    let rest = &raw[1..];
    if rest.bytes().any(|b| matches!(b, b'%' | b'\\' | b';' | 0..=0x1f | 0x7f..)) {
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

/// Percent-encoded (as normalization spells them) characters whose simple
/// case mapping is an ASCII letter, and the ligatures whose case folding
/// is only ASCII letters: Java's `equalsIgnoreCase`, .NET's ordinal
/// comparison or Windows' upcase table can read `/%C4%B1nternal` (`ınternal`)
/// as `/internal`, which an ASCII-only comparison here would not. `ß` is
/// left alone: only full case folding (Python's `casefold`) makes it `ss`,
/// and it is an ordinary letter in German paths.
const CASE_FOLD_LOOKALIKES: &[&str] = &[
    "%C4%B0",    // İ, lower-cases to i
    "%C4%B1",    // ı, upper-cases to I
    "%C5%BF",    // ſ, upper-cases to S
    "%E2%84%AA", // Kelvin sign, lower-cases to k
    "%EF%AC%80", // ﬀ .. ﬆ: ff fi fl ffi ffl st st
    "%EF%AC%81",
    "%EF%AC%82",
    "%EF%AC%83",
    "%EF%AC%84",
    "%EF%AC%85",
    "%EF%AC%86",
];

/// Refuses a normalized (judged) path holding a character that
/// case-insensitive servers may read as an ASCII letter.
pub fn check_case_fold(judged: &str) -> Result<(), PathError> {
    if judged.contains('%') && CASE_FOLD_LOOKALIKES.iter().any(|l| judged.contains(l)) {
        return Err(PathError::CaseFoldLookalike);
    }
    Ok(())
}

/// A route-pattern literal in the spelling normalization gives paths:
/// non-ASCII characters percent-encoded with upper-case hex.
pub fn encode_non_ascii(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii() {
            out.push(b as char);
        } else {
            push_encoded(&mut out, b);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The judged form, or the error.
    fn judged(p: &str) -> Result<String, PathError> {
        normalize(p).map(|n| n.judged().to_owned())
    }

    /// (judged, forwarded), or the error.
    fn both(p: &str) -> Result<(String, String), PathError> {
        normalize(p).map(|n| (n.judged().to_owned(), n.forwarded().to_owned()))
    }

    #[test]
    fn plain_paths_are_unchanged() {
        for p in ["/", "/a", "/a/b", "/a/b/", "/a%20b", "/caf%C3%A9", "/x.json", "/100%25", "/100%25-off", "/a%25zz"] {
            assert_eq!(judged(p).as_deref(), Ok(p), "{p}");
            assert_eq!(normalize(p).map(|n| n.params().is_none()), Ok(true), "{p}");
        }
    }

    #[test]
    fn dot_segments_and_slashes() {
        assert_eq!(judged("/public/../admin").unwrap(), "/admin");
        assert_eq!(judged("/public/./x").unwrap(), "/public/x");
        assert_eq!(judged("//admin//x").unwrap(), "/admin/x");
        assert_eq!(judged("/a/b/..").unwrap(), "/a/");
        assert_eq!(judged("/a/.").unwrap(), "/a/");
        assert_eq!(judged("/public/%2e%2e/admin").unwrap(), "/admin");
        assert_eq!(judged("/public/%2E./admin").unwrap(), "/admin");
        assert_eq!(judged("/%61dmin").unwrap(), "/admin");
        assert_eq!(judged("/a%7e").unwrap(), "/a~");
        assert_eq!(judged("/a%3f").unwrap(), "/a%3F");
    }

    #[test]
    fn non_ascii_has_one_spelling() {
        assert_eq!(judged("/caf\u{e9}").unwrap(), "/caf%C3%A9");
        assert_eq!(judged("/caf%c3%a9").unwrap(), "/caf%C3%A9");
        assert_eq!(encode_non_ascii("/caf\u{e9}/x"), "/caf%C3%A9/x");
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        assert_eq!(judged("/.."), Err(PathError::AboveRoot));
        assert_eq!(judged("/a/../.."), Err(PathError::AboveRoot));
        assert_eq!(judged("/public%2f..%2fadmin"), Err(PathError::EncodedSeparator));
        assert_eq!(judged("/public%5cadmin"), Err(PathError::EncodedSeparator));
        assert_eq!(judged("/public\\admin"), Err(PathError::Backslash));
        assert_eq!(judged("/public/..;/admin"), Err(PathError::Semicolon));
        assert_eq!(judged("/admin%3bx"), Err(PathError::EncodedSemicolon));
        assert_eq!(judged("/a%00"), Err(PathError::ControlCharacter));
        assert_eq!(judged("/a%zz"), Err(PathError::BadPercentEncoding));
        assert_eq!(judged("/a%2"), Err(PathError::BadPercentEncoding));
        assert_eq!(judged("a/b"), Err(PathError::NotAbsolute));
    }

    #[test]
    fn double_encoded_octets_are_refused() {
        for p in [
            "/public/%252e%252e/admin/x",
            "/public/%252E%252E/admin/x",
            "/public%252fadmin",
            "/public%252Fadmin",
            "/public%255cadmin",
            "/public/x%253b/y",
            "/a%2500",
            "/a%25252e",
            // Decodes to `%252e` only once the unreserved `2` and `e` are.
            "/a%25%32%65",
            "/a%25%32e",
            "/x%2541",
        ] {
            assert_eq!(judged(p), Err(PathError::DoubleEncoding), "{p}");
        }
        // `%25` before anything but two hex digits is a plain percent sign.
        assert_eq!(judged("/a%25/2e").unwrap(), "/a%25/2e");
        assert_eq!(judged("/a%25g1").unwrap(), "/a%25g1");
        assert_eq!(judged("/a%252").unwrap(), "/a%252");
    }

    #[test]
    fn overlong_utf8_is_refused() {
        for p in ["/public/%c0%ae%c0%ae/admin", "/a%C0%AFb", "/a%C1%9C", "/a%E0%80%AE", "/a%E0%9F%BF", "/a%F0%80%80%AF", "/a%F0%8F%BF%BF"] {
            assert_eq!(judged(p), Err(PathError::OverlongUtf8), "{p}");
        }
        // Shortest forms, and bytes that are not UTF-8 lead bytes of an
        // overlong form (Latin-1 paths), pass.
        for p in ["/caf%C3%A9", "/%E0%A0%80", "/%F0%90%80%80", "/%C0", "/%C0x", "/%C1%C1", "/%E9t%E9", "/%E0%C0"] {
            assert!(judged(p).is_ok(), "{p}");
        }
    }

    #[test]
    fn last_segment_parameters_are_judged_without_and_forwarded_with() {
        let ok = |p: &str, j: &str, f: &str| assert_eq!(both(p), Ok((j.to_owned(), f.to_owned())), "{p}");
        ok("/public/x;jsessionid=1", "/public/x", "/public/x;jsessionid=1");
        ok("/public/x;.css", "/public/x", "/public/x;.css");
        ok("/x;jsessionid=ABC123.node1", "/x", "/x;jsessionid=ABC123.node1");
        ok("/x;jsessionid=0000ab:-1", "/x", "/x;jsessionid=0000ab:-1");
        ok("/x;a=1,2;b=3", "/x", "/x;a=1,2;b=3");
        ok("/x;", "/x", "/x;");
        ok("/public/../admin/x;p", "/admin/x", "/admin/x;p");
        ok("//public/%61/x;p", "/public/a/x", "/public/a/x;p");
        ok("/caf%c3%a9;p", "/caf%C3%A9", "/caf%C3%A9;p");
        assert_eq!(normalize("/x;a=1").unwrap().params(), Some("a=1"));
        assert_eq!(normalize("/x;").unwrap().params(), Some(""));
    }

    #[test]
    fn parameters_that_could_change_the_resource_are_refused() {
        assert_eq!(judged("/..;"), Err(PathError::AboveRoot));
        for p in ["/public;x/y", "/public/..;/admin", "/.;x", "/public/..;", "/public/.;x", "/public/;x", "/;x", "/public/x;a/", "/a;b/c;d"] {
            assert_eq!(judged(p), Err(PathError::Semicolon), "{p}");
        }
        assert_eq!(judged("/public/%2e%2e;x"), Err(PathError::Semicolon));
        assert_eq!(judged("/public/x%3bjsessionid=1"), Err(PathError::EncodedSemicolon));
        assert_eq!(judged("/public/x%3B"), Err(PathError::EncodedSemicolon));
        for p in ["/x;a%2fb", "/x;a%3bb", "/x;a\\b", "/x;a\"b", "/x;a{b}", "/x;\u{e9}", "/x;a b", "/x;a%00", "/x;a@b"] {
            assert_eq!(judged(p), Err(PathError::BadParameter), "{p}");
        }
    }

    #[test]
    fn case_fold_lookalikes() {
        for p in ["/%C4%B1nternal", "/adm%C4%B0n", "/%C5%BFecret", "/%E2%84%AAeys", "/pro%EF%AC%81le"] {
            let n = judged(p).unwrap();
            assert_eq!(check_case_fold(&n), Err(PathError::CaseFoldLookalike), "{p}");
        }
        // Lower-case hex and raw characters normalize to the same spelling.
        assert_eq!(check_case_fold(&judged("/%c4%b1nternal").unwrap()), Err(PathError::CaseFoldLookalike));
        assert_eq!(check_case_fold(&judged("/\u{131}nternal").unwrap()), Err(PathError::CaseFoldLookalike));
        for p in ["/internal", "/caf%C3%A9", "/stra%C3%9Fe", "/%C4%B2"] {
            assert_eq!(check_case_fold(p), Ok(()), "{p}");
        }
    }

    #[test]
    fn the_fast_path_agrees_with_the_full_one() {
        let plain = ["/", "/a", "/a/", "//", "/a//b", "/.", "/a/.", "/a/..", "/a/./b", "/.a/b.", "/...", "/a b", "/a/b/c/"];
        let special = ["/a%41", "/caf\u{e9}", "/a;b", "/a/;b", "/a;b/", "/a%2541", "/a\u{131}"];
        for p in plain.into_iter().chain(special) {
            if is_already_normal(p) {
                assert_eq!(normalize_segments(p), Ok(NormalPath::plain(p.to_owned())), "{p}");
            }
        }
        assert!(is_already_normal("/api/v1/items/") && !is_already_normal("/a//b") && !is_already_normal("/a/.."));
        assert!(!is_already_normal("/caf\u{e9}") && !is_already_normal("/x;jsessionid=1"));
    }

    #[test]
    fn normalizing_twice_changes_nothing() {
        for p in ["/public/x;jsessionid=1", "/a/../b;c=d", "/caf\u{e9}", "/a%25zz", "/%61/./b/", "*"] {
            let once = normalize(p).unwrap();
            assert_eq!(normalize(once.forwarded()), Ok(once.clone()), "{p}");
        }
    }
}

//! The formats Authgear's record schema checks, judged by the same rules the
//! server applies (authgear-server `pkg/util/validation/formats.go`,
//! `pkg/util/phone`, `pkg/util/password`): each function returns the reason
//! a value is refused, never the value itself.

use std::str::FromStr;

use chrono::NaiveDate;

/// How strictly phone numbers are judged: a project's
/// `ui.phone_input.validation.libphonenumber.validation_method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PhoneValidation {
    /// The server's default: a valid number, already written in E.164.
    #[default]
    IsValidNumber,
    /// A possible number (right length for its country), spaces and hyphens allowed.
    IsPossibleNumber,
}

/// Checks a phone number and returns its E.164 form.
pub fn phone(s: &str, mode: PhoneValidation) -> Result<String, String> {
    // The server first insists on `+` and digits (spaces and hyphens allowed).
    let rest = s.trim_start_matches(' ');
    let ok_chars = rest.strip_prefix('+').is_some_and(|d| d.bytes().all(|b| b.is_ascii_digit() || b == b' ' || b == b'-'));
    if !ok_chars {
        return Err("not in E.164 form (+ and the digits, e.g. +85298765432)".into());
    }
    let num = phonenumber::parse(None, s).map_err(|_| "not in E.164 form (+ and the digits, e.g. +85298765432)".to_string())?;
    let e164 = num.format().mode(phonenumber::Mode::E164).to_string();
    match mode {
        PhoneValidation::IsValidNumber => {
            if !possible(&num) || !phonenumber::is_valid(&num) {
                return Err("not a valid phone number for its country (libphonenumber)".into());
            }
            if e164 != s {
                return Err(format!("not written in E.164 (the server wants exactly {e164})"));
            }
        }
        PhoneValidation::IsPossibleNumber => {
            if !possible(&num) {
                return Err("not a possible phone number for its country (libphonenumber)".into());
            }
        }
    }
    Ok(e164)
}

fn possible(num: &phonenumber::PhoneNumber) -> bool {
    let Some(meta) = num.metadata(&phonenumber::metadata::DATABASE) else { return false };
    let len = num.national().to_string().len();
    let lengths = meta.descriptors().general().possible_length();
    lengths.is_empty() || lengths.iter().any(|&l| usize::from(l) == len)
}

/// `zoneinfo`: an IANA zone name with at least one `/` (Go's `time.LoadLocation`).
pub fn zoneinfo(s: &str) -> Result<(), String> {
    if !s.contains('/') {
        return Err("not an IANA time zone name (it must contain `/`, e.g. Asia/Hong_Kong)".into());
    }
    chrono_tz::Tz::from_str(s).map(|_| ()).map_err(|_| "not a time zone of the IANA database".into())
}

/// `locale`: a BCP 47 tag already in canonical form (`en-US`, not `en_US` or `EN-us`).
pub fn locale(s: &str) -> Result<(), String> {
    let tag = language_tags::LanguageTag::parse(s).map_err(|e| format!("not a BCP 47 language tag ({e})"))?;
    tag.validate().map_err(|e| format!("not a registered BCP 47 language tag ({e})"))?;
    let canonical = tag.canonicalize().map_err(|e| format!("not a registered BCP 47 language tag ({e})"))?;
    if canonical.as_str() != s {
        return Err(format!("not the canonical form of the tag (the server wants {})", canonical.as_str()));
    }
    Ok(())
}

/// Go's `time` package year field: four characters, an optional sign then digits.
fn go_year(s: &str) -> Option<i32> {
    if s.len() != 4 {
        return None;
    }
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn two_digits(s: &str) -> Option<u32> {
    (s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok()).flatten()
}

fn month_day(year: i32, md: &str) -> bool {
    let Some((m, d)) = md.split_once('-') else { return false };
    match (two_digits(m), two_digits(d)) {
        (Some(m), Some(d)) => NaiveDate::from_ymd_opt(year, m, d).is_some(),
        _ => false,
    }
}

/// `birthdate`: `YYYY-MM-DD`, `0000-MM-DD`, `--MM-DD` or `YYYY`, a real date.
pub fn birthdate(s: &str) -> Result<(), String> {
    let ok = if let Some(md) = s.strip_prefix("--") {
        // Without a year Go checks the day against year 0, a leap year.
        month_day(0, md)
    } else if s.len() == 4 {
        go_year(s).is_some()
    } else if s.len() >= 5 && s.is_char_boundary(4) && s.as_bytes()[4] == b'-' {
        go_year(&s[..4]).is_some_and(|y| month_day(y, &s[5..]))
    } else {
        false
    };
    if ok {
        Ok(())
    } else {
        Err("not a real date as YYYY-MM-DD, 0000-MM-DD, --MM-DD or YYYY".into())
    }
}

/// RFC 3339 date-time as Go's `time.Parse(time.RFC3339, ...)` reads it.
pub fn rfc3339(s: &str) -> Result<(), String> {
    let bad = || Err("not an RFC 3339 date-time (e.g. 2025-01-31T09:00:00Z)".to_string());
    let b = s.as_bytes();
    // Go's layout is literal about the separators: `T` and `Z` upper case.
    if b.len() < 20 || b[10] != b'T' || !s.is_ascii() {
        return bad();
    }
    // chrono takes a leap second (`:60`); Go's seconds stop at 59.
    let ok = chrono::DateTime::parse_from_rfc3339(s).is_ok() && s.get(17..19).is_some_and(|sec| sec < "60");
    let zone_ok = s.ends_with('Z') || matches!(b[b.len() - 6], b'+' | b'-');
    if ok && zone_ok {
        Ok(())
    } else {
        bad()
    }
}

/// `profile` and `website`: an absolute URI with a host and a clean path.
pub fn uri(s: &str) -> Result<(), String> {
    let raw = GoUrl::split(s)?;
    if raw.scheme.is_empty() || raw.host.is_empty() {
        return Err("not an absolute URI with a host".into());
    }
    // The host (and port) must be well-formed; the url crate judges that.
    url::Url::parse(s).map_err(|e| format!("not a valid URI ({e})"))?;
    clean_path(raw.path)
}

/// `picture`: an http(s) URI as for `profile`, or `authgearimages:` with a clean path and no host.
pub fn picture(s: &str) -> Result<(), String> {
    let raw = GoUrl::split(s)?;
    match raw.scheme.to_ascii_lowercase().as_str() {
        "http" | "https" => uri(s),
        "authgearimages" if !raw.host.is_empty() => Err("an authgearimages URI has no host".into()),
        "authgearimages" => clean_path(raw.path),
        _ => Err("picture must be an http(s) or authgearimages URI".into()),
    }
}

/// The pieces of a URI as Go's `net/url.Parse` splits them (raw, not decoded).
struct GoUrl<'a> {
    scheme: &'a str,
    host: &'a str,
    path: &'a str,
}

impl<'a> GoUrl<'a> {
    fn split(s: &'a str) -> Result<Self, String> {
        if s.bytes().any(|b| b < 0x20 || b == 0x7f) {
            return Err("URI contains a control character".into());
        }
        // Go refuses a `%` that does not start a two-digit hex escape, in
        // everything but the query (which it keeps raw).
        let (rest, fragment) = s.split_once('#').unwrap_or((s, ""));
        let before_query = rest.split_once('?').map_or(rest, |(a, _)| a);
        if !escapes_ok(before_query) || !escapes_ok(fragment) {
            return Err("URI has a `%` that is not a %XX escape".into());
        }
        let s = s.split_once('#').map_or(s, |(a, _)| a);
        let (scheme, rest) = match s.find(':') {
            Some(i) if i > 0 && s.as_bytes()[0].is_ascii_alphabetic() && s[..i].bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b)) => {
                (&s[..i], &s[i + 1..])
            }
            Some(0) => return Err("missing scheme".into()),
            _ => ("", s),
        };
        let rest = rest.split_once('?').map_or(rest, |(a, _)| a);
        if let Some(after) = rest.strip_prefix("//") {
            let (authority, path) = after.find('/').map_or((after, ""), |i| after.split_at(i));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            return Ok(GoUrl { scheme, host, path });
        }
        // `scheme:opaque` has an empty path for Go, which counts as `/`.
        let path = if !scheme.is_empty() && !rest.starts_with('/') { "" } else { rest };
        Ok(GoUrl { scheme, host: "", path })
    }
}

fn escapes_ok(s: &str) -> bool {
    let b = s.as_bytes();
    b.iter().enumerate().all(|(i, &c)| c != b'%' || (b.get(i + 1).is_some_and(u8::is_ascii_hexdigit) && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit)))
}

/// Go's `FormatAbsolutePath`: the path must start with `/` and equal its
/// `path.Clean` (a trailing slash kept), so no `//`, `.` or `..` segments.
fn clean_path(p: &str) -> Result<(), String> {
    let p = if p.is_empty() { "/" } else { p };
    let body = p.strip_prefix('/').ok_or("path is not absolute")?;
    let body = body.strip_suffix('/').unwrap_or(body);
    if p == "/" {
        return Ok(());
    }
    if body.split('/').any(|seg| seg.is_empty() || seg == "." || seg == "..") {
        return Err("path is not clean (empty, `.` or `..` segments)".into());
    }
    Ok(())
}

/// Checks a password hash as Authgear's `CheckHash` does: `$bcrypt-sha512$`
/// wrapping a bcrypt hash, or a bcrypt hash as Go's `bcrypt.Cost` reads it.
/// Returns the cost. The message never includes the hash.
pub fn bcrypt(hash: &str) -> Result<u32, String> {
    let b = hash.as_bytes();
    if b.first() != Some(&b'$') || !hash[1..].contains('$') {
        return Err("not a bcrypt hash (expected a `$2a$`, `$2b$`, `$2y$` or other version-2 prefix, or `$bcrypt-sha512$`)".into());
    }
    let inner = hash.strip_prefix("$bcrypt-sha512$").unwrap_or(hash);
    go_bcrypt_cost(inner.as_bytes())
}

fn go_bcrypt_cost(b: &[u8]) -> Result<u32, String> {
    if b.len() < 59 {
        return Err(format!("not a bcrypt hash (length {}, at least 59)", b.len()));
    }
    if b[0] != b'$' {
        return Err("not a bcrypt hash (it must start with `$`)".into());
    }
    if b[1] > b'2' {
        return Err("bcrypt version is newer than 2".into());
    }
    // `$2$` has no minor version letter; `$2a$`, `$2b$`, `$2x$`, `$2y$` have one.
    let n = if b[2] == b'$' { 3 } else { 4 };
    let cost_text = std::str::from_utf8(&b[n..n + 2]).map_err(|_| "bcrypt cost is not a number".to_string())?;
    // Go's strconv.Atoi also takes a sign, so `+9` is a cost of 9 there.
    let cost: i64 = cost_text.parse().map_err(|_| "bcrypt cost is not a number".to_string())?;
    if !(4..=31).contains(&cost) {
        return Err(format!("bcrypt cost {cost} is outside 4-31"));
    }
    Ok(cost as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_paths_and_schemes() {
        assert!(uri("https://example.com").is_ok());
        assert!(uri("https://example.com/a/b/").is_ok());
        assert!(uri("ftp://files.example.com/x").is_ok());
        assert!(uri("https://").is_err());
        assert!(uri("https://example.com/a/../b").is_err());
        assert!(uri("https://example.com//a").is_err());
        assert!(uri("/relative").is_err());
        assert!(uri("https://example.com/a%2Fb").is_ok());
        assert!(uri("https://example.com/a%zz").is_err());
        assert!(uri("https://example.com/a?q=%zz").is_ok(), "Go keeps the query raw");
        assert!(picture("authgearimages:///app/object").is_ok());
        assert!(picture("ftp://example.com/a.png").is_err());
    }

    #[test]
    fn odd_phone_inputs_are_refused_without_panicking() {
        let long = format!("+{}", "9".repeat(200));
        for s in ["+", "+0", "+-", "+ ", "+1 ", "+00000000000000000000000", "+1-", "+--1", "+999", "+8", long.as_str(), "+85 2", "  +852"] {
            let _ = phone(s, PhoneValidation::IsValidNumber);
            let _ = phone(s, PhoneValidation::IsPossibleNumber);
        }
        assert_eq!(phone("+85251234567", PhoneValidation::IsValidNumber).as_deref(), Ok("+85251234567"));
        assert_eq!(phone("+852 5123-4567", PhoneValidation::IsPossibleNumber).as_deref(), Ok("+85251234567"));
        assert!(phone("+852 5123 4567", PhoneValidation::IsValidNumber).is_err());
    }

    #[test]
    fn dates() {
        for ok in ["1990-02-28", "2000-02-29", "0000-12-25", "--12-25", "--02-29", "1990"] {
            assert!(birthdate(ok).is_ok(), "{ok}");
        }
        for bad in ["1990-02-30", "1990-13-01", "90-01-01", "1990-1-1", "--13-01", "19900", ""] {
            assert!(birthdate(bad).is_err(), "{bad}");
        }
        assert!(rfc3339("2025-01-31T09:00:00Z").is_ok());
        assert!(rfc3339("2025-01-31T09:00:00.5+08:00").is_ok());
        assert!(rfc3339("2025-01-31 09:00:00Z").is_err());
        assert!(rfc3339("2025-01-31").is_err());
    }
}

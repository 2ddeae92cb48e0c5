//! Reading the request's cookies and writing `Set-Cookie` lines: every
//! cookie of the flow is `HttpOnly; SameSite=Lax; Path=/`, plus `Secure`
//! when the public origin is https (its name then carries `__Host-`).
//! A sealed session longer than one cookie holds is split into numbered
//! chunks and joined again in order.

use http::header::COOKIE;
use http::HeaderMap;

/// Most bytes of value per cookie: browsers keep 4096 per name+value+attributes.
pub const CHUNK: usize = 3800;
/// Most chunks read or cleared: a bigger session belongs in a server-side store.
pub const MAX_CHUNKS: usize = 8;

/// The request's cookies, in the order sent (`name`, `value`).
pub fn request_cookies(headers: &HeaderMap) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    for v in headers.get_all(COOKIE).iter().filter_map(|v| v.to_str().ok()) {
        for pair in v.split(';') {
            if let Some((n, val)) = pair.trim().split_once('=') {
                out.push((n.trim(), val.trim().trim_matches('"')));
            }
        }
    }
    out
}

/// The value of the first cookie named `name`.
pub fn get<'a>(cookies: &[(&'a str, &'a str)], name: &str) -> Option<&'a str> {
    cookies.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

/// The session cookie's value: the plain cookie, or its chunks joined.
/// `None` when absent or a chunk is missing.
pub fn joined(cookies: &[(&str, &str)], name: &str) -> Option<String> {
    if let Some(v) = get(cookies, name) {
        return Some(v.to_owned());
    }
    let count: usize = get(cookies, &format!("{name}-n"))?.parse().ok().filter(|n| (1..=MAX_CHUNKS).contains(n))?;
    let mut out = String::new();
    for i in 0..count {
        out.push_str(get(cookies, &format!("{name}-{i}"))?);
    }
    Some(out)
}

/// One `Set-Cookie` line.
pub fn set(name: &str, value: &str, max_age: Option<u64>, secure: bool) -> String {
    let mut s = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
    if let Some(a) = max_age {
        s.push_str(&format!("; Max-Age={a}"));
    }
    if secure {
        s.push_str("; Secure");
    }
    s
}

/// A `Set-Cookie` line that deletes `name`.
pub fn clear(name: &str, secure: bool) -> String {
    set(name, "", Some(0), secure)
}

/// The lines that store `value` as the session cookie (chunked when long)
/// and delete whatever other form of it the browser holds. `None` when
/// even [`MAX_CHUNKS`] chunks cannot hold it.
pub fn session_lines(name: &str, value: &str, max_age: u64, secure: bool, present: &[(&str, &str)]) -> Option<Vec<String>> {
    let mut out = Vec::new();
    if value.len() <= CHUNK {
        out.push(set(name, value, Some(max_age), secure));
        out.extend(clear_chunks(name, secure, present, 0));
        return Some(out);
    }
    let parts: Vec<&str> = value.as_bytes().chunks(CHUNK).map(|c| std::str::from_utf8(c).unwrap_or("")).collect();
    if parts.len() > MAX_CHUNKS {
        return None;
    }
    out.push(set(&format!("{name}-n"), &parts.len().to_string(), Some(max_age), secure));
    for (i, p) in parts.iter().enumerate() {
        out.push(set(&format!("{name}-{i}"), p, Some(max_age), secure));
    }
    if get(present, name).is_some() {
        out.push(clear(name, secure));
    }
    out.extend(clear_chunks(name, secure, present, parts.len()));
    Some(out)
}

/// Deletes every form of the session cookie the browser sent.
pub fn clear_session(name: &str, secure: bool, present: &[(&str, &str)]) -> Vec<String> {
    let mut out = Vec::new();
    if get(present, name).is_some() {
        out.push(clear(name, secure));
    }
    if get(present, &format!("{name}-n")).is_some() {
        out.push(clear(&format!("{name}-n"), secure));
    }
    out.extend(clear_chunks(name, secure, present, 0));
    out
}

/// Deletes chunks `from..` that the browser sent.
fn clear_chunks(name: &str, secure: bool, present: &[(&str, &str)], from: usize) -> Vec<String> {
    (from..MAX_CHUNKS).map(|i| format!("{name}-{i}")).filter(|n| get(present, n).is_some()).map(|n| clear(&n, secure)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_back(lines: &[String]) -> Vec<(String, String)> {
        lines
            .iter()
            .filter(|l| !l.contains("Max-Age=0"))
            .filter_map(|l| l.split(';').next()?.split_once('=').map(|(a, b)| (a.to_owned(), b.to_owned())))
            .collect()
    }

    #[test]
    fn long_values_are_chunked_and_joined() {
        let value = "x".repeat(CHUNK * 2 + 10);
        let lines = session_lines("__Host-s", &value, 60, true, &[("__Host-s", "old")]).expect("fits");
        assert!(lines.iter().all(|l| l.contains("; Secure") && l.contains("HttpOnly") && l.contains("SameSite=Lax") && l.contains("Path=/")));
        assert!(lines.iter().any(|l| l.starts_with("__Host-s=; ") && l.contains("Max-Age=0")), "the unchunked form is cleared");
        let back = parse_back(&lines);
        let refs: Vec<(&str, &str)> = back.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        assert_eq!(joined(&refs, "__Host-s").as_deref(), Some(value.as_str()));
        assert!(session_lines("s", &"y".repeat(CHUNK * (MAX_CHUNKS + 1)), 60, false, &[]).is_none());
    }

    #[test]
    fn a_missing_chunk_opens_nothing() {
        assert_eq!(joined(&[("s-n", "2"), ("s-0", "abc")], "s"), None);
        assert_eq!(joined(&[("s-n", "99"), ("s-0", "abc")], "s"), None);
    }
}

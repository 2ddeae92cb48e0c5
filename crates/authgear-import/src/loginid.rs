//! Login ids (email, phone, username) as Authgear stores them: normalized,
//! and looked up by the normalized value (authgear-server
//! `pkg/lib/authn/identity/loginid/normalizer.go` and `type_checkers.go`).
//!
//! Sending the normalized value is what lets a second run find the user the
//! first run created (the server looks the identifier up as sent), and it is
//! the value two rows must not share.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use unicode_normalization::UnicodeNormalization;

use super::formats::{self, PhoneValidation};
use super::schema::Check;

/// The project's Login ID settings that change how ids are judged and stored.
/// Defaults are the server's defaults.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoginIdRules {
    /// `authentication.identities.login_id.types.email.case_sensitive`.
    pub email_case_sensitive: bool,
    /// `...email.ignore_dot_sign`: dots in the local part are dropped.
    pub email_ignore_dot_sign: bool,
    /// `...username.case_sensitive`.
    pub username_case_sensitive: bool,
    /// `...username.ascii_only`: only `a-z A-Z 0-9 _ - .`.
    pub username_ascii_only: bool,
    /// `max_length` of the email key (bytes).
    pub email_max_length: usize,
    /// `max_length` of the username key (bytes).
    pub username_max_length: usize,
    /// `max_length` of the phone key (bytes).
    pub phone_max_length: usize,
    /// `ui.phone_input.validation.libphonenumber.validation_method`.
    pub phone_validation: PhoneValidation,
    /// Send login ids in their normalized form (off: as given, judged only).
    pub normalize: bool,
}

impl Default for LoginIdRules {
    fn default() -> Self {
        LoginIdRules {
            email_case_sensitive: false,
            email_ignore_dot_sign: false,
            username_case_sensitive: false,
            username_ascii_only: true,
            email_max_length: 320,
            username_max_length: 40,
            phone_max_length: 40,
            phone_validation: PhoneValidation::IsValidNumber,
            normalize: true,
        }
    }
}

/// A project's reserved usernames, in the server's `reserved_name.txt` form:
/// one name a line, `#` comments, `/regex/` patterns, `!` to exempt; the last
/// matching line decides. Names are compared case-folded.
#[derive(Debug, Default)]
pub struct ReservedNames {
    entries: Vec<(bool, regex::Regex)>,
}

impl ReservedNames {
    /// Parses the file's text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (negated, line) = match line.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, line),
            };
            let pattern = match line.strip_prefix('/').and_then(|l| l.strip_suffix('/')).filter(|p| !p.is_empty()) {
                Some(re) => re.to_string(),
                None => format!("^{}$", regex::escape(line)),
            };
            let re = regex::Regex::new(&pattern).map_err(|e| format!("line {}: {e}", i + 1))?;
            entries.push((negated, re));
        }
        Ok(ReservedNames { entries })
    }

    /// Whether the (case-folded) username is reserved.
    pub fn is_reserved(&self, folded: &str) -> bool {
        let mut blocked = false;
        for (negated, re) in &self.entries {
            if re.is_match(folded) {
                blocked = !negated;
            }
        }
        blocked
    }
}

/// The three kinds of login id a record can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `email`.
    Email,
    /// `phone_number`.
    Phone,
    /// `preferred_username`.
    Username,
}

impl Kind {
    /// The record key.
    pub fn key(self) -> &'static str {
        match self {
            Kind::Email => "email",
            Kind::Phone => "phone_number",
            Kind::Username => "preferred_username",
        }
    }
}

/// Unicode full case folding then NFC, which is what Go's
/// `precis.FoldCase()` profiles apply (ASCII takes a fast path).
fn fold(s: &str) -> String {
    if s.is_ascii() {
        return s.to_ascii_lowercase();
    }
    caseless::default_case_fold_str(s).nfc().collect()
}

fn nfkc(s: &str) -> String {
    if s.is_ascii() {
        return s.to_string();
    }
    s.nfkc().collect()
}

/// Precis' IdentifierClass, as far as it matters here: no spaces, no
/// controls, and outside ASCII only letters, digits and combining marks.
fn identifier_class(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| if c.is_ascii() { c.is_ascii_graphic() } else { c.is_alphanumeric() || is_mark(c) })
}

fn is_mark(c: char) -> bool {
    // Combining marks sit in these blocks; NFC has already composed what it can.
    matches!(c as u32, 0x0300..=0x036F | 0x1AB0..=0x1AFF | 0x1DC0..=0x1DFF | 0x20D0..=0x20FF | 0xFE20..=0xFE2F)
}

/// The email as the server stores it (`EmailNormalizer.Normalize`).
pub fn normalize_email(s: &str, rules: &LoginIdRules) -> String {
    // The common case, checked once: nothing to fold or drop.
    if s.is_ascii() && !s.bytes().any(|b| b.is_ascii_uppercase()) && !(rules.email_ignore_dot_sign && s.contains('.')) {
        return s.to_string();
    }
    let Some(at) = s.rfind('@') else { return s.to_string() };
    let (local, domain) = (&s[..at], &s[at + 1..]);
    let domain = fold(domain);
    let mut local = nfkc(local);
    if !rules.email_case_sensitive {
        local = fold(&local);
    }
    if rules.email_ignore_dot_sign {
        local.retain(|c| c != '.');
    }
    format!("{local}@{domain}")
}

/// The username as the server stores it (`UsernameNormalizer.Normalize`).
pub fn normalize_username(s: &str, rules: &LoginIdRules) -> String {
    if s.is_ascii() && (rules.username_case_sensitive || !s.bytes().any(|b| b.is_ascii_uppercase())) {
        return s.to_string();
    }
    let s = nfkc(s);
    if rules.username_case_sensitive {
        s
    } else {
        fold(&s)
    }
}

/// Checks a username the way the server's `UsernameChecker` does.
pub fn check_username(s: &str, rules: &LoginIdRules) -> Result<(), String> {
    if s.len() > rules.username_max_length {
        return Err(format!("longer than {} bytes", rules.username_max_length));
    }
    if !identifier_class(&fold(s)) {
        return Err("only letters, digits and ASCII symbols, no spaces".into());
    }
    if rules.username_ascii_only && !s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b)) {
        return Err("only a-z, A-Z, 0-9, `_`, `-` and `.` (the project allows ASCII only)".into());
    }
    Ok(())
}

/// Judges and (when `rules.normalize`) rewrites the record's login ids in
/// place; returns each present one in normalized form, for duplicate checks.
/// Format errors are the schema's to report; this adds the login-id rules.
pub fn normalize_record(record: &mut Map<String, Value>, rules: &LoginIdRules, reserved: Option<&ReservedNames>, check: &mut Check) -> Vec<(Kind, String)> {
    let mut out = Vec::with_capacity(1);
    for kind in [Kind::Email, Kind::Phone, Kind::Username] {
        let Some(Value::String(raw)) = record.get_mut(kind.key()) else { continue };
        // The server trims what it is given before judging a login id.
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            check.errors.push(format!("{}: must not be blank", kind.key()));
            continue;
        }
        let normalized = match kind {
            Kind::Email => {
                if trimmed.len() > rules.email_max_length {
                    check.errors.push(format!("email: longer than {} bytes", rules.email_max_length));
                    continue;
                }
                normalize_email(trimmed, rules)
            }
            Kind::Phone => {
                if trimmed.len() > rules.phone_max_length {
                    check.errors.push(format!("phone_number: longer than {} bytes", rules.phone_max_length));
                    continue;
                }
                match formats::phone(trimmed, rules.phone_validation) {
                    Ok(e164) => e164,
                    // Already reported by the schema check.
                    Err(_) => continue,
                }
            }
            Kind::Username => {
                if let Err(e) = check_username(trimmed, rules) {
                    check.errors.push(format!("preferred_username: {e}"));
                    continue;
                }
                if reserved.is_some_and(|r| r.is_reserved(&fold(trimmed))) {
                    check.errors.push("preferred_username: a reserved username in this project".into());
                    continue;
                }
                normalize_username(trimmed, rules)
            }
        };
        if rules.normalize && *raw != normalized {
            *raw = normalized.clone();
        }
        out.push((kind, normalized));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_default_normalization() {
        let r = LoginIdRules::default();
        assert_eq!(normalize_email("John.Doe@Example.COM", &r), "john.doe@example.com");
        assert_eq!(normalize_email("Straße@Example.com", &r), "strasse@example.com");
        assert_eq!(normalize_email("ｆｕｌｌ@example.com", &r), "full@example.com");
        let cs = LoginIdRules { email_case_sensitive: true, email_ignore_dot_sign: true, ..r.clone() };
        assert_eq!(normalize_email("John.Doe@Example.COM", &cs), "JohnDoe@example.com");
        assert_eq!(normalize_username("JDoe", &r), "jdoe");
        assert!(check_username("j.doe_1-x", &r).is_ok());
        assert!(check_username("j doe", &r).is_err());
        assert!(check_username("jösé", &r).is_err());
        assert!(check_username("jösé", &LoginIdRules { username_ascii_only: false, ..r.clone() }).is_ok());
        assert!(check_username(&"a".repeat(41), &r).is_err());
        let list = ReservedNames::parse("# names\nadmin\n/^root[0-9]*$/\n!root42\n").expect("list");
        assert!(list.is_reserved("admin") && list.is_reserved("root7"));
        assert!(!list.is_reserved("root42") && !list.is_reserved("administrator"));
    }
}

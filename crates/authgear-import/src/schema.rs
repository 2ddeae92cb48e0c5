//! Checks one mapped record against the User Import API's record schema.
//!
//! Messages never quote password hashes, TOTP secrets or other credentials:
//! they end up in reports and logs.

use serde_json::{Map, Value};

/// Top-level record fields the import API accepts.
pub const RECORD_FIELDS: &[&str] = &[
    "preferred_username",
    "email",
    "phone_number",
    "email_verified",
    "phone_number_verified",
    "name",
    "given_name",
    "family_name",
    "middle_name",
    "nickname",
    "profile",
    "picture",
    "website",
    "gender",
    "birthdate",
    "zoneinfo",
    "locale",
    "address",
    "custom_attributes",
    "roles",
    "groups",
    "disabled",
    "password",
    "mfa",
];

const ADDRESS_FIELDS: &[&str] = &["formatted", "street_address", "locality", "region", "postal_code", "country"];
const PASSWORD_FIELDS: &[&str] = &["type", "password_hash"];
const STRING_FIELDS: &[&str] = &["preferred_username", "name", "given_name", "family_name", "middle_name", "nickname", "gender", "zoneinfo", "locale"];
const URL_FIELDS: &[&str] = &["profile", "picture", "website"];
const BOOL_FIELDS: &[&str] = &["email_verified", "phone_number_verified", "disabled"];

/// Which record field identifies a user (sent as the request's `identifier`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[clap(rename_all = "snake_case")]
pub enum Identifier {
    /// The `email` field.
    Email,
    /// The `preferred_username` field.
    PreferredUsername,
    /// The `phone_number` field.
    PhoneNumber,
}

impl Identifier {
    /// The record key this identifier names.
    pub fn key(self) -> &'static str {
        match self {
            Identifier::Email => "email",
            Identifier::PreferredUsername => "preferred_username",
            Identifier::PhoneNumber => "phone_number",
        }
    }
}

/// Whether a dotted mapping target names a field of the schema.
pub fn is_known_path(parts: &[String]) -> bool {
    let p: Vec<&str> = parts.iter().map(String::as_str).collect();
    match p.as_slice() {
        [one] => RECORD_FIELDS.contains(one),
        ["custom_attributes", _] => true,
        ["address", f] => ADDRESS_FIELDS.contains(f),
        ["password", f] | ["mfa", "password", f] => PASSWORD_FIELDS.contains(f),
        ["mfa", f] => ["email", "phone_number"].contains(f),
        ["mfa", "totp", "secret"] => true,
        _ => false,
    }
}

/// What a record carries as its password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordKind {
    /// No password at all (e.g. a social-login user).
    None,
    /// A well-formed bcrypt hash.
    Bcrypt,
    /// A hash of another type, named as given (or `unknown`).
    Other(String),
}

/// Result of checking one record.
#[derive(Debug, Default)]
pub struct Check {
    /// Problems that make the record unusable.
    pub errors: Vec<String>,
    /// Things worth knowing that do not stop the import.
    pub warnings: Vec<String>,
}

/// Checks the record; also fills in `password.type = "bcrypt"` when the type
/// was absent but the hash is plainly bcrypt. Returns what the password is.
pub fn check(record: &mut Map<String, Value>, identifier: Identifier, check: &mut Check) -> PasswordKind {
    for key in record.keys() {
        if !RECORD_FIELDS.contains(&key.as_str()) {
            check.errors.push(format!("unknown key `{}`", printable(key)));
        }
    }
    match record.get(identifier.key()) {
        None => check.errors.push(format!("missing identifier `{}`", identifier.key())),
        Some(Value::String(s)) if s.trim().is_empty() => check.errors.push(format!("identifier `{}` is empty", identifier.key())),
        _ => {}
    }
    for (key, value) in record.iter() {
        let k = key.as_str();
        if STRING_FIELDS.contains(&k) {
            expect_string(k, value, check);
        } else if URL_FIELDS.contains(&k) {
            if let Some(s) = expect_string(k, value, check) {
                if !(s.starts_with("https://") || s.starts_with("http://")) {
                    check.errors.push(format!("{k}: not an absolute http(s) URL"));
                }
            }
        } else if BOOL_FIELDS.contains(&k) {
            if !value.is_boolean() {
                check.errors.push(format!("{k}: must be true or false"));
            }
        } else {
            match k {
                "email" => check_email(k, value, check),
                "phone_number" => check_phone(k, value, check),
                "birthdate" => {
                    if let Some(s) = expect_string(k, value, check) {
                        if !is_birthdate(s) {
                            check.errors.push(format!("{k}: must be YYYY-MM-DD"));
                        }
                    }
                }
                "roles" | "groups" => check_list(k, value, check),
                "custom_attributes" if !value.is_object() => {
                    check.errors.push(format!("{k}: must be an object"));
                }
                "address" => check_object(k, value, ADDRESS_FIELDS, check, |f, v, c| {
                    expect_string(f, v, c);
                }),
                "mfa" => check_mfa(value, check),
                _ => {}
            }
        }
    }
    if let Some(Value::String(u)) = record.get("preferred_username") {
        if u.chars().any(char::is_whitespace) {
            check.warnings.push("preferred_username contains whitespace".into());
        }
    }
    match record.get_mut("password") {
        None => PasswordKind::None,
        Some(pw) => check_password("password", pw, check),
    }
}

fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(64).collect()
}

fn expect_string<'a>(key: &str, value: &'a Value, check: &mut Check) -> Option<&'a str> {
    match value {
        Value::String(s) => Some(s),
        _ => {
            check.errors.push(format!("{key}: must be a string"));
            None
        }
    }
}

fn check_email(key: &str, value: &Value, check: &mut Check) {
    if let Some(s) = expect_string(key, value, check) {
        if !is_email(s) {
            check.errors.push(format!("{key}: not a valid email address"));
        }
    }
}

fn check_phone(key: &str, value: &Value, check: &mut Check) {
    if let Some(s) = expect_string(key, value, check) {
        if !is_e164(s) {
            check.errors.push(format!("{key}: not in E.164 form (+ and 7-15 digits, e.g. +85298765432)"));
        }
    }
}

fn check_list(key: &str, value: &Value, check: &mut Check) {
    match value {
        Value::Array(items) if items.iter().all(|i| matches!(i, Value::String(s) if !s.trim().is_empty())) => {}
        _ => check.errors.push(format!("{key}: must be a list of non-empty strings")),
    }
}

fn check_object(key: &str, value: &Value, allowed: &[&str], check: &mut Check, each: impl Fn(&str, &Value, &mut Check)) {
    let Value::Object(m) = value else {
        check.errors.push(format!("{key}: must be an object"));
        return;
    };
    for (k, v) in m {
        if allowed.contains(&k.as_str()) {
            each(&format!("{key}.{k}"), v, check);
        } else {
            check.errors.push(format!("unknown key `{key}.{}`", printable(k)));
        }
    }
}

fn check_mfa(value: &Value, check: &mut Check) {
    let Value::Object(m) = value else {
        check.errors.push("mfa: must be an object".into());
        return;
    };
    for (k, v) in m {
        match k.as_str() {
            "email" => check_email("mfa.email", v, check),
            "phone_number" => check_phone("mfa.phone_number", v, check),
            "password" => {
                let mut v = v.clone();
                if let PasswordKind::Other(t) = check_password("mfa.password", &mut v, check) {
                    check.errors.push(format!("mfa.password: only bcrypt hashes can be imported (got {t})"));
                }
            }
            "totp" => check_object("mfa.totp", v, &["secret"], check, |f, v, c| {
                if !matches!(v, Value::String(s) if !s.is_empty()) {
                    c.errors.push(format!("{f}: must be a non-empty string"));
                }
            }),
            other => check.errors.push(format!("unknown key `mfa.{}`", printable(other))),
        }
    }
}

fn check_password(key: &str, value: &mut Value, check: &mut Check) -> PasswordKind {
    let Value::Object(pw) = value else {
        check.errors.push(format!("{key}: must be an object with type and password_hash"));
        return PasswordKind::None;
    };
    for k in pw.keys() {
        if !PASSWORD_FIELDS.contains(&k.as_str()) {
            check.errors.push(format!("unknown key `{key}.{}`", printable(k)));
        }
    }
    let hash = match pw.get("password_hash") {
        Some(Value::String(h)) if !h.is_empty() => h.clone(),
        Some(_) => {
            check.errors.push(format!("{key}.password_hash: must be a non-empty string"));
            return PasswordKind::None;
        }
        None => {
            check.errors.push(format!("{key}: type given without password_hash"));
            return PasswordKind::None;
        }
    };
    let declared = match pw.get("type") {
        Some(Value::String(t)) => Some(t.to_ascii_lowercase()),
        Some(_) => {
            check.errors.push(format!("{key}.type: must be a string"));
            return PasswordKind::None;
        }
        None => None,
    };
    let shape = bcrypt_shape(&hash);
    match declared.as_deref() {
        Some("bcrypt") => {}
        None if shape.is_ok() => {
            pw.insert("type".into(), Value::String("bcrypt".into()));
        }
        None => return PasswordKind::Other("unknown".into()),
        Some(other) => return PasswordKind::Other(printable(other)),
    }
    match shape {
        Ok(cost) => {
            if cost < 10 {
                check.warnings.push(format!("{key}: bcrypt cost {cost} is low"));
            }
            PasswordKind::Bcrypt
        }
        Err(why) => {
            check.errors.push(format!("{key}.password_hash: {why}"));
            PasswordKind::Bcrypt
        }
    }
}

/// Checks a bcrypt hash's shape (`$2a|2b|2y$NN$` + 53 characters of bcrypt's
/// base64) and returns its cost. The error never includes the hash.
pub fn bcrypt_shape(hash: &str) -> Result<u32, String> {
    let b = hash.as_bytes();
    if b.len() != 60 {
        return Err(format!("not a bcrypt hash (length {}, expected 60)", b.len()));
    }
    if !(b[0] == b'$' && b[1] == b'2' && matches!(b[2], b'a' | b'b' | b'y') && b[3] == b'$' && b[6] == b'$') {
        return Err("not a bcrypt hash (expected a $2a$, $2b$ or $2y$ prefix)".into());
    }
    let cost = match (b[4], b[5]) {
        (d1 @ b'0'..=b'9', d2 @ b'0'..=b'9') => u32::from(d1 - b'0') * 10 + u32::from(d2 - b'0'),
        _ => return Err("bcrypt cost is not a number".into()),
    };
    if !(4..=31).contains(&cost) {
        return Err(format!("bcrypt cost {cost} is outside 4-31"));
    }
    if !b[7..].iter().all(|c| c.is_ascii_alphanumeric() || *c == b'.' || *c == b'/') {
        return Err("bcrypt salt/hash has characters outside bcrypt's alphabet".into());
    }
    Ok(cost)
}

/// A pragmatic email shape check: one `@`, a sane local part, a dotted domain.
pub fn is_email(s: &str) -> bool {
    if s.len() > 254 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let Some((local, domain)) = s.rsplit_once('@') else { return false };
    if local.is_empty() || local.len() > 64 || local.contains('@') || local.contains(['<', '>', ',', ';', '(', ')']) {
        return false;
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return false;
    }
    let labels: Vec<&str> = domain.split('.').collect();
    labels.len() >= 2
        && labels
            .iter()
            .all(|l| !l.is_empty() && l.len() <= 63 && !l.starts_with('-') && !l.ends_with('-') && l.chars().all(|c| c.is_alphanumeric() || c == '-'))
        && labels.last().is_some_and(|t| t.chars().count() >= 2)
}

/// E.164: `+`, a non-zero first digit, 7 to 15 digits in all.
pub fn is_e164(s: &str) -> bool {
    let Some(digits) = s.strip_prefix('+') else { return false };
    (7..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0')
}

fn is_birthdate(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    match b.len() {
        4 => digits(0..4),
        10 => digits(0..4) && b[4] == b'-' && digits(5..7) && b[7] == b'-' && digits(8..10),
        _ => false,
    }
}

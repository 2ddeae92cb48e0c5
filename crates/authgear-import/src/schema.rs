//! Checks one mapped record against the User Import API's record schema.
//!
//! Messages never quote password hashes, TOTP secrets or other credentials:
//! they end up in reports and logs.

use serde_json::{Map, Value};

use super::formats::{self, PhoneValidation};
use super::gomail;

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
    "account_valid_from",
    "account_valid_until",
    "password",
    "mfa",
];

/// The standard address fields (the server keeps other keys of `address` too).
pub const ADDRESS_FIELDS: &[&str] = &["formatted", "street_address", "locality", "region", "postal_code", "country"];
const PASSWORD_FIELDS: &[&str] = &["type", "password_hash", "expire_after"];
const STRING_FIELDS: &[&str] = &["preferred_username", "name", "given_name", "family_name", "middle_name", "nickname", "gender"];
const BOOL_FIELDS: &[&str] = &["email_verified", "phone_number_verified", "disabled"];
/// Fields where `null` means "remove on upsert" (the identifier excepted).
pub const NULLABLE_FIELDS: &[&str] = &[
    "email",
    "phone_number",
    "preferred_username",
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
];

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

/// The request-level settings a record is judged under.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// The request's identifier.
    pub identifier: Identifier,
    /// The project's phone number validation.
    pub phone: PhoneValidation,
}

impl From<Identifier> for Rules {
    fn from(identifier: Identifier) -> Self {
        Rules { identifier, phone: PhoneValidation::default() }
    }
}

/// Checks the record; also fills in `password.type = "bcrypt"` when the type
/// was absent but the hash is plainly bcrypt. Returns what the password is.
pub fn check(record: &mut Map<String, Value>, rules: impl Into<Rules>, check: &mut Check) -> PasswordKind {
    let rules = rules.into();
    let identifier = rules.identifier;
    for key in record.keys() {
        if !RECORD_FIELDS.contains(&key.as_str()) {
            check.errors.push(format!("unknown key `{}`", printable(key)));
        }
    }
    match record.get(identifier.key()) {
        None => check.errors.push(format!("missing identifier `{}`", identifier.key())),
        Some(Value::Null) => check.errors.push(format!("identifier `{}` cannot be null", identifier.key())),
        Some(Value::String(s)) if s.trim().is_empty() => check.errors.push(format!("identifier `{}` is empty", identifier.key())),
        _ => {}
    }
    for (key, value) in record.iter() {
        let k = key.as_str();
        if value.is_null() {
            if k != identifier.key() && RECORD_FIELDS.contains(&k) && !NULLABLE_FIELDS.contains(&k) {
                check.errors.push(format!("{k}: cannot be null (only profile fields, login ids and mfa.email / mfa.phone_number can)"));
            }
            continue;
        }
        if STRING_FIELDS.contains(&k) {
            non_empty_string(k, value, check);
        } else if BOOL_FIELDS.contains(&k) {
            if !value.is_boolean() {
                check.errors.push(format!("{k}: must be true or false"));
            }
        } else {
            match k {
                "email" => check_email(k, value, check),
                "phone_number" => check_phone(k, value, rules.phone, check),
                "profile" | "website" => format_rule(k, value, check, formats::uri),
                "picture" => format_rule(k, value, check, formats::picture),
                "birthdate" => format_rule(k, value, check, formats::birthdate),
                "zoneinfo" => format_rule(k, value, check, formats::zoneinfo),
                "locale" => format_rule(k, value, check, formats::locale),
                "account_valid_from" | "account_valid_until" => format_rule(k, value, check, formats::rfc3339),
                "roles" | "groups" => check_list(k, value, check),
                "custom_attributes" if !value.is_object() => {
                    check.errors.push(format!("{k}: must be an object"));
                }
                "address" => check_address(value, check),
                "mfa" => check_mfa(value, rules.phone, check),
                _ => {}
            }
        }
    }
    if let (Some(Value::String(from)), Some(Value::String(until))) = (record.get("account_valid_from"), record.get("account_valid_until")) {
        if formats::rfc3339(from).is_ok() && formats::rfc3339(until).is_ok() {
            if let (Ok(f), Ok(u)) = (chrono::DateTime::parse_from_rfc3339(from), chrono::DateTime::parse_from_rfc3339(until)) {
                if u <= f {
                    check.warnings.push("account_valid_until is not after account_valid_from: the account can never be used".into());
                }
            }
        }
    }
    match record.get_mut("password") {
        None | Some(Value::Null) => PasswordKind::None,
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

fn non_empty_string(key: &str, value: &Value, check: &mut Check) {
    if let Some(s) = expect_string(key, value, check) {
        if s.is_empty() {
            check.errors.push(format!("{key}: must not be empty"));
        }
    }
}

fn format_rule(key: &str, value: &Value, check: &mut Check, rule: fn(&str) -> Result<(), String>) {
    if let Some(s) = expect_string(key, value, check) {
        if let Err(why) = rule(s) {
            check.errors.push(format!("{key}: {why}"));
        }
    }
}

fn check_email(key: &str, value: &Value, check: &mut Check) {
    if let Some(s) = expect_string(key, value, check) {
        if let Err(why) = gomail::check_email(s) {
            check.errors.push(format!("{key}: not a valid email address ({why})"));
        }
    }
}

fn check_phone(key: &str, value: &Value, mode: PhoneValidation, check: &mut Check) {
    if let Some(s) = expect_string(key, value, check) {
        if let Err(why) = formats::phone(s, mode) {
            check.errors.push(format!("{key}: {why}"));
        }
    }
}

fn check_list(key: &str, value: &Value, check: &mut Check) {
    match value {
        Value::Array(items) if items.iter().all(|i| matches!(i, Value::String(s) if !s.is_empty())) => {}
        _ => check.errors.push(format!("{key}: must be a list of non-empty strings")),
    }
}

fn check_address(value: &Value, check: &mut Check) {
    let Value::Object(m) = value else {
        check.errors.push("address: must be an object of strings (formatted, street_address, locality, region, postal_code, country)".into());
        return;
    };
    for (k, v) in m {
        if ADDRESS_FIELDS.contains(&k.as_str()) {
            non_empty_string(&format!("address.{k}"), v, check);
        } else {
            check.warnings.push(format!("address.{} is not a standard address field (stored as given)", printable(k)));
        }
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

fn check_mfa(value: &Value, phone: PhoneValidation, check: &mut Check) {
    let Value::Object(m) = value else {
        check.errors.push("mfa: must be an object".into());
        return;
    };
    for (k, v) in m {
        match (k.as_str(), v) {
            // `null` removes the OOB-OTP authenticator on upsert.
            ("email" | "phone_number", Value::Null) => {}
            ("email", v) => check_email("mfa.email", v, check),
            ("phone_number", v) => check_phone("mfa.phone_number", v, phone, check),
            ("password", v) => {
                let mut v = v.clone();
                if let PasswordKind::Other(t) = check_password("mfa.password", &mut v, check) {
                    check.errors.push(format!("mfa.password: only bcrypt hashes can be imported (got {t})"));
                }
            }
            ("totp", v) => {
                if v.is_object() && v.get("secret").is_none() {
                    check.errors.push("mfa.totp: secret is required".into());
                }
                check_object("mfa.totp", v, &["secret"], check, |f, v, c| {
                    if !matches!(v, Value::String(s) if !s.is_empty()) {
                        c.errors.push(format!("{f}: must be a non-empty string"));
                    }
                })
            }
            (other, _) => check.errors.push(format!("unknown key `mfa.{}`", printable(other))),
        }
    }
}

fn check_password(key: &str, value: &mut Value, check: &mut Check) -> PasswordKind {
    let Value::Object(pw) = value else {
        check.errors.push(format!("{key}: must be an object with type and password_hash"));
        return PasswordKind::None;
    };
    for (k, v) in pw.iter() {
        if !PASSWORD_FIELDS.contains(&k.as_str()) {
            check.errors.push(format!("unknown key `{key}.{}`", printable(k)));
        } else if k == "expire_after" {
            format_rule(&format!("{key}.expire_after"), v, check, formats::rfc3339);
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
    let shape = formats::bcrypt(&hash);
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

/// Whether Authgear accepts `name` as a custom attribute name (one level,
/// `a-z` first, then `a-z 0-9 _`, ending in `a-z 0-9`).
pub fn is_attribute_name(name: &str) -> bool {
    let b = name.as_bytes();
    let (Some(first), Some(last)) = (b.first(), b.last()) else { return false };
    first.is_ascii_lowercase()
        && (last.is_ascii_lowercase() || last.is_ascii_digit())
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

//! Drafts a mapping file from column names: recognises the obvious names
//! (`Email`, `Email Verified`, `Password Hash`, ...) and the user export
//! formats of Auth0, Firebase (`auth:export` JSON) and Amazon Cognito.
//!
//! Names are compared after lower-casing and dropping everything that is not
//! a letter or digit, so `Email Verified`, `email_verified` and
//! `emailVerified` are one name.

use std::fmt::Write as _;

/// A source system whose export layout was recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Auth0 user export / bulk password export.
    Auth0,
    /// Firebase `auth:export` (JSON).
    Firebase,
    /// Amazon Cognito user pool CSV.
    Cognito,
    /// Anything else.
    Generic,
}

impl Source {
    fn label(self) -> &'static str {
        match self {
            Source::Auth0 => "Auth0 user export",
            Source::Firebase => "Firebase auth:export",
            Source::Cognito => "Amazon Cognito user pool export",
            Source::Generic => "generic table",
        }
    }
}

fn normalise(name: &str) -> String {
    name.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect()
}

/// The mapping target for a well-known column name, `-` for columns known to
/// carry nothing importable (ids, timestamps, salts), or `None` if unknown.
pub fn recognize(column: &str) -> Option<&'static str> {
    Some(match normalise(column).as_str() {
        "email" | "emailaddress" | "mail" => "email",
        "emailverified" | "isemailverified" | "verifiedemail" => "email_verified",
        "phone" | "phonenumber" | "mobile" | "mobilenumber" | "cellphone" => "phone_number",
        "phoneverified" | "phonenumberverified" | "isphoneverified" => "phone_number_verified",
        "username" | "preferredusername" | "login" | "loginname" => "preferred_username",
        "name" | "displayname" | "fullname" => "name",
        "givenname" | "firstname" | "forename" => "given_name",
        "familyname" | "lastname" | "surname" => "family_name",
        "middlename" => "middle_name",
        "nickname" => "nickname",
        "profile" | "profileurl" => "profile",
        "picture" | "photourl" | "avatar" | "avatarurl" | "pictureurl" => "picture",
        "website" | "url" | "homepage" => "website",
        "gender" => "gender",
        "birthdate" | "dateofbirth" | "dob" | "birthday" => "birthdate",
        "zoneinfo" | "timezone" => "zoneinfo",
        "locale" | "language" => "locale",
        "address" | "formattedaddress" => "address.formatted",
        "streetaddress" | "street" => "address.street_address",
        "locality" | "city" => "address.locality",
        "region" | "state" | "province" => "address.region",
        "postalcode" | "zip" | "zipcode" | "postcode" => "address.postal_code",
        "country" => "address.country",
        "roles" | "role" => "roles",
        "groups" | "group" => "groups",
        "disabled" | "blocked" | "isdisabled" | "suspended" => "disabled",
        "passwordhash" | "hash" | "hashedpassword" | "passworddigest" | "encryptedpassword" => "password.password_hash",
        "passwordtype" | "hashtype" | "passwordalgorithm" | "hashalgorithm" => "password.type",
        // Carried by the exports but meaningless to Authgear (or secret material
        // that only makes sense with a non-bcrypt hash).
        "id" | "userid" | "uid" | "localid" | "cognitousername" | "sub" | "createdat" | "updatedat" | "lastlogin" | "lastsignedinat" | "lastloginat"
        | "logincount" | "lastip" | "salt" | "passwordsalt" | "cognitomfaenabled" | "identities" | "provideruserinfo" | "passwordupdatedat" | "validsince" => {
            "-"
        }
        _ => return None,
    })
}

/// Guesses which system produced the columns.
pub fn detect_source(columns: &[String]) -> Source {
    let has = |n: &str| columns.iter().any(|c| normalise(c) == n);
    if has("cognitousername") || has("cognitomfaenabled") {
        Source::Cognito
    } else if has("localid") || (has("salt") && has("passwordhash")) || has("provideruserinfo") {
        Source::Firebase
    } else if has("userid") && (has("identities") || has("blocked") || has("emailverified") || has("passwordhash")) {
        Source::Auth0
    } else {
        Source::Generic
    }
}

/// Picks the identifier: email when there is an email column, else username, else phone.
pub fn pick_identifier(columns: &[String]) -> &'static str {
    let targets: Vec<&str> = columns.iter().filter_map(|c| recognize(c)).collect();
    if targets.contains(&"email") {
        "email"
    } else if targets.contains(&"preferred_username") {
        "preferred_username"
    } else if targets.contains(&"phone_number") {
        "phone_number"
    } else {
        "email"
    }
}

fn quote(s: &str) -> String {
    // TOML basic strings use JSON-compatible escapes for what a header can hold.
    serde_json::Value::String(s.to_string()).to_string()
}

/// Writes a commented mapping file for the given columns (`objects`: those
/// whose values are JSON objects).
pub fn draft(columns: &[String], objects: &[String]) -> String {
    let source = detect_source(columns);
    let mut out = String::new();
    let _ = writeln!(out, "# Mapping drafted by `authgear-import mapping` — review before use.");
    let _ = writeln!(out, "# Detected: {}.", source.label());
    let _ = writeln!(out, "# Targets: record fields (email, name, roles, ...), nested fields (password.password_hash,");
    let _ = writeln!(out, "# address.locality, custom_attributes.KEY[:integer|:number|:boolean]) or \"-\" to drop.");
    let _ = writeln!(out, "identifier = {}", quote(pick_identifier(columns)));
    let _ = writeln!(out, "list_separator = \",\"");
    let _ = writeln!(out, "# Columns not listed below are kept as-is and rejected as unknown keys.");
    let _ = writeln!(out, "unmapped = \"keep\"");
    match source {
        Source::Firebase => {
            let _ = writeln!(out, "# Firebase hashes are scrypt, which Authgear cannot import: see --non-bcrypt.");
            let _ = writeln!(out, "default_password_type = \"firebase-scrypt\"");
        }
        Source::Cognito => {
            let _ = writeln!(out, "# Cognito exports carry no password hashes: every user will need a password reset.");
        }
        Source::Auth0 => {
            let _ = writeln!(out, "# Auth0 hashes (bulk password export) are bcrypt and pass through.");
        }
        Source::Generic => {}
    }
    let _ = writeln!(out, "\n[columns]");
    for c in columns {
        let target = match recognize(c) {
            Some("address.formatted") if objects.contains(c) => Some("address"),
            t => t,
        };
        match target {
            Some("-") => {
                let _ = writeln!(out, "{} = \"-\"  # not importable", quote(c));
            }
            Some(t) => {
                let _ = writeln!(out, "{} = {}", quote(c), quote(t));
            }
            None => {
                let suggestion = format!("custom_attributes.{}", snake(c));
                let _ = writeln!(out, "{} = \"-\"  # TODO: unrecognised; e.g. {} or a record field", quote(c), quote(&suggestion));
            }
        }
    }
    out
}

fn snake(name: &str) -> String {
    let mut out = String::new();
    let mut prev_lower = false;
    for ch in name.chars() {
        if ch.is_ascii_alphanumeric() {
            if ch.is_ascii_uppercase() && prev_lower {
                out.push('_');
            }
            prev_lower = ch.is_ascii_lowercase() || ch.is_ascii_digit();
            out.push(ch.to_ascii_lowercase());
        } else if !out.ends_with('_') && !out.is_empty() {
            out.push('_');
            prev_lower = false;
        }
    }
    out.trim_end_matches('_').to_string()
}

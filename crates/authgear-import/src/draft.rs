//! Drafts a mapping file from column names: recognises the obvious names
//! (`Email`, `Email Verified`, `Password Hash`, ...) and, through `presets`,
//! the export formats of Auth0, Firebase, Cognito, Keycloak, Supabase,
//! Django and Devise.
//!
//! Names are compared after lower-casing and dropping everything that is not
//! a letter or digit, so `Email Verified`, `email_verified` and
//! `emailVerified` are one name.

use std::fmt::Write as _;

use super::presets::{self, Preset};

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

/// Picks the identifier from the drafted targets: email when there is an
/// email column, else username, else phone.
pub fn pick_identifier(targets: &[Option<String>]) -> &'static str {
    let has = |t: &str| targets.iter().flatten().any(|x| x.split(':').next() == Some(t));
    if has("email") {
        "email"
    } else if has("preferred_username") {
        "preferred_username"
    } else if has("phone_number") {
        "phone_number"
    } else {
        "email"
    }
}

fn quote(s: &str) -> String {
    // TOML basic strings use JSON-compatible escapes for what a header can hold.
    serde_json::Value::String(s.to_string()).to_string()
}

/// What the draft knows about the input besides its column names.
#[derive(Debug, Default)]
pub struct Sample {
    /// Columns whose values are JSON objects (an address, nested metadata).
    pub objects: Vec<String>,
    /// For object columns: the keys seen in them, in order of appearance.
    pub keys: Vec<(String, Vec<String>)>,
}

fn target_of(c: &str, preset: Option<Preset>, sample: &Sample) -> Option<String> {
    if let Some(t) = preset.and_then(|p| p.target(c)) {
        return Some(t.to_string());
    }
    let metadata = if preset == Some(Preset::Auth0) { c.strip_prefix("user_metadata.").or_else(|| c.strip_prefix("app_metadata.")) } else { None };
    if let Some(name) = c.strip_prefix("custom:").or(metadata) {
        // Cognito's custom attributes, and Auth0 metadata exported as columns.
        let n = snake(name);
        if super::schema::is_attribute_name(&n) {
            return Some(format!("custom_attributes.{n}"));
        }
    }
    match recognize(c) {
        Some("address.formatted") if sample.objects.iter().any(|o| o == c) => Some("address".into()),
        t => t.map(str::to_string),
    }
}

/// Writes a commented mapping file for the given columns, for an export of
/// `preset` (detected from the columns when not given).
pub fn draft(columns: &[String], sample: &Sample, preset: Option<Preset>, password_hashes: Option<&str>) -> String {
    let preset = preset.or_else(|| presets::detect(columns));
    let targets: Vec<Option<String>> = columns.iter().map(|c| target_of(c, preset, sample)).collect();
    let mut out = String::new();
    let _ = writeln!(out, "# Mapping drafted by `authgear-import mapping` — review before use.");
    let _ = writeln!(out, "# Source: {}.", preset.map_or("generic table", Preset::label));
    for n in preset.map_or(&[][..], Preset::notes) {
        let _ = writeln!(out, "# {n}");
    }
    let _ = writeln!(out, "# Targets: record fields (email, name, roles, ...), nested fields (password.password_hash,");
    let _ = writeln!(out, "# address.locality, custom_attributes.KEY[:integer|:number|:boolean]), custom_attributes.*");
    let _ = writeln!(out, "# (every key of an object column), `:not` / `:present` for booleans, or \"-\" to drop.");
    if let Some(p) = preset {
        let _ = writeln!(out, "preset = {}", quote(p.name()));
    }
    let _ = writeln!(out, "identifier = {}", quote(pick_identifier(&targets)));
    let _ = writeln!(out, "list_separator = \",\"");
    let _ = writeln!(out, "# Columns not listed below are kept as-is and rejected as unknown keys.");
    let _ = writeln!(out, "unmapped = \"keep\"");
    match (preset, password_hashes) {
        (Some(Preset::Firebase), _) => {
            let _ = writeln!(out, "default_password_type = \"firebase-scrypt\"");
        }
        (Some(Preset::Auth0), Some(f)) => {
            let _ = writeln!(out, "password_hashes = {}", quote(f));
        }
        (Some(Preset::Auth0), None) => {
            let _ = writeln!(out, "# password_hashes = \"auth0-password-hashes.ndjson\"");
        }
        _ => {}
    }
    let _ = writeln!(out, "# Login ID settings, when the project changed them from Authgear's defaults:");
    let _ = writeln!(out, "# [login_id]");
    let _ = writeln!(out, "# email_case_sensitive = false, email_ignore_dot_sign = false, username_case_sensitive = false,");
    let _ = writeln!(out, "# username_ascii_only = true, phone_validation = \"is_valid_number\"  # or \"is_possible_number\"");
    let _ = writeln!(out, "\n[columns]");
    if preset == Some(Preset::Auth0) && !columns.iter().any(|c| c == "passwordHash") {
        // The column the password hash file adds to each row it has a hash for.
        let hash_line = "\"passwordHash\" = \"password.password_hash\"  # from password_hashes";
        let _ = writeln!(out, "{}{hash_line}", if password_hashes.is_some() { "" } else { "# " });
    }
    for (c, target) in columns.iter().zip(&targets) {
        match target.as_deref() {
            Some("-") => {
                let _ = writeln!(out, "{} = \"-\"  # not importable", quote(c));
            }
            Some("custom_attributes.*") => {
                let keys = sample.keys.iter().find(|(k, _)| k == c).map(|(_, v)| v.join(", ")).unwrap_or_default();
                let seen = if keys.is_empty() { String::new() } else { format!(" (seen: {keys})") };
                let _ = writeln!(out, "{} = \"custom_attributes.*\"  # each key a custom attribute{seen}", quote(c));
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

/// `favoriteColor` / `Shoe Size` as `favorite_color` / `shoe_size`.
pub fn snake(name: &str) -> String {
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

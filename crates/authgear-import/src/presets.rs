//! Source presets: the export formats of the systems people leave, turned
//! into flat columns that a drafted mapping then names.
//!
//! A preset knows where the records sit in its JSON export, the columns of a
//! header-less CSV, how to reshape one row (Cognito's attribute list,
//! Keycloak's credentials, Django's `algorithm$...` passwords, an Auth0
//! password-hash file joined by user id) and which target each of its
//! columns gets.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;

use serde_json::{Map, Value};

use super::ImportError;

/// A system whose export format is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[clap(rename_all = "lowercase")]
pub enum Preset {
    /// Auth0: user export job (NDJSON or CSV) or the bulk-export extension's JSON.
    Auth0,
    /// Firebase: `firebase auth:export` JSON (`{"users": [...]}`) or its header-less CSV.
    Firebase,
    /// Amazon Cognito: `ListUsers` JSON (`{"Users": [...]}`) or the user pool CSV.
    Cognito,
    /// Keycloak: realm or users export JSON (`{"users": [...]}`).
    Keycloak,
    /// Supabase / GoTrue: `auth.users` dumped as CSV.
    Supabase,
    /// Django: `auth_user` dumped as CSV.
    Django,
    /// Rails Devise: the `users` table dumped as CSV.
    Devise,
}

/// The 26 columns of Firebase's header-less CSV export, in order.
const FIREBASE_CSV: &[&str] = &[
    "UID",
    "Email",
    "Email Verified",
    "Password Hash",
    "Password Salt",
    "Name",
    "Photo URL",
    "Google ID",
    "Google Email",
    "Google Display Name",
    "Google Photo URL",
    "Facebook ID",
    "Facebook Email",
    "Facebook Display Name",
    "Facebook Photo URL",
    "Twitter ID",
    "Twitter Email",
    "Twitter Display Name",
    "Twitter Photo URL",
    "GitHub ID",
    "GitHub Email",
    "GitHub Display Name",
    "GitHub Photo URL",
    "User Creation Time",
    "Last Sign-In Time",
    "Phone Number",
];

const DROP: &str = "-";

impl Preset {
    /// The preset's name as written in mapping files.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Auth0 => "auth0",
            Preset::Firebase => "firebase",
            Preset::Cognito => "cognito",
            Preset::Keycloak => "keycloak",
            Preset::Supabase => "supabase",
            Preset::Django => "django",
            Preset::Devise => "devise",
        }
    }

    /// A human label for the draft's header.
    pub fn label(self) -> &'static str {
        match self {
            Preset::Auth0 => "Auth0 user export",
            Preset::Firebase => "Firebase auth:export",
            Preset::Cognito => "Amazon Cognito user pool export",
            Preset::Keycloak => "Keycloak realm export",
            Preset::Supabase => "Supabase (GoTrue auth.users) CSV dump",
            Preset::Django => "Django auth_user CSV dump",
            Preset::Devise => "Devise users CSV dump",
        }
    }

    /// The key of the records array in the JSON export, if it is wrapped.
    pub fn records_key(self) -> Option<&'static str> {
        match self {
            Preset::Firebase | Preset::Keycloak => Some("users"),
            Preset::Cognito => Some("Users"),
            _ => None,
        }
    }

    /// Column names of a CSV export that has no header line.
    pub fn csv_headers(self) -> Option<&'static [&'static str]> {
        match self {
            Preset::Firebase => Some(FIREBASE_CSV),
            _ => None,
        }
    }

    /// Comments for the top of a drafted mapping.
    pub fn notes(self) -> &'static [&'static str] {
        match self {
            Preset::Auth0 => &[
                "Auth0 exports carry no password hashes; ask Auth0 support for the password hash export",
                "(NDJSON keyed by _id) and set password_hashes below: its bcrypt hashes import as they are.",
                "user_metadata and app_metadata keys become custom attributes; create them in the portal first.",
            ],
            Preset::Firebase => &[
                "Firebase hashes are Firebase's modified scrypt, which Authgear cannot import: run with",
                "--non-bcrypt without-password (users then reset their password) or --non-bcrypt skip.",
                "customAttributes keys become custom attributes; create them in the portal first.",
            ],
            Preset::Cognito => &[
                "Cognito exports carry no password hashes: every user needs a password reset after import.",
                "custom:* attributes become custom attributes; create them in the portal first.",
            ],
            Preset::Keycloak => &[
                "Keycloak hashes (pbkdf2-sha256 by default) cannot be imported into Authgear: run with",
                "--non-bcrypt without-password or --non-bcrypt skip. User attributes become custom attributes.",
            ],
            Preset::Supabase => &[
                "encrypted_password is bcrypt and imports as it is; users who signed in with OAuth have none.",
                "raw_user_meta_data keys become custom attributes; create them in the portal first.",
            ],
            Preset::Django => &[
                "Only Django's `bcrypt$` hashes import; pbkdf2_sha256, argon2 and bcrypt_sha256 follow --non-bcrypt.",
                "Unusable passwords (starting with `!`) are left out.",
            ],
            Preset::Devise => &["encrypted_password is bcrypt and imports as it is."],
        }
    }

    /// The target a column of this preset's (reshaped) rows gets, if the preset knows it.
    pub fn target(self, column: &str) -> Option<&'static str> {
        let t = match self {
            Preset::Auth0 => match column {
                "email" => "email",
                "email_verified" => "email_verified",
                "username" => "preferred_username",
                "phone_number" => "phone_number",
                "phone_verified" => "phone_number_verified",
                "name" => "name",
                "given_name" => "given_name",
                "family_name" => "family_name",
                "nickname" => "nickname",
                "picture" => "picture",
                "blocked" => "disabled",
                "user_metadata" | "app_metadata" => "custom_attributes.*",
                "passwordHash" => "password.password_hash",
                "user_id" | "created_at" | "updated_at" | "last_login" | "logins_count" | "identities" | "last_ip" | "multifactor" | "last_password_reset" => {
                    DROP
                }
                _ => return None,
            },
            Preset::Firebase => match column {
                "email" | "Email" => "email",
                "emailVerified" | "Email Verified" => "email_verified",
                "displayName" | "Name" => "name",
                "photoUrl" | "Photo URL" => "picture",
                "phoneNumber" | "Phone Number" => "phone_number",
                "disabled" => "disabled",
                "passwordHash" | "Password Hash" => "password.password_hash",
                "customAttributes" => "custom_attributes.*",
                c if FIREBASE_CSV.contains(&c) => DROP,
                "localId" | "salt" | "createdAt" | "lastSignedInAt" | "lastRefreshAt" | "providerUserInfo" | "passwordUpdatedAt" | "validSince" => DROP,
                _ => return None,
            },
            Preset::Cognito => match column {
                "email"
                | "email_verified"
                | "phone_number"
                | "phone_number_verified"
                | "name"
                | "given_name"
                | "family_name"
                | "middle_name"
                | "nickname"
                | "preferred_username"
                | "profile"
                | "picture"
                | "website"
                | "gender"
                | "birthdate"
                | "zoneinfo"
                | "locale" => {
                    return Some(cognito_same(column));
                }
                "address" => "address.formatted",
                "Enabled" => "disabled:not",
                "Username"
                | "cognito:username"
                | "sub"
                | "UserStatus"
                | "UserCreateDate"
                | "UserLastModifiedDate"
                | "cognito:mfa_enabled"
                | "updated_at"
                | "MFAOptions" => DROP,
                _ => return None,
            },
            Preset::Keycloak => match column {
                "username" => "preferred_username",
                "email" => "email",
                "emailVerified" => "email_verified",
                "firstName" => "given_name",
                "lastName" => "family_name",
                "enabled" => "disabled:not",
                "password_hash" => "password.password_hash",
                "password_algorithm" => "password.type",
                "realmRoles" => "roles",
                "groups" => "groups",
                "attributes" => "custom_attributes.*",
                "id"
                | "createdTimestamp"
                | "totp"
                | "requiredActions"
                | "notBefore"
                | "federatedIdentities"
                | "disableableCredentialTypes"
                | "clientRoles"
                | "serviceAccountClientId"
                | "self"
                | "origin"
                | "federationLink"
                | "access" => DROP,
                _ => return None,
            },
            Preset::Supabase => match column {
                "email" => "email",
                "encrypted_password" => "password.password_hash",
                "email_confirmed_at" => "email_verified:present",
                "phone" => "phone_number:e164",
                "phone_confirmed_at" => "phone_number_verified:present",
                "raw_user_meta_data" => "custom_attributes.*",
                _ => DROP,
            },
            Preset::Django => match column {
                "username" => "preferred_username",
                "email" => "email",
                "first_name" => "given_name",
                "last_name" => "family_name",
                "is_active" => "disabled:not",
                "password_hash" => "password.password_hash",
                "password_algorithm" => "password.type",
                _ => DROP,
            },
            Preset::Devise => match column {
                "email" => "email",
                "encrypted_password" => "password.password_hash",
                "confirmed_at" => "email_verified:present",
                "locked_at" => "disabled:present",
                "username" => "preferred_username",
                _ => DROP,
            },
        };
        Some(t)
    }

    /// Reshapes one row into the flat columns `target` names.
    pub fn prepare(self, row: &mut Map<String, Value>, hashes: Option<&HashMap<String, String>>) {
        match self {
            Preset::Auth0 => {
                if let (Some(hashes), Some(Value::String(id))) = (hashes, row.get("user_id")) {
                    let key = id.strip_prefix("auth0|").unwrap_or(id);
                    if let Some(h) = hashes.get(key) {
                        row.insert("passwordHash".into(), Value::String(h.clone()));
                    }
                }
            }
            Preset::Cognito => {
                // ListUsers gives `Attributes: [{Name, Value}]`; the CSV has them as columns.
                if let Some(Value::Array(attrs)) = row.remove("Attributes") {
                    for a in attrs {
                        if let (Some(Value::String(n)), Some(v)) = (a.get("Name"), a.get("Value")) {
                            row.insert(n.clone(), v.clone());
                        }
                    }
                }
            }
            Preset::Keycloak => keycloak(row),
            Preset::Django => django(row),
            Preset::Firebase | Preset::Supabase | Preset::Devise => {}
        }
    }
}

fn cognito_same(column: &str) -> &'static str {
    // The standard OIDC attributes carry Authgear's own names.
    super::schema::RECORD_FIELDS.iter().copied().find(|f| *f == column).unwrap_or(DROP)
}

/// Keycloak keeps the hash in `credentials[].secretData` and the algorithm in
/// `credentialData`, both JSON text; attributes are lists of strings.
fn keycloak(row: &mut Map<String, Value>) {
    if let Some(Value::Array(creds)) = row.remove("credentials") {
        let pw = creds.iter().find(|c| c.get("type").and_then(Value::as_str) == Some("password"));
        if let Some(pw) = pw {
            let parse = |k: &str| pw.get(k).and_then(Value::as_str).and_then(|t| serde_json::from_str::<Value>(t).ok());
            if let Some(secret) = parse("secretData").and_then(|s| s.get("value").cloned()) {
                row.insert("password_hash".into(), secret);
                let algo = parse("credentialData").and_then(|d| d.get("algorithm").cloned()).unwrap_or(Value::String("pbkdf2-sha256".into()));
                row.insert("password_algorithm".into(), algo);
            }
        }
    }
    if let Some(Value::Object(attrs)) = row.get_mut("attributes") {
        for v in attrs.values_mut() {
            if let Value::Array(items) = v {
                if items.len() == 1 {
                    *v = items.remove(0);
                }
            }
        }
    }
    if let Some(Value::Array(roles)) = row.get_mut("realmRoles") {
        // Every Keycloak user holds the realm's built-in composite role.
        roles.retain(|r| !r.as_str().is_some_and(|s| s.starts_with("default-roles-")));
    }
    if let Some(Value::Array(groups)) = row.get_mut("groups") {
        // Keycloak names groups by path (`/staff`); Authgear by key.
        for g in groups.iter_mut() {
            if let Value::String(s) = g {
                if let Some(rest) = s.strip_prefix('/') {
                    *s = rest.to_string();
                }
            }
        }
    }
}

/// Django stores `algorithm$...`; only `bcrypt$<bcrypt hash>` is plain bcrypt.
fn django(row: &mut Map<String, Value>) {
    let Some(Value::String(pw)) = row.remove("password") else { return };
    let pw = pw.trim();
    if pw.is_empty() || pw.starts_with('!') {
        return;
    }
    let (algo, hash) = match pw.split_once('$') {
        Some(("bcrypt", h)) => ("bcrypt", h.to_string()),
        Some((a, _)) => (a, pw.to_string()),
        None => ("unknown", pw.to_string()),
    };
    row.insert("password_algorithm".into(), Value::String(algo.to_string()));
    row.insert("password_hash".into(), Value::String(hash));
}

/// Loads Auth0's password hash export (NDJSON, `{"_id": {"$oid": ...}, "passwordHash": ...}`)
/// keyed by the id that follows `auth0|` in a user id.
pub fn load_auth0_hashes(path: &Path) -> Result<HashMap<String, String>, ImportError> {
    let file = std::fs::File::open(path).map_err(|e| ImportError::io(format!("open {}", path.display()), e))?;
    let mut out = HashMap::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| ImportError::io(format!("read {}", path.display()), e))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(&line).map_err(|_| ImportError::Input(format!("{} line {}: not a JSON object", path.display(), i + 1)))?;
        let id = match v.get("_id") {
            Some(Value::Object(o)) => o.get("$oid").and_then(Value::as_str),
            Some(Value::String(s)) => Some(s.as_str()),
            _ => None,
        };
        if let (Some(id), Some(hash)) = (id, v.get("passwordHash").and_then(Value::as_str)) {
            out.insert(id.strip_prefix("auth0|").unwrap_or(id).to_string(), hash.to_string());
        }
    }
    Ok(out)
}

/// Guesses the preset from column names (the exports that carry a header).
pub fn detect(columns: &[String]) -> Option<Preset> {
    let has = |n: &str| columns.iter().any(|c| c == n);
    if has("cognito:username") || has("cognito:mfa_enabled") || has("UserStatus") {
        Some(Preset::Cognito)
    } else if has("localId") || has("providerUserInfo") {
        Some(Preset::Firebase)
    } else if has("user_id") && (has("identities") || has("blocked") || has("user_metadata") || has("logins_count")) {
        Some(Preset::Auth0)
    } else if has("encrypted_password") && has("raw_user_meta_data") {
        Some(Preset::Supabase)
    } else if has("credentials") && has("createdTimestamp") || has("firstName") && has("emailVerified") && has("enabled") {
        Some(Preset::Keycloak)
    } else if has("is_superuser") && has("date_joined") {
        Some(Preset::Django)
    } else if has("encrypted_password") && has("sign_in_count") {
        Some(Preset::Devise)
    } else {
        None
    }
}

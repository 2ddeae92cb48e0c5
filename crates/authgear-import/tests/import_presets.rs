//! `mapping --from NAME`: drafts for the exports of Auth0, Firebase, Cognito,
//! Keycloak, Supabase, Django and Devise, tried on fixtures written to each
//! system's documented export format (`tests/fixtures/presets/`), then
//! validated with the draft as drafted.

#[path = "support/mod.rs"]
mod support;

use std::path::Path;

use serde_json::{json, Value};
use support::*;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/presets");

struct Drafted {
    draft: String,
    stderr: String,
    code: Option<i32>,
    records: Vec<Value>,
}

/// Copies the fixture, drafts a mapping with `--from`, validates with it.
fn draft_and_validate(fixture: &str, from: &str, mapping_extra: &[&str], validate_extra: &[&str]) -> Drafted {
    let dir = scratch(&format!("preset-{from}"));
    let src = Path::new(FIXTURES).join(fixture);
    let name = src.file_name().and_then(|n| n.to_str()).expect("name").to_string();
    std::fs::copy(&src, dir.join(&name)).expect("copy fixture");
    let mut args = vec!["mapping", "--input", &name, "--from", from, "--output", "m.toml"];
    args.extend_from_slice(mapping_extra);
    let out = cli(&dir, &args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let draft = std::fs::read_to_string(dir.join("m.toml")).expect("draft");
    let mut args = vec!["validate", "--input", &name, "--mapping", "m.toml", "--write-batches", "b"];
    args.extend_from_slice(validate_extra);
    let out = cli(&dir, &args);
    let records = std::fs::read(dir.join("b/batch-000001.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v["records"].as_array().cloned())
        .unwrap_or_default();
    Drafted { draft, stderr: String::from_utf8_lossy(&out.stderr).into_owned(), code: out.status.code(), records }
}

fn hashes_path() -> String {
    Path::new(FIXTURES).join("auth0/password-hashes.ndjson").display().to_string()
}

#[test]
fn auth0_export_joins_the_password_hash_file_and_spreads_metadata() {
    let hashes = hashes_path();
    let d = draft_and_validate("auth0/users.ndjson", "auth0", &["--password-hashes", &hashes], &[]);
    assert_eq!(d.code, Some(0), "{}\n{}", d.draft, d.stderr);
    assert!(d.draft.contains("preset = \"auth0\"") && d.draft.contains("\"passwordHash\" = \"password.password_hash\""), "{}", d.draft);
    assert!(d.draft.contains("\"user_metadata\" = \"custom_attributes.*\"") && d.draft.contains("seen: favoriteColor, plan, preferences"), "{}", d.draft);
    assert!(d.draft.contains("\"blocked\" = \"disabled\"") && d.draft.contains("\"username\" = \"preferred_username\""));
    let alice = &d.records[0];
    assert_eq!(alice["email"], "alice@example.com");
    assert_eq!(alice["preferred_username"], "alice", "case-folded as Authgear stores it");
    assert_eq!(alice["password"]["type"], "bcrypt");
    assert!(alice["password"]["password_hash"].as_str().is_some_and(|h| h.starts_with("$2b$10$")), "joined by user id");
    assert_eq!(alice["custom_attributes"], json!({"plan": "pro", "favorite_color": "blue", "tier": 2}));
    assert_eq!(d.records[1]["email"], "bob@example.com", "normalized");
    assert_eq!(d.records[1]["disabled"], true);
    assert!(d.records[2].get("password").is_none(), "a social user has no hash in the file");
    // What had no place is counted by key, not silently dropped.
    assert!(d.stderr.contains("no place in Authgear"), "{}", d.stderr);
    assert!(d.stderr.contains("1 x app_metadata.roles") && d.stderr.contains("1 x user_metadata.preferences"), "{}", d.stderr);

    // The export job's CSV (metadata as dotted columns) and the bulk-export extension's JSON.
    let d = draft_and_validate("auth0/users.csv", "auth0", &[], &[]);
    assert_eq!(d.code, Some(0), "{}", d.stderr);
    assert!(d.draft.contains("\"user_metadata.plan\" = \"custom_attributes.plan\""), "{}", d.draft);
    assert!(d.draft.contains("# \"passwordHash\""), "without a hash file the line is a hint: {}", d.draft);
    assert_eq!(d.records[1]["custom_attributes"], json!({"plan": "free"}));
    let d = draft_and_validate("auth0/bulk-extension.json", "auth0", &[], &[]);
    assert_eq!(d.code, Some(0), "{}", d.stderr);
    assert_eq!(d.records.len(), 2);
}

#[test]
fn firebase_scrypt_hashes_follow_the_non_bcrypt_policy_with_a_count() {
    let d = draft_and_validate("firebase/users.json", "firebase", &[], &[]);
    assert_eq!(d.code, Some(2), "scrypt is refused by default: {}", d.stderr);
    assert!(d.stderr.contains("non-bcrypt hashes:    1"), "{}", d.stderr);
    assert!(d.draft.contains("default_password_type = \"firebase-scrypt\"") && d.draft.contains("--non-bcrypt"), "{}", d.draft);
    let d = draft_and_validate("firebase/users.json", "firebase", &[], &["--non-bcrypt", "without-password"]);
    assert_eq!(d.code, Some(0), "{}", d.stderr);
    assert!(d.stderr.contains("need password reset:  1"), "{}", d.stderr);
    assert_eq!(
        d.records[0],
        json!({"email": "dana@example.com", "email_verified": true, "name": "Dana", "phone_number": "+12015550123",
               "picture": "https://example.com/dana.png", "custom_attributes": {"role": "editor", "level": 3}})
    );
    assert!(d.stderr.contains("1 x customAttributes.flags"), "{}", d.stderr);
    assert_eq!(d.records[1]["disabled"], true);

    // The header-less CSV export: its 26 columns are known by position.
    let d = draft_and_validate("firebase/users.csv", "firebase", &[], &["--non-bcrypt", "skip"]);
    assert_eq!(d.code, Some(0), "{}", d.stderr);
    assert!(d.draft.contains("\"Password Hash\" = \"password.password_hash\"") && d.draft.contains("\"Google ID\" = \"-\""), "{}", d.draft);
    assert!(d.stderr.contains("skipped by policy:    1"), "{}", d.stderr);
    assert_eq!(d.records, vec![json!({"email": "eve@example.com", "email_verified": false, "name": "Eve"})]);
}

#[test]
fn cognito_list_users_json_and_console_csv() {
    let d = draft_and_validate("cognito/list-users.json", "cognito", &[], &[]);
    assert_eq!(d.code, Some(0), "{}\n{}", d.draft, d.stderr);
    assert!(d.draft.contains("\"Enabled\" = \"disabled:not\"") && d.draft.contains("\"custom:plan\" = \"custom_attributes.plan\""), "{}", d.draft);
    assert_eq!(
        d.records[0],
        json!({"email": "frank@example.com", "email_verified": true, "given_name": "Frank", "phone_number": "+447400123456",
               "phone_number_verified": false, "disabled": false, "custom_attributes": {"plan": "team"}})
    );
    assert_eq!(d.records[1]["disabled"], true, "Enabled: false");
    assert!(d.records.iter().all(|r| r.get("password").is_none()));

    let d = draft_and_validate("cognito/users.csv", "cognito", &[], &[]);
    assert_eq!(d.code, Some(0), "{}", d.stderr);
    assert!(d.draft.contains("\"cognito:username\" = \"-\""), "{}", d.draft);
    assert_eq!(d.records[0]["address"], json!({"formatted": "1 Road"}));
    assert_eq!(d.records[0]["zoneinfo"], "Europe/London");
}

#[test]
fn keycloak_realm_export_finds_its_users_and_reads_credentials() {
    let d = draft_and_validate("keycloak/realm-export.json", "keycloak", &[], &["--non-bcrypt", "without-password"]);
    assert_eq!(d.code, Some(0), "{}\n{}", d.draft, d.stderr);
    assert!(d.stderr.contains("non-bcrypt hashes:    1") && d.stderr.contains("need password reset:  1"), "{}", d.stderr);
    assert!(d.draft.contains("\"password_algorithm\" = \"password.type\"") && d.draft.contains("\"enabled\" = \"disabled:not\""), "{}", d.draft);
    assert_eq!(
        d.records[0],
        json!({"email": "heidi@example.com", "email_verified": true, "given_name": "Heidi", "family_name": "Klum", "preferred_username": "heidi",
               "disabled": false, "roles": ["staff"], "groups": ["engineering"], "custom_attributes": {"department": "sales"}})
    );
    assert!(d.stderr.contains("1 x attributes.aliases"), "a multi-valued attribute has no place: {}", d.stderr);
    assert_eq!(d.records[1]["disabled"], true);
}

#[test]
fn supabase_django_and_devise_dumps_import_their_bcrypt_hashes() {
    let d = draft_and_validate("supabase/auth-users.csv", "supabase", &[], &[]);
    assert_eq!(d.code, Some(0), "{}\n{}", d.draft, d.stderr);
    let judy = &d.records[0];
    assert_eq!(judy["password"]["type"], "bcrypt");
    assert_eq!(judy["phone_number"], "+85251234567", "GoTrue keeps phones without +");
    assert_eq!(judy["email_verified"], true);
    assert_eq!(judy["phone_number_verified"], true);
    assert_eq!(judy["custom_attributes"], json!({"full_name": "Judy Hopps", "newsletter": true}));
    assert!(d.stderr.contains("1 x raw_user_meta_data.address"), "{}", d.stderr);
    assert!(d.records[1].get("password").is_none() && d.records[1].get("email_verified").is_none(), "{:?}", d.records[1]);

    let d = draft_and_validate("django/auth_user.csv", "django", &[], &["--non-bcrypt", "without-password"]);
    assert_eq!(d.code, Some(0), "{}\n{}", d.draft, d.stderr);
    assert!(d.stderr.contains("non-bcrypt hashes:    2"), "pbkdf2_sha256 and bcrypt_sha256: {}", d.stderr);
    let brian = d.records.iter().find(|r| r["email"] == "brian@example.com").expect("brian");
    assert!(brian["password"]["password_hash"].as_str().is_some_and(|h| h.starts_with("$2a$")), "`bcrypt$` prefix removed: {brian}");
    let ken = d.records.iter().find(|r| r["email"] == "ken@example.com").expect("ken");
    assert_eq!(ken["disabled"], true, "is_active = f");
    assert!(ken.get("password").is_none());
    let dennis = d.records.iter().find(|r| r["email"] == "dennis@example.com").expect("dennis");
    assert!(dennis.get("password").is_none(), "an unusable password is left out");
    assert_eq!(d.records[0]["preferred_username"], "adal");

    let d = draft_and_validate("devise/users.csv", "devise", &[], &[]);
    assert_eq!(d.code, Some(0), "{}", d.stderr);
    assert_eq!(d.records[0]["email_verified"], true, "confirmed_at");
    assert_eq!(d.records[1]["disabled"], true, "locked_at");
    assert!(d.records.iter().all(|r| r["password"]["type"] == "bcrypt"));
}

#[test]
fn presets_are_recognised_without_from_when_the_header_says_so() {
    let dir = scratch("preset-detect");
    std::fs::copy(Path::new(FIXTURES).join("supabase/auth-users.csv"), dir.join("dump.csv")).expect("copy");
    let out = cli(&dir, &["mapping", "--input", "dump.csv"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let draft = String::from_utf8_lossy(&out.stdout);
    assert!(draft.contains("preset = \"supabase\"") && draft.contains("\"phone\" = \"phone_number:e164\""), "{draft}");
}

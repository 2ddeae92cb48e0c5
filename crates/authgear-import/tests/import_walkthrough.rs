//! The docs/IMPORT.md walkthrough, step by step, on the seed's two-user table
//! (examples/users.csv): mapping -> validate -> run -> resume.

#[path = "support/mod.rs"]
mod support;

use serde_json::{json, Value};
use support::*;

#[test]
fn seed_table_goes_through_mapping_validate_run_and_resume() {
    let server = MockServer::start();
    let dir = scratch("walkthrough");
    let seed = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/users.csv");
    std::fs::copy(seed, dir.join("users.csv")).expect("copy seed table");

    // 1. Draft the mapping.
    let out = cli(&dir, &["mapping", "--input", "users.csv", "--output", "mapping.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let mapping = std::fs::read_to_string(dir.join("mapping.toml")).expect("mapping");
    assert!(mapping.contains("\"Password Type\" = \"password.type\""));

    // 2. Dry run: both rows valid, and the body is the seed's step-2 JSON.
    let out = cli(&dir, &["validate", "--input", "users.csv", "--mapping", "mapping.toml", "--write-batches", "batches"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let body: Value = serde_json::from_slice(&std::fs::read(dir.join("batches/batch-000001.json")).expect("batch")).expect("json");
    let pw = json!({"type": "bcrypt", "password_hash": HASH});
    assert_eq!(
        body,
        json!({"identifier": "email", "upsert": false, "records": [
            {"email": "user1@example.com", "email_verified": true, "password": pw},
            {"email": "user2@example.com", "email_verified": false, "name": "John Doe", "given_name": "John",
             "family_name": "Doe", "password": pw}
        ]})
    );
    assert!(server.lock().log.is_empty(), "validate sends nothing");

    // 3. Import.
    let base = run_args(&server, "users.csv");
    let mut a: Vec<&str> = base.iter().map(String::as_str).collect();
    a.extend(["--mapping", "mapping.toml", "--report", "report.csv"]);
    let out = cli(&dir, &a);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report = read_report(&dir.join("report.csv"));
    assert_one_outcome_per_line(&report, 2..=3);
    assert!(report.iter().all(|r| r["outcome"] == "inserted" && r["user_id"].starts_with("user-")));
    assert_eq!(server.lock().users["user2@example.com"].1["name"], "John Doe");

    // 4. Resume on a finished journal: nothing is sent again, the report stays the same.
    let posts = server.lock().log.len();
    let out = cli(&dir, &["resume", "--journal", "report.journal.jsonl", "--key-file", "admin-key.pem"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(server.lock().log.len(), posts);
    assert_eq!(read_report(&dir.join("report.csv")), report);
}

//! `validate` and `mapping`: the dry run catches bad rows, and drafts fit known exports.

#[path = "support/mod.rs"]
mod support;

use serde_json::Value;
use support::*;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn validate_reports_each_bad_row_and_run_sends_nothing() {
    let dir = scratch("invalid");
    let low_cost = HASH.replacen("$10$", "$03$", 1);
    let rows = [
        "Email,Phone,Password Hash,Password Type".to_string(),
        format!("user1@example.com,+85298765432,{HASH},bcrypt"),             // 2 ok
        format!("not-an-email,,{HASH},bcrypt"),                              // 3 bad email
        format!(" USER1@Example.com ,,{HASH},bcrypt"),                       // 4 duplicate of 2
        format!("cost@example.com,,{low_cost},bcrypt"),                      // 5 cost 3
        format!("phone@example.com,98765432,{HASH},bcrypt"),                 // 6 not E.164
        "md5@example.com,,5f4dcc3b5aa765d61d8327deb882cf99,md5".to_string(), // 7 non-bcrypt
        "short@example.com,,$2a$10$tooshort,bcrypt".to_string(),             // 8 malformed bcrypt
        "user9@example.com,,,".to_string(),                                  // 9 ok, no password
    ];
    std::fs::write(dir.join("users.csv"), rows.join("\n") + "\n").expect("write");
    let out = cli(&dir, &["validate", "--input", "users.csv", "--report", "problems.jsonl"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = stderr(&out);
    assert!(err.contains("rows read:            8"), "{err}");
    assert!(err.contains("invalid:              6 (1 duplicate identifier(s)"), "{err}");
    assert!(!err.contains("$2a$"), "hashes must not be printed");

    let report: Vec<Value> =
        std::fs::read_to_string(dir.join("problems.jsonl")).expect("report").lines().map(|l| serde_json::from_str(l).expect("json line")).collect();
    let errors_of = |line: u64| -> String {
        let r = report.iter().find(|r| r["line"] == line).unwrap_or_else(|| panic!("line {line} missing"));
        assert_eq!(r["outcome"], "invalid");
        r["errors"].to_string()
    };
    assert!(errors_of(3).contains("not a valid email"));
    assert!(errors_of(4).contains("same as line 2"));
    assert!(errors_of(5).contains("cost 3"));
    assert!(errors_of(6).contains("E.164"));
    assert!(errors_of(7).contains("not bcrypt"));
    assert!(errors_of(8).contains("not a bcrypt hash"));
    assert_eq!(report.len(), 6, "valid rows are not problems");
    assert!(!std::fs::read_to_string(dir.join("problems.jsonl")).expect("report").contains("tooshort"));

    // `run` refuses before any request, and `--skip-invalid` sends only the good rows.
    let server = MockServer::start();
    let base = run_args(&server, "users.csv");
    let a: Vec<&str> = base.iter().map(String::as_str).collect();
    let out = cli(&dir, &a);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(stderr(&out).contains("refusing to start"));
    assert!(server.lock().log.is_empty(), "no request may be sent");
    assert!(!dir.join("users.report.journal.jsonl").exists());

    let mut a2 = a.clone();
    a2.push("--skip-invalid");
    let out = cli(&dir, &a2);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let mut users: Vec<String> = server.lock().users.keys().cloned().collect();
    users.sort();
    assert_eq!(users, ["user1@example.com", "user9@example.com"]);
    assert_one_outcome_per_line(&read_report(&dir.join("users.report.csv")), 2..=9);
}

#[test]
fn write_batches_holds_the_exact_capped_bodies() {
    let dir = scratch("batches");
    users_csv(&dir.join("users.csv"), 300, &[]);
    let out = cli(&dir, &["validate", "--input", "users.csv", "--max-batch-bytes", "5000", "--write-batches", "out"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let mut files: Vec<_> = std::fs::read_dir(dir.join("out")).expect("dir").map(|e| e.expect("entry").path()).collect();
    files.sort();
    assert!(files.len() > 10);
    let mut emails = Vec::new();
    for f in &files {
        let bytes = std::fs::read(f).expect("batch");
        assert!(bytes.len() <= 5000, "{} is {} bytes", f.display(), bytes.len());
        let v: Value = serde_json::from_slice(&bytes).expect("valid JSON");
        // Compact JSON: re-serialising gives the same bytes, so the size is exact.
        assert_eq!(serde_json::to_vec(&v).expect("encode").len(), bytes.len());
        let obj = v.as_object().expect("object");
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, ["identifier", "records", "upsert"]);
        assert_eq!(v["upsert"], false);
        for r in v["records"].as_array().expect("records") {
            assert_eq!(r["password"]["type"], "bcrypt");
            emails.push(r["email"].as_str().expect("email").to_string());
        }
    }
    let expected: Vec<String> = (0..300).map(|i| format!("user{i}@example.com")).collect();
    assert_eq!(emails, expected, "every row once, in order");
}

#[test]
fn json_inputs_stream_with_line_numbers_and_unknown_keys() {
    let dir = scratch("json");
    let json = format!(
        "[\n  {{\"email\": \"a@example.com\", \"password\": {{\"type\": \"bcrypt\", \"password_hash\": \"{HASH}\"}}}},\n  {{\"email\": \"b@example.com\", \"favourite\": \"blue\"}},\n  {{\"email\": \"c@example.com\", \"roles\": \"admin, editor\", \"email_verified\": \"yes\"}}\n]\n"
    );
    std::fs::write(dir.join("users.json"), json).expect("write");
    let out = cli(&dir, &["validate", "--input", "users.json", "--report", "r.csv", "--write-batches", "b"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let report = read_report(&dir.join("r.csv"));
    assert_eq!(report.len(), 1);
    assert_eq!(report[0]["line"], "3");
    assert!(report[0]["errors"].contains("unknown key `favourite`"));
    let body: Value = serde_json::from_slice(&std::fs::read(dir.join("b/batch-000001.json")).expect("batch")).expect("json");
    assert_eq!(body["records"][1]["roles"], serde_json::json!(["admin", "editor"]));
    assert_eq!(body["records"][1]["email_verified"], true);

    // NDJSON with a blank line: line numbers follow the file.
    std::fs::write(dir.join("users.ndjson"), "{\"email\":\"a@example.com\"}\n\n{\"email\":\"bad\"}\n").expect("write");
    let out = cli(&dir, &["validate", "--input", "users.ndjson", "--json"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let row: Value = stdout.lines().map(|l| serde_json::from_str::<Value>(l).expect("json")).find(|v| v["event"] == "row").expect("row event");
    assert_eq!(row["line"], 3);
}

#[test]
fn mapping_drafts_recognise_common_names_and_exports() {
    let dir = scratch("mapping");
    std::fs::write(dir.join("seed.csv"), "Email,Email Verified,Name,Password Hash,Shoe Size\n").expect("write");
    let out = cli(&dir, &["mapping", "--input", "seed.csv"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let draft = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(draft.contains("\"Email Verified\" = \"email_verified\""));
    assert!(draft.contains("\"Password Hash\" = \"password.password_hash\""));
    assert!(draft.contains("\"Shoe Size\" = \"-\"  # TODO"), "{draft}");
    assert!(draft.contains("custom_attributes.shoe_size"));

    let auth0 = format!(
        "{{\"user_id\":\"auth0|1\",\"email\":\"a@example.com\",\"email_verified\":true,\"username\":\"ann\",\"blocked\":false,\"passwordHash\":\"{HASH}\"}}\n"
    );
    std::fs::write(dir.join("auth0.ndjson"), auth0).expect("write");
    let draft = String::from_utf8_lossy(&cli(&dir, &["mapping", "--input", "auth0.ndjson"]).stdout).into_owned();
    assert!(draft.contains("Auth0"), "{draft}");
    assert!(draft.contains("\"blocked\" = \"disabled\"") && draft.contains("\"username\" = \"preferred_username\""));
    assert!(draft.contains("\"user_id\" = \"-\""));

    let cognito = "cognito:username,name,given_name,email,email_verified,phone_number,phone_number_verified,cognito:mfa_enabled\n";
    std::fs::write(dir.join("cognito.csv"), cognito).expect("write");
    let draft = String::from_utf8_lossy(&cli(&dir, &["mapping", "--input", "cognito.csv"]).stdout).into_owned();
    assert!(draft.contains("Cognito") && draft.contains("\"cognito:username\" = \"-\""), "{draft}");

    // Firebase: the records sit inside {"users": [...]}, hashes are scrypt.
    let fb = "{\"users\": [{\"localId\": \"x1\", \"email\": \"f@example.com\", \"emailVerified\": true, \"passwordHash\": \"c2NyeXB0\", \"salt\": \"c2FsdA==\", \"displayName\": \"Fi\"}]}";
    std::fs::write(dir.join("firebase.json"), fb).expect("write");
    let out = cli(&dir, &["mapping", "--input", "firebase.json", "--output", "fb.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let draft = std::fs::read_to_string(dir.join("fb.toml")).expect("draft");
    assert!(draft.contains("Firebase") && draft.contains("default_password_type"), "{draft}");
    // The draft is usable as is: scrypt users import without a password.
    let out = cli(&dir, &["validate", "--input", "firebase.json", "--mapping", "fb.toml", "--non-bcrypt", "without-password", "--write-batches", "fb"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(stderr(&out).contains("need password reset:  1"));
    let body: Value = serde_json::from_slice(&std::fs::read(dir.join("fb/batch-000001.json")).expect("batch")).expect("json");
    assert_eq!(body["records"][0], serde_json::json!({"email": "f@example.com", "email_verified": true, "name": "Fi"}));
    // `--output` never overwrites the user's edits.
    assert_eq!(cli(&dir, &["mapping", "--input", "firebase.json", "--output", "fb.toml"]).status.code(), Some(1));
}

#[test]
fn mapping_files_rename_convert_and_are_checked() {
    let dir = scratch("convert");
    std::fs::write(dir.join("users.csv"), "Login,Verified,Tags,Age,Legacy\n Ann ,Y,\"a; b\",42,x\nbob,0,,,y\n").expect("write");
    let mapping = "identifier = \"preferred_username\"\nlist_separator = \";\"\n[columns]\n\"Login\" = \"preferred_username\"\n\"Verified\" = \"email_verified\"\n\"Tags\" = \"roles\"\n\"Age\" = \"custom_attributes.age:integer\"\n\"Legacy\" = \"-\"\n";
    std::fs::write(dir.join("m.toml"), mapping).expect("write");
    let out = cli(&dir, &["validate", "--input", "users.csv", "--mapping", "m.toml", "--write-batches", "b"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let body: Value = serde_json::from_slice(&std::fs::read(dir.join("b/batch-000001.json")).expect("batch")).expect("json");
    assert_eq!(body["identifier"], "preferred_username");
    assert_eq!(
        body["records"][0],
        // Usernames are sent as the server stores them: case-folded.
        serde_json::json!({"preferred_username": "ann", "email_verified": true, "roles": ["a", "b"], "custom_attributes": {"age": 42}})
    );
    assert_eq!(body["records"][1], serde_json::json!({"preferred_username": "bob", "email_verified": false}));

    // A target outside the schema is a mapping error, not a silent drop.
    std::fs::write(dir.join("bad.toml"), "[columns]\n\"Login\" = \"username\"\n").expect("write");
    let out = cli(&dir, &["validate", "--input", "users.csv", "--mapping", "bad.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not a field of the import schema"));
}

//! Issue 18: `validate` must judge a record as the Authgear server does.
//! One test per disagreement the issue lists, each named by the behaviour.

#[path = "support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Each reported line's (outcome, errors, warnings).
type Rows = HashMap<u64, (String, String, String)>;

/// Validates `input` (in `dir`) with a JSONL report; returns the exit code,
/// the reported rows, and the records of the first batch.
fn validate(dir: &Path, input: &str, extra: &[&str]) -> (Option<i32>, Rows, Vec<Value>) {
    let _ = std::fs::remove_dir_all(dir.join("b"));
    let mut args = vec!["validate", "--input", input, "--report", "r.jsonl", "--write-batches", "b", "--show", "0"];
    args.extend_from_slice(extra);
    let out = cli(dir, &args);
    let report = std::fs::read_to_string(dir.join("r.jsonl")).unwrap_or_default();
    let rows = report
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("report line");
            let line = v["line"].as_u64().expect("line");
            (line, (v["outcome"].as_str().unwrap_or("").to_string(), v["errors"].to_string(), v["warnings"].to_string()))
        })
        .collect();
    let records = std::fs::read(dir.join("b/batch-000001.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v["records"].as_array().cloned())
        .unwrap_or_default();
    (out.status.code(), rows, records)
}

fn ndjson(dir: &Path, name: &str, records: &[Value]) {
    let text: String = records.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(dir.join(name), text).expect("write input");
}

#[test]
fn a_json_address_object_is_drafted_and_sent_whole() {
    let dir = scratch("address");
    let rec = json!({"email": "a1@example.com", "address": {"formatted": "1 Road", "country": "HK"}});
    ndjson(&dir, "u.ndjson", std::slice::from_ref(&rec));
    let out = cli(&dir, &["mapping", "--input", "u.ndjson", "--output", "m.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let draft = std::fs::read_to_string(dir.join("m.toml")).expect("draft");
    assert!(draft.contains("\"address\" = \"address\""), "{draft}");
    for extra in [&["--mapping", "m.toml"][..], &[][..]] {
        let (code, rows, records) = validate(&dir, "u.ndjson", extra);
        assert_eq!(code, Some(0), "{rows:?}");
        assert_eq!(records, vec![rec.clone()]);
    }
    // Each part must still be a non-empty string, as the server's address schema says.
    ndjson(&dir, "bad.ndjson", &[json!({"email": "a2@example.com", "address": {"locality": 5}})]);
    let (code, rows, _) = validate(&dir, "bad.ndjson", &[]);
    assert_eq!(code, Some(2));
    assert!(rows[&1].1.contains("address.locality: must be a string"), "{rows:?}");
}

#[test]
fn account_validity_and_password_expiry_are_accepted_fields() {
    let dir = scratch("validity");
    ndjson(
        &dir,
        "u.ndjson",
        &[
            json!({"email": "v1@example.com", "account_valid_from": "2025-01-01T00:00:00Z", "account_valid_until": "2030-06-30T23:59:59+08:00",
                   "password": {"type": "bcrypt", "password_hash": HASH, "expire_after": "2026-01-01T00:00:00Z"}}),
            json!({"email": "v2@example.com", "account_valid_until": "2030-06-30"}),
            json!({"email": "v3@example.com", "password": {"type": "bcrypt", "password_hash": HASH, "expire_after": "soon"}}),
        ],
    );
    let (code, rows, records) = validate(&dir, "u.ndjson", &[]);
    assert_eq!(code, Some(2));
    assert!(!rows.contains_key(&1), "{rows:?}");
    assert_eq!(records[0]["account_valid_from"], "2025-01-01T00:00:00Z");
    assert_eq!(records[0]["password"]["expire_after"], "2026-01-01T00:00:00Z");
    assert!(rows[&2].1.contains("account_valid_until: not an RFC 3339 date-time"), "{rows:?}");
    assert!(rows[&3].1.contains("password.expire_after: not an RFC 3339"), "{rows:?}");
}

#[test]
fn null_is_kept_where_upsert_removes_and_refused_where_the_server_refuses() {
    let dir = scratch("null");
    ndjson(
        &dir,
        "u.ndjson",
        &[
            json!({"email": "n1@example.com", "name": null, "phone_number": null, "preferred_username": null, "address": null,
                   "mfa": {"email": null, "phone_number": null}}),
            json!({"email": null}),
            json!({"email": "n3@example.com", "disabled": null}),
            json!({"email": "n4@example.com", "custom_attributes": null}),
        ],
    );
    let (code, rows, records) = validate(&dir, "u.ndjson", &["--upsert"]);
    assert_eq!(code, Some(2));
    assert!(!rows.contains_key(&1), "{rows:?}");
    assert_eq!(
        records[0],
        json!({"email": "n1@example.com", "name": null, "phone_number": null, "preferred_username": null, "address": null,
               "mfa": {"email": null, "phone_number": null}})
    );
    assert!(rows[&2].1.contains("identifier `email` cannot be null"), "{rows:?}");
    assert!(rows[&3].1.contains("disabled: cannot be null"), "{rows:?}");
    assert!(rows[&4].1.contains("custom_attributes: cannot be null"), "{rows:?}");

    // From a CSV, `empty = "null"` turns empty cells of nullable fields into null.
    std::fs::write(dir.join("u.csv"), "Email,Name,Verified\nn5@example.com,,\n").expect("write");
    std::fs::write(dir.join("m.toml"), "empty = \"null\"\n[columns]\n\"Email\" = \"email\"\n\"Name\" = \"name\"\n\"Verified\" = \"email_verified\"\n")
        .expect("write");
    let (code, _, records) = validate(&dir, "u.csv", &["--mapping", "m.toml"]);
    assert_eq!(code, Some(0));
    assert_eq!(records[0], json!({"email": "n5@example.com", "name": null}), "a boolean cannot be null, so it stays absent");
}

#[test]
fn bcrypt_hashes_go_accepts_pass_and_bad_prefixes_are_named_readably() {
    let dir = scratch("bcrypt");
    let body = &HASH[7..]; // 53 characters of salt and hash
    let cases = [
        (format!("$2x$10${body}"), true),                // any minor letter
        (format!("$2$10${body}"), true),                 // no minor letter: 59 characters
        (format!("$2a$31${body}"), true),                // highest cost
        (format!("$2b$10${body}extra"), true),           // Go reads only a minimum length
        (format!("$bcrypt-sha512$$2b$12${body}"), true), // Authgear's own wrapped form
        (format!("$2a$10${}", &body[..52]), true),       // 59 bytes with a minor letter
        (format!("$2a$10${}", &body[..51]), false),      // 58: too short
        (format!("$3a$10${body}"), false),               // version 3
        (format!("$2a$32${body}"), false),               // cost out of range
        (format!("$2a$03${body}"), false),               // cost out of range
        (format!("x2a$10${body}"), false),               // no leading `$`
        (format!("$bcrypt-sha512$x{body}"), false),      // wrapped garbage
    ];
    let records: Vec<Value> =
        cases.iter().enumerate().map(|(i, (h, _))| json!({"email": format!("b{i}@example.com"), "password": {"type": "bcrypt", "password_hash": h}})).collect();
    ndjson(&dir, "u.ndjson", &records);
    let (_, rows, _) = validate(&dir, "u.ndjson", &[]);
    for (i, (_, ok)) in cases.iter().enumerate() {
        let line = i as u64 + 1;
        assert_eq!(!rows.contains_key(&line), *ok, "case {i}: {:?}", rows.get(&line));
    }
    let bad_prefix = &rows[&11].1;
    assert!(bad_prefix.contains("$2a$"), "the message names the prefix it wants: {bad_prefix}");
    assert!(!bad_prefix.contains("[redacted]"), "{bad_prefix}");
    let report = std::fs::read_to_string(dir.join("r.jsonl")).expect("report");
    assert!(!report.contains(body), "no hash reaches the report");
}

#[test]
fn usernames_are_sent_normalized_so_a_second_run_skips_instead_of_failing() {
    let server = MockServer::start();
    let dir = scratch("username");
    std::fs::write(dir.join("u.csv"), "Username,Email\nJDoe,JDoe@Example.COM\nAnn.Lee,ann@example.com\n").expect("write");
    let mut base = run_args(&server, "u.csv");
    base.extend(["--identifier".to_string(), "preferred_username".to_string()]);
    let with = |report: &str| -> Vec<String> {
        let mut a = base.clone();
        a.extend(["--report".to_string(), report.to_string()]);
        a
    };
    let a1 = with("first.csv");
    let out = cli(&dir, &a1.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stored = server.lock().users.get("jdoe").map(|u| u.1.clone()).expect("jdoe stored");
    assert_eq!(stored["preferred_username"], "jdoe");
    assert_eq!(stored["email"], "jdoe@example.com", "emails are case-folded as the server stores them");
    let a2 = with("second.csv");
    let out = cli(&dir, &a2.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let second = read_report(&dir.join("second.csv"));
    assert!(second.iter().all(|r| r["outcome"] == "skipped"), "{second:?}");
    assert!(second.iter().any(|r| r["identifier"] == "jdoe"), "the report shows the id as sent: {second:?}");
}

#[test]
fn every_login_id_is_unique_across_the_file_after_normalization() {
    let dir = scratch("dups");
    let rows = [
        "Email,Phone,Username",
        "p1@example.com,+85251234567,first",  // 2
        "p2@example.com,+85251234567,second", // 3: same phone as 2
        "p3@example.com,,samename",           // 4
        "p4@example.com,,SameName",           // 5: same username as 4, by case folding
        "P1@EXAMPLE.com,,third",              // 6: same identifier as 2
        "p6@example.com,,Fifth",              // 7
    ];
    std::fs::write(dir.join("u.csv"), rows.join("\n") + "\n").expect("write");
    let (code, report, records) = validate(&dir, "u.csv", &[]);
    assert_eq!(code, Some(2));
    assert!(report[&3].1.contains("duplicate phone_number: line 2"), "{report:?}");
    assert!(report[&5].1.contains("duplicate preferred_username: line 4"), "{report:?}");
    assert!(report[&6].1.contains("duplicate identifier: same as line 2"), "{report:?}");
    assert_eq!(report.len(), 3, "{report:?}");
    let names: Vec<&str> = records.iter().filter_map(|r| r["preferred_username"].as_str()).collect();
    assert_eq!(names, ["first", "samename", "fifth"]);
    let out = cli(&dir, &["validate", "--input", "u.csv"]);
    assert!(stderr(&out).contains("1 duplicate identifier(s), 2 other duplicate login id(s)"), "{}", text(&out));
}

#[test]
fn formats_follow_the_servers_rules_not_their_shape() {
    let dir = scratch("formats");
    // (field, value, accepted by the server)
    let cases: &[(&str, &str, bool)] = &[
        ("phone_number", "+85298765432", true),
        ("phone_number", "+15555550100", false), // 555-01xx: fictional, not valid
        ("phone_number", "+85200000000", false),
        ("phone_number", "+852 9876 5432", false), // valid, but not written in E.164
        ("email", "user@localhost", true),
        ("email", "\"john doe\"@example.com", true),
        ("email", "a@ex_ample.com", true),
        ("email", "a[b]@example.com", false),
        ("email", "a\\b@example.com", false),
        ("zoneinfo", "Asia/Hong_Kong", true),
        ("zoneinfo", "UTC", false),
        ("zoneinfo", "Mars/Olympus", false),
        ("locale", "en-US", true),
        ("locale", "zh-Hant-HK", true),
        ("locale", "en_US", false),
        ("locale", "english", false),
        ("locale", "en-us", false),
        ("birthdate", "1990-02-28", true),
        ("birthdate", "--12-25", true),
        ("birthdate", "0000-02-29", true),
        ("birthdate", "1990", true),
        ("birthdate", "1990-02-30", false),
        ("profile", "ftp://files.example.com/me", true),
        ("profile", "https://", false),
        ("website", "https://example.com/a/../b", false),
        ("website", "https://example.com/a/b/", true),
        ("picture", "authgearimages:///app/object", true),
        ("picture", "ftp://example.com/me.png", false),
    ];
    let records: Vec<Value> = cases
        .iter()
        .enumerate()
        .map(|(i, (field, value, _))| {
            let mut r = json!({"email": format!("f{i}@example.com")});
            r[*field] = json!(value);
            r
        })
        .collect();
    ndjson(&dir, "u.ndjson", &records);
    let (_, rows, _) = validate(&dir, "u.ndjson", &[]);
    for (i, (field, value, ok)) in cases.iter().enumerate() {
        let got = rows.get(&(i as u64 + 1));
        assert_eq!(got.is_none(), *ok, "{field} = {value:?}: {got:?}");
        if let Some((_, errors, _)) = got {
            assert!(errors.contains(&format!("{field}: ")), "the message names the field: {errors}");
        }
    }
}

#[test]
fn a_job_level_error_reaches_every_row_and_the_summary() {
    let server = MockServer::start();
    let dir = scratch("joberror");
    users_csv(&dir.join("users.csv"), 3, &[]);
    server.lock().post_faults.push_back(Some(Fault::JobError("database is read-only".into())));
    let out = cli(&dir, &run_args(&server, "users.csv").iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let report = read_report(&dir.join("users.report.csv"));
    assert_eq!(report.len(), 3);
    for r in &report {
        assert_eq!(r["outcome"], "failed");
        assert!(r["errors"].contains("database is read-only"), "{r:?}");
    }
    let err = stderr(&out);
    assert!(err.contains("3 row(s) failed because their import job reported an error"), "{err}");
    assert!(err.contains("database is read-only"), "{err}");
}

#[test]
fn retry_after_as_an_http_date_is_honoured() {
    let server = MockServer::start();
    let dir = scratch("retrydate");
    users_csv(&dir.join("users.csv"), 2, &[]);
    server.lock().post_faults.push_back(Some(Fault::TooManyUntil(2)));
    let out = cli(&dir, &run_args(&server, "users.csv").iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let s = server.lock();
    let posts: Vec<_> = s.log.iter().filter(|l| l.0 == "POST").collect();
    assert_eq!(posts.len(), 2);
    let waited = posts[1].2.duration_since(posts[0].2);
    // The date has one-second resolution, so the wait is at least one second.
    assert!(waited >= Duration::from_secs(1), "retried after {waited:?}, before the Retry-After date");
}

#[test]
fn csv_line_numbers_are_the_same_with_crlf_line_endings() {
    let dir = scratch("crlf");
    let rows = ["Email,Name", "ok@example.com,A", "bad,B", "q@example.com,\"two\nlines\"", "bad2,D"];
    std::fs::write(dir.join("lf.csv"), rows.join("\n") + "\n").expect("write");
    std::fs::write(dir.join("crlf.csv"), rows.join("\r\n") + "\r\n").expect("write");
    let (_, lf, lf_records) = validate(&dir, "lf.csv", &[]);
    let (_, crlf, crlf_records) = validate(&dir, "crlf.csv", &[]);
    let lines = |m: &Rows| {
        let mut v: Vec<u64> = m.keys().copied().collect();
        v.sort();
        v
    };
    assert_eq!(lines(&lf), [3, 6]);
    assert_eq!(lines(&crlf), [3, 6]);
    assert_eq!(lf_records[0]["name"], "A");
    assert_eq!(crlf_records[0]["name"], "A", "no carriage return is left in a value");
}

#[test]
fn help_describes_the_importer_and_its_steps() {
    let dir = scratch("help");
    let out = cli(&dir, &["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout).to_lowercase();
    for word in ["user import api", "mapping", "validate", "run", "resume", "docs/import.md"] {
        assert!(help.contains(word), "help lacks {word}: {help}");
    }
    for word in ["gateway", "reverse proxy", "gateway.toml", "upstream"] {
        assert!(!help.contains(word), "help mentions {word}: {help}");
    }
}

#[test]
fn reserved_usernames_named_in_the_mapping_are_refused() {
    let dir = scratch("reserved");
    std::fs::write(dir.join("u.csv"), "Email,Username\nr1@example.com,Admin\nr2@example.com,root7\nr3@example.com,root42\nr4@example.com,alice\n")
        .expect("write");
    std::fs::write(dir.join("reserved.txt"), "# the project's reserved names\nadmin\n/^root[0-9]*$/\n!root42\n").expect("write");
    std::fs::write(dir.join("m.toml"), "reserved_usernames = \"reserved.txt\"\n[columns]\n\"Email\" = \"email\"\n\"Username\" = \"preferred_username\"\n")
        .expect("write");
    let (code, rows, records) = validate(&dir, "u.csv", &["--mapping", "m.toml"]);
    assert_eq!(code, Some(2));
    let mut lines: Vec<u64> = rows.keys().copied().collect();
    lines.sort();
    assert_eq!(lines, [2, 3], "{rows:?}");
    assert!(rows[&2].1.contains("preferred_username: a reserved username"), "compared case-folded: {rows:?}");
    assert_eq!(records.len(), 2);
}

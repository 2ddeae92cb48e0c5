//! `run` and `resume` against a fake Admin API on 127.0.0.1.

#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use support::*;

fn args<'a>(v: &'a [String], extra: &[&'a str]) -> Vec<&'a str> {
    v.iter().map(String::as_str).chain(extra.iter().copied()).collect()
}

fn data_lines(n: usize) -> std::ops::RangeInclusive<u64> {
    2..=(n as u64 + 1)
}

#[test]
fn every_row_gets_one_outcome_and_no_batch_exceeds_the_cap() {
    let server = MockServer::start();
    let dir = scratch("cap");
    users_csv(&dir.join("users.csv"), 150, &[&format!("failme@example.com,true,Bad,{HASH}")]);
    {
        let mut s = server.lock();
        s.fail_prefix = Some("failme".into());
        // A user that already exists: with upsert off it must come back skipped.
        s.users.insert("user7@example.com".into(), ("user-pre".into(), serde_json::json!({})));
    }
    let base = run_args(&server, "users.csv");
    let out = cli(&dir, &args(&base, &["--max-batch-bytes", "4000"]));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    let s = server.lock();
    let posts = s.log.iter().filter(|l| l.0 == "POST").count();
    assert!(posts >= 5, "expected several batches, got {posts}");
    assert!(s.max_body <= 4000, "largest body {} exceeds the cap", s.max_body);
    assert!(s.posted.values().all(|n| *n == 1), "a row was sent twice");
    drop(s);

    let report = read_report(&dir.join("users.report.csv"));
    assert_one_outcome_per_line(&report, data_lines(151));
    let by_line = |l: &str| report.iter().find(|r| r["line"] == l).expect("line in report").clone();
    assert_eq!(by_line("9")["outcome"], "skipped");
    assert_eq!(by_line("9")["user_id"], "user-pre");
    assert_eq!(by_line("152")["outcome"], "failed");
    assert!(!by_line("152")["errors"].is_empty());
    assert_eq!(by_line("2")["outcome"], "inserted");
    assert!(by_line("2")["user_id"].starts_with("user-"));

    // Hashes never reach the report, the journal's outcomes, the saved job results or the output.
    let report_text = std::fs::read_to_string(dir.join("users.report.csv")).expect("report");
    assert!(!report_text.contains("$2a$"));
    assert!(!text(&out).contains("$2a$"));
    let jobs: Vec<_> = std::fs::read_dir(dir.join("users.report.jobs")).expect("jobs dir").collect();
    assert_eq!(jobs.len(), posts, "one saved result per job");
    for j in jobs {
        let t = std::fs::read_to_string(j.expect("entry").path()).expect("job file");
        assert!(t.contains("\"details\"") && !t.contains("$2a$"));
    }
}

#[test]
fn a_429_is_retried_after_retry_after_and_a_500_is_retried() {
    let server = MockServer::start();
    let dir = scratch("429");
    users_csv(&dir.join("users.csv"), 5, &[]);
    {
        let mut s = server.lock();
        s.post_faults.push_back(Some(Fault::TooMany(1)));
        s.get_faults.push_back(Some(Fault::ServerError));
    }
    let out = cli(&dir, &args(&run_args(&server, "users.csv"), &[]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let s = server.lock();
    let posts: Vec<_> = s.log.iter().filter(|l| l.0 == "POST").collect();
    assert_eq!(posts.len(), 2);
    assert_eq!(posts[0].1, 429);
    assert_eq!(posts[1].1, 200);
    let waited = posts[1].2.duration_since(posts[0].2);
    assert!(waited >= Duration::from_secs(1), "retried after {waited:?}, before Retry-After");
    assert!(s.log.iter().any(|l| l.0 == "GET" && l.1 == 500));
    assert_eq!(s.users.len(), 5);
}

#[test]
fn quota_error_stops_cleanly_and_resume_finishes() {
    let server = MockServer::start();
    let dir = scratch("quota");
    users_csv(&dir.join("users.csv"), 40, &[]);
    server.lock().post_faults.extend([None, Some(Fault::Quota)]);
    let base = run_args(&server, "users.csv");
    let out = cli(&dir, &args(&base, &["--max-batch-bytes", "2000"]));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("quota"), "{err}");
    assert!(err.contains("authgear-import resume --journal"), "{err}");
    let first = server.lock().users.len();
    assert!(first > 0 && first < 40);
    // Even after the stop every row is in the report once.
    assert_one_outcome_per_line(&read_report(&dir.join("users.report.csv")), data_lines(40));

    let out = cli(&dir, &["resume", "--journal", "users.report.journal.jsonl", "--key-file", "admin-key.pem"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let s = server.lock();
    assert_eq!(s.users.len(), 40);
    assert!(s.inserts.values().all(|n| *n == 1));
    let report = read_report(&dir.join("users.report.csv"));
    assert_one_outcome_per_line(&report, data_lines(40));
    assert!(report.iter().all(|r| r["outcome"] == "inserted"), "{report:?}");
}

#[test]
fn a_lost_job_result_is_detected_and_the_batch_resent() {
    let server = MockServer::start();
    let dir = scratch("lost");
    users_csv(&dir.join("users.csv"), 30, &[]);
    server.lock().post_faults.push_back(Some(Fault::LoseResult));
    let out = cli(&dir, &args(&run_args(&server, "users.csv"), &["--max-batch-bytes", "2000"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let s = server.lock();
    assert_eq!(s.users.len(), 30);
    assert!(s.inserts.values().all(|n| *n == 1));
    assert!(s.posted.values().any(|n| *n == 2), "the lost batch should have been sent again");
    drop(s);
    let report = read_report(&dir.join("users.report.csv"));
    assert_one_outcome_per_line(&report, data_lines(30));
    let resent: Vec<_> = report.iter().filter(|r| r["outcome"] == "skipped").collect();
    assert!(!resent.is_empty() && resent.iter().all(|r| r["warnings"].contains("interrupted attempt")));
}

#[test]
fn a_crash_while_a_job_is_pending_resumes_without_duplicates() {
    let server = MockServer::start();
    let dir = scratch("crash");
    users_csv(&dir.join("users.csv"), 40, &[]);
    // Batch 1 polls twice (pending, completed); the first poll of batch 2 never answers.
    server.lock().get_faults.extend([None, None, Some(Fault::Hang)]);
    let base = run_args(&server, "users.csv");
    let mut child = spawn(&dir, &args(&base, &["--max-batch-bytes", "2000"]));
    server.wait_for("the hung poll", |s| s.hung);
    child.kill().expect("kill");
    let _ = child.wait();
    let posted_before = server.lock().log.iter().filter(|l| l.0 == "POST").count();
    assert_eq!(posted_before, 2);

    let out = cli(&dir, &["resume", "--journal", "users.report.journal.jsonl", "--key-file", "admin-key.pem"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let s = server.lock();
    assert_eq!(s.users.len(), 40);
    assert!(s.inserts.values().all(|n| *n == 1));
    // Batch 2's job was asked about, not sent again.
    assert!(s.posted.values().all(|n| *n == 1), "a row was sent twice: {:?}", s.posted);
    drop(s);
    let report = read_report(&dir.join("users.report.csv"));
    assert_one_outcome_per_line(&report, data_lines(40));
    assert!(report.iter().all(|r| r["outcome"] == "inserted"));
}

#[test]
fn a_crash_during_a_post_resends_that_batch_safely() {
    let server = MockServer::start();
    let dir = scratch("crashpost");
    users_csv(&dir.join("users.csv"), 40, &[]);
    // The third POST is processed by the server but never answered.
    server.lock().post_faults.extend([None, None, Some(Fault::Hang)]);
    let base = run_args(&server, "users.csv");
    let mut child = spawn(&dir, &args(&base, &["--max-batch-bytes", "2000"]));
    server.wait_for("the hung POST", |s| s.hung);
    child.kill().expect("kill");
    let _ = child.wait();

    let out = cli(&dir, &["resume", "--journal", "users.report.journal.jsonl", "--key-file", "admin-key.pem"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let s = server.lock();
    assert_eq!(s.users.len(), 40);
    assert!(s.inserts.values().all(|n| *n == 1), "a user was created twice");
    drop(s);
    let report = read_report(&dir.join("users.report.csv"));
    assert_one_outcome_per_line(&report, data_lines(40));
    assert!(report.iter().all(|r| r["outcome"] == "inserted" || r["outcome"] == "skipped"));
}

#[test]
fn retry_failed_resends_only_the_failed_rows() {
    let server = MockServer::start();
    let dir = scratch("retry");
    let extra: Vec<String> = (0..3).map(|i| format!("bad{i}@example.com,true,Bad,{HASH}")).collect();
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    users_csv(&dir.join("users.csv"), 20, &extra);
    server.lock().fail_prefix = Some("bad".into());
    let out = cli(&dir, &args(&run_args(&server, "users.csv"), &[]));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    // Without --retry-failed nothing is sent again.
    let out = cli(&dir, &["resume", "--journal", "users.report.journal.jsonl", "--key-file", "admin-key.pem"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(server.lock().log.iter().filter(|l| l.0 == "POST").count(), 1);

    server.lock().fail_prefix = None;
    let out = cli(&dir, &["resume", "--journal", "users.report.journal.jsonl", "--key-file", "admin-key.pem", "--retry-failed"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let s = server.lock();
    for (id, n) in &s.posted {
        assert_eq!(*n, if id.starts_with("bad") { 2 } else { 1 }, "{id}");
    }
    drop(s);
    let report = read_report(&dir.join("users.report.csv"));
    assert_one_outcome_per_line(&report, data_lines(23));
    assert!(report.iter().all(|r| r["outcome"] == "inserted"));
}

#[test]
fn running_twice_without_upsert_is_safe_and_upsert_warns() {
    let server = MockServer::start();
    let dir = scratch("twice");
    users_csv(&dir.join("users.csv"), 10, &[]);
    let base = run_args(&server, "users.csv");
    // The key can come from an environment variable instead of a file.
    let pem = keys().pem.clone();
    let mut env_args = args(&base, &["--report", "first.csv"]);
    let pos = env_args.iter().position(|a| *a == "--key-file").expect("key arg");
    env_args.splice(pos..pos + 2, ["--key-env", "TEST_ADMIN_KEY"]);
    let out = cli_env(&dir, &env_args, &[("TEST_ADMIN_KEY", &pem)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let out = cli(&dir, &args(&base, &["--report", "second.csv"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let second = read_report(&dir.join("second.csv"));
    assert!(second.iter().all(|r| r["outcome"] == "skipped"));
    assert_eq!(server.lock().users.len(), 10);
    assert!(server.lock().inserts.values().all(|n| *n == 1));

    // Reusing a report (and so its journal) is refused rather than mixing two runs.
    let out = cli(&dir, &args(&base, &["--report", "second.csv"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("resume"));

    let out = cli(&dir, &args(&base, &["--report", "third.csv", "--upsert"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // Upsert does change mfa.email / mfa.phone_number; only password, mfa.password and mfa.totp stay.
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.contains("mfa.email and mfa.phone_number"), "{err}");
    assert!(err.contains("password, mfa.password and mfa.totp are never changed"), "{err}");
    assert!(!err.contains("passwords and MFA are not updated"), "{err}");
    assert!(read_report(&dir.join("third.csv")).iter().all(|r| r["outcome"] == "updated"));
}

#[test]
fn the_server_rejects_a_token_with_the_wrong_kid() {
    let server = MockServer::start();
    let dir = scratch("kid");
    users_csv(&dir.join("users.csv"), 3, &[]);
    let base = run_args(&server, "users.csv");
    let mut a = args(&base, &[]);
    let pos = a.iter().position(|x| *x == KID).expect("kid");
    a[pos] = "other-kid";
    let out = cli(&dir, &a);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
    assert!(server.lock().users.is_empty());
    assert!(server.lock().log.iter().all(|l| l.1 == 401));
}

#[test]
fn non_bcrypt_hashes_follow_the_policy_and_resets_are_listed() {
    let server = MockServer::start();
    let dir = scratch("nonbcrypt");
    std::fs::write(
        dir.join("users.csv"),
        format!("Email,Password Hash,Password Type\nok@example.com,{HASH},bcrypt\nmd5@example.com,5f4dcc3b5aa765d61d8327deb882cf99,md5\n"),
    )
    .expect("write");
    let base = run_args(&server, "users.csv");
    // Default policy: the md5 row is invalid, so run refuses to start.
    let out = cli(&dir, &args(&base, &[]));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not bcrypt"));
    assert!(server.lock().log.is_empty());

    let out = cli(&dir, &args(&base, &["--non-bcrypt", "without-password"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let s = server.lock();
    assert!(s.users["md5@example.com"].1.get("password").is_none());
    assert!(s.users["ok@example.com"].1.get("password").is_some());
    drop(s);
    let resets = std::fs::read_to_string(dir.join("users.report.password-reset.csv")).expect("reset list");
    assert!(resets.contains("md5@example.com") && !resets.contains("ok@example.com"));
    assert!(!resets.contains("5f4dcc3b"));

    let out = cli(&dir, &args(&base, &["--non-bcrypt", "skip", "--report", "skip.csv"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report = read_report(&dir.join("skip.csv"));
    let md5 = report.iter().find(|r| r["identifier"] == "md5@example.com").expect("md5 row");
    assert_eq!(md5["outcome"], "skipped");
    assert!(md5["warnings"].contains("not bcrypt"));
}

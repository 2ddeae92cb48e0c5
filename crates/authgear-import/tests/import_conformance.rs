//! The record-level conformance table (`tests/conformance/records.jsonl`):
//! each line is a record in the import API's own shape, the identifier it is
//! sent under, and the verdict Authgear's rules give it (authgear-server
//! `pkg/lib/userimport/model.go`, the stdattrs formats, the login-id
//! checkers), with the reason. `validate` must reach the same verdict on
//! every one.
//!
//! The records use only values the importer sends as written (no blank or
//! padded strings, no booleans spelled as text), so the server's verdict on
//! the line is its verdict on what `run` would send.

#[path = "support/mod.rs"]
mod support;

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;
use support::*;

struct Case {
    record: Value,
    valid: bool,
    reason: String,
}

fn table() -> BTreeMap<String, Vec<Case>> {
    let text = include_str!("conformance/records.jsonl");
    let mut by_identifier: BTreeMap<String, Vec<Case>> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("table line {}: {e}", i + 1));
        let identifier = v["identifier"].as_str().expect("identifier").to_string();
        let valid = match v["verdict"].as_str() {
            Some("valid") => true,
            Some("invalid") => false,
            other => panic!("table line {}: verdict {other:?}", i + 1),
        };
        let reason = v["reason"].as_str().expect("reason").to_string();
        assert!(!reason.is_empty(), "table line {}: every verdict has a reason", i + 1);
        by_identifier.entry(identifier).or_default().push(Case { record: v["record"].clone(), valid, reason });
    }
    by_identifier
}

#[test]
fn validate_agrees_with_the_servers_verdict_on_every_table_record() {
    let table = table();
    let total: usize = table.values().map(Vec::len).sum();
    let valid: usize = table.values().flatten().filter(|c| c.valid).count();
    assert!(total >= 150, "the table holds {total} records");
    assert!(valid >= 50 && total - valid >= 50, "{valid} valid of {total}: both verdicts are well represented");

    // Every record field the server knows appears in the table at least once.
    let mut fields: HashMap<String, usize> = HashMap::new();
    for c in table.values().flatten() {
        for k in c.record.as_object().expect("object").keys() {
            *fields.entry(k.clone()).or_default() += 1;
        }
    }
    for f in RECORD_KEYS {
        assert!(fields.contains_key(*f), "no table record has `{f}`");
    }

    let dir = scratch("conformance");
    let mut disagreements = Vec::new();
    for (identifier, cases) in &table {
        let input = format!("{identifier}.ndjson");
        let body: String = cases.iter().map(|c| format!("{}\n", c.record)).collect();
        std::fs::write(dir.join(&input), body).expect("write input");
        let report = format!("{identifier}.report.jsonl");
        let out = cli(&dir, &["validate", "--input", &input, "--identifier", identifier, "--report", &report, "--show", "0"]);
        assert!(matches!(out.status.code(), Some(0 | 2)), "{}", text(&out));
        let refused: HashMap<u64, String> = std::fs::read_to_string(dir.join(&report))
            .expect("report")
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).expect("report line");
                (v["line"].as_u64().expect("line"), v["errors"].to_string())
            })
            .collect();
        for (i, c) in cases.iter().enumerate() {
            let line = i as u64 + 1;
            let accepted = !refused.contains_key(&line);
            if accepted != c.valid {
                disagreements.push(format!(
                    "[{identifier} #{line}] {} -> server: {}, validate: {} ({}) {}",
                    c.record,
                    if c.valid { "valid" } else { "invalid" },
                    if accepted { "valid" } else { "invalid" },
                    c.reason,
                    refused.get(&line).cloned().unwrap_or_default()
                ));
            }
        }
    }
    assert!(disagreements.is_empty(), "{} of {total} verdicts disagree:\n{}", disagreements.len(), disagreements.join("\n"));
}

//! Every committed fuzz input (`fuzz/corpus/<target>/`) replayed through
//! the same target body AFL runs (`fuzz/targets.rs`), in the ordinary debug
//! build: seeds, the inputs AFL kept, and every past crash or hang as a
//! regression. No AFL is needed here.

#[path = "../fuzz/targets.rs"]
mod targets;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A replayed input taking longer than this in the debug build is a hang.
const SLOW: Duration = Duration::from_secs(5);

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target)
}

fn inputs(target: &str) -> Vec<PathBuf> {
    let dir = corpus_dir(target);
    let Ok(entries) = std::fs::read_dir(&dir) else { panic!("no corpus at {}", dir.display()) };
    let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect();
    files.sort();
    files
}

/// Replays one target's corpus; every failing input is named, not just the
/// first.
fn replay(target: &str) {
    let Some((_, body)) = targets::TARGETS.iter().find(|(n, _)| *n == target) else { panic!("no target {target}") };
    let files = inputs(target);
    assert!(files.len() >= 3, "{target}: only {} corpus files", files.len());
    let mut failures = Vec::new();
    for f in &files {
        let Ok(data) = std::fs::read(f) else { panic!("cannot read {}", f.display()) };
        let started = Instant::now();
        if catch_unwind(AssertUnwindSafe(|| body(&data))).is_err() {
            failures.push(format!("{} panicked", f.display()));
        } else if started.elapsed() > SLOW {
            failures.push(format!("{} took {:?}", f.display(), started.elapsed()));
        }
    }
    assert!(failures.is_empty(), "{target}: {} of {} inputs failed:\n{}", failures.len(), files.len(), failures.join("\n"));
}

#[test]
fn every_target_has_a_committed_corpus() {
    for (name, _) in targets::TARGETS {
        assert!(inputs(name).len() >= 3, "{name}");
    }
}

#[test]
fn path_normalization_corpus_keeps_paths_canonical_and_forwarded_as_judged() {
    replay("path_normalize");
}

#[test]
fn authorization_and_token_corpus_never_accepts_a_tampered_token() {
    replay("auth_token");
}

#[test]
fn claim_rendering_corpus_gives_valid_decodable_header_values() {
    replay("claim_render");
}

#[test]
fn config_corpus_answers_with_placed_diagnostics_never_a_panic() {
    replay("config_load");
}

#[test]
fn session_cookie_corpus_keeps_only_session_cookies() {
    replay("session_cookies");
}

#[test]
fn resolver_header_corpus_gives_a_verdict_that_matches_the_headers() {
    replay("resolver_headers");
}

#[test]
fn importer_reader_corpus_terminates_with_ordered_rows() {
    replay("import_reader");
}

#[test]
fn importer_mapping_corpus_never_panics() {
    replay("import_mapping");
}

#[test]
fn forwarding_corpus_never_lets_a_client_identity_header_reach_the_upstream() {
    replay("forward_headers");
}

/// The token corpus is only worth fuzzing if its seeds get past the
/// signature check: each algorithm's seed verifies against `fuzz/jwks.json`
/// and passes the claim checks at the target's fixed time.
#[test]
fn token_seeds_are_signed_by_the_fixed_jwks() {
    use authgear_gateway::auth::jwt;
    use authgear_gateway::auth::keys::KeySet;
    let jwks = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/jwks.json")).expect("jwks.json");
    let Ok((keys, skipped)) = KeySet::from_jwks(&jwks) else { panic!("jwks.json does not load") };
    assert!(skipped.is_empty() && keys.len() == 3, "{skipped:?}");
    let audiences = [targets::TOKEN_ISSUER.to_owned()];
    let types = ["at+jwt".to_owned()];
    let rules = jwt::ClaimRules { issuer: targets::TOKEN_ISSUER, audiences: &audiences, leeway: Duration::from_secs(60), token_types: &types };
    for seed in ["seed-rs256", "seed-es256", "seed-eddsa", "seed-no-kid"] {
        let text = std::fs::read_to_string(corpus_dir("auth_token").join(seed)).expect("seed");
        let token = text.trim_start_matches("Bearer ");
        let parsed = jwt::parse(token).unwrap_or_else(|e| panic!("{seed}: {e:?}"));
        assert!(jwt::verify_signature(&parsed, &keys).is_ok(), "{seed} does not verify");
        assert_eq!(jwt::check_claims(&parsed, &rules, targets::TOKEN_NOW), Ok(()), "{seed}");
    }
    // The RSA key's JWK says RS256: the same key signing PS256 is refused.
    let ps = std::fs::read_to_string(corpus_dir("auth_token").join("seed-ps256")).expect("seed");
    let parsed = jwt::parse(ps.trim_start_matches("Bearer ")).expect("parses");
    assert_eq!(jwt::verify_signature(&parsed, &keys).err(), Some(jwt::TokenError::AlgMismatch));
    let expired = std::fs::read_to_string(corpus_dir("auth_token").join("seed-expired")).expect("seed");
    let parsed = jwt::parse(expired.trim_start_matches("Bearer ")).expect("parses");
    assert_eq!(jwt::check_claims(&parsed, &rules, targets::TOKEN_NOW), Err(jwt::TokenError::Expired));
}

//! `authgear-import`: moves users from CSV / JSON / NDJSON exports into Authgear
//! through the User Import API (`POST /_api/admin/users/import`).
//!
//! The library side is split so every stage can be tested on its own:
//! reading (`reader`) -> mapping (`mapping`) -> schema checks (`schema`) ->
//! packing into byte-capped request bodies (`batch`) -> sending (`client`, `jwt`)
//! with every step recorded in an append-only `journal`, from which the final
//! `report` is derived. `pipeline` ties reading to packing; `run` drives the
//! network side; `cli` (validate, mapping) and `exec` (run, resume) hold the
//! subcommand entry points used by the binary.

pub mod batch;
pub mod cli;
pub mod client;
pub mod draft;
pub mod exec;
pub mod formats;
pub mod gomail;
pub mod journal;
pub mod jwt;
pub mod loginid;
pub mod mapping;
pub mod pipeline;
pub mod presets;
pub mod progress;
pub mod reader;
pub mod report;
pub mod run;
pub mod schema;

use serde::{Deserialize, Serialize};

/// Exit code when every row ended inserted, updated or skipped.
pub const EXIT_OK: i32 = 0;
/// Exit code for a fatal error (nothing or not everything could be attempted).
pub const EXIT_FATAL: i32 = 1;
/// Exit code when some rows were invalid or failed.
pub const EXIT_PARTIAL: i32 = 2;

/// Starts the message of a row that failed with its whole job (the job's
/// own `error`), so the report's summary can find them again.
pub const JOB_ERROR_PREFIX: &str = "the import job failed as a whole: ";

/// The final state of one source row, as written to the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A new user was created.
    Inserted,
    /// An existing user was updated (only with `--upsert`).
    Updated,
    /// Not imported, by design (already exists, or the row was skipped by policy).
    Skipped,
    /// The server rejected the record.
    Failed,
    /// The record never left this machine because it did not pass validation.
    Invalid,
}

impl Outcome {
    /// Lower-case name used in reports and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Inserted => "inserted",
            Outcome::Updated => "updated",
            Outcome::Skipped => "skipped",
            Outcome::Failed => "failed",
            Outcome::Invalid => "invalid",
        }
    }

    /// Parses the server's outcome string; unknown values count as failures so
    /// that nothing unexpected is reported as a success.
    pub fn from_server(s: &str) -> Outcome {
        match s {
            "inserted" => Outcome::Inserted,
            "updated" => Outcome::Updated,
            "skipped" => Outcome::Skipped,
            _ => Outcome::Failed,
        }
    }
}

/// Errors that stop a whole command (row-level problems are never errors).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Reading or writing a local file failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The input could not be read as a whole (not a single bad row).
    #[error("input: {0}")]
    Input(String),
    /// The mapping file is not usable.
    #[error("mapping: {0}")]
    Mapping(String),
    /// The private key could not be loaded or used.
    #[error("key: {0}")]
    Key(String),
    /// The journal is missing, corrupt or belongs to another input.
    #[error("journal: {0}")]
    Journal(String),
    /// The Admin API refused the request in a way retrying will not fix.
    #[error("admin API: {0}")]
    Api(String),
    /// The project ran out of quota; the import can be resumed later.
    #[error("quota exceeded: {0}")]
    Quota(String),
    /// Command-line usage error.
    #[error("{0}")]
    Usage(String),
}

impl ImportError {
    /// Wraps an I/O error with a short description of what failed.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ImportError::Io { context: context.into(), source }
    }
}

/// Removes anything that looks like a bcrypt hash from free text before it is
/// written to a report or a log (server messages could echo a record). Only
/// tokens long enough to be a hash are removed, so that a message may still
/// name a prefix such as `$2a$`.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        // The hash is one token: it ends at whitespace, a quote or a comma.
        let end = tail.find([' ', '"', '\'', ',', '\n', '`', ';', ')']).unwrap_or(tail.len());
        let token = &tail[..end];
        let hashlike = (token.starts_with("$2") || token.starts_with("$bcrypt")) && token.len() >= 20;
        if hashlike {
            out.push_str("[redacted]");
            rest = &tail[end..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn redact_hides_hashes_but_keeps_prefix_names() {
        let h = "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy";
        assert_eq!(super::redact(&format!("bad {h}, ok")), "bad [redacted], ok");
        assert_eq!(super::redact("expected a `$2a$` prefix"), "expected a `$2a$` prefix");
        assert_eq!(super::redact("$bcrypt-sha512$abcdefghijklmnopqrstuvwxyz"), "[redacted]");
    }
}

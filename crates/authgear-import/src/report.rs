//! The per-row report (CSV or JSONL), derived from the journal.
//!
//! A row can have several journal entries (a failed row retried, a pending
//! row sent later); the report keeps only the last one, so every source row
//! appears exactly once. Two passes over the journal keep memory at four
//! bytes per row instead of holding every outcome.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::journal::{Entry, RowEntry};
use super::{redact, ImportError, Outcome};

/// Report file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    /// Comma-separated, errors and warnings joined with `; `.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

impl ReportFormat {
    /// `.jsonl` / `.ndjson` / `.json` mean JSONL; anything else CSV.
    pub fn for_path(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("jsonl" | "ndjson" | "json") => ReportFormat::Jsonl,
            _ => ReportFormat::Csv,
        }
    }
}

/// Totals by outcome.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Summary {
    /// Rows in the report.
    pub total: u64,
    /// Created.
    pub inserted: u64,
    /// Updated.
    pub updated: u64,
    /// Skipped (exists already, or by policy).
    pub skipped: u64,
    /// Rejected by the server.
    pub failed: u64,
    /// Rejected locally.
    pub invalid: u64,
    /// Not sent yet (run stopped early); counted in `skipped` too.
    pub pending: u64,
    /// Imported without a password.
    pub password_reset: u64,
    /// Rows that failed because their whole job reported an error.
    pub job_error_rows: u64,
    /// The distinct job-level errors (at most a few).
    pub job_errors: Vec<String>,
}

impl Summary {
    fn add(&mut self, r: &RowEntry) {
        self.total += 1;
        match r.outcome {
            Some(Outcome::Inserted) => self.inserted += 1,
            Some(Outcome::Updated) => self.updated += 1,
            Some(Outcome::Failed) => self.failed += 1,
            Some(Outcome::Invalid) => self.invalid += 1,
            Some(Outcome::Skipped) | None => self.skipped += 1,
        }
        if r.pending {
            self.pending += 1;
        }
        if let Some(e) = r.errors.iter().find_map(|e| e.strip_prefix(super::JOB_ERROR_PREFIX)) {
            self.job_error_rows += 1;
            if self.job_errors.len() < 5 && !self.job_errors.iter().any(|x| x == e) {
                self.job_errors.push(redact(e));
            }
        }
        if r.password_reset && matches!(r.outcome, Some(Outcome::Inserted | Outcome::Updated)) {
            self.password_reset += 1;
        }
    }

    /// Exit code for this result.
    pub fn exit_code(&self) -> i32 {
        if self.failed + self.invalid + self.pending > 0 {
            super::EXIT_PARTIAL
        } else {
            super::EXIT_OK
        }
    }
}

#[derive(Serialize)]
struct JsonRow<'a> {
    line: u64,
    identifier: &'a str,
    outcome: &'a str,
    user_id: Option<&'a str>,
    batch: Option<u64>,
    job_id: Option<&'a str>,
    password_reset: bool,
    errors: Vec<String>,
    warnings: Vec<String>,
}

/// Writes report rows in either format.
pub struct ReportWriter {
    format: ReportFormat,
    out: Option<BufWriter<File>>,
    csv: Option<csv::Writer<File>>,
    path: PathBuf,
}

const PENDING_NOTE: &str = "not sent yet (the run stopped early): continue with `authgear-import resume`";

impl ReportWriter {
    /// Creates (truncates) the report file.
    pub fn create(path: &Path) -> Result<Self, ImportError> {
        let format = ReportFormat::for_path(path);
        let file = File::create(path).map_err(|e| ImportError::io(format!("create {}", path.display()), e))?;
        let mut w = ReportWriter { format, out: None, csv: None, path: path.to_path_buf() };
        match format {
            ReportFormat::Jsonl => w.out = Some(BufWriter::new(file)),
            ReportFormat::Csv => {
                let mut c = csv::Writer::from_writer(file);
                c.write_record(["line", "identifier", "outcome", "user_id", "batch", "job_id", "password_reset", "errors", "warnings"])
                    .map_err(|e| w.err(e))?;
                w.csv = Some(c);
            }
        }
        Ok(w)
    }

    fn err(&self, e: impl std::fmt::Display) -> ImportError {
        ImportError::io(format!("write {}", self.path.display()), std::io::Error::other(e.to_string()))
    }

    /// Writes one row (messages are redacted once more, to be safe).
    pub fn write(&mut self, r: &RowEntry) -> Result<(), ImportError> {
        let outcome = r.outcome.unwrap_or(Outcome::Skipped).as_str();
        let errors: Vec<String> = r.errors.iter().map(|e| redact(e)).collect();
        let mut warnings: Vec<String> = r.warnings.iter().map(|e| redact(e)).collect();
        if r.pending {
            warnings.push(PENDING_NOTE.into());
        }
        match self.format {
            ReportFormat::Jsonl => {
                let row = JsonRow {
                    line: r.line,
                    identifier: &r.identifier,
                    outcome,
                    user_id: r.user_id.as_deref(),
                    batch: r.batch,
                    job_id: r.job_id.as_deref(),
                    password_reset: r.password_reset,
                    errors,
                    warnings,
                };
                let res = match self.out.as_mut() {
                    Some(out) => {
                        serde_json::to_writer(&mut *out, &row).map_err(|e| e.to_string()).and_then(|()| out.write_all(b"\n").map_err(|e| e.to_string()))
                    }
                    None => Ok(()),
                };
                res.map_err(|e| self.err(e))
            }
            ReportFormat::Csv => {
                let rec = [
                    r.line.to_string(),
                    r.identifier.clone(),
                    outcome.to_string(),
                    r.user_id.clone().unwrap_or_default(),
                    r.batch.map(|b| b.to_string()).unwrap_or_default(),
                    r.job_id.clone().unwrap_or_default(),
                    r.password_reset.to_string(),
                    errors.join("; "),
                    warnings.join("; "),
                ];
                let res = match self.csv.as_mut() {
                    Some(c) => c.write_record(&rec).map_err(|e| e.to_string()),
                    None => Ok(()),
                };
                res.map_err(|e| self.err(e))
            }
        }
    }

    /// Flushes to disk.
    pub fn finish(mut self) -> Result<(), ImportError> {
        let res = match (self.out.as_mut(), self.csv.as_mut()) {
            (Some(o), _) => o.flush(),
            (_, Some(c)) => c.flush(),
            _ => Ok(()),
        };
        res.map_err(|e| self.err(e))
    }
}

fn for_each_row(journal: &Path, mut f: impl FnMut(u32, RowEntry) -> Result<(), ImportError>) -> Result<(), ImportError> {
    let file = File::open(journal).map_err(|e| ImportError::io(format!("open {}", journal.display()), e))?;
    let mut reader = BufReader::new(file);
    let mut text = String::new();
    let mut k: u32 = 0;
    loop {
        text.clear();
        if reader.read_line(&mut text).map_err(|e| ImportError::io("read journal", e))? == 0 {
            return Ok(());
        }
        // Torn or foreign lines were already judged by the loader; skip them here.
        if let Ok(Entry::Row(r)) = serde_json::from_str::<Entry>(text.trim_end()) {
            f(k, r)?;
            k = k.saturating_add(1);
        }
    }
}

/// Rebuilds the report (and the password-reset list) from the journal.
pub fn write_from_journal(journal: &Path, report: &Path) -> Result<Summary, ImportError> {
    // Pass 1: which row entry is the last one for each line.
    let mut last: Vec<u32> = Vec::new();
    for_each_row(journal, |k, r| {
        let i = usize::try_from(r.line).unwrap_or(0);
        if last.len() <= i {
            last.resize(i + 1, u32::MAX);
        }
        // A pending marker must not hide an outcome that came before it.
        if !(r.pending && last[i] != u32::MAX) {
            last[i] = k;
        }
        Ok(())
    })?;
    // Pass 2: write those.
    let mut writer = ReportWriter::create(report)?;
    let mut summary = Summary::default();
    let reset_path = password_reset_path(report);
    let mut reset: Option<csv::Writer<File>> = None;
    for_each_row(journal, |k, r| {
        let i = usize::try_from(r.line).unwrap_or(0);
        if last.get(i).copied() != Some(k) {
            return Ok(());
        }
        summary.add(&r);
        if r.password_reset && matches!(r.outcome, Some(Outcome::Inserted | Outcome::Updated)) {
            if reset.is_none() {
                let mut w =
                    csv::Writer::from_path(&reset_path).map_err(|e| ImportError::io(format!("create {}", reset_path.display()), std::io::Error::other(e)))?;
                let _ = w.write_record(["line", "identifier", "user_id"]);
                reset = Some(w);
            }
            if let Some(w) = reset.as_mut() {
                let _ = w.write_record([r.line.to_string(), r.identifier.clone(), r.user_id.clone().unwrap_or_default()]);
            }
        }
        writer.write(&r)
    })?;
    if let Some(mut w) = reset {
        let _ = w.flush();
    }
    writer.finish()?;
    Ok(summary)
}

/// Where the list of users needing a password reset is written.
pub fn password_reset_path(report: &Path) -> PathBuf {
    sibling(report, "password-reset.csv")
}

/// `<report stem>.<suffix>` next to the report.
pub fn sibling(report: &Path, suffix: &str) -> PathBuf {
    let stem = report.file_stem().and_then(|s| s.to_str()).unwrap_or("report");
    report.with_file_name(format!("{stem}.{suffix}"))
}

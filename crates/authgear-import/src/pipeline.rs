//! Read -> map -> check -> de-duplicate -> pack, as one streaming iterator.
//!
//! `validate`, `run` and `resume` all use this, so the dry run sends exactly
//! what a real run would send. Memory is bounded by one batch plus 16 bytes
//! per distinct identifier (a hash and a line number for duplicate detection).

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::path::Path;

use serde_json::Value;

use super::batch::{Batch, BatchRow, Packer};
use super::loginid::{self, Kind};
use super::mapping::{Identifier, Mapping};
use super::reader::{self, Format, SourceRow};
use super::schema::{self, Check, PasswordKind, Rules};
use super::{ImportError, Outcome};

/// What to do with a non-bcrypt password hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[clap(rename_all = "kebab-case")]
pub enum NonBcrypt {
    /// The row is invalid.
    Fail,
    /// The row is not imported (outcome `skipped`).
    Skip,
    /// The user is imported without a password and listed for a password reset.
    WithoutPassword,
}

/// Settings that shape the records and bodies.
#[derive(Debug, Clone)]
pub struct Options {
    /// Identifier field.
    pub identifier: Identifier,
    /// Request-level `upsert`.
    pub upsert: bool,
    /// Body cap in bytes.
    pub max_batch_bytes: usize,
    /// Non-bcrypt policy.
    pub non_bcrypt: NonBcrypt,
    /// First batch number to assign.
    pub first_batch: u64,
}

/// A row settled locally: invalid, or skipped by policy.
#[derive(Debug, Clone)]
pub struct LocalRow {
    /// Source line.
    pub line: u64,
    /// Identifier value, when one could be read.
    pub identifier: String,
    /// `invalid` or `skipped`.
    pub outcome: Outcome,
    /// What is wrong.
    pub errors: Vec<String>,
    /// Non-fatal notes.
    pub warnings: Vec<String>,
}

/// One step of the pipeline's output.
#[derive(Debug)]
pub enum Item {
    /// A row that will not be sent.
    Local(LocalRow),
    /// A full request body.
    Batch(Batch),
}

/// Running totals for the summary.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Stats {
    /// Rows read.
    pub rows: u64,
    /// Rows packed into batches.
    pub valid: u64,
    /// Rows rejected locally.
    pub invalid: u64,
    /// Rows skipped by the non-bcrypt policy.
    pub skipped: u64,
    /// Rows whose identifier repeats an earlier row's.
    pub duplicates: u64,
    /// Rows sharing another login id (email, phone, username) with an earlier row.
    pub duplicate_login_ids: u64,
    /// Rows carrying a non-bcrypt hash.
    pub non_bcrypt: u64,
    /// Rows that will be imported without a password.
    pub password_reset: u64,
    /// Batches produced.
    pub batches: u64,
    /// Largest body produced.
    pub max_batch_bytes: usize,
    /// How often each error message occurred.
    pub errors: HashMap<String, u64>,
    /// Source values that had no place in a record (nested metadata), by key.
    pub unplaced: HashMap<String, u64>,
}

/// Which rows a run should emit (resume skips settled ones but must still see
/// them for duplicate detection).
pub type LineFilter = Box<dyn Fn(u64) -> bool>;

/// The streaming pipeline.
pub struct Pipeline {
    rows: Box<dyn Iterator<Item = Result<SourceRow, ImportError>>>,
    mapping: Mapping,
    opts: Options,
    seen: HashMap<u64, u64>,
    packer: Packer,
    queue: VecDeque<Item>,
    emit: Option<LineFilter>,
    finished: bool,
    /// Totals so far.
    pub stats: Stats,
}

impl Pipeline {
    /// Opens the input and prepares the pipeline.
    pub fn open(path: &Path, format: Format, mapping: Mapping, opts: Options) -> Result<Self, ImportError> {
        let layout = match mapping.preset {
            Some(p) => reader::Layout { records_key: p.records_key(), csv_headers: p.csv_headers() },
            None => reader::Layout::default(),
        };
        let rows = reader::open_with(path, format, layout)?;
        let packer = Packer::new(opts.identifier, opts.upsert, opts.max_batch_bytes, opts.first_batch);
        Ok(Pipeline { rows, mapping, opts, seen: HashMap::new(), packer, queue: VecDeque::new(), emit: None, finished: false, stats: Stats::default() })
    }

    /// Restricts output to rows for which `filter(line)` is true.
    pub fn only(mut self, filter: LineFilter) -> Self {
        self.emit = Some(filter);
        self
    }

    fn wanted(&self, line: u64) -> bool {
        match &self.emit {
            Some(f) => f(line),
            None => true,
        }
    }

    fn local(&mut self, row: LocalRow) {
        match row.outcome {
            Outcome::Invalid => self.stats.invalid += 1,
            _ => self.stats.skipped += 1,
        }
        for e in &row.errors {
            *self.stats.errors.entry(error_class(e)).or_insert(0) += 1;
        }
        if self.wanted(row.line) {
            self.queue.push_back(Item::Local(row));
        }
    }

    fn process(&mut self, src: SourceRow) {
        self.stats.rows += 1;
        let line = src.line;
        let invalid =
            |identifier: String, errors: Vec<String>, warnings: Vec<String>| LocalRow { line, identifier, outcome: Outcome::Invalid, errors, warnings };
        let raw = match src.data {
            Ok(m) => m,
            Err(e) => return self.local(invalid(String::new(), vec![e], vec![])),
        };
        let mut unplaced = Vec::new();
        let mut record = match self.mapping.apply_noting(raw, &mut unplaced) {
            Ok(r) => r,
            Err(errors) => return self.local(invalid(String::new(), errors, vec![])),
        };
        let mut check = Check::default();
        for u in unplaced {
            // Bounded: one counter per distinct key, capped.
            let key = u.split(" (").next().unwrap_or(&u).to_string();
            if self.stats.unplaced.len() < 200 || self.stats.unplaced.contains_key(&key) {
                *self.stats.unplaced.entry(key).or_insert(0) += 1;
            }
            check.warnings.push(format!("no place in Authgear, left out: {u}"));
        }
        let rules = Rules { identifier: self.opts.identifier, phone: self.mapping.login_id.phone_validation };
        let pw = schema::check(&mut record, rules, &mut check);
        let ids = loginid::normalize_record(&mut record, &self.mapping.login_id, self.mapping.reserved_usernames.as_deref(), &mut check);
        let identifier = match record.get(self.opts.identifier.key()) {
            Some(Value::String(s)) => s.clone(),
            _ => String::new(),
        };
        let mut password_reset = false;
        if let PasswordKind::Other(kind) = pw {
            self.stats.non_bcrypt += 1;
            match self.opts.non_bcrypt {
                NonBcrypt::Fail => check.errors.push(format!("password hash type `{kind}` is not bcrypt (see --non-bcrypt skip|without-password)")),
                NonBcrypt::Skip if check.errors.is_empty() => {
                    let w = format!("not imported: password hash type `{kind}` is not bcrypt");
                    check.warnings.push(w);
                    return self.local(LocalRow { line, identifier, outcome: Outcome::Skipped, errors: vec![], warnings: check.warnings });
                }
                NonBcrypt::Skip => {}
                NonBcrypt::WithoutPassword => {
                    record.remove("password");
                    password_reset = true;
                    check.warnings.push(format!("imported without password (hash type `{kind}` is not bcrypt): needs a password reset"));
                }
            }
        }
        if !check.errors.is_empty() {
            return self.local(invalid(identifier, check.errors, check.warnings));
        }
        if let Some(e) = self.duplicate(&ids, line) {
            return self.local(invalid(identifier, vec![e], check.warnings));
        }
        let bytes = match serde_json::to_vec(&record) {
            Ok(b) => b,
            Err(e) => return self.local(invalid(identifier, vec![format!("cannot serialise: {e}")], vec![])),
        };
        if !self.packer.fits_alone(bytes.len()) {
            let e = format!("record is {} bytes, too large for one request", bytes.len());
            return self.local(invalid(identifier, vec![e], check.warnings));
        }
        self.stats.valid += 1;
        if password_reset {
            self.stats.password_reset += 1;
        }
        if !self.wanted(line) {
            return;
        }
        let row = BatchRow { line, identifier, warnings: check.warnings, password_reset };
        if let Some(b) = self.packer.push(row, &bytes) {
            self.emit_batch(b);
        }
    }

    fn emit_batch(&mut self, b: Batch) {
        self.stats.batches += 1;
        self.stats.max_batch_bytes = self.stats.max_batch_bytes.max(b.body.len());
        self.queue.push_back(Item::Batch(b));
    }

    /// Finds the first earlier row sharing a login id with this one; records
    /// this row's ids only when it has none in common (the first row wins).
    fn duplicate(&mut self, ids: &[(Kind, String)], line: u64) -> Option<String> {
        let ident = self.opts.identifier.key();
        let keys: Vec<(Kind, u64)> = ids.iter().map(|(k, v)| (*k, login_id_hash(*k, v))).collect();
        for (kind, key) in &keys {
            if let Some(first) = self.seen.get(key) {
                if kind.key() == ident {
                    self.stats.duplicates += 1;
                    return Some(format!("duplicate identifier: same as line {first} (compared as the server normalizes it)"));
                }
                self.stats.duplicate_login_ids += 1;
                return Some(format!(
                    "duplicate {}: line {first} has the same {} (every login id must be unique; the server would fail this row)",
                    kind.key(),
                    kind.key()
                ));
            }
        }
        for (_, key) in keys {
            self.seen.insert(key, line);
        }
        None
    }
}

/// A fixed-key SipHash of the kind and normalized value: the same input maps
/// to the same key on resume, and an email never collides with a username.
fn login_id_hash(kind: Kind, normalized: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    kind.hash(&mut h);
    normalized.hash(&mut h);
    h.finish()
}

/// Groups error messages for the summary (drops the per-row detail after a line number).
fn error_class(e: &str) -> String {
    match e.find(" line ") {
        Some(i) => e[..i].to_string(),
        None => e.to_string(),
    }
}

impl Iterator for Pipeline {
    type Item = Result<Item, ImportError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.queue.pop_front() {
                return Some(Ok(item));
            }
            if self.finished {
                return None;
            }
            match self.rows.next() {
                Some(Ok(row)) => self.process(row),
                Some(Err(e)) => {
                    self.finished = true;
                    return Some(Err(e));
                }
                None => {
                    self.finished = true;
                    if let Some(b) = self.packer.finish() {
                        self.emit_batch(b);
                    }
                }
            }
        }
    }
}

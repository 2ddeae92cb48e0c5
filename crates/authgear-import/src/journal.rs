//! The append-only journal: one JSON object per line, flushed and synced at
//! every step that matters, so a crash at any point leaves enough behind for
//! `resume` to know which rows were sent, in which job, and with what outcome.
//!
//! Order of entries for one batch: `batch` (intent, with its rows) -> `sent`
//! (job id) -> `row` x N (outcomes) -> `done`. A torn last line is ignored.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::batch::BatchRow;
use super::mapping::Identifier;
use super::pipeline::{LocalRow, NonBcrypt};
use super::reader::Format;
use super::{ImportError, Outcome};

/// Everything needed to repeat a run exactly (no secrets).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunConfig {
    /// Input file (absolute).
    pub input: PathBuf,
    /// Input format.
    pub format: Format,
    /// Mapping file, if any (absolute).
    pub mapping: Option<PathBuf>,
    /// Identifier field.
    pub identifier: Identifier,
    /// Upsert flag.
    pub upsert: bool,
    /// Non-bcrypt policy.
    pub non_bcrypt: NonBcrypt,
    /// Body cap.
    pub max_batch_bytes: usize,
    /// Project endpoint.
    pub endpoint: String,
    /// Project id (JWT audience).
    pub project_id: String,
    /// Admin API key id.
    pub key_id: String,
    /// Input size, to notice a changed file on resume.
    pub input_size: u64,
    /// Input modification time (Unix seconds).
    pub input_mtime: u64,
    /// Report file the run writes.
    pub report: PathBuf,
}

/// One journal line.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Entry {
    /// First line: the run's configuration.
    Start(RunConfig),
    /// A batch is about to be sent.
    Batch {
        /// Batch number.
        batch: u64,
        /// Rows in record order.
        rows: Vec<BatchRow>,
        /// Body size.
        bytes: usize,
    },
    /// The server accepted the batch.
    Sent {
        /// Batch number.
        batch: u64,
        /// Job id.
        job_id: String,
    },
    /// The final (or, with `pending`, provisional) outcome of one row.
    Row(RowEntry),
    /// All row outcomes of a batch are written.
    Done {
        /// Batch number.
        batch: u64,
    },
    /// The server no longer knows the job: its rows must be sent again.
    Lost {
        /// Batch number.
        batch: u64,
        /// Job id.
        job_id: String,
    },
}

/// One row's outcome.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RowEntry {
    /// Source line.
    pub line: u64,
    /// Identifier value.
    pub identifier: String,
    /// Outcome; `None` only together with `pending`.
    pub outcome: Option<Outcome>,
    /// Batch number, when the row was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<u64>,
    /// Job id, when the row was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// Authgear user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Errors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// Warnings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Imported without a password: needs a reset.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub password_reset: bool,
    /// Not sent yet (the run stopped early); does not settle the row.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pending: bool,
}

impl From<LocalRow> for RowEntry {
    fn from(row: LocalRow) -> Self {
        RowEntry { line: row.line, identifier: row.identifier, outcome: Some(row.outcome), errors: row.errors, warnings: row.warnings, ..Default::default() }
    }
}

/// Appends entries durably.
pub struct JournalWriter {
    out: BufWriter<File>,
    path: PathBuf,
}

impl JournalWriter {
    /// Creates a new journal; refuses to overwrite an existing one.
    pub fn create(path: &Path) -> Result<Self, ImportError> {
        let file = OpenOptions::new().write(true).create_new(true).open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                ImportError::Journal(format!(
                    "{} already exists: continue with `authgear-import resume --journal {}` or pass another --report",
                    path.display(),
                    path.display()
                ))
            } else {
                ImportError::io(format!("create {}", path.display()), e)
            }
        })?;
        Ok(JournalWriter { out: BufWriter::new(file), path: path.to_path_buf() })
    }

    /// Opens an existing journal for appending.
    pub fn append(path: &Path) -> Result<Self, ImportError> {
        let file = OpenOptions::new().append(true).open(path).map_err(|e| ImportError::io(format!("open {}", path.display()), e))?;
        Ok(JournalWriter { out: BufWriter::new(file), path: path.to_path_buf() })
    }

    /// Buffers one entry.
    pub fn write(&mut self, entry: &Entry) -> Result<(), ImportError> {
        let ctx = || format!("write {}", self.path.display());
        serde_json::to_writer(&mut self.out, entry).map_err(|e| ImportError::io(ctx(), e.into()))?;
        self.out.write_all(b"\n").map_err(|e| ImportError::io(ctx(), e))
    }

    /// Flushes and fsyncs: everything written so far survives a crash.
    pub fn sync(&mut self) -> Result<(), ImportError> {
        let ctx = || format!("sync {}", self.path.display());
        self.out.flush().map_err(|e| ImportError::io(ctx(), e))?;
        self.out.get_ref().sync_data().map_err(|e| ImportError::io(ctx(), e))
    }
}

/// Per-line status as far as the journal knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum LineState {
    /// Not seen, or only pending.
    Open = 0,
    /// Has a final outcome other than `failed`.
    Settled = 1,
    /// Last outcome was `failed`.
    Failed = 2,
    /// In a batch that was sent and whose result is not yet recorded.
    InFlight = 3,
}

/// A batch whose result is not recorded yet.
#[derive(Debug, Clone)]
pub struct OpenBatch {
    /// Rows in record order.
    pub rows: Vec<BatchRow>,
    /// Job id, if the POST succeeded.
    pub job_id: Option<String>,
}

/// What `resume` learns from reading a journal.
#[derive(Debug)]
pub struct JournalState {
    /// The run's configuration.
    pub config: RunConfig,
    /// Batches without a `done` entry, by number.
    pub open: BTreeMap<u64, OpenBatch>,
    /// Highest batch number used.
    pub last_batch: u64,
    lines: Vec<u8>,
}

impl JournalState {
    /// Reads a journal from start to end.
    pub fn load(path: &Path) -> Result<Self, ImportError> {
        let file = File::open(path).map_err(|e| ImportError::io(format!("open {}", path.display()), e))?;
        let mut config = None;
        let mut open: BTreeMap<u64, OpenBatch> = BTreeMap::new();
        let mut last_batch = 0;
        let mut lines: Vec<u8> = Vec::new();
        let set = |lines: &mut Vec<u8>, line: u64, s: LineState| {
            let i = usize::try_from(line).unwrap_or(usize::MAX);
            if i == usize::MAX {
                return;
            }
            if lines.len() <= i {
                lines.resize(i + 1, 0);
            }
            lines[i] = s as u8;
        };
        let mut reader = BufReader::new(file);
        let mut text = String::new();
        let mut lineno = 0u64;
        loop {
            text.clear();
            let n = reader.read_line(&mut text).map_err(|e| ImportError::io("read journal", e))?;
            if n == 0 {
                break;
            }
            lineno += 1;
            let entry: Entry = match serde_json::from_str(text.trim_end()) {
                Ok(e) => e,
                // A torn final line from a crash mid-write: everything before it stands.
                Err(_) if !text.ends_with('\n') => break,
                Err(e) => return Err(ImportError::Journal(format!("line {lineno} is corrupt: {e}"))),
            };
            match entry {
                Entry::Start(c) => config = Some(c),
                Entry::Batch { batch, rows, .. } => {
                    last_batch = last_batch.max(batch);
                    open.insert(batch, OpenBatch { rows, job_id: None });
                }
                Entry::Sent { batch, job_id } => {
                    if let Some(b) = open.get_mut(&batch) {
                        for r in &b.rows {
                            set(&mut lines, r.line, LineState::InFlight);
                        }
                        b.job_id = Some(job_id);
                    }
                }
                Entry::Row(r) => {
                    let state = match (r.pending, r.outcome) {
                        (true, _) | (false, None) => LineState::Open,
                        (false, Some(Outcome::Failed)) => LineState::Failed,
                        (false, Some(_)) => LineState::Settled,
                    };
                    let i = usize::try_from(r.line).unwrap_or(usize::MAX);
                    // A pending marker never reopens a row that already has an outcome.
                    if state != LineState::Open || lines.get(i).copied().unwrap_or(0) == 0 {
                        set(&mut lines, r.line, state);
                    }
                }
                Entry::Done { batch } => {
                    open.remove(&batch);
                }
                Entry::Lost { batch, .. } => {
                    if let Some(b) = open.remove(&batch) {
                        for r in &b.rows {
                            set(&mut lines, r.line, LineState::Open);
                        }
                    }
                }
            }
        }
        let config = config.ok_or_else(|| ImportError::Journal(format!("{} has no start entry", path.display())))?;
        Ok(JournalState { config, open, last_batch, lines })
    }

    /// The state of one source line.
    pub fn state(&self, line: u64) -> LineState {
        let i = usize::try_from(line).unwrap_or(usize::MAX);
        match self.lines.get(i).copied().unwrap_or(0) {
            1 => LineState::Settled,
            2 => LineState::Failed,
            3 => LineState::InFlight,
            _ => LineState::Open,
        }
    }

    /// Hands over the per-line table (for the resume filter).
    pub fn take_lines(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.lines)
    }
}

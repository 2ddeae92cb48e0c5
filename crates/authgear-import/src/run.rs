//! Sends batches, waits for their jobs and records everything in the journal.
//!
//! One batch is in flight at a time: the server processes a job
//! asynchronously anyway, and strict ordering keeps the journal simple to
//! replay (at most one batch can be "sent but unresolved" after a crash).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::batch::{Batch, BatchRow};
use super::client::{ApiClient, Job, Posted};
use super::journal::{Entry, JournalWriter, RowEntry};
use super::pipeline::{Item, LocalRow, Pipeline};
use super::progress::Progress;
use super::{ImportError, Outcome, JOB_ERROR_PREFIX};

/// How many times a batch whose job result was lost is sent again.
const MAX_RESENDS: u32 = 2;

/// Drives batches through the API.
pub struct Runner {
    /// API client.
    pub client: ApiClient,
    /// Journal being appended to.
    pub journal: JournalWriter,
    /// Progress display.
    pub progress: Progress,
    /// Where raw (redacted) job results are saved.
    pub jobs_dir: PathBuf,
    /// Lines that an interrupted earlier attempt may already have delivered.
    pub maybe_sent: HashSet<u64>,
    /// Next batch number for resends.
    pub next_batch: u64,
}

/// How a run ended.
#[derive(Debug)]
pub enum Stop {
    /// Every batch went through.
    Finished,
    /// Stopped early; the error explains why (quota, or a fatal API error).
    Early(ImportError),
}

fn safe_name(id: &str) -> String {
    id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

impl Runner {
    /// Writes a row settled locally (invalid / skipped by policy).
    pub fn local(&mut self, row: LocalRow) -> Result<(), ImportError> {
        let entry = RowEntry::from(row);
        self.journal.write(&Entry::Row(entry))
    }

    /// Marks rows as not sent yet (after an early stop).
    pub fn pending(&mut self, rows: &[BatchRow]) -> Result<(), ImportError> {
        for r in rows {
            let entry = RowEntry { line: r.line, identifier: r.identifier.clone(), pending: true, ..RowEntry::default() };
            self.journal.write(&Entry::Row(entry))?;
        }
        Ok(())
    }

    /// Sends one batch and records its outcome, resending if its result is lost.
    pub async fn send(&mut self, mut batch: Batch) -> Result<(), ImportError> {
        let mut resends = 0;
        loop {
            self.journal.write(&Entry::Batch { batch: batch.number, rows: batch.rows.clone(), bytes: batch.body.len() })?;
            self.journal.sync()?;
            let body = Bytes::from(std::mem::take(&mut batch.body));
            match self.client.post_batch(body.clone()).await? {
                Posted::Rejected(msg) => {
                    self.progress.note(&format!("batch {}: {msg}", batch.number));
                    for r in &batch.rows {
                        self.write_outcome(batch.number, None, r, Outcome::Failed, None, vec![msg.clone()], vec![])?;
                    }
                    self.journal.write(&Entry::Done { batch: batch.number })?;
                    self.journal.sync()?;
                    self.progress.advance(batch.rows.len() as u64, batch.number);
                    return Ok(());
                }
                Posted::Job(job) => {
                    self.journal.write(&Entry::Sent { batch: batch.number, job_id: job.id.clone() })?;
                    self.journal.sync()?;
                    if self.complete(batch.number, &batch.rows, &job.id).await? {
                        return Ok(());
                    }
                }
            }
            resends += 1;
            for r in &batch.rows {
                self.maybe_sent.insert(r.line);
            }
            if resends > MAX_RESENDS {
                let msg = "job result lost repeatedly; the row may or may not be imported (use resume --retry-failed)";
                for r in &batch.rows {
                    self.write_outcome(batch.number, None, r, Outcome::Failed, None, vec![msg.into()], vec![])?;
                }
                self.journal.sync()?;
                return Ok(());
            }
            self.progress.note(&format!("batch {}: job result lost, sending the batch again", batch.number));
            batch.number = self.next_batch;
            self.next_batch += 1;
            batch.body = body.to_vec();
        }
    }

    /// Waits for a job and records its outcomes. Returns false if the server
    /// lost the job (a `lost` entry is written and the rows are open again).
    pub async fn complete(&mut self, batch: u64, rows: &[BatchRow], job_id: &str) -> Result<bool, ImportError> {
        let Some(job) = self.client.wait_job(job_id).await? else {
            self.journal.write(&Entry::Lost { batch, job_id: job_id.to_string() })?;
            self.journal.sync()?;
            return Ok(false);
        };
        self.save_job(&job)?;
        if let Some(e) = &job.error {
            self.progress.note(&format!("batch {batch}: job {job_id} reported an error for the whole job: {e}"));
        }
        for (i, r) in rows.iter().enumerate() {
            let (outcome, user_id, errors, warnings) = match job.details.iter().find(|d| d.index == i) {
                Some(d) => (Outcome::from_server(&d.outcome), d.user_id.clone(), d.errors.clone(), d.warnings.clone()),
                None => {
                    let why = match &job.error {
                        Some(e) => format!("{JOB_ERROR_PREFIX}{e}"),
                        None => "the job reported no result for this record".into(),
                    };
                    (Outcome::Failed, None, vec![why], vec![])
                }
            };
            self.write_outcome(batch, Some(job_id), r, outcome, user_id, errors, warnings)?;
        }
        self.journal.write(&Entry::Done { batch })?;
        self.journal.sync()?;
        self.progress.advance(rows.len() as u64, batch);
        Ok(true)
    }

    #[allow(clippy::too_many_arguments)]
    fn write_outcome(
        &mut self,
        batch: u64,
        job_id: Option<&str>,
        row: &BatchRow,
        outcome: Outcome,
        user_id: Option<String>,
        errors: Vec<String>,
        server_warnings: Vec<String>,
    ) -> Result<(), ImportError> {
        let mut warnings = row.warnings.clone();
        warnings.extend(server_warnings);
        if outcome == Outcome::Skipped && self.maybe_sent.contains(&row.line) {
            warnings.push("sent again after an interrupted attempt: `skipped` may mean that attempt imported it".into());
        }
        let entry = RowEntry {
            line: row.line,
            identifier: row.identifier.clone(),
            outcome: Some(outcome),
            batch: Some(batch),
            job_id: job_id.map(str::to_string),
            user_id,
            errors,
            warnings,
            password_reset: row.password_reset,
            pending: false,
        };
        self.journal.write(&Entry::Row(entry))
    }

    /// Saves a job's result at once: the server keeps it only for 24 hours.
    fn save_job(&self, job: &Job) -> Result<(), ImportError> {
        std::fs::create_dir_all(&self.jobs_dir).map_err(|e| ImportError::io(format!("create {}", self.jobs_dir.display()), e))?;
        let path = self.jobs_dir.join(format!("{}.json", safe_name(&job.id)));
        let text = serde_json::to_vec_pretty(&job.redacted).map_err(|e| ImportError::io("encode job", e.into()))?;
        std::fs::write(&path, text).map_err(|e| ImportError::io(format!("write {}", path.display()), e))
    }

    /// Feeds the whole pipeline through the API. On a quota or API error the
    /// remaining rows are recorded as pending (so the report still lists every
    /// row) and the error is returned as `Stop::Early`.
    pub async fn drive(&mut self, pipeline: &mut Pipeline) -> Result<Stop, ImportError> {
        let mut stopped: Option<ImportError> = None;
        for item in pipeline.by_ref() {
            match item? {
                Item::Local(row) => self.local(row)?,
                Item::Batch(b) if stopped.is_some() => self.pending(&b.rows)?,
                Item::Batch(b) => {
                    self.next_batch = self.next_batch.max(b.number + 1);
                    let rows = b.rows.clone();
                    match self.send(b).await {
                        Ok(()) => {}
                        Err(e @ (ImportError::Quota(_) | ImportError::Api(_))) => {
                            self.progress.note(&format!("stopping: {e}"));
                            self.pending(&rows)?;
                            stopped = Some(e);
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        self.journal.sync()?;
        Ok(match stopped {
            Some(e) => Stop::Early(e),
            None => Stop::Finished,
        })
    }
}

/// The jobs folder next to a report: `<report stem>.jobs/`.
pub fn jobs_dir_for(report: &Path) -> PathBuf {
    super::report::sibling(report, "jobs")
}

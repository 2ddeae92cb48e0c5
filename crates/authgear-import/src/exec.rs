//! The `run` and `resume` subcommands.

use std::collections::HashSet;
use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use super::cli::{describe, prepare, print_stats, KeyArgs, ResumeArgs, RunArgs};
use super::client::ApiClient;
use super::journal::{Entry, JournalState, JournalWriter, LineState, RunConfig};
use super::jwt::{AdminSigner, KeySource};
use super::mapping::Mapping;
use super::pipeline::{Item, Options, Pipeline};
use super::progress::{Mode, Progress};
use super::report::{self, Summary};
use super::run::{jobs_dir_for, Runner, Stop};
use super::{ImportError, EXIT_FATAL, EXIT_PARTIAL};

fn absolute(p: &Path) -> Result<PathBuf, ImportError> {
    std::path::absolute(p).map_err(|e| ImportError::io(format!("resolve {}", p.display()), e))
}

fn file_facts(p: &Path) -> Result<(u64, u64), ImportError> {
    let md = std::fs::metadata(p).map_err(|e| ImportError::io(format!("stat {}", p.display()), e))?;
    let mtime = md.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_secs());
    Ok((md.len(), mtime))
}

fn signer(key: &KeyArgs, key_id: &str, project_id: &str) -> Result<AdminSigner, ImportError> {
    let pem = key.source().read()?;
    AdminSigner::from_pem(&pem, key_id, project_id)
}

fn confirm(question: &str, yes: bool, key: &KeyArgs) -> Result<bool, ImportError> {
    if yes {
        return Ok(true);
    }
    if matches!(key.source(), KeySource::Stdin) {
        return Err(ImportError::Usage("the key was read from stdin, so no confirmation can be asked: pass --yes".into()));
    }
    if !std::io::stdin().is_terminal() {
        return Err(ImportError::Usage("confirmation needed but stdin is not a terminal: pass --yes".into()));
    }
    eprint!("{question} [y/N] ");
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).map_err(|e| ImportError::io("read answer", e))?;
    Ok(matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes"))
}

fn runtime() -> Result<tokio::runtime::Runtime, ImportError> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| ImportError::io("start runtime", e))
}

fn resume_hint(journal: &Path, key_id: &str) -> String {
    format!("resume with: authgear-import resume --journal {} --key-file <admin-key.pem> --key-id {key_id}", journal.display())
}

fn finish(journal: &Path, report_path: &Path, stop: Stop, json: bool, key_id: &str) -> Result<i32, ImportError> {
    let summary = report::write_from_journal(journal, report_path)?;
    print_summary(&summary, report_path, journal, json);
    match stop {
        Stop::Finished => Ok(summary.exit_code()),
        Stop::Early(e) => {
            let quota = matches!(e, ImportError::Quota(_));
            eprintln!("{}: {e}", if quota { "stopped cleanly" } else { "stopped" });
            eprintln!("{}", resume_hint(journal, key_id));
            if json {
                println!("{}", serde_json::json!({"event": "stopped", "quota": quota, "reason": e.to_string()}));
            }
            Ok(if quota { EXIT_PARTIAL } else { EXIT_FATAL })
        }
    }
}

fn print_summary(s: &Summary, report_path: &Path, journal: &Path, json: bool) {
    if json {
        println!("{}", serde_json::json!({"event": "summary", "summary": s, "report": report_path, "journal": journal}));
        return;
    }
    eprintln!(
        "done: {} rows: {} inserted, {} updated, {} skipped, {} failed, {} invalid{}",
        s.total,
        s.inserted,
        s.updated,
        s.skipped,
        s.failed,
        s.invalid,
        if s.pending > 0 { format!(" ({} not sent yet)", s.pending) } else { String::new() }
    );
    if s.job_error_rows > 0 {
        eprintln!("{} row(s) failed because their import job reported an error as a whole:", s.job_error_rows);
        for e in &s.job_errors {
            eprintln!("  {e}");
        }
    }
    if s.password_reset > 0 {
        eprintln!("{} user(s) were imported without a password and need a reset: {}", s.password_reset, report::password_reset_path(report_path).display());
    }
    eprintln!("report: {}\njournal: {}", report_path.display(), journal.display());
}

/// `run`: validate everything, confirm, then import.
pub fn run(a: &RunArgs) -> Result<i32, ImportError> {
    let (format, mapping, opts) = prepare(&a.input)?;
    let input = absolute(&a.input.input)?;
    let report_path = absolute(&match &a.input.report {
        Some(r) => r.clone(),
        None => report::sibling(&input, "report.csv"),
    })?;
    let journal_path = absolute(&a.journal.clone().unwrap_or_else(|| report::sibling(&report_path, "journal.jsonl")))?;
    if journal_path.exists() {
        return Err(ImportError::Journal(format!(
            "{} already exists: continue it with `resume`, or choose another --report/--journal",
            journal_path.display()
        )));
    }
    let signer = signer(&a.key, &a.key_id, &a.project_id)?;

    // Pass 1: a full validation before anything is sent.
    let mut check = Pipeline::open(&input, format, mapping.clone(), opts.clone())?;
    let mut problems = Vec::new();
    for item in check.by_ref() {
        if let Item::Local(row) = item? {
            if problems.len() < a.input.show {
                problems.push(describe(&row));
            }
        }
    }
    let stats = check.stats.clone();
    drop(check);
    for p in &problems {
        eprintln!("{p}");
    }
    print_stats(&stats, a.input.json);
    if stats.invalid > 0 && !a.skip_invalid {
        eprintln!("refusing to start: {} invalid row(s). Fix them, or pass --skip-invalid to import the rest.", stats.invalid);
        return Ok(EXIT_FATAL);
    }
    if opts.upsert {
        eprintln!("{}", super::cli::UPSERT_WARNING);
    }
    let question = format!(
        "Import {} user(s) in {} batch(es) into project `{}` at {}{}?",
        stats.valid,
        stats.batches,
        a.project_id,
        a.endpoint,
        if opts.upsert { " (upsert on)" } else { "" }
    );
    if !confirm(&question, a.yes, &a.key)? {
        eprintln!("aborted; nothing was sent");
        return Ok(EXIT_FATAL);
    }

    let (input_size, input_mtime) = file_facts(&input)?;
    let config = RunConfig {
        input: input.clone(),
        format,
        mapping: a.input.mapping.as_deref().map(absolute).transpose()?,
        identifier: opts.identifier,
        upsert: opts.upsert,
        non_bcrypt: opts.non_bcrypt,
        max_batch_bytes: opts.max_batch_bytes,
        endpoint: a.endpoint.clone(),
        project_id: a.project_id.clone(),
        key_id: a.key_id.clone(),
        input_size,
        input_mtime,
        report: report_path.clone(),
    };
    let mut journal = JournalWriter::create(&journal_path)?;
    journal.write(&Entry::Start(config))?;
    journal.sync()?;

    let mut runner = Runner {
        client: ApiClient::new(&a.endpoint, signer, a.timing.timing()),
        journal,
        progress: Progress::new(Mode::detect(a.input.json), stats.valid, "importing"),
        jobs_dir: jobs_dir_for(&report_path),
        maybe_sent: HashSet::new(),
        next_batch: 1,
    };
    let mut pipeline = Pipeline::open(&input, format, mapping, opts)?;
    let stop = runtime()?.block_on(runner.drive(&mut pipeline))?;
    runner.progress.finish();
    finish(&journal_path, &report_path, stop, a.input.json, &a.key_id)
}

/// `resume`: settle jobs already sent, then send what is left.
pub fn resume(a: &ResumeArgs) -> Result<i32, ImportError> {
    let journal_path = absolute(&a.journal)?;
    let state = JournalState::load(&journal_path)?;
    let config = state.config.clone();
    let (size, mtime) = file_facts(&config.input)?;
    if (size, mtime) != (config.input_size, config.input_mtime) && !a.force {
        return Err(ImportError::Journal(format!(
            "{} changed since the run (size or time differ); pass --force if the rows are unchanged",
            config.input.display()
        )));
    }
    let key_id = a.key_id.clone().unwrap_or_else(|| config.key_id.clone());
    let signer = signer(&a.key, &key_id, &config.project_id)?;
    let in_flight = state.open.values().filter(|b| b.job_id.is_some()).count();
    let question = format!(
        "Resume the import into project `{}` at {}: check {} job(s) in flight, then send the rows not sent yet{}?",
        config.project_id,
        config.endpoint,
        in_flight,
        if a.retry_failed { " and the failed rows" } else { "" }
    );
    if !confirm(&question, a.yes, &a.key)? {
        eprintln!("aborted; nothing was sent");
        return Ok(EXIT_FATAL);
    }
    let mode = Mode::detect(a.json);
    let rt = runtime()?;
    let mut runner = Runner {
        client: ApiClient::new(&config.endpoint, signer, a.timing.timing()),
        journal: JournalWriter::append(&journal_path)?,
        progress: Progress::new(mode, 0, "checking jobs"),
        jobs_dir: jobs_dir_for(&config.report),
        maybe_sent: HashSet::new(),
        next_batch: state.last_batch + 1,
    };

    // Step 1: jobs already sent are asked about before anything is sent again.
    for (number, batch) in &state.open {
        match &batch.job_id {
            Some(job_id) => {
                let res = rt.block_on(runner.complete(*number, &batch.rows, job_id));
                match res {
                    Ok(true) => {}
                    Ok(false) => {
                        runner.progress.note(&format!("batch {number}: job {job_id} is unknown to the server; its rows will be sent again"));
                        runner.maybe_sent.extend(batch.rows.iter().map(|r| r.line));
                    }
                    Err(e @ (ImportError::Quota(_) | ImportError::Api(_))) => {
                        runner.journal.sync()?;
                        return finish(&journal_path, &config.report, Stop::Early(e), a.json, &key_id);
                    }
                    Err(e) => return Err(e),
                }
            }
            None => {
                // Written as intent but never acknowledged: the POST may or may not
                // have reached the server. Close it; its rows are sent again, and with
                // upsert off the server skips any user that already exists.
                runner.journal.write(&Entry::Lost { batch: *number, job_id: String::new() })?;
                runner.maybe_sent.extend(batch.rows.iter().map(|r| r.line));
            }
        }
    }
    runner.journal.sync()?;

    // Step 2: re-read the journal to learn which rows are still open.
    let mut state = JournalState::load(&journal_path)?;
    let lines = state.take_lines();
    let retry_failed = a.retry_failed;
    let filter = move |line: u64| {
        let i = usize::try_from(line).unwrap_or(usize::MAX);
        match lines.get(i).copied().unwrap_or(0) {
            x if x == LineState::Settled as u8 || x == LineState::InFlight as u8 => false,
            x if x == LineState::Failed as u8 => retry_failed,
            _ => true,
        }
    };
    let mapping = match &config.mapping {
        Some(p) => Mapping::load(p)?,
        None => Mapping::automatic(config.identifier),
    };
    let mut mapping = mapping;
    mapping.identifier = config.identifier;
    let opts = Options {
        identifier: config.identifier,
        upsert: config.upsert,
        max_batch_bytes: config.max_batch_bytes,
        non_bcrypt: config.non_bcrypt,
        first_batch: runner.next_batch,
    };
    let mut pipeline = Pipeline::open(&config.input, config.format, mapping, opts)?.only(Box::new(filter));
    runner.progress.finish();
    runner.progress = Progress::new(mode, 0, "resuming");
    let stop = rt.block_on(runner.drive(&mut pipeline))?;
    runner.progress.finish();
    finish(&journal_path, &config.report, stop, a.json, &key_id)
}

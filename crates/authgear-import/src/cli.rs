//! Command-line interface: argument definitions and the `validate` and
//! `mapping` subcommands (`run` and `resume` live in `exec`; `main.rs`
//! dispatches).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use super::batch::{self, Batch};
use super::client::Timing;
use super::jwt::KeySource;
use super::mapping::{Identifier, Mapping};
use super::pipeline::{Item, LocalRow, NonBcrypt, Options, Pipeline, Stats};
use super::presets::{self, Preset};
use super::reader::{self, Format};
use super::report::ReportWriter;
use super::{draft, journal::RowEntry, ImportError, EXIT_OK, EXIT_PARTIAL};

/// Import users into Authgear through the User Import API.
#[derive(Debug, Parser)]
#[command(
    name = "authgear-import",
    version,
    about = "Moves users from an export (CSV, JSON or NDJSON) into Authgear through the User Import API",
    long_about = "Moves users from an export (CSV, JSON or NDJSON; Auth0, Firebase, Cognito, Keycloak, \
Supabase and Django exports are recognised) into an Authgear project through the Admin API's User Import API.\n\n\
Steps: `mapping` drafts how columns become record fields, `validate` checks every row by the server's \
rules and sends nothing, `run` imports, `resume` continues an interrupted run from its journal.\n\n\
Guide: docs/IMPORT.md"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Dry run: map and check every row, report problems, send nothing.
    Validate(ValidateArgs),
    /// Draft a mapping file from the input's column names.
    Mapping(MappingArgs),
    /// Validate, then import.
    Run(RunArgs),
    /// Continue an interrupted run from its journal.
    Resume(ResumeArgs),
}

/// Options shared by `validate` and `run`.
#[derive(Debug, Args, Clone)]
pub struct InputArgs {
    /// Input file: CSV with headers, a JSON array, or NDJSON.
    #[arg(long)]
    pub input: PathBuf,
    /// Input format (default: from the extension, else sniffed).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Mapping file drafted by `mapping` (default: recognise well-known column names).
    #[arg(long)]
    pub mapping: Option<PathBuf>,
    /// Identifier field (overrides the mapping file).
    #[arg(long, value_enum)]
    pub identifier: Option<Identifier>,
    /// What to do with password hashes that are not bcrypt.
    #[arg(long, value_enum, default_value = "fail")]
    pub non_bcrypt: NonBcrypt,
    /// Update users that already exist (upsert leaves password, mfa.password and mfa.totp alone).
    #[arg(long)]
    pub upsert: bool,
    /// Largest request body in bytes (the server accepts at most 500000).
    #[arg(long, default_value_t = batch::DEFAULT_CAP)]
    pub max_batch_bytes: usize,
    /// Report file (.csv, or .jsonl for JSON lines).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Machine-readable output on stdout.
    #[arg(long)]
    pub json: bool,
    /// How many problem rows to print (all are in the report).
    #[arg(long, default_value_t = 20)]
    pub show: usize,
}

/// `validate` options.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Input and mapping.
    #[command(flatten)]
    pub input: InputArgs,
    /// Write the exact request bodies that `run` would send into this folder.
    #[arg(long)]
    pub write_batches: Option<PathBuf>,
}

/// `mapping` options.
#[derive(Debug, Args)]
pub struct MappingArgs {
    /// Input file to take column names from.
    #[arg(long)]
    pub input: PathBuf,
    /// Input format (default: from the extension).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Write here instead of stdout (an existing file is not overwritten).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// The system the export comes from (default: recognised from the columns).
    #[arg(long, value_enum)]
    pub from: Option<Preset>,
    /// Auth0's password hash export (NDJSON from Auth0 support), joined by user id.
    #[arg(long)]
    pub password_hashes: Option<PathBuf>,
}

/// Where the Admin API key comes from (exactly one).
#[derive(Debug, Args, Clone)]
#[group(required = true, multiple = false)]
pub struct KeyArgs {
    /// PEM file holding the Admin API private key.
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// Name of an environment variable holding the PEM text.
    #[arg(long)]
    pub key_env: Option<String>,
    /// Read the PEM text from standard input.
    #[arg(long)]
    pub key_stdin: bool,
}

impl KeyArgs {
    /// The chosen source.
    pub fn source(&self) -> KeySource {
        match (&self.key_file, &self.key_env) {
            (Some(p), _) if p.as_os_str() == "-" => KeySource::Stdin,
            (Some(p), _) => KeySource::File(p.clone()),
            (None, Some(v)) => KeySource::Env(v.clone()),
            _ => KeySource::Stdin,
        }
    }
}

/// Retry and polling timings (hidden: for tests and unusual servers).
#[derive(Debug, Args, Clone)]
pub struct TimingArgs {
    /// Retries for 429 / 5xx / network errors.
    #[arg(long, default_value_t = 8, hide = true)]
    pub max_retries: u32,
    /// First backoff delay in milliseconds.
    #[arg(long, default_value_t = 500, hide = true)]
    pub backoff_ms: u64,
    /// First job-poll delay in milliseconds.
    #[arg(long, default_value_t = 500, hide = true)]
    pub poll_ms: u64,
    /// Longest job-poll delay in milliseconds.
    #[arg(long, default_value_t = 15_000, hide = true)]
    pub poll_max_ms: u64,
}

impl TimingArgs {
    /// Converts to client timings.
    pub fn timing(&self) -> Timing {
        Timing {
            max_retries: self.max_retries,
            backoff_base: Duration::from_millis(self.backoff_ms.max(1)),
            poll_initial: Duration::from_millis(self.poll_ms.max(1)),
            poll_max: Duration::from_millis(self.poll_max_ms.max(self.poll_ms).max(1)),
            ..Timing::default()
        }
    }
}

/// `run` options.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Input and mapping.
    #[command(flatten)]
    pub input: InputArgs,
    /// Project endpoint, e.g. https://myapp.authgear.cloud
    #[arg(long)]
    pub endpoint: String,
    /// Project id (the Admin API JWT audience).
    #[arg(long)]
    pub project_id: String,
    /// Admin API key id (`kid`).
    #[arg(long)]
    pub key_id: String,
    /// Key source.
    #[command(flatten)]
    pub key: KeyArgs,
    /// Send the valid rows even if some rows are invalid.
    #[arg(long)]
    pub skip_invalid: bool,
    /// Journal file (default: next to the report).
    #[arg(long)]
    pub journal: Option<PathBuf>,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Timings.
    #[command(flatten)]
    pub timing: TimingArgs,
}

/// `resume` options.
#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// Journal written by `run`.
    #[arg(long)]
    pub journal: PathBuf,
    /// Key source.
    #[command(flatten)]
    pub key: KeyArgs,
    /// Admin API key id (default: the one the run used).
    #[arg(long)]
    pub key_id: Option<String>,
    /// Also send again the rows the server failed.
    #[arg(long)]
    pub retry_failed: bool,
    /// Resume even though the input file changed since the run.
    #[arg(long)]
    pub force: bool,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Machine-readable output on stdout.
    #[arg(long)]
    pub json: bool,
    /// Timings.
    #[command(flatten)]
    pub timing: TimingArgs,
}

/// Resolves format, mapping and options from the shared input arguments.
pub fn prepare(a: &InputArgs) -> Result<(Format, Mapping, Options), ImportError> {
    if a.max_batch_bytes > batch::SERVER_CAP || a.max_batch_bytes < 1024 {
        return Err(ImportError::Usage(format!("--max-batch-bytes must be between 1024 and {}", batch::SERVER_CAP)));
    }
    let format = match a.format {
        Some(f) => f,
        None => reader::detect_format(&a.input)?,
    };
    let mut mapping = match &a.mapping {
        Some(p) => Mapping::load(p)?,
        None => Mapping::automatic(a.identifier.unwrap_or(Identifier::Email)),
    };
    if let Some(id) = a.identifier {
        mapping.identifier = id;
    }
    let opts = Options { identifier: mapping.identifier, upsert: a.upsert, max_batch_bytes: a.max_batch_bytes, non_bcrypt: a.non_bcrypt, first_batch: 1 };
    Ok((format, mapping, opts))
}

/// What `--upsert` changes and what it leaves alone (authgear-server's upsert path).
pub const UPSERT_WARNING: &str = "warning: --upsert updates existing users: profile fields, login ids, mfa.email and mfa.phone_number \
(null removes them); password, mfa.password and mfa.totp are never changed by upsert";

/// Prints one problem row for humans.
pub fn describe(row: &LocalRow) -> String {
    let who = if row.identifier.is_empty() { String::new() } else { format!(" [{}]", row.identifier) };
    let mut parts = row.errors.clone();
    parts.extend(row.warnings.iter().map(|w| format!("warning: {w}")));
    format!("line {}{}: {}: {}", row.line, who, row.outcome.as_str(), parts.join("; "))
}

/// Prints the validation summary (human or JSON).
pub fn print_stats(stats: &Stats, json: bool) {
    if json {
        println!("{}", serde_json::json!({"event": "validation", "stats": stats}));
        return;
    }
    let mut out = std::io::stderr().lock();
    let _ = writeln!(out, "rows read:            {}", stats.rows);
    let _ = writeln!(out, "valid:                {} (in {} batch(es), largest {} bytes)", stats.valid, stats.batches, stats.max_batch_bytes);
    let _ = writeln!(
        out,
        "invalid:              {} ({} duplicate identifier(s), {} other duplicate login id(s))",
        stats.invalid, stats.duplicates, stats.duplicate_login_ids
    );
    let _ = writeln!(out, "skipped by policy:    {}", stats.skipped);
    let _ = writeln!(out, "non-bcrypt hashes:    {}", stats.non_bcrypt);
    let _ = writeln!(out, "need password reset:  {}", stats.password_reset);
    if !stats.unplaced.is_empty() {
        let _ = writeln!(out, "no place in Authgear (left out of the records):");
        let mut unplaced: Vec<_> = stats.unplaced.iter().collect();
        unplaced.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (key, n) in unplaced.iter().take(20) {
            let _ = writeln!(out, "  {n:>8} x {key}");
        }
    }
    let mut errors: Vec<_> = stats.errors.iter().collect();
    errors.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    if !errors.is_empty() {
        let _ = writeln!(out, "most common problems:");
    }
    for (msg, n) in errors.iter().take(10) {
        let _ = writeln!(out, "  {n:>8} x {msg}");
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), ImportError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        // Bodies hold password hashes: readable by the owner only.
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|e| ImportError::io(format!("create {}", path.display()), e))?;
    f.write_all(bytes).map_err(|e| ImportError::io(format!("write {}", path.display()), e))
}

/// The `validate` subcommand: the dry run.
pub fn validate(a: &ValidateArgs) -> Result<i32, ImportError> {
    let (format, mapping, opts) = prepare(&a.input)?;
    if a.input.upsert {
        eprintln!("{}", UPSERT_WARNING);
    }
    if let Some(dir) = &a.write_batches {
        std::fs::create_dir_all(dir).map_err(|e| ImportError::io(format!("create {}", dir.display()), e))?;
    }
    let mut report = a.input.report.as_deref().map(ReportWriter::create).transpose()?;
    let mut pipeline = Pipeline::open(&a.input.input, format, mapping, opts)?;
    let mut shown = 0usize;
    let mut hidden = 0u64;
    for item in pipeline.by_ref() {
        match item? {
            Item::Local(row) => {
                if shown < a.input.show {
                    shown += 1;
                    if a.input.json {
                        println!(
                            "{}",
                            serde_json::json!({"event": "row", "line": row.line, "identifier": row.identifier,
                            "outcome": row.outcome.as_str(), "errors": row.errors, "warnings": row.warnings})
                        );
                    } else {
                        eprintln!("{}", describe(&row));
                    }
                } else {
                    hidden += 1;
                }
                if let Some(r) = report.as_mut() {
                    r.write(&RowEntry::from(row))?;
                }
            }
            Item::Batch(b) => write_batch(a.write_batches.as_deref(), &b)?,
        }
    }
    if hidden > 0 && !a.input.json {
        eprintln!("... and {hidden} more problem row(s){}", if report.is_some() { " (see the report)" } else { " (use --report)" });
    }
    if let Some(r) = report {
        r.finish()?;
    }
    print_stats(&pipeline.stats, a.input.json);
    if !a.input.json {
        eprintln!("nothing was sent (validate is a dry run)");
    }
    Ok(if pipeline.stats.invalid > 0 { EXIT_PARTIAL } else { EXIT_OK })
}

fn write_batch(dir: Option<&Path>, b: &Batch) -> Result<(), ImportError> {
    let Some(dir) = dir else { return Ok(()) };
    write_private(&dir.join(format!("batch-{:06}.json", b.number)), &b.body)
}

fn absolute_display(p: &Path) -> Result<String, ImportError> {
    if !p.is_file() {
        return Err(ImportError::Usage(format!("--password-hashes {}: no such file", p.display())));
    }
    std::path::absolute(p).map(|a| a.display().to_string()).map_err(|e| ImportError::io(format!("resolve {}", p.display()), e))
}

/// The columns of an input as `preset` reshapes its rows: the header's order
/// first (CSV), then keys of the first 1000 records in order of appearance.
fn scan_columns(input: &Path, format: Format, preset: Option<Preset>) -> Result<(Vec<String>, draft::Sample), ImportError> {
    let layout = match preset {
        Some(p) => reader::Layout { records_key: p.records_key(), csv_headers: p.csv_headers() },
        None => reader::Layout::default(),
    };
    let mut sample = draft::Sample::default();
    let mut columns: Vec<String> = match (format, layout.csv_headers) {
        (Format::Csv, Some(h)) => h.iter().map(|s| s.to_string()).collect(),
        (Format::Csv, None) => reader::csv_headers(input)?,
        _ => Vec::new(),
    };
    let mut present: Vec<String> = Vec::new();
    let mut read_any = false;
    for row in reader::open_with(input, format, layout)?.take(1000) {
        let Ok(mut map) = row?.data else { continue };
        read_any = true;
        if let Some(p) = preset {
            p.prepare(&mut map, None);
        }
        for (k, v) in &map {
            if !columns.contains(k) {
                columns.push(k.clone());
            }
            if !present.contains(k) {
                present.push(k.clone());
            }
            note_object(&mut sample, k, v);
        }
    }
    if read_any {
        // A column the preset reshaped away (Django's `password`) is not drafted.
        columns.retain(|c| present.contains(c));
    }
    Ok((columns, sample))
}

/// Remembers that a column holds objects (or JSON text holding one), and their keys.
fn note_object(sample: &mut draft::Sample, column: &str, v: &serde_json::Value) {
    let parsed;
    let obj = match v {
        serde_json::Value::Object(m) => m,
        serde_json::Value::String(s) if s.starts_with('{') => match serde_json::from_str::<serde_json::Value>(s) {
            Ok(serde_json::Value::Object(m)) => {
                parsed = m;
                &parsed
            }
            _ => return,
        },
        _ => return,
    };
    if v.is_object() && !sample.objects.iter().any(|o| o == column) {
        sample.objects.push(column.to_string());
    }
    let i = match sample.keys.iter().position(|(c, _)| c == column) {
        Some(i) => i,
        None => {
            sample.keys.push((column.to_string(), Vec::new()));
            sample.keys.len() - 1
        }
    };
    for k in obj.keys() {
        let keys = &mut sample.keys[i].1;
        if keys.len() < 30 && !keys.contains(k) {
            keys.push(k.clone());
        }
    }
}

/// The `mapping` subcommand: drafts a mapping file.
pub fn mapping(a: &MappingArgs) -> Result<i32, ImportError> {
    let format = match a.format {
        Some(f) => f,
        None => reader::detect_format(&a.input)?,
    };
    let (mut columns, mut sample) = scan_columns(&a.input, format, a.from)?;
    let mut preset = a.from;
    if preset.is_none() {
        // A recognised export is drafted as its preset would read it.
        preset = presets::detect(&columns);
        if let Some(p) = preset {
            (columns, sample) = scan_columns(&a.input, format, Some(p))?;
        }
    }
    if columns.is_empty() {
        return Err(ImportError::Input("no column names found".into()));
    }
    // Absolute, since `validate` reads it relative to the mapping file otherwise.
    let hashes = a.password_hashes.as_deref().map(absolute_display).transpose()?;
    let text = draft::draft(&columns, &sample, preset, hashes.as_deref());
    match &a.output {
        None => print!("{text}"),
        Some(p) => {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(p)
                .map_err(|e| ImportError::io(format!("create {} (it must not exist yet)", p.display()), e))?;
            f.write_all(text.as_bytes()).map_err(|e| ImportError::io(format!("write {}", p.display()), e))?;
            eprintln!("wrote {}: review it, then `authgear-import validate --input {} --mapping {}`", p.display(), a.input.display(), p.display());
        }
    }
    Ok(EXIT_OK)
}

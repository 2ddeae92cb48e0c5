//! Progress output: a bar with ETA on a terminal, plain lines otherwise, JSON
//! events on stdout with `--json`.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// indicatif bar on stderr.
    Bar,
    /// A line on stderr every few seconds.
    Plain,
    /// JSON events on stdout.
    Json,
}

impl Mode {
    /// Bar on a terminal, plain lines otherwise, unless JSON is asked for.
    pub fn detect(json: bool) -> Mode {
        if json {
            Mode::Json
        } else if std::io::stderr().is_terminal() {
            Mode::Bar
        } else {
            Mode::Plain
        }
    }
}

/// Progress over a known number of rows.
pub struct Progress {
    mode: Mode,
    bar: Option<ProgressBar>,
    total: u64,
    done: u64,
    started: Instant,
    last_line: Instant,
}

impl Progress {
    /// Starts tracking `total` rows under `label`.
    pub fn new(mode: Mode, total: u64, label: &str) -> Self {
        let bar = (mode == Mode::Bar).then(|| {
            let b = ProgressBar::new(total);
            let style = ProgressStyle::with_template("{msg} [{elapsed_precise}] {wide_bar} {pos}/{len} rows ({per_sec}, ETA {eta})")
                .unwrap_or_else(|_| ProgressStyle::default_bar());
            b.set_style(style);
            b.set_message(label.to_string());
            b
        });
        let now = Instant::now();
        Progress { mode, bar, total, done: 0, started: now, last_line: now }
    }

    /// Records `n` more rows finished.
    pub fn advance(&mut self, n: u64, batch: u64) {
        self.done += n;
        match self.mode {
            Mode::Bar => {
                if let Some(b) = &self.bar {
                    b.inc(n);
                }
            }
            Mode::Plain => {
                if self.last_line.elapsed() >= Duration::from_secs(2) || self.done >= self.total {
                    self.last_line = Instant::now();
                    let secs = self.started.elapsed().as_secs_f64().max(0.001);
                    let rate = self.done as f64 / secs;
                    let eta = if rate > 0.0 { (self.total.saturating_sub(self.done)) as f64 / rate } else { 0.0 };
                    eprintln!("progress: {}/{} rows, batch {batch}, {rate:.0} rows/s, ETA {eta:.0}s", self.done, self.total);
                }
            }
            Mode::Json => {
                println!("{}", json!({"event": "progress", "done": self.done, "total": self.total, "batch": batch}));
            }
        }
    }

    /// Prints a message without breaking the bar.
    pub fn note(&self, text: &str) {
        match (&self.bar, self.mode) {
            (Some(b), _) => b.println(text),
            (None, Mode::Json) => println!("{}", json!({"event": "message", "text": text})),
            (None, _) => eprintln!("{text}"),
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

//! A log sink that keeps the `write` system call off the request path.
//!
//! `tracing_subscriber::fmt` formats each event and writes it at once; on
//! stderr (unbuffered) that is one system call per log line, i.e. one per
//! request for the access log, which cost about a third of the throughput in
//! `bench/run.sh`. Here each line is handed to a writer thread over a
//! bounded channel; the thread appends lines to a 64 KB buffer and flushes
//! whenever the channel runs dry, then rests a moment if it was busy
//! (`LINGER`), so a busy gateway writes many lines per system call and an
//! idle one still writes each line at once. Nothing is
//! dropped: when the channel is full, senders wait (back-pressure), and
//! [`LogGuard`] flushes what is left when the process ends.

use std::io::Write;
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::Duration;

/// Lines that may wait for the writer thread before senders block.
const QUEUE: usize = 16 * 1024;

/// Flushes what is queued when dropped (the subscriber keeps its own
/// sender, so the thread itself lives until the process ends).
pub struct LogGuard {
    tx: SyncSender<Vec<u8>>,
    flushed: Receiver<()>,
    _thread: Option<JoinHandle<()>>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        // An empty line asks the writer to flush and answer.
        if self.tx.send(Vec::new()).is_ok() {
            let _ = self.flushed.recv_timeout(Duration::from_secs(5));
        }
    }
}

/// A cloneable handle that `tracing_subscriber` writes lines into.
#[derive(Clone)]
pub struct BatchedStderr {
    tx: SyncSender<Vec<u8>>,
}

/// Starts the writer thread; keep the guard alive until the process ends.
pub fn stderr() -> (BatchedStderr, LogGuard) {
    let (tx, rx) = sync_channel::<Vec<u8>>(QUEUE);
    let (ack_tx, ack_rx) = channel();
    let thread = std::thread::Builder::new().name("log-writer".into()).spawn(move || drain(rx, ack_tx)).ok();
    (BatchedStderr { tx: tx.clone() }, LogGuard { tx, flushed: ack_rx, _thread: thread })
}

/// After a batch of more than one line the writer rests this long before
/// it looks again. A sender only makes a system call to wake the writer
/// when the writer is asleep on an empty channel, so while the gateway is
/// busy lines pile up without one, and the writer wakes a few hundred
/// times a second instead of every few lines. A lone line (a quiet
/// gateway) is still written at once.
const LINGER: Duration = Duration::from_millis(2);

fn drain(rx: Receiver<Vec<u8>>, ack: Sender<()>) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stderr());
    while let Ok(first) = rx.recv() {
        let mut asked = first.is_empty();
        let mut lines = 1;
        let _ = out.write_all(&first);
        while let Ok(more) = rx.try_recv() {
            asked |= more.is_empty();
            lines += 1;
            let _ = out.write_all(&more);
        }
        let _ = out.flush();
        if asked {
            let _ = ack.send(());
        }
        if lines > 1 {
            std::thread::sleep(LINGER);
        }
    }
}

/// How `access` lines are written when they skip tracing's formatter.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AccessFormat {
    /// The line tracing's JSON formatter would write.
    Json,
    /// The line tracing's compact formatter would write without colours.
    Text,
}

/// Where access-log lines go when [`install_access`] was called.
static ACCESS: std::sync::OnceLock<(BatchedStderr, AccessFormat)> = std::sync::OnceLock::new();

/// `access` formats its lines itself (see `access::AccessRecord::fields`)
/// and hands them straight to the writer thread, skipping
/// tracing's field visitors and formatters, which cost most of the access
/// log's share of the CPU. The lines say what tracing's would, in the same
/// order (tested there).
pub fn install_access(w: &BatchedStderr, format: AccessFormat) {
    let _ = ACCESS.set((w.clone(), format));
}

/// The format access lines are written in directly, if installed.
pub fn access_format() -> Option<AccessFormat> {
    ACCESS.get().map(|(_, f)| *f)
}

/// Sends one finished access-log line (dropped when not installed: the
/// caller asked [`access_format`] first).
pub fn send_access(line: Vec<u8>) {
    if let Some((w, _)) = ACCESS.get() {
        deliver(&w.tx, line);
    }
}

/// One event's bytes; sent as a whole when the formatter drops it.
pub struct Line {
    buf: Vec<u8>,
    tx: SyncSender<Vec<u8>>,
}

impl Write for Line {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        deliver(&self.tx, std::mem::take(&mut self.buf));
    }
}

/// Queues one line for the writer thread.
fn deliver(tx: &SyncSender<Vec<u8>>, buf: Vec<u8>) {
    match tx.try_send(buf) {
        Ok(()) => {}
        // Full: wait for room rather than lose a line.
        Err(TrySendError::Full(buf)) => {
            let _ = tx.send(buf);
        }
        // The writer is gone (shutting down): write directly.
        Err(TrySendError::Disconnected(buf)) => {
            let _ = std::io::stderr().write_all(&buf);
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BatchedStderr {
    type Writer = Line;
    fn make_writer(&'a self) -> Line {
        Line { buf: Vec::with_capacity(256), tx: self.tx.clone() }
    }
}

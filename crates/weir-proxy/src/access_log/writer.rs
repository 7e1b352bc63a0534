//! The writer thread: drains the queue, formats, writes through a buffer, flushes when idle.
//!
//! A plain thread rather than a tokio task: file writes block, and a blocked disk must stall
//! only this thread (the queue then fills and records are dropped), never a runtime worker.
//! The [`Sink`] is a trait so tests can put a stalled or failing one in.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;
use weir_config::AccessLogField;

use super::{Counters, Msg, format};

/// Buffer size of the file and stdout writers.
const BUFFER: usize = 64 * 1024;

/// Where lines go.
pub(crate) trait Sink: Send + 'static {
    /// Writes one whole line (buffered).
    fn write_line(&mut self, line: &[u8]) -> io::Result<()>;
    /// Pushes buffered lines out.
    fn flush(&mut self) -> io::Result<()>;
    /// Starts writing to a fresh handle of the same path (after a rotation).
    fn reopen(&mut self) -> io::Result<()>;
}

/// The log file, opened for appending.
pub(crate) struct FileSink {
    path: PathBuf,
    out: BufWriter<File>,
}

/// Standard output.
pub(crate) struct StdoutSink {
    out: BufWriter<io::Stdout>,
}

/// The writer's state.
pub(super) struct Writer {
    sink: Box<dyn Sink>,
    fields: Vec<AccessLogField>,
    counters: Arc<Counters>,
    line: Vec<u8>,
    /// Whether the last operation failed, so a broken disk is reported once, not per line.
    failing: bool,
}

// === impl Writer ===

impl Writer {
    pub(super) fn new(
        sink: Box<dyn Sink>,
        fields: Vec<AccessLogField>,
        counters: Arc<Counters>,
    ) -> Self {
        Self {
            sink,
            fields,
            counters,
            line: Vec::with_capacity(512),
            failing: false,
        }
    }

    /// Runs until every sender is gone: one blocking receive, then whatever else is queued,
    /// then one flush.
    pub(super) fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        while let Some(msg) = rx.blocking_recv() {
            self.handle(msg);
            while let Ok(msg) = rx.try_recv() {
                self.handle(msg);
            }
            let flushed = self.sink.flush();
            self.outcome("flushing", flushed);
        }
        let flushed = self.sink.flush();
        self.outcome("flushing", flushed);
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Record(record) => {
                self.line.clear();
                let formatted = format::write_line(&mut self.line, &record, &self.fields);
                let written = formatted
                    .map_err(io::Error::other)
                    .and_then(|()| self.sink.write_line(&self.line));
                if written.is_ok() {
                    self.counters.written.fetch_add(1, Ordering::Relaxed);
                }
                self.outcome("writing", written);
            }
            Msg::Reopen(done) => {
                let flushed = self.sink.flush();
                self.outcome("flushing", flushed);
                let reopened = self.sink.reopen();
                let answer = clone_result(&reopened);
                self.outcome("reopening", reopened);
                let _ = done.send(answer);
            }
            Msg::Flush(done) => {
                let flushed = self.sink.flush();
                let answer = clone_result(&flushed);
                self.outcome("flushing", flushed);
                let _ = done.send(answer);
            }
        }
    }

    /// Counts a failure, and logs the first of a run of them.
    fn outcome(&mut self, what: &str, result: io::Result<()>) {
        match result {
            Ok(()) => self.failing = false,
            Err(e) => {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                if !self.failing {
                    tracing::error!(error = %e, "access log: {what} failed");
                }
                self.failing = true;
            }
        }
    }
}

fn clone_result(r: &io::Result<()>) -> io::Result<()> {
    match r {
        Ok(()) => Ok(()),
        Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
    }
}

// === impl FileSink ===

impl FileSink {
    /// Opens `path` for appending, creating it if needed.
    pub(crate) fn open(path: PathBuf) -> io::Result<Self> {
        let out = BufWriter::with_capacity(BUFFER, open_append(&path)?);
        Ok(Self { path, out })
    }
}

fn open_append(path: &PathBuf) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

impl Sink for FileSink {
    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        self.out.write_all(line)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn reopen(&mut self) -> io::Result<()> {
        // On failure the old handle stays: lines keep going to the renamed file, not nowhere.
        let file = open_append(&self.path)?;
        self.out = BufWriter::with_capacity(BUFFER, file);
        Ok(())
    }
}

// === impl StdoutSink ===

impl StdoutSink {
    pub(crate) fn new() -> Self {
        Self {
            out: BufWriter::with_capacity(BUFFER, io::stdout()),
        }
    }
}

impl Sink for StdoutSink {
    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        self.out.write_all(line)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn reopen(&mut self) -> io::Result<()> {
        Ok(())
    }
}

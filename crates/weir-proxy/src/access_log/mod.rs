//! The access log: one JSON line per HTTP request, per L4 connection and per UDP session,
//! written off the hot path.
//!
//! The data path only fills in a small [`HttpEntry`] or [`TcpEntry`] (copies, `Arc` clones and
//! counters; no formatting, no I/O) and, when the request's response body ends or the
//! connection closes, the entry's `Drop` hands the finished record to a bounded queue with
//! `try_send`. A full queue drops the record and counts it ([`AccessLog::dropped`]): a slow disk
//! never holds a request. One writer thread ([`writer`]) drains the queue in batches, formats
//! each record as JSON ([`format`]) into a buffered sink and flushes when the queue is empty.
//! [`AccessLog::reopen`] makes the writer reopen its file (after logrotate moved it away).
//!
//! [`AccessLogs`] is the proxy's handle on the current log: a reload that changes `access_log`
//! opens the new one (path, fields, queue) and swaps it in, as the span export does; requests
//! and connections that started before finish on the old log, whose writer flushes and ends
//! once the last of them is done. The counters live in the handle, so they go on across swaps.

mod entry;
mod format;
mod writer;

#[cfg(test)]
mod tests;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use http::{HeaderValue, Method, Uri};
use tokio::sync::{mpsc, oneshot};
use weir_config::{AccessLogConfig, AccessLogField, ValidatedConfig};
use weir_core::ErrorKind;

pub(crate) use entry::{CountedBody, HttpEntry, TcpEntry, UdpEnd, UdpEntry};
pub(crate) use writer::Sink;

/// A running access log: the queue into the writer thread and its counters. Shared by every
/// connection of the proxy that owns it.
#[derive(Debug)]
pub struct AccessLog {
    tx: mpsc::Sender<Msg>,
    counters: Arc<Counters>,
    /// What it was opened from (a reload with the same settings keeps it).
    config: Option<AccessLogConfig>,
}

/// The proxy's access log: the log of the current `access_log` config (if any), swapped by
/// reloads, and the counters of every log it has run. Cheap to clone; every clone sees the
/// same log.
#[derive(Debug, Clone, Default)]
pub struct AccessLogs {
    current: Arc<ArcSwapOption<AccessLog>>,
    counters: Arc<Counters>,
}

/// A log a reload has opened (or decided to close), applied by [`AccessLogs::commit`] once the
/// rest of the reload has succeeded.
#[derive(Debug)]
pub struct AccessLogChange(Option<Option<Arc<AccessLog>>>);

/// What the writer and the data path count.
#[derive(Debug, Default)]
struct Counters {
    /// Records dropped because the queue was full (or the writer was gone).
    dropped: AtomicU64,
    /// Lines handed to the sink.
    written: AtomicU64,
    /// Writes, flushes or reopens that failed.
    errors: AtomicU64,
}

/// What goes through the queue.
#[allow(
    clippy::large_enum_variant,
    reason = "records travel by value: boxing would cost an allocation per request"
)]
enum Msg {
    Record(Record),
    /// Reopen the file, then answer.
    Reopen(oneshot::Sender<io::Result<()>>),
    /// Write out everything queued before this, then answer.
    Flush(oneshot::Sender<io::Result<()>>),
}

/// One finished request or connection, as the data path hands it over: values, not text.
#[derive(Debug)]
pub(crate) enum Record {
    Http(HttpRecord),
    Tcp(TcpRecord),
    Udp(UdpRecord),
}

/// An HTTP request, from its head to the end of its response body.
#[derive(Debug, Clone)]
pub(crate) struct HttpRecord {
    pub(crate) time: SystemTime,
    /// The name of the listener the request arrived on.
    pub(crate) listener: Arc<str>,
    pub(crate) route: Option<usize>,
    pub(crate) cluster: Option<Arc<str>>,
    pub(crate) endpoint: Option<SocketAddr>,
    pub(crate) method: Method,
    /// The request target as received: the authority when it is in the URI (HTTP/2), and the
    /// path with its query.
    pub(crate) uri: Uri,
    /// The `Host` header, for the authority of an HTTP/1.1 request.
    pub(crate) host: Option<HeaderValue>,
    /// 0 when no response was sent (the client went away first).
    pub(crate) status: u16,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
    pub(crate) duration: Duration,
    pub(crate) upstream_duration: Option<Duration>,
    /// Upstream attempts made; `retries` is this minus one.
    pub(crate) attempts: u32,
    pub(crate) trace_id: Option<[u8; 16]>,
    pub(crate) client: SocketAddr,
}

/// An L4 connection, from accept to close.
#[derive(Debug)]
pub(crate) struct TcpRecord {
    pub(crate) time: SystemTime,
    /// The name of the listener that accepted the connection.
    pub(crate) listener: Arc<str>,
    pub(crate) cluster: Option<Arc<str>>,
    pub(crate) endpoint: Option<SocketAddr>,
    pub(crate) client: SocketAddr,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
    pub(crate) duration: Duration,
    pub(crate) end: TcpEnd,
}

/// A UDP session: one client address's datagrams to one endpoint, from its first datagram
/// until it ended.
#[derive(Debug)]
pub(crate) struct UdpRecord {
    pub(crate) time: SystemTime,
    /// The name of the listener that received the session's datagrams.
    pub(crate) listener: Arc<str>,
    pub(crate) cluster: Arc<str>,
    pub(crate) endpoint: SocketAddr,
    pub(crate) client: SocketAddr,
    /// Payload bytes from the client, and to it.
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
    /// Datagrams from the client, and to it.
    pub(crate) datagrams_in: u64,
    pub(crate) datagrams_out: u64,
    pub(crate) duration: Duration,
    /// `idle`, `evicted`, `refused`, `failed` or `shutdown`.
    pub(crate) end: &'static str,
}

/// How an L4 connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TcpEnd {
    /// The copy ended for this reason (`closed`, `idle`, ...), or the connection was refused
    /// before one started (`rate_limited`).
    Reason(&'static str),
    /// It was not forwarded: no route, no endpoint, connect failure...
    Error(ErrorKind),
}

// === impl AccessLog ===

impl AccessLog {
    /// Opens the log `config` describes (the file, or stdout) and starts its writer thread.
    pub fn open(config: &AccessLogConfig) -> io::Result<Self> {
        Self::open_counted(config, Arc::default())
    }

    fn open_counted(config: &AccessLogConfig, counters: Arc<Counters>) -> io::Result<Self> {
        let sink: Box<dyn Sink> = if config.is_stdout() {
            Box::new(writer::StdoutSink::new())
        } else {
            Box::new(writer::FileSink::open(config.path.clone().into())?)
        };
        let mut log = Self::with_sink_counted(
            sink,
            config.queue_capacity as usize,
            config.fields.clone(),
            counters,
        )?;
        log.config = Some(config.clone());
        Ok(log)
    }

    /// A log writing into `sink` with room for `capacity` queued records.
    #[cfg(test)]
    pub(crate) fn with_sink(
        sink: Box<dyn Sink>,
        capacity: usize,
        fields: Vec<AccessLogField>,
    ) -> io::Result<Self> {
        Self::with_sink_counted(sink, capacity, fields, Arc::default())
    }

    fn with_sink_counted(
        sink: Box<dyn Sink>,
        capacity: usize,
        fields: Vec<AccessLogField>,
        counters: Arc<Counters>,
    ) -> io::Result<Self> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let w = writer::Writer::new(sink, fields, Arc::clone(&counters));
        std::thread::Builder::new()
            .name("weir-access-log".into())
            .spawn(move || w.run(rx))?;
        Ok(Self {
            tx,
            counters,
            config: None,
        })
    }

    /// Records dropped so far because the queue was full: the writer could not keep up.
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    /// Lines written so far (handed to the buffered sink).
    pub fn written(&self) -> u64 {
        self.counters.written.load(Ordering::Relaxed)
    }

    /// Writes, flushes and reopens that failed so far (each is also logged).
    pub fn write_errors(&self) -> u64 {
        self.counters.errors.load(Ordering::Relaxed)
    }

    /// Reopens the log file at its path (a no-op for stdout): lines queued before the call go
    /// to the old file, later ones to the new. Waits for room in the queue, never drops.
    pub async fn reopen(&self) -> io::Result<()> {
        self.ask(Msg::Reopen).await
    }

    /// Returns once every record queued before the call is written and flushed.
    pub async fn flush(&self) -> io::Result<()> {
        self.ask(Msg::Flush).await
    }

    async fn ask(&self, msg: fn(oneshot::Sender<io::Result<()>>) -> Msg) -> io::Result<()> {
        let (done, answer) = oneshot::channel();
        let gone = || io::Error::other("the access log writer has stopped");
        self.tx.send(msg(done)).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    /// Queues `record` if there is room, else drops and counts it. Never waits.
    #[inline]
    pub(crate) fn submit(&self, record: Record) {
        if self.tx.try_send(Msg::Record(record)).is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

// === impl AccessLogs ===

impl AccessLogs {
    /// The access log `config` asks for (none without `access_log`).
    pub fn open(config: &ValidatedConfig) -> io::Result<Self> {
        let logs = Self::default();
        let change = logs.prepare(config)?;
        logs.commit(change);
        Ok(logs)
    }

    /// The log requests and connections starting now write to.
    pub fn current(&self) -> Option<Arc<AccessLog>> {
        self.current.load_full()
    }

    /// Opens what `config`'s `access_log` needs, changing nothing yet: a new log when the
    /// settings differ from the current one's, none when `access_log` was removed, no change
    /// when they are the same. Fails when the new file cannot be opened.
    pub fn prepare(&self, config: &ValidatedConfig) -> io::Result<AccessLogChange> {
        let wanted = config.config().access_log.as_ref();
        let current = self.current.load();
        let current = current.as_deref().and_then(|l| l.config.as_ref());
        Ok(AccessLogChange(match (wanted, current) {
            (None, None) => None,
            (Some(w), Some(c)) if w == c => None,
            (None, Some(_)) => Some(None),
            (Some(w), _) => Some(Some(Arc::new(AccessLog::open_counted(
                w,
                Arc::clone(&self.counters),
            )?))),
        }))
    }

    /// Makes a prepared change current: what starts from now on logs there; what runs keeps
    /// the log it started with.
    pub fn commit(&self, change: AccessLogChange) {
        if let Some(next) = change.0 {
            let on = next.is_some();
            self.current.store(next);
            tracing::info!(on, "access log changed by the reload");
        }
    }

    /// Records dropped so far, over every log this handle ran.
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }
}

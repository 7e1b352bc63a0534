//! Span export over OTLP/HTTP (`tracing.otlp`): one server span per sampled request.
//!
//! The data path does no encoding and no I/O: when a sampled request's response body ends, its
//! [`HttpEntry`](crate::access_log::HttpEntry) hands a [`SpanRecord`] (the request's values and
//! the ids weir propagated) to a bounded queue with `try_send`; a full queue drops the span and
//! counts it ([`SpanExporter::dropped`]). A background tokio task ([`export`]) gathers spans into
//! batches of up to `batch_size` (or whatever arrived within `flush_interval`), encodes them as
//! OTLP JSON ([`json`]) and POSTs them to the collector with hyper's client. A failed export is
//! counted and logged (the first of a run, then at most once a minute) and its spans are lost:
//! the collector's health never affects traffic.

mod export;
mod json;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;
use weir_config::OtlpConfig;

use crate::access_log::HttpRecord;

/// A running exporter: the queue into its task and its counters. Shared by every connection.
#[derive(Debug)]
pub struct SpanExporter {
    tx: mpsc::Sender<SpanRecord>,
    counters: Arc<Counters>,
}

/// What the exporter and the data path count.
#[derive(Debug, Default)]
struct Counters {
    /// Spans dropped because the queue was full.
    dropped: AtomicU64,
    /// Spans the collector accepted (a 2xx answer to their export request).
    exported: AtomicU64,
    /// Export requests that failed (connect error, timeout, non-2xx answer).
    failed_exports: AtomicU64,
    /// Spans lost in failed export requests.
    failed_spans: AtomicU64,
}

/// The ids of weir's span for one request, as propagated in `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SpanIds {
    pub(crate) trace_id: [u8; 16],
    /// Weir's span: the parent id the endpoint received.
    pub(crate) span_id: [u8; 8],
    /// The caller's span, when the trace was continued.
    pub(crate) parent_id: Option<[u8; 8]>,
    pub(crate) sampled: bool,
}

/// One finished sampled request, as the data path hands it over.
#[derive(Debug)]
pub(crate) struct SpanRecord {
    pub(crate) ids: SpanIds,
    pub(crate) http: HttpRecord,
}

// === impl SpanExporter ===

impl SpanExporter {
    /// Starts the export task for `config` on the current tokio runtime. Fails when the endpoint is not a usable `http://` URL.
    pub fn start(config: &OtlpConfig) -> Result<Self, String> {
        let target = export::Target::parse(&config.endpoint, config.timeout.0)?;
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1) as usize);
        let counters = Arc::new(Counters::default());
        let batcher = export::Exporter {
            target,
            encoder: json::Encoder::new(config.service_name.clone()),
            batch_size: config.batch_size.max(1) as usize,
            flush_interval: config.flush_interval.0,
            counters: Arc::clone(&counters),
        };
        tokio::spawn(batcher.run(rx));
        Ok(Self { tx, counters })
    }

    /// Spans dropped so far because the queue was full: the exporter could not keep up.
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    /// Spans the collector has accepted so far.
    pub fn exported(&self) -> u64 {
        self.counters.exported.load(Ordering::Relaxed)
    }

    /// Export requests that failed so far (each run of failures is also logged).
    pub fn failed_exports(&self) -> u64 {
        self.counters.failed_exports.load(Ordering::Relaxed)
    }

    /// Spans lost in failed export requests so far.
    pub fn failed_spans(&self) -> u64 {
        self.counters.failed_spans.load(Ordering::Relaxed)
    }

    /// Queues `span` if there is room, else drops and counts it. Never waits.
    pub(crate) fn submit(&self, span: SpanRecord) {
        if self.tx.try_send(span).is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

//! Span export over OTLP/HTTP (`tracing.otlp`): one server span per sampled request, one
//! internal span for its matched route ([`route`]), and one client span per upstream attempt,
//! children of the route span ([`client`]).
//!
//! The data path does no encoding and no I/O: when a sampled request's response body ends, its
//! [`HttpEntry`](crate::access_log::HttpEntry) hands a [`SpanRecord`] (the request's values and
//! the ids weir propagated), after its route span, to a bounded queue with `try_send` — as each
//! attempt's [`client::AttemptSpan`] does when the attempt ends; a full queue drops the span and
//! counts it ([`SpanCounters::dropped`]). A background tokio task ([`export`]) gathers spans into
//! batches of up to `batch_size` (or whatever arrived within `flush_interval`), encodes them as
//! OTLP JSON ([`json`]) and POSTs them to the collector with hyper's client. A failed export is
//! counted and logged (the first of a run, then at most once a minute) and its spans are lost:
//! the collector's health never affects traffic.
//!
//! [`SpanExport`] is the proxy's handle on the current exporter: a reload that changes
//! `tracing.otlp` starts a new exporter before anything else changes ([`SpanExport::prepare`])
//! and swaps it in only once the whole reload has succeeded ([`SpanExport::commit`]), so a
//! rejected reload leaves export as it was; the old one's task ends once the last
//! request holding it is done (the queue's senders are gone). The counters live in the handle,
//! so they keep counting across swaps (`/metrics`).

mod client;
mod export;
mod json;
mod route;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwapOption;
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use weir_config::{OtlpConfig, ValidatedConfig};

use crate::access_log::HttpRecord;

pub(crate) use client::{AttemptOutcome, AttemptSpan, AttemptTracer};
pub(crate) use route::{RouteSpan, RouteSpanStart};

/// The proxy's span export: the exporter of the current `tracing.otlp` (if any), swapped on
/// reload by [`SpanExport::prepare`] and [`SpanExport::commit`], and the counters of every exporter it has run. Cheap to
/// clone; every clone sees the same exporter.
#[derive(Debug, Clone)]
pub struct SpanExport {
    current: Arc<ArcSwapOption<SpanExporter>>,
    counters: Arc<SpanCounters>,
    /// Where export tasks run: the runtime the proxy started on.
    runtime: Handle,
}

/// An exporter a reload has started (or the decision to stop exporting), made current by
/// [`SpanExport::commit`] once the rest of the reload has succeeded; `None` when nothing
/// changes.
#[derive(Debug)]
pub struct SpanExportChange(Option<Option<Arc<SpanExporter>>>);

/// A running exporter: the queue into its task. Shared by the requests that started while it
/// was current.
#[derive(Debug)]
pub(crate) struct SpanExporter {
    tx: mpsc::Sender<SpanRecord>,
    counters: Arc<SpanCounters>,
    /// What it was started from: a reload with the same settings keeps it.
    config: OtlpConfig,
}

/// What the exporters and the data path count, since the proxy started.
#[derive(Debug, Default)]
pub struct SpanCounters {
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

/// One finished span, as the data path hands it over.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "the queue's slots hold the large variant anyway; boxing adds an allocation per span"
)]
pub(crate) enum SpanRecord {
    /// A sampled request: its values and the ids weir propagated.
    Server { ids: SpanIds, http: HttpRecord },
    /// The matched route of a sampled request.
    Route(RouteSpan),
    /// One upstream attempt of a sampled request.
    Client(client::ClientSpan),
}

// === impl SpanExport ===

impl SpanExport {
    /// Span export for `config`, its exporter (if `tracing.otlp` is set) running on the current
    /// tokio runtime. Fails when the endpoint is not a usable `http://` URL.
    pub(crate) fn start(config: &ValidatedConfig) -> Result<Self, String> {
        let export = Self {
            current: Arc::default(),
            counters: Arc::default(),
            runtime: Handle::current(),
        };
        let change = export.prepare(config)?;
        export.commit(change);
        Ok(export)
    }

    /// Starts what `config`'s `tracing.otlp` needs, changing nothing yet: a new exporter when
    /// the settings differ from the current one's, none when export was turned off, no change
    /// when they are the same. Fails (an unusable endpoint) without starting anything. A
    /// change dropped uncommitted (a reload that failed later) ends its exporter unused.
    pub fn prepare(&self, config: &ValidatedConfig) -> Result<SpanExportChange, String> {
        let wanted = config
            .config()
            .tracing
            .as_ref()
            .and_then(|t| t.otlp.as_ref());
        let current = self.current.load();
        Ok(SpanExportChange(match (wanted, current.as_deref()) {
            (None, None) => None,
            (Some(w), Some(c)) if *w == c.config => None,
            (None, Some(_)) => Some(None),
            (Some(w), _) => Some(Some(Arc::new(self.start_exporter(w)?))),
        }))
    }

    /// Makes a prepared change current: requests starting from now on export there (or not
    /// at all); those running keep the exporter they started with, which finishes what it
    /// holds.
    pub fn commit(&self, change: SpanExportChange) {
        match change.0 {
            None => {}
            Some(None) => {
                self.current.store(None);
                tracing::info!("OTLP span export stopped");
            }
            Some(Some(exporter)) => {
                let endpoint = exporter.config.endpoint.clone();
                self.current.store(Some(exporter));
                tracing::info!(%endpoint, "OTLP span export started");
            }
        }
    }

    /// The current exporter, for a request starting now.
    pub(crate) fn current(&self) -> Option<Arc<SpanExporter>> {
        self.current.load_full()
    }

    /// Whether spans are being exported now (`tracing.otlp` is set).
    pub fn is_enabled(&self) -> bool {
        self.current.load().is_some()
    }

    /// The counters of every exporter run since the proxy started.
    pub fn counters(&self) -> &SpanCounters {
        &self.counters
    }

    fn start_exporter(&self, config: &OtlpConfig) -> Result<SpanExporter, String> {
        let target =
            export::Target::parse(&config.endpoint, config.ca.as_deref(), config.timeout.0)?;
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1) as usize);
        let batcher = export::Exporter {
            target,
            encoder: json::Encoder::new(config.service_name.clone()),
            batch_size: config.batch_size.max(1) as usize,
            flush_interval: config.flush_interval.0,
            counters: Arc::clone(&self.counters),
        };
        self.runtime.spawn(batcher.run(rx));
        Ok(SpanExporter {
            tx,
            counters: Arc::clone(&self.counters),
            config: config.clone(),
        })
    }
}

// === impl SpanExporter ===

impl SpanExporter {
    /// Queues `span` if there is room, else drops and counts it. Never waits.
    pub(crate) fn submit(&self, span: SpanRecord) {
        if self.tx.try_send(span).is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

// === impl SpanCounters ===

impl SpanCounters {
    /// Spans dropped so far because the queue was full: the exporter could not keep up.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Spans the collector has accepted so far.
    pub fn exported(&self) -> u64 {
        self.exported.load(Ordering::Relaxed)
    }

    /// Export requests that failed so far (each run of failures is also logged).
    pub fn failed_exports(&self) -> u64 {
        self.failed_exports.load(Ordering::Relaxed)
    }

    /// Spans lost in failed export requests so far.
    pub fn failed_spans(&self) -> u64 {
        self.failed_spans.load(Ordering::Relaxed)
    }
}

//! One CLIENT span per upstream attempt of a sampled request (retries and hedges included).
//!
//! The server span stands for the whole request as the client saw it, the route span (`route`)
//! for the matched route's work; each attempt weir sends upstream is a child of the route span
//! with its own span id, and that id is the parent id in the `traceparent` the endpoint
//! receives, so an endpoint's own spans hang under the attempt that reached it (OpenTelemetry's
//! HTTP client span conventions). An [`AttemptTracer`] exists only for a sampled request with an
//! exporter, so an unsampled request allocates nothing here. The [`AttemptSpan`] guard submits
//! its span when dropped: the attempt whose answer goes to the client hands its guard to the
//! response body, so its span ends when that body ends (or is dropped), as the HTTP client
//! conventions ask; an attempt cut short (a hedge that lost the race, a client that went away)
//! is still exported, as `cancelled`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::Method;
use http::request::Parts;
use weir_core::ErrorKind;

use super::{SpanExporter, SpanIds, SpanRecord};
use crate::l7::trace;

/// Gives each attempt of one sampled request its span; owned by the request's attempts.
#[derive(Debug)]
pub(crate) struct AttemptTracer {
    exporter: Arc<SpanExporter>,
    /// The request's server span (its trace id is every attempt's).
    server: SpanIds,
    /// The parent of every attempt: the request's route span.
    parent: [u8; 8],
    cluster: Arc<str>,
}

/// One attempt's span while the attempt runs (and, for the answer, while its response body
/// streams); exported when dropped.
#[derive(Debug)]
pub(crate) struct AttemptSpan {
    exporter: Arc<SpanExporter>,
    span: Option<ClientSpan>,
    started: Instant,
}

/// A finished attempt, as the encoder needs it.
#[derive(Debug)]
pub(crate) struct ClientSpan {
    pub(crate) trace_id: [u8; 16],
    pub(crate) span_id: [u8; 8],
    /// The route span of the request.
    pub(crate) parent_id: [u8; 8],
    pub(crate) start: SystemTime,
    /// From sending the attempt to the end of its response body (or its error, or its drop).
    pub(crate) duration: Duration,
    pub(crate) cluster: Arc<str>,
    pub(crate) endpoint: SocketAddr,
    /// 1 for the first attempt; retries and hedges count on.
    pub(crate) attempt: u32,
    /// Sent as a hedge, in parallel with an attempt still running.
    pub(crate) hedge: bool,
    pub(crate) method: Method,
    /// The authority sent upstream (`Host` or `:authority`), when there is one.
    pub(crate) authority: Option<String>,
    pub(crate) outcome: AttemptOutcome,
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AttemptOutcome {
    /// Response headers arrived with this status.
    Status(u16),
    /// No response: this went wrong.
    Error(ErrorKind),
    /// The attempt was dropped before it ended (a hedge lost the race, the client left).
    Cancelled,
}

// === impl AttemptTracer ===

impl AttemptTracer {
    /// A tracer for the attempts of a request whose server span is `server`, sent to
    /// `cluster`, each attempt a child of span `parent` (the route span); `None` unless the
    /// request is sampled.
    pub(crate) fn new(
        exporter: &Arc<SpanExporter>,
        server: SpanIds,
        parent: [u8; 8],
        cluster: &Arc<str>,
    ) -> Option<Self> {
        server.sampled.then(|| Self {
            exporter: Arc::clone(exporter),
            server,
            parent,
            cluster: Arc::clone(cluster),
        })
    }

    /// Starts the span of attempt number `attempt` to `endpoint`: a new span id, written into
    /// the `traceparent` of `head` (the head this attempt sends).
    pub(crate) fn begin(
        &self,
        head: &mut Parts,
        attempt: u32,
        endpoint: SocketAddr,
        hedge: bool,
    ) -> AttemptSpan {
        let span_id = trace::new_span_id();
        head.headers.insert(
            &trace::TRACEPARENT,
            trace::format(self.server.trace_id, span_id, true),
        );
        let authority = head
            .uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .or_else(|| {
                head.headers
                    .get(http::header::HOST)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            });
        AttemptSpan {
            exporter: Arc::clone(&self.exporter),
            span: Some(ClientSpan {
                trace_id: self.server.trace_id,
                span_id,
                parent_id: self.parent,
                start: SystemTime::now(),
                duration: Duration::ZERO,
                cluster: Arc::clone(&self.cluster),
                endpoint,
                attempt,
                hedge,
                method: head.method.clone(),
                authority,
                outcome: AttemptOutcome::Cancelled,
            }),
            started: Instant::now(),
        }
    }
}

// === impl AttemptSpan ===

impl AttemptSpan {
    /// Records how the attempt's exchange went (its response headers or its error); the span
    /// itself ends when this guard is dropped.
    pub(crate) fn finish(&mut self, outcome: AttemptOutcome) {
        if let Some(span) = &mut self.span {
            span.outcome = outcome;
        }
    }
}

impl Drop for AttemptSpan {
    fn drop(&mut self) {
        if let Some(mut span) = self.span.take() {
            span.duration = self.started.elapsed();
            self.exporter.submit(SpanRecord::Client(span));
        }
    }
}

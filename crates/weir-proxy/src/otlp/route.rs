//! One INTERNAL span per sampled request for its matched route: `route <listener>/<index>`.
//!
//! It sits between the server span (the request as the client saw it) and the client spans
//! (each upstream attempt), so a trace shows where the route's own work went: rate limits,
//! faults, buffering, picking, retries and their backoff. It starts when the route matches and
//! ends when the answer does (the response body ends, or the request is dropped), so it covers
//! its attempts' client spans, whose last ends with the same body. The request's
//! [`HttpEntry`](crate::access_log::HttpEntry) holds a [`RouteSpanStart`] (plain values, no
//! allocation) only when the request is sampled and spans are exported, and submits the
//! finished [`RouteSpan`] just before the server span.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::l7::trace;

/// A route span while its request runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RouteSpanStart {
    /// The span's id: the parent of the request's client spans.
    pub(crate) span_id: [u8; 8],
    started: Instant,
    /// The balancing policy of the cluster the route sent the request to.
    pub(crate) lb_policy: Option<&'static str>,
}

/// A finished route span, as the encoder needs it.
#[derive(Debug)]
pub(crate) struct RouteSpan {
    pub(crate) trace_id: [u8; 16],
    pub(crate) span_id: [u8; 8],
    /// The server span of the request.
    pub(crate) parent_id: [u8; 8],
    pub(crate) start: SystemTime,
    /// From the route's match to the end of the answer.
    pub(crate) duration: Duration,
    pub(crate) listener: Arc<str>,
    /// The route's index in its listener's `routes`.
    pub(crate) route: usize,
    pub(crate) cluster: Option<Arc<str>>,
    pub(crate) lb_policy: Option<&'static str>,
    /// Upstream attempts made minus one (retries and hedges).
    pub(crate) retries: u32,
    /// The status sent to the client; 0 when none was.
    pub(crate) status: u16,
}

// === impl RouteSpanStart ===

impl RouteSpanStart {
    /// A route span starting now, with a new span id.
    pub(crate) fn now() -> Self {
        Self {
            span_id: trace::new_span_id(),
            started: Instant::now(),
            lb_policy: None,
        }
    }

    /// When the span started and how long it ran until `now`, on the request's clock: the
    /// request started at `request` (wall clock) and `request_started` (monotonic), so the
    /// route span nests exactly inside the server span.
    pub(crate) fn times(
        &self,
        request: SystemTime,
        request_started: Instant,
        now: Instant,
    ) -> (SystemTime, Duration) {
        let offset = self.started.saturating_duration_since(request_started);
        (
            request + offset,
            now.saturating_duration_since(self.started),
        )
    }
}

//! Counters the data plane keeps only for metrics: per-cluster upstream results and latency,
//! per-listener connections and bytes (added as they are read and written, so a long-lived
//! connection shows while it lives).
//!
//! Most of what `/metrics` shows is read at scrape time from atomics the data plane keeps anyway
//! (endpoint state, circuit breakers, the retry budget). This module adds the few facts nothing
//! else records: how each upstream attempt ended (status class or error without a response),
//! how long it took (a fixed-bucket histogram), and what each listener accepted and copied.
//!
//! Everything is a relaxed atomic updated in place: the request path never takes a lock nor
//! looks a metric up by label. [`ClusterStats`] lives behind an `Arc` in its [`Cluster`] and is
//! carried over reloads like the breaker counters; [`ListenerCounters`] belong to the accept
//! loop, which outlives every reload.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::StatusCode;
use weir_core::{EndpointError, Error};

use crate::Cluster;

/// Upper bounds (in seconds) of the upstream latency histogram's buckets; a last `+Inf` bucket
/// follows. From 0.5 ms (a loopback hop) to 10 s (past most route timeouts).
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Status classes of upstream responses, as labels: `1xx` .. `5xx`.
pub const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Why an upstream attempt ended without a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamFailure {
    /// The connection was refused or could not be made.
    ConnectFailure,
    /// Connecting took longer than the cluster's `connect_timeout`.
    ConnectTimeout,
    /// No response headers within the route's timeout (or per-try timeout).
    Timeout,
    /// The endpoint closed or reset the exchange, or broke the protocol.
    Reset,
}

/// Results and latency of one cluster's upstream attempts, shared across reloads.
#[derive(Debug, Default)]
pub struct ClusterStats {
    classes: [AtomicU64; 5],
    failures: [AtomicU64; 4],
    latency: AtomicHistogram,
    affinity: [AtomicU64; 5],
}

/// What session affinity did with a request (`docs/affinity.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AffinityEvent {
    /// The session's endpoint took the request (cookie), or hashing sent the key where its
    /// remembered session was (or, without a session table, hashing chose the endpoint).
    Hit,
    /// A session began: a cookie was issued, or a hashed key had no live session.
    New,
    /// A session moved: its endpoint was gone, down, past its drain deadline, or failed (or,
    /// hashing, no longer the key's Maglev choice).
    Moved,
    /// A cookie was forged, damaged or expired, and ignored.
    Invalid,
    /// A live hashed session was forgotten to make room for a new key (`max_sessions`).
    Evicted,
}

/// What one route answered: downstream responses by status class and the time to response
/// headers, shared across reloads while the route keeps its place in its listener.
#[derive(Debug, Default)]
pub struct RouteTraffic {
    classes: [AtomicU64; 5],
    latency: AtomicHistogram,
}

impl RouteTraffic {
    /// Records one answered request: its status and the time from the route's match to the
    /// response headers (weir's own answers — 429, 503, redirects — included).
    pub(crate) fn record(&self, status: StatusCode, elapsed: Duration) {
        let class = usize::from(status.as_u16() / 100).saturating_sub(1);
        if let Some(c) = self.classes.get(class) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.latency.observe(elapsed);
    }

    /// Responses with a status of class `class` (0 = `1xx` .. 4 = `5xx`).
    pub fn responses(&self, class: usize) -> u64 {
        self.classes
            .get(class)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// The time to response headers.
    pub fn latency(&self) -> HistogramSnapshot {
        self.latency.snapshot()
    }
}

/// A histogram over [`LATENCY_BUCKETS`] in atomics: one relaxed add per bucket hit and one for
/// the sum, no lock.
#[derive(Debug, Default)]
pub struct AtomicHistogram {
    /// Per-bucket (not cumulative) counts; the last is `+Inf`.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

/// A reading of an [`AtomicHistogram`].
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Per-bucket counts with each bucket's upper bound in seconds (`f64::INFINITY` last).
    pub buckets: Vec<(f64, u64)>,
    /// Observations in all buckets.
    pub count: u64,
    /// Sum of the observations, in seconds.
    pub sum_seconds: f64,
}

/// Connections (UDP: client sessions) and bytes of one listener, for the life of the proxy.
#[derive(Debug, Default)]
pub struct ListenerCounters {
    accepted: AtomicU64,
    active: AtomicU64,
    received_bytes: AtomicU64,
    sent_bytes: AtomicU64,
}

/// Counts one open connection of a listener until dropped.
#[derive(Debug)]
pub(crate) struct OpenConnection {
    counters: Arc<ListenerCounters>,
}

// === impl AffinityEvent ===

impl AffinityEvent {
    /// Every event, in label order.
    pub const ALL: [AffinityEvent; 5] = [
        Self::Hit,
        Self::New,
        Self::Moved,
        Self::Invalid,
        Self::Evicted,
    ];

    /// The name used in metrics and `/clusters`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hits",
            Self::New => "new_sessions",
            Self::Moved => "moved_sessions",
            Self::Invalid => "invalid_cookies",
            Self::Evicted => "evicted_sessions",
        }
    }
}

// === impl UpstreamFailure ===

impl UpstreamFailure {
    /// Every reason, in label order.
    pub const ALL: [UpstreamFailure; 4] = [
        Self::ConnectFailure,
        Self::ConnectTimeout,
        Self::Timeout,
        Self::Reset,
    ];

    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConnectFailure => "connect_failure",
            Self::ConnectTimeout => "connect_timeout",
            Self::Timeout => "timeout",
            Self::Reset => "reset",
        }
    }

    /// The reason for an attempt that failed with `error`; `None` for failures that are not
    /// the endpoint's (the client, a local limit).
    /// The same classification the per-endpoint error counters use.
    fn of(error: &Error) -> Option<Self> {
        match EndpointError::of(error)? {
            EndpointError::ConnectFailure => Some(Self::ConnectFailure),
            EndpointError::ConnectTimeout => Some(Self::ConnectTimeout),
            EndpointError::Timeout => Some(Self::Timeout),
            EndpointError::Reset => Some(Self::Reset),
            EndpointError::ServerError => None,
        }
    }
}

// === impl ClusterStats ===

impl ClusterStats {
    /// Records one finished upstream attempt that took `elapsed`: its response status, or the
    /// error it failed with. Attempts that failed for reasons not the endpoint's (the client's
    /// body broke, a circuit breaker refused) are not counted, and neither is their latency.
    pub(crate) fn record_attempt(&self, result: Result<StatusCode, &Error>, elapsed: Duration) {
        match result {
            Ok(status) => {
                let class = usize::from(status.as_u16() / 100).saturating_sub(1);
                if let Some(c) = self.classes.get(class) {
                    c.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(e) => match UpstreamFailure::of(e) {
                Some(reason) => {
                    self.failures[reason as usize].fetch_add(1, Ordering::Relaxed);
                }
                None => return,
            },
        }
        self.latency.observe(elapsed);
    }

    /// Responses with a status of class `class` (0 = `1xx` .. 4 = `5xx`; see
    /// [`STATUS_CLASSES`]).
    pub fn responses(&self, class: usize) -> u64 {
        self.classes
            .get(class)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Attempts that ended without a response for `reason`.
    pub fn failures(&self, reason: UpstreamFailure) -> u64 {
        self.failures[reason as usize].load(Ordering::Relaxed)
    }

    /// The latency of attempts to response headers (or to failure).
    pub fn latency(&self) -> HistogramSnapshot {
        self.latency.snapshot()
    }

    /// Counts one session affinity event.
    pub(crate) fn record_affinity(&self, event: AffinityEvent) {
        self.affinity[event as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// How many times session affinity saw `event`.
    pub fn affinity(&self, event: AffinityEvent) -> u64 {
        self.affinity[event as usize].load(Ordering::Relaxed)
    }
}

// === impl AtomicHistogram ===

impl AtomicHistogram {
    /// Adds one observation.
    pub fn observe(&self, value: Duration) {
        let seconds = value.as_secs_f64();
        let index = LATENCY_BUCKETS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        if let Some(b) = self.buckets.get(index) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        let nanos = u64::try_from(value.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The current counts. The count is the sum of the buckets, so it always equals the `+Inf`
    /// bucket; the sum may lag an observation that is being recorded.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let buckets: Vec<(f64, u64)> = LATENCY_BUCKETS
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(&self.buckets)
            .map(|(bound, b)| (bound, b.load(Ordering::Relaxed)))
            .collect();
        HistogramSnapshot {
            count: buckets.iter().map(|&(_, n)| n).sum(),
            buckets,
            sum_seconds: Duration::from_nanos(self.sum_nanos.load(Ordering::Relaxed)).as_secs_f64(),
        }
    }
}

// === impl ListenerCounters ===

impl ListenerCounters {
    /// Counts an accepted connection, open until the returned guard drops.
    pub(crate) fn open(self: &Arc<Self>) -> OpenConnection {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        self.active.fetch_add(1, Ordering::Relaxed);
        OpenConnection {
            counters: Arc::clone(self),
        }
    }

    /// The running total of bytes received from clients, which connections add to as they
    /// read (one relaxed add per read).
    pub(crate) fn received_counter(&self) -> &AtomicU64 {
        &self.received_bytes
    }

    /// The running total of bytes sent to clients, which connections add to as they write.
    pub(crate) fn sent_counter(&self) -> &AtomicU64 {
        &self.sent_bytes
    }

    /// Connections accepted (including those then refused by a limit or a bad first byte);
    /// for a UDP listener, client sessions opened.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Connections (UDP: client sessions) open now.
    pub fn active(&self) -> u64 {
        self.active.load(Ordering::Relaxed)
    }

    /// Bytes received from clients so far, by open and ended connections (HTTP: after TLS
    /// decryption; TCP and TLS passthrough: as relayed).
    pub fn received_bytes(&self) -> u64 {
        self.received_bytes.load(Ordering::Relaxed)
    }

    /// Bytes sent to clients so far, by open and ended connections.
    pub fn sent_bytes(&self) -> u64 {
        self.sent_bytes.load(Ordering::Relaxed)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.counters.active.fetch_sub(1, Ordering::Relaxed);
    }
}

// === impl Cluster ===

impl Cluster {
    /// The results and latency of this cluster's upstream attempts (HTTP), kept across reloads.
    pub fn upstream_stats(&self) -> &ClusterStats {
        &self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_core::ErrorKind;

    #[test]
    fn histogram_puts_each_observation_in_one_bucket() {
        let h = AtomicHistogram::default();
        h.observe(Duration::from_micros(100)); // <= 0.5 ms
        h.observe(Duration::from_micros(500)); // exactly on the 0.5 ms bound
        h.observe(Duration::from_millis(3)); // <= 5 ms
        h.observe(Duration::from_secs(60)); // +Inf
        let s = h.snapshot();
        assert_eq!(s.count, 4);
        assert_eq!(s.buckets.len(), LATENCY_BUCKETS.len() + 1);
        assert_eq!(s.buckets[0], (0.0005, 2));
        assert_eq!(s.buckets[3], (0.005, 1));
        assert_eq!(s.buckets[LATENCY_BUCKETS.len()], (f64::INFINITY, 1));
        assert_eq!(s.buckets.iter().map(|b| b.1).sum::<u64>(), 4);
        assert!((s.sum_seconds - 60.0036).abs() < 1e-9, "{}", s.sum_seconds);
    }

    #[test]
    fn histogram_counts_concurrent_observations() {
        let h = Arc::new(AtomicHistogram::default());
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let h = Arc::clone(&h);
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        h.observe(Duration::from_millis(i));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let s = h.snapshot();
        assert_eq!(s.count, 4000);
        assert!((s.sum_seconds - 6.0).abs() < 1e-9, "{}", s.sum_seconds);
    }

    #[test]
    fn attempts_count_by_class_and_failure_reason() {
        let s = ClusterStats::default();
        let ms = Duration::from_millis(1);
        s.record_attempt(Ok(StatusCode::OK), ms);
        s.record_attempt(Ok(StatusCode::NO_CONTENT), ms);
        s.record_attempt(Ok(StatusCode::SERVICE_UNAVAILABLE), ms);
        s.record_attempt(Ok(StatusCode::CONTINUE), ms);
        s.record_attempt(Err(&Error::new(ErrorKind::ConnectFailed, "x")), ms);
        s.record_attempt(Err(&Error::new(ErrorKind::UpstreamProtocol, "x")), ms);
        // Not the endpoint's doing: neither counted nor timed.
        s.record_attempt(Err(&Error::new(ErrorKind::DownstreamProtocol, "x")), ms);
        s.record_attempt(Err(&Error::new(ErrorKind::Overloaded, "x")), ms);
        assert_eq!(
            (0..5).map(|c| s.responses(c)).collect::<Vec<_>>(),
            [1, 2, 0, 0, 1]
        );
        assert_eq!(s.failures(UpstreamFailure::ConnectFailure), 1);
        assert_eq!(s.failures(UpstreamFailure::Reset), 1);
        assert_eq!(s.failures(UpstreamFailure::Timeout), 0);
        assert_eq!(s.latency().count, 6);
    }

    #[test]
    fn open_connections_are_counted_until_dropped() {
        let c = Arc::new(ListenerCounters::default());
        let a = c.open();
        let b = c.open();
        assert_eq!((c.accepted(), c.active()), (2, 2));
        drop(a);
        assert_eq!((c.accepted(), c.active()), (2, 1));
        drop(b);
        c.received_counter().fetch_add(10, Ordering::Relaxed);
        c.sent_counter().fetch_add(20, Ordering::Relaxed);
        assert_eq!(
            (c.active(), c.received_bytes(), c.sent_bytes()),
            (0, 10, 20)
        );
    }
}

//! What every endpoint's exchanges are counted as, whatever its cluster's balancing policy:
//! errors by reason and a moving average of response latency.
//!
//! They exist for operators (`/metrics`, `/clusters`, the dashboard), not for balancing:
//! peak EWMA keeps its own, peak-sensitive estimate in [`crate::LatencyEstimate`], which jumps
//! to the slowest recent response and so reads far above what most responses take. The average
//! here is a plain exponentially weighted mean over time (the weight of a sample is
//! `1 - exp(-elapsed / τ)`, `elapsed` being the time since the previous one), so a rare slow
//! response moves it by its share of the last τ and no more.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::{Error, ErrorKind, Nanos, nanos};

/// Why an exchange with an endpoint failed, as counted per endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointError {
    /// The endpoint answered with a 5xx status.
    ServerError = 0,
    /// The endpoint closed or reset the exchange, or broke the protocol, after connecting.
    Reset = 1,
    /// No response headers within the route's timeout (or per-try timeout).
    Timeout = 2,
    /// The connection was refused or could not be made.
    ConnectFailure = 3,
    /// Connecting took longer than the cluster's `connect_timeout`.
    ConnectTimeout = 4,
}

/// Per-endpoint error counters, one per [`EndpointError`].
#[derive(Debug, Default)]
pub struct ErrorCounts([AtomicU64; 5]);

/// An exponentially weighted moving average of an endpoint's response latency over time, in
/// atomics: load–compute–store, so two racing samples may lose one, which an average tolerates.
#[derive(Debug, Default)]
pub struct ResponseLatency {
    /// The average in nanoseconds as `f64::to_bits`; 0 means "no sample yet".
    ewma_bits: AtomicU64,
    /// Clock reading of the last sample.
    stamp: AtomicU64,
}

// === impl EndpointError ===

impl EndpointError {
    /// Every reason, in label order.
    pub const ALL: [EndpointError; 5] = [
        Self::ServerError,
        Self::Reset,
        Self::Timeout,
        Self::ConnectFailure,
        Self::ConnectTimeout,
    ];

    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ServerError => "5xx",
            Self::Reset => "reset",
            Self::Timeout => "timeout",
            Self::ConnectFailure => "connect_failure",
            Self::ConnectTimeout => "connect_timeout",
        }
    }

    /// The reason for an exchange that failed with `error`; `None` for failures that are not
    /// the endpoint's (the client went away, a local limit refused).
    pub fn of(error: &Error) -> Option<Self> {
        match error.kind() {
            ErrorKind::ConnectFailed => Some(Self::ConnectFailure),
            ErrorKind::ConnectTimeout => Some(Self::ConnectTimeout),
            ErrorKind::UpstreamTimeout => Some(Self::Timeout),
            ErrorKind::UpstreamProtocol => Some(Self::Reset),
            _ => None,
        }
    }
}

// === impl ErrorCounts ===

impl ErrorCounts {
    /// Counts one error.
    #[inline]
    pub fn record(&self, reason: EndpointError) {
        self.0[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Errors counted for `reason`.
    pub fn get(&self, reason: EndpointError) -> u64 {
        self.0[reason as usize].load(Ordering::Relaxed)
    }
}

// === impl ResponseLatency ===

impl ResponseLatency {
    /// The time constant τ: a sample's weight is `1 - exp(-elapsed / τ)`, so the average covers
    /// roughly the last 10 s of traffic (and follows every sample of an endpoint that answers
    /// less often than that).
    pub const TIME_CONSTANT: Duration = Duration::from_secs(10);

    /// Folds a response that took `rtt`, observed at clock reading `now`, into the average.
    pub fn observe(&self, rtt: Duration, now: Nanos) {
        let sample = nanos(rtt) as f64;
        let bits = self.ewma_bits.load(Ordering::Relaxed);
        let average = if bits == 0 {
            sample
        } else {
            let elapsed = now.saturating_sub(self.stamp.load(Ordering::Relaxed)) as f64;
            let keep = (-elapsed / nanos(Self::TIME_CONSTANT) as f64).exp();
            f64::from_bits(bits) * keep + sample * (1.0 - keep)
        };
        // 0 means "no sample": keep a measured average at least 1 ns.
        self.ewma_bits
            .store(average.max(1.0).to_bits(), Ordering::Relaxed);
        self.stamp.store(now, Ordering::Relaxed);
    }

    /// The average in seconds; `None` before the first sample.
    pub fn seconds(&self) -> Option<f64> {
        let bits = self.ewma_bits.load(Ordering::Relaxed);
        let nanos = f64::from_bits(bits);
        (bits != 0 && nanos.is_finite() && nanos > 0.0).then_some(nanos / 1e9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_first_sample_is_the_average() {
        let l = ResponseLatency::default();
        assert_eq!(l.seconds(), None);
        l.observe(3 * MS, 1_000);
        assert_eq!(l.seconds(), Some(0.003));
    }

    #[test]
    fn a_rare_slow_response_moves_the_average_by_its_share_of_time() {
        // 1,000 responses of 0.5 ms, one a millisecond, then one of 26 ms: the peak-sensitive
        // estimate would read 26 ms; the average barely moves.
        let l = ResponseLatency::default();
        let mut now = 1;
        for _ in 0..1000 {
            now += 1_000_000;
            l.observe(MS / 2, now);
        }
        now += 1_000_000;
        l.observe(26 * MS, now);
        let avg = l.seconds().unwrap();
        // 26 ms weighted by 1 - exp(-1 ms / 10 s) ≈ 1e-4: + 2.5 µs.
        assert!((0.0005..0.00051).contains(&avg), "{avg}");
    }

    #[test]
    fn after_a_long_pause_the_new_sample_dominates() {
        let l = ResponseLatency::default();
        l.observe(100 * MS, 1);
        l.observe(MS, 1 + nanos(Duration::from_secs(100)));
        let avg = l.seconds().unwrap();
        assert!((0.001..0.0011).contains(&avg), "{avg}");
    }

    #[test]
    fn errors_are_counted_by_reason() {
        let c = ErrorCounts::default();
        c.record(EndpointError::ServerError);
        c.record(EndpointError::ServerError);
        c.record(EndpointError::Timeout);
        assert_eq!(c.get(EndpointError::ServerError), 2);
        assert_eq!(c.get(EndpointError::Timeout), 1);
        assert_eq!(c.get(EndpointError::Reset), 0);
        let e = |k| Error::new(k, "x");
        assert_eq!(
            EndpointError::of(&e(ErrorKind::UpstreamProtocol)),
            Some(EndpointError::Reset)
        );
        assert_eq!(EndpointError::of(&e(ErrorKind::Overloaded)), None);
    }
}

//! Time as the balancers and health logic see it: monotonic nanoseconds from an injected clock.
//!
//! Sans-io code never calls `Instant::now()` itself; it asks a [`Clock`]. Production uses
//! [`SystemClock`]; tests use [`ManualClock`] and move time by hand, so simulations of slow
//! endpoints or slow-start ramps are exact and take no wall time. Readings are plain `u64`
//! nanoseconds so they fit in the atomics of [`crate::EndpointState`].

use std::fmt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Monotonic nanoseconds since a clock's epoch.
pub type Nanos = u64;

/// A source of monotonic time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Now, in nanoseconds since the clock's epoch. Never decreases.
    fn now(&self) -> Nanos;
}

/// The real monotonic clock; every instance shares one process-wide epoch, so readings from
/// different instances compare.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

/// A clock that only moves when told to; for tests and simulations.
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicU64,
}

// === impl SystemClock ===

impl Clock for SystemClock {
    fn now(&self) -> Nanos {
        static EPOCH: OnceLock<Instant> = OnceLock::new();
        // +1 so that 0 can mean "never" in atomics that store readings.
        nanos(EPOCH.get_or_init(Instant::now).elapsed()).saturating_add(1)
    }
}

// === impl ManualClock ===

impl ManualClock {
    /// A clock reading `start`.
    pub fn new(start: Duration) -> Self {
        Self {
            now: AtomicU64::new(nanos(start)),
        }
    }

    /// Moves time forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.now.fetch_add(nanos(by), Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Nanos {
        self.now.load(Ordering::Relaxed)
    }
}

/// A duration in nanoseconds, saturating at `u64::MAX` (584 years).
pub fn nanos(d: Duration) -> Nanos {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(Duration::from_secs(1));
        assert_eq!(c.now(), 1_000_000_000);
        c.advance(Duration::from_millis(5));
        assert_eq!(c.now(), 1_005_000_000);
    }

    #[test]
    fn system_clock_is_monotonic_and_nonzero() {
        let a = SystemClock.now();
        let b = SystemClock.now();
        assert!(a > 0 && b >= a);
    }
}

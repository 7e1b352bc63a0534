//! Slow start: ramp the share of a new or recovered endpoint over a window.
//!
//! A fresh process has cold caches, JIT and connection pools; sending it a full share at once
//! makes its first seconds slow or failing. Envoy's slow start scales the endpoint's weight by
//! `max(min_weight_percent, (elapsed / window)^(1 / aggression))` while `elapsed < window`
//! (Envoy docs, "Slow start mode"). Weights here feed precomputed tables, so instead of
//! rebuilding them as time passes, picks apply the factor by rejection: a ramping candidate is
//! accepted with probability `factor`, otherwise the policy draws again. That keeps `pick(&self)`
//! lock-free and leaves endpoints outside any window at one atomic load (their
//! `eligible_since`), plus one more once they have been seen to finish their ramp.

use std::sync::atomic::{AtomicU64, Ordering};

use weir_config::SlowStartConfig;
use weir_core::{Clock, Nanos, nanos};

/// The smallest factor a ramping endpoint gets: effectively no traffic, but a positive weight.
const MIN_FACTOR: f64 = 1e-6;

/// The ramp of one cluster.
#[derive(Debug)]
pub(crate) struct SlowStart {
    window: Nanos,
    inverse_aggression: f64,
    min_factor: f64,
    /// Every endpoint that became eligible at or before this reading has finished its ramp
    /// (we saw the clock past `since + window`); lets those skip the clock read.
    settled_before: AtomicU64,
}

// === impl SlowStart ===

impl SlowStart {
    /// The ramp `config` describes; `None` when its window is empty (no ramp).
    pub(crate) fn new(config: &SlowStartConfig) -> Option<Self> {
        let window = nanos(config.window.get());
        if window == 0 {
            return None;
        }
        let aggression = if config.aggression.is_finite() && config.aggression > 0.0 {
            config.aggression
        } else {
            1.0
        };
        Some(Self {
            window,
            inverse_aggression: 1.0 / aggression,
            min_factor: (f64::from(config.min_weight_percent) / 100.0).clamp(0.0, 1.0),
            settled_before: AtomicU64::new(0),
        })
    }

    /// The weight factor in `(0, 1)` of an endpoint eligible since `since`, or `None` when it
    /// takes its full weight (never ramped, or the window is over).
    pub(crate) fn factor(&self, since: Nanos, clock: &dyn Clock) -> Option<f64> {
        if since == 0 || since <= self.settled_before.load(Ordering::Relaxed) {
            return None;
        }
        let now = clock.now();
        let elapsed = now.saturating_sub(since);
        if elapsed >= self.window {
            self.settled_before
                .fetch_max(now - self.window, Ordering::Relaxed);
            return None;
        }
        let progress = elapsed as f64 / self.window as f64;
        // Clamped above 0: with `min_weight_percent: 0` the ramp starts at 0, and a zero weight
        // would make least request's full scan compute 0/0.
        Some(
            progress
                .powf(self.inverse_aggression)
                .max(self.min_factor)
                .max(MIN_FACTOR),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use weir_config::ConfigDuration;
    use weir_core::ManualClock;

    use super::*;

    fn ramp(aggression: f64) -> SlowStart {
        SlowStart::new(&SlowStartConfig {
            window: ConfigDuration(Duration::from_secs(10)),
            aggression,
            min_weight_percent: 10,
        })
        .unwrap()
    }

    #[test]
    fn linear_ramp_with_floor_then_full() {
        let s = ramp(1.0);
        let clock = ManualClock::new(Duration::from_secs(100));
        let since = clock.now();
        assert_eq!(s.factor(since, &clock), Some(0.1));
        clock.advance(Duration::from_secs(5));
        assert!((s.factor(since, &clock).unwrap() - 0.5).abs() < 1e-9);
        clock.advance(Duration::from_secs(5));
        assert_eq!(s.factor(since, &clock), None);
        // Settled: no clock read needed any more, and never-ramped endpoints are full weight.
        assert!(s.settled_before.load(Ordering::Relaxed) >= since);
        assert_eq!(s.factor(0, &clock), None);
    }

    #[test]
    fn aggression_bends_the_ramp() {
        let s = ramp(2.0);
        let clock = ManualClock::new(Duration::from_secs(100));
        let since = clock.now();
        clock.advance(Duration::from_millis(2_500));
        // (0.25)^(1/2) = 0.5: a more aggressive ramp gives more traffic early.
        assert!((s.factor(since, &clock).unwrap() - 0.5).abs() < 1e-9);
    }
}

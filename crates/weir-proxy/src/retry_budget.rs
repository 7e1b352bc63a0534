//! A cluster's retry budget: retries may add at most a fixed share of its traffic.
//!
//! A per-route `attempts: 3` is harmless while one endpoint hiccups and ruinous when the whole
//! cluster is down: every request becomes three, exactly when the cluster can least take them.
//! The budget (Finagle's and Linkerd's design) caps retries over a sliding window to
//! `percent` % of the requests in it, plus `min_per_second` × window so a quiet cluster can
//! still retry. Counts live in one bucket per second, atomics only; two racing retries may both
//! pass at the edge of the budget, an overshoot of at most the number of racing requests.
//! The counters are shared across config reloads while the window length stays the same.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use weir_config::RetryBudgetConfig;
use weir_core::Nanos;

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// The retry budget of one cluster.
#[derive(Debug)]
pub(crate) struct RetryBudget {
    percent: u64,
    min_per_second: u64,
    counts: Arc<Counts>,
}

/// What a cluster's retries did, for the admin API and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryStats {
    /// Retries (and hedges) sent.
    pub retries: u64,
    /// Retries not sent because the budget was spent.
    pub budget_exhausted: u64,
    /// Retries not sent because `max_retries` were already in progress.
    pub overflowed: u64,
}

/// The sliding window: one bucket per second, plus lifetime totals.
#[derive(Debug)]
struct Counts {
    buckets: Box<[Bucket]>,
    retries_total: AtomicU64,
    exhausted_total: AtomicU64,
    overflowed_total: AtomicU64,
}

#[derive(Debug, Default)]
struct Bucket {
    /// The second (since the clock's epoch) this bucket counts; `u64::MAX` when unused.
    second: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
}

// === impl RetryBudget ===

impl RetryBudget {
    /// A budget per `cfg`, keeping the counts of `previous` when its window has the same length.
    pub(crate) fn new(cfg: &RetryBudgetConfig, previous: Option<&RetryBudget>) -> Self {
        let seconds = cfg.window.get().as_secs().clamp(1, 60) as usize;
        let counts = match previous {
            Some(p) if p.counts.buckets.len() == seconds => Arc::clone(&p.counts),
            Some(p) => Arc::new(Counts::new(seconds, &p.counts)),
            None => Arc::new(Counts::new(seconds, &Counts::empty())),
        };
        Self {
            percent: u64::from(cfg.percent),
            min_per_second: u64::from(cfg.min_per_second),
            counts,
        }
    }

    /// Counts one request (not a retry) at `now`.
    pub(crate) fn record_request(&self, now: Nanos) {
        self.counts
            .bucket(now / NANOS_PER_SEC)
            .requests
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one retry from the budget at `now`; `false` (and counted) when it is spent.
    pub(crate) fn try_retry(&self, now: Nanos) -> bool {
        let second = now / NANOS_PER_SEC;
        let window = self.counts.buckets.len() as u64;
        let (mut requests, mut retries) = (0u64, 0u64);
        for b in self.counts.buckets.iter() {
            let s = b.second.load(Ordering::Acquire);
            if s <= second && second - s < window {
                requests += b.requests.load(Ordering::Relaxed);
                retries += b.retries.load(Ordering::Relaxed);
            }
        }
        let allowed = requests.saturating_mul(self.percent) / 100
            + self.min_per_second.saturating_mul(window);
        if retries >= allowed {
            self.counts.exhausted_total.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        self.counts
            .bucket(second)
            .retries
            .fetch_add(1, Ordering::Relaxed);
        self.counts.retries_total.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Counts a retry the `max_retries` breaker refused.
    pub(crate) fn record_overflow(&self) {
        self.counts.overflowed_total.fetch_add(1, Ordering::Relaxed);
    }

    /// The lifetime totals.
    pub(crate) fn stats(&self) -> RetryStats {
        RetryStats {
            retries: self.counts.retries_total.load(Ordering::Relaxed),
            budget_exhausted: self.counts.exhausted_total.load(Ordering::Relaxed),
            overflowed: self.counts.overflowed_total.load(Ordering::Relaxed),
        }
    }
}

// === impl Counts ===

impl Counts {
    fn empty() -> Self {
        Self {
            buckets: Box::new([]),
            retries_total: AtomicU64::new(0),
            exhausted_total: AtomicU64::new(0),
            overflowed_total: AtomicU64::new(0),
        }
    }

    /// A window of `seconds` buckets that keeps `old`'s lifetime totals.
    fn new(seconds: usize, old: &Counts) -> Self {
        let buckets = (0..seconds)
            .map(|_| Bucket {
                second: AtomicU64::new(u64::MAX),
                ..Bucket::default()
            })
            .collect();
        Self {
            buckets,
            retries_total: AtomicU64::new(old.retries_total.load(Ordering::Relaxed)),
            exhausted_total: AtomicU64::new(old.exhausted_total.load(Ordering::Relaxed)),
            overflowed_total: AtomicU64::new(old.overflowed_total.load(Ordering::Relaxed)),
        }
    }

    /// The bucket of `second`, emptied first if it still holds an older second.
    fn bucket(&self, second: u64) -> &Bucket {
        let len = self.buckets.len() as u64;
        // `new` always makes at least one bucket; the modulo keeps the index in range.
        let b = &self.buckets[(second % len.max(1)) as usize];
        let held = b.second.load(Ordering::Acquire);
        if held != second
            && (held == u64::MAX || held < second)
            && b.second
                .compare_exchange(held, second, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            b.requests.store(0, Ordering::Relaxed);
            b.retries.store(0, Ordering::Relaxed);
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_config::ConfigDuration;

    const SEC: Nanos = NANOS_PER_SEC;

    fn budget(percent: u32, min_per_second: u32, window_secs: u64) -> RetryBudget {
        let cfg = RetryBudgetConfig {
            percent,
            min_per_second,
            window: ConfigDuration(std::time::Duration::from_secs(window_secs)),
        };
        RetryBudget::new(&cfg, None)
    }

    fn retries_allowed(b: &RetryBudget, now: Nanos, tries: u32) -> u32 {
        (0..tries).filter(|_| b.try_retry(now)).count() as u32
    }

    #[test]
    fn retries_are_a_share_of_requests_plus_a_floor() {
        let b = budget(20, 1, 10);
        for _ in 0..1000 {
            b.record_request(5 * SEC);
        }
        // 20 % of 1000 + 1/s × 10 s.
        assert_eq!(retries_allowed(&b, 5 * SEC, 1000), 210);
        let s = b.stats();
        assert_eq!(s.retries, 210);
        assert_eq!(s.budget_exhausted, 790);
    }

    #[test]
    fn a_quiet_cluster_still_gets_the_floor() {
        let b = budget(20, 10, 10);
        assert_eq!(retries_allowed(&b, 3 * SEC, 500), 100);
    }

    #[test]
    fn old_seconds_leave_the_window() {
        let b = budget(100, 0, 2);
        for _ in 0..10 {
            b.record_request(SEC);
        }
        assert_eq!(retries_allowed(&b, SEC, 20), 10);
        // Two seconds later the requests and retries of second 1 no longer count.
        assert_eq!(retries_allowed(&b, 3 * SEC, 5), 0);
        for _ in 0..4 {
            b.record_request(3 * SEC);
        }
        assert_eq!(retries_allowed(&b, 3 * SEC, 10), 4);
    }

    #[test]
    fn counts_survive_a_reload_with_the_same_window() {
        let old = budget(0, 1, 5);
        assert_eq!(retries_allowed(&old, SEC, 10), 5);
        let cfg = RetryBudgetConfig {
            percent: 0,
            min_per_second: 1,
            window: ConfigDuration(std::time::Duration::from_secs(5)),
        };
        let new = RetryBudget::new(&cfg, Some(&old));
        assert_eq!(retries_allowed(&new, SEC, 10), 0, "the window is shared");
        assert_eq!(new.stats().retries, 5);
        let longer = RetryBudget::new(
            &RetryBudgetConfig {
                window: ConfigDuration(std::time::Duration::from_secs(7)),
                ..cfg
            },
            Some(&new),
        );
        assert_eq!(longer.stats().retries, 5, "totals carry over a new window");
    }
}

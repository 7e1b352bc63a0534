//! Local limits: a token bucket per key, inside one weir instance.
//!
//! The bucket is kept as GCRA (the generic cell rate algorithm), which is exactly a token bucket
//! of `burst` tokens refilled at `rate` per second, but stores one `u64` per key — the
//! "theoretical arrival time" (TAT) — instead of a token count and a timestamp. A request at
//! `now` is allowed when `max(TAT, now) + interval - now <= burst × interval`, and then moves
//! TAT forward by one interval. Time comes from an injected [`Clock`] in nanoseconds, so the
//! math is tested without waiting. The same bucket, without a key table, limits new
//! connections on L4 listeners ([`ConnectionLimiter`]), lock-free with one CAS.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use weir_core::{Clock, Nanos};

use super::table::ShardedTable;

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// The parameters of one token bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Gcra {
    /// Nanoseconds per token (1 s / rate).
    interval: u64,
    /// `burst × interval`: how far TAT may run ahead of now.
    tolerance: u64,
}

/// What a bucket said about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BucketVerdict {
    /// Allowed; `remaining` more would be allowed right now, and the bucket is full again in
    /// `full_in` nanoseconds.
    Allowed { remaining: u64, full_in: u64 },
    /// Refused; a token is available in `retry_in` nanoseconds (full in `full_in`).
    Limited { retry_in: u64, full_in: u64 },
}

/// A token bucket per key, bounded by `max_keys`.
#[derive(Debug)]
pub(crate) struct LocalLimiter {
    gcra: Gcra,
    /// Requests per second, for `x-ratelimit-limit`.
    pub(crate) rate: u32,
    table: ShardedTable<Nanos>,
    clock: Arc<dyn Clock>,
}

/// A token bucket for a whole listener's new connections: one atomic TAT.
#[derive(Debug)]
pub(crate) struct ConnectionLimiter {
    gcra: Gcra,
    tat: AtomicU64,
    clock: Arc<dyn Clock>,
}

// === impl Gcra ===

impl Gcra {
    /// A bucket of `burst` tokens refilled at `rate` per second (both at least 1).
    pub(crate) fn new(rate: u32, burst: u32) -> Self {
        let interval = (NANOS_PER_SEC / u64::from(rate.max(1))).max(1);
        Self {
            interval,
            tolerance: interval.saturating_mul(u64::from(burst.max(1))),
        }
    }

    /// Decides a request at `now` against the bucket whose TAT is `tat`, updating it when the
    /// request is allowed.
    pub(crate) fn check(&self, tat: &mut Nanos, now: Nanos) -> BucketVerdict {
        let start = (*tat).max(now);
        let next = start.saturating_add(self.interval);
        let ahead = next - now;
        if ahead > self.tolerance {
            return BucketVerdict::Limited {
                retry_in: ahead - self.tolerance,
                full_in: start - now,
            };
        }
        *tat = next;
        BucketVerdict::Allowed {
            remaining: (self.tolerance - ahead) / self.interval,
            full_in: ahead,
        }
    }
}

// === impl LocalLimiter ===

impl LocalLimiter {
    /// A limiter of `rate` per second with bursts of `burst`, holding up to `max_keys` keys.
    pub(crate) fn new(rate: u32, burst: u32, max_keys: usize, clock: Arc<dyn Clock>) -> Self {
        Self {
            gcra: Gcra::new(rate, burst),
            rate,
            table: ShardedTable::new(max_keys),
            clock,
        }
    }

    /// Takes a token from `key`'s bucket if one is there.
    pub(crate) fn check(&self, key: &[u8]) -> BucketVerdict {
        let now = self.clock.now();
        // A new key's bucket is full: TAT 0 is in the past.
        self.table
            .with(key, || 0, |tat, _| self.gcra.check(tat, now))
    }

    /// Keys held now.
    #[cfg(test)]
    pub(crate) fn keys(&self) -> usize {
        self.table.len()
    }
}

// === impl ConnectionLimiter ===

impl ConnectionLimiter {
    /// `rate` connections per second with bursts of `burst`.
    pub(crate) fn new(rate: u32, burst: u32, clock: Arc<dyn Clock>) -> Self {
        Self {
            gcra: Gcra::new(rate, burst),
            tat: AtomicU64::new(0),
            clock,
        }
    }

    /// Whether one more connection may be accepted now (and takes its token if so).
    pub(crate) fn admit(&self) -> bool {
        let now = self.clock.now();
        let mut current = self.tat.load(Ordering::Relaxed);
        loop {
            let mut tat = current;
            if let BucketVerdict::Limited { .. } = self.gcra.check(&mut tat, now) {
                return false;
            }
            match self
                .tat
                .compare_exchange_weak(current, tat, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(seen) => current = seen,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use weir_core::ManualClock;

    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn burst_then_steady_rate() {
        let g = Gcra::new(100, 5);
        let mut tat = 0;
        let now = 1_000 * MS;
        for expected in (0..5).rev() {
            match g.check(&mut tat, now) {
                BucketVerdict::Allowed { remaining, .. } => assert_eq!(remaining, expected),
                v => panic!("burst request refused: {v:?}"),
            }
        }
        // The sixth at the same instant waits one interval (10 ms) for a token.
        assert_eq!(
            g.check(&mut tat, now),
            BucketVerdict::Limited {
                retry_in: 10 * MS,
                full_in: 50 * MS
            }
        );
        // 10 ms later exactly one token is back.
        assert!(matches!(
            g.check(&mut tat, now + 10 * MS),
            BucketVerdict::Allowed { remaining: 0, .. }
        ));
        assert!(matches!(
            g.check(&mut tat, now + 10 * MS),
            BucketVerdict::Limited { .. }
        ));
    }

    #[test]
    fn a_saturated_bucket_admits_rate_times_time_plus_burst() {
        // Offer 1000/s against 100/s with burst 10 for 5 s: 10 + 100 × 5 pass.
        let g = Gcra::new(100, 10);
        let mut tat = 0;
        let start = 7 * MS;
        let allowed = (0..5_000)
            .filter(|i| {
                matches!(
                    g.check(&mut tat, start + i * MS),
                    BucketVerdict::Allowed { .. }
                )
            })
            .count();
        assert_eq!(
            allowed,
            10 + 500 - 1,
            "the last token lands at 5 s, just past the run"
        );
    }

    #[test]
    fn an_idle_bucket_refills_to_burst_only() {
        let g = Gcra::new(10, 3);
        let mut tat = 0;
        for _ in 0..3 {
            g.check(&mut tat, 1);
        }
        // An hour idle still gives back only `burst` tokens.
        let later = 3_600_000 * MS;
        let passed = (0..10)
            .filter(|_| matches!(g.check(&mut tat, later), BucketVerdict::Allowed { .. }))
            .count();
        assert_eq!(passed, 3);
    }

    #[test]
    fn keys_have_separate_buckets() {
        let clock = Arc::new(ManualClock::new(std::time::Duration::from_nanos(1)));
        let limiter = LocalLimiter::new(1, 2, 1000, Arc::clone(&clock) as Arc<dyn Clock>);
        let allowed = |key: &[u8]| matches!(limiter.check(key), BucketVerdict::Allowed { .. });
        assert!(allowed(b"a") && allowed(b"a"));
        assert!(!allowed(b"a"), "a's burst of 2 is spent");
        assert!(allowed(b"b"), "b is untouched by a");
        clock.advance(std::time::Duration::from_secs(1));
        assert!(allowed(b"a"), "one token per second");
        assert!(!allowed(b"a"));
        assert_eq!(limiter.keys(), 2);
    }

    #[test]
    fn connection_limiter_is_a_shared_bucket() {
        let clock = Arc::new(ManualClock::new(std::time::Duration::from_nanos(1)));
        let limiter = ConnectionLimiter::new(10, 2, Arc::clone(&clock) as Arc<dyn Clock>);
        assert!(limiter.admit() && limiter.admit());
        assert!(!limiter.admit());
        clock.advance(std::time::Duration::from_millis(100));
        assert!(limiter.admit());
        assert!(!limiter.admit());
    }
}

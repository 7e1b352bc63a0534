//! What every policy shares: the endpoints' live state and weights, which of them may take
//! traffic (health, the panic threshold), slow start, and the injected clock and randomness.
//!
//! Panic threshold (Envoy's "panic mode"): when too few endpoints are healthy, sending all
//! traffic to the survivors overloads them in a cascade; past the threshold it is better to
//! spread traffic over every endpoint and let some requests fail. Counting healthy endpoints is
//! O(n), so it runs when the balancer is built and in [`crate::Balancer::health_changed`], and
//! picks read one `AtomicBool`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use weir_core::{Clock, Endpoint, EndpointState, Nanos};

use crate::sampling::WeightedIndex;
use crate::slow_start::SlowStart;
use crate::{BuildContext, CommonOptions, RandomSource, rng};

/// How many weighted draws a pick tries before falling back to a scan for any eligible
/// endpoint. Each retry is one random number and a few atomic loads.
const MAX_DRAWS: usize = 8;

/// One endpoint as a policy sees it: live state and weight, one pointer hop from the balancer.
#[derive(Debug)]
pub(crate) struct Member {
    pub(crate) state: Arc<EndpointState>,
    pub(crate) weight: u32,
}

/// The endpoints of one balancer plus the cluster-wide switches every policy honours.
#[derive(Debug)]
pub(crate) struct Members {
    members: Vec<Member>,
    clock: Arc<dyn Clock>,
    random: Arc<dyn RandomSource>,
    /// Percent of healthy endpoints below which health is ignored; 0 = never.
    panic_threshold: u32,
    panicking: AtomicBool,
    /// Healthy endpoints at the last count (build or `health_changed`).
    healthy: AtomicUsize,
    slow_start: Option<SlowStart>,
}

// === impl Members ===

impl Members {
    /// Captures `endpoints` and computes the initial panic state.
    pub(crate) fn new(
        endpoints: &[Arc<Endpoint>],
        ctx: &BuildContext,
        options: &CommonOptions,
    ) -> Self {
        let members = Self {
            members: endpoints
                .iter()
                .map(|e| Member {
                    state: Arc::clone(&e.state),
                    weight: e.weight.max(1),
                })
                .collect(),
            clock: Arc::clone(&ctx.clock),
            random: Arc::clone(&ctx.random),
            panic_threshold: options.panic_threshold,
            panicking: AtomicBool::new(false),
            healthy: AtomicUsize::new(0),
            slow_start: options.slow_start.as_ref().and_then(SlowStart::new),
        };
        members.refresh_panic();
        members
    }

    /// Number of endpoints (eligible or not).
    pub(crate) fn len(&self) -> usize {
        self.members.len()
    }

    /// Endpoint `i`.
    pub(crate) fn get(&self, i: usize) -> &Member {
        &self.members[i]
    }

    /// The weights, in endpoint order.
    pub(crate) fn weights(&self) -> Vec<u32> {
        self.members.iter().map(|m| m.weight).collect()
    }

    /// Recounts healthy endpoints and sets the panic flag; O(n), off the hot path.
    pub(crate) fn refresh_panic(&self) {
        let n = self.members.len();
        let healthy = self.members.iter().filter(|m| m.state.is_healthy()).count();
        let panic = n > 0 && (healthy as u64) * 100 < u64::from(self.panic_threshold) * n as u64;
        self.healthy.store(healthy, Ordering::Relaxed);
        self.panicking.store(panic, Ordering::Relaxed);
    }

    /// Whether fewer endpoints than the panic threshold were healthy at the last count.
    pub(crate) fn panicking(&self) -> bool {
        self.panicking.load(Ordering::Relaxed)
    }

    /// Whether endpoint `i` may take traffic: healthy, or anything while in panic.
    pub(crate) fn eligible(&self, i: usize) -> bool {
        self.members[i].state.is_healthy() || self.panicking()
    }

    /// Number of endpoints that may take traffic, as of the last health count (O(1)).
    pub(crate) fn eligible_count(&self) -> usize {
        if self.panicking() {
            return self.members.len();
        }
        self.healthy.load(Ordering::Relaxed)
    }

    /// The first eligible endpoint at or after `start` (wrapping), if any; O(n) worst case.
    pub(crate) fn next_eligible(&self, start: usize) -> Option<usize> {
        let n = self.members.len();
        (0..n).map(|k| (start + k) % n).find(|&i| self.eligible(i))
    }

    /// A uniform `u64` from the injected source.
    pub(crate) fn next_u64(&self) -> u64 {
        self.random.next_u64()
    }

    /// The injected clock's reading.
    pub(crate) fn now(&self) -> Nanos {
        self.clock.now()
    }

    /// Endpoint `i`'s slow-start weight factor, or `None` at full weight (the common case,
    /// decided by one atomic load).
    pub(crate) fn ramp(&self, i: usize) -> Option<f64> {
        let slow = self.slow_start.as_ref()?;
        slow.factor(self.members[i].state.eligible_since(), &*self.clock)
    }

    /// Whether a drawn candidate `i` is taken: it must be eligible, and a ramping endpoint is
    /// taken with probability equal to its slow-start factor.
    pub(crate) fn accepts(&self, i: usize) -> bool {
        if !self.eligible(i) {
            return false;
        }
        match self.ramp(i) {
            None => true,
            Some(f) => rng::unit(self.next_u64()) < f,
        }
    }

    /// One weighted draw that honours health, panic and slow start; after [`MAX_DRAWS`]
    /// rejections (most endpoints down or ramping) the first eligible endpoint after a random
    /// start is taken instead. `None` only when nothing is eligible.
    pub(crate) fn draw(&self, sampler: &WeightedIndex) -> Option<usize> {
        if self.members.is_empty() {
            return None;
        }
        for _ in 0..MAX_DRAWS {
            let i = sampler.sample(self.next_u64());
            if self.accepts(i) {
                return Some(i);
            }
        }
        self.next_eligible(rng::below(self.next_u64(), self.members.len()))
    }

    /// Two candidates for a power-of-two-choices pick: the first a plain weighted draw, the
    /// second distinct when possible (as [`Members::draw_distinct`]; equal only when no other
    /// eligible endpoint turns up). Both are drawn before either endpoint's state is read, so at large
    /// endpoint counts their cache misses overlap instead of queueing.
    pub(crate) fn draw_pair(&self, sampler: &WeightedIndex) -> Option<(usize, usize)> {
        if self.members.is_empty() {
            return None;
        }
        let (a, b) = (
            sampler.sample(self.next_u64()),
            sampler.sample(self.next_u64()),
        );
        let (accept_a, accept_b) = (self.accepts(a), self.accepts(b));
        if accept_a && accept_b && a != b {
            return Some((a, b));
        }
        let a = if accept_a { a } else { self.draw(sampler)? };
        let b = self.draw_distinct(sampler, &[a]).unwrap_or(a);
        Some((a, b))
    }

    /// Like [`Members::draw`] but avoiding the indices in `taken`: P2C candidates should
    /// differ, or the "choice" compares an endpoint with itself. After a few repeated draws (a
    /// dominant weight, or two endpoints) the next eligible endpoint not taken is used; a repeat
    /// is returned only when there is no other. The first candidate is a plain draw, so ties
    /// resolved in its favour keep shares proportional to weight.
    pub(crate) fn draw_distinct(&self, sampler: &WeightedIndex, taken: &[usize]) -> Option<usize> {
        let mut last = self.draw(sampler)?;
        for _ in 0..3 {
            if !taken.contains(&last) {
                return Some(last);
            }
            last = self.draw(sampler)?;
        }
        if !taken.contains(&last) {
            return Some(last);
        }
        let n = self.members.len();
        let other = (1..n)
            .map(|k| (last + k) % n)
            .take(MAX_DRAWS)
            .find(|&i| !taken.contains(&i) && self.eligible(i));
        Some(other.unwrap_or(last))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{context, endpoints};

    #[test]
    fn panic_flag_follows_the_threshold_after_health_changes() {
        let eps = endpoints(&[1; 10]);
        let options = CommonOptions {
            panic_threshold: 50,
            ..CommonOptions::default()
        };
        let m = Members::new(&eps, &context(1), &options);
        assert!(!m.panicking());
        for e in &eps[..5] {
            e.state.set_healthy(false, 0);
        }
        m.refresh_panic();
        assert!(!m.panicking(), "5 of 10 is not below 50 %");
        eps[5].state.set_healthy(false, 0);
        m.refresh_panic();
        assert!(m.panicking());
        assert!(m.eligible(0) && m.eligible_count() == 10);
    }

    #[test]
    fn threshold_zero_never_panics_and_draw_gives_none_when_all_down() {
        let eps = endpoints(&[1, 2]);
        let options = CommonOptions {
            panic_threshold: 0,
            ..CommonOptions::default()
        };
        let m = Members::new(&eps, &context(1), &options);
        for e in &eps {
            e.state.set_healthy(false, 0);
        }
        m.refresh_panic();
        assert!(!m.panicking());
        let sampler = WeightedIndex::new(&m.weights());
        assert_eq!(m.draw(&sampler), None);
        assert_eq!(m.next_eligible(1), None);
    }
}

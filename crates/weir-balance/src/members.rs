//! What every policy shares: the endpoints' live state and weights, which of them may take
//! traffic (health, the panic threshold), slow start, and the injected clock and randomness.
//!
//! Panic threshold (Envoy's "panic mode"): when too few endpoints are healthy, sending all
//! traffic to the survivors overloads them in a cascade; past the threshold it is better to
//! spread traffic over every endpoint and let some requests fail.
//!
//! Eligibility is derived once per health change, not per pick: a [`View`] holds the eligible
//! endpoints (all of them in panic), the panic flag, and the tables a policy draws from, built
//! over the eligible set only (the alias table, the round-robin cycle). Picks therefore never
//! reject a candidate for health, and healthy endpoints keep exactly their weight ratio. The
//! view is swapped in whole ([`arc_swap::ArcSwap`]): a pick compares the process-wide
//! [`weir_core::health_generation`] with the view's (one relaxed load) and, when it moved, one
//! pick rebuilds the view (O(n); others keep using the old view meanwhile) and swaps it in.
//! [`crate::Balancer::health_changed`] forces the rebuild. A pick still checks the chosen
//! endpoint's live health, so a pick racing a rebuild never returns an endpoint it knows is
//! down; only slow start rejects candidates in normal operation.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::{ArcSwap, Guard};
use weir_core::{Clock, Endpoint, EndpointState, HealthFlags, Nanos, Unhealthy, health_generation};

use crate::round_robin::smooth_cycle;
use crate::sampling::WeightedIndex;
use crate::slow_start::SlowStart;
use crate::{BuildContext, CommonOptions, RandomSource, rng};

/// How many weighted draws a pick tries before taking a candidate that slow start declined.
/// Each retry is one random number and a few atomic loads.
const MAX_DRAWS: usize = 8;

/// One endpoint as a policy sees it: live state and weight, one pointer hop from the balancer.
#[derive(Debug)]
pub(crate) struct Member {
    pub(crate) state: Arc<EndpointState>,
    pub(crate) weight: u32,
}

/// Which tables over the eligible set a policy draws from (each costs a rebuild on change).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Needs {
    /// A weighted alias table (random, least request, peak EWMA).
    pub(crate) sampler: bool,
    /// The smooth weighted round-robin cycle.
    pub(crate) cycle: bool,
}

/// Eligibility at one health generation, and the tables built over the eligible endpoints.
#[derive(Debug)]
pub(crate) struct View {
    /// The [`health_generation`] read before health was read for this view.
    generation: u64,
    panicking: bool,
    /// Indices of the endpoints that may take traffic, ascending (all of them in panic).
    pub(crate) eligible: Vec<u32>,
    /// Sum of the eligible endpoints' weights.
    pub(crate) eligible_weight: u64,
    /// Alias table over positions in `eligible` (empty unless [`Needs::sampler`]).
    sampler: WeightedIndex,
    /// Smooth round-robin cycle of endpoint indices (empty unless [`Needs::cycle`]).
    pub(crate) cycle: Vec<u32>,
}

/// The endpoints of one balancer plus the cluster-wide switches every policy honours.
#[derive(Debug)]
pub(crate) struct Members {
    members: Vec<Member>,
    clock: Arc<dyn Clock>,
    random: Arc<dyn RandomSource>,
    /// Percent of healthy endpoints below which health is ignored; 0 = never.
    panic_threshold: u32,
    slow_start: Option<SlowStart>,
    needs: Needs,
    view: ArcSwap<View>,
    /// Set while a view is rebuilt, so concurrent picks do not all rebuild it (picks only ever
    /// try it; they never wait).
    rebuilding: AtomicBool,
}

/// Clears the rebuild flag on drop.
struct RebuildFlag<'a>(&'a AtomicBool);

impl Drop for RebuildFlag<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

// === impl View ===

impl View {
    /// Whether health is being ignored (too few endpoints healthy).
    pub(crate) fn panicking(&self) -> bool {
        self.panicking
    }
}

// === impl Members ===

impl Members {
    /// Captures `endpoints` and computes the initial view.
    pub(crate) fn new(
        endpoints: &[Arc<Endpoint>],
        ctx: &BuildContext,
        options: &CommonOptions,
        needs: Needs,
    ) -> Self {
        let members: Vec<Member> = endpoints
            .iter()
            .map(|e| Member {
                state: Arc::clone(&e.state),
                weight: e.weight.max(1),
            })
            .collect();
        let view = compute_view(&members, options.panic_threshold, needs);
        Self {
            members,
            clock: Arc::clone(&ctx.clock),
            random: Arc::clone(&ctx.random),
            panic_threshold: options.panic_threshold,
            slow_start: options.slow_start.as_ref().and_then(SlowStart::new),
            needs,
            view: ArcSwap::from_pointee(view),
            rebuilding: AtomicBool::new(false),
        }
    }

    /// Number of endpoints (eligible or not).
    pub(crate) fn len(&self) -> usize {
        self.members.len()
    }

    /// Endpoint `i`.
    pub(crate) fn get(&self, i: usize) -> &Member {
        &self.members[i]
    }

    /// The current view; rebuilt first when endpoints' health changed since it was computed
    /// (unless another pick is rebuilding it right now: then the previous view, whose picks are
    /// still checked against live health).
    #[inline]
    pub(crate) fn view(&self) -> Guard<Arc<View>> {
        let generation = health_generation();
        let view = self.view.load();
        if view.generation == generation {
            return view;
        }
        self.refresh_stale(view)
    }

    #[cold]
    fn refresh_stale(&self, stale: Guard<Arc<View>>) -> Guard<Arc<View>> {
        let Some(_flag) = self.try_rebuilding() else {
            return stale;
        };
        drop(stale);
        let current = self.view.load();
        if current.generation == health_generation() {
            return current;
        }
        drop(current);
        self.rebuild_locked();
        self.view.load()
    }

    /// Recomputes the view now (health counts, panic flag, tables); O(n), off the hot path.
    pub(crate) fn refresh(&self) {
        let _flag = loop {
            match self.try_rebuilding() {
                Some(flag) => break flag,
                None => std::thread::yield_now(),
            }
        };
        self.rebuild_locked();
    }

    /// Claims the rebuild flag, released when the returned value drops.
    fn try_rebuilding(&self) -> Option<RebuildFlag<'_>> {
        self.rebuilding
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| RebuildFlag(&self.rebuilding))
    }

    fn rebuild_locked(&self) {
        let view = compute_view(&self.members, self.panic_threshold, self.needs);
        self.view.store(Arc::new(view));
    }

    /// Whether endpoint `i` may take traffic under `view`: healthy (read live), or anything not
    /// drained in panic.
    #[inline]
    pub(crate) fn eligible(&self, view: &View, i: usize) -> bool {
        takes_traffic(self.members[i].state.health(), view.panicking)
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
    #[inline]
    pub(crate) fn accepts(&self, view: &View, i: usize) -> bool {
        if !self.eligible(view, i) {
            return false;
        }
        match self.ramp(i) {
            None => true,
            Some(f) => rng::unit(self.next_u64()) < f,
        }
    }

    /// An eligible endpoint of `view` found by scanning from a random position: the last resort
    /// when live health disagrees with the view (a rebuild is pending).
    pub(crate) fn scan(&self, view: &View) -> Option<usize> {
        let n = view.eligible.len();
        if n == 0 {
            return None;
        }
        let start = rng::below(self.next_u64(), n);
        (0..n)
            .map(|k| view.eligible[(start + k) % n] as usize)
            .find(|&i| self.eligible(view, i))
    }

    /// One plain weighted draw over `view`'s eligible endpoints (no checks).
    #[inline]
    fn sample(&self, view: &View) -> usize {
        view.eligible[view.sampler.sample(self.next_u64())] as usize
    }

    /// One weighted draw over the eligible endpoints that honours slow start. After
    /// [`MAX_DRAWS`] declines (most endpoints ramping) the last eligible draw is taken anyway,
    /// which is still weight-proportional. `None` only when nothing is eligible.
    pub(crate) fn draw(&self, view: &View) -> Option<usize> {
        if view.eligible.is_empty() {
            return None;
        }
        let mut declined = None;
        for _ in 0..MAX_DRAWS {
            let i = self.sample(view);
            if self.accepts(view, i) {
                return Some(i);
            }
            if self.eligible(view, i) {
                declined = Some(i);
            }
        }
        declined.or_else(|| self.scan(view))
    }

    /// Two candidates for a power-of-two-choices pick: the first a plain weighted draw, the
    /// second distinct when possible (as [`Members::draw_distinct`]; equal only when no other
    /// eligible endpoint turns up). Both are drawn before either endpoint's state is read, so at
    /// large endpoint counts their cache misses overlap instead of queueing.
    pub(crate) fn draw_pair(&self, view: &View) -> Option<(usize, usize)> {
        if view.eligible.is_empty() {
            return None;
        }
        let (a, b) = (self.sample(view), self.sample(view));
        let (accept_a, accept_b) = (self.accepts(view, a), self.accepts(view, b));
        if accept_a && accept_b && a != b {
            return Some((a, b));
        }
        let a = if accept_a { a } else { self.draw(view)? };
        let b = self.draw_distinct(view, &[a]).unwrap_or(a);
        Some((a, b))
    }

    /// Like [`Members::draw`] but avoiding the indices in `taken`: P2C candidates should
    /// differ, or the "choice" compares an endpoint with itself. After a few repeated draws (a
    /// dominant weight, or two endpoints) the next eligible endpoint not taken is used; a repeat
    /// is returned only when there is no other. The first candidate is a plain draw, so ties
    /// resolved in its favour keep shares proportional to weight.
    pub(crate) fn draw_distinct(&self, view: &View, taken: &[usize]) -> Option<usize> {
        let mut last = self.draw(view)?;
        for _ in 0..3 {
            if !taken.contains(&last) {
                return Some(last);
            }
            last = self.draw(view)?;
        }
        if !taken.contains(&last) {
            return Some(last);
        }
        let n = view.eligible.len();
        let at = view.eligible.partition_point(|&e| (e as usize) < last);
        let other = (1..n)
            .map(|k| view.eligible[(at + k) % n] as usize)
            .take(MAX_DRAWS)
            .find(|&i| !taken.contains(&i) && self.eligible(view, i));
        Some(other.unwrap_or(last))
    }
}

/// Whether an endpoint with `flags` may be picked: healthy, or not drained while the cluster
/// panics.
#[inline]
fn takes_traffic(flags: HealthFlags, panicking: bool) -> bool {
    flags.is_healthy() || (panicking && !flags.contains(Unhealthy::Drained))
}

/// Whether endpoints with these health `flags` are in panic mode under `panic_threshold` (%).
fn panicking(flags: &[HealthFlags], panic_threshold: u32) -> bool {
    let in_service = flags
        .iter()
        .filter(|f| !f.contains(Unhealthy::Drained))
        .count();
    let healthy_count = flags.iter().filter(|f| f.is_healthy()).count();
    in_service > 0 && (healthy_count as u64) * 100 < u64::from(panic_threshold) * in_service as u64
}

/// Which of `endpoints` a balancer may send new traffic to now: the healthy ones, or all but the
/// drained ones when fewer than `panic_threshold` % are healthy (panic mode). The kernel data
/// plane marks endpoints eligible from this, so it agrees with every userspace policy.
pub fn eligible_endpoints(endpoints: &[Arc<Endpoint>], panic_threshold: u32) -> Vec<bool> {
    let flags: Vec<HealthFlags> = endpoints.iter().map(|e| e.state.health()).collect();
    let panicking = panicking(&flags, panic_threshold);
    flags.iter().map(|&f| takes_traffic(f, panicking)).collect()
}

/// The view of `members` now: reads the generation first, so a change racing this scan leaves
/// the view marked stale and it is rebuilt again.
fn compute_view(members: &[Member], panic_threshold: u32, needs: Needs) -> View {
    let generation = health_generation();
    let n = members.len();
    let flags: Vec<HealthFlags> = members.iter().map(|m| m.state.health()).collect();
    // A drained endpoint is out by an operator's decision, not by failing: panic mode never
    // sends it traffic, and it does not count towards the panic threshold.
    let panicking = panicking(&flags, panic_threshold);
    let eligible: Vec<u32> = (0..n)
        .filter(|&i| takes_traffic(flags[i], panicking))
        .map(|i| i as u32)
        .collect();
    let weights: Vec<u32> = eligible
        .iter()
        .map(|&i| members[i as usize].weight)
        .collect();
    let eligible_weight = weights.iter().map(|&w| u64::from(w)).sum();
    let sampler = WeightedIndex::new(if needs.sampler { &weights } else { &[] });
    let cycle = if needs.cycle {
        smooth_cycle(&weights)
            .into_iter()
            .map(|p| eligible[p as usize])
            .collect()
    } else {
        Vec::new()
    };
    View {
        generation,
        panicking,
        eligible,
        eligible_weight,
        sampler,
        cycle,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{context, endpoints};

    fn members(eps: &[Arc<Endpoint>], panic_threshold: u32) -> Members {
        let options = CommonOptions {
            panic_threshold,
            ..CommonOptions::default()
        };
        let needs = Needs {
            sampler: true,
            cycle: false,
        };
        Members::new(eps, &context(1), &options, needs)
    }

    #[test]
    fn panic_flag_follows_the_threshold_without_being_told() {
        let eps = endpoints(&[1; 10]);
        let m = members(&eps, 50);
        assert!(!m.view().panicking());
        for e in &eps[..5] {
            e.state.set_healthy(false, 0);
        }
        // No `refresh`: the health generation moved, so the next view is recomputed.
        let view = m.view();
        assert!(!view.panicking(), "5 of 10 is not below 50 %");
        assert_eq!(view.eligible, vec![5, 6, 7, 8, 9]);
        drop(view);
        eps[5].state.set_healthy(false, 0);
        let view = m.view();
        assert!(view.panicking());
        assert!(m.eligible(&view, 0) && view.eligible.len() == 10);
    }

    #[test]
    fn threshold_zero_never_panics_and_draw_gives_none_when_all_down() {
        let eps = endpoints(&[1, 2]);
        let m = members(&eps, 0);
        for e in &eps {
            e.state.set_healthy(false, 0);
        }
        m.refresh();
        let view = m.view();
        assert!(!view.panicking());
        assert_eq!(m.draw(&view), None);
        assert_eq!(m.draw_pair(&view), None);
        assert_eq!(m.scan(&view), None);
    }

    #[test]
    fn a_stale_view_never_yields_a_down_endpoint() {
        // Simulates a pick racing a rebuild: the view still lists endpoint 0 as eligible.
        let eps = endpoints(&[1_000, 1, 1]);
        let m = members(&eps, 0);
        let stale = m.view();
        eps[0].state.set_healthy(false, 0);
        for _ in 0..1_000 {
            assert_ne!(m.draw(&stale), Some(0));
        }
    }
}

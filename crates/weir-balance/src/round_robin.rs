//! Smooth weighted round robin, as nginx does it, made lock-free.
//!
//! nginx's algorithm (each pick: add every endpoint's weight to its current value, choose the
//! largest, subtract the total from it) interleaves endpoints evenly: weights 5,1,1 give
//! `a a b a c a a`, not `a a a a a b c`. It needs mutable state per pick, so we run it once at
//! build time to produce the whole cycle and then walk the cycle with one atomic counter.
//!
//! A slot whose endpoint is unhealthy, or that a ramping endpoint declines (slow start, by
//! rejection), passes its turn on to the next slot of the shared cycle.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use weir_core::Endpoint;

use crate::members::Members;
use crate::{Balancer, BuildContext, CommonOptions, PickContext, rng};

/// Upper bound on the precomputed cycle; larger weight sums are scaled down proportionally.
const MAX_CYCLE: u64 = 1 << 16;

/// How many cycle slots one pick may pass over (unhealthy, or a slow-start rejection) before
/// it scans for any eligible endpoint instead.
const MAX_SKIPS: usize = 16;

/// Smooth weighted round robin over a precomputed cycle.
#[derive(Debug)]
pub struct RoundRobin {
    members: Members,
    cycle: Vec<u32>,
    next: AtomicUsize,
}

// === impl RoundRobin ===

impl RoundRobin {
    /// Builds the cycle for `endpoints`; the walk starts at a random offset so that many proxies
    /// restarted together do not all hit the first endpoint first.
    pub fn new(endpoints: &[Arc<Endpoint>], ctx: &BuildContext, options: &CommonOptions) -> Self {
        let members = Members::new(endpoints, ctx, options);
        let cycle = smooth_cycle(&members.weights());
        let start = if cycle.is_empty() {
            0
        } else {
            rng::below(members.next_u64(), cycle.len())
        };
        Self {
            members,
            cycle,
            next: AtomicUsize::new(start),
        }
    }
}

impl Balancer for RoundRobin {
    fn pick(&self, _ctx: &PickContext) -> Option<usize> {
        let len = self.cycle.len();
        if len == 0 {
            return None;
        }
        let mut idx = 0;
        // A slot that cannot be used is passed over by taking the *next shared* slot, not by
        // walking locally: that keeps the healthy endpoints' shares in their weight ratio
        // instead of doubling the share of whoever follows an unhealthy endpoint.
        for _ in 0..MAX_SKIPS {
            let at = self.next.fetch_add(1, Ordering::Relaxed) % len;
            idx = self.cycle[at] as usize;
            if self.members.accepts(idx) {
                return Some(idx);
            }
        }
        self.members.next_eligible(idx)
    }

    fn health_changed(&self) {
        self.members.refresh_panic();
    }
}

/// The full smooth-weighted cycle for `weights` (after dividing out their gcd).
fn smooth_cycle(weights: &[u32]) -> Vec<u32> {
    if weights.is_empty() {
        return Vec::new();
    }
    let g = weights.iter().copied().fold(0, gcd).max(1);
    let mut w: Vec<u64> = weights.iter().map(|&x| u64::from((x / g).max(1))).collect();
    let total: u64 = w.iter().sum();
    if total > MAX_CYCLE {
        let scale = MAX_CYCLE as f64 / total as f64;
        for x in &mut w {
            *x = ((*x as f64 * scale).round() as u64).max(1);
        }
    }
    let total: i64 = w.iter().map(|&x| x as i64).sum();
    let mut current = vec![0i64; w.len()];
    let mut cycle = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for i in 0..w.len() {
            current[i] += w[i] as i64;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        cycle.push(best as u32);
    }
    cycle
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{context, endpoints, shares};

    fn balancer(eps: &[Arc<Endpoint>]) -> RoundRobin {
        RoundRobin::new(eps, &context(1), &CommonOptions::default())
    }

    #[test]
    fn nginx_interleaving_for_5_1_1() {
        // The sequence from nginx's commit message introducing smooth weighted round robin.
        assert_eq!(smooth_cycle(&[5, 1, 1]), vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn equal_weights_rotate_in_order() {
        assert_eq!(smooth_cycle(&[3, 3, 3]), vec![0, 1, 2]);
    }

    #[test]
    fn weighted_shares_are_exact_over_whole_cycles() {
        let eps = endpoints(&[1, 2, 3, 4]);
        let rr = balancer(&eps);
        let got = shares(&rr, eps.len(), 10_000);
        assert_eq!(got, vec![1_000, 2_000, 3_000, 4_000]);
    }

    #[test]
    fn skips_unhealthy_and_gives_none_when_all_down() {
        let eps = endpoints(&[1, 1, 1]);
        eps[1].state.set_healthy(false, 0);
        let rr = balancer(&eps);
        let got = shares(&rr, eps.len(), 300);
        assert_eq!(got[1], 0);
        assert_eq!(got[0] + got[2], 300);
        for e in &eps {
            e.state.set_healthy(false, 0);
        }
        assert_eq!(rr.pick(&PickContext::default()), None);
        assert_eq!(balancer(&[]).pick(&PickContext::default()), None);
    }

    #[test]
    fn huge_weight_sums_are_scaled_not_refused() {
        let eps = endpoints(&[10_000; 100]);
        let rr = balancer(&eps);
        assert_eq!(rr.cycle.len(), 100);
        let eps = endpoints(&(1..=2_000).collect::<Vec<_>>());
        let rr = balancer(&eps);
        assert!(rr.cycle.len() as u64 <= MAX_CYCLE + 2_000);
    }
}

//! Weighted random choice.
//!
//! Stateless apart from the per-thread RNG: good when many independent proxies must not
//! synchronise (round robin across restarts can), and the baseline the other policies beat.

use std::sync::Arc;

use weir_core::Endpoint;

use crate::{Balancer, PickContext, next_healthy, rng};

/// Weighted random over the endpoints.
#[derive(Debug)]
pub struct Random {
    endpoints: Vec<Arc<Endpoint>>,
    /// Cumulative weights; empty when all weights are equal (uniform choice is cheaper).
    cumulative: Vec<u64>,
}

// === impl Random ===

impl Random {
    /// Prepares the cumulative weight table for `endpoints`.
    pub fn new(endpoints: &[Arc<Endpoint>]) -> Self {
        let uniform = endpoints.windows(2).all(|w| w[0].weight == w[1].weight);
        let cumulative = if uniform {
            Vec::new()
        } else {
            endpoints
                .iter()
                .scan(0u64, |acc, e| {
                    *acc += u64::from(e.weight);
                    Some(*acc)
                })
                .collect()
        };
        Self {
            endpoints: endpoints.to_vec(),
            cumulative,
        }
    }

    fn draw(&self) -> usize {
        match self.cumulative.last() {
            None => rng::below(self.endpoints.len()),
            Some(&total) => {
                let x = rng::next_u64() % total;
                self.cumulative.partition_point(|&c| c <= x)
            }
        }
    }
}

impl Balancer for Random {
    fn pick(&self, _ctx: &PickContext) -> Option<usize> {
        if self.endpoints.is_empty() {
            return None;
        }
        let idx = self.draw();
        if self.endpoints[idx].state.is_healthy() {
            return Some(idx);
        }
        next_healthy(&self.endpoints, idx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{assert_shares_close, endpoints, shares};

    #[test]
    fn shares_follow_weights() {
        let eps = endpoints(&[1, 2, 3, 4]);
        let got = shares(&Random::new(&eps), eps.len(), 100_000);
        assert_shares_close(&got, &[0.1, 0.2, 0.3, 0.4], 0.02);
        let eps = endpoints(&[1, 1, 1, 1]);
        let got = shares(&Random::new(&eps), eps.len(), 100_000);
        assert_shares_close(&got, &[0.25; 4], 0.02);
    }

    #[test]
    fn never_picks_unhealthy() {
        let eps = endpoints(&[1, 5, 1]);
        eps[1].state.set_healthy(false);
        let got = shares(&Random::new(&eps), eps.len(), 10_000);
        assert_eq!(got[1], 0);
        assert_eq!(Random::new(&[]).pick(&PickContext::default()), None);
    }
}

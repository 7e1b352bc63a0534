//! Weighted random choice.
//!
//! Stateless apart from the injected random source: good when many independent proxies must
//! not synchronise (round robin across restarts can), and the baseline the other policies beat.
//! Draws use an alias table (O(1) at any endpoint count); an unhealthy or declining (slow
//! start) draw is simply drawn again, so healthy endpoints keep their weight ratio.

use std::sync::Arc;

use weir_core::Endpoint;

use crate::members::Members;
use crate::sampling::WeightedIndex;
use crate::{Balancer, BuildContext, CommonOptions, PickContext};

/// Weighted random over the endpoints.
#[derive(Debug)]
pub struct Random {
    members: Members,
    sampler: WeightedIndex,
}

// === impl Random ===

impl Random {
    /// Prepares the weighted sampler for `endpoints`.
    pub fn new(endpoints: &[Arc<Endpoint>], ctx: &BuildContext, options: &CommonOptions) -> Self {
        let members = Members::new(endpoints, ctx, options);
        let sampler = WeightedIndex::new(&members.weights());
        Self { members, sampler }
    }
}

impl Balancer for Random {
    fn pick(&self, _ctx: &PickContext) -> Option<usize> {
        self.members.draw(&self.sampler)
    }

    fn health_changed(&self) {
        self.members.refresh_panic();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{assert_shares_close, context, endpoints, shares};

    fn balancer(eps: &[Arc<Endpoint>]) -> Random {
        Random::new(eps, &context(5), &CommonOptions::default())
    }

    #[test]
    fn shares_follow_weights() {
        let eps = endpoints(&[1, 2, 3, 4]);
        let got = shares(&balancer(&eps), eps.len(), 100_000);
        assert_shares_close(&got, &[0.1, 0.2, 0.3, 0.4], 0.02);
        let eps = endpoints(&[1, 1, 1, 1]);
        let got = shares(&balancer(&eps), eps.len(), 100_000);
        assert_shares_close(&got, &[0.25; 4], 0.02);
    }

    #[test]
    fn never_picks_unhealthy_and_keeps_the_ratio_of_the_rest() {
        let eps = endpoints(&[1, 5, 1]);
        eps[1].state.set_healthy(false, 0);
        let got = shares(&balancer(&eps), eps.len(), 10_000);
        assert_eq!(got[1], 0);
        assert_shares_close(&got, &[0.5, 0.0, 0.5], 0.02);
        assert_eq!(balancer(&[]).pick(&PickContext::default()), None);
    }
}

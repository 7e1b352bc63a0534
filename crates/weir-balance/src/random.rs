//! Weighted random choice.
//!
//! Stateless apart from the injected random source: good when many independent proxies must
//! not synchronise (round robin across restarts can), and the baseline the other policies beat.
//! Draws use an alias table (O(1) at any endpoint count) built over the eligible endpoints only
//! (rebuilt when health changes), so healthy endpoints keep their weight ratio; a declining
//! (slow start) draw is simply drawn again.

use std::sync::Arc;

use weir_core::Endpoint;

use crate::explain::Explanation;
use crate::members::{Members, Needs};
use crate::{Balancer, BuildContext, CommonOptions, PickContext};

/// Weighted random over the endpoints.
#[derive(Debug)]
pub struct Random {
    members: Members,
}

// === impl Random ===

impl Random {
    /// Prepares the weighted sampler for `endpoints`.
    pub fn new(endpoints: &[Arc<Endpoint>], ctx: &BuildContext, options: &CommonOptions) -> Self {
        let needs = Needs {
            sampler: true,
            ..Needs::default()
        };
        Self {
            members: Members::new(endpoints, ctx, options, needs),
        }
    }
}

impl Balancer for Random {
    fn pick(&self, _ctx: &PickContext) -> Option<usize> {
        self.members.draw(&self.members.view())
    }

    fn explain(&self, _ctx: &PickContext, picked: usize) -> Explanation {
        let mut e = Explanation::of("random", picked, &self.members);
        e.note = Some("weighted random draw");
        e
    }

    fn health_changed(&self) {
        self.members.refresh();
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

    #[test]
    fn unhealthy_heavy_endpoint_leaves_the_rest_in_ratio() {
        // The reviewer's case: weights 1000,1,1 with endpoint 0 down gave [0, 9841, 159].
        let eps = endpoints(&[1_000, 1, 3]);
        let b = balancer(&eps);
        eps[0].state.set_healthy(false, 0);
        let got = shares(&b, eps.len(), 100_000);
        assert_shares_close(&got, &[0.0, 0.25, 0.75], 0.02);
    }
}

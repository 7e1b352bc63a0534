//! Least request by the power of two choices.
//!
//! Mitzenmacher, "The Power of Two Choices in Randomized Load Balancing" (2001): sampling two
//! endpoints and taking the less loaded one gives exponentially better maximum load than one
//! random choice, at O(1) cost and without the herd behaviour of a global "least loaded" scan.
//! Load is in-flight requests divided by weight (Envoy's `active_request_bias` of 1), read from
//! the shared [`weir_core::EndpointState`] so every worker sees the same counts.

use std::sync::Arc;

use weir_core::Endpoint;

use crate::{Balancer, PickContext, next_healthy, rng};

/// Power-of-two-choices least request.
#[derive(Debug)]
pub struct LeastRequest {
    endpoints: Vec<Arc<Endpoint>>,
}

// === impl LeastRequest ===

impl LeastRequest {
    /// A P2C balancer over `endpoints`.
    pub fn new(endpoints: &[Arc<Endpoint>]) -> Self {
        Self {
            endpoints: endpoints.to_vec(),
        }
    }

    /// Load score: lower is better. Compared by cross-multiplication to stay in integers.
    fn better(&self, a: usize, b: usize) -> usize {
        let (ea, eb) = (&self.endpoints[a], &self.endpoints[b]);
        let la = (ea.state.in_flight() + 1) * u64::from(eb.weight);
        let lb = (eb.state.in_flight() + 1) * u64::from(ea.weight);
        if la <= lb { a } else { b }
    }
}

impl Balancer for LeastRequest {
    fn pick(&self, _ctx: &PickContext) -> Option<usize> {
        let n = self.endpoints.len();
        match n {
            0 => return None,
            1 => return next_healthy(&self.endpoints, 0),
            _ => {}
        }
        let a = rng::below(n);
        // A second, distinct sample: offset by 1..n so it never equals `a`.
        let b = (a + 1 + rng::below(n - 1)) % n;
        let healthy = |i: usize| self.endpoints[i].state.is_healthy();
        match (healthy(a), healthy(b)) {
            (true, true) => Some(self.better(a, b)),
            (true, false) => Some(a),
            (false, true) => Some(b),
            (false, false) => next_healthy(&self.endpoints, a),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{assert_shares_close, endpoints, shares};

    #[test]
    fn idle_endpoints_share_evenly() {
        let eps = endpoints(&[1, 1, 1, 1]);
        let got = shares(&LeastRequest::new(&eps), eps.len(), 100_000);
        assert_shares_close(&got, &[0.25; 4], 0.02);
    }

    #[test]
    fn prefers_the_less_loaded_endpoint() {
        let eps = endpoints(&[1, 1]);
        let _busy: Vec<_> = (0..5).map(|_| eps[0].state.begin_request()).collect();
        let lr = LeastRequest::new(&eps);
        let got = shares(&lr, eps.len(), 1_000);
        assert_eq!(
            got,
            vec![0, 1_000],
            "with two endpoints both are always sampled"
        );
    }

    #[test]
    fn load_is_scaled_by_weight() {
        let eps = endpoints(&[4, 1]);
        // 3 in flight on a weight-4 endpoint (score 4/4=1) beats 1 on weight 1 (score 2/1=2).
        let _a: Vec<_> = (0..3).map(|_| eps[0].state.begin_request()).collect();
        let _b = eps[1].state.begin_request();
        assert_eq!(
            LeastRequest::new(&eps).pick(&PickContext::default()),
            Some(0)
        );
    }

    #[test]
    fn holding_picks_keeps_load_balanced() {
        // Closed loop: each pick holds its guard, so P2C must keep in-flight counts level.
        let eps = endpoints(&[1; 8]);
        let lr = LeastRequest::new(&eps);
        let guards: Vec<_> = (0..800)
            .map(|_| {
                let i = lr.pick(&PickContext::default()).unwrap();
                eps[i].state.begin_request()
            })
            .collect();
        let max = eps.iter().map(|e| e.state.in_flight()).max().unwrap();
        let min = eps.iter().map(|e| e.state.in_flight()).min().unwrap();
        assert!(max - min <= 3, "spread {min}..{max}");
        drop(guards);
    }

    #[test]
    fn skips_unhealthy() {
        let eps = endpoints(&[1, 1, 1]);
        eps[0].state.set_healthy(false);
        eps[2].state.set_healthy(false);
        let got = shares(&LeastRequest::new(&eps), eps.len(), 1_000);
        assert_eq!(got, vec![0, 1_000, 0]);
        eps[1].state.set_healthy(false);
        assert_eq!(LeastRequest::new(&eps).pick(&PickContext::default()), None);
    }
}

//! Helpers shared by the policy tests.

use std::sync::Arc;

use weir_core::Endpoint;

use crate::{Balancer, PickContext};

/// Endpoints on 127.0.0.1:1.. with the given weights.
pub(crate) fn endpoints(weights: &[u32]) -> Vec<Arc<Endpoint>> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &w)| {
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 1 + i as u16));
            Arc::new(Endpoint::new(addr, w))
        })
        .collect()
}

/// How many of `picks` picks went to each endpoint.
pub(crate) fn shares(b: &dyn Balancer, n: usize, picks: usize) -> Vec<usize> {
    let mut counts = vec![0; n];
    for _ in 0..picks {
        counts[b.pick(&PickContext::default()).unwrap()] += 1;
    }
    counts
}

/// Asserts each observed share is within `tol` (absolute) of the expected fraction.
pub(crate) fn assert_shares_close(counts: &[usize], expected: &[f64], tol: f64) {
    let total: usize = counts.iter().sum();
    for (i, (&c, &e)) in counts.iter().zip(expected).enumerate() {
        let got = c as f64 / total as f64;
        assert!(
            (got - e).abs() <= tol,
            "endpoint {i}: share {got:.4}, want {e:.4}±{tol}"
        );
    }
}

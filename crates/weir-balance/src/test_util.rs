//! Helpers shared by the policy tests: endpoints, a deterministic build context, share counts.

use std::sync::Arc;
use std::time::Duration;

use weir_core::{Endpoint, ManualClock};

use crate::{Balancer, BuildContext, PickContext, SeededRandom};

/// Endpoints on 127.0.0.1:1.. with the given weights.
pub(crate) fn endpoints(weights: &[u32]) -> Vec<Arc<Endpoint>> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &w)| Arc::new(Endpoint::new(address(i), w)))
        .collect()
}

/// The address of test endpoint `i`: distinct for every `i` below 2^24.
pub(crate) fn address(i: usize) -> std::net::SocketAddr {
    let [_, a, b, c] = (i as u32).to_be_bytes();
    std::net::SocketAddr::from(([10, a, b, c], 8080))
}

/// A build context with a seeded random source and a manual clock reading 1 s.
pub(crate) fn context(seed: u64) -> BuildContext {
    context_with_clock(seed).0
}

/// Like [`context`], also returning the clock to move.
pub(crate) fn context_with_clock(seed: u64) -> (BuildContext, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(Duration::from_secs(1)));
    let ctx = BuildContext {
        clock: Arc::clone(&clock) as _,
        random: Arc::new(SeededRandom::new(seed)),
    };
    (ctx, clock)
}

/// How many of `picks` picks (without a hash) went to each endpoint.
pub(crate) fn shares(b: &dyn Balancer, n: usize, picks: usize) -> Vec<usize> {
    let mut counts = vec![0; n];
    for _ in 0..picks {
        counts[b.pick(&PickContext::default()).unwrap()] += 1;
    }
    counts
}

/// How many of `picks` picks with uniformly random hashes went to each endpoint.
pub(crate) fn hashed_shares(b: &dyn Balancer, n: usize, picks: usize, seed: u64) -> Vec<usize> {
    use crate::RandomSource;
    let keys = SeededRandom::new(seed);
    let mut counts = vec![0; n];
    for _ in 0..picks {
        let ctx = PickContext {
            hash: Some(keys.next_u64()),
            attempt: 0,
        };
        counts[b.pick(&ctx).unwrap()] += 1;
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
            "endpoint {i}: share {got:.4}, want {e:.4}±{tol} ({counts:?})"
        );
    }
}

/// The weight shares of `weights`.
pub(crate) fn weight_shares(weights: &[u32]) -> Vec<f64> {
    let total: u32 = weights.iter().sum();
    weights
        .iter()
        .map(|&w| f64::from(w) / f64::from(total))
        .collect()
}

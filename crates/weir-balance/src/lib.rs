//! Load-balancing policies behind one [`Balancer`] trait.
//!
//! A balancer is built from a cluster's endpoint list whenever that list changes (off the hot
//! path) and then answers [`Balancer::pick`] per request with `&self`, using only atomics and a
//! per-thread RNG — no locks. Live per-endpoint load (in-flight requests, health) comes from the
//! shared [`weir_core::EndpointState`], so it survives rebuilds.
//!
//! Policies available now: [`RoundRobin`] (smooth weighted, nginx's algorithm), [`Random`]
//! (weighted) and [`LeastRequest`] (power of two choices, weighted). The rest of the suite
//! (peak EWMA, ring hash, Maglev, bounded load) arrives behind the same trait.

mod least_request;
mod random;
mod rng;
mod round_robin;

use std::fmt;
use std::sync::Arc;

use weir_config::LbPolicyConfig;
use weir_core::Endpoint;

pub use least_request::LeastRequest;
pub use random::Random;
pub use round_robin::RoundRobin;

/// Per-request input to a pick.
#[derive(Debug, Clone, Copy, Default)]
pub struct PickContext {
    /// A request hash for hashing policies; ignored by the others.
    pub hash: Option<u64>,
    /// 0 for the first try, 1.. for retries; policies may use it to avoid the same endpoint.
    pub attempt: u32,
}

/// Chooses one endpoint of a cluster for each request.
pub trait Balancer: Send + Sync + fmt::Debug {
    /// The index (into the endpoint slice the balancer was built from) of the chosen endpoint,
    /// or `None` when no endpoint is healthy.
    fn pick(&self, ctx: &PickContext) -> Option<usize>;
}

/// Builds the balancer for `policy` over `endpoints`. Call when the endpoint set changes.
pub fn build(policy: LbPolicyConfig, endpoints: &[Arc<Endpoint>]) -> Box<dyn Balancer> {
    match policy {
        LbPolicyConfig::RoundRobin => Box::new(RoundRobin::new(endpoints)),
        LbPolicyConfig::Random => Box::new(Random::new(endpoints)),
        LbPolicyConfig::LeastRequest => Box::new(LeastRequest::new(endpoints)),
    }
}

/// Index of the first healthy endpoint at or after `start` (wrapping), if any.
fn next_healthy(endpoints: &[Arc<Endpoint>], start: usize) -> Option<usize> {
    let n = endpoints.len();
    (0..n)
        .map(|i| (start + i) % n)
        .find(|&i| endpoints[i].state.is_healthy())
}

#[cfg(test)]
mod test_util;

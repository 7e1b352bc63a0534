//! Load-balancing policies behind one [`Balancer`] trait.
//!
//! A balancer is built from a cluster's endpoint list whenever that list changes (off the hot
//! path: tables are computed here) and then answers [`Balancer::pick`] per request with `&self`,
//! using only atomics — no locks. Live per-endpoint load (in-flight requests, health, latency)
//! comes from the shared [`weir_core::EndpointState`], so it survives rebuilds.
//!
//! The crate is sans-io: all time comes from the injected [`weir_core::Clock`] and all
//! randomness from the injected [`RandomSource`] (see [`BuildContext`]), so every policy can be
//! run in a deterministic simulation. Policies: [`RoundRobin`] (smooth weighted, nginx),
//! [`Random`] (weighted), [`LeastRequest`] (P2C or full scan, weighted), [`PeakEwma`]
//! (latency-aware, Finagle/linkerd/tower), [`RingHash`] (ketama) and [`Maglev`] (Eisenbud et
//! al., NSDI 2016); the hashing ones optionally with bounded loads (Mirrokni, Thorup,
//! Zadimoghaddam, SODA 2018). Slow start and the panic threshold apply across policies.
//! `docs/load-balancing.md` describes them for operators.

mod explain;
mod hashing;
mod least_request;
mod maglev;
mod members;
mod peak_ewma;
mod random;
mod ring_hash;
mod rng;
mod round_robin;
mod sampling;
mod slow_start;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use weir_config::{ClusterConfig, LbPolicyConfig, SlowStartConfig};
use weir_core::{Clock, Endpoint};

pub use explain::{Candidate, Excluded, Explanation};
pub use least_request::LeastRequest;
pub use maglev::Maglev;
pub use members::eligible_endpoints;
pub use peak_ewma::PeakEwma;
pub use random::Random;
pub use ring_hash::RingHash;
pub use rng::{SeededRandom, ThreadRandom};
pub use round_robin::RoundRobin;

/// Per-request input to a pick.
#[derive(Debug, Clone, Copy, Default)]
pub struct PickContext {
    /// The request's hash for hashing policies (from the cluster's `hash_key`); `None` when the
    /// key is absent from the request, in which case hashing policies pick at random.
    pub hash: Option<u64>,
    /// 0 for the first try, 1.. for retries; policies may use it to avoid the same endpoint.
    pub attempt: u32,
}

/// How an exchange with an endpoint ended, as latency-aware policies need to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response that says the endpoint is working (any status but 5xx/429).
    Success,
    /// A 5xx, a reset or a connect failure: the endpoint is not working well.
    Failure,
    /// A 429 or 503 asking for less traffic, with the `Retry-After` delay when given.
    Overloaded {
        /// How long the endpoint asked to be left alone.
        retry_after: Option<Duration>,
    },
}

/// One finished exchange: how long until response headers, and how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    /// Time from sending the request to receiving response headers (or failing).
    pub rtt: Duration,
    /// How it ended.
    pub outcome: Outcome,
}

/// Chooses one endpoint of a cluster for each request.
pub trait Balancer: Send + Sync + fmt::Debug {
    /// The index (into the endpoint slice the balancer was built from) of the chosen endpoint,
    /// or `None` when no endpoint may take traffic.
    fn pick(&self, ctx: &PickContext) -> Option<usize>;

    /// Reports how an exchange with endpoint `endpoint` went. Policies that learn from results
    /// (peak EWMA) update the endpoint's [`weir_core::EndpointState`]; others ignore it.
    fn observe(&self, endpoint: usize, observation: &Observation) {
        let _ = (endpoint, observation);
    }

    /// Forces the policy to recompute what it derives from endpoints' health (eligible set,
    /// panic state, tables). Optional: every pick notices a changed
    /// [`weir_core::health_generation`] and recomputes by itself.
    fn health_changed(&self) {}

    /// Why `picked` was the answer to `ctx`: the policy, candidates and scores, exclusions.
    /// Off the hot path (only for a requested decision record); reads live state after the
    /// pick, so it is best effort under concurrent traffic. The default names no policy.
    fn explain(&self, ctx: &PickContext, picked: usize) -> Explanation {
        let _ = ctx;
        Explanation::new("custom", picked)
    }

    /// Picks and explains in one go, so policies that sample candidates report the ones they
    /// really compared. Same distribution as [`Balancer::pick`]; slower, so used only when the
    /// decision record was asked for.
    fn pick_explained(&self, ctx: &PickContext) -> Option<(usize, Explanation)> {
        let picked = self.pick(ctx)?;
        Some((picked, self.explain(ctx, picked)))
    }
}

/// A source of random numbers for picks; injected so simulations are reproducible.
pub trait RandomSource: Send + Sync + fmt::Debug {
    /// A uniformly distributed `u64`.
    fn next_u64(&self) -> u64;
}

/// What a balancer is built with besides its endpoints: time and randomness.
#[derive(Debug, Clone)]
pub struct BuildContext {
    /// The clock (slow start, peak EWMA).
    pub clock: Arc<dyn Clock>,
    /// The random source (random, P2C sampling, hash fallback).
    pub random: Arc<dyn RandomSource>,
}

/// Cluster settings that apply across policies; [`CommonOptions::default`] is what a cluster
/// that sets none of them gets.
#[derive(Debug, Clone, PartialEq)]
pub struct CommonOptions {
    /// Ramp new and recovered endpoints (round robin, random, least request, peak EWMA).
    pub slow_start: Option<SlowStartConfig>,
    /// Below this percentage of healthy endpoints, ignore health; 0 never does. Default 50.
    pub panic_threshold: u32,
    /// Bounded-load factor for ring hash and Maglev; `None` leaves loads unbounded.
    pub hash_balance_factor: Option<f64>,
}

// === impl CommonOptions ===

impl Default for CommonOptions {
    fn default() -> Self {
        Self {
            slow_start: None,
            panic_threshold: 50,
            hash_balance_factor: None,
        }
    }
}

impl CommonOptions {
    /// The cross-policy settings of `cluster`.
    pub fn from_cluster(cluster: &ClusterConfig) -> Self {
        Self {
            slow_start: cluster.slow_start.clone(),
            panic_threshold: cluster.panic_threshold,
            hash_balance_factor: cluster.hash_balance_factor,
        }
    }
}

/// Builds the balancer that `cluster` configures over `endpoints` (which may differ from
/// `cluster.endpoints` when discovery supplies them). Call when the endpoint set changes; a
/// policy's option block falls back to its defaults when absent.
pub fn build(
    cluster: &ClusterConfig,
    endpoints: &[Arc<Endpoint>],
    ctx: &BuildContext,
) -> Box<dyn Balancer> {
    let common = CommonOptions::from_cluster(cluster);
    match cluster.lb_policy {
        LbPolicyConfig::RoundRobin => Box::new(RoundRobin::new(endpoints, ctx, &common)),
        LbPolicyConfig::Random => Box::new(Random::new(endpoints, ctx, &common)),
        LbPolicyConfig::LeastRequest => Box::new(LeastRequest::new(
            endpoints,
            ctx,
            &common,
            &cluster.least_request.clone().unwrap_or_default(),
        )),
        LbPolicyConfig::PeakEwma => Box::new(PeakEwma::new(
            endpoints,
            ctx,
            &common,
            &cluster.peak_ewma.clone().unwrap_or_default(),
        )),
        LbPolicyConfig::RingHash => Box::new(RingHash::new(
            endpoints,
            ctx,
            &common,
            &cluster.ring_hash.clone().unwrap_or_default(),
        )),
        LbPolicyConfig::Maglev => Box::new(Maglev::new(
            endpoints,
            ctx,
            &common,
            &cluster.maglev.clone().unwrap_or_default(),
        )),
    }
}

#[cfg(test)]
mod test_util;
#[cfg(test)]
mod tests;

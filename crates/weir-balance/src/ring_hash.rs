//! Consistent hashing on a ketama-style ring.
//!
//! Karger et al., "Consistent Hashing and Random Trees" (STOC 1997), in the form memcached's
//! libketama made common: every endpoint puts points on a 64-bit circle (here `xxh3(address,
//! replica)`), in number proportional to its weight so that all points together are about
//! `table_size`; a key belongs to the first point at or after its hash. Removing an endpoint only
//! moves the keys on its own arcs; its neighbours absorb them. Like Envoy's ring, the point
//! count per endpoint is rescaled to keep the total near `table_size`, so a membership change
//! also adds or drops a few points of the remaining endpoints and moves a few more keys than
//! the ideal 1/N.
//!
//! Ring size: `table_size` is a minimum. The lightest endpoint gets at least
//! [`MIN_POINTS_LIGHTEST`] points and every other endpoint proportionally more, so the ring has
//! `max(table_size, MIN_POINTS_LIGHTEST × Σw / w_min)` points, capped at [`MAX_RING_SIZE`]
//! (8,388,608, Envoy's maximum; at the cap the lightest may get fewer, never fewer than one).
//! Without this, 10,000 endpoints on a 1024-point ring all got one point and weights were
//! lost. The trade-off is memory and build time: 12 bytes a point, e.g. 10,000 endpoints of
//! weights 1 and 100 (half each) make 2.02 M points, ~24 MB, and a build of a fraction of a
//! second; lower weight ratios cost proportionally less.
//!
//! Accuracy of shares grows with points per endpoint (relative spread ≈ 1/√points): 1024 points
//! (the default) over 10 endpoints gives each ±10 % of its share; 64Ki points gives ±1 %.
//! Lookups are a binary search (O(log points)); Maglev is O(1) with better balance but moves
//! more keys on change.
//!
//! An ineligible endpoint's keys walk forward to the next eligible point; with a bounded load
//! ([`crate::hashing`]) full endpoints are walked past too. Without a hash the key is random,
//! which lands on endpoints in proportion to their arcs, i.e. their weights.

use std::sync::Arc;

use weir_config::RingHashConfig;
use weir_core::Endpoint;

use crate::explain::{self, Explanation};
use crate::hashing::{self, BoundedLoad, MAX_WALK};
use crate::members::{Members, Needs};
use crate::{Balancer, BuildContext, CommonOptions, PickContext};

/// Points the lightest endpoint gets at least (unless the ring would exceed the maximum).
pub(crate) const MIN_POINTS_LIGHTEST: u64 = 4;

/// The most points a ring may have (Envoy's `maximum_ring_size` default).
pub(crate) const MAX_RING_SIZE: u64 = 8_388_608;

/// Consistent hashing on a sorted ring of points.
#[derive(Debug)]
pub struct RingHash {
    members: Members,
    /// Point hashes, ascending.
    hashes: Vec<u64>,
    /// The endpoint owning each point.
    owners: Vec<u32>,
    bound: Option<BoundedLoad>,
}

// === impl RingHash ===

impl RingHash {
    /// Builds the ring for `endpoints` with about `config.table_size` points.
    pub fn new(
        endpoints: &[Arc<Endpoint>],
        ctx: &BuildContext,
        options: &CommonOptions,
        config: &RingHashConfig,
    ) -> Self {
        let members = Members::new(endpoints, ctx, options, Needs::default());
        let (hashes, owners) = build_ring(endpoints, config.table_size);
        let bound = BoundedLoad::new(options.hash_balance_factor, &members);
        Self {
            members,
            hashes,
            owners,
            bound,
        }
    }

    /// Number of points on the ring.
    pub fn points(&self) -> usize {
        self.hashes.len()
    }
}

impl Balancer for RingHash {
    fn pick(&self, ctx: &PickContext) -> Option<usize> {
        let len = self.hashes.len();
        if len == 0 {
            return None;
        }
        let key = hashing::pick_key(ctx, &self.members);
        let at = self.hashes.partition_point(|&h| h < key);
        let at = if at == len { 0 } else { at };
        let walk = (0..len.min(MAX_WALK)).map(|k| self.owners[(at + k) % len] as usize);
        hashing::choose(
            &self.members,
            &self.members.view(),
            self.bound.as_ref(),
            walk,
            self.owners[at] as usize,
        )
    }

    fn explain(&self, ctx: &PickContext, picked: usize) -> Explanation {
        let mut e = Explanation::of("ring_hash", picked, &self.members);
        e.hash = ctx.hash;
        let len = self.hashes.len();
        match hashing::known_key(ctx) {
            Some(key) if len > 0 => {
                let at = self.hashes.partition_point(|&h| h < key);
                let at = if at == len { 0 } else { at };
                let walk = (0..len.min(MAX_WALK)).map(|k| self.owners[(at + k) % len] as usize);
                explain::walked(&mut e, &self.members, walk);
            }
            _ => e.note = Some("no hash key in the request: a random point"),
        }
        e
    }

    fn health_changed(&self) {
        self.members.refresh();
        if let Some(bound) = &self.bound {
            bound.refresh(&self.members, &self.members.view());
        }
    }
}

/// The sorted points of `endpoints`: each gets `max(1, round(weight × size / Σweight))`, where
/// `size = min(max(table_size, MIN_POINTS_LIGHTEST × Σw / w_min), MAX_RING_SIZE)`.
fn build_ring(endpoints: &[Arc<Endpoint>], table_size: u32) -> (Vec<u64>, Vec<u32>) {
    let total_weight: u64 = endpoints.iter().map(|e| u64::from(e.weight.max(1))).sum();
    if total_weight == 0 {
        return (Vec::new(), Vec::new());
    }
    let min_weight = endpoints
        .iter()
        .map(|e| u64::from(e.weight.max(1)))
        .min()
        .unwrap_or(1);
    let wanted = (MIN_POINTS_LIGHTEST * total_weight).div_ceil(min_weight);
    let size = wanted
        .max(u64::from(table_size.max(1)))
        .min(MAX_RING_SIZE.max(u64::from(table_size)));
    let per_weight = size as f64 / total_weight as f64;
    let mut points: Vec<(u64, u32)> = Vec::with_capacity(size as usize + endpoints.len());
    for (i, e) in endpoints.iter().enumerate() {
        let count = ((f64::from(e.weight.max(1)) * per_weight).round() as u64).max(1);
        points
            .extend((0..count).map(|replica| (hashing::point_hash(&e.address, replica), i as u32)));
    }
    points.sort_unstable();
    points.into_iter().unzip()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{assert_shares_close, context, endpoints, hashed_shares, weight_shares};

    fn ring(eps: &[Arc<Endpoint>], table_size: u32) -> RingHash {
        RingHash::new(
            eps,
            &context(2),
            &CommonOptions::default(),
            &RingHashConfig { table_size },
        )
    }

    #[test]
    fn points_follow_weights_and_every_endpoint_has_one() {
        let eps = endpoints(&[1, 2, 3, 4]);
        let r = ring(&eps, 1000);
        assert_eq!(r.points(), 1000);
        let count = |i: u32| r.owners.iter().filter(|&&o| o == i).count();
        assert_eq!((count(0), count(3)), (100, 400));
        assert!(r.hashes.windows(2).all(|w| w[0] <= w[1]));
        // The lightest endpoint gets MIN_POINTS_LIGHTEST points; the ring grows to keep ratios.
        let r = ring(&endpoints(&[1, 1_000]), 64);
        assert_eq!(r.owners.iter().filter(|&&o| o == 0).count(), 4);
        assert_eq!(r.owners.iter().filter(|&&o| o == 1).count(), 4_000);
    }

    #[test]
    fn points_of_different_endpoints_do_not_collide() {
        // Point hashes once used the replica number as xxh3's seed, which for short inputs is
        // XORed into the input: address and replica bits cancelled and ~10,000 of 2 M points
        // collided, the lower index taking the whole arc.
        let weights: Vec<u32> = (0..2_000)
            .map(|i| if i % 2 == 0 { 1 } else { 100 })
            .collect();
        let (hashes, _) = build_ring(&endpoints(&weights), 1024);
        assert_eq!(hashes.windows(2).filter(|w| w[0] == w[1]).count(), 0);
    }

    #[test]
    fn ten_thousand_endpoints_keep_their_weights() {
        // Before: every endpoint got 1 point of a 1024-point ring and weights 1 and 100 took
        // equal shares. Half of the endpoints weigh 1, half 100: the light half should get
        // 5,000 / 505,000 ≈ 0.99 % of keys. Its points are 4 per endpoint, 20,000 in all, so
        // the arcs' sum is accurate to ~1/√20,000 ≈ 0.7 %; 200,000 keys expect ~1,980 light
        // picks with a standard deviation of ~44. ±15 % (~300, ≈ 7σ) leaves room for both and
        // still fails by a factor of 50 on the old behaviour (50 % light).
        let weights: Vec<u32> = (0..10_000)
            .map(|i| if i % 2 == 0 { 1 } else { 100 })
            .collect();
        let eps = endpoints(&weights);
        let r = ring(&eps, 1024);
        assert_eq!(r.points(), 4 * 505_000);
        let got = hashed_shares(&r, eps.len(), 200_000, 9);
        let light: usize = got.iter().step_by(2).sum();
        let want = 200_000.0 * 5_000.0 / 505_000.0;
        assert!(
            (light as f64 - want).abs() <= 0.15 * want,
            "light share {light}, want ≈ {want:.0}"
        );
    }

    #[test]
    fn same_key_same_endpoint_and_unhealthy_walks_on() {
        let eps = endpoints(&[1; 5]);
        let r = ring(&eps, 1024);
        let ctx = PickContext {
            hash: Some(42),
            attempt: 0,
        };
        let first = r.pick(&ctx).unwrap();
        assert!((0..10).all(|_| r.pick(&ctx) == Some(first)));
        eps[first].state.set_healthy(false, 0);
        let moved = r.pick(&ctx).unwrap();
        assert_ne!(moved, first);
        assert!((0..10).all(|_| r.pick(&ctx) == Some(moved)));
    }

    #[test]
    fn no_hash_is_weighted_random_and_empty_is_none() {
        let eps = endpoints(&[1, 3]);
        let r = ring(&eps, 65_536);
        let got = crate::test_util::shares(&r, 2, 20_000);
        assert_shares_close(&got, &weight_shares(&[1, 3]), 0.02);
        let got = hashed_shares(&r, 2, 20_000, 4);
        assert_shares_close(&got, &weight_shares(&[1, 3]), 0.02);
        assert_eq!(ring(&[], 1024).pick(&PickContext::default()), None);
    }
}

//! What ring hash and Maglev share: the pick key, endpoint address hashing, and bounded loads.
//!
//! Bounded loads (Mirrokni, Thorup, Zadimoghaddam, "Consistent Hashing with Bounded Loads",
//! SODA 2018): consistent hashing sends every request for a hot key to one endpoint. With a
//! balance factor `c ≥ 1`, no endpoint may hold more than `⌈c × (m + 1) × w_i / W⌉` of the `m`
//! requests in flight over the eligible endpoints, `w_i` being its weight and `W` the eligible
//! endpoints' total weight (the paper's `⌈c(m+1)/n⌉` scaled by weight, as Envoy does); a key whose
//! endpoint is full walks on (along the ring,
//! or along its Maglev probe sequence) to the first endpoint with room. Keys keep their
//! endpoint while it has room, and move deterministically when it does not.
//!
//! The total `m` must be cheap to know, and the balancer cannot see requests end (the proxy
//! drops its [`weir_core::InFlightGuard`]s; a counter of our own would only ever grow). Summing
//! `in_flight` over the endpoints is exact but O(n); we cache the sum and let each pick refresh
//! it with probability `1 / max(1, n/8)`, drawn from the injected random source, so no shared
//! counter is written per pick. Amortised cost: ~8 counter reads
//! per pick at any size; small clusters (n < 16) refresh on every pick and are exact. Between
//! refreshes at most about n/8 requests start, which moves the mean by at most 1/8 of a request,
//! so the capacity is off by at most one. If a stale (low) capacity leaves no endpoint with room
//! the walk ends and the least loaded eligible endpoint is taken: the bound is a soft one. `m`
//! and `W` count only eligible endpoints (the current [`crate::members::View`]), so requests
//! still finishing on a down endpoint do not raise everyone's capacity.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::PickContext;
use crate::members::{Members, View};
use crate::rng;

/// How many positions a walk (ring points, Maglev probes) visits before scanning endpoints.
pub(crate) const MAX_WALK: usize = 64;

/// Bounded-load state of one hashing balancer.
#[derive(Debug)]
pub(crate) struct BoundedLoad {
    factor: f64,
    total_in_flight: AtomicU64,
    /// A pick refreshes the cached total with probability `1 / refresh_every`.
    refresh_every: u64,
}

// === impl BoundedLoad ===

impl BoundedLoad {
    /// The bound for `factor` (none when unset or not finite ≥ 1) over `members`.
    pub(crate) fn new(factor: Option<f64>, members: &Members) -> Option<Self> {
        let factor = factor.filter(|f| f.is_finite() && *f >= 1.0)?;
        let bound = Self {
            factor,
            total_in_flight: AtomicU64::new(0),
            refresh_every: (members.len() as u64 / 8).max(1),
        };
        bound.refresh(members, &members.view());
        Some(bound)
    }

    /// Recomputes the cached in-flight total over `view`'s eligible endpoints; O(n).
    pub(crate) fn refresh(&self, members: &Members, view: &View) -> u64 {
        let total = view
            .eligible
            .iter()
            .map(|&i| members.get(i as usize).state.in_flight())
            .sum();
        self.total_in_flight.store(total, Ordering::Relaxed);
        total
    }

    /// This pick's capacity per unit of weight, `factor × (m + 1) / W`; endpoint `i` may hold
    /// `capacity(per_weight, w_i)` requests.
    pub(crate) fn per_weight(&self, members: &Members, view: &View) -> f64 {
        let total =
            if self.refresh_every == 1 || members.next_u64().is_multiple_of(self.refresh_every) {
                self.refresh(members, view)
            } else {
                self.total_in_flight.load(Ordering::Relaxed)
            };
        self.factor * (total + 1) as f64 / view.eligible_weight.max(1) as f64
    }
}

/// The most requests an endpoint of `weight` may hold: `⌈per_weight × weight⌉`, at least 1.
fn capacity(per_weight: f64, weight: u32) -> u64 {
    ((per_weight * f64::from(weight)).ceil() as u64).max(1)
}

/// The position a pick hashes to: the request's hash, re-mixed (a weak hash still spreads),
/// salted by the retry attempt so a retry lands elsewhere; a random key without a hash.
pub(crate) fn pick_key(ctx: &PickContext, members: &Members) -> u64 {
    let key = match ctx.hash {
        Some(h) => rng::mix64(h),
        None => members.next_u64(),
    };
    match ctx.attempt {
        0 => key,
        a => rng::rehash(key, u64::from(a) << 32),
    }
}

/// The key [`pick_key`] derives when the request has a hash; `None` when it drew a random one.
pub(crate) fn known_key(ctx: &PickContext) -> Option<u64> {
    let key = rng::mix64(ctx.hash?);
    Some(match ctx.attempt {
        0 => key,
        a => rng::rehash(key, u64::from(a) << 32),
    })
}

/// A 64-bit hash of an endpoint's address (IP bytes and port) with `seed`: placement depends
/// on the address only, so it survives reordering and rebuilds.
pub(crate) fn address_hash(address: &SocketAddr, seed: u64) -> u64 {
    let mut bytes = [0u8; 18];
    let len = address_bytes(address, &mut bytes);
    xxh3_64_with_seed(&bytes[..len], seed)
}

/// The hash of ring point `replica` of the endpoint at `address`: the address bytes followed by
/// the replica number, under one fixed seed. (Using the replica as the seed collided: for
/// short inputs xxh3 XORs the seed into the input, so address and replica bits cancelled.)
pub(crate) fn point_hash(address: &SocketAddr, replica: u64) -> u64 {
    let mut bytes = [0u8; 26];
    let len = address_bytes(address, &mut bytes);
    bytes[len..len + 8].copy_from_slice(&replica.to_le_bytes());
    xxh3_64_with_seed(&bytes[..len + 8], POINT_SEED)
}

/// Writes the IP octets and the big-endian port of `address` to the start of `out` (at least
/// 18 bytes) and returns how many bytes that took: 6 for IPv4, 18 for IPv6.
fn address_bytes(address: &SocketAddr, out: &mut [u8]) -> usize {
    match address {
        SocketAddr::V4(a) => {
            out[..4].copy_from_slice(&a.ip().octets());
            out[4..6].copy_from_slice(&a.port().to_be_bytes());
            6
        }
        SocketAddr::V6(a) => {
            out[..16].copy_from_slice(&a.ip().octets());
            out[16..18].copy_from_slice(&a.port().to_be_bytes());
            18
        }
    }
}

/// Seed of ring point hashes.
const POINT_SEED: u64 = 0x7269_6e67_6861_7368;

/// The first of `candidates` (endpoint indices in walk order) that is eligible and, with a
/// bound, below capacity. If the walk finds none, every endpoint is scanned from `start`; if
/// all are full, the least loaded eligible one is taken. `None` only when nothing is eligible.
pub(crate) fn choose(
    members: &Members,
    view: &View,
    bound: Option<&BoundedLoad>,
    candidates: impl Iterator<Item = usize>,
    start: usize,
) -> Option<usize> {
    let per_weight = bound.map(|b| b.per_weight(members, view));
    let has_room = |i: usize| {
        let m = members.get(i);
        members.eligible(view, i)
            && per_weight.is_none_or(|p| m.state.in_flight() < capacity(p, m.weight))
    };
    for i in candidates {
        if has_room(i) {
            return Some(i);
        }
    }
    let n = members.len();
    if let Some(i) = (0..n).map(|k| (start + k) % n).find(|&i| has_room(i)) {
        return Some(i);
    }
    per_weight?;
    // All full: the least loaded relative to weight (in_flight / w, compared exactly).
    (0..n)
        .map(|k| (start + k) % n)
        .filter(|&i| members.eligible(view, i))
        .min_by(|&a, &b| {
            let (ma, mb) = (members.get(a), members.get(b));
            (u128::from(ma.state.in_flight()) * u128::from(mb.weight))
                .cmp(&(u128::from(mb.state.in_flight()) * u128::from(ma.weight)))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CommonOptions;
    use crate::members::Needs;
    use crate::test_util::{context, endpoints};

    #[test]
    fn capacity_follows_the_mean() {
        let eps = endpoints(&[1; 4]);
        let members = Members::new(
            &eps,
            &context(1),
            &CommonOptions::default(),
            Needs::default(),
        );
        let bound = BoundedLoad::new(Some(1.25), &members).unwrap();
        let cap = |b: &BoundedLoad| capacity(b.per_weight(&members, &members.view()), 1);
        assert_eq!(cap(&bound), 1, "⌈1.25 × 1 / 4⌉");
        let _g: Vec<_> = (0..99).map(|_| eps[0].state.begin_request()).collect();
        assert_eq!(cap(&bound), 32, "⌈1.25 × 100 / 4⌉");
        assert!(BoundedLoad::new(Some(0.5), &members).is_none());
        assert!(BoundedLoad::new(None, &members).is_none());
    }

    #[test]
    fn capacity_scales_with_weight_and_counts_only_eligible() {
        let eps = endpoints(&[1, 9, 10]);
        let options = CommonOptions {
            panic_threshold: 0,
            ..CommonOptions::default()
        };
        let members = Members::new(&eps, &context(1), &options, Needs::default());
        let bound = BoundedLoad::new(Some(1.0), &members).unwrap();
        // 99 in flight on endpoint 2, which then goes down: they no longer count.
        let _g: Vec<_> = (0..99).map(|_| eps[2].state.begin_request()).collect();
        let _h: Vec<_> = (0..19).map(|_| eps[1].state.begin_request()).collect();
        eps[2].state.set_healthy(false, 0);
        let view = members.view();
        let p = bound.per_weight(&members, &view);
        // m = 19 on the eligible endpoints, W = 10: 1 × 20 / 10 = 2 per unit of weight.
        assert_eq!((capacity(p, 1), capacity(p, 9)), (2, 18));
    }

    #[test]
    fn full_endpoints_are_walked_past_then_least_loaded_wins() {
        let eps = endpoints(&[1; 3]);
        let members = Members::new(
            &eps,
            &context(1),
            &CommonOptions::default(),
            Needs::default(),
        );
        let bound = BoundedLoad::new(Some(1.0), &members).unwrap();
        let _g: Vec<_> = (0..3).map(|_| eps[0].state.begin_request()).collect();
        let view = members.view();
        // Capacity ⌈4/3⌉ = 2: endpoint 0 (3 in flight) is full, 1 has room.
        let got = choose(&members, &view, Some(&bound), [0, 0, 1].into_iter(), 0);
        assert_eq!(got, Some(1));
        // No bound: the first candidate.
        assert_eq!(choose(&members, &view, None, [0].into_iter(), 0), Some(0));
    }

    #[test]
    fn address_hash_depends_on_ip_port_and_seed() {
        let a: SocketAddr = "10.0.0.1:80".parse().unwrap();
        let b: SocketAddr = "10.0.0.1:81".parse().unwrap();
        let c: SocketAddr = "[::1]:80".parse().unwrap();
        assert_ne!(address_hash(&a, 0), address_hash(&b, 0));
        assert_ne!(address_hash(&a, 0), address_hash(&a, 1));
        assert_ne!(address_hash(&a, 0), address_hash(&c, 0));
        assert_eq!(address_hash(&a, 7), address_hash(&a, 7));
    }
}

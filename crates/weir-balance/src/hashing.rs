//! What ring hash and Maglev share: the pick key, endpoint address hashing, and bounded loads.
//!
//! Bounded loads (Mirrokni, Thorup, Zadimoghaddam, "Consistent Hashing with Bounded Loads",
//! SODA 2018): consistent hashing sends every request for a hot key to one endpoint. With a
//! balance factor `c ≥ 1`, no endpoint may hold more than `⌈c × (m + 1) / n⌉` of the `m` requests
//! in flight over `n` eligible endpoints; a key whose endpoint is full walks on (along the ring,
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
//! the walk ends and the least loaded eligible endpoint is taken: the bound is a soft one. The
//! eligible count is the one kept with the panic state (recounted in `health_changed`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::PickContext;
use crate::members::Members;
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
        bound.refresh(members);
        Some(bound)
    }

    /// Recomputes the cached in-flight total; O(n).
    pub(crate) fn refresh(&self, members: &Members) -> u64 {
        let total = (0..members.len())
            .map(|i| members.get(i).state.in_flight())
            .sum();
        self.total_in_flight.store(total, Ordering::Relaxed);
        total
    }

    /// The most requests one endpoint may hold for this pick: `⌈factor × (total + 1) / n⌉`.
    pub(crate) fn capacity(&self, members: &Members) -> u64 {
        let total =
            if self.refresh_every == 1 || members.next_u64().is_multiple_of(self.refresh_every) {
                self.refresh(members)
            } else {
                self.total_in_flight.load(Ordering::Relaxed)
            };
        let eligible = members.eligible_count().max(1) as f64;
        let capacity = (self.factor * (total + 1) as f64 / eligible).ceil();
        (capacity as u64).max(1)
    }
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

/// A 64-bit hash of an endpoint's address (IP bytes and port) with `seed`: placement depends
/// on the address only, so it survives reordering and rebuilds.
pub(crate) fn address_hash(address: &SocketAddr, seed: u64) -> u64 {
    let mut bytes = [0u8; 18];
    let len = match address {
        SocketAddr::V4(a) => {
            bytes[..4].copy_from_slice(&a.ip().octets());
            bytes[4..6].copy_from_slice(&a.port().to_be_bytes());
            6
        }
        SocketAddr::V6(a) => {
            bytes[..16].copy_from_slice(&a.ip().octets());
            bytes[16..].copy_from_slice(&a.port().to_be_bytes());
            18
        }
    };
    xxh3_64_with_seed(&bytes[..len], seed)
}

/// The first of `candidates` (endpoint indices in walk order) that is eligible and, with a
/// bound, below capacity. If the walk finds none, every endpoint is scanned from `start`; if
/// all are full, the least loaded eligible one is taken. `None` only when nothing is eligible.
pub(crate) fn choose(
    members: &Members,
    bound: Option<&BoundedLoad>,
    candidates: impl Iterator<Item = usize>,
    start: usize,
) -> Option<usize> {
    let capacity = bound.map(|b| b.capacity(members));
    let has_room = |i: usize| {
        members.eligible(i) && capacity.is_none_or(|c| members.get(i).state.in_flight() < c)
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
    capacity?;
    (0..n)
        .map(|k| (start + k) % n)
        .filter(|&i| members.eligible(i))
        .min_by_key(|&i| members.get(i).state.in_flight())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CommonOptions;
    use crate::test_util::{context, endpoints};

    #[test]
    fn capacity_follows_the_mean() {
        let eps = endpoints(&[1; 4]);
        let members = Members::new(&eps, &context(1), &CommonOptions::default());
        let bound = BoundedLoad::new(Some(1.25), &members).unwrap();
        assert_eq!(bound.capacity(&members), 1, "⌈1.25 × 1 / 4⌉");
        let _g: Vec<_> = (0..99).map(|_| eps[0].state.begin_request()).collect();
        assert_eq!(bound.capacity(&members), 32, "⌈1.25 × 100 / 4⌉");
        assert!(BoundedLoad::new(Some(0.5), &members).is_none());
        assert!(BoundedLoad::new(None, &members).is_none());
    }

    #[test]
    fn full_endpoints_are_walked_past_then_least_loaded_wins() {
        let eps = endpoints(&[1; 3]);
        let members = Members::new(&eps, &context(1), &CommonOptions::default());
        let bound = BoundedLoad::new(Some(1.0), &members).unwrap();
        let _g: Vec<_> = (0..3).map(|_| eps[0].state.begin_request()).collect();
        // Capacity ⌈4/3⌉ = 2: endpoint 0 (3 in flight) is full, 1 has room.
        let got = choose(&members, Some(&bound), [0, 0, 1].into_iter(), 0);
        assert_eq!(got, Some(1));
        // No bound: the first candidate.
        assert_eq!(choose(&members, None, [0].into_iter(), 0), Some(0));
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

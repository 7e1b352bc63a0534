//! Consistent hashing with Maglev's lookup table.
//!
//! Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load Balancer" (NSDI 2016),
//! §3.4. Each endpoint derives a permutation of the `M` table slots (M prime) from its address:
//! `offset = h1(addr) mod M`, `skip = h2(addr) mod (M − 1) + 1`, slot j = `(offset + j·skip) mod
//! M`. Endpoints take turns claiming their next preferred free slot until the table is full;
//! for weights, each turn adds `weight` to an endpoint's credit and it claims a slot whenever the
//! credit reaches the largest weight (as Envoy does), so slot counts are proportional to weight
//! within one slot. A pick is one array read, `table[key mod M]`: O(1) and cache friendly, with
//! near-perfect balance, at the price of slightly more key movement on membership change than a
//! ring (the paper's trade-off; still close to the ideal 1/N).
//!
//! An ineligible endpoint's keys probe a deterministic sequence of other slots (the key rehashed
//! with salts 1, 2, …), so they spread over the other endpoints in proportion to their weights
//! while every other key stays put; with a bounded load ([`crate::hashing`]) full endpoints are
//! probed past the same way. Without a hash the key is random: weighted random by slot count.
//! The table is what the kernel data plane loads too, which is why `key mod M` is kept literal.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use weir_config::MaglevConfig;
use weir_core::Endpoint;

use crate::explain::{self, Explanation};
use crate::hashing::{self, BoundedLoad, MAX_WALK};
use crate::members::{Members, Needs};
use crate::rng;
use crate::{Balancer, BuildContext, CommonOptions, PickContext};

/// Seeds of Maglev's two address hashes (offset and skip); any two distinct values.
const OFFSET_SEED: u64 = 0x6d61_676c_6576_0001;
const SKIP_SEED: u64 = 0x6d61_676c_6576_0002;

/// Marks a slot not yet claimed while the table is built.
const EMPTY: u32 = u32::MAX;

/// Maglev consistent hashing over a prime-sized lookup table.
#[derive(Debug)]
pub struct Maglev {
    members: Members,
    /// Endpoint index per slot; empty when there are no endpoints.
    table: Vec<u32>,
    bound: Option<BoundedLoad>,
}

// === impl Maglev ===

impl Maglev {
    /// Builds the lookup table for `endpoints`; `config.table_size` should be a prime (the
    /// config validation insists) well above the endpoint count. A size that is not prime is
    /// rounded up to the next prime (the permutations need a prime to visit every slot).
    pub fn new(
        endpoints: &[Arc<Endpoint>],
        ctx: &BuildContext,
        options: &CommonOptions,
        config: &MaglevConfig,
    ) -> Self {
        let members = Members::new(endpoints, ctx, options, Needs::default());
        let table = populate(endpoints, table_size(config.table_size));
        let bound = BoundedLoad::new(options.hash_balance_factor, &members);
        Self {
            members,
            table,
            bound,
        }
    }

    /// The lookup table: the endpoint index owning each slot (for the kernel data plane).
    pub fn table(&self) -> &[u32] {
        &self.table
    }

    /// The table length used for a configured `table_size`: the smallest prime ≥ it (0 stays
    /// 0). The kernel data plane sizes its maps with it.
    pub fn table_len(table_size: u32) -> usize {
        self::table_size(table_size)
    }
}

impl Balancer for Maglev {
    fn pick(&self, ctx: &PickContext) -> Option<usize> {
        let m = self.table.len() as u64;
        if m == 0 {
            return None;
        }
        let key = hashing::pick_key(ctx, &self.members);
        let home = self.table[(key % m) as usize] as usize;
        let probes =
            (1..=MAX_WALK as u64).map(|k| self.table[(rng::rehash(key, k) % m) as usize] as usize);
        hashing::choose(
            &self.members,
            &self.members.view(),
            self.bound.as_ref(),
            std::iter::once(home).chain(probes),
            home,
        )
    }

    fn explain(&self, ctx: &PickContext, picked: usize) -> Explanation {
        let mut e = Explanation::of("maglev", picked, &self.members);
        e.hash = ctx.hash;
        let m = self.table.len() as u64;
        match hashing::known_key(ctx) {
            Some(key) if m > 0 => {
                let home = self.table[(key % m) as usize] as usize;
                let probes = (1..=MAX_WALK as u64)
                    .map(|k| self.table[(rng::rehash(key, k) % m) as usize] as usize);
                explain::walked(&mut e, &self.members, std::iter::once(home).chain(probes));
            }
            _ => e.note = Some("no hash key in the request: a random slot"),
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

/// The table size used for a configured `size`: the smallest prime ≥ `size` (0 stays 0).
fn table_size(size: u32) -> usize {
    if size == 0 {
        return 0;
    }
    let mut n = u64::from(size).max(2);
    while !is_prime(n) {
        n += 1;
    }
    n as usize
}

/// Trial division; table sizes are at most a few million, so at most ~1,500 divisions.
fn is_prime(n: u64) -> bool {
    if n < 4 {
        return n >= 2;
    }
    if n.is_multiple_of(2) {
        return false;
    }
    let mut d = 3;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 2;
    }
    true
}

/// Fills a table of `size` slots (a prime) by weighted turns over the endpoints' permutations.
///
/// Turn order: in pass p (p = 0, 1, …) endpoint i gains `w_i` credit and claims a slot when its
/// credit reaches the largest weight, so its k-th claim (k ≥ 1) falls in pass
/// `⌈k × w_max / w_i⌉ − 1`, endpoints in index order within a pass. Rather than run the passes
/// (with skewed weights most endpoints claim nothing in most passes: ~15 s for M = 5,000,011),
/// the claims are taken from a heap keyed by (pass, index): O(M log n), the same table.
fn populate(endpoints: &[Arc<Endpoint>], size: usize) -> Vec<u32> {
    if endpoints.is_empty() || size == 0 {
        return Vec::new();
    }
    let m = size as u64;
    // (next preferred slot, skip) per endpoint; slot j+1 = slot j + skip (mod m).
    let mut cursor: Vec<(u64, u64)> = endpoints
        .iter()
        .map(|e| {
            let offset = hashing::address_hash(&e.address, OFFSET_SEED) % m;
            let skip = if m > 1 {
                hashing::address_hash(&e.address, SKIP_SEED) % (m - 1) + 1
            } else {
                1
            };
            (offset, skip)
        })
        .collect();
    let weights: Vec<u64> = endpoints
        .iter()
        .map(|e| u64::from(e.weight.max(1)))
        .collect();
    let max_weight = weights.iter().copied().max().unwrap_or(1);
    let pass_of = |k: u64, w: u64| (k * max_weight).div_ceil(w) - 1;
    // (pass of the next claim, endpoint, claims made so far + 1)
    let mut heap: BinaryHeap<Reverse<(u64, u32, u64)>> = weights
        .iter()
        .enumerate()
        .map(|(i, &w)| Reverse((pass_of(1, w), i as u32, 1)))
        .collect();
    let mut table = vec![EMPTY; size];
    let mut filled = 0;
    while filled < size {
        let Some(Reverse((_, i, k))) = heap.pop() else {
            break;
        };
        let (slot, skip) = &mut cursor[i as usize];
        // The permutation visits every slot (skip < m, m prime), so a free one is found.
        while table[*slot as usize] != EMPTY {
            *slot = step(*slot, *skip, m);
        }
        table[*slot as usize] = i;
        *slot = step(*slot, *skip, m);
        filled += 1;
        heap.push(Reverse((pass_of(k + 1, weights[i as usize]), i, k + 1)));
    }
    table
}

/// `(slot + skip) mod m` for `slot, skip < m`, without a division (the build's inner loop).
fn step(slot: u64, skip: u64, m: u64) -> u64 {
    let next = slot + skip;
    if next >= m { next - m } else { next }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{context, endpoints};

    fn maglev(eps: &[Arc<Endpoint>], table_size: u32) -> Maglev {
        Maglev::new(
            eps,
            &context(3),
            &CommonOptions::default(),
            &MaglevConfig { table_size },
        )
    }

    #[test]
    fn slot_counts_follow_weights_within_one() {
        let eps = endpoints(&[1, 2, 3, 4]);
        let m = maglev(&eps, 65_537);
        let count = |i: u32| m.table().iter().filter(|&&o| o == i).count() as f64;
        for i in 0..4u32 {
            let want = 65_537.0 * f64::from(i + 1) / 10.0;
            assert!(
                (count(i) - want).abs() <= 1.0,
                "{i}: {} vs {want}",
                count(i)
            );
        }
        assert!(m.table().iter().all(|&o| o < 4));
    }

    #[test]
    fn non_prime_sizes_are_rounded_up_to_a_prime() {
        // A composite size used to loop forever: a skip sharing a factor with M never reaches
        // some free slots.
        let eps = endpoints(&[1, 2, 3]);
        for (asked, used) in [(1_000, 1_009), (65_536, 65_537), (1, 2), (4, 5), (7, 7)] {
            let m = maglev(&eps, asked);
            assert_eq!(m.table().len(), used, "{asked}");
            assert!(m.table().iter().all(|&o| o < 3));
        }
        assert!(is_prime(5_000_011) && !is_prime(5_000_013 * 3));
    }

    #[test]
    fn heap_population_matches_the_pass_loop() {
        // The straightforward pass loop the heap replaces, for a skewed weight set.
        let eps = endpoints(&[1, 7, 3, 7, 2, 1, 5]);
        let m = 1_009u64;
        let weights: Vec<u64> = eps.iter().map(|e| u64::from(e.weight)).collect();
        let max_weight = 7;
        let mut cursor: Vec<(u64, u64)> = eps
            .iter()
            .map(|e| {
                let offset = hashing::address_hash(&e.address, OFFSET_SEED) % m;
                (
                    offset,
                    hashing::address_hash(&e.address, SKIP_SEED) % (m - 1) + 1,
                )
            })
            .collect();
        let mut credit = vec![0u64; eps.len()];
        let mut table = vec![EMPTY; m as usize];
        let mut filled = 0;
        'passes: while filled < m {
            for (i, (&w, (slot, skip))) in weights.iter().zip(cursor.iter_mut()).enumerate() {
                credit[i] += w;
                if credit[i] < max_weight {
                    continue;
                }
                credit[i] -= max_weight;
                while table[*slot as usize] != EMPTY {
                    *slot = step(*slot, *skip, m);
                }
                table[*slot as usize] = i as u32;
                *slot = step(*slot, *skip, m);
                filled += 1;
                if filled == m {
                    break 'passes;
                }
            }
        }
        assert_eq!(populate(&eps, m as usize), table);
    }

    #[test]
    fn more_endpoints_than_slots_still_fills_the_table() {
        let eps = endpoints(&[1; 20]);
        let m = maglev(&eps, 7);
        assert_eq!(m.table().len(), 7);
        assert!(m.table().iter().all(|&o| o < 20));
        assert_eq!(maglev(&[], 7).pick(&PickContext::default()), None);
    }

    #[test]
    fn unhealthy_keys_move_and_the_rest_stay() {
        let eps = endpoints(&[1; 5]);
        let m = maglev(&eps, 251);
        let before: Vec<_> = (0..2_000u64)
            .map(|h| {
                m.pick(&PickContext {
                    hash: Some(h),
                    attempt: 0,
                })
                .unwrap()
            })
            .collect();
        eps[2].state.set_healthy(false, 0);
        for (h, &was) in (0..2_000u64).zip(&before) {
            let now = m
                .pick(&PickContext {
                    hash: Some(h),
                    attempt: 0,
                })
                .unwrap();
            assert_ne!(now, 2);
            if was != 2 {
                assert_eq!(now, was, "key {h} moved off a healthy endpoint");
            }
        }
        let retry = PickContext {
            hash: Some(7),
            attempt: 1,
        };
        assert!(m.pick(&retry).is_some());
    }
}

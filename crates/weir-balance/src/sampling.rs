//! O(1) weighted sampling with Walker's alias method.
//!
//! Random, least request and peak EWMA draw candidates in proportion to endpoint weights. A
//! cumulative table needs a binary search per draw (14 dependent cache misses at 10,000
//! endpoints); the alias table (Walker, "An Efficient Method for Generating Discrete Random
//! Variables with General Distributions", ACM TOMS 1977; built with Vose's linear-time method,
//! IEEE TSE 1991) needs one slot read. Thresholds are exact integers, so shares are exact.

use crate::rng;

/// A weighted index sampler built once per endpoint set.
#[derive(Debug)]
pub(crate) struct WeightedIndex {
    n: usize,
    /// Empty when all weights are equal: a uniform draw is cheaper and exact.
    slots: Vec<Slot>,
}

/// One alias-table column: keep the column's own index when the fraction is below `threshold`,
/// else take `alias`.
#[derive(Debug, Clone, Copy)]
struct Slot {
    threshold: u64,
    alias: u32,
}

// === impl WeightedIndex ===

impl WeightedIndex {
    /// Builds the alias table for `weights` (each ≥ 1).
    pub(crate) fn new(weights: &[u32]) -> Self {
        let n = weights.len();
        if weights.windows(2).all(|w| w[0] == w[1]) {
            return Self {
                n,
                slots: Vec::new(),
            };
        }
        // Column i holds w_i·n units of probability mass against a capacity of W = Σw.
        let total: u128 = weights.iter().map(|&w| u128::from(w.max(1))).sum();
        let mut mass: Vec<u128> = weights
            .iter()
            .map(|&w| u128::from(w.max(1)) * n as u128)
            .collect();
        let mut slots: Vec<Slot> = (0..n)
            .map(|i| Slot {
                threshold: u64::MAX,
                alias: i as u32,
            })
            .collect();
        let (mut small, mut large): (Vec<usize>, Vec<usize>) =
            (0..n).partition(|&i| mass[i] < total);
        while let (Some(s), Some(&l)) = (small.pop(), large.last()) {
            // Column s keeps its own mass and borrows the rest of its capacity from l.
            slots[s] = Slot {
                threshold: ((mass[s] << 64) / total) as u64,
                alias: l as u32,
            };
            mass[l] -= total - mass[s];
            if mass[l] < total {
                large.pop();
                small.push(l);
            }
        }
        Self { n, slots }
    }

    /// The index that the uniform `x` selects.
    pub(crate) fn sample(&self, x: u64) -> usize {
        if self.slots.is_empty() {
            return rng::below(x, self.n);
        }
        // The high half of x·n picks the column; the low half is a uniform fraction within it.
        let product = u128::from(x) * self.n as u128;
        let column = (product >> 64) as usize;
        let slot = self.slots[column];
        if (product as u64) < slot.threshold {
            column
        } else {
            slot.alias as usize
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{RandomSource, SeededRandom};

    fn counts(weights: &[u32], draws: usize) -> Vec<usize> {
        let w = WeightedIndex::new(weights);
        let r = SeededRandom::new(3);
        let mut c = vec![0; weights.len()];
        for _ in 0..draws {
            c[w.sample(r.next_u64())] += 1;
        }
        c
    }

    #[test]
    fn shares_follow_weights() {
        let c = counts(&[1, 2, 3, 4], 100_000);
        for (i, &x) in c.iter().enumerate() {
            let want = (i + 1) as f64 / 10.0;
            assert!((x as f64 / 100_000.0 - want).abs() < 0.01, "{c:?}");
        }
    }

    #[test]
    fn extreme_weights_and_uniform() {
        let c = counts(&[1, 1_000_000], 10_000);
        assert!(c[0] < 10, "{c:?}");
        let c = counts(&[5, 5, 5], 30_000);
        assert!(c.iter().all(|&x| (9_000..11_000).contains(&x)), "{c:?}");
        assert_eq!(counts(&[9], 10), vec![10]);
    }

    #[test]
    fn thresholds_are_exact_for_two_to_one() {
        // Weights 2,1 over 2 columns: column 1 holds 2/3 of its capacity, the rest aliases to 0.
        let w = WeightedIndex::new(&[2, 1]);
        assert_eq!(w.slots[1].alias, 0);
        assert_eq!(w.slots[1].threshold, ((2u128 << 64) / 3) as u64);
        assert_eq!(w.slots[0].threshold, u64::MAX);
    }
}

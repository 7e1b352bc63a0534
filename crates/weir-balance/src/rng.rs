//! Random numbers for picks: the injected sources and the small arithmetic on top of them.
//!
//! Policies never own a generator; they draw from the [`RandomSource`] in their
//! [`crate::BuildContext`], so a simulation run with [`SeededRandom`] is exactly reproducible
//! while production uses [`ThreadRandom`] (a per-thread SplitMix64 seeded from the OS: no
//! shared state, no contention, ~1 ns a number). Turning a `u64` into a bounded integer uses Lemire's multiply-shift ("Fast
//! Random Integer Generation in an Interval", ACM TOMACS 2019) instead of a division.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::RandomSource;

thread_local! {
    /// This thread's SplitMix64 state; 0 until first use, then seeded from the OS.
    static STATE: Cell<u64> = const { Cell::new(0) };
}

/// SplitMix64's increment, the golden-ratio "gamma" (Steele, Lea, Flood, OOPSLA 2014).
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// The production random source: a fast per-thread generator, no shared state.
#[derive(Debug, Default, Clone, Copy)]
pub struct ThreadRandom;

/// A reproducible, lock-free random source for tests and simulations: SplitMix64 over an atomic
/// counter, so a given seed and pick order always give the same numbers.
#[derive(Debug)]
pub struct SeededRandom {
    state: AtomicU64,
}

/// A tiny SplitMix64 generator owned by one pick, seeded from the injected source; used where a
/// pick needs many numbers (a full scan's tie-breaks) without a virtual call for each.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LocalRng(u64);

// === impl ThreadRandom ===

impl RandomSource for ThreadRandom {
    fn next_u64(&self) -> u64 {
        // A `Cell` with a const initialiser: no lazy-init check and no borrow flag per draw.
        STATE.with(|state| {
            let mut s = state.get();
            if s == 0 {
                s = rand::random::<u64>() | 1;
            }
            s = s.wrapping_add(GAMMA);
            state.set(s);
            mix64(s)
        })
    }
}

// === impl SeededRandom ===

impl SeededRandom {
    /// A source starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            state: AtomicU64::new(seed),
        }
    }
}

impl RandomSource for SeededRandom {
    fn next_u64(&self) -> u64 {
        mix64(
            self.state
                .fetch_add(GAMMA, Ordering::Relaxed)
                .wrapping_add(GAMMA),
        )
    }
}

// === impl LocalRng ===

impl LocalRng {
    /// A generator continuing from `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next uniform `u64`.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GAMMA);
        mix64(self.0)
    }
}

/// Maps a uniform `x` to `0..n` by multiply-shift (`n` > 0): no division, bias below n/2^64.
pub(crate) fn below(x: u64, n: usize) -> usize {
    ((u128::from(x) * n as u128) >> 64) as usize
}

/// Maps a uniform `x` to `[0, 1)` using its top 53 bits.
pub(crate) fn unit(x: u64) -> f64 {
    (x >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// SplitMix64's finaliser: a bijective mix, so distinct inputs stay distinct and nearby inputs
/// (small integers, a weak request hash) spread over the whole range.
pub(crate) fn mix64(x: u64) -> u64 {
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The `k`-th (k ≥ 1) salted rehash of `hash`: a deterministic probe sequence per key.
pub(crate) fn rehash(hash: u64, k: u64) -> u64 {
    mix64(hash ^ k.wrapping_mul(GAMMA))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_source_is_reproducible() {
        let (a, b) = (SeededRandom::new(7), SeededRandom::new(7));
        let xs: Vec<u64> = (0..4).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..4).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs[0], xs[1]);
    }

    #[test]
    fn thread_source_varies_and_differs_between_threads() {
        let here: Vec<u64> = (0..4).map(|_| ThreadRandom.next_u64()).collect();
        assert!(here.windows(2).all(|w| w[0] != w[1]));
        let there = std::thread::spawn(|| ThreadRandom.next_u64())
            .join()
            .unwrap();
        assert!(!here.contains(&there));
    }

    #[test]
    fn below_and_unit_stay_in_range() {
        let r = SeededRandom::new(1);
        for _ in 0..1_000 {
            assert!(below(r.next_u64(), 7) < 7);
            let u = unit(r.next_u64());
            assert!((0.0..1.0).contains(&u));
        }
        assert_eq!(below(u64::MAX, 3), 2);
        assert_eq!(below(0, 3), 0);
    }
}

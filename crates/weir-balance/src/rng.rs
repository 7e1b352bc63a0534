//! A per-thread fast RNG, so random picks never contend on shared state.

use std::cell::RefCell;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

thread_local! {
    static RNG: RefCell<SmallRng> = RefCell::new(SmallRng::from_os_rng());
}

/// A uniform integer in `0..n` (`n` > 0).
pub(crate) fn below(n: usize) -> usize {
    RNG.with(|r| r.borrow_mut().random_range(0..n))
}

/// A uniform `u64`.
pub(crate) fn next_u64() -> u64 {
    RNG.with(|r| r.borrow_mut().random())
}

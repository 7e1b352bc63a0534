//! When the next probe runs: spread in time so a thousand endpoints (or ten weir instances) do
//! not probe in lockstep — the thundering herd Envoy and HAProxy users have hit.
//!
//! The first probe of an endpoint runs at once (a fresh cluster should know its health quickly);
//! the second lands at a random point of the first interval, which scatters the endpoints over
//! the whole interval; every later one waits the interval plus a random share of the jitter.

use std::time::Duration;

/// The delay before the probe after `done` probes have run, for an interval and a jitter, with
/// `random` a uniformly distributed number.
pub fn next_delay(done: u64, interval: Duration, jitter: Duration, random: u64) -> Duration {
    match done {
        0 => Duration::ZERO,
        1 => fraction(interval, random),
        _ => interval + fraction(jitter, random),
    }
}

/// `random / 2^64` of `d`.
pub(crate) fn fraction(d: Duration, random: u64) -> Duration {
    let nanos = d.as_nanos().min(u128::from(u64::MAX));
    let part = (nanos * u128::from(random)) >> 64;
    Duration::from_nanos(u64::try_from(part).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_now_second_spread_then_interval_plus_jitter() {
        let i = Duration::from_secs(10);
        let j = Duration::from_secs(1);
        assert_eq!(next_delay(0, i, j, u64::MAX), Duration::ZERO);
        assert_eq!(next_delay(1, i, j, 0), Duration::ZERO);
        assert_eq!(next_delay(1, i, j, 1 << 63), Duration::from_secs(5));
        assert_eq!(next_delay(5, i, j, 0), i);
        assert!(next_delay(5, i, j, u64::MAX) < i + j);
        assert!(next_delay(5, i, j, u64::MAX) > i + j - Duration::from_millis(1));
    }
}

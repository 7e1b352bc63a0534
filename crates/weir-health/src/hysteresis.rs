//! Rise/fall thresholds on active check results (HAProxy's `rise`/`fall`, Envoy's
//! `healthy_threshold`/`unhealthy_threshold`).
//!
//! A healthy endpoint goes down after `fall` consecutive failed checks and an unhealthy one comes
//! back after `rise` consecutive passes; any other result resets the streak. An endpoint that has
//! never been checked comes up on its first pass (as Envoy does), so a fresh cluster serves
//! within one probe. Each change needs at least `min(rise, fall)` checks, which bounds how often
//! a flapping endpoint can change state: at most `checks per minute ÷ min(rise, fall)`.

/// The check-driven state of one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hysteresis {
    healthy: bool,
    checked: bool,
    streak: u32,
    rise: u32,
    fall: u32,
}

/// A state change caused by a check result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The endpoint passed enough checks to take traffic again.
    Up,
    /// The endpoint failed enough checks to stop taking traffic.
    Down,
}

// === impl Hysteresis ===

impl Hysteresis {
    /// A state starting `healthy` (or not), with thresholds `rise` and `fall` (each at least 1).
    pub fn new(healthy: bool, rise: u32, fall: u32) -> Self {
        Self {
            healthy,
            checked: false,
            streak: 0,
            rise: rise.max(1),
            fall: fall.max(1),
        }
    }

    /// Whether the endpoint is healthy as far as checks go.
    pub fn is_healthy(&self) -> bool {
        self.healthy
    }

    /// The current streak of results that disagree with the state (passes while unhealthy,
    /// failures while healthy).
    pub fn streak(&self) -> u32 {
        self.streak
    }

    /// Records one check result; returns the transition it caused, if any.
    pub fn record(&mut self, pass: bool) -> Option<Transition> {
        let first = !self.checked;
        self.checked = true;
        if pass == self.healthy {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = match (pass, first) {
            (true, true) => 1,
            (true, false) => self.rise,
            (false, _) => self.fall,
        };
        if self.streak < needed {
            return None;
        }
        self.streak = 0;
        self.healthy = pass;
        Some(if pass {
            Transition::Up
        } else {
            Transition::Down
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn falls_after_fall_failures_and_rises_after_rise_passes() {
        let mut h = Hysteresis::new(true, 2, 3);
        assert_eq!(h.record(false), None);
        assert_eq!(h.record(false), None);
        assert_eq!(h.record(false), Some(Transition::Down));
        assert_eq!(h.record(true), None);
        assert_eq!(h.record(false), None, "a failure resets the rise streak");
        assert_eq!(h.record(true), None);
        assert_eq!(h.record(true), Some(Transition::Up));
    }

    #[test]
    fn a_never_checked_endpoint_comes_up_on_its_first_pass() {
        let mut h = Hysteresis::new(false, 2, 3);
        assert_eq!(h.record(true), Some(Transition::Up));
        let mut h = Hysteresis::new(false, 2, 3);
        assert_eq!(h.record(false), None);
        assert_eq!(
            h.record(true),
            None,
            "after a failure the full rise applies"
        );
        assert_eq!(h.record(true), Some(Transition::Up));
    }

    #[test]
    fn alternating_results_never_flip() {
        let mut h = Hysteresis::new(true, 2, 3);
        h.record(true);
        for i in 0..100 {
            assert_eq!(h.record(i % 2 == 0), None);
        }
    }

    proptest! {
        /// Every transition needs `min(rise, fall)` checks, whatever the results.
        #[test]
        fn transitions_are_bounded_by_the_thresholds(
            rise in 1u32..5, fall in 1u32..5, results in prop::collection::vec(any::<bool>(), 1..300)
        ) {
            let mut h = Hysteresis::new(true, rise, fall);
            h.record(true);
            let changes = results.iter().filter(|&&r| h.record(r).is_some()).count();
            prop_assert!(changes <= results.len() / rise.min(fall) as usize);
        }
    }
}

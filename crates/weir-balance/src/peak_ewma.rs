//! Peak EWMA: latency-aware power of two choices.
//!
//! Twitter's Finagle introduced it ("Peak EWMA" in `finagle-core`'s `aperture`/`p2c`
//! balancers); linkerd2-proxy balances with it through tower's `PeakEwma` load
//! (`tower::load::peak_ewma`). Each endpoint keeps an exponentially weighted moving average of
//! its response time that is *peak sensitive*: a sample above the average replaces it at once,
//! a sample below blends in with weight `1 - exp(-elapsed / decay)`. One slow response
//! therefore marks an endpoint slow immediately, while recovery takes about `decay`. The cost
//! of an endpoint is `estimate × (in_flight + 1)`, so both latency and queueing count; two
//! weighted samples are compared and the cheaper wins (ties: the first sampled, which keeps idle
//! shares proportional to weight).
//!
//! As in tower, the estimate is also decayed toward zero by the time since its last update when
//! a pick reads it (without storing: decays compose, so reading is enough), so an endpoint that
//! was once slow and is now avoided is eventually tried again and re-measured. An endpoint
//! never observed costs `default_rtt`. A failure counts as a response of at least
//! `failure_penalty`. An overload answer (429/503) sets `penalty_until`; until then the
//! endpoint costs +∞: never chosen over an unpenalised one, still usable if all are penalised.
//! The overload answer's own (fast) round trip is not blended in: it says nothing good about the
//! endpoint.
//!
//! State lives in [`weir_core::LatencyEstimate`] atomics, updated load–compute–store: two racing
//! observations may lose one, which an EWMA tolerates.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use weir_config::PeakEwmaConfig;
use weir_core::{Endpoint, LatencyEstimate, Nanos, nanos};

use crate::explain::{Candidate, Explanation};
use crate::members::{Members, Needs};
use crate::{Balancer, BuildContext, CommonOptions, Observation, Outcome, PickContext};

/// Latency-aware P2C on a peak-sensitive EWMA of response time.
#[derive(Debug)]
pub struct PeakEwma {
    members: Members,
    decay_ns: f64,
    default_rtt_ns: f64,
    failure_penalty: Duration,
    overload_backoff: Duration,
}

// === impl PeakEwma ===

impl PeakEwma {
    /// A peak-EWMA balancer over `endpoints` with `config`'s time constants.
    pub fn new(
        endpoints: &[Arc<Endpoint>],
        ctx: &BuildContext,
        options: &CommonOptions,
        config: &PeakEwmaConfig,
    ) -> Self {
        let needs = Needs {
            sampler: true,
            ..Needs::default()
        };
        let members = Members::new(endpoints, ctx, options, needs);
        Self {
            members,
            decay_ns: nanos(config.decay.get()).max(1) as f64,
            default_rtt_ns: nanos(config.default_rtt.get()).max(1) as f64,
            failure_penalty: config.failure_penalty.get(),
            overload_backoff: config.overload_backoff.get(),
        }
    }

    /// `estimate × (in_flight + 1)`, or +∞ while penalised. `now` is read from the clock at most
    /// once per pick, and only if some candidate has been observed or penalised.
    fn cost(&self, i: usize, now: &mut Option<Nanos>) -> f64 {
        let state = &self.members.get(i).state;
        let latency = &state.latency;
        let until = latency.penalty_until.load(Ordering::Relaxed);
        let bits = latency.ewma_bits.load(Ordering::Relaxed);
        let pending = (state.in_flight() + 1) as f64;
        if until == 0 && bits == 0 {
            return self.default_rtt_ns * pending;
        }
        let now = *now.get_or_insert_with(|| self.members.now());
        if until > now {
            return f64::INFINITY;
        }
        let estimate = if bits == 0 {
            self.default_rtt_ns
        } else {
            let stamp = latency.stamp.load(Ordering::Relaxed);
            f64::from_bits(bits) * self.decay(now.saturating_sub(stamp))
        };
        estimate * pending
    }

    /// The steady-state comparison, when both candidates have estimates and neither is
    /// penalised: whether `b` costs less than `a`. Both estimates decay by the same
    /// `exp(-now / decay)`, so only their stamps' difference matters — one `exp` and no clock
    /// read. `None` when the full [`PeakEwma::cost`] is needed.
    fn compare_observed(&self, a: usize, b: usize) -> Option<bool> {
        let (sa, sb) = (&self.members.get(a).state, &self.members.get(b).state);
        let (la, lb) = (&sa.latency, &sb.latency);
        let (bits_a, bits_b) = (
            la.ewma_bits.load(Ordering::Relaxed),
            lb.ewma_bits.load(Ordering::Relaxed),
        );
        let penalised = la.penalty_until.load(Ordering::Relaxed) != 0
            || lb.penalty_until.load(Ordering::Relaxed) != 0;
        if bits_a == 0 || bits_b == 0 || penalised {
            return None;
        }
        let (stamp_a, stamp_b) = (
            la.stamp.load(Ordering::Relaxed),
            lb.stamp.load(Ordering::Relaxed),
        );
        // cost_b < cost_a  ⇔  est_b·p_b·e^(−(now−t_b)/τ) < est_a·p_a·e^(−(now−t_a)/τ)
        //                  ⇔  est_b·p_b·e^((t_b−t_a)/τ) < est_a·p_a
        let newer_by = stamp_b.wrapping_sub(stamp_a) as i64 as f64;
        let cost_a = f64::from_bits(bits_a) * (sa.in_flight() + 1) as f64;
        let cost_b =
            f64::from_bits(bits_b) * (sb.in_flight() + 1) as f64 * (newer_by / self.decay_ns).exp();
        Some(cost_b < cost_a)
    }

    /// Endpoint `i` with its current cost in milliseconds (+∞ while penalised).
    fn scored(&self, i: usize) -> Candidate {
        Candidate {
            index: i,
            score: self.cost(i, &mut None) / 1e6,
        }
    }

    /// The weight `exp(-elapsed / decay)` that an old estimate keeps after `elapsed` ns.
    fn decay(&self, elapsed: Nanos) -> f64 {
        (-(elapsed as f64) / self.decay_ns).exp()
    }

    /// Folds a round trip of `rtt_ns` observed at `now` into `latency`.
    fn update(&self, latency: &LatencyEstimate, rtt_ns: f64, now: Nanos) {
        let bits = latency.ewma_bits.load(Ordering::Relaxed);
        let estimate = if bits == 0 {
            rtt_ns
        } else {
            let previous = f64::from_bits(bits);
            if rtt_ns > previous {
                rtt_ns
            } else {
                let stamp = latency.stamp.load(Ordering::Relaxed);
                let w = self.decay(now.saturating_sub(stamp));
                previous * w + rtt_ns * (1.0 - w)
            }
        };
        // 0 means "no observation": keep a measured estimate at least 1 ns.
        latency
            .ewma_bits
            .store(estimate.max(1.0).to_bits(), Ordering::Relaxed);
        latency.stamp.store(now, Ordering::Relaxed);
    }
}

impl Balancer for PeakEwma {
    fn pick(&self, _ctx: &PickContext) -> Option<usize> {
        let (a, b) = self.members.draw_pair(&self.members.view())?;
        if a == b {
            return Some(a);
        }
        if let Some(b_wins) = self.compare_observed(a, b) {
            return Some(if b_wins { b } else { a });
        }
        let mut now = None;
        let (cost_a, cost_b) = (self.cost(a, &mut now), self.cost(b, &mut now));
        Some(if cost_b < cost_a { b } else { a })
    }

    fn explain(&self, _ctx: &PickContext, picked: usize) -> Explanation {
        let mut e = Explanation::of("peak_ewma", picked, &self.members);
        e.note = Some("sampled candidates not recorded");
        e.score = "cost_ms";
        e.candidates = vec![self.scored(picked)];
        e
    }

    fn pick_explained(&self, _ctx: &PickContext) -> Option<(usize, Explanation)> {
        // The same draw and comparison as `pick`, keeping both candidates and their costs.
        let (a, b) = self.members.draw_pair(&self.members.view())?;
        let picked = if a == b {
            a
        } else if let Some(b_wins) = self.compare_observed(a, b) {
            if b_wins { b } else { a }
        } else {
            let mut now = None;
            let (cost_a, cost_b) = (self.cost(a, &mut now), self.cost(b, &mut now));
            if cost_b < cost_a { b } else { a }
        };
        let mut e = Explanation::of("peak_ewma", picked, &self.members);
        e.score = "cost_ms";
        e.note = Some("power of two choices; cost = latency EWMA x (in_flight + 1)");
        e.candidates = [a, b]
            .into_iter()
            .take(if a == b { 1 } else { 2 })
            .map(|i| self.scored(i))
            .collect();
        Some((picked, e))
    }

    fn observe(&self, endpoint: usize, observation: &Observation) {
        if endpoint >= self.members.len() {
            return;
        }
        let now = self.members.now();
        let latency = &self.members.get(endpoint).state.latency;
        let rtt = match observation.outcome {
            Outcome::Success => observation.rtt,
            Outcome::Failure => observation.rtt.max(self.failure_penalty),
            Outcome::Overloaded { retry_after } => {
                let backoff = nanos(retry_after.unwrap_or(self.overload_backoff));
                latency
                    .penalty_until
                    .store(now.saturating_add(backoff), Ordering::Relaxed);
                return;
            }
        };
        self.update(latency, nanos(rtt) as f64, now);
    }

    fn health_changed(&self) {
        self.members.refresh();
    }
}

#[cfg(test)]
mod tests;

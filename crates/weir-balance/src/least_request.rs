//! Least request: the power of N choices, or a full scan, on in-flight requests per weight.
//!
//! Mitzenmacher, "The Power of Two Choices in Randomized Load Balancing" (IEEE TPDS 2001):
//! sampling two endpoints and taking the less loaded one gives exponentially better maximum
//! load than one random choice, at O(1) cost and without the herd behaviour of a global "least
//! loaded" scan. `choice_count` N samples N candidates (default 2); `all` scans every endpoint.
//!
//! Candidates are sampled in proportion to weight, and load is `active^bias / weight` (Envoy's
//! `active_request_bias`, default 1), where `active` is the endpoint's in-flight count from the
//! shared [`weir_core::EndpointState`]. The lowest load wins; ties go to the first sampled
//! candidate (P2C) or to a weight-proportional reservoir draw among the tied (full scan).
//!
//! Why `active` and not `active + 1`: Envoy computes `weight / (active + 1)^bias` and picks
//! with an earliest-deadline-first scheduler, which needs a lock. Ours is lock-free, so weights
//! act through sampling. With `active + 1`, two idle endpoints of weight 1 and 4 would score
//! 1/1 and 1/4 and the heavier would win *every* pairing, overshooting its weight share; with
//! `active`, idle endpoints tie at 0 and the tie falls back to the weighted sample, so idle
//! shares are exactly proportional to weight while loaded endpoints are still compared by load
//! relative to capacity. A bias of 0 ignores load altogether (weighted random).

use std::sync::Arc;

use weir_config::{ChoiceCount, LeastRequestConfig};
use weir_core::Endpoint;

use crate::explain::{self, Explanation, MAX_LISTED};
use crate::members::{Members, Needs, View};
use crate::rng::{self, LocalRng};
use crate::{Balancer, BuildContext, CommonOptions, PickContext};

/// Candidates whose indices a P2C pick remembers to keep them distinct.
const MAX_TRACKED: usize = 8;

/// Least request by sampled choices or a full scan.
#[derive(Debug)]
pub struct LeastRequest {
    members: Members,
    choices: Choices,
    bias: f64,
}

/// How a pick finds its candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Choices {
    /// Sample this many (2 ≤ k < number of endpoints).
    Sample(usize),
    /// Consider every endpoint (also used when k covers them all).
    All,
}

// === impl LeastRequest ===

impl LeastRequest {
    /// A least-request balancer over `endpoints` with `config`'s choice count and bias.
    pub fn new(
        endpoints: &[Arc<Endpoint>],
        ctx: &BuildContext,
        options: &CommonOptions,
        config: &LeastRequestConfig,
    ) -> Self {
        let needs = Needs {
            sampler: true,
            ..Needs::default()
        };
        let members = Members::new(endpoints, ctx, options, needs);
        let choices = match config.choice_count {
            // Sampling as many as there are endpoints compares them all: scan instead.
            ChoiceCount::Sample(k) if (k as usize) < endpoints.len() => {
                Choices::Sample((k as usize).max(2))
            }
            _ => Choices::All,
        };
        let bias = if config.active_request_bias.is_finite() {
            config.active_request_bias.max(0.0)
        } else {
            1.0
        };
        Self {
            members,
            choices,
            bias,
        }
    }

    /// `active^bias / weight`: lower is better; 0 for every endpoint when the bias is 0.
    fn load(&self, i: usize, weight: f64) -> f64 {
        if self.bias == 0.0 {
            return 0.0;
        }
        let active = self.members.get(i).state.in_flight() as f64;
        if self.bias == 1.0 {
            active / weight
        } else {
            active.powf(self.bias) / weight
        }
    }

    /// Whether `b`'s load is strictly below `a`'s; with the default bias of 1 compared by
    /// cross-multiplication (`active_b·w_a < active_a·w_b`), exact and without a division.
    fn less_loaded(&self, b: usize, a: usize) -> bool {
        if self.bias == 1.0 {
            let (ma, mb) = (self.members.get(a), self.members.get(b));
            let lhs = u128::from(mb.state.in_flight()) * u128::from(ma.weight);
            let rhs = u128::from(ma.state.in_flight()) * u128::from(mb.weight);
            return lhs < rhs;
        }
        self.load(b, self.weight(b)) < self.load(a, self.weight(a))
    }

    fn weight(&self, i: usize) -> f64 {
        f64::from(self.members.get(i).weight)
    }

    /// Power of `k` choices: weighted, distinct candidates; the least loaded wins, ties go to
    /// the earliest sampled.
    fn pick_sampled(&self, view: &View, k: usize) -> Option<usize> {
        if k == 2 {
            let (a, b) = self.members.draw_pair(view)?;
            return Some(if self.less_loaded(b, a) { b } else { a });
        }
        let first = self.members.draw(view)?;
        let mut taken = [first; MAX_TRACKED];
        let (mut best, mut best_load) = (first, self.load(first, self.weight(first)));
        for n in 1..k {
            let Some(c) = self
                .members
                .draw_distinct(view, &taken[..n.min(MAX_TRACKED)])
            else {
                break;
            };
            if n < MAX_TRACKED {
                taken[n] = c;
            }
            let load = self.load(c, self.weight(c));
            if load < best_load {
                (best, best_load) = (c, load);
            }
        }
        Some(best)
    }

    /// Full scan: the least loaded eligible endpoint; ties broken by a weighted reservoir draw
    /// (Chao 1982) so idle endpoints share in proportion to (slow-start adjusted) weight.
    fn pick_all(&self, view: &View) -> Option<usize> {
        // One draw from the injected source seeds the whole scan's tie-breaks.
        let mut rng = LocalRng::new(self.members.next_u64());
        let mut best = None;
        let (mut best_load, mut tied_weight) = (f64::INFINITY, 0.0);
        for i in view.eligible.iter().map(|&i| i as usize) {
            if !self.members.eligible(view, i) {
                continue;
            }
            // Slow start's factor is > 0 (clamped), so the load below is never 0/0.
            let weight = self.weight(i) * self.members.ramp(i).unwrap_or(1.0);
            let load = self.load(i, weight);
            if best.is_none() || load < best_load {
                (best, best_load, tied_weight) = (Some(i), load, weight);
            } else if load == best_load {
                tied_weight += weight;
                if rng::unit(rng.next_u64()) * tied_weight < weight {
                    best = Some(i);
                }
            }
        }
        best
    }
}

impl Balancer for LeastRequest {
    fn pick(&self, _ctx: &PickContext) -> Option<usize> {
        let view = self.members.view();
        match self.choices {
            Choices::Sample(k) => self.pick_sampled(&view, k),
            Choices::All => self.pick_all(&view),
        }
    }

    fn explain(&self, _ctx: &PickContext, picked: usize) -> Explanation {
        let mut e = Explanation::of("least_request", picked, &self.members);
        e.score = "in_flight";
        let view = self.members.view();
        match self.choices {
            Choices::All => {
                e.note = Some("full scan");
                let scanned = view.eligible.iter().map(|&i| i as usize);
                e.candidates = scanned
                    .take(MAX_LISTED)
                    .map(|i| explain::in_flight(&self.members, i))
                    .collect();
                if !e.candidates.iter().any(|c| c.index == picked) {
                    e.candidates.push(explain::in_flight(&self.members, picked));
                }
            }
            Choices::Sample(_) => {
                // Which others were sampled is not kept by `pick`: `pick_explained` knows.
                e.note = Some("sampled candidates not recorded");
                e.candidates = vec![explain::in_flight(&self.members, picked)];
            }
        }
        e
    }

    fn pick_explained(&self, ctx: &PickContext) -> Option<(usize, Explanation)> {
        let Choices::Sample(2) = self.choices else {
            let picked = self.pick(ctx)?;
            return Some((picked, self.explain(ctx, picked)));
        };
        // The same draw and comparison as `pick_sampled`, keeping both candidates.
        let (a, b) = self.members.draw_pair(&self.members.view())?;
        let picked = if self.less_loaded(b, a) { b } else { a };
        let mut e = Explanation::of("least_request", picked, &self.members);
        e.score = "in_flight";
        e.note = Some("power of two choices");
        e.candidates = [a, b]
            .into_iter()
            .take(if a == b { 1 } else { 2 })
            .map(|i| explain::in_flight(&self.members, i))
            .collect();
        Some((picked, e))
    }

    fn health_changed(&self) {
        self.members.refresh();
    }
}

#[cfg(test)]
mod tests;

//! Slow start: an endpoint added at t0 with a 10 s linear window and a 10 % floor gets 10 % of
//! its weight at t0, half at t0 + 5 s and all of it from t0 + 10 s — its share among 10 equal
//! endpoints is f / (9 + f) — under round robin, random, least request and peak EWMA.

use std::time::Duration;

use serde_json::json;
use weir_core::Clock;

use crate::test_util::{assert_shares_close, context_with_clock, endpoints, shares};

/// Enough that ±0.5 % is over 5 standard deviations of the sampling noise.
const PICKS: usize = 100_000;

fn expected(factor: f64) -> Vec<f64> {
    let rest = 1.0 / (9.0 + factor);
    let mut e = vec![rest; 10];
    e[9] = factor * rest;
    e
}

fn ramp(policy: serde_json::Value) {
    let eps = endpoints(&[1; 10]);
    let (ctx, clock) = context_with_clock(12);
    let mut fields = policy.clone();
    fields["slow_start"] = json!({ "window": "10s", "aggression": 1.0, "min_weight_percent": 10 });
    let b = super::balancer(fields, &eps, &ctx);
    eps[9].state.mark_added(clock.now());
    for (at_secs, factor) in [(0, 0.1), (5, 0.5), (10, 1.0), (60, 1.0)] {
        let now = clock.now();
        let target = Duration::from_secs(1 + at_secs);
        clock.advance(target.saturating_sub(Duration::from_nanos(now)));
        let got = shares(&*b, 10, PICKS);
        eprintln!(
            "{policy} at t0+{at_secs}s: {:.4}",
            got[9] as f64 / PICKS as f64
        );
        assert_shares_close(&got, &expected(factor), 0.005);
    }
}

#[test]
fn round_robin_ramps() {
    ramp(json!({ "lb_policy": "round_robin" }));
}

#[test]
fn random_ramps() {
    ramp(json!({ "lb_policy": "random" }));
}

#[test]
fn least_request_ramps() {
    ramp(json!({ "lb_policy": "least_request" }));
    ramp(json!({ "lb_policy": "least_request", "least_request": { "choice_count": "all" } }));
}

#[test]
fn peak_ewma_ramps() {
    ramp(json!({ "lb_policy": "peak_ewma" }));
}

#[test]
fn recovery_restarts_the_ramp() {
    let eps = endpoints(&[1; 10]);
    let (ctx, clock) = context_with_clock(3);
    let b = super::balancer(
        json!({ "lb_policy": "random", "slow_start": { "window": "10s" } }),
        &eps,
        &ctx,
    );
    eps[9].state.set_healthy(false, clock.now());
    clock.advance(Duration::from_secs(30));
    eps[9].state.set_healthy(true, clock.now());
    assert_shares_close(&shares(&*b, 10, PICKS), &expected(0.1), 0.005);
}

#[test]
fn zero_minimum_weight_does_not_poison_the_full_scan() {
    // min_weight_percent 0 gives a ramping endpoint a factor of 0 at first; its weight was then
    // 0 and its load 0/0 = NaN, which no comparison beats: the full scan always chose it.
    let eps = endpoints(&[1; 4]);
    let (ctx, clock) = context_with_clock(3);
    eps[0].state.mark_added(clock.now());
    let b = super::balancer(
        json!({ "lb_policy": "least_request", "least_request": { "choice_count": "all" },
                "slow_start": { "window": "10s", "aggression": 1.0, "min_weight_percent": 0 } }),
        &eps,
        &ctx,
    );
    let got = shares(&*b, eps.len(), 10_000);
    assert!(got[0] <= 10, "{got:?}");
}

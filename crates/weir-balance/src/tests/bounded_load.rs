//! Bounded loads: with Zipf-skewed keys and 1,000 requests held in a closed loop over 10
//! endpoints, no endpoint holds more than `factor` × the mean (+0.01 for the ceiling) with
//! `hash_balance_factor: 1.25`, while without the bound the hot keys' endpoints run far over.

use serde_json::json;
use weir_core::InFlightGuard;

use crate::test_util::{context, endpoints};
use crate::{PickContext, RandomSource, SeededRandom, rng};

const ENDPOINTS: usize = 10;
const HELD: usize = 1_000;
const DISTINCT_KEYS: usize = 1_000;

/// Zipf(s = 1) over `DISTINCT_KEYS` keys: cumulative weights for inverse-transform sampling.
fn zipf_cdf() -> Vec<f64> {
    let mut acc = 0.0;
    (1..=DISTINCT_KEYS)
        .map(|k| {
            acc += 1.0 / k as f64;
            acc
        })
        .collect()
}

/// Runs the closed loop and returns the largest max/mean in-flight ratio seen once full.
fn worst_ratio(fields: serde_json::Value) -> f64 {
    let steps = if cfg!(debug_assertions) {
        5_000
    } else {
        50_000
    };
    let eps = endpoints(&[1; ENDPOINTS]);
    let b = super::balancer(fields, &eps, &context(8));
    let cdf = zipf_cdf();
    let total = cdf[cdf.len() - 1];
    let r = SeededRandom::new(31);
    let key = || {
        let x = rng::unit(r.next_u64()) * total;
        cdf.partition_point(|&c| c < x) as u64
    };
    let mut held: Vec<InFlightGuard> = Vec::with_capacity(HELD);
    let mut worst: f64 = 0.0;
    for step in 0..HELD + steps {
        if held.len() == HELD {
            let victim = rng::below(r.next_u64(), held.len());
            held.swap_remove(victim);
        }
        let ctx = PickContext {
            hash: Some(key()),
            attempt: 0,
        };
        let i = b.pick(&ctx).unwrap();
        held.push(eps[i].state.begin_request());
        if step >= HELD {
            let max = eps.iter().map(|e| e.state.in_flight()).max().unwrap();
            let mean = HELD as f64 / ENDPOINTS as f64;
            worst = worst.max(max as f64 / mean);
        }
    }
    worst
}

#[test]
fn bounded_ring_hash_and_maglev_stay_within_the_factor() {
    for policy in ["ring_hash", "maglev"] {
        let unbounded = worst_ratio(json!({ "lb_policy": policy }));
        let bounded = worst_ratio(json!({ "lb_policy": policy, "hash_balance_factor": 1.25 }));
        eprintln!("{policy}: max/mean unbounded {unbounded:.3}, bounded(1.25) {bounded:.3}");
        assert!(bounded <= 1.25 + 0.01, "{policy}: {bounded}");
        assert!(
            unbounded > 1.5,
            "{policy}: the keys are not skewed enough ({unbounded})"
        );
    }
}

#[test]
fn bounded_load_keeps_cold_keys_at_home() {
    // With nothing in flight elsewhere, a key keeps its endpoint: the bound only moves overflow.
    let eps = endpoints(&[1; ENDPOINTS]);
    let b = super::balancer(
        json!({ "lb_policy": "maglev", "hash_balance_factor": 1.25 }),
        &eps,
        &context(1),
    );
    let plain = super::balancer(json!({ "lb_policy": "maglev" }), &eps, &context(1));
    for k in 0..1_000u64 {
        let ctx = PickContext {
            hash: Some(k),
            attempt: 0,
        };
        assert_eq!(b.pick(&ctx), plain.pick(&ctx));
    }
}

#[test]
fn bounded_capacity_follows_weights() {
    // Weights 1:9, factor 1.25, 1,000 requests held with uniform keys: capacities are
    // ⌈1.25 × 1001 × w / 10⌉ = 126 and 1127, so the loads stay at about 100:900. With one
    // capacity for all (⌈1.25 × 1001 / 2⌉ = 626) the heavy endpoint was capped: 375:625.
    for policy in ["ring_hash", "maglev"] {
        let eps = endpoints(&[1, 9]);
        let b = super::balancer(
            json!({ "lb_policy": policy, "hash_balance_factor": 1.25 }),
            &eps,
            &context(8),
        );
        let r = SeededRandom::new(17);
        let mut held: Vec<InFlightGuard> = Vec::with_capacity(HELD);
        let mut light_max = 0;
        for step in 0..HELD * 5 {
            if held.len() == HELD {
                held.swap_remove(rng::below(r.next_u64(), held.len()));
            }
            let ctx = PickContext {
                hash: Some(r.next_u64()),
                attempt: 0,
            };
            held.push(eps[b.pick(&ctx).unwrap()].state.begin_request());
            if step >= HELD {
                light_max = light_max.max(eps[0].state.in_flight());
            }
        }
        let light = eps[0].state.in_flight();
        assert!(
            light_max <= 126,
            "{policy}: light endpoint held {light_max}"
        );
        // Binomial spread of 1,000 requests at p = 0.1 is ±9.5; ±4σ.
        assert!(
            light.abs_diff(100) <= 40,
            "{policy}: light {light} of {HELD}"
        );
    }
}

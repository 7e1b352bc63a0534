//! Consistent hashing moves few keys: removing one of 10 endpoints changes the endpoint of at
//! most 2 × 1/10 of 100k keys (all changed keys counted; the ideal is the removed 1/10).

use std::sync::Arc;

use serde_json::json;
use weir_core::Endpoint;

use crate::test_util::{context, endpoints};
use crate::{PickContext, RandomSource, SeededRandom};

const KEYS: usize = 100_000;

/// Fraction of `KEYS` random keys whose endpoint address differs after removing endpoint 3.
fn moved_fraction(fields: serde_json::Value) -> f64 {
    let all = endpoints(&[1; 10]);
    let fewer: Vec<Arc<Endpoint>> = all
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != 3)
        .map(|(_, e)| Arc::clone(e))
        .collect();
    let before = super::balancer(fields.clone(), &all, &context(1));
    let after = super::balancer(fields.clone(), &fewer, &context(2));
    let keys = SeededRandom::new(99);
    let mut moved = 0;
    for _ in 0..KEYS {
        let ctx = PickContext {
            hash: Some(keys.next_u64()),
            attempt: 0,
        };
        let a = all[before.pick(&ctx).unwrap()].address;
        let b = fewer[after.pick(&ctx).unwrap()].address;
        moved += usize::from(a != b);
    }
    let fraction = moved as f64 / KEYS as f64;
    eprintln!(
        "{fields}: removing 1 of 10 moved {:.2} % of keys",
        fraction * 100.0
    );
    fraction
}

#[test]
fn maglev_removal_moves_few_keys() {
    assert!(moved_fraction(json!({ "lb_policy": "maglev" })) <= 0.2);
}

#[test]
fn ring_hash_removal_moves_few_keys() {
    assert!(moved_fraction(json!({ "lb_policy": "ring_hash" })) <= 0.2);
    let large = json!({ "lb_policy": "ring_hash", "ring_hash": { "table_size": 65_536 } });
    assert!(moved_fraction(large) <= 0.2);
}

#[test]
fn unhealthy_endpoint_moves_only_its_own_keys() {
    for policy in ["ring_hash", "maglev"] {
        let eps = endpoints(&[1; 10]);
        let b = super::balancer(json!({ "lb_policy": policy }), &eps, &context(1));
        let keys: Vec<u64> = (0..10_000u64)
            .map(|k| k.wrapping_mul(0x9E37_79B9))
            .collect();
        let pick = |k: u64| {
            b.pick(&PickContext {
                hash: Some(k),
                attempt: 0,
            })
            .unwrap()
        };
        let before: Vec<usize> = keys.iter().map(|&k| pick(k)).collect();
        eps[3].state.set_healthy(false, 0);
        b.health_changed();
        for (&k, &was) in keys.iter().zip(&before) {
            let now = pick(k);
            assert_ne!(now, 3, "{policy}");
            if was != 3 {
                assert_eq!(now, was, "{policy}: key {k} left a healthy endpoint");
            }
        }
    }
}

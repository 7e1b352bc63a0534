//! Panic threshold: below `panic_threshold` % healthy endpoints, picks ignore health; at or
//! above it, only healthy endpoints are picked. The flag follows health changes by itself (the
//! health generation); `health_changed` only forces the recount.

use serde_json::json;

use crate::PickContext;
use crate::test_util::{context, endpoints};

/// Counts of 20k picks (random keys for hashing policies) with `healthy` of 10 endpoints up.
fn spread(policy: &str, healthy: usize) -> Vec<usize> {
    let eps = endpoints(&[1; 10]);
    let b = super::balancer(json!({ "lb_policy": policy }), &eps, &context(5));
    for e in &eps[healthy..] {
        e.state.set_healthy(false, 0);
    }
    b.health_changed();
    let mut counts = vec![0; 10];
    for k in 0..20_000u64 {
        let ctx = PickContext {
            hash: Some(k),
            attempt: 0,
        };
        counts[b.pick(&ctx).unwrap()] += 1;
    }
    counts
}

#[test]
fn below_the_threshold_every_endpoint_takes_traffic() {
    for policy in super::ALL_POLICIES {
        let got = spread(policy, 3);
        assert!(got.iter().all(|&c| c > 500), "{policy}: {got:?}");
    }
}

#[test]
fn at_or_above_the_threshold_only_healthy_endpoints() {
    for policy in super::ALL_POLICIES {
        for healthy in [5, 6] {
            let got = spread(policy, healthy);
            assert!(got[healthy..].iter().all(|&c| c == 0), "{policy}: {got:?}");
            assert!(
                got[..healthy].iter().all(|&c| c > 1_000),
                "{policy}: {got:?}"
            );
        }
    }
}

#[test]
fn threshold_zero_disables_panic() {
    let eps = endpoints(&[1; 4]);
    let b = super::balancer(
        json!({ "lb_policy": "random", "panic_threshold": 0 }),
        &eps,
        &context(1),
    );
    for e in &eps[1..] {
        e.state.set_healthy(false, 0);
    }
    b.health_changed();
    assert!((0..100).all(|_| b.pick(&PickContext::default()) == Some(0)));
    eps[0].state.set_healthy(false, 0);
    b.health_changed();
    assert_eq!(b.pick(&PickContext::default()), None);
}

#[test]
fn health_flips_are_seen_without_health_changed() {
    for policy in super::ALL_POLICIES {
        let eps = endpoints(&[1; 10]);
        let b = super::balancer(json!({ "lb_policy": policy }), &eps, &context(5));
        let pick = |k: u64| {
            let ctx = PickContext {
                hash: Some(k),
                attempt: 0,
            };
            b.pick(&ctx).unwrap()
        };
        // 4 of 10 down, nobody calls `health_changed`: the next picks skip them.
        for e in &eps[..4] {
            e.state.set_healthy(false, 0);
        }
        assert!((0..2_000).all(|k| pick(k) >= 4), "{policy}");
        // 6 of 10 down: below the 50 % threshold, panic engages and everyone takes traffic.
        for e in &eps[4..6] {
            e.state.set_healthy(false, 0);
        }
        let mut counts = [0usize; 10];
        for k in 0..20_000 {
            counts[pick(k)] += 1;
        }
        assert!(counts.iter().all(|&c| c > 500), "{policy}: {counts:?}");
        // Recovery leaves panic again, still without being told.
        for e in &eps[..6] {
            e.state.set_healthy(true, 0);
        }
        eps[0].state.set_healthy(false, 0);
        assert!((0..2_000).all(|k| pick(k) != 0), "{policy}");
    }
}

#[test]
fn drained_endpoints_never_take_traffic_even_in_panic() {
    for policy in super::ALL_POLICIES {
        let eps = endpoints(&[1; 4]);
        let b = super::balancer(json!({ "lb_policy": policy }), &eps, &context(5));
        // Three of four drained: the one left is all that is in service, and healthy, so no
        // panic; one of them failing as well would not bring the drained ones back either.
        for e in &eps[1..] {
            let _ = e
                .state
                .set_unhealthy(weir_core::Unhealthy::Drained, true, 0);
        }
        b.health_changed();
        for k in 0..1_000u64 {
            let ctx = PickContext {
                hash: Some(k),
                attempt: 0,
            };
            assert_eq!(b.pick(&ctx), Some(0), "{policy}");
        }
        eps[0].state.set_healthy(false, 0);
        b.health_changed();
        let ctx = PickContext {
            hash: Some(1),
            attempt: 0,
        };
        assert_eq!(
            b.pick(&ctx),
            Some(0),
            "{policy}: panic mode over in-service endpoints only"
        );
    }
}

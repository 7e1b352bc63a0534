//! Every policy gives each endpoint its weight share (±2 % absolute) over 100k idle picks;
//! hashing policies over 100k uniformly random keys.

use serde_json::json;

use crate::test_util::{
    assert_shares_close, context, endpoints, hashed_shares, shares, weight_shares,
};

const WEIGHTS: [u32; 4] = [1, 2, 3, 4];
const PICKS: usize = 100_000;

fn check(fields: serde_json::Value, hashed: bool) {
    let eps = endpoints(&WEIGHTS);
    let b = super::balancer(fields.clone(), &eps, &context(21));
    let got = if hashed {
        hashed_shares(&*b, eps.len(), PICKS, 77)
    } else {
        shares(&*b, eps.len(), PICKS)
    };
    eprintln!("{fields}: {got:?}");
    assert_shares_close(&got, &weight_shares(&WEIGHTS), 0.02);
}

#[test]
fn round_robin() {
    check(json!({ "lb_policy": "round_robin" }), false);
}

#[test]
fn random() {
    check(json!({ "lb_policy": "random" }), false);
}

#[test]
fn least_request_p2c_and_n_choices() {
    check(json!({ "lb_policy": "least_request" }), false);
    check(
        json!({ "lb_policy": "least_request", "least_request": { "choice_count": 3 } }),
        false,
    );
}

#[test]
fn least_request_full_scan() {
    check(
        json!({ "lb_policy": "least_request", "least_request": { "choice_count": "all" } }),
        false,
    );
}

#[test]
fn peak_ewma_idle() {
    check(json!({ "lb_policy": "peak_ewma" }), false);
}

#[test]
fn ring_hash_with_a_large_ring() {
    // 64Ki points: ~6.5k for the weight-1 endpoint, so its arc share is within ~1 % (relative).
    // The default 1024 points would leave ±10 % relative error per endpoint.
    check(
        json!({ "lb_policy": "ring_hash", "ring_hash": { "table_size": 65_536 } }),
        true,
    );
}

#[test]
fn maglev() {
    check(json!({ "lb_policy": "maglev" }), true);
}

#[test]
fn hashing_without_a_key_is_weighted_random() {
    check(
        json!({ "lb_policy": "ring_hash", "ring_hash": { "table_size": 65_536 } }),
        false,
    );
    check(json!({ "lb_policy": "maglev" }), false);
}

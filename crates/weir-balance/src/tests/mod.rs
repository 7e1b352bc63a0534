//! Deterministic proofs of the policies' promises: weight shares, consistency under removal,
//! bounded loads under skew, behaviour with a slow endpoint, slow start and the panic
//! threshold. Everything runs on [`crate::SeededRandom`] and [`weir_core::ManualClock`], so a
//! failure reproduces exactly and no test depends on wall-clock time. Heavy simulations run
//! fewer iterations in debug builds (`ITERATIONS_SCALE`).

mod bounded_load;
mod consistency;
mod distribution;
mod explain;
mod panic;
mod slow_endpoint;
mod slow_start;

use std::sync::Arc;

use weir_config::ClusterConfig;
use weir_core::Endpoint;

use crate::{Balancer, BuildContext, build};

/// The policies every cross-policy test runs, as `lb_policy` names.
const ALL_POLICIES: [&str; 6] = [
    "round_robin",
    "random",
    "least_request",
    "peak_ewma",
    "ring_hash",
    "maglev",
];

/// A cluster config from JSON fields (name and endpoints added), as the YAML loader would give.
pub(super) fn cluster(fields: serde_json::Value) -> ClusterConfig {
    let mut object = serde_json::json!({ "name": "c", "endpoints": [] });
    if let (Some(o), serde_json::Value::Object(extra)) = (object.as_object_mut(), fields) {
        o.extend(extra);
    }
    serde_json::from_value(object).expect("test cluster config parses")
}

/// `build()` of the cluster `fields` describes over `eps`.
pub(super) fn balancer(
    fields: serde_json::Value,
    eps: &[Arc<Endpoint>],
    ctx: &BuildContext,
) -> Box<dyn Balancer> {
    build(&cluster(fields), eps, ctx)
}

#[test]
fn build_dispatches_every_policy_with_defaults_and_options() {
    let eps = crate::test_util::endpoints(&[1, 1, 1]);
    let ctx = crate::test_util::context(1);
    let expected = [
        "RoundRobin",
        "Random",
        "LeastRequest",
        "PeakEwma",
        "RingHash",
        "Maglev",
    ];
    for (policy, type_name) in ALL_POLICIES.iter().zip(expected) {
        let b = balancer(serde_json::json!({ "lb_policy": policy }), &eps, &ctx);
        assert!(format!("{b:?}").starts_with(type_name), "{policy}: {b:?}");
        assert!(b.pick(&crate::PickContext::default()).is_some());
    }
    let b = balancer(
        serde_json::json!({ "lb_policy": "least_request",
            "least_request": { "choice_count": "all", "active_request_bias": 0.5 } }),
        &eps,
        &ctx,
    );
    assert!(format!("{b:?}").contains("All"), "{b:?}");
    let b = balancer(
        serde_json::json!({ "lb_policy": "maglev", "maglev": { "table_size": 7 } }),
        &eps,
        &ctx,
    );
    assert!(format!("{b:?}").contains("table: ["), "{b:?}");
}

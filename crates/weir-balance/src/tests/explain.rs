//! `explain` / `pick_explained`: the candidates and scores a policy reports are the ones it
//! compared, and exclusions and hashing walks are named.

use std::sync::Arc;

use weir_config::{LeastRequestConfig, MaglevConfig, PeakEwmaConfig, RingHashConfig};
use weir_core::{Endpoint, Unhealthy};

use crate::test_util::{context, endpoints};
use crate::{
    Balancer, CommonOptions, LeastRequest, Maglev, PeakEwma, PickContext, RingHash, RoundRobin,
};

/// Holds `n` requests open on `endpoint`.
fn load(endpoint: &Arc<Endpoint>, n: usize) -> Vec<weir_core::InFlightGuard> {
    (0..n).map(|_| endpoint.state.begin_request()).collect()
}

#[test]
fn least_request_reports_both_candidates_with_in_flight_and_the_lower_wins() {
    let eps = endpoints(&[1, 1, 1, 1]);
    let _busy: Vec<_> = eps
        .iter()
        .enumerate()
        .map(|(i, e)| load(e, i * 2))
        .collect();
    let eps_ejected = Arc::clone(&eps[3]);
    let _ = eps_ejected.state.set_unhealthy(Unhealthy::Ejected, true, 0);
    let b = LeastRequest::new(
        &eps,
        &context(3),
        &CommonOptions::default(),
        &LeastRequestConfig::default(),
    );
    for _ in 0..50 {
        let (picked, e) = b.pick_explained(&PickContext::default()).unwrap();
        assert_eq!(e.policy, "least_request");
        assert_eq!(e.picked, picked);
        assert_eq!(e.score, "in_flight");
        assert_eq!(e.candidates.len(), 2, "{e:?}");
        let (a, c) = (e.candidates[0], e.candidates[1]);
        assert_ne!(a.index, c.index);
        assert_eq!(a.score, (a.index * 2) as f64);
        let lower = if c.score < a.score { c.index } else { a.index };
        assert_eq!(picked, lower, "{e:?}");
        assert_ne!(picked, 3);
        assert_eq!(e.excluded.ejected, 1);
        assert!(!e.panic);
    }
    // The plain explain of a pick names the pick and its load.
    let e = b.explain(&PickContext::default(), 1);
    assert_eq!(e.candidates[0].index, 1);
    assert_eq!(e.candidates[0].score, 2.0);
    let _ = eps_ejected
        .state
        .set_unhealthy(Unhealthy::Ejected, false, 0);
}

#[test]
fn peak_ewma_reports_candidates_with_costs() {
    let eps = endpoints(&[1, 1]);
    let _busy = load(&eps[1], 3);
    let b = PeakEwma::new(
        &eps,
        &context(4),
        &CommonOptions::default(),
        &PeakEwmaConfig::default(),
    );
    let default_ms = PeakEwmaConfig::default().default_rtt.get().as_secs_f64() * 1e3;
    let (picked, e) = b.pick_explained(&PickContext::default()).unwrap();
    assert_eq!(e.policy, "peak_ewma");
    assert_eq!(e.score, "cost_ms");
    assert_eq!(picked, 0, "the idle endpoint costs less: {e:?}");
    let mut scores: Vec<(usize, f64)> = e.candidates.iter().map(|c| (c.index, c.score)).collect();
    scores.sort_by_key(|s| s.0);
    assert_eq!(scores.len(), 2);
    assert!((scores[0].1 - default_ms).abs() < 1e-6, "{scores:?}");
    assert!((scores[1].1 - 4.0 * default_ms).abs() < 1e-6, "{scores:?}");
}

#[test]
fn hashing_policies_report_the_hash_home_and_walk() {
    let eps = endpoints(&[1, 1, 1, 1, 1]);
    let options = CommonOptions::default();
    let ring = RingHash::new(&eps, &context(5), &options, &RingHashConfig::default());
    let maglev = Maglev::new(&eps, &context(5), &options, &MaglevConfig::default());
    let policies: [(&dyn Balancer, &str); 2] = [(&ring, "ring_hash"), (&maglev, "maglev")];
    for (b, name) in policies {
        let ctx = PickContext {
            hash: Some(42),
            attempt: 0,
        };
        let (picked, e) = b.pick_explained(&ctx).unwrap();
        assert_eq!(e.policy, name);
        assert_eq!(e.hash, Some(42));
        assert_eq!(
            e.home,
            Some(picked),
            "all healthy: the home endpoint takes it"
        );
        assert!(e.walked.is_empty());
        // Take the home out: the walk passes it and reports it.
        let home = picked;
        let _ = eps[home]
            .state
            .set_unhealthy(Unhealthy::ActiveCheck, true, 0);
        let (picked, e) = b.pick_explained(&ctx).unwrap();
        assert_ne!(picked, home);
        assert_eq!(e.home, Some(home), "{e:?}");
        assert!(e.walked.contains(&home), "{e:?}");
        assert_eq!(e.excluded.unhealthy, 1);
        assert_eq!(e.candidates.last().map(|c| c.index), Some(picked));
        let _ = eps[home]
            .state
            .set_unhealthy(Unhealthy::ActiveCheck, false, 0);
        // Without a hash key the pick is random and says so.
        let e = b.explain(&PickContext::default(), 0);
        assert_eq!((e.hash, e.home), (None, None));
        assert!(e.note.is_some());
    }
}

#[test]
fn round_robin_reports_its_position_and_default_is_minimal() {
    let eps = endpoints(&[1, 1, 1]);
    let b = RoundRobin::new(&eps, &context(6), &CommonOptions::default());
    let (picked, e) = b.pick_explained(&PickContext::default()).unwrap();
    assert_eq!(e.policy, "round_robin");
    assert_eq!(e.picked, picked);
    let (slot, len) = e.position.unwrap();
    assert_eq!(len, 3);
    assert!(slot < 3);
}

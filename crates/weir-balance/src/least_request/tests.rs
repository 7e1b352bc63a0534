use super::*;
use crate::test_util::{assert_shares_close, context, endpoints, shares};

fn balancer(eps: &[Arc<Endpoint>], choice_count: ChoiceCount, bias: f64) -> LeastRequest {
    let config = LeastRequestConfig {
        choice_count,
        active_request_bias: bias,
    };
    LeastRequest::new(eps, &context(9), &CommonOptions::default(), &config)
}

fn p2c(eps: &[Arc<Endpoint>]) -> LeastRequest {
    balancer(eps, ChoiceCount::Sample(2), 1.0)
}

#[test]
fn idle_endpoints_share_by_weight() {
    let eps = endpoints(&[1, 1, 1, 1]);
    let got = shares(&p2c(&eps), eps.len(), 100_000);
    assert_shares_close(&got, &[0.25; 4], 0.02);
    let eps = endpoints(&[1, 2, 3, 4]);
    let got = shares(&p2c(&eps), eps.len(), 100_000);
    assert_shares_close(&got, &[0.1, 0.2, 0.3, 0.4], 0.02);
    let all = balancer(&eps, ChoiceCount::All, 1.0);
    assert_eq!(all.choices, Choices::All);
    let got = shares(&all, eps.len(), 100_000);
    assert_shares_close(&got, &[0.1, 0.2, 0.3, 0.4], 0.02);
}

#[test]
fn prefers_the_less_loaded_endpoint() {
    let eps = endpoints(&[1, 1]);
    let _busy: Vec<_> = (0..5).map(|_| eps[0].state.begin_request()).collect();
    let lr = p2c(&eps);
    assert_eq!(
        lr.choices,
        Choices::All,
        "two choices of two endpoints is a scan"
    );
    assert_eq!(shares(&lr, eps.len(), 1_000), vec![0, 1_000]);
}

#[test]
fn load_is_scaled_by_weight() {
    let eps = endpoints(&[4, 1]);
    // 3 in flight on a weight-4 endpoint (3/4) beats 1 on weight 1 (1/1).
    let _a: Vec<_> = (0..3).map(|_| eps[0].state.begin_request()).collect();
    let _b = eps[1].state.begin_request();
    assert_eq!(p2c(&eps).pick(&PickContext::default()), Some(0));
    // A bias of 2 squares the load: 9/4 loses to 1/1.
    let lr = balancer(&eps, ChoiceCount::Sample(2), 2.0);
    assert_eq!(lr.pick(&PickContext::default()), Some(1));
}

#[test]
fn zero_bias_ignores_load() {
    let eps = endpoints(&[1, 1, 1, 1]);
    let _busy: Vec<_> = (0..50).map(|_| eps[0].state.begin_request()).collect();
    let got = shares(&balancer(&eps, ChoiceCount::Sample(2), 0.0), 4, 40_000);
    assert_shares_close(&got, &[0.25; 4], 0.02);
}

#[test]
fn holding_picks_keeps_load_balanced() {
    // Closed loop: each pick holds its guard, so the choices must keep in-flight counts level.
    for choices in [
        ChoiceCount::Sample(2),
        ChoiceCount::Sample(3),
        ChoiceCount::All,
    ] {
        let eps = endpoints(&[1; 8]);
        let lr = balancer(&eps, choices, 1.0);
        let guards: Vec<_> = (0..800)
            .map(|_| {
                let i = lr.pick(&PickContext::default()).unwrap();
                eps[i].state.begin_request()
            })
            .collect();
        let max = eps.iter().map(|e| e.state.in_flight()).max().unwrap();
        let min = eps.iter().map(|e| e.state.in_flight()).min().unwrap();
        assert!(max - min <= 3, "{choices:?}: spread {min}..{max}");
        drop(guards);
    }
}

#[test]
fn skips_unhealthy() {
    for choices in [ChoiceCount::Sample(2), ChoiceCount::All] {
        let eps = endpoints(&[1, 1, 1, 1, 1]);
        eps[0].state.set_healthy(false, 0);
        eps[2].state.set_healthy(false, 0);
        let lr = balancer(&eps, choices, 1.0);
        let got = shares(&lr, eps.len(), 3_000);
        assert_eq!((got[0], got[2]), (0, 0), "{choices:?}: {got:?}");
        for e in &eps {
            e.state.set_healthy(false, 0);
        }
        let lr = LeastRequest::new(
            &eps,
            &context(1),
            &CommonOptions {
                panic_threshold: 0,
                ..CommonOptions::default()
            },
            &LeastRequestConfig::default(),
        );
        assert_eq!(lr.pick(&PickContext::default()), None);
    }
}

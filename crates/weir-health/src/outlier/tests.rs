#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests: a panic is a failed assertion"
)]

//! Outlier detection simulated with a manual clock: streak ejections, re-admission on time,
//! growing ejection times, the max-ejection cap and the failure-percentage detector.

use std::sync::Arc;
use std::time::Duration;

use weir_balance::SeededRandom;
use weir_config::{FailurePercentageConfig, OutlierDetectionConfig};
use weir_core::{Clock, Endpoint, ManualClock, PassiveOutcome, Unhealthy, nanos};

use super::{EjectionReason, OutlierDetector};

const BASE: Duration = Duration::from_secs(30);
const JITTER: Duration = Duration::from_secs(2);

fn config() -> OutlierDetectionConfig {
    OutlierDetectionConfig {
        consecutive_5xx: 0,
        consecutive_gateway_errors: 3,
        consecutive_connect_failures: 3,
        base_ejection_time: weir_config::ConfigDuration(BASE),
        max_ejection_time: Some(weir_config::ConfigDuration(Duration::from_secs(75))),
        ejection_jitter: weir_config::ConfigDuration(JITTER),
        ..OutlierDetectionConfig::default()
    }
}

fn detector(n: usize, config: OutlierDetectionConfig, clock: &ManualClock) -> OutlierDetector {
    let endpoints = (0..n)
        .map(|i| {
            let port = 9000 + u16::try_from(i).unwrap_or(0);
            Arc::new(Endpoint::new(([127, 0, 0, 1], port).into(), 1))
        })
        .collect();
    OutlierDetector::new(
        Arc::from("api"),
        config,
        endpoints,
        Arc::new(SeededRandom::new(7)),
        clock.now(),
        None,
    )
}

fn ejected(d: &OutlierDetector, i: usize) -> bool {
    d.endpoints[i].state.health().contains(Unhealthy::Ejected)
}

#[test]
fn three_consecutive_503s_eject_and_the_ejection_ends_on_time() {
    let clock = ManualClock::new(Duration::from_secs(1));
    let d = detector(4, config(), &clock);
    let now = clock.now();
    assert!(d.record(0, PassiveOutcome::Status5xx(503), now).is_none());
    assert!(d.record(0, PassiveOutcome::Status5xx(503), now).is_none());
    let e = d.record(0, PassiveOutcome::Status5xx(503), now);
    let e = e.unwrap_or_else(|| panic!("the third 503 ejects"));
    assert_eq!(e.reason, EjectionReason::ConsecutiveGateway(3));
    assert!(
        e.duration >= BASE && e.duration < BASE + JITTER,
        "{:?}",
        e.duration
    );
    assert!(ejected(&d, 0) && !d.endpoints[0].state.is_healthy());
    assert_eq!(d.ejected_count(), 1);

    // Still out one tick before the ejection ends, back in at the end.
    let report = d.sweep(now + nanos(e.duration) - 1);
    assert!(report.readmitted.is_empty());
    assert_eq!(
        report.next_due,
        now + nanos(e.duration),
        "the sweep wakes at the deadline"
    );
    let report = d.sweep(now + nanos(e.duration));
    assert_eq!(report.readmitted, vec![d.endpoints[0].address]);
    assert!(d.endpoints[0].state.is_healthy());
    assert_eq!(d.ejected_count(), 0);
}

#[test]
fn a_success_between_failures_resets_the_streak() {
    let clock = ManualClock::new(Duration::from_secs(1));
    let d = detector(2, config(), &clock);
    let now = clock.now();
    for _ in 0..10 {
        assert!(d.record(0, PassiveOutcome::Status5xx(503), now).is_none());
        assert!(d.record(0, PassiveOutcome::Status5xx(503), now).is_none());
        assert!(d.record(0, PassiveOutcome::Success, now).is_none());
    }
    assert!(!ejected(&d, 0));
}

#[test]
fn three_connect_failures_eject() {
    let clock = ManualClock::new(Duration::from_secs(1));
    let d = detector(2, config(), &clock);
    let now = clock.now();
    d.record(1, PassiveOutcome::ConnectFailure, now);
    d.record(1, PassiveOutcome::ConnectFailure, now);
    let e = d.record(1, PassiveOutcome::ConnectFailure, now);
    assert_eq!(
        e.map(|e| e.reason),
        Some(EjectionReason::ConsecutiveConnect(3))
    );
}

#[test]
fn consecutive_5xx_counts_any_5xx() {
    let clock = ManualClock::new(Duration::from_secs(1));
    let cfg = OutlierDetectionConfig {
        consecutive_5xx: 3,
        ..config()
    };
    let d = detector(2, cfg, &clock);
    let now = clock.now();
    d.record(0, PassiveOutcome::Status5xx(500), now);
    d.record(0, PassiveOutcome::Status5xx(501), now);
    let e = d.record(0, PassiveOutcome::LocalGateway, now);
    assert_eq!(e.map(|e| e.reason), Some(EjectionReason::Consecutive5xx(3)));
}

#[test]
fn max_ejection_percent_keeps_half_of_four_failing_endpoints() {
    let clock = ManualClock::new(Duration::from_secs(1));
    let d = detector(4, config(), &clock);
    let now = clock.now();
    for _ in 0..20 {
        for i in 0..4 {
            d.record(i, PassiveOutcome::ConnectFailure, now);
        }
    }
    assert_eq!(d.ejected_count(), 2);
    assert_eq!((0..4).filter(|&i| ejected(&d, i)).count(), 2);
}

#[test]
fn a_lone_endpoint_is_never_ejected_at_the_default_cap() {
    let clock = ManualClock::new(Duration::from_secs(1));
    let d = detector(1, config(), &clock);
    for _ in 0..10 {
        d.record(0, PassiveOutcome::ConnectFailure, clock.now());
    }
    assert!(!ejected(&d, 0));
}

#[test]
fn ejection_time_grows_with_each_ejection_up_to_the_cap_and_decays() {
    let clock = ManualClock::new(Duration::from_secs(1));
    let cfg = OutlierDetectionConfig {
        ejection_jitter: weir_config::ConfigDuration(Duration::ZERO),
        interval: weir_config::ConfigDuration(Duration::from_secs(1000)),
        ..config()
    };
    let d = detector(2, cfg, &clock);
    let mut times = Vec::new();
    for _ in 0..4 {
        let mut last = None;
        for _ in 0..3 {
            last = d.record(0, PassiveOutcome::ConnectFailure, clock.now());
        }
        let e = last.unwrap_or_else(|| panic!("three failures eject"));
        times.push(e.duration.as_secs());
        clock.advance(e.duration);
        assert_eq!(d.sweep(clock.now()).readmitted.len(), 1);
    }
    assert_eq!(
        times,
        vec![30, 60, 75, 75],
        "base × n, capped at max_ejection_time"
    );

    // A quiet interval takes one step off the multiplier.
    assert_eq!(d.endpoints[0].state.passive.ejection_multiplier(), 4);
    clock.advance(Duration::from_secs(1000));
    d.sweep(clock.now());
    assert_eq!(d.endpoints[0].state.passive.ejection_multiplier(), 3);
}

#[test]
fn failure_percentage_ejects_only_with_enough_volume_and_endpoints() {
    let clock = ManualClock::new(Duration::from_secs(1));
    let cfg = OutlierDetectionConfig {
        consecutive_gateway_errors: 0,
        consecutive_connect_failures: 0,
        failure_percentage: Some(FailurePercentageConfig {
            threshold: 50,
            request_volume: 20,
            minimum_endpoints: 3,
        }),
        ..config()
    };
    let d = detector(4, cfg, &clock);
    let now = clock.now();
    // Endpoint 0 fails 60 % of 30, endpoint 1 fails 60 % of only 10, the rest succeed.
    for k in 0..30 {
        let fail = k % 5 < 3;
        let outcome = if fail {
            PassiveOutcome::Status5xx(500)
        } else {
            PassiveOutcome::Success
        };
        d.record(0, outcome, now);
        if k < 10 {
            d.record(1, outcome, now);
        }
        d.record(2, PassiveOutcome::Success, now);
    }
    assert!(
        d.sweep(now + 1).ejected.is_empty(),
        "no interval has passed"
    );
    clock.advance(Duration::from_secs(10));
    let report = d.sweep(clock.now());
    let who: Vec<_> = report.ejected.iter().map(|e| e.endpoint).collect();
    assert_eq!(who, vec![d.endpoints[0].address]);
    assert_eq!(
        report.ejected[0].reason,
        EjectionReason::FailurePercentage {
            failed: 18,
            total: 30
        }
    );

    // With fewer endpoints than minimum_endpoints the detector stays quiet.
    let cfg = OutlierDetectionConfig {
        failure_percentage: Some(FailurePercentageConfig {
            threshold: 50,
            request_volume: 1,
            minimum_endpoints: 5,
        }),
        ..config()
    };
    let d = detector(4, cfg, &clock);
    d.record(0, PassiveOutcome::Status5xx(500), clock.now());
    clock.advance(Duration::from_secs(10));
    assert!(d.sweep(clock.now()).ejected.is_empty());
}

#[test]
fn a_stale_streak_cannot_eject_again_between_readmission_steps() {
    let clock = ManualClock::new(Duration::from_secs(1));
    let d = detector(4, config(), &clock);
    let now = clock.now();
    for _ in 0..3 {
        d.record(0, PassiveOutcome::ConnectFailure, now);
    }
    let until = d.endpoints[0].state.passive.ejected_until();
    assert!(until > now);
    // A failure from a request that was still in flight while the endpoint was out.
    d.record(0, PassiveOutcome::ConnectFailure, now);
    clock.advance(Duration::from_secs(40));
    let report = d.sweep(clock.now());
    assert_eq!(report.readmitted.len(), 1);
    assert_eq!(
        d.endpoints[0].state.passive.streaks().consecutive_connect,
        0
    );
    assert_eq!(d.ejected_count(), 0);
    // Ejected again later, it is again re-admitted on schedule (never stuck with no deadline).
    for _ in 0..3 {
        d.record(0, PassiveOutcome::ConnectFailure, clock.now());
    }
    assert!(d.endpoints[0].state.passive.ejected_until() > clock.now());
    clock.advance(Duration::from_secs(120));
    assert_eq!(d.sweep(clock.now()).readmitted.len(), 1);
    assert_eq!(d.ejected_count(), 0);
}

#[test]
fn detectors_of_successive_snapshots_share_one_count() {
    let clock = ManualClock::new(Duration::from_secs(1));
    let old = detector(4, config(), &clock);
    let new = OutlierDetector::new(
        Arc::from("api"),
        config(),
        old.endpoints.clone(),
        Arc::new(SeededRandom::new(8)),
        clock.now(),
        Some(&old),
    );
    // A request still on the old snapshot ejects; the new snapshot's sweeper re-admits.
    for _ in 0..3 {
        old.record(0, PassiveOutcome::ConnectFailure, clock.now());
    }
    assert_eq!(new.ejected_count(), 1);
    clock.advance(Duration::from_secs(40));
    assert_eq!(new.sweep(clock.now()).readmitted.len(), 1);
    assert_eq!((old.ejected_count(), new.ejected_count()), (0, 0));
}

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests: a panic is a failed assertion"
)]

//! The checker's timing and hysteresis under paused tokio time, with scripted probes (no
//! sockets): thresholds, flap bounds, spreading, traffic skips and reconciliation.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;
use weir_balance::SeededRandom;
use weir_config::{ConfigDuration, TcpCheckConfig};
use weir_core::{HealthFlags, Nanos, PassiveOutcome, Unhealthy, nanos};
use weir_test_support::wait_until;

use super::*;
use crate::ProbeResult;
use crate::probe::ProbeFuture;

/// Monotonic time read from tokio's clock, so it pauses and advances with the test.
#[derive(Debug)]
struct TokioClock {
    start: Instant,
}

/// Decides whether call `n` (0-based, per address) of `addr` passes.
type Decide = Box<dyn FnMut(SocketAddr, usize) -> bool + Send>;

/// A probe that answers from a script and remembers every call.
struct Script {
    start: Instant,
    decide: Mutex<Decide>,
    calls: Mutex<Vec<Call>>,
    endpoints: Vec<Arc<Endpoint>>,
}

/// One scripted probe call.
#[derive(Debug, Clone, Copy)]
struct Call {
    addr: SocketAddr,
    /// Time since the script was made.
    at: Duration,
    /// The endpoint's health when the call started (after every earlier result).
    before: HealthFlags,
}

impl TokioClock {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            start: Instant::now(),
        })
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Nanos {
        nanos(self.start.elapsed()) + 1
    }
}

impl Script {
    fn new(
        endpoints: &[Arc<Endpoint>],
        decide: impl FnMut(SocketAddr, usize) -> bool + Send + 'static,
    ) -> Arc<Self> {
        Arc::new(Self {
            start: Instant::now(),
            decide: Mutex::new(Box::new(decide)),
            calls: Mutex::new(Vec::new()),
            endpoints: endpoints.to_vec(),
        })
    }

    /// The calls made against `addr`, in order.
    fn calls(&self, addr: SocketAddr) -> Vec<Call> {
        let calls = self.calls.lock().unwrap();
        calls.iter().filter(|c| c.addr == addr).copied().collect()
    }

    fn count(&self, addr: SocketAddr) -> usize {
        self.calls(addr).len()
    }

    /// A checker probing with this script.
    fn checker(self: &Arc<Self>, clock: Arc<TokioClock>, seed: u64) -> HealthChecker {
        let script = Arc::clone(self);
        HealthChecker::with_probes(
            clock,
            Arc::new(SeededRandom::new(seed)),
            Arc::new(move |_: &CheckTarget| Arc::clone(&script) as Arc<dyn Probe>),
        )
    }
}

impl Probe for Script {
    fn probe(&self, addr: SocketAddr) -> ProbeFuture<'_> {
        let n = self.count(addr);
        let pass = (self.decide.lock().unwrap())(addr, n);
        let before = self
            .endpoints
            .iter()
            .find(|e| e.address == addr)
            .map(|e| e.state.health())
            .unwrap();
        self.calls.lock().unwrap().push(Call {
            addr,
            at: self.start.elapsed(),
            before,
        });
        let detail = if pass {
            "scripted pass"
        } else {
            "scripted failure"
        };
        Box::pin(async move {
            ProbeResult {
                success: pass,
                detail: detail.to_owned(),
                latency: Duration::ZERO,
            }
        })
    }
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn endpoint(port: u16) -> Arc<Endpoint> {
    Arc::new(Endpoint::new(SocketAddr::from(([127, 0, 0, 1], port)), 1))
}

/// A TCP check every `interval` (no jitter), rise 2, fall 3.
fn config(interval: Duration) -> HealthCheckConfig {
    HealthCheckConfig {
        interval: ConfigDuration(interval),
        unhealthy_interval: None,
        timeout: ConfigDuration(secs(1)),
        jitter: ConfigDuration(Duration::ZERO),
        healthy_threshold: 2,
        unhealthy_threshold: 3,
        skip_when_traffic_healthy: false,
        start_healthy: false,
        http: None,
        tcp: Some(TcpCheckConfig::default()),
        grpc: None,
        udp: None,
    }
}

fn target(config: &HealthCheckConfig, endpoints: &[Arc<Endpoint>]) -> CheckTarget {
    CheckTarget {
        tls: None,
        cluster: Arc::from("backend"),
        config: config.clone(),
        protocol: UpstreamProtocol::Http1,
        endpoints: endpoints.to_vec(),
    }
}

fn assert_near(actual: Duration, expected: Duration) {
    let diff = actual.abs_diff(expected);
    assert!(
        diff <= Duration::from_millis(2),
        "{actual:?} is not {expected:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn goes_down_after_unhealthy_threshold_failures_and_up_after_healthy_threshold_passes() {
    let e = endpoint(1);
    let a = e.address;
    // Calls 0-2 pass, 3-7 fail, the rest pass.
    let script = Script::new(std::slice::from_ref(&e), |_, n| !(3..8).contains(&n));
    let mut checker = script.checker(TokioClock::new(), 7);
    let mut cfg = config(secs(5));
    cfg.unhealthy_interval = Some(ConfigDuration(secs(2)));
    checker.reconcile(vec![target(&cfg, std::slice::from_ref(&e))]);
    assert!(wait_until(secs(120), || script.count(a) >= 12).await);

    let calls = script.calls(a);
    let flagged = |i: usize| calls[i].before.contains(Unhealthy::ActiveCheck);
    assert!((0..=5).all(|i| !flagged(i)), "still up after two failures");
    assert!(flagged(6), "down right after the third failure (call 5)");
    // The three failures span two intervals: down within `unhealthy_threshold` intervals.
    assert_near(calls[5].at - calls[3].at, secs(10));
    // While down, the unhealthy interval applies.
    assert_near(calls[6].at - calls[5].at, secs(2));
    assert_near(calls[7].at - calls[6].at, secs(2));
    // Passes at calls 8 and 9 bring it back.
    assert!((6..=9).all(flagged), "still down after one pass");
    assert!(!flagged(10), "up right after the second pass (call 9)");
    assert_near(calls[11].at - calls[10].at, secs(5));

    let last = e.state.check.last().unwrap();
    assert!(last.success);
    assert_eq!(last.detail, "scripted pass");
    assert_eq!(e.state.check.counts().1, 5);
}

#[tokio::test(start_paused = true)]
async fn a_flapping_endpoint_changes_state_at_most_six_times_a_minute() {
    let e = endpoint(1);
    let a = e.address;
    let coin = SeededRandom::new(42);
    let script = Script::new(std::slice::from_ref(&e), move |_, _| {
        coin.next_u64() & 1 == 0
    });
    let mut checker = script.checker(TokioClock::new(), 3);
    // Defaults: every 5s, rise 2, fall 3.
    checker.reconcile(vec![target(&config(secs(5)), std::slice::from_ref(&e))]);
    tokio::time::sleep(secs(600)).await;

    let calls = script.calls(a);
    assert!(calls.len() >= 115, "{} checks in 10 minutes", calls.len());
    // A change caused by call i shows as a different health at call i + 1.
    let changes: Vec<Duration> = calls
        .windows(2)
        .filter(|w| w[0].before.is_healthy() != w[1].before.is_healthy())
        .map(|w| w[0].at)
        .collect();
    assert!(changes.len() >= 6, "the script should flap: {changes:?}");
    for &start in &changes {
        let in_window = changes
            .iter()
            .filter(|&&t| t >= start && t <= start + secs(60))
            .count();
        assert!(
            in_window <= 6,
            "{in_window} changes in the minute from {start:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn probes_of_many_endpoints_are_spread_over_the_interval() {
    let endpoints: Vec<_> = (1..=50).map(endpoint).collect();
    let script = Script::new(&endpoints, |_, _| true);
    let mut checker = script.checker(TokioClock::new(), 11);
    checker.reconcile(vec![target(&config(secs(5)), &endpoints)]);
    tokio::time::sleep(secs(6)).await;

    let mut second: Vec<Duration> = Vec::new();
    for e in &endpoints {
        let calls = script.calls(e.address);
        assert_eq!(calls[0].at, Duration::ZERO, "the first round runs at once");
        assert!(
            calls[1].at <= secs(5),
            "the second round lies in the interval"
        );
        second.push(calls[1].at);
    }
    second.sort();
    second.dedup();
    assert!(
        second.len() > 40,
        "second-round probes bunch up: {second:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn skip_when_traffic_healthy_suppresses_probes_while_traffic_succeeds() {
    let e = endpoint(1);
    let a = e.address;
    let clock = TokioClock::new();
    let script = Script::new(std::slice::from_ref(&e), |_, _| true);
    let mut checker = script.checker(Arc::clone(&clock), 5);
    let mut cfg = config(secs(5));
    cfg.skip_when_traffic_healthy = true;

    let traffic = {
        let (e, clock) = (Arc::clone(&e), Arc::clone(&clock));
        tokio::spawn(async move {
            for _ in 0..60 {
                e.state.passive.record(PassiveOutcome::Success, clock.now());
                tokio::time::sleep(secs(1)).await;
            }
        })
    };
    checker.reconcile(vec![target(&cfg, std::slice::from_ref(&e))]);
    traffic.await.unwrap();

    let probed = script.count(a);
    let (checks, _) = e.state.check.counts();
    assert!(probed <= 2, "{probed} probes ran while traffic succeeded");
    assert!(checks >= 11, "only {checks} checks recorded");
    let last = e.state.check.last().unwrap();
    assert!(last.success);
    assert_eq!(last.detail, "skipped: traffic healthy");
    assert_eq!(last.latency, Duration::ZERO);

    // Without traffic the probes resume.
    tokio::time::sleep(secs(30)).await;
    assert!(script.count(a) >= probed + 4);
    assert_eq!(e.state.check.last().unwrap().detail, "scripted pass");
}

#[tokio::test(start_paused = true)]
async fn a_failure_streak_in_traffic_does_not_skip_the_probe() {
    let e = endpoint(1);
    let clock = TokioClock::new();
    let script = Script::new(std::slice::from_ref(&e), |_, _| true);
    let mut checker = script.checker(Arc::clone(&clock), 5);
    let mut cfg = config(secs(5));
    cfg.skip_when_traffic_healthy = true;
    let traffic = {
        let (e, clock) = (Arc::clone(&e), Arc::clone(&clock));
        tokio::spawn(async move {
            for _ in 0..60 {
                let passive = &e.state.passive;
                passive.record(PassiveOutcome::Success, clock.now());
                passive.record(PassiveOutcome::Status5xx(503), clock.now());
                tokio::time::sleep(secs(1)).await;
            }
        })
    };
    checker.reconcile(vec![target(&cfg, std::slice::from_ref(&e))]);
    traffic.await.unwrap();
    let (checks, _) = e.state.check.counts();
    assert!(checks >= 11, "only {checks} checks recorded");
    assert_eq!(script.count(e.address) as u64, checks, "every check probed");
}

#[tokio::test(start_paused = true)]
async fn reconcile_keeps_unchanged_tasks_and_stops_removed_ones() {
    let (ea, eb) = (endpoint(1), endpoint(2));
    let (a, b) = (ea.address, eb.address);
    let both = [Arc::clone(&ea), Arc::clone(&eb)];
    // `a` always fails, `b` always passes.
    let script = Script::new(&both, move |addr, _| addr != a);
    let mut checker = script.checker(TokioClock::new(), 9);
    let cfg = config(secs(5));
    checker.reconcile(vec![target(&cfg, &both)]);
    assert_eq!(checker.len(), 2);

    // Two failures: one short of `unhealthy_threshold`.
    assert!(wait_until(secs(10), || script.count(a) == 2).await);
    assert!(ea.state.is_healthy());
    checker.reconcile(vec![target(&cfg, std::slice::from_ref(&ea))]);
    assert_eq!(checker.len(), 1);
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(script.count(a), 2, "an unchanged task is not restarted");

    // The third failure takes it down: the streak survived the reload.
    assert!(wait_until(secs(10), || script.count(a) == 3).await);
    assert!(ea.state.health().contains(Unhealthy::ActiveCheck));
    let b_calls = script.count(b);
    tokio::time::sleep(secs(30)).await;
    assert_eq!(
        script.count(b),
        b_calls,
        "the removed endpoint is not probed"
    );

    // A changed config restarts the task, which probes at once.
    let before = script.count(a);
    let mut slower = cfg.clone();
    slower.interval = ConfigDuration(secs(7));
    checker.reconcile(vec![target(&slower, std::slice::from_ref(&ea))]);
    assert!(wait_until(Duration::from_millis(10), || script.count(a) == before + 1).await);

    // So does a new endpoint state at the same address (removed and re-added).
    let fresh = Arc::new(Endpoint::new(a, 1));
    checker.reconcile(vec![target(&slower, &[fresh])]);
    assert!(wait_until(Duration::from_millis(10), || script.count(a) == before + 2).await);
    assert_eq!(checker.len(), 1);

    checker.shutdown();
    assert!(checker.is_empty());
    let frozen = script.calls.lock().unwrap().len();
    tokio::time::sleep(secs(60)).await;
    assert_eq!(
        script.calls.lock().unwrap().len(),
        frozen,
        "shutdown stops every task"
    );
}

#[tokio::test(start_paused = true)]
async fn dropping_the_checker_stops_its_tasks() {
    let e = endpoint(1);
    let script = Script::new(std::slice::from_ref(&e), |_, _| true);
    let mut checker = script.checker(TokioClock::new(), 1);
    checker.reconcile(vec![target(&config(secs(5)), std::slice::from_ref(&e))]);
    assert!(wait_until(secs(10), || script.count(e.address) >= 2).await);
    drop(checker);
    let frozen = script.count(e.address);
    tokio::time::sleep(secs(60)).await;
    assert_eq!(script.count(e.address), frozen);
}

#[tokio::test(start_paused = true)]
async fn a_new_endpoint_flagged_by_the_data_plane_comes_up_on_its_first_pass() {
    let e = endpoint(1);
    let _ = e.state.set_unhealthy(Unhealthy::ActiveCheck, true, 1);
    let script = Script::new(std::slice::from_ref(&e), |_, _| true);
    let mut checker = script.checker(TokioClock::new(), 1);
    checker.reconcile(vec![target(&config(secs(5)), std::slice::from_ref(&e))]);
    assert!(wait_until(Duration::from_millis(10), || e.state.is_healthy()).await);
    assert_eq!(script.count(e.address), 1);
}

//! The loop that checks one endpoint, forever: wait (spread by [`schedule::next_delay`]),
//! probe (or skip while traffic shows the endpoint healthy), record the result, feed the
//! [`Hysteresis`] and, when it flips, set or clear [`Unhealthy::ActiveCheck`].
//!
//! The loop owns its hysteresis, so the streak towards a flip lives exactly as long as the task:
//! [`crate::HealthChecker::reconcile`] keeps tasks whose config did not change running, and the
//! streak survives a reload.

use std::sync::Arc;
use std::time::SystemTime;

use weir_balance::RandomSource;
use weir_config::HealthCheckConfig;
use weir_core::{CheckResult, Clock, Endpoint, Nanos, Unhealthy};
use weir_health::{Hysteresis, Transition, schedule};

use crate::ProbeResult;
use crate::probe::Probe;

/// Everything the loop of one endpoint needs besides its probe.
#[derive(Debug)]
pub(crate) struct EndpointCheck {
    /// The cluster's name, for logs.
    pub(crate) cluster: Arc<str>,
    /// The endpoint checked; its state receives the verdicts.
    pub(crate) endpoint: Arc<Endpoint>,
    /// Timing, thresholds and the skip rule.
    pub(crate) config: HealthCheckConfig,
    /// Clock for traffic comparisons and health changes.
    pub(crate) clock: Arc<dyn Clock>,
    /// Randomness that spreads the probes.
    pub(crate) random: Arc<dyn RandomSource>,
}

// === impl EndpointCheck ===

impl EndpointCheck {
    /// Checks the endpoint until the task is aborted.
    pub(crate) async fn run<P: Probe + ?Sized>(self, probe: Arc<P>) {
        let state = &self.endpoint.state;
        let healthy = !state.health().contains(Unhealthy::ActiveCheck);
        let mut hysteresis = Hysteresis::new(
            healthy,
            self.config.healthy_threshold,
            self.config.unhealthy_threshold,
        );
        let mut previous: Option<Nanos> = None;
        let mut done: u64 = 0;
        loop {
            let interval = if hysteresis.is_healthy() {
                self.config.interval.get()
            } else {
                self.config.unhealthy_interval()
            };
            let jitter = self.config.jitter.get();
            let delay = schedule::next_delay(done, interval, jitter, self.random.next_u64());
            tokio::time::sleep(delay).await;
            done = done.saturating_add(1);

            let now = self.clock.now();
            let result = match previous {
                // Only a healthy endpoint may skip: traffic to an unhealthy one (panic mode,
                // requests still in flight) must not bring it back without a probe.
                Some(at) if hysteresis.is_healthy() && self.traffic_healthy_since(at) => {
                    ProbeResult::skipped()
                }
                _ => probe.probe(self.endpoint.address).await,
            };
            previous = Some(now);
            self.record(&mut hysteresis, result);
        }
    }

    /// Whether `skip_when_traffic_healthy` applies: a successful exchange after clock reading
    /// `since` (the previous check) and no failure streak.
    fn traffic_healthy_since(&self, since: Nanos) -> bool {
        if !self.config.skip_when_traffic_healthy {
            return false;
        }
        let passive = &self.endpoint.state.passive;
        let streaks = passive.streaks();
        passive.last_success() > since
            && streaks.consecutive_5xx == 0
            && streaks.consecutive_gateway == 0
            && streaks.consecutive_connect == 0
    }

    /// Stores `result`, feeds it to the hysteresis and applies a flip to the endpoint's health.
    fn record(&self, hysteresis: &mut Hysteresis, result: ProbeResult) {
        let state = &self.endpoint.state;
        if !result.success {
            tracing::debug!(
                cluster = %self.cluster,
                endpoint = %self.endpoint.address,
                reason = %result.detail,
                latency = ?result.latency,
                "health check failed"
            );
        }
        let Some(transition) = hysteresis.record(result.success) else {
            state.check.store(check_result(result));
            return;
        };
        let detail = result.detail.clone();
        state.check.store(check_result(result));
        let down = transition == Transition::Down;
        let change = state.set_unhealthy(Unhealthy::ActiveCheck, down, self.clock.now());
        if down {
            tracing::warn!(
                cluster = %self.cluster,
                endpoint = %self.endpoint.address,
                reason = %detail,
                health = %change.after,
                "endpoint marked unhealthy by health check"
            );
        } else {
            tracing::info!(
                cluster = %self.cluster,
                endpoint = %self.endpoint.address,
                reason = %detail,
                health = %change.after,
                "endpoint marked healthy by health check"
            );
        }
    }
}

/// `result` as the [`CheckResult`] operators see, stamped now.
fn check_result(result: ProbeResult) -> CheckResult {
    CheckResult {
        at: SystemTime::now(),
        success: result.success,
        detail: result.detail,
        latency: result.latency,
    }
}

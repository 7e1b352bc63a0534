//! Passive outlier detection: eject endpoints whose live traffic keeps failing.
//!
//! The data plane reports every exchange through [`OutlierDetector::record`]; the streak
//! detectors (consecutive 5xx, gateway errors, connect failures) eject inline, so the request
//! after the third 503 already goes elsewhere. [`OutlierDetector::sweep`] runs from a timer: it
//! re-admits endpoints whose ejection ran out and, once per `interval`, runs the
//! failure-percentage detector and lets the ejection multiplier of well-behaved endpoints decay.
//!
//! An ejection lasts `base_ejection_time × n` (n grows with each ejection, capped at
//! `max_ejection_time`) plus up to `ejection_jitter`. No ejection happens that would put more
//! than `max_ejection_percent` of the cluster out at once, so detection never empties a cluster.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use weir_balance::RandomSource;
use weir_config::OutlierDetectionConfig;
use weir_core::{Endpoint, Nanos, PassiveOutcome, Streaks, Unhealthy, nanos};

use crate::schedule::fraction;

/// The outlier detector of one cluster, shared by every connection of a snapshot.
#[derive(Debug)]
pub struct OutlierDetector {
    cluster: Arc<str>,
    config: OutlierDetectionConfig,
    endpoints: Vec<Arc<Endpoint>>,
    random: Arc<dyn RandomSource>,
    /// Endpoints this cluster has ejected right now (reserved before the flag is set); shared
    /// with the detectors of earlier and later snapshots of the same cluster, since they judge
    /// the same endpoint states.
    ejected: Arc<AtomicUsize>,
    /// Clock reading of the last interval's work (failure percentage, decay).
    last_interval: AtomicU64,
}

/// Why an endpoint was ejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EjectionReason {
    /// This many 5xx answers in a row.
    Consecutive5xx(u32),
    /// This many 502/503/504 answers (or resets, timeouts) in a row.
    ConsecutiveGateway(u32),
    /// This many failed connection attempts in a row.
    ConsecutiveConnect(u32),
    /// `failed` of `total` exchanges in the last interval failed.
    FailurePercentage {
        /// Failed exchanges in the interval.
        failed: u64,
        /// All exchanges in the interval.
        total: u64,
    },
}

/// One ejection that happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ejection {
    /// The ejected endpoint.
    pub endpoint: SocketAddr,
    /// What it did.
    pub reason: EjectionReason,
    /// How long it stays out.
    pub duration: Duration,
    /// How many times it has been ejected, this one included.
    pub ejections_total: u64,
}

/// What one [`OutlierDetector::sweep`] did, and when the next one is due.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SweepReport {
    /// Endpoints whose ejection ended.
    pub readmitted: Vec<SocketAddr>,
    /// Endpoints the failure-percentage detector ejected.
    pub ejected: Vec<Ejection>,
    /// The clock reading at which the next sweep has work to do.
    pub next_due: Nanos,
}

// === impl OutlierDetector ===

impl OutlierDetector {
    /// A detector for `cluster`'s `endpoints`. Endpoints already ejected (state carried over a
    /// reload) count against `max_ejection_percent` and are re-admitted on schedule.
    /// `previous` is the same cluster's detector in the snapshot being replaced: the new one
    /// shares its count of ejected endpoints, so requests still running on the old snapshot
    /// and the sweeper agree with it.
    pub fn new(
        cluster: Arc<str>,
        config: OutlierDetectionConfig,
        endpoints: Vec<Arc<Endpoint>>,
        random: Arc<dyn RandomSource>,
        now: Nanos,
        previous: Option<&OutlierDetector>,
    ) -> Self {
        let count = endpoints
            .iter()
            .filter(|e| e.state.health().contains(Unhealthy::Ejected))
            .count();
        let ejected = previous.map_or_else(
            || Arc::new(AtomicUsize::new(count)),
            |p| Arc::clone(&p.ejected),
        );
        // Endpoints the new config dropped no longer count.
        ejected.store(count, Ordering::Release);
        Self {
            cluster,
            config,
            endpoints,
            random,
            ejected,
            last_interval: AtomicU64::new(now),
        }
    }

    /// The settings this detector runs with.
    pub fn config(&self) -> &OutlierDetectionConfig {
        &self.config
    }

    /// Records how an exchange with endpoint `index` ended; ejects it (and returns the
    /// ejection) when a streak reached its threshold. Lock-free: atomics only.
    pub fn record(&self, index: usize, outcome: PassiveOutcome, now: Nanos) -> Option<Ejection> {
        let endpoint = self.endpoints.get(index)?;
        let streaks = endpoint.state.passive.record(outcome, now);
        if outcome.is_failure() && !endpoint.state.health().contains(Unhealthy::Ejected) {
            let reason = self.streak_reason(streaks)?;
            return self.eject(endpoint, reason, now);
        }
        None
    }

    /// Re-admits endpoints whose ejection ended and, when an interval has passed, runs the
    /// failure-percentage detector and decays multipliers.
    pub fn sweep(&self, now: Nanos) -> SweepReport {
        let mut report = SweepReport::default();
        for endpoint in &self.endpoints {
            let passive = &endpoint.state.passive;
            let until = passive.ejected_until();
            if until != 0
                && until <= now
                && endpoint.state.health().contains(Unhealthy::Ejected)
                && passive.claim_readmission(until)
            {
                let change = endpoint.state.set_unhealthy(Unhealthy::Ejected, false, now);
                if change.flag_changed(Unhealthy::Ejected) {
                    self.release_slot();
                    tracing::info!(
                        cluster = %self.cluster,
                        endpoint = %endpoint.address,
                        health = %change.after,
                        ejections = passive.ejections_total(),
                        "endpoint re-admitted after ejection"
                    );
                    report.readmitted.push(endpoint.address);
                }
            }
        }
        let interval = nanos(self.config.interval.get()).max(1);
        let last = self.last_interval.load(Ordering::Acquire);
        if now.saturating_sub(last) >= interval
            && self
                .last_interval
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.interval_work(now, &mut report);
        }
        let next_interval = self.last_interval.load(Ordering::Acquire) + interval;
        report.next_due = self
            .endpoints
            .iter()
            .filter(|e| e.state.health().contains(Unhealthy::Ejected))
            .map(|e| e.state.passive.ejected_until())
            .filter(|&u| u != 0)
            .fold(next_interval, Nanos::min);
        report
    }

    /// Endpoints currently ejected by this cluster's detector.
    pub fn ejected_count(&self) -> usize {
        self.ejected.load(Ordering::Acquire)
    }

    /// Gives back one ejection slot; saturating, so a count that drifted (an ejection by a
    /// request still running on an older snapshot) can never wrap.
    fn release_slot(&self) {
        let _ = self
            .ejected
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |e| e.checked_sub(1));
    }

    fn interval_work(&self, now: Nanos, report: &mut SweepReport) {
        let fp = self
            .config
            .failure_percentage
            .as_ref()
            .filter(|fp| self.endpoints.len() >= fp.minimum_endpoints as usize);
        for endpoint in &self.endpoints {
            let window = endpoint.state.passive.take_window();
            let ejected = endpoint.state.health().contains(Unhealthy::Ejected);
            if !ejected {
                endpoint.state.passive.decay_multiplier();
            }
            let Some(fp) = fp else { continue };
            if ejected || window.total < u64::from(fp.request_volume) {
                continue;
            }
            if window.failed * 100 >= u64::from(fp.threshold) * window.total {
                let reason = EjectionReason::FailurePercentage {
                    failed: window.failed,
                    total: window.total,
                };
                if let Some(e) = self.eject(endpoint, reason, now) {
                    report.ejected.push(e);
                }
            }
        }
    }

    fn streak_reason(&self, s: Streaks) -> Option<EjectionReason> {
        let hit = |threshold: u32, streak: u32| threshold > 0 && streak >= threshold;
        let c = &self.config;
        if hit(c.consecutive_connect_failures, s.consecutive_connect) {
            Some(EjectionReason::ConsecutiveConnect(s.consecutive_connect))
        } else if hit(c.consecutive_gateway_errors, s.consecutive_gateway) {
            Some(EjectionReason::ConsecutiveGateway(s.consecutive_gateway))
        } else if hit(c.consecutive_5xx, s.consecutive_5xx) {
            Some(EjectionReason::Consecutive5xx(s.consecutive_5xx))
        } else {
            None
        }
    }

    /// Ejects `endpoint` unless that would pass `max_ejection_percent` or it already is.
    fn eject(&self, endpoint: &Endpoint, reason: EjectionReason, now: Nanos) -> Option<Ejection> {
        let total = self.endpoints.len();
        let max = u64::from(self.config.max_ejection_percent.min(100));
        let reserved = self
            .ejected
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |e| {
                ((e as u64 + 1) * 100 <= max * total as u64).then_some(e + 1)
            })
            .is_ok();
        if !reserved {
            tracing::debug!(
                cluster = %self.cluster,
                endpoint = %endpoint.address,
                %reason,
                max_ejection_percent = max,
                "ejection skipped: the cluster is at max_ejection_percent"
            );
            return None;
        }
        let passive = &endpoint.state.passive;
        let n = passive.ejection_multiplier().saturating_add(1);
        let base = self.config.base_ejection_time.get();
        let time = base
            .saturating_mul(n)
            .min(self.config.max_ejection_time().max(base));
        let duration = time + fraction(self.config.ejection_jitter.get(), self.random.next_u64());
        let change = endpoint.state.set_unhealthy(Unhealthy::Ejected, true, now);
        if !change.flag_changed(Unhealthy::Ejected) {
            // Another thread ejected it first; give the reservation back.
            self.release_slot();
            return None;
        }
        passive.note_ejection(now.saturating_add(nanos(duration)));
        passive.reset_streaks();
        let ejection = Ejection {
            endpoint: endpoint.address,
            reason,
            duration,
            ejections_total: passive.ejections_total(),
        };
        tracing::warn!(
            cluster = %self.cluster,
            endpoint = %endpoint.address,
            %reason,
            ejected_for = ?duration,
            ejections = ejection.ejections_total,
            "endpoint ejected"
        );
        Some(ejection)
    }
}

// === impl EjectionReason ===

impl fmt::Display for EjectionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Consecutive5xx(n) => write!(f, "{n} consecutive 5xx"),
            Self::ConsecutiveGateway(n) => write!(f, "{n} consecutive gateway errors"),
            Self::ConsecutiveConnect(n) => write!(f, "{n} consecutive connect failures"),
            Self::FailurePercentage { failed, total } => {
                write!(f, "{failed} of {total} requests failed in the interval")
            }
        }
    }
}

#[cfg(test)]
mod tests;

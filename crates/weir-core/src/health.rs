//! The fused health view of one endpoint, and the passive facts outlier detection reads.
//!
//! An endpoint can be out of rotation for several independent reasons — its active health check
//! fails, outlier detection ejected it, an operator drained it. [`HealthFlags`] keeps each reason
//! as one bit of an atomic, so the checker, the detector and the admin API never overwrite each
//! other's verdict: the endpoint is healthy exactly when no bit is set. [`PassiveStats`] is what
//! the data plane writes after every exchange (streaks of failures, a window of outcomes) and
//! what the outlier detector and `skip_when_traffic_healthy` read. [`CheckRecord`] keeps the last
//! active check result for operators; it is written off the data path, so a plain mutex is fine.

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use crate::Nanos;

/// One reason an endpoint is out of rotation; several can hold at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Unhealthy {
    /// The active health check failed `unhealthy_threshold` times (or has not passed yet).
    ActiveCheck = 1,
    /// Passive outlier detection ejected the endpoint for a while.
    Ejected = 2,
    /// An operator drained the endpoint: no new requests, running ones finish.
    Drained = 4,
}

/// The set of [`Unhealthy`] reasons that currently hold, as a bit set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HealthFlags(pub u8);

/// What one [`crate::EndpointState::set_unhealthy`] call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "tells whether the call changed anything"]
pub struct HealthChange {
    /// The reasons that held before.
    pub before: HealthFlags,
    /// The reasons that hold now.
    pub after: HealthFlags,
}

/// How an exchange with an endpoint ended, as outlier detection classifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassiveOutcome {
    /// The endpoint answered (any status below 500) or accepted the connection.
    Success,
    /// The endpoint answered with this 5xx status.
    Status5xx(u16),
    /// The exchange broke after connecting: reset, protocol error or response timeout. Counted as
    /// a gateway error (the client sees 502 or 504).
    LocalGateway,
    /// The connection could not be established: refused, unreachable or timed out.
    ConnectFailure,
}

/// Which streaks an outcome extended, for the detector to compare with its thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Streaks {
    /// Consecutive 5xx answers (local gateway errors included, as Envoy counts them).
    pub consecutive_5xx: u32,
    /// Consecutive 502/503/504 answers and local gateway errors.
    pub consecutive_gateway: u32,
    /// Consecutive failed connection attempts.
    pub consecutive_connect: u32,
}

/// Lock-free counters the data plane updates after every exchange with the endpoint.
#[derive(Debug, Default)]
pub struct PassiveStats {
    consecutive_5xx: AtomicU32,
    consecutive_gateway: AtomicU32,
    consecutive_connect: AtomicU32,
    window_total: AtomicU64,
    window_failed: AtomicU64,
    last_success: AtomicU64,
    ejections_total: AtomicU64,
    ejection_multiplier: AtomicU32,
    ejected_until: AtomicU64,
}

/// A window's worth of outcomes, taken (and reset) by the failure-percentage detector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WindowCounts {
    /// Exchanges that ended in the window.
    pub total: u64,
    /// Of those, the ones that failed (5xx, gateway or connect failure).
    pub failed: u64,
}

/// The result of one active health check, kept for operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    /// Wall-clock time the check finished.
    pub at: SystemTime,
    /// Whether it passed.
    pub success: bool,
    /// What was seen: `200 OK`, `connection refused`, `timed out after 1s`, `skipped: traffic
    /// healthy`.
    pub detail: String,
    /// How long the probe took.
    pub latency: Duration,
}

/// The last active check result of an endpoint, and how many were run.
#[derive(Debug, Default)]
pub struct CheckRecord {
    last: Mutex<Option<CheckResult>>,
    total: AtomicU64,
    failed: AtomicU64,
}

// === impl Unhealthy ===

impl Unhealthy {
    /// Every reason, in bit order.
    pub const ALL: [Unhealthy; 3] = [Self::ActiveCheck, Self::Ejected, Self::Drained];

    /// The name used in logs and the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ActiveCheck => "failed_active_check",
            Self::Ejected => "ejected",
            Self::Drained => "drained",
        }
    }
}

impl fmt::Display for Unhealthy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl HealthFlags ===

impl HealthFlags {
    /// Whether no reason holds.
    pub fn is_healthy(self) -> bool {
        self.0 == 0
    }

    /// Whether `reason` holds.
    pub fn contains(self, reason: Unhealthy) -> bool {
        self.0 & reason as u8 != 0
    }

    /// The reasons that hold, in bit order.
    pub fn reasons(self) -> impl Iterator<Item = Unhealthy> {
        Unhealthy::ALL
            .into_iter()
            .filter(move |r| self.contains(*r))
    }
}

impl fmt::Display for HealthFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_healthy() {
            return f.write_str("healthy");
        }
        for (i, r) in self.reasons().enumerate() {
            if i > 0 {
                f.write_str("+")?;
            }
            f.write_str(r.as_str())?;
        }
        Ok(())
    }
}

pub(crate) fn set_flag(
    flags: &AtomicU8,
    reason: Unhealthy,
    on: bool,
) -> (HealthFlags, HealthFlags) {
    let bit = reason as u8;
    let before = if on {
        flags.fetch_or(bit, Ordering::AcqRel)
    } else {
        flags.fetch_and(!bit, Ordering::AcqRel)
    };
    let after = if on { before | bit } else { before & !bit };
    (HealthFlags(before), HealthFlags(after))
}

// === impl HealthChange ===

impl HealthChange {
    /// Whether the endpoint went from healthy to unhealthy or back.
    pub fn health_changed(self) -> bool {
        self.before.is_healthy() != self.after.is_healthy()
    }

    /// Whether this call set or cleared `reason` (false when it already was as asked).
    pub fn flag_changed(self, reason: Unhealthy) -> bool {
        self.before.contains(reason) != self.after.contains(reason)
    }
}

// === impl PassiveOutcome ===

impl PassiveOutcome {
    /// Classifies an HTTP status: 5xx counts against the endpoint, anything else is success.
    pub fn of_status(status: u16) -> Self {
        if (500..600).contains(&status) {
            Self::Status5xx(status)
        } else {
            Self::Success
        }
    }

    /// Whether the outcome counts as a failure in the failure-percentage window.
    pub fn is_failure(self) -> bool {
        !matches!(self, Self::Success)
    }
}

// === impl PassiveStats ===

impl PassiveStats {
    /// Records one outcome at clock reading `now` and returns the streaks it left.
    ///
    /// A success ends every streak. A 5xx ends the connect streak (the endpoint was reachable);
    /// a connect failure leaves the 5xx streaks alone, since it says nothing about answers.
    pub fn record(&self, outcome: PassiveOutcome, now: Nanos) -> Streaks {
        self.window_total.fetch_add(1, Ordering::Relaxed);
        if outcome.is_failure() {
            self.window_failed.fetch_add(1, Ordering::Relaxed);
        }
        let bump = |c: &AtomicU32| c.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        let reset = |c: &AtomicU32| {
            // Skip the write when already zero: the common case stays a read of a shared line.
            if c.load(Ordering::Relaxed) != 0 {
                c.store(0, Ordering::Relaxed);
            }
            0
        };
        match outcome {
            PassiveOutcome::Success => {
                if self.last_success.load(Ordering::Relaxed) < now {
                    self.last_success.store(now, Ordering::Relaxed);
                }
                Streaks {
                    consecutive_5xx: reset(&self.consecutive_5xx),
                    consecutive_gateway: reset(&self.consecutive_gateway),
                    consecutive_connect: reset(&self.consecutive_connect),
                }
            }
            PassiveOutcome::Status5xx(status) => Streaks {
                consecutive_5xx: bump(&self.consecutive_5xx),
                consecutive_gateway: if matches!(status, 502..=504) {
                    bump(&self.consecutive_gateway)
                } else {
                    reset(&self.consecutive_gateway)
                },
                consecutive_connect: reset(&self.consecutive_connect),
            },
            PassiveOutcome::LocalGateway => Streaks {
                consecutive_5xx: bump(&self.consecutive_5xx),
                consecutive_gateway: bump(&self.consecutive_gateway),
                consecutive_connect: reset(&self.consecutive_connect),
            },
            PassiveOutcome::ConnectFailure => Streaks {
                consecutive_5xx: self.consecutive_5xx.load(Ordering::Relaxed),
                consecutive_gateway: self.consecutive_gateway.load(Ordering::Relaxed),
                consecutive_connect: bump(&self.consecutive_connect),
            },
        }
    }

    /// The current streaks.
    pub fn streaks(&self) -> Streaks {
        Streaks {
            consecutive_5xx: self.consecutive_5xx.load(Ordering::Relaxed),
            consecutive_gateway: self.consecutive_gateway.load(Ordering::Relaxed),
            consecutive_connect: self.consecutive_connect.load(Ordering::Relaxed),
        }
    }

    /// Ends every streak (after an ejection, so the endpoint starts over when re-admitted).
    pub fn reset_streaks(&self) {
        self.consecutive_5xx.store(0, Ordering::Relaxed);
        self.consecutive_gateway.store(0, Ordering::Relaxed);
        self.consecutive_connect.store(0, Ordering::Relaxed);
    }

    /// Takes the window's counts and starts a new window.
    pub fn take_window(&self) -> WindowCounts {
        WindowCounts {
            total: self.window_total.swap(0, Ordering::Relaxed),
            failed: self.window_failed.swap(0, Ordering::Relaxed),
        }
    }

    /// Clock reading of the last successful exchange; 0 when there was none.
    pub fn last_success(&self) -> Nanos {
        self.last_success.load(Ordering::Relaxed)
    }

    /// How many times outlier detection ejected the endpoint, ever.
    pub fn ejections_total(&self) -> u64 {
        self.ejections_total.load(Ordering::Relaxed)
    }

    /// The multiplier of the base ejection time the next ejection will use, minus one: it grows
    /// with each ejection and decays while the endpoint behaves.
    pub fn ejection_multiplier(&self) -> u32 {
        self.ejection_multiplier.load(Ordering::Relaxed)
    }

    /// Clock reading until which the endpoint stays ejected; 0 when it is not ejected.
    pub fn ejected_until(&self) -> Nanos {
        self.ejected_until.load(Ordering::Relaxed)
    }

    /// Records an ejection lasting until `until`; returns the new multiplier.
    pub fn note_ejection(&self, until: Nanos) -> u32 {
        self.ejections_total.fetch_add(1, Ordering::Relaxed);
        self.ejected_until.store(until, Ordering::Relaxed);
        self.ejection_multiplier
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1)
    }

    /// Records the end of an ejection.
    pub fn note_readmission(&self) {
        self.ejected_until.store(0, Ordering::Relaxed);
        self.reset_streaks();
    }

    /// Claims the end of the ejection that lasts until `until`: `true` for exactly one caller,
    /// and only while no newer ejection replaced it. The winner re-admits; streaks are reset
    /// before it clears the ejected reason, so a stale streak cannot eject again at once.
    pub fn claim_readmission(&self, until: Nanos) -> bool {
        let claimed = self
            .ejected_until
            .compare_exchange(until, 0, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok();
        if claimed {
            self.reset_streaks();
        }
        claimed
    }

    /// Lowers the multiplier by one (an interval passed without an ejection).
    pub fn decay_multiplier(&self) {
        let _ = self
            .ejection_multiplier
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |m| m.checked_sub(1));
    }
}

// === impl CheckRecord ===

impl CheckRecord {
    /// Stores `result` as the last one.
    pub fn store(&self, result: CheckResult) {
        self.total.fetch_add(1, Ordering::Relaxed);
        if !result.success {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        // A poisoned lock only means a writer panicked mid-store; the value is still usable.
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        *last = Some(result);
    }

    /// The last result, if any check ran.
    pub fn last(&self) -> Option<CheckResult> {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Checks run so far, and how many of them failed.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.total.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaks_follow_outcomes() {
        let p = PassiveStats::default();
        assert_eq!(
            p.record(PassiveOutcome::Status5xx(503), 1)
                .consecutive_gateway,
            1
        );
        assert_eq!(
            p.record(PassiveOutcome::Status5xx(500), 2)
                .consecutive_gateway,
            0
        );
        let s = p.record(PassiveOutcome::LocalGateway, 3);
        assert_eq!((s.consecutive_5xx, s.consecutive_gateway), (3, 1));
        let s = p.record(PassiveOutcome::ConnectFailure, 4);
        assert_eq!((s.consecutive_5xx, s.consecutive_connect), (3, 1));
        let s = p.record(PassiveOutcome::Status5xx(502), 5);
        assert_eq!(
            s.consecutive_connect, 0,
            "an answer ends the connect streak"
        );
        assert_eq!(p.record(PassiveOutcome::Success, 6), Streaks::default());
        assert_eq!(p.last_success(), 6);
        assert_eq!(
            p.take_window(),
            WindowCounts {
                total: 6,
                failed: 5
            }
        );
        assert_eq!(p.take_window(), WindowCounts::default());
    }

    #[test]
    fn multiplier_grows_and_decays_to_zero() {
        let p = PassiveStats::default();
        assert_eq!(p.note_ejection(10), 1);
        assert_eq!(p.note_ejection(20), 2);
        assert_eq!(p.ejections_total(), 2);
        p.decay_multiplier();
        p.decay_multiplier();
        p.decay_multiplier();
        assert_eq!(p.ejection_multiplier(), 0);
        p.note_readmission();
        assert_eq!(p.ejected_until(), 0);
    }

    #[test]
    fn flags_display_every_reason() {
        assert_eq!(HealthFlags(0).to_string(), "healthy");
        assert_eq!(HealthFlags(3).to_string(), "failed_active_check+ejected");
        assert!(HealthFlags(4).contains(Unhealthy::Drained));
    }
}

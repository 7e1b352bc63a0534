//! Endpoints and their live state.
//!
//! An [`Endpoint`] is the immutable description of one upstream address (what the config or
//! discovery said). Its [`EndpointState`] holds the facts that change while requests flow —
//! health, in-flight requests, totals — as atomics, so the data plane updates them without locks
//! and a config reload can carry the same `Arc<EndpointState>` over to the new snapshot.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use crate::endpoint_stats::{ErrorCounts, ResponseLatency};
use crate::health::{CheckRecord, HealthChange, HealthFlags, PassiveStats, Unhealthy, set_flag};

/// Bumped whenever any endpoint's health actually changes (process-wide); see
/// [`health_generation`].
static HEALTH_GENERATION: AtomicU64 = AtomicU64::new(0);

/// A process-wide counter that [`EndpointState::set_unhealthy`] bumps whenever some endpoint's
/// health actually changes (setting a reason that already holds, or a second reason on an
/// already unhealthy endpoint, does not).
///
/// Balancers cache the generation they last derived their eligible set from and recompute it
/// when this differs: one relaxed load per pick on the fast path. A balancer that reads the
/// generation *before* reading endpoints' health never misses a change: any later flip bumps
/// it again.
#[inline]
pub fn health_generation() -> u64 {
    HEALTH_GENERATION.load(Ordering::Acquire)
}

/// One upstream address with its balancing weight.
#[derive(Debug)]
pub struct Endpoint {
    /// Where to connect.
    pub address: SocketAddr,
    /// Relative share of traffic (≥ 1). Policies that ignore weights treat every endpoint alike.
    pub weight: u32,
    /// Live state, shared with every snapshot that still contains this endpoint.
    pub state: Arc<EndpointState>,
}

/// Live, lock-free facts about one endpoint.
#[derive(Debug)]
pub struct EndpointState {
    health: AtomicU8,
    in_flight: AtomicU64,
    requests_total: AtomicU64,
    connect_failures: AtomicU64,
    eligible_since: AtomicU64,
    /// Clock reading when the endpoint was last drained; meaningful while it is drained.
    drained_since: AtomicU64,
    /// Latency estimate kept by latency-aware balancing (peak EWMA).
    pub latency: LatencyEstimate,
    /// The average response latency, kept for every endpoint (metrics, not balancing).
    pub response_latency: ResponseLatency,
    /// Failed exchanges by reason: 5xx answers, resets, timeouts, connect failures.
    pub errors: ErrorCounts,
    /// Outcome streaks and windows that passive outlier detection reads.
    pub passive: PassiveStats,
    /// The last active health check result.
    pub check: CheckRecord,
}

/// A latency estimate in atomics, owned by whichever policy uses it (peak EWMA today).
///
/// Updates are load–compute–store without a lock: two observations racing on the same endpoint
/// may lose one of them, which an exponentially weighted average tolerates by design.
#[derive(Debug, Default)]
pub struct LatencyEstimate {
    /// The estimate in nanoseconds, as `f64::to_bits`; 0 means "no observation yet".
    pub ewma_bits: AtomicU64,
    /// Clock reading of the last update.
    pub stamp: AtomicU64,
    /// Until this clock reading the endpoint is penalised (e.g. it answered 429 with
    /// `Retry-After`); 0 means not penalised.
    pub penalty_until: AtomicU64,
}

/// Counts one in-flight request against an endpoint until dropped.
///
/// Hold it for as long as the exchange uses the endpoint — for HTTP, until the response body has
/// been fully streamed — so least-request balancing sees real load.
#[derive(Debug)]
pub struct InFlightGuard {
    state: Arc<EndpointState>,
}

// === impl Endpoint ===

impl Endpoint {
    /// An endpoint with fresh state (healthy, nothing in flight).
    pub fn new(address: SocketAddr, weight: u32) -> Self {
        Self::with_state(address, weight, Arc::new(EndpointState::default()))
    }

    /// An endpoint that reuses live state from a previous snapshot.
    pub fn with_state(address: SocketAddr, weight: u32, state: Arc<EndpointState>) -> Self {
        Self {
            address,
            weight: weight.max(1),
            state,
        }
    }
}

// === impl EndpointState ===

impl Default for EndpointState {
    fn default() -> Self {
        Self {
            health: AtomicU8::new(0),
            in_flight: AtomicU64::new(0),
            requests_total: AtomicU64::new(0),
            connect_failures: AtomicU64::new(0),
            eligible_since: AtomicU64::new(0),
            drained_since: AtomicU64::new(0),
            latency: LatencyEstimate::default(),
            response_latency: ResponseLatency::default(),
            errors: ErrorCounts::default(),
            passive: PassiveStats::default(),
            check: CheckRecord::default(),
        }
    }
}

impl EndpointState {
    /// Whether balancers may pick this endpoint: no [`Unhealthy`] reason holds.
    #[inline]
    pub fn is_healthy(&self) -> bool {
        self.health.load(Ordering::Relaxed) == 0
    }

    /// The reasons the endpoint is out of rotation (none when healthy).
    #[inline]
    pub fn health(&self) -> HealthFlags {
        HealthFlags(self.health.load(Ordering::Relaxed))
    }

    /// Sets or clears one reason for being out of rotation; health checking, outlier detection
    /// and drain each own one. Returns the flags before and after. A recovery (the last reason
    /// cleared) at clock reading `now` restarts slow start.
    pub fn set_unhealthy(&self, reason: Unhealthy, on: bool, now: crate::Nanos) -> HealthChange {
        let (before, after) = set_flag(&self.health, reason, on);
        let change = HealthChange { before, after };
        if on && change.flag_changed(Unhealthy::Drained) {
            self.drained_since.store(now, Ordering::Relaxed);
        }
        if change.health_changed() {
            if after.is_healthy() {
                self.eligible_since.store(now, Ordering::Relaxed);
            }
            // After the flag store, so whoever sees the new generation sees the new health.
            HEALTH_GENERATION.fetch_add(1, Ordering::AcqRel);
        }
        change
    }

    /// Marks the endpoint healthy or unhealthy as far as its active check goes (the
    /// [`Unhealthy::ActiveCheck`] reason); other reasons keep holding.
    pub fn set_healthy(&self, healthy: bool, now: crate::Nanos) {
        let _ = self.set_unhealthy(Unhealthy::ActiveCheck, !healthy, now);
    }

    /// Clock reading since which the endpoint may take traffic (it was added or recovered);
    /// 0 when it has been eligible since the cluster was first built. Slow start ramps from it.
    #[inline]
    pub fn eligible_since(&self) -> crate::Nanos {
        self.eligible_since.load(Ordering::Relaxed)
    }

    /// Clock reading at which the endpoint was drained, or `None` when it is not drained.
    /// Session affinity keeps a drained endpoint's sessions until a deadline counted from it.
    #[inline]
    pub fn drained_since(&self) -> Option<crate::Nanos> {
        self.health()
            .contains(Unhealthy::Drained)
            .then(|| self.drained_since.load(Ordering::Relaxed))
    }

    /// Records that the endpoint joined a running cluster at `now` (starts its slow start).
    pub fn mark_added(&self, now: crate::Nanos) {
        self.eligible_since.store(now, Ordering::Relaxed);
    }

    /// Requests currently using this endpoint.
    #[inline]
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Requests ever started against this endpoint.
    pub fn requests_total(&self) -> u64 {
        self.requests_total.load(Ordering::Relaxed)
    }

    /// Connection attempts to this endpoint that failed (refused, unreachable, timed out).
    pub fn connect_failures(&self) -> u64 {
        self.connect_failures.load(Ordering::Relaxed)
    }

    /// Counts one failed connection attempt.
    pub fn record_connect_failure(&self) {
        self.connect_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Starts counting one request; the returned guard ends it when dropped.
    #[inline]
    pub fn begin_request(self: &Arc<Self>) -> InFlightGuard {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.requests_total.fetch_add(1, Ordering::Relaxed);
        InFlightGuard {
            state: Arc::clone(self),
        }
    }
}

// === impl InFlightGuard ===

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.state.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_counts_in_flight_until_dropped() {
        let ep = Endpoint::new("127.0.0.1:1".parse().unwrap(), 0);
        assert_eq!(ep.weight, 1, "weight 0 is clamped to 1");
        let g1 = ep.state.begin_request();
        let g2 = ep.state.begin_request();
        assert_eq!(ep.state.in_flight(), 2);
        drop(g1);
        assert_eq!(ep.state.in_flight(), 1);
        drop(g2);
        assert_eq!(ep.state.in_flight(), 0);
        assert_eq!(ep.state.requests_total(), 2);
    }

    #[test]
    fn drained_since_is_the_first_drain_and_clears_with_it() {
        let ep = Endpoint::new("127.0.0.1:1".parse().unwrap(), 1);
        assert_eq!(ep.state.drained_since(), None);
        let _ = ep.state.set_unhealthy(Unhealthy::Drained, true, 10);
        // Draining again (or another reason) does not restart the clock.
        let _ = ep.state.set_unhealthy(Unhealthy::Drained, true, 20);
        ep.state.set_healthy(false, 30);
        assert_eq!(ep.state.drained_since(), Some(10));
        let _ = ep.state.set_unhealthy(Unhealthy::Drained, false, 40);
        assert_eq!(ep.state.drained_since(), None);
    }

    #[test]
    fn health_generation_moves_only_on_a_real_change() {
        let ep = Endpoint::new("127.0.0.1:1".parse().unwrap(), 1);
        let g0 = health_generation();
        ep.state.set_healthy(false, 5);
        let g1 = health_generation();
        assert!(g1 > g0);
        // Other tests may flip health concurrently, so only "moved" is asserted for them.
        ep.state.set_healthy(true, 6);
        assert!(health_generation() > g1);
        assert_eq!(ep.state.eligible_since(), 6);
    }

    #[test]
    fn reasons_fuse_into_one_health_view() {
        let s = EndpointState::default();
        assert!(
            s.set_unhealthy(Unhealthy::Ejected, true, 1)
                .health_changed()
        );
        let c = s.set_unhealthy(Unhealthy::ActiveCheck, true, 2);
        assert!(!c.health_changed(), "already unhealthy");
        assert!(c.flag_changed(Unhealthy::ActiveCheck));
        assert!(
            !s.set_unhealthy(Unhealthy::Ejected, false, 3)
                .health_changed()
        );
        assert!(
            !s.set_unhealthy(Unhealthy::Ejected, false, 3)
                .flag_changed(Unhealthy::Ejected)
        );
        assert!(!s.is_healthy());
        assert_eq!(s.health().to_string(), "failed_active_check");
        assert!(
            s.set_unhealthy(Unhealthy::ActiveCheck, false, 4)
                .health_changed()
        );
        assert!(s.is_healthy());
        assert_eq!(s.eligible_since(), 4, "recovery restarts slow start");
    }
}

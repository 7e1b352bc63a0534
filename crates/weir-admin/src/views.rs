//! The JSON shapes of the admin API, built from the live snapshot.
//!
//! Each view is a plain serializable struct, filled from one read of the atomics it shows, so the
//! wire format is written down in one place (and in `docs/admin.md`) instead of being scattered
//! through the routing code. Field names are part of the API: rename nothing without a reason.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::Serialize;
use weir_config::{ListenerProtocol, UpstreamProtocol};
use weir_core::{Clock, Endpoint, EndpointError, EndpointState, Nanos, SystemClock};
use weir_proxy::{AffinityEvent, BreakerStats, Cluster, TlsReloadFailures};

use crate::ListenerInfo;
use crate::timefmt;

/// Body of `GET /ready`.
#[derive(Debug, Serialize)]
pub(crate) struct ReadyView {
    /// Whether weir takes traffic ([`crate::Readiness`]).
    pub(crate) ready: bool,
    /// Why not, when not ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
}

/// Body of every error answer.
#[derive(Debug, Serialize)]
pub(crate) struct ErrorView {
    /// What went wrong, for a human.
    pub(crate) error: String,
}

/// The answer to a successful `POST /reload`.
#[derive(Debug, Serialize)]
pub(crate) struct ReloadView {
    pub(crate) reloaded: bool,
    #[serde(flatten)]
    pub(crate) summary: crate::ReloadSummary,
}

/// Body of `GET /clusters`.
#[derive(Debug, Serialize)]
pub(crate) struct ClustersView {
    /// Every cluster of the current snapshot, in config order.
    pub(crate) clusters: Vec<ClusterView>,
}

/// One cluster (`GET /clusters/{name}`, and each item of `GET /clusters`).
#[derive(Debug, Serialize)]
pub(crate) struct ClusterView {
    name: String,
    protocol: &'static str,
    /// Endpoints with no unhealthy reason.
    healthy_endpoints: usize,
    /// Picks that went to an unhealthy endpoint because too few were healthy (panic mode).
    panic_picks: u64,
    /// Endpoints outlier detection holds out now; `null` without outlier detection.
    ejected_endpoints: Option<usize>,
    circuit_breakers: BreakersView,
    retries: RetriesView,
    session_affinity: AffinityView,
    endpoints: Vec<EndpointView>,
}

/// What session affinity did in a cluster so far (all zero without affinity).
#[derive(Debug, Serialize)]
struct AffinityView {
    /// Requests sent to their session's endpoint.
    hits: u64,
    /// Sessions begun: cookies issued, hashed keys without a live session.
    new_sessions: u64,
    /// Sessions moved to another endpoint.
    moved_sessions: u64,
    /// Forged, damaged or expired cookies, ignored.
    invalid_cookies: u64,
    /// Live hashed sessions (`header`, `client_address`) the cluster remembers now; `null`
    /// when it keeps no session table.
    sessions: Option<usize>,
    /// Live hashed sessions forgotten to make room for new keys (`max_sessions`).
    evicted_sessions: u64,
}

/// What a cluster's retries did so far.
#[derive(Debug, Serialize)]
struct RetriesView {
    /// Retries and hedges sent.
    sent: u64,
    /// Retries not sent because the retry budget was spent.
    budget_exhausted: u64,
    /// Retries not sent because `max_retries` were in progress.
    overflowed: u64,
}

/// A cluster's circuit-breaker counters.
#[derive(Debug, Serialize)]
struct BreakersView {
    connections: usize,
    pending: usize,
    requests: usize,
    connection_overflows: u64,
    pending_overflows: u64,
    request_overflows: u64,
    retries: usize,
    retry_overflows: u64,
}

/// One endpoint with its live state.
#[derive(Debug, Serialize)]
pub(crate) struct EndpointView {
    address: SocketAddr,
    weight: u32,
    /// The fused health: `healthy`, or the reasons joined by `+`.
    health: String,
    /// The reasons the endpoint is out of rotation; empty when healthy.
    reasons: Vec<&'static str>,
    in_flight: u64,
    requests_total: u64,
    connect_failures: u64,
    /// The response latency average in milliseconds; absent until one was observed.
    #[serde(skip_serializing_if = "Option::is_none")]
    ewma_latency_ms: Option<f64>,
    /// Failed exchanges by reason (`5xx`, `reset`, `timeout`, `connect_failure`,
    /// `connect_timeout`).
    errors: BTreeMap<&'static str, u64>,
    outlier: OutlierView,
    /// The last active health check, or `null` when none ran.
    active_check: Option<CheckView>,
}

/// What passive outlier detection knows about an endpoint.
#[derive(Debug, Serialize)]
struct OutlierView {
    ejections_total: u64,
    /// Milliseconds left of the current ejection (0: due for readmission); `null` when not ejected.
    ejected_for_ms: Option<u64>,
    consecutive_5xx: u32,
    consecutive_gateway: u32,
    consecutive_connect: u32,
}

/// The last active health check of an endpoint, and how many ran.
#[derive(Debug, Serialize)]
struct CheckView {
    success: bool,
    detail: String,
    /// When it finished, RFC 3339 in UTC.
    at: String,
    /// When it finished, in unix milliseconds.
    at_unix_ms: u64,
    latency_ms: f64,
    total: u64,
    failed: u64,
}

/// Body of `GET /listeners`.
#[derive(Debug, Serialize)]
pub(crate) struct ListenersView {
    /// Every listener, in config order.
    pub(crate) listeners: Vec<ListenerView>,
}

/// One listener.
#[derive(Debug, Serialize)]
pub(crate) struct ListenerView {
    name: String,
    address: SocketAddr,
    protocol: &'static str,
    /// Why the listener's rotated certificate (or client CA) files did not load, while the
    /// previous ones keep serving.
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_reload_error: Option<String>,
}

// === impl ClustersView ===

impl ClustersView {
    /// Every cluster in `clusters`, read at clock reading `now`.
    pub(crate) fn new(clusters: &[Cluster], now: Nanos) -> Self {
        Self {
            clusters: clusters.iter().map(|c| ClusterView::new(c, now)).collect(),
        }
    }
}

// === impl ClusterView ===

impl ClusterView {
    /// `cluster` as read at clock reading `now` (of the data plane's [`SystemClock`]).
    pub(crate) fn new(cluster: &Cluster, now: Nanos) -> Self {
        Self {
            name: cluster.name.to_string(),
            protocol: upstream_protocol(cluster.protocol),
            healthy_endpoints: cluster
                .endpoints
                .iter()
                .filter(|e| e.state.is_healthy())
                .count(),
            panic_picks: cluster.panic_picks(),
            ejected_endpoints: cluster.outlier_detector().map(|d| d.ejected_count()),
            circuit_breakers: BreakersView::from(cluster.breaker_stats()),
            retries: {
                let r = cluster.retry_stats();
                RetriesView {
                    sent: r.retries,
                    budget_exhausted: r.budget_exhausted,
                    overflowed: r.overflowed,
                }
            },
            session_affinity: {
                let s = cluster.upstream_stats();
                AffinityView {
                    hits: s.affinity(AffinityEvent::Hit),
                    new_sessions: s.affinity(AffinityEvent::New),
                    moved_sessions: s.affinity(AffinityEvent::Moved),
                    invalid_cookies: s.affinity(AffinityEvent::Invalid),
                    sessions: cluster.affinity_sessions(),
                    evicted_sessions: s.affinity(AffinityEvent::Evicted),
                }
            },
            endpoints: cluster
                .endpoints
                .iter()
                .map(|e| EndpointView::new(e, now))
                .collect(),
        }
    }
}

/// The data plane's clock reading now: ejection deadlines are readings of this clock.
pub(crate) fn data_plane_now() -> Nanos {
    SystemClock.now()
}

// === impl BreakersView ===

impl From<BreakerStats> for BreakersView {
    fn from(s: BreakerStats) -> Self {
        Self {
            connections: s.connections,
            pending: s.pending,
            requests: s.requests,
            connection_overflows: s.connection_overflows,
            pending_overflows: s.pending_overflows,
            request_overflows: s.request_overflows,
            retries: s.retries,
            retry_overflows: s.retry_overflows,
        }
    }
}

// === impl EndpointView ===

impl EndpointView {
    /// `endpoint` as read at clock reading `now`.
    pub(crate) fn new(endpoint: &Endpoint, now: Nanos) -> Self {
        let state = &endpoint.state;
        let health = state.health();
        Self {
            address: endpoint.address,
            weight: endpoint.weight,
            health: health.to_string(),
            reasons: health.reasons().map(|r| r.as_str()).collect(),
            in_flight: state.in_flight(),
            requests_total: state.requests_total(),
            connect_failures: state.connect_failures(),
            ewma_latency_ms: state.response_latency.seconds().map(|s| s * 1e3),
            errors: (EndpointError::ALL.into_iter())
                .map(|r| (r.as_str(), state.errors.get(r)))
                .collect(),
            outlier: OutlierView::new(state, now),
            active_check: CheckView::new(state),
        }
    }
}

// === impl OutlierView ===

impl OutlierView {
    fn new(state: &EndpointState, now: Nanos) -> Self {
        let passive = &state.passive;
        let until = passive.ejected_until();
        let streaks = passive.streaks();
        Self {
            ejections_total: passive.ejections_total(),
            ejected_for_ms: (until != 0).then(|| until.saturating_sub(now) / 1_000_000),
            consecutive_5xx: streaks.consecutive_5xx,
            consecutive_gateway: streaks.consecutive_gateway,
            consecutive_connect: streaks.consecutive_connect,
        }
    }
}

// === impl CheckView ===

impl CheckView {
    fn new(state: &EndpointState) -> Option<Self> {
        let last = state.check.last()?;
        let (total, failed) = state.check.counts();
        Some(Self {
            success: last.success,
            detail: last.detail,
            at: timefmt::rfc3339(last.at),
            at_unix_ms: timefmt::unix_ms(last.at),
            latency_ms: last.latency.as_secs_f64() * 1e3,
            total,
            failed,
        })
    }
}

// === impl ListenersView ===

impl ListenersView {
    /// Every listener in `listeners`, with the TLS reload failures of `tls`.
    pub(crate) fn new(listeners: &[ListenerInfo], tls: &[TlsReloadFailures]) -> Self {
        Self {
            listeners: listeners
                .iter()
                .map(|l| ListenerView {
                    name: l.name.clone(),
                    address: l.address,
                    protocol: listener_protocol(l.protocol),
                    tls_reload_error: tls
                        .iter()
                        .find(|f| f.listener && *f.name == *l.name)
                        .and_then(|f| f.last_error.clone()),
                })
                .collect(),
        }
    }
}

/// The config spelling of an upstream protocol.
fn upstream_protocol(p: UpstreamProtocol) -> &'static str {
    match p {
        UpstreamProtocol::Http1 => "http1",
        UpstreamProtocol::Http2 => "http2",
    }
}

/// The config spelling of a listener protocol.
fn listener_protocol(p: ListenerProtocol) -> &'static str {
    match p {
        ListenerProtocol::Http => "http",
        ListenerProtocol::Tcp => "tcp",
        ListenerProtocol::Udp => "udp",
        ListenerProtocol::TlsPassthrough => "tls_passthrough",
        ListenerProtocol::Xdp => "xdp",
        ListenerProtocol::Nftables => "nftables",
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use weir_core::{CheckResult, PassiveOutcome, Unhealthy};

    use super::*;

    fn endpoint() -> Endpoint {
        Endpoint::new("127.0.0.1:9001".parse().unwrap(), 3)
    }

    fn json(endpoint: &Endpoint, now: Nanos) -> serde_json::Value {
        serde_json::to_value(EndpointView::new(endpoint, now)).unwrap()
    }

    #[test]
    fn a_fresh_endpoint_is_healthy_with_nothing_to_report() {
        let v = json(&endpoint(), 1);
        assert_eq!(v["address"], "127.0.0.1:9001");
        assert_eq!(v["weight"], 3);
        assert_eq!(v["health"], "healthy");
        assert_eq!(v["reasons"], serde_json::json!([]));
        assert!(
            v.get("ewma_latency_ms").is_none(),
            "no latency observed yet"
        );
        assert!(v["outlier"]["ejected_for_ms"].is_null());
        assert!(v["active_check"].is_null());
    }

    #[test]
    fn ejection_and_streaks_show_with_time_left() {
        let ep = endpoint();
        let now = 10_000_000_000;
        let _ = ep.state.set_unhealthy(Unhealthy::Ejected, true, now);
        let _ = ep.state.set_unhealthy(Unhealthy::Drained, true, now);
        let _ = ep.state.passive.note_ejection(now + 2_500_000_000);
        let _ = ep.state.passive.record(PassiveOutcome::Status5xx(503), now);
        let v = json(&ep, now);
        assert_eq!(v["health"], "ejected+drained");
        assert_eq!(v["reasons"], serde_json::json!(["ejected", "drained"]));
        assert_eq!(v["outlier"]["ejections_total"], 1);
        assert_eq!(v["outlier"]["ejected_for_ms"], 2500);
        assert_eq!(v["outlier"]["consecutive_5xx"], 1);
        assert_eq!(v["outlier"]["consecutive_gateway"], 1);
        let late = json(&ep, now + 5_000_000_000);
        assert_eq!(
            late["outlier"]["ejected_for_ms"], 0,
            "overdue, not negative"
        );
    }

    #[test]
    fn latency_and_last_check_are_converted_to_milliseconds() {
        let ep = endpoint();
        ep.state
            .response_latency
            .observe(Duration::from_micros(2500), 1);
        ep.state.errors.record(EndpointError::Timeout);
        ep.state.check.store(CheckResult {
            at: UNIX_EPOCH + Duration::from_millis(1_709_251_199_999),
            success: false,
            detail: "connection refused".to_owned(),
            latency: Duration::from_micros(1500),
        });
        let v = json(&ep, 1);
        assert_eq!(v["ewma_latency_ms"], 2.5);
        assert_eq!(
            v["errors"],
            serde_json::json!({"5xx": 0, "connect_failure": 0, "connect_timeout": 0, "reset": 0, "timeout": 1})
        );
        let check = &v["active_check"];
        assert_eq!(check["success"], false);
        assert_eq!(check["detail"], "connection refused");
        assert_eq!(check["at"], "2024-02-29T23:59:59.999Z");
        assert_eq!(check["at_unix_ms"], 1_709_251_199_999_u64);
        assert_eq!(check["latency_ms"], 1.5);
        assert_eq!((&check["total"], &check["failed"]), (&1.into(), &1.into()));
    }
}

//! `GET /stats`: a compact JSON summary of every cluster, made to be polled (the dashboard reads
//! it every second).
//!
//! Everything in it is *cumulative* — totals since the counters were created, which survive
//! reloads for clusters and endpoints that remain — plus a few gauges (in flight, health). Rates,
//! error ratios and percentiles are differences between two readings, so they are left to the
//! poller: it keeps the previous answer and divides the change by the change of `at_unix_ms`.
//! This keeps the server stateless (no per-client windows, nothing on the request path) and lets
//! each poller pick its own window. `docs/admin.md` documents the shape and the arithmetic.

use std::net::SocketAddr;
use std::time::SystemTime;

use serde::Serialize;
use weir_core::{Endpoint, HealthFlags, Unhealthy};
use weir_proxy::{Cluster, LATENCY_BUCKETS, STATUS_CLASSES, UpstreamFailure};

use crate::timefmt;

/// Body of `GET /stats`.
#[derive(Debug, Serialize)]
pub(crate) struct StatsView {
    /// When the counters were read, in unix milliseconds: the time base of rates.
    at_unix_ms: u64,
    /// Upper bounds of the latency histogram buckets in milliseconds; each cluster's
    /// `latency.buckets` has one more count, for the bucket above the last bound.
    latency_bounds_ms: Vec<f64>,
    /// Every cluster of the current snapshot, in config order.
    clusters: Vec<ClusterStatsView>,
}

/// One cluster's totals.
#[derive(Debug, Serialize)]
struct ClusterStatsView {
    name: String,
    /// Upstream responses by status class (`1xx` .. `5xx`), since start.
    responses: ClassCounts,
    /// Upstream attempts that got no response, by reason, since start.
    failures: FailureCounts,
    /// Latency of upstream attempts to response headers (or to failure).
    latency: LatencyView,
    /// Retries and hedges sent, since start.
    retries: u64,
    /// Requests (and L4 connections) in progress now, over all endpoints.
    in_flight: u64,
    /// Endpoints with no unhealthy reason now.
    healthy_endpoints: usize,
    endpoints: Vec<EndpointStatsView>,
}

/// Responses per status class.
#[derive(Debug, Serialize)]
struct ClassCounts {
    #[serde(rename = "1xx")]
    c1: u64,
    #[serde(rename = "2xx")]
    c2: u64,
    #[serde(rename = "3xx")]
    c3: u64,
    #[serde(rename = "4xx")]
    c4: u64,
    #[serde(rename = "5xx")]
    c5: u64,
}

/// Attempts without a response, per reason (the `reason` labels of `/metrics`).
#[derive(Debug, Serialize)]
struct FailureCounts {
    connect_failure: u64,
    connect_timeout: u64,
    timeout: u64,
    reset: u64,
}

/// A latency histogram reading.
#[derive(Debug, Serialize)]
struct LatencyView {
    /// Per-bucket (not cumulative) counts, one per bound of `latency_bounds_ms` and a last one
    /// for everything slower.
    buckets: Vec<u64>,
    /// Observations in all buckets.
    count: u64,
    /// Sum of the observations in milliseconds.
    sum_ms: f64,
}

/// One endpoint's live state, cut to what a table row shows.
#[derive(Debug, Serialize)]
struct EndpointStatsView {
    address: SocketAddr,
    weight: u32,
    /// `healthy`, `unhealthy` (failed active check or ejected) or `drained` — the colour of
    /// the row; a failure wins over a drain.
    status: &'static str,
    /// Every reason that holds, as in `/clusters`.
    reasons: Vec<&'static str>,
    in_flight: u64,
    /// Requests (L4: connections) ever started against it.
    requests_total: u64,
    connect_failures: u64,
    /// The response latency average, when one was observed.
    #[serde(skip_serializing_if = "Option::is_none")]
    ewma_latency_ms: Option<f64>,
}

// === impl StatsView ===

impl StatsView {
    /// Reads every cluster in `clusters` now.
    pub(crate) fn new(clusters: &[Cluster], at: SystemTime) -> Self {
        Self {
            at_unix_ms: timefmt::unix_ms(at),
            latency_bounds_ms: LATENCY_BUCKETS.iter().map(|s| s * 1e3).collect(),
            clusters: clusters.iter().map(ClusterStatsView::new).collect(),
        }
    }
}

// === impl ClusterStatsView ===

impl ClusterStatsView {
    fn new(cluster: &Cluster) -> Self {
        let stats = cluster.upstream_stats();
        let class = |c: usize| stats.responses(c);
        debug_assert_eq!(STATUS_CLASSES.len(), 5);
        let latency = stats.latency();
        Self {
            name: cluster.name.to_string(),
            responses: ClassCounts {
                c1: class(0),
                c2: class(1),
                c3: class(2),
                c4: class(3),
                c5: class(4),
            },
            failures: FailureCounts {
                connect_failure: stats.failures(UpstreamFailure::ConnectFailure),
                connect_timeout: stats.failures(UpstreamFailure::ConnectTimeout),
                timeout: stats.failures(UpstreamFailure::Timeout),
                reset: stats.failures(UpstreamFailure::Reset),
            },
            latency: LatencyView {
                buckets: latency.buckets.iter().map(|&(_, n)| n).collect(),
                count: latency.count,
                sum_ms: latency.sum_seconds * 1e3,
            },
            retries: cluster.retry_stats().retries,
            in_flight: cluster.endpoints.iter().map(|e| e.state.in_flight()).sum(),
            healthy_endpoints: cluster
                .endpoints
                .iter()
                .filter(|e| e.state.is_healthy())
                .count(),
            endpoints: cluster
                .endpoints
                .iter()
                .map(|e| EndpointStatsView::new(e))
                .collect(),
        }
    }
}

// === impl EndpointStatsView ===

impl EndpointStatsView {
    fn new(endpoint: &Endpoint) -> Self {
        let state = &endpoint.state;
        let health = state.health();
        Self {
            address: endpoint.address,
            weight: endpoint.weight,
            status: status(health),
            reasons: health.reasons().map(|r| r.as_str()).collect(),
            in_flight: state.in_flight(),
            requests_total: state.requests_total(),
            connect_failures: state.connect_failures(),
            ewma_latency_ms: state.response_latency.seconds().map(|s| s * 1e3),
        }
    }
}

/// The one-word status of `health`: a failure (active check, ejection) outranks a drain.
fn status(health: HealthFlags) -> &'static str {
    if health.contains(Unhealthy::ActiveCheck) || health.contains(Unhealthy::Ejected) {
        "unhealthy"
    } else if health.contains(Unhealthy::Drained) {
        "drained"
    } else {
        "healthy"
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn snapshot(yaml: &str) -> weir_proxy::Snapshot {
        let config = weir_config::load_str(yaml, "t.yaml").unwrap();
        weir_proxy::Snapshot::compile(&config, None).unwrap()
    }

    #[test]
    fn stats_have_the_documented_shape() {
        let s = snapshot(
            "clusters:
  - name: web
    endpoints: [ 127.0.0.1:9001, { address: 127.0.0.1:9002, weight: 3 } ]
",
        );
        let web = s.cluster("web").unwrap();
        let _guard = web.endpoints[0].state.begin_request();
        let _ = web.endpoints[1]
            .state
            .set_unhealthy(Unhealthy::Drained, true, 1);
        let at = UNIX_EPOCH + Duration::from_millis(1_795_307_748_223);
        let v = serde_json::to_value(StatsView::new(s.clusters(), at)).unwrap();
        assert_eq!(v["at_unix_ms"], 1_795_307_748_223_u64);
        let bounds = v["latency_bounds_ms"].as_array().unwrap();
        assert_eq!(bounds.len(), LATENCY_BUCKETS.len());
        assert_eq!(bounds[0], 0.5);
        assert_eq!(bounds[bounds.len() - 1], 10_000.0);

        let c = &v["clusters"][0];
        assert_eq!(c["name"], "web");
        assert_eq!(
            c["responses"],
            serde_json::json!({"1xx": 0, "2xx": 0, "3xx": 0, "4xx": 0, "5xx": 0})
        );
        assert_eq!(
            c["failures"],
            serde_json::json!({"connect_failure": 0, "connect_timeout": 0, "timeout": 0, "reset": 0})
        );
        assert_eq!(
            c["latency"]["buckets"].as_array().unwrap().len(),
            LATENCY_BUCKETS.len() + 1
        );
        assert_eq!(c["latency"]["count"], 0);
        assert_eq!(c["latency"]["sum_ms"], 0.0);
        assert_eq!(c["retries"], 0);
        assert_eq!(c["in_flight"], 1);
        assert_eq!(c["healthy_endpoints"], 1);

        let eps = c["endpoints"].as_array().unwrap();
        assert_eq!(eps.len(), 2);
        assert_eq!(eps[0]["address"], "127.0.0.1:9001");
        assert_eq!(eps[0]["weight"], 1);
        assert_eq!(eps[0]["status"], "healthy");
        assert_eq!(eps[0]["in_flight"], 1);
        assert_eq!(eps[0]["requests_total"], 1);
        assert!(eps[0].get("ewma_latency_ms").is_none());
        assert_eq!(eps[1]["weight"], 3);
        assert_eq!(eps[1]["status"], "drained");
        assert_eq!(eps[1]["reasons"], serde_json::json!(["drained"]));
    }

    #[test]
    fn a_failure_outranks_a_drain() {
        let flags = |reasons: &[Unhealthy]| {
            let s = weir_core::EndpointState::default();
            for &r in reasons {
                let _ = s.set_unhealthy(r, true, 1);
            }
            s.health()
        };
        assert_eq!(status(flags(&[])), "healthy");
        assert_eq!(status(flags(&[Unhealthy::Drained])), "drained");
        assert_eq!(status(flags(&[Unhealthy::Ejected])), "unhealthy");
        assert_eq!(
            status(flags(&[Unhealthy::Drained, Unhealthy::ActiveCheck])),
            "unhealthy"
        );
    }
}

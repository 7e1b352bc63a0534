//! The per-route families of `GET /metrics`: what each route answered, what its requests met
//! at each of its clusters (retries, timeouts, circuit-breaker refusals), and its policies'
//! counters (rate limiting, mirroring, fault injection).

use std::fmt;

use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;
use weir_proxy::{BreakerLimit, RouteStats, STATUS_CLASSES};

use super::{Labels, SnapshotCollector, counters};

// === impl SnapshotCollector ===

impl SnapshotCollector {
    /// Per-route series: responses by class, time to response headers, and the policy
    /// counters (rate limiting, mirroring, fault injection). Routes have no names, so a route
    /// is its listener's name and its index in that listener's `routes`.
    pub(super) fn encode_routes(&self, e: &mut DescriptorEncoder<'_>) -> fmt::Result {
        let routes = self.snapshot.route_stats();
        let labels = |r: &RouteStats, extra: Option<(&'static str, &str)>| -> Labels {
            let listener = self
                .listeners
                .get(r.listener)
                .map_or_else(|| r.listener.to_string(), |l| l.0.clone());
            let mut l = vec![("listener", listener), ("route", r.route.to_string())];
            if let Some((k, v)) = extra {
                l.push((k, v.to_owned()));
            }
            l
        };
        counters(
            e,
            "weir_route_requests",
            "Requests a route answered (weir's own answers included), by status class.",
            None,
            routes.iter().flat_map(|r| {
                STATUS_CLASSES.iter().enumerate().map(move |(i, class)| {
                    (labels(r, Some(("class", class))), r.traffic.responses(i))
                })
            }),
        )?;
        if !routes.is_empty() {
            let mut m = e.encode_descriptor(
                "weir_route_request_duration",
                "Time from a route's match to its response headers.",
                Some(&Unit::Seconds),
                MetricType::Histogram,
            )?;
            for r in &routes {
                let h = r.traffic.latency();
                m.encode_family(&labels(r, None))?
                    .encode_histogram::<NoLabelSet>(h.sum_seconds, h.count, &h.buckets, None)?;
            }
        }
        let per_cluster = || {
            routes.iter().flat_map(|r| {
                (r.clusters.iter()).map(move |(name, s)| (labels(r, Some(("cluster", name))), s))
            })
        };
        counters(
            e,
            "weir_route_retries",
            "Retries and hedges a route's requests sent to a cluster.",
            None,
            per_cluster().map(|(l, s)| (l, s.retries())),
        )?;
        counters(
            e,
            "weir_route_timeouts",
            "Attempts of a route's requests to a cluster that got no response headers within the route's timeout or per-try timeout.",
            None,
            per_cluster().map(|(l, s)| (l, s.timeouts())),
        )?;
        counters(
            e,
            "weir_route_circuit_breaker_overflows",
            "A route's requests or retries a cluster's circuit breaker refused, by limit.",
            None,
            per_cluster().flat_map(|(l, s)| {
                BreakerLimit::ALL.into_iter().map(move |limit| {
                    let mut l = l.clone();
                    l.push(("limit", limit.as_str().to_owned()));
                    (l, s.overflows(limit))
                })
            }),
        )?;
        counters(
            e,
            "weir_route_rate_limited",
            "Requests a route's rate limit refused: 429 over the limit, 503 when a closed global limit could not reach its service.",
            None,
            routes.iter().flat_map(|r| {
                r.rate_limited
                    .into_iter()
                    .flat_map(move |(limited, unavailable)| {
                        [
                            (labels(r, Some(("result", "limited"))), limited),
                            (labels(r, Some(("result", "unavailable"))), unavailable),
                        ]
                    })
            }),
        )?;
        counters(
            e,
            "weir_route_mirror_selected",
            "Requests a route chose to copy to its shadow cluster.",
            None,
            routes
                .iter()
                .filter_map(|r| Some((labels(r, None), r.mirror?.selected))),
        )?;
        counters(
            e,
            "weir_route_mirror_results",
            "Shadow copies that ended, by result (succeeded, failed, abandoned).",
            None,
            routes.iter().flat_map(|r| {
                r.mirror.into_iter().flat_map(move |m| {
                    [
                        (labels(r, Some(("result", "succeeded"))), m.succeeded),
                        (labels(r, Some(("result", "failed"))), m.failed),
                        (labels(r, Some(("result", "abandoned"))), m.abandoned),
                    ]
                })
            }),
        )?;
        counters(
            e,
            "weir_route_mirror_status_diffs",
            "Shadow responses whose status class differed from the primary's (compare_status).",
            None,
            routes
                .iter()
                .filter_map(|r| Some((labels(r, None), r.mirror?.status_diffs))),
        )?;
        counters(
            e,
            "weir_route_faults",
            "Requests fault injection delayed or aborted, by kind.",
            None,
            routes.iter().flat_map(|r| {
                r.fault.into_iter().flat_map(move |f| {
                    [
                        (labels(r, Some(("kind", "delayed"))), f.delayed),
                        (labels(r, Some(("kind", "aborted"))), f.aborted),
                    ]
                })
            }),
        )
    }
}

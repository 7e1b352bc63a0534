//! Per-route counters in one read: what the route answered, what its requests met at each of
//! its clusters (retries, timeouts, circuit-breaker refusals), and its rate limiting, mirroring
//! and fault injection, for every HTTP route of a snapshot (the admin API's `/metrics` walks
//! this at scrape time).
//!
//! The per-cluster counters ([`RouteClusterStats`]) are resolved when the snapshot is built —
//! one per cluster a route forwards to — so a request finds its own by the cluster index it
//! already holds, never by a label.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::snapshot::Listener;
use crate::{BreakerLimit, FaultStats, MirrorStats, RouteTraffic, Snapshot};

/// What one HTTP route answered and what its policies counted. Indices are as in the config.
#[derive(Debug, Clone)]
pub struct RouteStats {
    /// The listener's index in `listeners`.
    pub listener: usize,
    /// The route's index in the listener's `routes`.
    pub route: usize,
    /// `(limited with 429, refused with 503 for an unreachable limit service)`, when the route
    /// has a rate limit.
    pub rate_limited: Option<(u64, u64)>,
    /// The mirror's counters, when the route mirrors.
    pub mirror: Option<MirrorStats>,
    /// The fault injection's counters, when the route injects faults.
    pub fault: Option<FaultStats>,
    /// Responses by status class and time to response headers.
    pub traffic: Arc<RouteTraffic>,
    /// What the route's requests met at each cluster it forwards to, by cluster name.
    pub clusters: Vec<(Arc<str>, Arc<RouteClusterStats>)>,
}

/// What one route's requests met at one of its clusters: retries (and hedges) sent, attempts
/// that timed out, and requests or retries a circuit breaker refused. Carried over reloads while
/// the route keeps its place and still forwards to the cluster.
#[derive(Debug, Default)]
pub struct RouteClusterStats {
    retries: AtomicU64,
    timeouts: AtomicU64,
    overflows: [AtomicU64; 4],
}

// === impl RouteClusterStats ===

impl RouteClusterStats {
    /// Counts a retry or hedge sent.
    pub(crate) fn record_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an attempt that got no response headers within the route's (or per-try) timeout.
    pub(crate) fn record_timeout(&self) {
        self.timeouts.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request or retry that `limit` refused.
    pub(crate) fn record_overflow(&self, limit: BreakerLimit) {
        self.overflows[limit as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts what an attempt that failed with `error` met: a timeout, or a circuit breaker's
    /// refusal (`max_pending_requests`, `max_connections` in the pool, `max_requests`).
    pub(crate) fn record_failure(&self, error: &weir_core::Error) {
        if error.kind() == weir_core::ErrorKind::UpstreamTimeout {
            self.record_timeout();
        } else if let Some(limit) = BreakerLimit::of(error) {
            self.record_overflow(limit);
        }
    }

    /// Retries and hedges sent.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// Attempts that timed out.
    pub fn timeouts(&self) -> u64 {
        self.timeouts.load(Ordering::Relaxed)
    }

    /// Requests or retries `limit` refused.
    pub fn overflows(&self, limit: BreakerLimit) -> u64 {
        self.overflows[limit as usize].load(Ordering::Relaxed)
    }
}

// === impl Snapshot ===

impl Snapshot {
    /// Counters of every HTTP route, in listener and route order.
    pub fn route_stats(&self) -> Vec<RouteStats> {
        let mut out = Vec::new();
        for (listener, l) in self.listeners.iter().enumerate() {
            let Listener::Http(http) = l else {
                continue;
            };
            for (route, compiled) in
                (0..http.routes.len()).filter_map(|i| Some((i, http.routes.get(i)?)))
            {
                let rate_limited = http.rate_limits.get(route).and_then(|r| {
                    r.as_ref().map(|r| {
                        let s = &r.stats;
                        (
                            s.limited.load(Ordering::Relaxed),
                            s.unavailable.load(Ordering::Relaxed),
                        )
                    })
                });
                out.push(RouteStats {
                    listener,
                    route,
                    rate_limited,
                    mirror: self.mirror_stats(listener, route),
                    fault: self.fault_stats(listener, route),
                    traffic: Arc::clone(&compiled.traffic),
                    clusters: (compiled.clusters.iter())
                        .map(|c| (Arc::clone(&c.name), Arc::clone(&c.stats)))
                        .collect(),
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(clusters: &str, previous: Option<&Snapshot>) -> Snapshot {
        let yaml = format!(
            "listeners:
  - name: web
    address: 127.0.0.1:0
    routes:
      - {clusters}
      - direct_response: {{ status: 200 }}
clusters:
  - {{ name: a, endpoints: [ 127.0.0.1:9001 ] }}
  - {{ name: b, endpoints: [ 127.0.0.1:9002 ] }}
"
        );
        let config = weir_config::load_str(&yaml, "t.yaml").unwrap();
        Snapshot::compile(&config, previous).unwrap()
    }

    fn names(s: &RouteStats) -> Vec<&str> {
        s.clusters.iter().map(|(n, _)| &**n).collect()
    }

    #[test]
    fn per_cluster_counters_are_resolved_per_route_and_survive_a_reload() {
        let first = compile("cluster: a", None);
        let stats = first.route_stats();
        assert_eq!(names(&stats[0]), ["a"]);
        assert!(stats[1].clusters.is_empty(), "a direct response has none");
        stats[0].clusters[0].1.record_retry();
        stats[0].clusters[0]
            .1
            .record_overflow(BreakerLimit::MaxRetries);

        // The route now splits over a and b (a listed twice): a keeps its counts, b starts at 0.
        let split = "weighted_clusters: [ { cluster: b, weight: 1 }, { cluster: a, weight: 1 }, { cluster: a, weight: 1 } ]";
        let second = compile(split, Some(&first));
        let stats = second.route_stats();
        assert_eq!(names(&stats[0]), ["b", "a"]);
        let (b, a) = (&stats[0].clusters[0].1, &stats[0].clusters[1].1);
        assert_eq!((a.retries(), a.overflows(BreakerLimit::MaxRetries)), (1, 1));
        assert_eq!((b.retries(), b.timeouts()), (0, 0));
    }
}

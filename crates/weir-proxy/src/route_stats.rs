//! Per-route counters in one read: what the route answered, and its rate limiting, mirroring
//! and fault injection, for every HTTP route of a snapshot (the admin API's `/metrics` walks
//! this at scrape time).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::snapshot::Listener;
use crate::{FaultStats, MirrorStats, RouteTraffic, Snapshot};

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
                });
            }
        }
        out
    }
}

//! Per-route counters in one read: rate limiting, mirroring and fault injection, for every
//! HTTP route of a snapshot (the admin API's `/metrics` walks this at scrape time).

use std::sync::atomic::Ordering;

use crate::snapshot::Listener;
use crate::{FaultStats, MirrorStats, Snapshot};

/// What one HTTP route's policies counted. Indices are as in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
}

// === impl Snapshot ===

impl Snapshot {
    /// Counters of every HTTP route with a rate limit, mirror or fault block.
    pub fn route_stats(&self) -> Vec<RouteStats> {
        let mut out = Vec::new();
        for (listener, l) in self.listeners.iter().enumerate() {
            let Listener::Http(http) = l else {
                continue;
            };
            for route in 0..http.routes.len() {
                let rate_limited = http.rate_limits.get(route).and_then(|r| {
                    r.as_ref().map(|r| {
                        let s = &r.stats;
                        (
                            s.limited.load(Ordering::Relaxed),
                            s.unavailable.load(Ordering::Relaxed),
                        )
                    })
                });
                let stats = RouteStats {
                    listener,
                    route,
                    rate_limited,
                    mirror: self.mirror_stats(listener, route),
                    fault: self.fault_stats(listener, route),
                };
                if stats.rate_limited.is_some() || stats.mirror.is_some() || stats.fault.is_some() {
                    out.push(stats);
                }
            }
        }
        out
    }
}

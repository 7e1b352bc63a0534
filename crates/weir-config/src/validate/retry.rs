//! Rules for retries, hedging and buffering on a route and the retry budget of a cluster:
//! limits that can be met, durations that are positive, and no policy on a route that never
//! forwards.

use super::Checker;
use crate::path::YamlPath;
use crate::{ClusterConfig, RetryConfig, RouteConfig};

/// The most attempts a route may ask for; more only multiplies an outage.
const MAX_ATTEMPTS: u32 = 10;

// === impl Checker ===

impl Checker<'_> {
    /// Checks `retry`, `hedge` and `buffer` of `route` at `path`.
    pub(super) fn route_traffic_policy(&mut self, route: &RouteConfig, path: &YamlPath) {
        let forwards = route.cluster.is_some() || route.weighted_clusters.is_some();
        for (key, given) in [
            ("retry", route.retry.is_some()),
            ("hedge", route.hedge.is_some()),
            ("buffer", route.buffer.is_some()),
        ] {
            if given && !forwards {
                self.report(
                    &path.key(key),
                    format!("{key} is set on a route that does not forward"),
                    "retries, hedging and buffering apply to routes with `cluster` or `weighted_clusters`",
                );
            }
        }
        if let Some(retry) = &route.retry {
            self.retry(retry, &path.key("retry"));
        }
        if let Some(hedge) = &route.hedge
            && hedge.delay.get().is_zero()
        {
            self.report(
                &path.key("hedge").key("delay"),
                "hedge delay is 0; every request would be sent twice",
                "give a delay near the endpoints' p95 latency, such as 50ms",
            );
        }
        if let Some(buffer) = &route.buffer
            && buffer.max_request_bytes == 0
        {
            self.report(
                &path.key("buffer").key("max_request_bytes"),
                "max_request_bytes is 0; every request with a body would get 413",
                "give a positive size in bytes, such as 1048576",
            );
        }
    }

    fn retry(&mut self, retry: &RetryConfig, path: &YamlPath) {
        if !(1..=MAX_ATTEMPTS).contains(&retry.attempts) {
            self.report(
                &path.key("attempts"),
                format!("attempts is {}", retry.attempts),
                format!("give 1 to {MAX_ATTEMPTS} attempts in all, the first included"),
            );
        }
        if retry.on.is_empty() {
            self.report(
                &path.key("on"),
                "`on` is empty, so nothing would be retried",
                "list conditions such as [connect-failure, gateway-error], or remove `retry`",
            );
        }
        if retry.per_try_timeout.is_some_and(|t| t.get().is_zero()) {
            self.report(
                &path.key("per_try_timeout"),
                "per_try_timeout is 0; every attempt would time out",
                "leave it out for no per-attempt limit, or give a positive duration",
            );
        }
        let backoff = path.key("backoff");
        if retry.backoff.base.get().is_zero() {
            self.report(
                &backoff.key("base"),
                "backoff base is 0; retries would hit a failing endpoint back to back",
                "give a positive duration such as 25ms",
            );
        }
        if let Some(max) = retry.backoff.max
            && max.get() < retry.backoff.base.get()
        {
            self.report(
                &backoff.key("max"),
                format!("backoff max {max} is below base {}", retry.backoff.base),
                "give a max at least as long as base (the default is 10 × base)",
            );
        }
    }

    /// Checks `retry_budget` and `circuit_breakers.max_retries` of `cluster` at `path`.
    pub(super) fn retry_budget(&mut self, cluster: &ClusterConfig, path: &YamlPath) {
        let budget = &cluster.retry_budget;
        let window = budget.window.get();
        if window < std::time::Duration::from_secs(1) || window > std::time::Duration::from_secs(60)
        {
            self.report(
                &path.key("retry_budget").key("window"),
                format!("retry budget window {} is outside 1s to 60s", budget.window),
                "give a window from 1s to 60s (the default is 10s)",
            );
        }
        if budget.percent > 1000 {
            self.report(
                &path.key("retry_budget").key("percent"),
                format!("retry budget percent {} is above 1000", budget.percent),
                "give retries per 100 requests, 0 to 1000 (the default is 20)",
            );
        }
    }
}

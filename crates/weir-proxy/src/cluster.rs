//! The runtime form of a cluster: endpoints, their balancer, their pools and the hash key.

use std::sync::Arc;
use std::time::Duration;

use std::sync::atomic::{AtomicU64, Ordering};

use weir_balance::{Balancer, BuildContext, Observation, PickContext};
use weir_config::{ClusterConfig, HealthCheckConfig, UpstreamProtocol};
use weir_core::{Clock, Endpoint, EndpointError, Nanos, PassiveOutcome, SystemClock, Unhealthy};
use weir_health::OutlierDetector;

use crate::affinity::{ClusterAffinity, SessionAffinity};
use crate::breakers::{BreakerStats, Breakers};
use crate::hash_key::{HashInput, HashKey};
use crate::retry_budget::{RetryBudget, RetryStats};
use crate::upstream::EndpointPool;

/// A compiled cluster, immutable for the life of a snapshot.
#[derive(Debug)]
pub struct Cluster {
    /// The cluster's name from the config.
    pub name: Arc<str>,
    /// Protocol spoken to its endpoints.
    pub protocol: UpstreamProtocol,
    /// The balancing policy's config name (`round_robin`, `maglev`, ...), for the route span.
    pub(crate) lb_policy: &'static str,
    /// The endpoints, in config order; the balancer returns indices into this list.
    pub endpoints: Vec<Arc<Endpoint>>,
    pools: Vec<Arc<EndpointPool>>,
    balancer: Box<dyn Balancer>,
    hash_key: Option<HashKey>,
    clock: Arc<dyn Clock>,
    /// PROXY protocol header sent to endpoints on new L4 connections.
    pub(crate) proxy_protocol: Option<weir_config::ProxyProtocolVersion>,
    /// Connection, pending and request limits with their live counters.
    pub(crate) breakers: Breakers,
    /// How many retries the cluster takes relative to its requests.
    pub(crate) retry_budget: RetryBudget,
    /// The active health check the control side runs for this cluster, if any.
    health_check: Option<HealthCheckConfig>,
    /// Passive outlier detection over this cluster's traffic, if configured.
    outlier: Option<OutlierDetector>,
    /// Picks that went to an unhealthy endpoint because the cluster was in panic (fail open).
    panic_picks: AtomicU64,
    /// Upstream results and latency for `/metrics` (`stats.rs`), carried over reloads.
    pub(crate) stats: Arc<crate::stats::ClusterStats>,
    /// TLS to the endpoints, when the cluster has a `tls` block.
    pub(crate) tls: Option<Arc<crate::tls::UpstreamTls>>,
    /// The cluster's own `session_affinity` (a route's overrides it).
    pub(crate) session_affinity: Option<SessionAffinity>,
    /// Endpoint ids and the hashing table that session affinity picks with.
    pub(crate) affinity: ClusterAffinity,
}

/// The endpoint a request was sent to: its index (for [`Cluster::observe`]), description and pool.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Picked<'a> {
    pub(crate) index: usize,
    pub(crate) endpoint: &'a Arc<Endpoint>,
    pub(crate) pool: &'a Arc<EndpointPool>,
}

// === impl Cluster ===

impl Cluster {
    /// Compiles `cfg`, reusing live state and pools from `previous` for endpoints it still has.
    /// Endpoints that join an existing cluster start their slow start now. `tls` is the
    /// compiled `cfg.tls` (its files are read by the caller, which reports their errors), and
    /// `session_affinity` the compiled `cfg.session_affinity`; `affinity_table` is set when
    /// some route or the cluster itself hashes for affinity (the tables are built only then),
    /// to the largest `max_sessions` of those policies.
    pub(crate) fn from_config(
        cfg: &ClusterConfig,
        previous: Option<&Cluster>,
        tls: Option<Arc<crate::tls::UpstreamTls>>,
        session_affinity: Option<SessionAffinity>,
        affinity_table: Option<u32>,
    ) -> Self {
        let clock: Arc<dyn Clock> = previous.map_or_else(
            || Arc::new(SystemClock) as Arc<dyn Clock>,
            |p| Arc::clone(&p.clock),
        );
        let pool_settings = crate::upstream::PoolSettings {
            protocol: cfg.protocol,
            connect_timeout: cfg.connect_timeout.get(),
            idle_timeout: cfg.pool_idle_timeout.get(),
            max_idle: cfg.pool_max_idle_per_endpoint.max(1) as usize,
            tls: tls.clone(),
        };
        let mut endpoints = Vec::with_capacity(cfg.endpoints.len());
        let mut pools = Vec::with_capacity(cfg.endpoints.len());
        let now = clock.now();
        for ep in &cfg.endpoints {
            let old = previous.and_then(|p| Some((p, p.position(ep.address)?)));
            let state = match old {
                Some((p, i)) => Arc::clone(&p.endpoints[i].state),
                None => {
                    let state = Arc::new(weir_core::EndpointState::default());
                    if previous.is_some() {
                        state.mark_added(now);
                    }
                    // Envoy's rule: a checked endpoint takes traffic once its first check passes.
                    if cfg.health_check.as_ref().is_some_and(|h| !h.start_healthy) {
                        let _ = state.set_unhealthy(Unhealthy::ActiveCheck, true, now);
                    }
                    state
                }
            };
            // A verdict whose source the new config removed must not linger.
            if cfg.health_check.is_none() {
                let _ = state.set_unhealthy(Unhealthy::ActiveCheck, false, now);
            }
            if cfg.outlier_detection.is_none()
                && state
                    .set_unhealthy(Unhealthy::Ejected, false, now)
                    .flag_changed(Unhealthy::Ejected)
            {
                state.passive.note_readmission();
            }
            let pool = old
                .map(|(p, i)| &p.pools[i])
                .filter(|p| p.settings() == &pool_settings)
                .map(Arc::clone)
                .unwrap_or_else(|| Arc::new(EndpointPool::new(ep.address, pool_settings.clone())));
            endpoints.push(Arc::new(Endpoint::with_state(ep.address, ep.weight, state)));
            pools.push(pool);
        }
        let ctx = BuildContext {
            clock: Arc::clone(&clock),
            random: Arc::new(weir_balance::ThreadRandom),
        };
        let balancer = weir_balance::build(cfg, &endpoints, &ctx);
        let affinity = ClusterAffinity::new(
            cfg,
            &endpoints,
            &ctx,
            affinity_table,
            previous.map(|p| &p.affinity),
        );
        let outlier = cfg.outlier_detection.as_ref().map(|od| {
            OutlierDetector::new(
                Arc::from(cfg.name.as_str()),
                od.clone(),
                endpoints.clone(),
                Arc::clone(&ctx.random),
                now,
                previous.and_then(|p| p.outlier.as_ref()),
            )
        });
        Self {
            name: Arc::from(cfg.name.as_str()),
            protocol: cfg.protocol,
            lb_policy: policy_name(cfg.lb_policy),
            endpoints,
            pools,
            balancer,
            hash_key: cfg.hash_key.as_ref().and_then(HashKey::from_config),
            clock,
            proxy_protocol: cfg.proxy_protocol,
            breakers: Breakers::new(cfg.circuit_breakers.clone(), previous.map(|p| &p.breakers)),
            retry_budget: RetryBudget::new(&cfg.retry_budget, previous.map(|p| &p.retry_budget)),
            health_check: cfg.health_check.clone(),
            outlier,
            panic_picks: AtomicU64::new(
                previous.map_or(0, |p| p.panic_picks.load(Ordering::Relaxed)),
            ),
            stats: previous.map(|p| Arc::clone(&p.stats)).unwrap_or_default(),
            tls,
            session_affinity,
            affinity,
        }
    }

    /// Picks an endpoint for one request or connection.
    pub(crate) fn pick(&self, input: &HashInput<'_>, attempt: u32) -> Option<Picked<'_>> {
        let ctx = PickContext {
            hash: self.hash_key.as_ref().and_then(|k| k.hash(input)),
            attempt,
        };
        let picked = self.picked(self.balancer.pick(&ctx)?)?;
        if !picked.endpoint.state.is_healthy() {
            // Only a panicking balancer hands out an unhealthy endpoint: fail open, counted.
            self.panic_picks.fetch_add(1, Ordering::Relaxed);
        }
        Some(picked)
    }

    /// Picks an endpoint for an L4 connection or UDP session: the cluster's `client_address`
    /// session affinity decides the first attempt when it has one, else [`Cluster::pick`].
    pub(crate) fn pick_connection(
        &self,
        input: &HashInput<'_>,
        attempt: u32,
    ) -> Option<Picked<'_>> {
        if attempt == 0
            && let Some(index) =
                (self.session_affinity.as_ref()).and_then(|a| a.connection_pick(self, input))
        {
            return self.picked(index);
        }
        self.pick(input, attempt)
    }

    /// Like [`Cluster::pick`], with the balancer's explanation (the decision record only).
    pub(crate) fn pick_explained(
        &self,
        input: &HashInput<'_>,
        attempt: u32,
    ) -> Option<(Picked<'_>, weir_balance::Explanation)> {
        let ctx = PickContext {
            hash: self.hash_key.as_ref().and_then(|k| k.hash(input)),
            attempt,
        };
        let (index, explanation) = self.balancer.pick_explained(&ctx)?;
        Some((self.picked(index)?, explanation))
    }

    /// The endpoint at `index`, as a pick.
    pub(crate) fn picked(&self, index: usize) -> Option<Picked<'_>> {
        Some(Picked {
            index,
            endpoint: self.endpoints.get(index)?,
            pool: self.pools.get(index)?,
        })
    }

    /// Reports how an exchange with endpoint `index` went (feeds latency-aware balancing).
    pub(crate) fn observe(&self, index: usize, observation: &Observation) {
        self.balancer.observe(index, observation);
    }

    /// Reports how an exchange with endpoint `index` went to passive health: the endpoint's
    /// streaks, and outlier detection (which may eject it) when configured.
    /// A connect failure also counts in the endpoint's `connect_failures` total.
    pub(crate) fn record_outcome(&self, index: usize, outcome: PassiveOutcome) {
        self.record_outcome_at(index, outcome, self.clock.now());
    }

    /// Reports an answer from endpoint `index` after `rtt` (HTTP: to response headers, with
    /// `outcome` its status; L4: the connect, a success) to passive health and to the
    /// endpoint's own counters: its response latency average and, for a 5xx, its errors.
    pub(crate) fn record_response(&self, index: usize, rtt: Duration, outcome: PassiveOutcome) {
        let now = self.clock.now();
        if let Some(endpoint) = self.endpoints.get(index) {
            endpoint.state.response_latency.observe(rtt, now);
            if let PassiveOutcome::Status5xx(_) = outcome {
                endpoint.state.errors.record(EndpointError::ServerError);
            }
        }
        self.record_outcome_at(index, outcome, now);
    }

    /// Counts an exchange with endpoint `index` that failed for `reason` among the endpoint's
    /// errors (passive health hears of it through [`Cluster::record_outcome`]).
    pub(crate) fn record_error(&self, index: usize, reason: EndpointError) {
        if let Some(endpoint) = self.endpoints.get(index) {
            endpoint.state.errors.record(reason);
        }
    }

    fn record_outcome_at(&self, index: usize, outcome: PassiveOutcome, now: Nanos) {
        if outcome == PassiveOutcome::ConnectFailure
            && let Some(endpoint) = self.endpoints.get(index)
        {
            endpoint.state.record_connect_failure();
        }
        match &self.outlier {
            Some(detector) => {
                if detector.record(index, outcome, now).is_some() {
                    crate::outlier::ejected();
                }
            }
            None => {
                if let Some(endpoint) = self.endpoints.get(index) {
                    endpoint.state.passive.record(outcome, now);
                }
            }
        }
    }

    /// Re-admits endpoints whose ejection ended and runs the interval detectors; returns when
    /// the next sweep is due and the clock reading now, or `None` without outlier detection.
    /// Without a detector it clears ejections a request on an older snapshot may still have
    /// made, since nothing else would end them.
    pub(crate) fn sweep_outliers(&self) -> Option<(Nanos, Nanos)> {
        let now = self.clock.now();
        let Some(detector) = self.outlier.as_ref() else {
            for endpoint in &self.endpoints {
                if endpoint.state.health().contains(Unhealthy::Ejected) {
                    let _ = endpoint.state.set_unhealthy(Unhealthy::Ejected, false, now);
                    endpoint.state.passive.note_readmission();
                }
            }
            return None;
        };
        Some((detector.sweep(now).next_due, now))
    }

    /// The active health check configured for this cluster (the control side runs it).
    pub fn health_check(&self) -> Option<&HealthCheckConfig> {
        self.health_check.as_ref()
    }

    /// The cluster's upstream TLS client config (kept current when its files change on disk)
    /// and server name (`None`: each endpoint's IP address), when it has `tls:` — the very
    /// config its connections use, so health checks speak TLS exactly as traffic does.
    pub fn tls_client(
        &self,
    ) -> Option<(
        Arc<arc_swap::ArcSwap<rustls::ClientConfig>>,
        Option<rustls::pki_types::ServerName<'static>>,
    )> {
        self.tls.as_ref().map(|t| t.client())
    }

    /// The outlier detector of this cluster, if outlier detection is configured.
    pub fn outlier_detector(&self) -> Option<&OutlierDetector> {
        self.outlier.as_ref()
    }

    /// Picks that went to an unhealthy endpoint because too few were healthy (panic mode).
    pub fn panic_picks(&self) -> u64 {
        self.panic_picks.load(Ordering::Relaxed)
    }

    /// The clock this cluster's endpoint state is stamped with.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Tells the balancer that endpoint health changed (recomputes the panic state).
    pub fn health_changed(&self) {
        self.balancer.health_changed();
    }

    /// The circuit-breaker counters: connections, pending and active requests, overflows.
    pub fn breaker_stats(&self) -> BreakerStats {
        self.breakers.stats()
    }

    /// What the cluster's retries did: sent, refused by the budget, refused by `max_retries`.
    pub fn retry_stats(&self) -> RetryStats {
        self.retry_budget.stats()
    }

    /// Hashed affinity sessions (`header`, `client_address`) the cluster remembers now; `None`
    /// when it keeps no session table.
    pub fn affinity_sessions(&self) -> Option<usize> {
        self.affinity.sessions(self.clock.now())
    }

    /// The connect timeout of this cluster's endpoints.
    pub fn connect_timeout(&self) -> Option<Duration> {
        self.pools.first().map(|p| p.settings().connect_timeout)
    }

    fn position(&self, address: std::net::SocketAddr) -> Option<usize> {
        self.endpoints.iter().position(|e| e.address == address)
    }
}

/// The config name of a balancing policy.
fn policy_name(policy: weir_config::LbPolicyConfig) -> &'static str {
    use weir_config::LbPolicyConfig::*;
    match policy {
        RoundRobin => "round_robin",
        Random => "random",
        LeastRequest => "least_request",
        PeakEwma => "peak_ewma",
        RingHash => "ring_hash",
        Maglev => "maglev",
    }
}

#[cfg(test)]
mod tests {
    use weir_core::Unhealthy;

    use crate::Snapshot;

    fn compile(yaml: &str, previous: Option<&Snapshot>) -> Snapshot {
        let config = weir_config::load_str(yaml, "t.yaml").unwrap();
        Snapshot::compile(&config, previous).unwrap()
    }

    const CHECKED: &str = "clusters:
  - name: c
    health_check: { tcp: {} }
    outlier_detection: { consecutive_connect_failures: 3 }
    endpoints: [ 127.0.0.1:9001, 127.0.0.1:9002, 127.0.0.1:9003 ]
";

    #[test]
    fn health_and_ejections_survive_a_recompile_for_endpoints_that_remain() {
        let first = compile(CHECKED, None);
        let c = first.cluster("c").unwrap();
        assert!(
            c.endpoints
                .iter()
                .all(|e| e.state.health().contains(Unhealthy::ActiveCheck)),
            "checked endpoints wait for their first pass"
        );
        c.endpoints[0].state.set_healthy(true, 1);
        c.endpoints[1].state.set_healthy(true, 1);
        for _ in 0..3 {
            c.record_outcome(1, weir_core::PassiveOutcome::ConnectFailure);
        }
        assert!(c.endpoints[1].state.health().contains(Unhealthy::Ejected));

        // Same endpoints plus a new one: the verdicts stay, the newcomer waits for its check.
        let next = compile(
            &CHECKED.replace("127.0.0.1:9003 ]", "127.0.0.1:9003, 127.0.0.1:9004 ]"),
            Some(&first),
        );
        let n = next.cluster("c").unwrap();
        assert!(n.endpoints[0].state.is_healthy());
        assert!(n.endpoints[1].state.health().contains(Unhealthy::Ejected));
        assert_eq!(n.endpoints[1].state.passive.ejections_total(), 1);
        assert_eq!(n.endpoints[1].state.connect_failures(), 3);
        assert!(
            n.endpoints[3]
                .state
                .health()
                .contains(Unhealthy::ActiveCheck)
        );
        assert_eq!(n.outlier_detector().unwrap().ejected_count(), 1);

        // Without health options the reasons they set are cleared.
        let bare = compile(
            "clusters:
  - name: c
    endpoints: [ 127.0.0.1:9001, 127.0.0.1:9002, 127.0.0.1:9003 ]
",
            Some(&next),
        );
        let b = bare.cluster("c").unwrap();
        assert!(b.endpoints.iter().all(|e| e.state.is_healthy()));
        assert_eq!(b.endpoints[1].state.passive.ejected_until(), 0);
    }

    #[test]
    fn start_healthy_skips_the_wait_for_the_first_check() {
        let s = compile(
            "clusters:
  - name: c
    health_check: { tcp: {}, start_healthy: true }
    endpoints: [ 127.0.0.1:9001 ]
",
            None,
        );
        assert!(s.cluster("c").unwrap().endpoints[0].state.is_healthy());
    }
}

//! The runtime form of a cluster: endpoints, their balancer, their pools and the hash key.

use std::sync::Arc;
use std::time::Duration;

use weir_balance::{Balancer, BuildContext, Observation, PickContext};
use weir_config::{ClusterConfig, UpstreamProtocol};
use weir_core::{Clock, Endpoint, SystemClock};

use crate::breakers::{BreakerStats, Breakers};
use crate::hash_key::{HashInput, HashKey};
use crate::upstream::EndpointPool;

/// A compiled cluster, immutable for the life of a snapshot.
#[derive(Debug)]
pub struct Cluster {
    /// The cluster's name from the config.
    pub name: Arc<str>,
    /// Protocol spoken to its endpoints.
    pub protocol: UpstreamProtocol,
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
    /// Endpoints that join an existing cluster start their slow start now.
    pub(crate) fn from_config(cfg: &ClusterConfig, previous: Option<&Cluster>) -> Self {
        let clock: Arc<dyn Clock> = previous.map_or_else(
            || Arc::new(SystemClock) as Arc<dyn Clock>,
            |p| Arc::clone(&p.clock),
        );
        let pool_settings = crate::upstream::PoolSettings {
            protocol: cfg.protocol,
            connect_timeout: cfg.connect_timeout.get(),
            idle_timeout: cfg.pool_idle_timeout.get(),
            max_idle: cfg.pool_max_idle_per_endpoint.max(1) as usize,
        };
        let mut endpoints = Vec::with_capacity(cfg.endpoints.len());
        let mut pools = Vec::with_capacity(cfg.endpoints.len());
        for ep in &cfg.endpoints {
            let old = previous.and_then(|p| Some((p, p.position(ep.address)?)));
            let state = match old {
                Some((p, i)) => Arc::clone(&p.endpoints[i].state),
                None => {
                    let state = Arc::new(weir_core::EndpointState::default());
                    if previous.is_some() {
                        state.mark_added(clock.now());
                    }
                    state
                }
            };
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
        Self {
            name: Arc::from(cfg.name.as_str()),
            protocol: cfg.protocol,
            endpoints,
            pools,
            balancer,
            hash_key: cfg.hash_key.as_ref().and_then(HashKey::from_config),
            clock,
            proxy_protocol: cfg.proxy_protocol,
            breakers: Breakers::new(cfg.circuit_breakers.clone(), previous.map(|p| &p.breakers)),
        }
    }

    /// Picks an endpoint for one request or connection.
    pub(crate) fn pick(&self, input: &HashInput<'_>, attempt: u32) -> Option<Picked<'_>> {
        let ctx = PickContext {
            hash: self.hash_key.as_ref().and_then(|k| k.hash(input)),
            attempt,
        };
        self.picked(self.balancer.pick(&ctx)?)
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

    /// Tells the balancer that endpoint health changed (recomputes the panic state).
    pub fn health_changed(&self) {
        self.balancer.health_changed();
    }

    /// The circuit-breaker counters: connections, pending and active requests, overflows.
    pub fn breaker_stats(&self) -> BreakerStats {
        self.breakers.stats()
    }

    /// The connect timeout of this cluster's endpoints.
    pub fn connect_timeout(&self) -> Option<Duration> {
        self.pools.first().map(|p| p.settings().connect_timeout)
    }

    fn position(&self, address: std::net::SocketAddr) -> Option<usize> {
        self.endpoints.iter().position(|e| e.address == address)
    }
}

//! The runtime form of a cluster: endpoints, their balancer and their connection pools.

use std::sync::Arc;
use std::time::Duration;

use weir_balance::{Balancer, PickContext};
use weir_config::{ClusterConfig, UpstreamProtocol};
use weir_core::Endpoint;

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
}

// === impl Cluster ===

impl Cluster {
    /// Compiles `cfg`, reusing live state and pools from `previous` for endpoints it still has.
    pub(crate) fn from_config(cfg: &ClusterConfig, previous: Option<&Cluster>) -> Self {
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
            let state = old
                .map(|(p, i)| Arc::clone(&p.endpoints[i].state))
                .unwrap_or_default();
            let pool = old
                .map(|(p, i)| &p.pools[i])
                .filter(|p| p.settings() == &pool_settings)
                .map(Arc::clone)
                .unwrap_or_else(|| Arc::new(EndpointPool::new(ep.address, pool_settings.clone())));
            endpoints.push(Arc::new(Endpoint::with_state(ep.address, ep.weight, state)));
            pools.push(pool);
        }
        let balancer = weir_balance::build(cfg.lb_policy, &endpoints);
        Self {
            name: Arc::from(cfg.name.as_str()),
            protocol: cfg.protocol,
            endpoints,
            pools,
            balancer,
        }
    }

    /// Picks an endpoint for one request: its description and its connection pool.
    pub(crate) fn pick(&self, ctx: &PickContext) -> Option<(&Arc<Endpoint>, &Arc<EndpointPool>)> {
        let i = self.balancer.pick(ctx)?;
        Some((self.endpoints.get(i)?, self.pools.get(i)?))
    }

    /// The connect timeout of this cluster's endpoints.
    pub fn connect_timeout(&self) -> Option<Duration> {
        self.pools.first().map(|p| p.settings().connect_timeout)
    }

    fn position(&self, address: std::net::SocketAddr) -> Option<usize> {
        self.endpoints.iter().position(|e| e.address == address)
    }
}

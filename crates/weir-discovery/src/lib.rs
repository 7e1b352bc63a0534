//! Service discovery: keeps a cluster's endpoint set current without a config reload.
//!
//! One task per cluster with a `discovery` block resolves its source (DNS today: A/AAAA with the
//! configured port, or SRV with ports and weights from the records), again whenever the
//! answer's TTL runs out (clamped to `min_ttl`..`max_ttl`), and hands every *changed* endpoint
//! set to a sink. The sink — `weir::Weir` — merges the set with the cluster's static endpoints
//! and swaps in a recompiled snapshot, so endpoints that stay keep their state. A failed
//! resolution keeps the last good set (it is simply not reported) and is retried sooner.
//!
//! Like the health checker, this crate is control side: the data plane never depends on it.

mod dns;

use std::collections::HashMap;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use weir_config::{DnsDiscoveryConfig, EndpointConfig};

/// Receives a cluster's new discovered endpoint set (cluster name, endpoints).
pub type Sink = Arc<dyn Fn(&str, Vec<EndpointConfig>) + Send + Sync>;

/// One cluster to discover endpoints for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryTarget {
    /// The cluster's name.
    pub cluster: String,
    /// Its DNS source.
    pub dns: DnsDiscoveryConfig,
}

/// The running discovery tasks, one per cluster.
pub struct Discovery {
    sink: Sink,
    running: HashMap<String, Running>,
}

struct Running {
    dns: DnsDiscoveryConfig,
    stop: CancellationToken,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery")
            .field("clusters", &self.running.keys().collect::<Vec<_>>())
            .finish()
    }
}

// === impl Discovery ===

impl Discovery {
    /// No tasks yet; every change found later goes to `sink`.
    pub fn new(sink: Sink) -> Self {
        Self {
            sink,
            running: HashMap::new(),
        }
    }

    /// Runs exactly `targets`: starts tasks for new clusters, restarts those whose source
    /// changed, stops those no longer listed, and leaves the rest running. Must run inside a
    /// tokio runtime.
    pub fn reconcile(&mut self, targets: Vec<DiscoveryTarget>) {
        let wanted: HashMap<String, DnsDiscoveryConfig> =
            targets.into_iter().map(|t| (t.cluster, t.dns)).collect();
        self.running.retain(|cluster, running| {
            let keep = wanted.get(cluster) == Some(&running.dns);
            if !keep {
                running.stop.cancel();
            }
            keep
        });
        for (cluster, dns) in wanted {
            if self.running.contains_key(&cluster) {
                continue;
            }
            let stop = CancellationToken::new();
            tokio::spawn(dns::run(
                cluster.clone(),
                dns.clone(),
                Arc::clone(&self.sink),
                stop.clone(),
            ));
            self.running.insert(cluster, Running { dns, stop });
        }
    }

    /// Clusters being discovered.
    pub fn len(&self) -> usize {
        self.running.len()
    }

    /// Whether no cluster is being discovered.
    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    /// Stops every task.
    pub fn shutdown(&mut self) {
        for (_, running) in self.running.drain() {
            running.stop.cancel();
        }
    }
}

impl Drop for Discovery {
    fn drop(&mut self) {
        self.shutdown();
    }
}

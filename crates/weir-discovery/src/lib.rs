//! Service discovery: keeps a cluster's endpoint set current without a config reload.
//!
//! One task per cluster with a `discovery` block follows its source and hands every *changed*
//! endpoint set to a sink:
//! - [`dns`]: A/AAAA with the configured port, or SRV with ports and weights from the records,
//!   resolved again whenever the answer's TTL runs out (clamped to `min_ttl`..`max_ttl`);
//! - [`etcd`]: one JSON value per endpoint under a key prefix, listed and then watched, with
//!   reconnects (exponential backoff and jitter) that list again;
//! - [`file`]: an endpoints file, read again whenever its contents change.
//!
//! The sink — `weir::Weir` — merges the set with the cluster's static endpoints and swaps in a
//! recompiled snapshot, so endpoints that stay keep their state. A failing source keeps the last
//! good set (nothing is reported) and is retried.
//!
//! Like the health checker, this crate is control side: the data plane never depends on it.

mod dns;
mod etcd;
mod file;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio_util::sync::CancellationToken;
use weir_config::{
    DiscoveryConfig, DnsDiscoveryConfig, EndpointConfig, EtcdDiscoveryConfig, FileDiscoveryConfig,
};

pub use etcd::{parse_value, prefix_range_end};

/// Receives a cluster's new discovered endpoint set (cluster name, endpoints).
pub type Sink = Arc<dyn Fn(&str, Vec<EndpointConfig>) + Send + Sync>;

/// One cluster to discover endpoints for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryTarget {
    /// The cluster's name.
    pub cluster: String,
    /// Where its endpoints come from.
    pub source: Source,
}

/// A cluster's discovery source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// DNS records.
    Dns(DnsDiscoveryConfig),
    /// Keys under a prefix in etcd.
    Etcd(EtcdDiscoveryConfig),
    /// An endpoints file; its `path` is absolute or relative to the working directory (see
    /// [`Source::from_config`]).
    File(FileDiscoveryConfig),
}

/// The running discovery tasks, one per cluster.
pub struct Discovery {
    sink: Sink,
    running: HashMap<String, Running>,
    /// Per-endpoint records (etcd values) skipped because they did not parse, all clusters.
    bad_values: Arc<AtomicU64>,
}

struct Running {
    source: Source,
    stop: CancellationToken,
}

// === impl Source ===

impl Source {
    /// The source `discovery` names (the first of `dns`, `etcd`, `file`; validation allows
    /// one), with a relative file path resolved from `config_dir` (the config file's
    /// directory) when given.
    pub fn from_config(discovery: &DiscoveryConfig, config_dir: Option<&Path>) -> Option<Self> {
        if let Some(dns) = &discovery.dns {
            return Some(Self::Dns(dns.clone()));
        }
        if let Some(etcd) = &discovery.etcd {
            return Some(Self::Etcd(etcd.clone()));
        }
        let mut file = discovery.file.clone()?;
        if let Some(dir) = config_dir
            && file.path.is_relative()
        {
            file.path = dir.join(&file.path);
        }
        Some(Self::File(file))
    }
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
            bad_values: Arc::default(),
        }
    }

    /// Per-endpoint records skipped so far because they did not parse (etcd values); each is
    /// also logged with its key.
    pub fn bad_values(&self) -> u64 {
        self.bad_values.load(Ordering::Relaxed)
    }

    /// The counter behind [`Discovery::bad_values`], to export (`/metrics`).
    pub fn bad_values_counter(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.bad_values)
    }

    /// Runs exactly `targets`: starts tasks for new clusters, restarts those whose source
    /// changed, stops those no longer listed, and leaves the rest running. Must run inside a
    /// tokio runtime.
    pub fn reconcile(&mut self, targets: Vec<DiscoveryTarget>) {
        let wanted: HashMap<String, Source> =
            targets.into_iter().map(|t| (t.cluster, t.source)).collect();
        self.running.retain(|cluster, running| {
            let keep = wanted.get(cluster) == Some(&running.source);
            if !keep {
                running.stop.cancel();
            }
            keep
        });
        for (cluster, source) in wanted {
            if self.running.contains_key(&cluster) {
                continue;
            }
            let stop = CancellationToken::new();
            let sink = Arc::clone(&self.sink);
            match &source {
                Source::Dns(dns) => {
                    tokio::spawn(dns::run(cluster.clone(), dns.clone(), sink, stop.clone()));
                }
                Source::Etcd(etcd) => {
                    tokio::spawn(etcd::run(
                        cluster.clone(),
                        etcd.clone(),
                        sink,
                        Arc::clone(&self.bad_values),
                        stop.clone(),
                    ));
                }
                Source::File(file) => {
                    tokio::spawn(file::run(cluster.clone(), file.clone(), sink, stop.clone()));
                }
            }
            self.running.insert(cluster, Running { source, stop });
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

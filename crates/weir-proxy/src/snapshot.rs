//! The immutable compiled world that the data plane reads, and the handle that publishes it.
//!
//! [`Snapshot::compile`] turns a [`ValidatedConfig`] into listeners with route tables and
//! clusters with balancers — everything a request needs, resolved ahead of time. A new snapshot
//! replaces the old one atomically through [`SnapshotHandle`]; requests already running keep the
//! snapshot they loaded. Endpoint state and pools carry over for endpoints that remain.

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use weir_config::{ListenerProtocol, ValidatedConfig};

use crate::Cluster;
use crate::affinity::SessionAffinity;
use crate::l4::{StreamListener, UdpListener};
use crate::l7::HttpListener;

/// Why a validated config could not be compiled (a validator gap; reported, never panicked on).
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct CompileError {
    /// YAML path of the offending item, e.g. `listeners[0].routes[1].match`.
    pub path: String,
    /// What went wrong.
    pub reason: String,
}

/// Everything the data plane needs, compiled and immutable.
#[derive(Debug)]
pub struct Snapshot {
    pub(crate) listeners: Vec<Listener>,
    /// The name of each of `listeners`, in the same order: listener tasks and connections find
    /// their listener by name, which stays stable when a reload adds or removes others.
    pub(crate) listener_names: Vec<Arc<str>>,
    pub(crate) clusters: Vec<Cluster>,
    /// Where global rate limits are counted; read by the rate limit sync task.
    pub(crate) rate_limit_service: Option<weir_config::RateLimitServiceConfig>,
    /// The sampling ratio of new traces when trace context propagation is on (`tracing:`).
    pub(crate) trace_sampling: Option<f64>,
}

/// A compiled listener, by protocol; indices match the config's `listeners` list.
#[derive(Debug)]
pub(crate) enum Listener {
    /// HTTP/1.1 + HTTP/2 with routes.
    Http(Box<HttpListener>),
    /// TCP or TLS passthrough.
    Stream(StreamListener),
    /// UDP sessions.
    Udp(UdpListener),
    /// An `xdp` or `nftables` listener: balanced by the kernel data plane that weir's wiring runs; the proxy
    /// holds nothing for it.
    Kernel,
}

/// Publishes snapshots to the data plane; cheap to clone and share.
#[derive(Debug, Clone)]
pub struct SnapshotHandle {
    current: Arc<ArcSwap<Snapshot>>,
}

// === impl Snapshot ===

impl Snapshot {
    /// Compiles `config`, carrying endpoint state and pools over from `previous`.
    pub fn compile(
        config: &ValidatedConfig,
        previous: Option<&Snapshot>,
    ) -> Result<Self, CompileError> {
        let cfg = config.config();
        let hashing = affinity_hashing_clusters(cfg);
        let clusters: Vec<Cluster> = cfg
            .clusters
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let previous = previous.and_then(|p| p.cluster(&c.name));
                let tls = match &c.tls {
                    Some(t) => {
                        let tls = crate::tls::UpstreamTls::compile(
                            t,
                            c.protocol,
                            &format!("clusters[{i}].tls"),
                        )?
                        .carry_status(previous.and_then(|p| p.tls.as_deref()));
                        // The same settings and files keep the same client config, so health
                        // checks built on it keep running across the reload.
                        let same = previous
                            .and_then(|p| p.tls.as_ref())
                            .filter(|old| ***old == tls);
                        Some(same.map_or_else(|| Arc::new(tls), Arc::clone))
                    }
                    None => None,
                };
                let affinity = c
                    .session_affinity
                    .as_ref()
                    .map(SessionAffinity::compile)
                    .transpose()
                    .map_err(|reason| CompileError {
                        path: format!("clusters[{i}].session_affinity"),
                        reason,
                    })?;
                let table = hashing.get(c.name.as_str()).copied();
                Ok(Cluster::from_config(c, previous, tls, affinity, table))
            })
            .collect::<Result<_, CompileError>>()?;
        let listeners = cfg
            .listeners
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let path = format!("listeners[{i}]");
                Ok(match l.protocol {
                    ListenerProtocol::Http => {
                        // Rate limit buckets carry over from the same listener of `previous`.
                        let prev = match previous.and_then(|p| p.listener(&l.name)) {
                            Some(Listener::Http(h)) => Some(&**h),
                            _ => None,
                        };
                        Listener::Http(Box::new(HttpListener::compile(l, &clusters, &path, prev)?))
                    }
                    ListenerProtocol::Tcp | ListenerProtocol::TlsPassthrough => {
                        Listener::Stream(StreamListener::compile(l, &clusters, &path)?)
                    }
                    ListenerProtocol::Udp => {
                        Listener::Udp(UdpListener::compile(l, &clusters, &path)?)
                    }
                    ListenerProtocol::Xdp | ListenerProtocol::Nftables => Listener::Kernel,
                })
            })
            .collect::<Result<_, CompileError>>()?;
        Ok(Self {
            listeners,
            listener_names: cfg.listeners.iter().map(|l| Arc::from(&*l.name)).collect(),
            clusters,
            rate_limit_service: cfg.rate_limit_service.clone(),
            trace_sampling: cfg.tracing.as_ref().map(|t| t.sampling.get()),
        })
    }

    /// The listener named `name`, if this snapshot has one.
    pub(crate) fn listener(&self, name: &str) -> Option<&Listener> {
        let index = self.listener_names.iter().position(|n| &**n == name)?;
        self.listeners.get(index)
    }

    /// The cluster named `name`.
    pub fn cluster(&self, name: &str) -> Option<&Cluster> {
        self.clusters.iter().find(|c| &*c.name == name)
    }

    /// All clusters, in config order.
    pub fn clusters(&self) -> &[Cluster] {
        &self.clusters
    }
}

// === impl SnapshotHandle ===

impl SnapshotHandle {
    /// A handle publishing `initial`.
    pub fn new(initial: Snapshot) -> Self {
        Self {
            current: Arc::new(ArcSwap::from_pointee(initial)),
        }
    }

    /// The current snapshot; load once per request or connection and keep it.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Publishes `next`; requests in flight finish on the snapshot they loaded.
    pub fn store(&self, next: Snapshot) {
        self.current.store(Arc::new(next));
    }
}

/// The clusters whose session affinity hashes (their own, or that of a route forwarding to
/// them), each with the largest `max_sessions` of those policies: only these build the
/// affinity Maglev table, and the session table of that size.
fn affinity_hashing_clusters(cfg: &weir_config::Config) -> BTreeMap<&str, u32> {
    let mut sizes: BTreeMap<&str, u32> = BTreeMap::new();
    for c in &cfg.clusters {
        if let Some(a) = c
            .session_affinity
            .as_ref()
            .filter(|a| SessionAffinity::hashes(a))
        {
            let size = sizes.entry(c.name.as_str()).or_insert(0);
            *size = (*size).max(a.max_sessions());
        }
    }
    let routes = cfg.listeners.iter().flat_map(|l| &l.routes);
    for r in routes {
        let Some(a) = r
            .session_affinity
            .as_ref()
            .filter(|a| SessionAffinity::hashes(a))
        else {
            continue;
        };
        let targets = r.cluster.as_deref().into_iter().chain(
            r.weighted_clusters
                .iter()
                .flatten()
                .map(|w| w.cluster.as_str()),
        );
        for name in targets {
            let size = sizes.entry(name).or_insert(0);
            *size = (*size).max(a.max_sessions());
        }
    }
    sizes
}

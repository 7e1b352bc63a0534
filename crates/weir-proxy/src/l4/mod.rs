//! Layer-4 proxying: TCP and TLS passthrough streams, UDP sessions, the PROXY protocol.
//!
//! An L4 listener knows nothing of the application protocol. A stream listener (`tcp` or
//! `tls_passthrough`) accepts a connection, optionally reads what it must (a PROXY header from
//! a trusted peer, the TLS ClientHello for its SNI), picks an endpoint of the target cluster,
//! connects (trying the next endpoint on failure) and copies bytes both ways with half-close.
//! A UDP listener keeps a bounded table of client sessions and relays datagrams.

mod copy;
pub(crate) mod proxy_protocol;
pub(crate) mod sni;
#[cfg(target_os = "linux")]
mod splice;
pub(crate) mod tcp;
pub(crate) mod udp;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use weir_config::{CidrList, ListenerConfig, ListenerProtocol};
use weir_router::HostMatch;

use crate::{Cluster, CompileError};

/// A compiled `tcp` or `tls_passthrough` listener.
#[derive(Debug)]
pub(crate) struct StreamListener {
    pub(crate) target: StreamTarget,
    pub(crate) idle_timeout: Duration,
    pub(crate) max_connections: usize,
    pub(crate) connect_attempts: u32,
    pub(crate) first_bytes_timeout: Duration,
    /// Peers that must send a PROXY header; `None` when the listener does not accept it.
    pub(crate) accept_proxy: Option<CidrList>,
    /// Counters of refused connections.
    pub(crate) stats: Arc<ListenerStats>,
    /// Move bytes with splice(2) where possible.
    pub(crate) zero_copy: bool,
    /// New connections per second (`rate_limit:`); over it a connection is closed at once.
    pub(crate) connection_limit: Option<crate::rate_limit::ConnectionLimiter>,
}

/// Connections a listener refused, by reason. Read them with [`crate::Proxy::listener_stats`].
#[derive(Debug, Default)]
pub struct ListenerStats {
    /// Malformed, oversized or missing TLS ClientHellos (TLS passthrough).
    pub rejected_client_hellos: AtomicU64,
    /// PROXY headers from peers that are not trusted to send them.
    pub rejected_proxy_headers: AtomicU64,
    /// Connections closed at accept by the listener's `rate_limit`.
    pub rate_limited: AtomicU64,
}

/// Where a stream listener's connections go.
#[derive(Debug)]
pub(crate) enum StreamTarget {
    /// Every connection to this cluster (index into `Snapshot::clusters`).
    Cluster(usize),
    /// By the SNI of the TLS ClientHello; first match wins, else `default`.
    Sni {
        routes: Vec<(HostMatch, usize)>,
        default: Option<usize>,
    },
}

/// A compiled `udp` listener.
#[derive(Debug)]
pub(crate) struct UdpListener {
    pub(crate) cluster: usize,
    pub(crate) max_sessions: usize,
    pub(crate) idle_timeout: Duration,
}

// === impl StreamListener ===

impl StreamListener {
    /// Compiles a `tcp` or `tls_passthrough` listener.
    pub(crate) fn compile(
        cfg: &ListenerConfig,
        clusters: &[Cluster],
        path: &str,
    ) -> Result<Self, CompileError> {
        let target = match cfg.protocol {
            ListenerProtocol::TlsPassthrough => {
                let mut routes = Vec::new();
                for (i, r) in cfg.sni.iter().enumerate() {
                    let cluster =
                        cluster_index(clusters, &r.cluster, &format!("{path}.sni[{i}].cluster"))?;
                    routes.extend(r.server_names.iter().map(|n| (HostMatch::new(n), cluster)));
                }
                let default = cfg
                    .default_cluster
                    .as_deref()
                    .map(|c| cluster_index(clusters, c, &format!("{path}.default_cluster")))
                    .transpose()?;
                StreamTarget::Sni { routes, default }
            }
            _ => StreamTarget::Cluster(required_cluster(cfg, clusters, path)?),
        };
        let t = &cfg.tcp;
        Ok(Self {
            target,
            idle_timeout: t.idle_timeout.get(),
            max_connections: t.max_connections as usize,
            connect_attempts: t.connect_attempts.max(1),
            first_bytes_timeout: t.first_bytes_timeout.get(),
            accept_proxy: cfg.proxy_protocol.as_ref().map(|p| p.trusted.clone()),
            stats: Arc::default(),
            zero_copy: t.zero_copy,
            connection_limit: cfg.rate_limit.as_ref().map(|r| {
                crate::rate_limit::ConnectionLimiter::new(
                    r.connections_per_second,
                    r.burst(),
                    std::sync::Arc::new(weir_core::SystemClock),
                )
            }),
        })
    }
}

// === impl StreamTarget ===

impl StreamTarget {
    /// The cluster for a connection whose ClientHello carried `sni` (ignored for `Cluster`).
    pub(crate) fn cluster_for(&self, sni: Option<&str>) -> Option<usize> {
        match self {
            StreamTarget::Cluster(c) => Some(*c),
            StreamTarget::Sni { routes, default } => sni
                .and_then(|name| {
                    routes
                        .iter()
                        .find(|(m, _)| m.matches(name))
                        .map(|&(_, c)| c)
                })
                .or(*default),
        }
    }

    /// Whether the ClientHello must be read before a cluster can be chosen.
    pub(crate) fn needs_sni(&self) -> bool {
        matches!(self, StreamTarget::Sni { .. })
    }
}

// === impl UdpListener ===

impl UdpListener {
    /// Compiles a `udp` listener.
    pub(crate) fn compile(
        cfg: &ListenerConfig,
        clusters: &[Cluster],
        path: &str,
    ) -> Result<Self, CompileError> {
        Ok(Self {
            cluster: required_cluster(cfg, clusters, path)?,
            max_sessions: cfg.udp.max_sessions.max(1) as usize,
            idle_timeout: cfg.udp.idle_timeout.get(),
        })
    }
}

fn required_cluster(
    cfg: &ListenerConfig,
    clusters: &[Cluster],
    path: &str,
) -> Result<usize, CompileError> {
    let name = cfg.cluster.as_deref().ok_or_else(|| CompileError {
        path: path.to_owned(),
        reason: "listener has no cluster".into(),
    })?;
    cluster_index(clusters, name, &format!("{path}.cluster"))
}

fn cluster_index(clusters: &[Cluster], name: &str, path: &str) -> Result<usize, CompileError> {
    clusters
        .iter()
        .position(|c| &*c.name == name)
        .ok_or_else(|| CompileError {
            path: path.to_owned(),
            reason: format!("unknown cluster `{name}`"),
        })
}

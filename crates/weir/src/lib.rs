//! The wiring of a running weir: the data plane, the health checker and the admin API, started
//! and stopped together.
//!
//! The crates below never reach for each other; this is the one place that connects them (see
//! `docs/architecture.md`). [`Weir::start`] compiles the config into the proxy, hands each
//! cluster's `health_check` to the checker (which writes verdicts into the endpoints' shared
//! state) and serves the admin API when the config asks for one. The `weir` binary and the
//! end-to-end tests both run weir through it, so they test the same assembly.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use weir_admin::{AdminServer, AdminState};
use weir_config::{ListenerProtocol, ValidatedConfig};
use weir_core::SystemClock;
use weir_probe::{CheckTarget, HealthChecker};
use weir_proxy::{Proxy, Snapshot};

/// A running weir instance.
#[derive(Debug)]
pub struct Weir {
    proxy: Proxy,
    checker: HealthChecker,
    admin: Option<AdminServer>,
    /// The listeners as bound at start: a reload may change their routes, not the set.
    listeners: Vec<ListenerKey>,
}

/// What identifies a bound listener: a reload must keep these as they are.
type ListenerKey = (String, SocketAddr, ListenerProtocol);

/// What a successful [`Weir::reload`] changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    /// Clusters in the new config.
    pub clusters: usize,
    /// Endpoints with an active health check running after the reload.
    pub checked_endpoints: usize,
}

// === impl Weir ===

impl Weir {
    /// Starts the proxy's listeners, the health checks and (when configured) the admin API.
    /// Must run inside a tokio runtime.
    pub async fn start(config: &ValidatedConfig) -> anyhow::Result<Self> {
        let proxy = Proxy::start(config).await?;
        let mut checker = HealthChecker::new(Arc::new(SystemClock));
        checker.reconcile(check_targets(&proxy.snapshots().load()));
        let admin = match &config.config().admin {
            Some(admin) => {
                let state = AdminState::for_proxy(&proxy, config);
                let server = AdminServer::start(admin.address, state)
                    .await
                    .with_context(|| format!("admin: cannot bind {}", admin.address))?;
                tracing::info!(address = %server.local_addr(), "admin API listening");
                Some(server)
            }
            None => None,
        };
        Ok(Self {
            proxy,
            checker,
            admin,
            listeners: listener_keys(config),
        })
    }

    /// Swaps in `config` without dropping a request: compiles it against the running snapshot
    /// (endpoints that remain keep their health, ejections, latency and pools), publishes it
    /// atomically — requests in flight finish on the snapshot they started with — and
    /// reconciles the health checks. Routes, clusters, endpoints and policies may change; the
    /// set of listeners (names, addresses, protocols) may not yet, and the admin address is
    /// kept. On any error nothing changes and the old config keeps serving.
    pub fn reload(&mut self, config: &ValidatedConfig) -> anyhow::Result<ReloadReport> {
        let next = listener_keys(config);
        if next != self.listeners {
            let describe = |keys: &[ListenerKey]| {
                keys.iter()
                    .map(|(n, a, p)| format!("{n} {a} {p:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            anyhow::bail!(
                "the reload changes the listeners (running: [{}]; new: [{}]); adding, removing \
                 or re-addressing listeners needs a restart for now",
                describe(&self.listeners),
                describe(&next)
            );
        }
        let snapshots = self.proxy.snapshots();
        let current = snapshots.load();
        let snapshot = Snapshot::compile(config, Some(&current))?;
        let targets = check_targets(&snapshot);
        let clusters = snapshot.clusters().len();
        snapshots.store(snapshot);
        self.checker.reconcile(targets);
        let report = ReloadReport {
            clusters,
            checked_endpoints: self.checker.len(),
        };
        tracing::info!(
            clusters = report.clusters,
            checked_endpoints = report.checked_endpoints,
            "config reloaded"
        );
        Ok(report)
    }

    /// The data plane.
    pub fn proxy(&self) -> &Proxy {
        &self.proxy
    }

    /// The bound address of the admin API, when one is configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(AdminServer::local_addr)
    }

    /// Endpoints whose health checks are running.
    pub fn checked_endpoints(&self) -> usize {
        self.checker.len()
    }

    /// Stops the health checks and the admin API, then drains the proxy for up to `grace`;
    /// `true` if everything in flight finished in time.
    pub async fn shutdown(mut self, grace: Duration) -> bool {
        self.checker.shutdown();
        if let Some(admin) = self.admin.take() {
            admin.shutdown().await;
        }
        self.proxy.shutdown(grace).await
    }
}

fn listener_keys(config: &ValidatedConfig) -> Vec<ListenerKey> {
    config
        .config()
        .listeners
        .iter()
        .map(|l| (l.name.clone(), l.address, l.protocol))
        .collect()
}

/// What the health checker should probe for `snapshot`: every cluster with a `health_check`.
pub fn check_targets(snapshot: &Snapshot) -> Vec<CheckTarget> {
    snapshot
        .clusters()
        .iter()
        .filter_map(|cluster| {
            Some(CheckTarget {
                cluster: Arc::clone(&cluster.name),
                config: cluster.health_check()?.clone(),
                protocol: cluster.protocol,
                endpoints: cluster.endpoints.clone(),
            })
        })
        .collect()
}

//! What the admin API can see: the snapshot handle and the listeners the binary bound.
//!
//! The snapshot handle gives the live view (a reload publishes a new snapshot and the next admin
//! request sees it). Listener facts come from the proxy's running listener set when there is a
//! [`Proxy`] (so listeners a reload adds or removes show at once), else they are passed in by
//! whoever bound the listeners.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use weir_config::{ListenerProtocol, ValidatedConfig};
use weir_proxy::{
    AccessLog, AccessLogs, ListenerCounters, Listeners, Proxy, SnapshotHandle, SpanExport,
};

use crate::{Readiness, RunningConfig};

/// Read access to everything the admin API shows; cheap to clone.
#[derive(Debug, Clone)]
pub struct AdminState {
    snapshots: SnapshotHandle,
    listeners: Arc<[ListenerInfo]>,
    token: Option<Arc<str>>,
    /// Whether the token and `per_endpoint` come from the running config (and so follow
    /// reloads) rather than from [`AdminState::with_token`] / `with_per_endpoint_metrics`.
    token_from_config: bool,
    per_endpoint_from_config: bool,
    reloader: Option<Arc<dyn Reloader>>,
    /// Each listener's connection counters (`/metrics`); empty without a [`Proxy`].
    listener_counters: Arc<[(String, Arc<ListenerCounters>)]>,
    /// The proxy's running listeners; when set, they replace `listeners` and
    /// `listener_counters`, following reloads.
    live: Option<Listeners>,
    /// Whether `/metrics` exports per-endpoint series.
    per_endpoint_metrics: bool,
    /// The config `/config` shows; `None` when built from pieces without one.
    running_config: Option<RunningConfig>,
    /// Records service discovery skipped as unparsable (`/metrics`), when discovery runs.
    discovery_bad_values: Option<Arc<AtomicU64>>,
    /// The access log, for its drop counter (`/metrics`); follows reloads.
    access_log: Option<AccessLogs>,
    /// The span export, for its counters (`/metrics`).
    spans: Option<SpanExport>,
    /// Counters of components outside the proxy (the kernel data plane) for `/metrics`.
    extra_metrics: Option<Arc<dyn ExtraMetrics>>,
    /// What `/ready` answers.
    readiness: Readiness,
}

/// Counter families that a component outside the proxy (weir's kernel data plane) adds to
/// `/metrics`; read on every scrape.
pub trait ExtraMetrics: Send + Sync + std::fmt::Debug {
    /// The families now.
    fn counter_families(&self) -> Vec<CounterFamily>;
}

/// One counter family of [`ExtraMetrics`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterFamily {
    /// Metric name without the `_total` suffix (nor `_bytes` when `bytes` is set).
    pub name: &'static str,
    /// `# HELP` text.
    pub help: &'static str,
    /// Whether the values are bytes (the unit suffix is added).
    pub bytes: bool,
    /// Label sets and their values.
    pub samples: Vec<(Vec<(&'static str, String)>, u64)>,
}

/// Reloads the running config from its source (`POST /reload`); implemented by whatever owns
/// the whole running weir, which this crate must not depend on.
pub trait Reloader: Send + Sync + std::fmt::Debug {
    /// Loads, validates and applies the config source again. On error nothing changed.
    fn reload(&self) -> Result<ReloadSummary, ReloadError>;

    /// Reloads so far by any means (`SIGHUP`, the API, the file watcher): applied, rejected.
    fn counts(&self) -> (u64, u64);
}

/// Why [`Reloader::reload`] changed nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadError {
    /// The config did not load, validate, compile or apply (a listener that cannot bind); the
    /// message is the one `weir check` would print. `POST /reload` answers 400.
    Rejected(String),
    /// A graceful shutdown has begun: a reload would start listeners, health checks and
    /// discovery again that the shutdown stopped. `POST /reload` answers 503.
    ShuttingDown,
}

/// What a reload applied.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReloadSummary {
    /// Clusters in the new config.
    pub clusters: usize,
    /// Endpoints with an active health check after the reload.
    pub checked_endpoints: usize,
    /// Settings the reload changed that only take effect after a restart (`admin.address`),
    /// each with a short explanation; left out when empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub needs_restart: Vec<String>,
}

/// One listener as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerInfo {
    /// The listener's name from the config.
    pub name: String,
    /// The address it is bound to (the real port when the config said port 0).
    pub address: SocketAddr,
    /// What it speaks downstream.
    pub protocol: ListenerProtocol,
}

// === impl AdminState ===

impl AdminState {
    /// State showing the snapshots published through `snapshots` and the given listeners.
    pub fn new(snapshots: SnapshotHandle, listeners: Vec<ListenerInfo>) -> Self {
        Self {
            snapshots,
            listeners: listeners.into(),
            token: None,
            token_from_config: false,
            per_endpoint_from_config: false,
            reloader: None,
            listener_counters: Arc::new([]),
            live: None,
            per_endpoint_metrics: true,
            running_config: None,
            extra_metrics: None,
            discovery_bad_values: None,
            access_log: None,
            spans: None,
            readiness: Readiness::default(),
        }
    }

    /// Answers `/ready` from `readiness` (ready at once without one).
    pub fn with_readiness(mut self, readiness: Readiness) -> Self {
        self.readiness = readiness;
        self
    }

    /// What `/ready` answers.
    pub fn readiness(&self) -> &Readiness {
        &self.readiness
    }

    /// Exports `counter` (service discovery's skipped, unparsable endpoint records) in
    /// `/metrics` as `weir_discovery_bad_values_total{source="etcd"}` (etcd values are the only
    /// records that can be skipped one by one; a bad file or DNS answer is rejected whole).
    pub fn with_discovery_bad_values(mut self, counter: Arc<AtomicU64>) -> Self {
        self.discovery_bad_values = Some(counter);
        self
    }

    /// Service discovery's count of skipped, unparsable endpoint records, when exported.
    pub fn discovery_bad_values(&self) -> Option<u64> {
        self.discovery_bad_values
            .as_ref()
            .map(|c| c.load(Ordering::Relaxed))
    }

    /// Shows `config` at `/config`. Share it with whatever applies reloads and call
    /// [`RunningConfig::set`] there, so `/config` follows them.
    pub fn with_running_config(mut self, config: RunningConfig) -> Self {
        self.running_config = Some(config);
        self
    }

    /// The config `/config` shows, if any.
    pub fn running_config(&self) -> Option<&RunningConfig> {
        self.running_config.as_ref()
    }

    /// Serves `POST /reload` through `reloader`.
    pub fn with_reloader(mut self, reloader: Arc<dyn Reloader>) -> Self {
        self.reloader = Some(reloader);
        self
    }

    /// What `POST /reload` calls, if anything can reload.
    pub fn reloader(&self) -> Option<&dyn Reloader> {
        self.reloader.as_deref()
    }

    /// Requires `authorization: Bearer <token>` on requests that change state (`None`: no
    /// token), whatever the running config says.
    pub fn with_token(mut self, token: Option<&str>) -> Self {
        self.token = token.map(Arc::from);
        self.token_from_config = false;
        self
    }

    /// The bearer token state-changing requests must carry, if one is configured: the running
    /// config's token in force ([`RunningConfig::token`]: the last reload's `admin.token`, or
    /// the one before when that reload removed it) for state made by
    /// [`AdminState::for_proxy`], else what [`AdminState::with_token`] set.
    pub fn token(&self) -> Option<Arc<str>> {
        match (&self.running_config, self.token_from_config) {
            (Some(running), true) => running.token(),
            _ => self.token.clone(),
        }
    }

    /// Shows these listener counters (name, counters — what [`Proxy::listener_counters`]
    /// returns) in `/metrics`.
    pub fn with_listener_counters(
        mut self,
        counters: Vec<(String, Arc<ListenerCounters>)>,
    ) -> Self {
        self.listener_counters = counters.into();
        self
    }

    /// Whether `/metrics` exports per-endpoint series (on unless turned off), whatever the
    /// running config says.
    pub fn with_per_endpoint_metrics(mut self, on: bool) -> Self {
        self.per_endpoint_metrics = on;
        self.per_endpoint_from_config = false;
        self
    }

    /// The listener counters `/metrics` shows, in config order.
    pub fn listener_counters(&self) -> Vec<(String, Arc<ListenerCounters>)> {
        match &self.live {
            Some(live) => live.counters(),
            None => self.listener_counters.to_vec(),
        }
    }

    /// Whether `/metrics` exports per-endpoint series: the running config's
    /// `admin.metrics.per_endpoint` (as of the last reload) for state made by
    /// [`AdminState::for_proxy`], else what `with_per_endpoint_metrics` set.
    pub fn per_endpoint_metrics(&self) -> bool {
        match (&self.running_config, self.per_endpoint_from_config) {
            (Some(running), true) => running
                .get()
                .config()
                .admin
                .as_ref()
                .is_none_or(|a| a.metrics.per_endpoint),
            _ => self.per_endpoint_metrics,
        }
    }

    /// Adds `extra`'s counter families to `/metrics`.
    pub fn with_extra_metrics(mut self, extra: Arc<dyn ExtraMetrics>) -> Self {
        self.extra_metrics = Some(extra);
        self
    }

    /// The extra counter families' source, if any.
    pub fn extra_metrics(&self) -> Option<&dyn ExtraMetrics> {
        self.extra_metrics.as_deref()
    }

    /// Shows the counters of this access log and span export in `/metrics`.
    pub fn with_export_counters(
        mut self,
        access_log: Option<AccessLogs>,
        spans: Option<SpanExport>,
    ) -> Self {
        self.access_log = access_log;
        self.spans = spans;
        self
    }

    /// The current access log (if one is configured now), whose drop counter `/metrics`
    /// shows (the count goes on across reloads that swap the log).
    pub fn access_log(&self) -> Option<Arc<AccessLog>> {
        self.access_log.as_ref()?.current()
    }

    /// The span export whose counters `/metrics` shows.
    pub fn span_export(&self) -> Option<&SpanExport> {
        self.spans.as_ref()
    }

    /// State for a running `proxy` started from `config`: its snapshot handle, its listeners
    /// with their bound addresses and counters, and `config` itself for `/config` and for the
    /// admin options (`admin.token`, `admin.metrics.per_endpoint`); replace it with
    /// [`AdminState::with_running_config`] to make all of them follow reloads.
    pub fn for_proxy(proxy: &Proxy, config: &ValidatedConfig) -> Self {
        let admin = config.config().admin.as_ref();
        Self::new(
            proxy.snapshots().clone(),
            ListenerInfo::from_config(config, &proxy.listener_addrs()),
        )
        .with_token(admin.and_then(|a| a.token.as_deref()))
        .with_listener_counters(proxy.listener_counters())
        .with_per_endpoint_metrics(admin.is_none_or(|a| a.metrics.per_endpoint))
        .with_running_config(RunningConfig::new(config))
        .with_settings_from_config()
        .with_export_counters(
            Some(proxy.access_logs().clone()),
            Some(proxy.span_export().clone()),
        )
        .with_live_listeners(proxy.listeners().clone())
    }

    /// Takes `admin.token` and `admin.metrics.per_endpoint` from the running config on every
    /// request, so they follow reloads ([`RunningConfig::set`]).
    pub fn with_settings_from_config(mut self) -> Self {
        self.token_from_config = true;
        self.per_endpoint_from_config = true;
        self
    }

    /// Shows `listeners` as they run (names, bound addresses, protocols, counters), following
    /// reloads that add or remove listeners.
    pub fn with_live_listeners(mut self, listeners: Listeners) -> Self {
        self.live = Some(listeners);
        self
    }

    /// The handle the data plane's snapshots are published through.
    pub fn snapshots(&self) -> &SnapshotHandle {
        &self.snapshots
    }

    /// The listeners, in config order.
    pub fn listeners(&self) -> Vec<ListenerInfo> {
        match &self.live {
            Some(live) => live
                .describe()
                .into_iter()
                .map(|(name, address, protocol)| ListenerInfo {
                    name,
                    address,
                    protocol,
                })
                .collect(),
            None => self.listeners.to_vec(),
        }
    }
}

// === impl ListenerInfo ===

impl ListenerInfo {
    /// Every listener of `config`, with the address from `bound` (name, bound address — what
    /// [`Proxy::listener_addrs`] returns) when it has one, else the configured address.
    pub fn from_config(config: &ValidatedConfig, bound: &[(String, SocketAddr)]) -> Vec<Self> {
        config
            .config()
            .listeners
            .iter()
            .map(|l| Self {
                name: l.name.clone(),
                address: bound
                    .iter()
                    .find(|(name, _)| *name == l.name)
                    .map_or(l.address, |&(_, address)| address),
                protocol: l.protocol,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_info_prefers_the_bound_address() {
        let config = weir_config::load_str(
            "listeners:
  - name: web
    address: 127.0.0.1:0
    routes: [ { match: { path_prefix: / }, cluster: c } ]
  - name: raw
    address: 127.0.0.1:7000
    protocol: tcp
    cluster: c
clusters:
  - name: c
    endpoints: [ 127.0.0.1:9 ]
",
            "test.yaml",
        )
        .unwrap();
        let bound = [("web".to_owned(), "127.0.0.1:4321".parse().unwrap())];
        let infos = ListenerInfo::from_config(&config, &bound);
        assert_eq!(infos.len(), 2);
        assert_eq!(infos[0].address.port(), 4321);
        assert_eq!(infos[0].protocol, ListenerProtocol::Http);
        assert_eq!(
            infos[1].address.port(),
            7000,
            "not bound: the configured address"
        );
        assert_eq!(infos[1].protocol, ListenerProtocol::Tcp);
    }
}

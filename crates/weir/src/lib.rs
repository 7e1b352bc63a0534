//! The wiring of a running weir: the data plane, the health checker and the admin API, started
//! and stopped together.
//!
//! The crates below never reach for each other; this is the one place that connects them (see
//! `docs/architecture.md`). [`Weir::start`] compiles the config into the proxy, hands each
//! cluster's `health_check` to the checker (which writes verdicts into the endpoints' shared
//! state) and serves the admin API when the config asks for one. The `weir` binary and the
//! end-to-end tests both run weir through it, so they test the same assembly.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::collections::BTreeMap;
use std::sync::Weak;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use weir_admin::{
    AdminServer, AdminState, INITIAL_DISCOVERY_TIMEOUT, Readiness, ReloadError, ReloadSummary,
    Reloader, RunningConfig,
};
use weir_config::{DiscoveryConfig, EndpointConfig, ValidatedConfig};
use weir_core::SystemClock;
use weir_discovery::{Discovery, DiscoveryTarget, Source};
use weir_probe::{CheckTarget, HealthChecker, ProbeTls};
use weir_proxy::{
    AccessLogs, CompileError, ListenSocket, Listeners, Proxy, ProxyError, Snapshot, SnapshotHandle,
    SpanExport,
};

mod kernel;
pub mod upgrade;
mod watch;

/// A running weir instance.
#[derive(Debug)]
pub struct Weir {
    proxy: Proxy,
    control: Arc<Control>,
    admin: Option<AdminServer>,
    /// Stops the config file watcher, if one runs.
    watching: CancellationToken,
    /// Cancelled to end the shutdown's ready delay early ([`Weir::ready_delay_cutter`]).
    delay_cut: CancellationToken,
    /// The XDP balancer and nftables table of `xdp` and `nftables` listeners, if any.
    kernel: Option<kernel::KernelPlane>,
    /// Set once [`Weir::sockets`] handed the sockets to a successor: the admin socket is
    /// shared, so the admin API stops at once on shutdown instead of answering `/ready` with
    /// 503 through the drain (the successor is ready).
    handed_over: AtomicBool,
}

/// What a reload needs, shared by [`Weir::reload`], the admin API's `POST /reload`, `SIGHUP`
/// and the file watcher; one reload runs at a time.
#[derive(Debug)]
struct Control {
    snapshots: SnapshotHandle,
    /// The proxy's span export: a reload may change `tracing.otlp`.
    spans: SpanExport,
    /// The proxy's access log: a reload may change `access_log`.
    access_logs: AccessLogs,
    /// What `/ready` answers: waits for initial discovery, fails once shutdown begins.
    readiness: Readiness,
    /// The running listeners, which a reload adds to and removes from.
    listeners: Listeners,
    /// The config file, when weir was started from one.
    source: Option<PathBuf>,
    state: Mutex<ControlState>,
    applied: AtomicU64,
    rejected: AtomicU64,
    /// The config the admin API's `/config` shows and the admin token in force; set on every
    /// applied reload.
    running: RunningConfig,
    /// Whether an admin API was started (its address and token outlive reloads).
    admin_bound: bool,
    /// Set at the very start of [`Weir::shutdown`]: from then on reloads are refused, so
    /// nothing restarts what the shutdown stops.
    shutting_down: AtomicBool,
    /// Set (under the state lock) when the shutdown stops health checks and discovery, after
    /// the ready delay: from then on discovery updates are ignored. During the delay they
    /// still apply, so the endpoints weir keeps serving stay current.
    stopped: AtomicBool,
}

#[derive(Debug)]
struct ControlState {
    checker: HealthChecker,
    /// The config as loaded (static endpoints only).
    base: ValidatedConfig,
    /// The latest endpoint set service discovery found, per cluster.
    discovered: BTreeMap<String, Vec<EndpointConfig>>,
    discovery: Discovery,
}

/// Sockets a new weir takes over from the one it upgrades (see [`upgrade`]), by listener name.
#[derive(Debug, Default)]
pub struct Inherited {
    /// Listening sockets by listener name.
    pub listeners: Vec<(String, ListenSocket)>,
    /// The admin API's listening socket.
    pub admin: Option<std::net::TcpListener>,
}

/// What a successful [`Weir::reload`] changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    /// Clusters in the new config.
    pub clusters: usize,
    /// Endpoints with an active health check running after the reload.
    pub checked_endpoints: usize,
    /// Changed settings that only a restart applies (`admin.address`), each explained.
    pub needs_restart: Vec<String>,
}

/// A reload refused because a graceful shutdown has begun ([`Weir::shutdown`]): applying it
/// would bind listeners and restart health checks and discovery that the shutdown stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShuttingDown;

/// Reloads the config file of a running weir, also while [`Weir::shutdown`] runs (which
/// refuses them with [`ShuttingDown`]); what `weir run` answers `SIGHUP` with. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ReloadHandle(Arc<Control>);

/// Reloads so far: applied, and rejected (the old config kept serving).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReloadCounts {
    /// Reloads that swapped in a new snapshot.
    pub applied: u64,
    /// Reloads refused because the config did not load, validate or compile.
    pub rejected: u64,
}

// === impl Weir ===

impl Weir {
    /// Starts the proxy's listeners, the health checks and (when configured) the admin API.
    /// Must run inside a tokio runtime. Without a config file, `POST /reload` answers 409; see
    /// [`Weir::start_file`].
    pub async fn start(config: &ValidatedConfig) -> anyhow::Result<Self> {
        Self::start_with_source(config, None, Inherited::default()).await
    }

    /// Loads `path` and starts weir from it; [`Weir::reload_file`], `POST /reload` and
    /// [`Weir::watch`] load the same file again.
    pub async fn start_file(path: &Path) -> anyhow::Result<Self> {
        Self::start_file_with(path, Inherited::default()).await
    }

    /// [`Weir::start_file`], serving on the `inherited` sockets where a listener of the same
    /// name (and the admin API) fits them; the rest are bound. Sockets that fit nothing are
    /// closed in this process.
    pub async fn start_file_with(path: &Path, inherited: Inherited) -> anyhow::Result<Self> {
        let config = weir_config::load_file(path)?;
        // An error found past validation reads as `weir check` and a rejected reload word it.
        Self::start_with_source(&config, Some(path.to_path_buf()), inherited)
            .await
            .map_err(|e| in_file(path, &config, e))
    }

    async fn start_with_source(
        config: &ValidatedConfig,
        source: Option<PathBuf>,
        inherited: Inherited,
    ) -> anyhow::Result<Self> {
        // Bound before the proxy starts accepting: a failure here must not cut connections
        // the proxy would already have taken off a shared (inherited) socket.
        let admin_socket = match &config.config().admin {
            Some(admin) => Some(match inherited.admin.filter(|s| fits(s, admin.address)) {
                Some(socket) => socket,
                None => std::net::TcpListener::bind(admin.address)
                    .with_context(|| format!("admin: cannot bind {}", admin.address))?,
            }),
            None => None,
        };
        let proxy = Proxy::start_with(config, inherited.listeners).await?;
        let kernel = kernel::KernelPlane::start(config, proxy.snapshots())?;
        let mut checker = HealthChecker::new(Arc::new(SystemClock));
        checker.reconcile(check_targets(&proxy.snapshots().load()));
        let control = Arc::new_cyclic(|control: &Weak<Control>| {
            let control = Weak::clone(control);
            let sink = Arc::new(move |cluster: &str, endpoints: Vec<EndpointConfig>| {
                if let Some(control) = control.upgrade() {
                    control.apply_discovered(cluster, endpoints);
                }
            });
            Control {
                snapshots: proxy.snapshots().clone(),
                spans: proxy.span_export().clone(),
                access_logs: proxy.access_logs().clone(),
                readiness: Readiness::waiting_for(
                    config
                        .config()
                        .clusters
                        .iter()
                        .filter(|c| c.discovery.is_some())
                        .map(|c| c.name.clone()),
                    INITIAL_DISCOVERY_TIMEOUT,
                ),
                listeners: proxy.listeners().clone(),
                source,
                state: Mutex::new(ControlState {
                    checker,
                    base: config.clone(),
                    discovered: BTreeMap::new(),
                    discovery: Discovery::new(sink),
                }),
                applied: AtomicU64::new(0),
                rejected: AtomicU64::new(0),
                running: RunningConfig::new(config),
                admin_bound: admin_socket.is_some(),
                shutting_down: AtomicBool::new(false),
                stopped: AtomicBool::new(false),
            }
        });
        control
            .lock()
            .discovery
            .reconcile(discovery_targets(config, control.source.as_deref()));
        let admin = match admin_socket {
            Some(socket) => {
                let mut state = AdminState::for_proxy(&proxy, config)
                    .with_running_config(control.running.clone())
                    .with_readiness(control.readiness.clone())
                    .with_discovery_bad_values(control.lock().discovery.bad_values_counter());
                if control.source.is_some() {
                    state = state.with_reloader(Arc::clone(&control) as Arc<dyn Reloader>);
                }
                if let Some(metrics) = kernel.as_ref().and_then(kernel::KernelPlane::metrics) {
                    state = state.with_extra_metrics(metrics);
                }
                let server = AdminServer::start_on(socket, state).context("admin: cannot serve")?;
                tracing::info!(address = %server.local_addr(), "admin API listening");
                Some(server)
            }
            None => None,
        };
        Ok(Self {
            proxy,
            control,
            admin,
            watching: CancellationToken::new(),
            delay_cut: CancellationToken::new(),
            kernel,
            handed_over: AtomicBool::new(false),
        })
    }

    /// Swaps in `config` without dropping a request: compiles it against the running snapshot
    /// (endpoints that remain keep their health, ejections, latency and pools), publishes it
    /// atomically — requests in flight finish on the snapshot they started with — and
    /// reconciles the health checks. Routes, clusters, endpoints, policies, span export
    /// (`tracing`), the access log (`access_log`: path, fields, queue; requests already running
    /// finish on the old one), the admin token and `admin.metrics.per_endpoint`, and listeners
    /// may change: an added listener starts accepting, a removed one stops and its connections
    /// drain for up to the new config's `shutdown.drain_timeout`, one whose address or protocol changed is
    /// both. The admin address is kept until a restart, and so is the admin token when the new
    /// config has none (no `admin:` or no `token`: the admin API stays bound and its
    /// state-changing calls stay guarded), both said in [`ReloadReport::needs_restart`] and
    /// logged. On any error — including a new listener that cannot bind or an access log file
    /// that cannot be opened — nothing changes and the old config keeps serving. Once
    /// [`Weir::shutdown`] has begun, reloads fail with [`ShuttingDown`].
    pub fn reload(&self, config: &ValidatedConfig) -> anyhow::Result<ReloadReport> {
        self.control.apply(config)
    }

    /// Loads the config file weir was started from again and applies it as [`Weir::reload`]
    /// does; a file that fails to load is rejected the same way.
    pub fn reload_file(&self) -> anyhow::Result<ReloadReport> {
        self.control.reload_source()
    }

    /// Reloads whenever the config file's contents change, checking every `interval`, until
    /// shutdown. A no-op without a config file.
    pub fn watch(&self, interval: Duration) {
        if let Some(path) = self.control.source.clone() {
            let control = Arc::clone(&self.control);
            let stop = self.watching.clone();
            // Read now, so a change made right after this call is seen as one.
            let current = std::fs::read(&path).ok();
            tokio::spawn(watch::watch(path, current, interval, stop, move || {
                // Errors are logged and counted inside.
                let _ = control.reload_source();
            }));
        }
    }

    /// A handle that reloads the config file as [`Weir::reload_file`] does, usable while
    /// [`Weir::shutdown`] runs (and refused then).
    pub fn reload_handle(&self) -> ReloadHandle {
        ReloadHandle(Arc::clone(&self.control))
    }

    /// Reloads applied and rejected so far (by any means).
    pub fn reload_counts(&self) -> ReloadCounts {
        ReloadCounts {
            applied: self.control.applied.load(Ordering::Relaxed),
            rejected: self.control.rejected.load(Ordering::Relaxed),
        }
    }

    /// Reopens the access log file at its configured path, as `SIGUSR1` does for `weir run`
    /// (after logrotate renamed it); a no-op without an access log.
    pub async fn reopen_access_log(&self) -> std::io::Result<()> {
        self.proxy.reopen_access_log().await
    }

    /// A duplicate of every listening socket (listeners by name, and the admin API's), to hand
    /// to the weir that takes over in a binary upgrade. Once the successor says it serves on
    /// them, call [`Weir::handed_over`]; an aborted takeover changes nothing.
    pub fn sockets(&self) -> std::io::Result<Inherited> {
        Ok(Inherited {
            listeners: self.proxy.listeners().sockets()?,
            admin: self.admin.as_ref().map(AdminServer::socket).transpose()?,
        })
    }

    /// Records that a successor serves on the sockets of [`Weir::sockets`]:
    /// [`Weir::shutdown`] then skips the ready delay (nothing new arrives here) and stops the
    /// admin API first (the successor's takes the shared socket).
    pub fn handed_over(&self) {
        self.handed_over.store(true, Ordering::Release);
    }

    /// A token that, cancelled, ends [`Weir::shutdown`]'s ready delay at once (`weir run`
    /// cancels it on a second SIGTERM or SIGINT); before the shutdown it makes the delay zero.
    pub fn ready_delay_cutter(&self) -> CancellationToken {
        self.delay_cut.clone()
    }

    /// The data plane.
    pub fn proxy(&self) -> &Proxy {
        &self.proxy
    }

    /// The bound address of the admin API, when one is configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(AdminServer::local_addr)
    }

    /// How long [`Weir::shutdown`] should let in-flight work finish: the running config's
    /// `shutdown.drain_timeout` (a reload may have changed it), 30 s by default.
    pub fn drain_timeout(&self) -> Duration {
        self.control.lock().base.config().drain_timeout()
    }

    /// Endpoints whose health checks are running.
    pub fn checked_endpoints(&self) -> usize {
        self.control.lock().checker.len()
    }

    /// How long [`Weir::shutdown`] keeps accepting after `/ready` turned 503: the running
    /// config's `shutdown.ready_delay` (a reload may have changed it), 0 by default.
    pub fn ready_delay(&self) -> Duration {
        self.control.lock().base.config().ready_delay()
    }

    /// Stops gracefully. At once: reloads and discovery updates are refused from now on (a
    /// reload would restart what this stops), the file watcher stops and `/ready` answers 503.
    /// Then the listeners keep accepting and serving for the running config's
    /// `shutdown.ready_delay`, so a load balancer in front sees the 503 and stops sending
    /// before anyone is refused — unless the sockets were handed to a successor
    /// ([`Weir::sockets`]), which serves them already. Then the health checks, discovery and
    /// the kernel data plane stop, the proxy stops accepting and drains for up to `grace`, and
    /// the admin API stops last (at once after a handover: the successor's admin API takes the
    /// shared socket). `true` if everything in flight finished in time.
    pub async fn shutdown(mut self, grace: Duration) -> bool {
        self.control.shutting_down.store(true, Ordering::Release);
        self.control.readiness.shut_down();
        self.watching.cancel();
        let handed_over = self.handed_over.load(Ordering::Acquire);
        let delay = self.ready_delay();
        if !handed_over && !delay.is_zero() {
            tracing::info!(
                ?delay,
                "shutting down: /ready answers 503, still accepting for the ready delay"
            );
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = self.delay_cut.cancelled() => {
                    tracing::info!("the ready delay was cut short; no longer accepting");
                }
            }
        }
        if let Some(mut kernel) = self.kernel.take() {
            kernel.shutdown();
        }
        {
            let mut state = self.control.lock();
            self.control.stopped.store(true, Ordering::Release);
            state.discovery.shutdown();
            state.checker.shutdown();
        }
        if handed_over && let Some(admin) = self.admin.take() {
            admin.shutdown().await;
        }
        let drained = self.proxy.shutdown(grace).await;
        if let Some(admin) = self.admin.take() {
            admin.shutdown().await;
        }
        drained
    }
}

// === impl ShuttingDown ===

impl std::fmt::Display for ShuttingDown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("weir is shutting down: reloads are refused until it has stopped")
    }
}

impl std::error::Error for ShuttingDown {}

// === impl ReloadHandle ===

impl ReloadHandle {
    /// Loads the config file again and applies it, as [`Weir::reload_file`] does; every
    /// outcome is logged.
    pub fn reload_file(&self) -> anyhow::Result<ReloadReport> {
        self.0.reload_source()
    }
}

// === impl Control ===

impl Control {
    /// The reload state; a panic while it was held leaves it usable (it holds no invariant a
    /// half-done reload could break: the snapshot swap is the last step).
    fn lock(&self) -> std::sync::MutexGuard<'_, ControlState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Loads the config file again and applies it; every outcome is logged and counted.
    fn reload_source(&self) -> anyhow::Result<ReloadReport> {
        let Some(path) = &self.source else {
            anyhow::bail!("weir was not started from a config file");
        };
        let result = if self.shutting_down.load(Ordering::Acquire) {
            Err(ShuttingDown.into())
        } else {
            match weir_config::load_file(path) {
                // What fails after the file loaded (compiling, binding a new listener) is
                // named after the file as `weir check` names it, so both print the same
                // message.
                Ok(config) => self.apply(&config).map_err(|e| {
                    if e.is::<ShuttingDown>() {
                        e
                    } else {
                        in_file(path, &config, e)
                    }
                }),
                Err(e) => {
                    self.rejected.fetch_add(1, Ordering::Relaxed);
                    Err(e.into())
                }
            }
        };
        match &result {
            Err(e) if e.is::<ShuttingDown>() => {
                tracing::warn!(file = %path.display(), "reload refused: weir is shutting down");
            }
            Err(e) => tracing::error!(
                file = %path.display(),
                "reload rejected, the running config keeps serving: {e:#}"
            ),
            Ok(_) => {}
        }
        result
    }

    /// Applies `config`, counting the outcome (a reload refused by a shutdown is not a
    /// rejected config and is not counted).
    fn apply(&self, config: &ValidatedConfig) -> anyhow::Result<ReloadReport> {
        let result = self.apply_inner(config);
        let counter = match &result {
            Ok(_) => &self.applied,
            Err(e) if e.is::<ShuttingDown>() => return result,
            Err(_) => &self.rejected,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }

    fn apply_inner(&self, config: &ValidatedConfig) -> anyhow::Result<ReloadReport> {
        let mut state = self.lock();
        // Checked under the lock that `Weir::shutdown` takes to stop checks and discovery:
        // a reload either finished before they stopped or sees the flag.
        if self.shutting_down.load(Ordering::Acquire) {
            return Err(ShuttingDown.into());
        }
        // Discovered endpoints stay for clusters whose discovery source did not change.
        let old_base = state.base.clone();
        state.discovered.retain(|cluster, _| {
            discovery_of(config, cluster).is_some()
                && discovery_of(config, cluster) == discovery_of(&old_base, cluster)
        });
        let merged = with_discovered(config, &state.discovered)?;
        let current = self.snapshots.load();
        let snapshot = Snapshot::compile(&merged, Some(&current))?;
        // Opened before anything changes; made current only once the reload has succeeded.
        let log_change = self.access_logs.prepare(config).map_err(|e| {
            let path = config.config().access_log.as_ref().map(|l| l.path.as_str());
            anyhow::anyhow!("access_log: cannot open {}: {e}", path.unwrap_or(""))
        })?;
        let span_change = self
            .spans
            .prepare(config)
            .map_err(|e| anyhow::anyhow!("tracing.otlp: {e}"))?;
        let targets = check_targets(&snapshot);
        let clusters = snapshot.clusters().len();
        self.listeners
            .swap(config, snapshot, config.config().drain_timeout())?;
        self.access_logs.commit(log_change);
        self.spans.commit(span_change);
        let mut needs_restart = restart_notes(&state.base, config);
        // The admin API reads its token and `per_endpoint` from here on every request.
        if self.running.set(config) && self.admin_bound {
            needs_restart.push(
                "admin.token removed: the admin API keeps requiring the last token until weir \
                 restarts (a reload can change the token, never drop it)"
                    .to_owned(),
            );
        }
        for note in &needs_restart {
            tracing::warn!("{note}");
        }
        state.checker.reconcile(targets);
        state.base = config.clone();
        state
            .discovery
            .reconcile(discovery_targets(config, self.source.as_deref()));
        let report = ReloadReport {
            clusters,
            checked_endpoints: state.checker.len(),
            needs_restart,
        };
        tracing::info!(
            clusters = report.clusters,
            checked_endpoints = report.checked_endpoints,
            "config reloaded"
        );
        Ok(report)
    }
}

impl Control {
    /// Swaps in a snapshot where `cluster` has its static endpoints plus `endpoints` (service
    /// discovery's latest set); endpoints that stay keep their state. Logged, never fatal.
    fn apply_discovered(&self, cluster: &str, endpoints: Vec<EndpointConfig>) {
        self.readiness.discovered(cluster);
        let mut state = self.lock();
        if self.stopped.load(Ordering::Acquire) {
            tracing::debug!(%cluster, "discovered endpoints ignored: weir has stopped discovery");
            return;
        }
        if discovery_of(&state.base, cluster).is_none() {
            return;
        }
        state.discovered.insert(cluster.to_owned(), endpoints);
        let result = with_discovered(&state.base, &state.discovered).and_then(|merged| {
            let current = self.snapshots.load();
            Ok(Snapshot::compile(&merged, Some(&current))?)
        });
        match result {
            Ok(snapshot) => {
                let targets = check_targets(&snapshot);
                self.snapshots.store(snapshot);
                state.checker.reconcile(targets);
                tracing::info!(%cluster, "discovered endpoints applied");
            }
            Err(e) => tracing::error!(%cluster, "discovered endpoints not applied: {e:#}"),
        }
    }
}

/// What a reload from `old` to `new` changed that only a restart applies: the admin API's
/// address (its socket is bound once, at start).
fn restart_notes(old: &ValidatedConfig, new: &ValidatedConfig) -> Vec<String> {
    let address = |c: &ValidatedConfig| c.config().admin.as_ref().map(|a| a.address);
    let (was, now) = (address(old), address(new));
    if was == now {
        return Vec::new();
    }
    let show = |a: Option<SocketAddr>| a.map_or_else(|| "none".to_owned(), |a| a.to_string());
    vec![format!(
        "admin.address changed from {} to {}: the admin API stays as it was until weir restarts",
        show(was),
        show(now)
    )]
}

/// The discovery block of `cluster` in `config`, if it has one.
fn discovery_of<'c>(config: &'c ValidatedConfig, cluster: &str) -> Option<&'c DiscoveryConfig> {
    let c = config
        .config()
        .clusters
        .iter()
        .find(|c| c.name == cluster)?;
    c.discovery.as_ref()
}

/// Every cluster of `config` with a discovery source; a relative endpoints-file path is
/// resolved from the directory of the config file `source` (the working directory without one).
fn discovery_targets(config: &ValidatedConfig, source: Option<&Path>) -> Vec<DiscoveryTarget> {
    let dir = source.map(|s| s.parent().unwrap_or_else(|| Path::new("")));
    config
        .config()
        .clusters
        .iter()
        .filter_map(|c| {
            Some(DiscoveryTarget {
                cluster: c.name.clone(),
                source: Source::from_config(c.discovery.as_ref()?, dir)?,
            })
        })
        .collect()
}

/// `base` with each discovering cluster's endpoints extended by what discovery found (an
/// address listed statically keeps its static weight).
fn with_discovered(
    base: &ValidatedConfig,
    discovered: &BTreeMap<String, Vec<EndpointConfig>>,
) -> anyhow::Result<ValidatedConfig> {
    if discovered.is_empty() {
        return Ok(base.clone());
    }
    let mut config = base.config().clone();
    for cluster in &mut config.clusters {
        let Some(found) = discovered.get(&cluster.name) else {
            continue;
        };
        if cluster.discovery.is_none() {
            continue;
        }
        for endpoint in found {
            if !cluster
                .endpoints
                .iter()
                .any(|e| e.address == endpoint.address)
            {
                cluster.endpoints.push(endpoint.clone());
            }
        }
    }
    Ok(weir_config::validate_config(
        config,
        "discovered endpoints",
    )?)
}

impl Reloader for Control {
    fn reload(&self) -> Result<ReloadSummary, ReloadError> {
        self.reload_source()
            .map(|r| ReloadSummary {
                clusters: r.clusters,
                checked_endpoints: r.checked_endpoints,
                needs_restart: r.needs_restart,
            })
            .map_err(|e| {
                if e.is::<ShuttingDown>() {
                    ReloadError::ShuttingDown
                } else {
                    ReloadError::Rejected(format!("{e:#}"))
                }
            })
    }

    fn counts(&self) -> (u64, u64) {
        (
            self.applied.load(Ordering::Relaxed),
            self.rejected.load(Ordering::Relaxed),
        )
    }
}

/// Loads `path` and compiles it as `weir run` would, without binding anything: what `weir
/// check` runs. A compile error (a certificate that does not load, …) is named after the file
/// exactly as a rejected reload of the same file names it.
pub fn check_file(path: &Path) -> anyhow::Result<ValidatedConfig> {
    let config = weir_config::load_file(path)?;
    Snapshot::compile(&config, None).map_err(|e| in_file(path, &config, e.into()))?;
    Ok(config)
}

/// `error`, found after `config` loaded from `path` and validated, told the way a validation
/// error is: the file, the YAML path and its line for a compile error and for a listener that
/// cannot bind; anything else prefixed with the file.
fn in_file(path: &Path, config: &ValidatedConfig, error: anyhow::Error) -> anyhow::Error {
    let compile = |e: &CompileError| config.error_at(&e.path, e.reason.clone(), None);
    let located = match error.downcast_ref::<ProxyError>() {
        Some(ProxyError::Compile(e)) => Some(compile(e)),
        Some(ProxyError::Bind {
            name,
            address,
            source,
        }) => config
            .config()
            .listeners
            .iter()
            .position(|l| l.name == *name)
            .map(|i| {
                config.error_at(
                    &format!("listeners[{i}].address"),
                    format!("listener {name}: cannot bind {address}: {source}"),
                    Some("free the address or give the listener another one".into()),
                )
            }),
        _ => error.downcast_ref::<CompileError>().map(compile),
    };
    match located {
        Some(e) => e.into(),
        None => error.context(path.display().to_string()),
    }
}

/// Whether the inherited `socket` is bound where the config says (any port for port 0).
fn fits(socket: &std::net::TcpListener, wanted: SocketAddr) -> bool {
    socket
        .local_addr()
        .is_ok_and(|a| a == wanted || (wanted.port() == 0 && a.ip() == wanted.ip()))
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
                tls: cluster
                    .tls_client()
                    .map(|(config, name)| ProbeTls::new(config, name)),
            })
        })
        .collect()
}

//! Running the proxy: binding listeners, accepting connections, shutting down.
//!
//! Each listener gets one task: an accept loop for HTTP and stream (TCP, TLS passthrough)
//! listeners, a datagram loop for UDP (`listeners` binds them and changes the set on reload).
//! Accepted connections are served by `l7::conn` or `l4::tcp`. Shutdown stops accepting, lets
//! in-flight work finish up to a grace period.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use weir_config::ValidatedConfig;

use crate::access_log::{AccessLog, AccessLogs};
use crate::listeners::{ListenSocket, ListenerRef, Listeners};
use crate::otlp::SpanExport;
use crate::snapshot::{CompileError, Listener, Snapshot, SnapshotHandle};
use crate::stats::ListenerCounters;

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The config compiled to an invalid snapshot.
    #[error("config: {0}")]
    Compile(#[from] CompileError),
    /// A listener address could not be bound.
    #[error("listener {name}: cannot bind {address}: {source}")]
    Bind {
        /// Listener name.
        name: String,
        /// Address from the config.
        address: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The OTLP exporter's endpoint is not usable.
    #[error("tracing.otlp: {0}")]
    Otlp(String),
    /// The access log could not be opened.
    #[error("access_log: cannot open {path}: {source}")]
    AccessLog {
        /// The configured path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// What a listener task knows about one accepted connection.
#[derive(Debug)]
pub(crate) struct ConnInfo {
    pub(crate) snapshots: SnapshotHandle,
    pub(crate) listener: ListenerRef,
    pub(crate) remote: SocketAddr,
    pub(crate) local: SocketAddr,
    /// Fires when the proxy starts shutting down or a reload removes the listener: stop taking
    /// new work, finish what runs.
    pub(crate) shutdown: CancellationToken,
    /// Fires when the shutdown grace period has run out: end everything now.
    pub(crate) hard_stop: CancellationToken,
    /// Where long-lived work spawned for the connection (tunnels) is tracked.
    pub(crate) tasks: TaskTracker,
    /// The listener's connection and byte counters (`/metrics`).
    pub(crate) counters: Arc<ListenerCounters>,
    /// Where the connection's requests are logged (the current log of each request, when
    /// `access_log` is configured).
    pub(crate) access_log: AccessLogs,
    /// Where sampled requests' spans go (when `tracing.otlp` is configured).
    pub(crate) spans: Option<SpanExport>,
    /// What the TLS handshake told about the client; `None` on a plaintext connection.
    pub(crate) tls: Option<crate::tls::Peer>,
    /// The client's address as a header value (`x-forwarded-for`), made on first use and
    /// shared by the connection's requests.
    pub(crate) client_ip: std::sync::OnceLock<http::HeaderValue>,
}

impl ConnInfo {
    /// The snapshot to serve the next request from (see [`ListenerRef::snapshot`]).
    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.listener.snapshot(&self.snapshots)
    }

    /// `https` on a TLS connection, else `http` (`x-forwarded-proto`, redirects).
    pub(crate) fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// The client's IP address as a header value.
    pub(crate) fn client_ip(&self) -> &http::HeaderValue {
        self.client_ip.get_or_init(|| {
            let ip = self.remote.ip().to_string();
            // An IP address is always a valid header value.
            http::HeaderValue::try_from(ip).unwrap_or(http::HeaderValue::from_static("unknown"))
        })
    }
}

/// A running proxy: its listeners are accepting until [`Proxy::shutdown`].
#[derive(Debug)]
pub struct Proxy {
    shared: Shared,
    listeners: Listeners,
}

/// What every listener task of one proxy shares.
#[derive(Debug, Clone)]
pub(crate) struct Shared {
    pub(crate) snapshots: SnapshotHandle,
    pub(crate) shutdown: CancellationToken,
    pub(crate) hard_stop: CancellationToken,
    pub(crate) tasks: TaskTracker,
    pub(crate) access_log: AccessLogs,
    pub(crate) spans: SpanExport,
}

// === impl Proxy ===

impl Proxy {
    /// Compiles `config`, binds every listener and starts accepting. Must run inside a tokio
    /// runtime. Listeners configured with port 0 get a free port; see [`Proxy::listener_addr`].
    pub async fn start(config: &ValidatedConfig) -> Result<Self, ProxyError> {
        Self::start_with(config, Vec::new()).await
    }

    /// [`Proxy::start`], serving each listener on the `inherited` socket of the same name when
    /// its kind (TCP, UDP) and address fit (port 0 in the config takes any port); the others
    /// are bound. This is how a new weir takes over the sockets of the one it upgrades.
    pub async fn start_with(
        config: &ValidatedConfig,
        inherited: Vec<(String, ListenSocket)>,
    ) -> Result<Self, ProxyError> {
        let snapshot = Snapshot::compile(config, None)?;
        let snapshots = SnapshotHandle::new(snapshot);
        let shared = Shared {
            access_log: open_access_log(config)?,
            spans: SpanExport::start(config).map_err(ProxyError::Otlp)?,
            snapshots,
            shutdown: CancellationToken::new(),
            hard_stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
        };
        let (snapshots, shutdown) = (&shared.snapshots, &shared.shutdown);
        let tasks = &shared.tasks;
        tasks.spawn(crate::outlier::sweep_loop(
            snapshots.clone(),
            shutdown.clone(),
        ));
        tasks.spawn(crate::rate_limit::global::sync_loop(
            snapshots.clone(),
            shutdown.clone(),
        ));
        tasks.spawn(crate::tls::watch_loop(snapshots.clone(), shutdown.clone()));
        let listeners = Listeners::start(config, shared.clone(), inherited);
        let listeners = match listeners {
            Ok(l) => l,
            Err(e) => {
                shared.shutdown.cancel();
                shared.hard_stop.cancel();
                return Err(e);
            }
        };
        Ok(Self { shared, listeners })
    }

    /// The running listeners: their addresses, counters and sockets, and the reload path that
    /// changes the set ([`Listeners::swap`]).
    pub fn listeners(&self) -> &Listeners {
        &self.listeners
    }

    /// The OTLP span export: whether it runs, its counters (spans exported, dropped, lost in
    /// failed exports), and [`SpanExport::prepare`] / [`SpanExport::commit`] for a reload
    /// that changes `tracing.otlp`.
    pub fn span_export(&self) -> &SpanExport {
        &self.shared.spans
    }

    /// The current access log, when `access_log` is configured: its counters (records dropped
    /// because the writer fell behind, over every log since start), [`AccessLog::reopen`] and
    /// [`AccessLog::flush`].
    pub fn access_log(&self) -> Option<Arc<AccessLog>> {
        self.shared.access_log.current()
    }

    /// The proxy's handle on its access log, which a reload that changes `access_log` swaps
    /// ([`AccessLogs::prepare`], [`AccessLogs::commit`]).
    pub fn access_logs(&self) -> &AccessLogs {
        &self.shared.access_log
    }

    /// Reopens the access log file (after logrotate moved it away); a no-op without one.
    pub async fn reopen_access_log(&self) -> std::io::Result<()> {
        match self.shared.access_log.current() {
            Some(log) => log.reopen().await,
            None => Ok(()),
        }
    }

    /// The bound address of the listener named `name`.
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        self.listeners
            .addrs()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| a)
    }

    /// Every listener's name and bound address, in config order (as of the last reload).
    pub fn listener_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.listeners.addrs()
    }

    /// Every listener's name with its connection and byte counters, in config order; a
    /// listener keeps its counters across reloads for as long as it runs.
    pub fn listener_counters(&self) -> Vec<(String, Arc<ListenerCounters>)> {
        self.listeners.counters()
    }

    /// Refusal counters of the stream listener named `name` (TCP or TLS passthrough).
    pub fn listener_stats(&self, name: &str) -> Option<Arc<crate::ListenerStats>> {
        match self.shared.snapshots.load().listener(name)? {
            Listener::Stream(s) => Some(Arc::clone(&s.stats)),
            _ => None,
        }
    }

    /// Client sessions the UDP listener named `name` holds now; `None` for other listeners.
    pub fn udp_sessions(&self, name: &str) -> Option<usize> {
        if !matches!(
            self.shared.snapshots.load().listener(name)?,
            Listener::Udp(_)
        ) {
            return None;
        }
        crate::l4::udp::session_count(self.listener_addr(name)?)
    }

    /// The handle publishing this proxy's snapshots.
    pub fn snapshots(&self) -> &SnapshotHandle {
        &self.shared.snapshots
    }

    /// Stops accepting and lets in-flight work finish — HTTP requests, TCP connections,
    /// WebSocket tunnels — for up to `grace`; whatever still runs then is closed. Returns `true`
    /// if everything finished within `grace`.
    pub async fn shutdown(self, grace: Duration) -> bool {
        let s = &self.shared;
        // The sockets close as their tasks stop: connects are refused, not queued for nobody.
        self.listeners.clear();
        s.shutdown.cancel();
        s.tasks.close();
        let drained = tokio::time::timeout(grace, s.tasks.wait()).await.is_ok();
        if !drained {
            s.hard_stop.cancel();
            // Closing is quick once told; do not hang a shutdown on a task that ignores it.
            let _ = tokio::time::timeout(Duration::from_secs(1), s.tasks.wait()).await;
        }
        // The last lines reach the file before the process goes.
        if let Some(log) = s.access_log.current() {
            let _ = tokio::time::timeout(Duration::from_secs(1), log.flush()).await;
        }
        drained
    }
}

impl Drop for Proxy {
    /// A proxy dropped without [`Proxy::shutdown`] still stops accepting and closes its
    /// connections, rather than leaving listeners running unowned.
    fn drop(&mut self) {
        self.listeners.clear();
        self.shared.shutdown.cancel();
        self.shared.hard_stop.cancel();
    }
}

/// What a listener task needs: which listener it is, the snapshots, and shutdown plumbing.
#[derive(Debug, Clone)]
pub(crate) struct ListenerCtx {
    pub(crate) listener: ListenerRef,
    pub(crate) snapshots: SnapshotHandle,
    /// The listener's own: fires on the proxy's shutdown or when a reload removes it.
    pub(crate) shutdown: CancellationToken,
    /// The listener's own: fires on the proxy's hard stop or when its drain grace ends.
    pub(crate) hard_stop: CancellationToken,
    pub(crate) tasks: TaskTracker,
    /// The listener's connection and byte counters.
    pub(crate) counters: Arc<ListenerCounters>,
    /// The proxy's access log (its current log, when configured).
    pub(crate) access_log: AccessLogs,
    /// The proxy's span export.
    pub(crate) spans: Option<SpanExport>,
}

/// Opens the configured access log.
fn open_access_log(config: &ValidatedConfig) -> Result<AccessLogs, ProxyError> {
    AccessLogs::open(config).map_err(|source| ProxyError::AccessLog {
        path: config
            .config()
            .access_log
            .as_ref()
            .map(|l| l.path.clone())
            .unwrap_or_default(),
        source,
    })
}

/// Accepts connections on `socket` until the listener stops, serving each by the listener's
/// protocol.
pub(crate) async fn accept_loop(socket: TcpListener, ctx: ListenerCtx) {
    // The connection limit of stream listeners; permits live as long as their connections.
    let limit = match ctx.listener.get(&ctx.snapshots.load()) {
        Some(Listener::Stream(s)) => Some(Arc::new(Semaphore::new(s.max_connections))),
        _ => None,
    };
    loop {
        // Stop first: after a reload hands this socket to a successor (a new protocol or name
        // on the same address), a connection already queued must go to the successor, never
        // to this stopped loop.
        let accepted = tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => return,
            accepted = socket.accept() => accepted,
        };
        let (stream, remote) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(local) = stream.local_addr() else {
            continue;
        };
        let info = ConnInfo {
            snapshots: ctx.snapshots.clone(),
            listener: ctx.listener.clone(),
            remote,
            local,
            shutdown: ctx.shutdown.clone(),
            hard_stop: ctx.hard_stop.clone(),
            tasks: ctx.tasks.clone(),
            counters: Arc::clone(&ctx.counters),
            access_log: ctx.access_log.clone(),
            spans: ctx.spans.clone(),
            tls: None,
            client_ip: std::sync::OnceLock::new(),
        };
        // Counted open from accept until the connection's task ends.
        let open = ctx.counters.open();
        match &limit {
            None => {
                let serve = crate::l7::conn::serve_connection(stream, info);
                ctx.tasks.spawn(async move {
                    serve.await;
                    drop(open);
                });
            }
            Some(limit) => match Arc::clone(limit).try_acquire_owned() {
                Ok(permit) => {
                    let serve = crate::l4::tcp::serve(stream, info, permit);
                    ctx.tasks.spawn(async move {
                        serve.await;
                        drop(open);
                    });
                }
                Err(_) => {
                    tracing::debug!(%remote, "connection limit reached; closing");
                    drop(stream);
                }
            },
        }
    }
}

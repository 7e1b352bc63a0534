//! Running the proxy: binding listeners, accepting connections, serving HTTP, shutting down.
//!
//! Each listener has an accept loop; each accepted connection is served by hyper's automatic
//! HTTP/1.1-or-HTTP/2 connection builder with the listener's limits. A connection is closed
//! gracefully when it has had no request in flight for the idle timeout, or when the proxy
//! shuts down (in-flight requests finish first, up to the grace period).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use weir_config::ValidatedConfig;

use crate::l7::{ConnInfo, handle};
use crate::snapshot::{CompileError, Snapshot, SnapshotHandle};

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
}

/// A running proxy: its listeners are accepting until [`Proxy::shutdown`].
#[derive(Debug)]
pub struct Proxy {
    snapshots: SnapshotHandle,
    addresses: Vec<(String, SocketAddr)>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

// === impl Proxy ===

impl Proxy {
    /// Compiles `config`, binds every listener and starts accepting. Must run inside a tokio
    /// runtime. Listeners configured with port 0 get a free port; see [`Proxy::listener_addr`].
    pub async fn start(config: &ValidatedConfig) -> Result<Self, ProxyError> {
        let snapshot = Snapshot::compile(config, None)?;
        let snapshots = SnapshotHandle::new(snapshot);
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let mut addresses = Vec::new();
        for (index, l) in config.config().listeners.iter().enumerate() {
            let bind_err = |source| ProxyError::Bind {
                name: l.name.clone(),
                address: l.address,
                source,
            };
            let socket = TcpListener::bind(l.address).await.map_err(bind_err)?;
            let local = socket.local_addr().map_err(bind_err)?;
            addresses.push((l.name.clone(), local));
            tracing::info!(listener = %l.name, address = %local, "listening");
            tasks.spawn(accept_loop(
                socket,
                index,
                snapshots.clone(),
                shutdown.clone(),
                tasks.clone(),
            ));
        }
        Ok(Self {
            snapshots,
            addresses,
            shutdown,
            tasks,
        })
    }

    /// The bound address of the listener named `name`.
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        self.addresses
            .iter()
            .find(|(n, _)| n == name)
            .map(|&(_, a)| a)
    }

    /// Every listener's name and bound address.
    pub fn listener_addrs(&self) -> &[(String, SocketAddr)] {
        &self.addresses
    }

    /// The handle publishing this proxy's snapshots.
    pub fn snapshots(&self) -> &SnapshotHandle {
        &self.snapshots
    }

    /// Stops accepting, lets in-flight requests finish for up to `grace`, then returns.
    /// Returns `true` if every connection closed within `grace`.
    pub async fn shutdown(self, grace: Duration) -> bool {
        self.shutdown.cancel();
        self.tasks.close();
        tokio::time::timeout(grace, self.tasks.wait()).await.is_ok()
    }
}

async fn accept_loop(
    socket: TcpListener,
    listener: usize,
    snapshots: SnapshotHandle,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = socket.accept() => accepted,
        };
        match accepted {
            Ok((stream, remote)) => {
                let info = ConnInfo {
                    snapshots: snapshots.clone(),
                    listener,
                    remote,
                };
                tasks.spawn(serve_connection(stream, info, shutdown.clone()));
            }
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Tracks requests in flight on one connection and when the last one ended.
#[derive(Debug)]
struct Activity {
    start: Instant,
    in_flight: AtomicUsize,
    last_ms: AtomicU64,
}

async fn serve_connection(stream: TcpStream, info: ConnInfo, shutdown: CancellationToken) {
    let _ = stream.set_nodelay(true);
    let options = match info.snapshots.load().listeners.get(info.listener) {
        Some(l) => l.options.clone(),
        None => return,
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .max_headers(options.max_request_headers)
        .max_buf_size(options.max_request_headers_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(options.max_concurrent_streams)
        .max_header_list_size(u32::try_from(options.max_request_headers_bytes).unwrap_or(u32::MAX));

    let activity = Arc::new(Activity {
        start: Instant::now(),
        in_flight: AtomicUsize::new(0),
        last_ms: AtomicU64::new(0),
    });
    let info = Arc::new(info);
    let service = {
        let activity = Arc::clone(&activity);
        service_fn(move |req| {
            let info = Arc::clone(&info);
            let active = ActiveRequest::new(Arc::clone(&activity));
            async move {
                let res = handle(&info, req).await;
                res.map(|r| r.map(|body| crate::body::Tracked::new(body, active)))
            }
        })
    };
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let idle = options.idle_timeout;
    let mut draining = false;
    loop {
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(error = %e, "downstream connection ended with an error");
                }
                return;
            }
            _ = shutdown.cancelled(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = idle_expired(&activity, idle), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Resolves once the connection has had no request in flight for `idle`.
async fn idle_expired(activity: &Activity, idle: Duration) {
    loop {
        let last = Duration::from_millis(activity.last_ms.load(Ordering::Relaxed));
        let idle_since = activity.start + last;
        if activity.in_flight.load(Ordering::Relaxed) == 0 && idle_since.elapsed() >= idle {
            return;
        }
        let wake = if activity.in_flight.load(Ordering::Relaxed) == 0 {
            idle_since + idle
        } else {
            Instant::now() + idle
        };
        tokio::time::sleep_until(wake.into()).await;
    }
}

/// Counts one request as in flight on its connection until its response body is done.
#[derive(Debug)]
pub(crate) struct ActiveRequest {
    activity: Arc<Activity>,
}

impl ActiveRequest {
    fn new(activity: Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        Self { activity }
    }
}

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        let a = &self.activity;
        let now = u64::try_from(a.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        a.last_ms.store(now, Ordering::Relaxed);
        a.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

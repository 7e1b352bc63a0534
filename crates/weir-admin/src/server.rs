//! The admin listener: bind, accept, serve each connection with hyper, shut down.
//!
//! Connections are served by hyper's automatic HTTP/1.1-or-HTTP/2 server. The admin port is an
//! operator's tool, not a traffic path, so it is kept cheap and bounded: at most
//! [`MAX_CONNECTIONS`] connections at once (more are closed on accept), a header read timeout
//! against clients that never finish a request, and a short grace period on shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::AdminState;

/// Admin connections served at once; more are closed as soon as they are accepted.
const MAX_CONNECTIONS: usize = 64;
/// Time a client has to send a request's headers (HTTP/1.1).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`AdminServer::shutdown`] lets running requests finish before closing them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A running admin API; it serves until [`AdminServer::shutdown`] (or until dropped).
#[derive(Debug)]
pub struct AdminServer {
    local_addr: SocketAddr,
    /// A duplicate of the listening socket for [`AdminServer::socket`]; dropped at shutdown so
    /// the port closes with the accept loop.
    socket: Option<std::net::TcpListener>,
    shutdown: CancellationToken,
    hard_stop: CancellationToken,
    tasks: TaskTracker,
}

/// What every connection task shares.
#[derive(Debug, Clone)]
struct ConnCtx {
    state: AdminState,
    shutdown: CancellationToken,
    hard_stop: CancellationToken,
}

// === impl AdminServer ===

impl AdminServer {
    /// Binds `addr` (port 0 picks a free port; see [`AdminServer::local_addr`]) and serves the
    /// admin API from `state` until shutdown. Must run inside a tokio runtime.
    pub async fn start(addr: SocketAddr, state: AdminState) -> std::io::Result<AdminServer> {
        let listener = TcpListener::bind(addr).await?;
        Self::start_on(listener.into_std()?, state)
    }

    /// Serves the admin API on an already bound `listener` (one handed over by the weir this
    /// one upgrades) until shutdown. Must run inside a tokio runtime.
    pub fn start_on(
        listener: std::net::TcpListener,
        state: AdminState,
    ) -> std::io::Result<AdminServer> {
        let socket = listener.try_clone()?;
        listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(listener)?;
        let local_addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let hard_stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        let ctx = ConnCtx {
            state,
            shutdown: shutdown.clone(),
            hard_stop: hard_stop.clone(),
        };
        tasks.spawn(accept_loop(listener, ctx, tasks.clone()));
        tracing::info!(address = %local_addr, "admin API listening");
        Ok(Self {
            local_addr,
            socket: Some(socket),
            shutdown,
            hard_stop,
            tasks,
        })
    }

    /// A second handle on the listening socket (`dup(2)`), to hand to another process.
    pub fn socket(&self) -> std::io::Result<std::net::TcpListener> {
        match &self.socket {
            Some(s) => s.try_clone(),
            None => Err(std::io::Error::other("the admin API is shutting down")),
        }
    }

    /// The address the admin API is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, lets running requests finish for a few seconds, then closes whatever
    /// is left.
    pub async fn shutdown(mut self) {
        self.socket = None;
        self.shutdown.cancel();
        self.tasks.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, self.tasks.wait())
            .await
            .is_err()
        {
            self.hard_stop.cancel();
            // Closing is quick once told; never hang a shutdown on a stuck task.
            let _ = tokio::time::timeout(Duration::from_secs(1), self.tasks.wait()).await;
        }
    }
}

impl Drop for AdminServer {
    /// A server dropped without [`AdminServer::shutdown`] still stops, rather than leaving the
    /// port served by tasks nobody owns.
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.hard_stop.cancel();
    }
}

/// Accepts connections until shutdown, each served in its own tracked task.
async fn accept_loop(listener: TcpListener, ctx: ConnCtx, tasks: TaskTracker) {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            () = ctx.shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, remote) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(error = %e, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        match Arc::clone(&limit).try_acquire_owned() {
            Ok(permit) => {
                tasks.spawn(serve_connection(stream, ctx.clone(), permit));
            }
            Err(_) => {
                tracing::debug!(%remote, "admin connection limit reached; closing");
                drop(stream);
            }
        }
    }
}

/// Serves one admin connection until it closes, shutdown drains it or the hard stop ends it.
async fn serve_connection(stream: TcpStream, ctx: ConnCtx, _permit: OwnedSemaphorePermit) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let state = ctx.state.clone();
    let service = service_fn(move |req| {
        let res = crate::routes::handle(&state, &req);
        async move { Ok::<_, std::convert::Infallible>(res) }
    });
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(error = %e, "admin connection ended with an error");
                }
                return;
            }
            () = ctx.shutdown.cancelled(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            () = ctx.hard_stop.cancelled() => return,
        }
    }
}

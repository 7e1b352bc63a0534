//! Helpers shared by the mocks and by tests: tracing setup, condition polling, and the background
//! accept loop that ties every mock's lifetime to its handle.
//!
//! The accept loop owns a `JoinSet` of connection tasks, so cancelling the loop's token (when a
//! handle is dropped or shut down) closes the listener and every connection it accepted.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// How often [`wait_until`] re-checks its condition.
const POLL_INTERVAL: Duration = Duration::from_millis(5);

/// A background task bound to a handle: cancelled (and aborted) on drop, awaited on shutdown.
#[derive(Debug)]
pub(crate) struct Background {
    token: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Background {
    /// Spawns `task`, which must stop soon after `token` is cancelled.
    pub(crate) fn spawn<Fut>(token: CancellationToken, task: Fut) -> Self
    where
        Fut: Future<Output = ()> + Send + 'static,
    {
        Self {
            token,
            task: Some(tokio::spawn(task)),
        }
    }

    /// Cancels the task and waits until it, and everything it owns, has stopped.
    pub(crate) async fn shutdown(mut self) {
        self.token.cancel();
        if let Some(task) = self.task.take() {
            // A panic inside a mock already failed the test that caused it.
            let _ = task.await;
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.token.cancel();
        if let Some(task) = self.task.take() {
            // Aborting drops the task's JoinSet, which aborts every connection task at once.
            task.abort();
        }
    }
}

/// Binds `127.0.0.1:0`.
pub(crate) async fn bind_loopback() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener
        .local_addr()
        .expect("local_addr of a bound listener");
    (listener, addr)
}

/// Accepts connections until `token` is cancelled, counting each in `connections` and running
/// `serve` for it in a task that is aborted when the loop ends.
pub(crate) async fn accept_loop<F, Fut>(
    listener: TcpListener,
    token: CancellationToken,
    connections: Arc<AtomicU64>,
    mut serve: F,
) where
    F: FnMut(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            () = token.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.fetch_add(1, Ordering::SeqCst);
                    tasks.spawn(serve(stream, peer));
                }
                Err(error) => tracing::debug!(%error, "mock accept failed"),
            },
            // Reap finished connections so a long test does not accumulate their results.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    drop(listener);
    tasks.shutdown().await;
}

/// Installs a `tracing` subscriber for tests: filter from `RUST_LOG` (default `info`), output
/// through the test harness's captured writer. Safe to call from every test; only the first call
/// installs anything.
pub fn trace_init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
        // Another subscriber (installed by the test itself) wins; that is fine.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// Polls `cond` every few milliseconds until it returns `true` (→ `true`) or `timeout` passes
/// (→ `false`). Use it to await a side effect, e.g. `assert!(wait_until(SECS_5, || mock.requests()
/// == 3).await)`, instead of sleeping for a guessed duration.
///
/// The condition is checked once more after the deadline, so a slow scheduler cannot turn a met
/// condition into a failure.
#[must_use = "assert on the result: false means the condition never held"]
pub async fn wait_until<F>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> bool,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return cond();
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// [`wait_until`] for a condition that must itself await something (a request, a
/// handshake): polls `cond` until it yields `true` or `timeout` passes.
#[must_use = "assert on the result: false means the condition never held"]
pub async fn wait_until_async<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return cond().await;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn wait_until_sees_a_condition_become_true() {
        let counter = Arc::new(AtomicU64::new(0));
        let bump = Arc::clone(&counter);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            bump.store(1, Ordering::SeqCst);
        });
        assert!(
            wait_until(Duration::from_secs(1), || counter.load(Ordering::SeqCst)
                == 1)
            .await
        );
    }

    #[tokio::test(start_paused = true)]
    async fn wait_until_gives_up_after_the_timeout() {
        let start = tokio::time::Instant::now();
        assert!(!wait_until(Duration::from_millis(100), || false).await);
        assert!(start.elapsed() >= Duration::from_millis(100));
    }

    #[test]
    fn trace_init_is_idempotent() {
        trace_init();
        trace_init();
    }
}

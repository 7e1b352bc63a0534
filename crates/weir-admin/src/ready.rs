//! What `GET /ready` answers, as Envoy's readiness does: `200 {"ready":true}` once weir has
//! started — config loaded, every listener bound, and each cluster with service discovery has
//! had its first answer (or the initial discovery timeout has passed) — and
//! `503 {"ready":false,"reason":...}` before that and from the moment shutdown begins — while
//! weir still accepts for `shutdown.ready_delay` — so a load balancer in front stops sending
//! new traffic before connections are refused and while requests in flight drain.
//!
//! [`Readiness`] is a shared handle: the owner of the running weir marks discovery results and
//! the start of shutdown, the admin API reads it per request (an atomic and, while discovery
//! is pending, a short lock: this is the control side, never the data path).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long `/ready` waits for the first discovery answer of every discovering cluster before
/// it reports ready anyway (Envoy's `initial_fetch_timeout` defaults to 15 s too).
pub const INITIAL_DISCOVERY_TIMEOUT: Duration = Duration::from_secs(15);

/// Whether weir is ready for traffic; cheap to clone, every clone sees the same state. The
/// default is ready at once (nothing to wait for) until [`Readiness::shut_down`].
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    shutting_down: AtomicBool,
    /// Clusters whose discovery has not answered yet; empty once all have (or none exist).
    pending: Mutex<BTreeSet<String>>,
    /// Until when `/ready` waits for `pending`.
    wait_until: Option<Instant>,
}

/// Why weir is not ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotReady {
    /// Shutdown (or a drain before it) has begun.
    ShuttingDown,
    /// These clusters' service discovery has not answered yet.
    Discovering(Vec<String>),
}

// === impl Readiness ===

impl Readiness {
    /// Ready once each of `discovering` (cluster names) has had a discovery answer, or after
    /// `timeout`, whichever comes first; ready at once when `discovering` is empty.
    pub fn waiting_for(discovering: impl IntoIterator<Item = String>, timeout: Duration) -> Self {
        let pending: BTreeSet<String> = discovering.into_iter().collect();
        let wait_until = (!pending.is_empty()).then(|| Instant::now() + timeout);
        Self(Arc::new(Inner {
            shutting_down: AtomicBool::new(false),
            pending: Mutex::new(pending),
            wait_until,
        }))
    }

    /// `cluster`'s discovery has answered.
    pub fn discovered(&self, cluster: &str) {
        if self.0.wait_until.is_some() {
            self.pending().remove(cluster);
        }
    }

    /// Shutdown has begun: `/ready` answers 503 from now on.
    pub fn shut_down(&self) {
        self.0.shutting_down.store(true, Ordering::Release);
    }

    /// `Ok` when ready, else why not.
    pub fn check(&self) -> Result<(), NotReady> {
        if self.0.shutting_down.load(Ordering::Acquire) {
            return Err(NotReady::ShuttingDown);
        }
        let Some(until) = self.0.wait_until else {
            return Ok(());
        };
        let pending = self.pending();
        if pending.is_empty() || Instant::now() >= until {
            return Ok(());
        }
        Err(NotReady::Discovering(pending.iter().cloned().collect()))
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.0
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

// === impl NotReady ===

impl std::fmt::Display for NotReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotReady::ShuttingDown => f.write_str("shutting down"),
            NotReady::Discovering(clusters) => write!(
                f,
                "waiting for the first service discovery answer of cluster(s) {}",
                clusters.join(", ")
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_once_every_cluster_was_discovered_and_not_after_shutdown() {
        let r = Readiness::waiting_for(["a".into(), "b".into()], Duration::from_secs(60));
        assert_eq!(
            r.check(),
            Err(NotReady::Discovering(vec!["a".into(), "b".into()]))
        );
        r.discovered("a");
        r.discovered("other");
        assert_eq!(r.check(), Err(NotReady::Discovering(vec!["b".into()])));
        r.discovered("b");
        assert_eq!(r.check(), Ok(()));
        r.shut_down();
        assert_eq!(r.check(), Err(NotReady::ShuttingDown));
        assert_eq!(r.check().unwrap_err().to_string(), "shutting down");
    }

    #[test]
    fn the_discovery_wait_times_out_and_nothing_to_wait_for_is_ready() {
        let r = Readiness::waiting_for(["a".into()], Duration::ZERO);
        assert_eq!(r.check(), Ok(()), "timed out");
        assert_eq!(Readiness::default().check(), Ok(()));
        assert_eq!(
            Readiness::waiting_for([], Duration::from_secs(60)).check(),
            Ok(())
        );
    }
}

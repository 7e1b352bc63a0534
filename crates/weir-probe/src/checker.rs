//! [`HealthChecker`]: the set of running per-endpoint check tasks, reconciled with each new
//! snapshot's clusters.
//!
//! A task is keyed by (cluster, endpoint address). On a reload a task keeps running when its
//! config, protocol and endpoint state are unchanged — so a half-built streak towards a flip
//! survives — and is replaced when any of them changed (a new config means new thresholds; a new
//! `EndpointState` means the endpoint was removed and re-added, and the old task would write
//! into state nobody reads).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::task::JoinHandle;
use weir_balance::{RandomSource, ThreadRandom};
use weir_config::{HealthCheckConfig, UpstreamProtocol};
use weir_core::{Clock, Endpoint, EndpointState};

use crate::CheckTarget;
use crate::probe::{ConfigProbe, Probe, ProbeTls};
use crate::task::EndpointCheck;

/// Makes the probe for a target's endpoints; tests swap in scripts.
pub(crate) type ProbeFactory = Arc<dyn Fn(&CheckTarget) -> Arc<dyn Probe> + Send + Sync>;

/// The running active health checks: one tokio task per (cluster, endpoint).
///
/// Dropping it (or calling [`HealthChecker::shutdown`]) aborts every task.
pub struct HealthChecker {
    clock: Arc<dyn Clock>,
    random: Arc<dyn RandomSource>,
    probes: ProbeFactory,
    running: HashMap<TaskKey, Running>,
}

/// Identifies one endpoint's task.
type TaskKey = (Arc<str>, SocketAddr);

/// One endpoint's task and what it was started with; aborts the task when dropped.
struct Running {
    config: HealthCheckConfig,
    protocol: UpstreamProtocol,
    tls: Option<ProbeTls>,
    state: Arc<EndpointState>,
    task: JoinHandle<()>,
}

// === impl HealthChecker ===

impl HealthChecker {
    /// A checker with no tasks that reads `clock` and spreads probes with a per-thread random
    /// source.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self::with_random(clock, Arc::new(ThreadRandom))
    }

    /// A checker with an injected random source (for reproducible schedules).
    pub fn with_random(clock: Arc<dyn Clock>, random: Arc<dyn RandomSource>) -> Self {
        let probes: ProbeFactory = Arc::new(|target: &CheckTarget| {
            Arc::new(ConfigProbe {
                config: target.config.clone(),
                protocol: target.protocol,
                tls: target
                    .tls
                    .as_ref()
                    .map(|t| t.for_probe(&target.config, target.protocol)),
            }) as Arc<dyn Probe>
        });
        Self::with_probes(clock, random, probes)
    }

    /// A checker whose probes come from `probes`.
    pub(crate) fn with_probes(
        clock: Arc<dyn Clock>,
        random: Arc<dyn RandomSource>,
        probes: ProbeFactory,
    ) -> Self {
        Self {
            clock,
            random,
            probes,
            running: HashMap::new(),
        }
    }

    /// Starts tasks for (cluster, endpoint address, config) keys not running yet, stops tasks
    /// whose key is gone, and leaves unchanged ones running, so their hysteresis state survives
    /// a config reload. Must be called inside a tokio runtime.
    pub fn reconcile(&mut self, targets: Vec<CheckTarget>) {
        let mut previous = std::mem::take(&mut self.running);
        let (mut started, mut kept) = (0usize, 0usize);
        for target in &targets {
            let probe = (self.probes)(target);
            for endpoint in &target.endpoints {
                let key = (Arc::clone(&target.cluster), endpoint.address);
                let Entry::Vacant(slot) = self.running.entry(key) else {
                    tracing::debug!(
                        cluster = %target.cluster,
                        endpoint = %endpoint.address,
                        "endpoint listed twice; checking it once"
                    );
                    continue;
                };
                // Dropping a changed task aborts it before its replacement starts.
                let unchanged = previous
                    .remove(slot.key())
                    .filter(|running| running.matches(target, endpoint));
                let running = match unchanged {
                    Some(running) => {
                        kept += 1;
                        running
                    }
                    None => {
                        started += 1;
                        Running::spawn(
                            target,
                            endpoint,
                            Arc::clone(&self.clock),
                            Arc::clone(&self.random),
                            Arc::clone(&probe),
                        )
                    }
                };
                slot.insert(running);
            }
        }
        let stopped = previous.len();
        drop(previous);
        tracing::debug!(started, kept, stopped, "health checks reconciled");
    }

    /// Number of running endpoint tasks.
    pub fn len(&self) -> usize {
        self.running.len()
    }

    /// Whether no endpoint task runs.
    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    /// Aborts every task; the checker can be reconciled again afterwards.
    pub fn shutdown(&mut self) {
        self.running.clear();
    }
}

impl fmt::Debug for HealthChecker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthChecker")
            .field("clock", &self.clock)
            .field("tasks", &self.running.len())
            .finish_non_exhaustive()
    }
}

// === impl Running ===

impl Running {
    /// Spawns the check task of `endpoint`.
    fn spawn(
        target: &CheckTarget,
        endpoint: &Arc<Endpoint>,
        clock: Arc<dyn Clock>,
        random: Arc<dyn RandomSource>,
        probe: Arc<dyn Probe>,
    ) -> Self {
        let check = EndpointCheck {
            cluster: Arc::clone(&target.cluster),
            endpoint: Arc::clone(endpoint),
            config: target.config.clone(),
            clock,
            random,
        };
        Self {
            config: target.config.clone(),
            protocol: target.protocol,
            tls: target.tls.clone(),
            state: Arc::clone(&endpoint.state),
            task: tokio::spawn(check.run(probe)),
        }
    }

    /// Whether this task already checks `endpoint` of `target` as asked.
    fn matches(&self, target: &CheckTarget, endpoint: &Endpoint) -> bool {
        self.config == target.config
            && self.protocol == target.protocol
            && self.tls == target.tls
            && Arc::ptr_eq(&self.state, &endpoint.state)
            && !self.task.is_finished()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests;

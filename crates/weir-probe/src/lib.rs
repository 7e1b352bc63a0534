//! Active health checking for weir: one task per endpoint that probes it on a schedule and turns
//! the results into the [`weir_core::Unhealthy::ActiveCheck`] reason of its
//! [`weir_core::EndpointState`].
//!
//! `weir-health` decides *what* a result means (the rise/fall [`weir_health::Hysteresis`], the
//! [`weir_health::schedule`] that spreads probes) without doing any I/O; this crate does the I/O:
//! the probes themselves ([`probe()`]: HTTP/1.1 or h2c, TCP, gRPC `grpc.health.v1.Health/Check`,
//! UDP; HTTP and gRPC over TLS with [`probe_tls`] when the cluster has upstream `tls:`) and the tasks that run them ([`HealthChecker`]). The data plane never depends on it: the
//! verdicts reach the balancers through the shared `EndpointState`, as `docs/architecture.md`
//! lays out, and the binary wires a [`HealthChecker`] to each new snapshot with
//! [`HealthChecker::reconcile`].
//!
//! The per-endpoint loop is generic over a small internal probe trait, so its timing and
//! hysteresis are tested with scripted probes under paused tokio time; the probes are tested
//! against the mock endpoints of `weir-test-support`.

use std::sync::Arc;
use std::time::Duration;

mod checker;
mod probe;
mod task;

pub use checker::HealthChecker;
pub use probe::{ProbeTls, probe, probe_tls};

/// One cluster's endpoints to probe.
#[derive(Debug, Clone)]
pub struct CheckTarget {
    /// The cluster's name, for logs.
    pub cluster: Arc<str>,
    /// The cluster's `health_check:` block.
    pub config: weir_config::HealthCheckConfig,
    /// The protocol the cluster speaks upstream; the HTTP probe speaks it too (HTTP/1.1, or
    /// HTTP/2 with prior knowledge).
    pub protocol: weir_config::UpstreamProtocol,
    /// The endpoints to probe, sharing their live state with the snapshot that serves them.
    pub endpoints: Vec<Arc<weir_core::Endpoint>>,
    /// The cluster's upstream TLS, when it has `tls:`: HTTP and gRPC probes use it.
    pub tls: Option<ProbeTls>,
}

/// What one probe saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    /// Whether the endpoint passed.
    pub success: bool,
    /// What was seen, for operators: `200 OK`, `status 503 not in [200-399]`,
    /// `connection refused`, `timed out after 1s`, `grpc status NOT_SERVING`.
    pub detail: String,
    /// How long the probe took.
    pub latency: Duration,
}

// === impl ProbeResult ===

impl ProbeResult {
    /// The pass recorded instead of a probe while live traffic shows the endpoint healthy.
    pub(crate) fn skipped() -> Self {
        Self {
            success: true,
            detail: "skipped: traffic healthy".to_owned(),
            latency: Duration::ZERO,
        }
    }
}

//! `shutdown`: how a stopping weir first tells the load balancer in front, then drains.
//!
//! On `SIGTERM`/`SIGINT`, `/ready` answers 503 at once while every listener keeps accepting and
//! serving for `ready_delay` (HAProxy's `grace`): the time a load balancer in front needs to see
//! the 503 and stop sending, so no client is refused while it still sends here. Then weir stops
//! accepting and drains: requests, streams and L4 connections already running may finish for
//! up to `drain_timeout` (HAProxy's `hard-stop-after`, nginx's `worker_shutdown_timeout`,
//! Envoy's `--drain-time-s`); whatever still runs then is closed. The old process after a
//! binary upgrade skips the delay: its sockets are served by the new one.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ConfigDuration;

/// How long in-flight work may take to finish when weir stops, unless the config says.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest `ready_delay` weir accepts: no load balancer's health checks take longer to
/// notice a failing `/ready`, so a longer value is a typo that would keep weir from stopping.
pub const MAX_READY_DELAY: Duration = Duration::from_secs(3600);

/// The top-level `shutdown` block.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownConfig {
    /// How long weir keeps accepting and serving after a shutdown signal while `/ready`
    /// already answers 503, so a load balancer in front stops sending before connections are
    /// refused. Default 0: stop accepting at once.
    #[serde(default)]
    pub ready_delay: ConfigDuration,
    /// How long requests, streams and L4 connections in flight may take to finish once weir
    /// stopped accepting (after `ready_delay`, or after an upgrade's handover) before they are
    /// closed. Default 30 s.
    #[serde(default = "default_drain_timeout")]
    pub drain_timeout: ConfigDuration,
}

// === impl ShutdownConfig ===

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            ready_delay: ConfigDuration::default(),
            drain_timeout: default_drain_timeout(),
        }
    }
}

fn default_drain_timeout() -> ConfigDuration {
    ConfigDuration(DEFAULT_DRAIN_TIMEOUT)
}

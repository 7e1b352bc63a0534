//! `shutdown`: how long a stopping weir lets in-flight work finish.
//!
//! On `SIGTERM`/`SIGINT`, and in the old process after a binary upgrade handed its sockets
//! over, weir stops accepting and drains: requests, streams and L4 connections already running
//! may finish for up to `drain_timeout` (HAProxy's `hard-stop-after`, nginx's
//! `worker_shutdown_timeout`, Envoy's `--drain-time-s`); whatever still runs then is closed.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ConfigDuration;

/// How long in-flight work may take to finish when weir stops, unless the config says.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The top-level `shutdown` block.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownConfig {
    /// How long requests, streams and L4 connections in flight may take to finish after a
    /// shutdown signal (or an upgrade's handover) before they are closed. Default 30 s.
    #[serde(default = "default_drain_timeout")]
    pub drain_timeout: ConfigDuration,
}

// === impl ShutdownConfig ===

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            drain_timeout: default_drain_timeout(),
        }
    }
}

fn default_drain_timeout() -> ConfigDuration {
    ConfigDuration(DEFAULT_DRAIN_TIMEOUT)
}

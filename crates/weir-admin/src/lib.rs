//! The admin API: a small HTTP server that shows operators what the data plane sees.
//!
//! It answers read-only JSON requests about the current [`weir_proxy::Snapshot`] — clusters, their
//! endpoints with the fused health view, outlier and active-check facts, circuit-breaker
//! counters — and the bound listeners. It only *reads*: the data plane never depends on this
//! crate (see `docs/architecture.md`), and every number shown comes from the same atomics the
//! data plane updates, loaded once per request. The endpoints are documented in `docs/admin.md`.
//!
//! `GET /metrics` exports the same atomics in the Prometheus text format (`metrics`); `GET
//! /stats` is a compact cumulative summary for pollers (`stats`), which the live dashboard at
//! `GET /` reads every second (`dashboard`, one embedded HTML page); `GET /config` shows the
//! running config with secrets redacted (`config`).
//! The routing lives in `routes`, the JSON shapes in `views`, the socket plumbing in `server`.

mod config;
mod dashboard;
mod metrics;
mod ready;
mod routes;
mod server;
mod state;
mod stats;
mod timefmt;
mod views;

pub use config::RunningConfig;
pub use ready::{INITIAL_DISCOVERY_TIMEOUT, NotReady, Readiness};
pub use server::AdminServer;
pub use state::{
    AdminState, CounterFamily, ExtraMetrics, ListenerInfo, ReloadError, ReloadSummary, Reloader,
};

//! The userspace data plane: listeners, HTTP/1.1 + HTTP/2 + gRPC proxying, upstream pools.
//!
//! The data plane reads an immutable [`Snapshot`] (compiled from a validated config) and updates
//! per-endpoint atomics; it never talks to the control side directly. Per request it loads the
//! snapshot once, matches a route, lets the cluster's balancer pick an endpoint, forwards over a
//! pooled upstream connection and streams both bodies. `l7::respond` is the only place where
//! errors become status codes. See `LIFECYCLE.md` beside this file for the request flow.

mod access_log;
mod affinity;
mod body;
mod breakers;
mod cluster;
#[cfg(fuzzing)]
pub mod fuzzing;
mod hash_key;
mod l4;
mod l7;
mod listeners;
mod otlp;
mod outlier;
mod rate_limit;
mod retry_budget;
mod route_stats;
mod server;
mod snapshot;
mod stats;
mod tls;
mod upstream;

pub use access_log::{AccessLog, AccessLogChange, AccessLogs};
pub use body::ProxyBody;
pub use breakers::{BreakerLimit, BreakerStats};
pub use cluster::Cluster;
pub use l4::ListenerStats;
pub use l7::{FaultStats, MirrorStats};
pub use listeners::{ListenSocket, Listeners};
pub use otlp::{SpanCounters, SpanExport, SpanExportChange};
pub use rate_limit::RateLimitStats;
pub use retry_budget::RetryStats;
pub use route_stats::{RouteClusterStats, RouteStats};
pub use server::{Proxy, ProxyError};
pub use snapshot::{CompileError, Snapshot, SnapshotHandle};
pub use stats::{
    AffinityEvent, AtomicHistogram, ClusterStats, HistogramSnapshot, LATENCY_BUCKETS,
    ListenerCounters, RouteTraffic, STATUS_CLASSES, UpstreamFailure,
};
pub use tls::TlsReloadFailures;

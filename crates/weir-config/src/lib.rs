//! The weir configuration file: its schema, loading and validation.
//!
//! Users write YAML; [`load_file`] / [`load_str`] parse it, check every rule that can be checked
//! without touching the network, and return a [`ValidatedConfig`]. Anything wrong comes back as a
//! [`ConfigError`] naming the file, the YAML path (`listeners[0].routes[2].cluster`) and the line,
//! with a hint of what would be valid. [`load_file_all`] / [`load_str_all`] report every semantic
//! problem at once as [`ConfigErrors`], and [`validate_config`] checks a [`Config`] built in code.
//! The compiled runtime forms live in the data plane; the types here end in `Config` and are
//! plain data. The user-facing reference for every key is `docs/config.md`.
//!
//! Pipeline: saphyr parses the text into a tree that keeps line numbers (`yaml`), serde
//! deserializes the types straight from that tree with `serde_path_to_error` tracking the path
//! (`de`), the semantic rules walk the result (`validate`), and every error path is looked up in
//! the tree to find its line.

mod address;
mod affinity;
mod balancing;
mod cluster;
mod de;
mod discovery;
mod duration;
mod error;
mod health;
mod l4;
mod listener;
mod load;
mod observability;
mod path;
mod rate_limit;
mod retry;
mod route;
mod ser;
mod shutdown;
mod tls;
mod traffic;
mod validate;
mod xdp;
mod yaml;

pub use affinity::{
    AffinityCookieConfig, DEFAULT_MAX_SESSIONS, DEFAULT_SESSION_IDLE, MAX_MAX_SESSIONS,
    MIN_COOKIE_KEY_BYTES, SESSION_COOKIE_LIFETIME, SameSiteConfig, SessionAffinityConfig,
};
pub use balancing::{
    ChoiceCount, HashKeyConfig, LbPolicyConfig, LeastRequestConfig, MaglevConfig, PeakEwmaConfig,
    RingHashConfig, SlowStartConfig,
};
pub use cluster::{CircuitBreakersConfig, ClusterConfig, EndpointConfig, UpstreamProtocol};
pub use discovery::{
    DiscoveryConfig, DnsDiscoveryConfig, DnsRecordKind, EndpointsFile, EtcdDiscoveryConfig,
    FileDiscoveryConfig,
};
pub use duration::ConfigDuration;
pub use error::{ConfigError, ConfigErrors};
pub use health::{
    FailurePercentageConfig, GrpcCheckConfig, HealthCheckConfig, HttpCheckConfig,
    OutlierDetectionConfig, ProbeKind, StatusRange, TcpCheckConfig, UdpCheckConfig,
};
pub use l4::{
    AcceptProxyProtocolConfig, CidrList, ProxyProtocolVersion, SniRouteConfig, TcpOptionsConfig,
    UdpOptionsConfig,
};
pub use listener::{
    AdminConfig, AdminMetricsConfig, DEFAULT_ADMIN_ADDRESS, HttpOptionsConfig, ListenerConfig,
    ListenerProtocol,
};
pub use load::{
    ValidatedConfig, load_endpoints_str, load_file, load_file_all, load_str, load_str_all,
    validate_config,
};
pub use observability::{
    AccessLogConfig, AccessLogField, DEFAULT_ACCESS_LOG_QUEUE, OtlpConfig, TracingConfig,
};
pub use rate_limit::{
    FailureMode, GlobalRateLimitConfig, ListenerRateLimitConfig, LocalRateLimitConfig,
    RateLimitKeyPart, RateLimitServiceConfig, RouteRateLimitConfig,
};
pub use retry::{
    BackoffConfig, BufferConfig, HedgeConfig, RetryBudgetConfig, RetryConfig, RetryOn,
};
pub use route::{
    DirectResponseConfig, HeaderRulesConfig, RedirectConfig, RouteConfig, RouteMatchConfig,
    StringMatchConfig, StringMatchRuleConfig, WeightedClusterConfig,
};
pub use shutdown::{DEFAULT_DRAIN_TIMEOUT, MAX_READY_DELAY, ShutdownConfig};
pub use tls::{
    CertificateConfig, ClientAuthConfig, ClientCertConfig, ListenerTlsConfig, RootStore,
    TlsVersion, UpstreamTlsConfig,
};
pub use traffic::{
    ConfigNumber, DEFAULT_MIRROR_MAX_BODY_BYTES, FaultAbortConfig, FaultConfig, FaultDelayConfig,
    MirrorConfig,
};
pub use validate::MAX_ENDPOINT_WEIGHT;
pub use xdp::{
    KernelTransport, NftablesListenerConfig, XdpForwarding, XdpForwardingPath, XdpListenerConfig,
    parse_mac,
};

use serde::{Deserialize, Serialize};

/// The whole configuration file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The admin listener; absent means no admin endpoint.
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    /// Addresses weir accepts traffic on.
    #[serde(default)]
    pub listeners: Vec<ListenerConfig>,
    /// Named sets of endpoints that routes send traffic to.
    #[serde(default)]
    pub clusters: Vec<ClusterConfig>,
    /// Where global rate limits are counted (Redis); needed by any `rate_limit.global`.
    #[serde(default)]
    pub rate_limit_service: Option<RateLimitServiceConfig>,
    /// One JSON line per HTTP request and L4 connection; absent means no access log.
    #[serde(default)]
    pub access_log: Option<AccessLogConfig>,
    /// W3C trace context propagation; absent means trace headers pass through untouched.
    #[serde(default)]
    pub tracing: Option<TracingConfig>,
    /// How a stopping weir drains; absent means the defaults (`ready_delay: 0s`,
    /// `drain_timeout: 30s`).
    #[serde(default)]
    pub shutdown: Option<ShutdownConfig>,
}

// === impl Config ===

impl Config {
    /// How long in-flight work may take to finish when weir stops: `shutdown.drain_timeout`,
    /// else [`DEFAULT_DRAIN_TIMEOUT`].
    pub fn drain_timeout(&self) -> std::time::Duration {
        self.shutdown
            .as_ref()
            .map_or(DEFAULT_DRAIN_TIMEOUT, |s| s.drain_timeout.get())
    }

    /// How long a stopping weir keeps accepting while `/ready` already answers 503:
    /// `shutdown.ready_delay`, else zero.
    pub fn ready_delay(&self) -> std::time::Duration {
        self.shutdown
            .as_ref()
            .map_or(std::time::Duration::ZERO, |s| s.ready_delay.get())
    }
}

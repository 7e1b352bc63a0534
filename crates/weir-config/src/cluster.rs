//! Clusters: named sets of endpoints with a balancing policy and an upstream protocol.

use serde::Deserialize;

use crate::ConfigDuration;

/// A named set of endpoints.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Unique name that routes refer to.
    pub name: String,
    /// How a request picks an endpoint. Default `round_robin`.
    #[serde(default)]
    pub lb_policy: LbPolicyConfig,
    /// Protocol spoken to the endpoints. Default `http1`.
    #[serde(default)]
    pub protocol: UpstreamProtocol,
    /// Time allowed to establish a connection to an endpoint. Default 1s.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: ConfigDuration,
    /// Idle pooled upstream connections are closed after this long. Default 90s.
    #[serde(default = "default_pool_idle_timeout")]
    pub pool_idle_timeout: ConfigDuration,
    /// Idle HTTP/1.1 connections kept per endpoint. Default 64.
    #[serde(default = "default_pool_max_idle")]
    pub pool_max_idle_per_endpoint: u32,
    /// The endpoints; may be empty (requests then get 503).
    #[serde(default)]
    pub endpoints: Vec<EndpointConfig>,
}

/// Load-balancing policy of a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LbPolicyConfig {
    /// Smooth weighted round robin (nginx's algorithm).
    #[default]
    RoundRobin,
    /// Weighted random.
    Random,
    /// Power of two choices on in-flight requests, weighted.
    LeastRequest,
}

/// Protocol spoken to a cluster's endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamProtocol {
    /// HTTP/1.1 with keep-alive pooling.
    #[default]
    Http1,
    /// HTTP/2 with prior knowledge (h2c), one multiplexed connection per endpoint.
    Http2,
}

/// One endpoint, written either as `127.0.0.1:9001` or as a map with a weight.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// `ip:port` of the endpoint.
    pub address: std::net::SocketAddr,
    /// Relative share of traffic, 1–10000. Default 1.
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_connect_timeout() -> ConfigDuration {
    ConfigDuration(std::time::Duration::from_secs(1))
}

fn default_pool_idle_timeout() -> ConfigDuration {
    ConfigDuration(std::time::Duration::from_secs(90))
}

fn default_pool_max_idle() -> u32 {
    64
}

fn default_weight() -> u32 {
    1
}

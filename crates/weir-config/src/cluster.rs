//! Clusters: named sets of endpoints with a balancing policy and an upstream protocol.

use std::fmt;
use std::net::SocketAddr;

use serde::de::{self, MapAccess, Visitor, value::MapAccessDeserializer};
use serde::{Deserialize, Deserializer, Serialize};

use crate::ConfigDuration;
use crate::balancing::{
    HashKeyConfig, LbPolicyConfig, LeastRequestConfig, MaglevConfig, PeakEwmaConfig,
    RingHashConfig, SlowStartConfig,
};

/// A named set of endpoints.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Unique name that routes refer to.
    pub name: String,
    /// How a request picks an endpoint. Default `round_robin`.
    #[serde(default)]
    pub lb_policy: LbPolicyConfig,
    /// Settings for `lb_policy: least_request`.
    #[serde(default)]
    pub least_request: Option<LeastRequestConfig>,
    /// Settings for `lb_policy: peak_ewma`.
    #[serde(default)]
    pub peak_ewma: Option<PeakEwmaConfig>,
    /// Settings for `lb_policy: ring_hash`.
    #[serde(default)]
    pub ring_hash: Option<RingHashConfig>,
    /// Settings for `lb_policy: maglev`.
    #[serde(default)]
    pub maglev: Option<MaglevConfig>,
    /// What `ring_hash` and `maglev` hash. Without it (or when the key is missing from a
    /// request) the pick is random.
    #[serde(default)]
    pub hash_key: Option<HashKeyConfig>,
    /// Bounded-load hashing: no endpoint takes more than ⌈factor × mean⌉ in-flight requests;
    /// overflow walks on to the next endpoint. ≥ 1.0; unset means unbounded.
    #[serde(default)]
    pub hash_balance_factor: Option<f64>,
    /// Keep a client on the endpoint it started with (`docs/affinity.md`); a route's own
    /// `session_affinity` overrides it.
    #[serde(default)]
    pub session_affinity: Option<crate::SessionAffinityConfig>,
    /// Ramp the weight of new and recovered endpoints over a window.
    #[serde(default)]
    pub slow_start: Option<SlowStartConfig>,
    /// Below this percentage of healthy endpoints, balance over all endpoints (healthy or
    /// not) rather than overload the few. 0 disables. Default 50.
    #[serde(default = "crate::balancing::default_panic_threshold")]
    pub panic_threshold: u32,
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
    /// Send a PROXY protocol header of this version to endpoints on each new connection
    /// (L4 listeners), so they see the real client address.
    #[serde(default)]
    pub proxy_protocol: Option<crate::ProxyProtocolVersion>,
    /// Limits that keep a sick cluster from taking weir down (Envoy's circuit breakers).
    #[serde(default)]
    pub circuit_breakers: CircuitBreakersConfig,
    /// How many retries the cluster takes relative to its requests.
    #[serde(default)]
    pub retry_budget: crate::RetryBudgetConfig,
    /// Active health checking of every endpoint; absent means endpoints are not probed.
    #[serde(default)]
    pub health_check: Option<crate::HealthCheckConfig>,
    /// Passive outlier detection on live traffic; absent means nothing is ejected.
    #[serde(default)]
    pub outlier_detection: Option<crate::OutlierDetectionConfig>,
    /// Endpoints found by service discovery, kept current alongside `endpoints`.
    #[serde(default)]
    pub discovery: Option<crate::DiscoveryConfig>,
    /// Speak TLS to the endpoints (HTTP listeners' traffic); absent means plain TCP.
    #[serde(default)]
    pub tls: Option<crate::UpstreamTlsConfig>,
    /// The endpoints; may be empty (requests then get 503).
    #[serde(default)]
    pub endpoints: Vec<EndpointConfig>,
}

/// Per-cluster limits; going over one answers 503 at once instead of queueing without bound.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CircuitBreakersConfig {
    /// Upstream connections open at once to all endpoints of the cluster. Default 1024.
    pub max_connections: u32,
    /// Requests waiting for an upstream connection at once. Default 1024.
    pub max_pending_requests: u32,
    /// Requests (and L4 connections) in progress at once. Default 1024.
    pub max_requests: u32,
    /// Retries (and hedges) in progress at once. Default 64. A retry refused by it is not made:
    /// the client gets the failed attempt's answer.
    pub max_retries: u32,
}

impl Default for CircuitBreakersConfig {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_pending_requests: 1024,
            max_requests: 1024,
            max_retries: 64,
        }
    }
}

/// Protocol spoken to a cluster's endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamProtocol {
    /// HTTP/1.1 with keep-alive pooling.
    #[default]
    Http1,
    /// HTTP/2 with prior knowledge (h2c), one multiplexed connection per endpoint.
    Http2,
}

/// One endpoint, written either as `127.0.0.1:9001` or as a map with a weight
/// (`{ address: 127.0.0.1:9002, weight: 2 }`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointConfig {
    /// `ip:port` of the endpoint.
    pub address: SocketAddr,
    /// Relative share of traffic, 1–10000. Default 1.
    pub weight: u32,
}

/// The long (map) form of [`EndpointConfig`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointMap {
    #[serde(deserialize_with = "crate::address::deserialize")]
    address: SocketAddr,
    #[serde(default = "default_weight")]
    weight: u32,
}

/// Accepts the short (`ip:port` string) and the long (map) form of an endpoint.
struct EndpointVisitor;

// === impl EndpointConfig ===

impl<'de> Deserialize<'de> for EndpointConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(EndpointVisitor)
    }
}

impl<'de> Visitor<'de> for EndpointVisitor {
    type Value = EndpointConfig;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "an address such as 127.0.0.1:9001, or a map `{ address: 127.0.0.1:9001, weight: 2 }`",
        )
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<EndpointConfig, E> {
        let address = crate::address::parse(text).map_err(E::custom)?;
        Ok(EndpointConfig {
            address,
            weight: default_weight(),
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<EndpointConfig, A::Error> {
        let EndpointMap { address, weight } =
            EndpointMap::deserialize(MapAccessDeserializer::new(map))?;
        Ok(EndpointConfig { address, weight })
    }
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

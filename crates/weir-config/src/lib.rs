//! The weir configuration file: its schema, loading and validation.
//!
//! Users write YAML; [`load_file`] / [`load_str`] parse it, check every rule that can be checked
//! without touching the network, and return a [`ValidatedConfig`]. Anything wrong comes back as a
//! [`ConfigError`] naming the file, the YAML path (`listeners[0].routes[2].cluster`) and the line,
//! with a hint of what would be valid. The compiled runtime forms live in the data plane; the
//! types here end in `Config` and are plain data.

mod cluster;
mod duration;
mod listener;
mod route;

pub use cluster::{ClusterConfig, EndpointConfig, LbPolicyConfig, UpstreamProtocol};
pub use duration::ConfigDuration;
pub use listener::{AdminConfig, HttpOptionsConfig, ListenerConfig, ListenerProtocol};
pub use route::{
    DirectResponseConfig, HeaderRulesConfig, RedirectConfig, RouteConfig, RouteMatchConfig,
    StringMatchConfig, StringMatchRuleConfig, WeightedClusterConfig,
};

use serde::Deserialize;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
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
}

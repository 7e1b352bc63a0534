//! Rate limits: per-route request limits (local token buckets and a global limit shared through
//! Redis), per-listener connection limits for L4, and the top-level rate limit service.
//!
//! The schema follows Envoy's split between the local rate limit filter (a token bucket in each
//! instance) and the global one (a shared counter service), folded into one `rate_limit:` block
//! per route with a shared `key:` that says what is counted separately (client address, a
//! header's value, the route, or a combination). The user-facing reference is
//! `docs/rate-limiting.md`.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::ConfigDuration;

/// `rate_limit:` on a route: what to count (`key`) and the limits that apply to each key.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRateLimitConfig {
    /// The parts of a request that make its key: `client_address`, `route` or
    /// `header:<name>`; a single string or a list. Default `[client_address]`.
    #[serde(default = "default_key", deserialize_with = "one_or_many")]
    pub key: Vec<String>,
    /// A token bucket per key inside this weir instance.
    #[serde(default)]
    pub local: Option<LocalRateLimitConfig>,
    /// A limit per key shared by every weir instance through `rate_limit_service`.
    #[serde(default)]
    pub global: Option<GlobalRateLimitConfig>,
}

/// `rate_limit.local`: a token bucket per key.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LocalRateLimitConfig {
    /// Tokens added per second (the sustained rate).
    pub requests_per_second: u32,
    /// Bucket size: requests allowed at once after a quiet period. Default
    /// `requests_per_second`.
    #[serde(default)]
    pub burst: Option<u32>,
    /// Keys tracked at once; the least recently used is evicted beyond it. Default 100000.
    #[serde(default = "default_max_keys")]
    pub max_keys: u32,
}

/// `rate_limit.global`: a fixed one-second window per key, counted in Redis.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalRateLimitConfig {
    /// Requests per second allowed per key across all instances.
    pub requests_per_second: u32,
    /// What happens while Redis cannot be reached. Default `open`.
    #[serde(default)]
    pub failure_mode: FailureMode,
    /// Keys tracked at once in this instance. Default 100000.
    #[serde(default = "default_max_keys")]
    pub max_keys: u32,
}

/// What a global limit does while the rate limit service is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    /// Let requests through (only the local limit, if any, applies).
    #[default]
    Open,
    /// Refuse requests with 503 until the service is back.
    Closed,
}

/// `rate_limit_service:` at the top level: where global limits are counted.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitServiceConfig {
    /// The Redis server, `ip:port`.
    #[serde(deserialize_with = "crate::address::deserialize")]
    pub redis: SocketAddr,
    /// How often each instance sends its counts and learns the totals. Default 50ms.
    #[serde(default = "default_sync_interval")]
    pub sync_interval: ConfigDuration,
    /// Time allowed for one exchange with Redis (connect or one batch). Default 100ms.
    #[serde(default = "default_timeout")]
    pub timeout: ConfigDuration,
}

/// `rate_limit:` on a `tcp` or `tls_passthrough` listener: new connections per second.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerRateLimitConfig {
    /// Connections accepted per second (sustained).
    pub connections_per_second: u32,
    /// Connections accepted at once after a quiet period. Default `connections_per_second`.
    #[serde(default)]
    pub burst: Option<u32>,
}

/// One part of a rate limit key, parsed from its string form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateLimitKeyPart {
    /// The client's IP address (without the port).
    ClientAddress,
    /// The route itself: every request of the route shares one bucket.
    Route,
    /// The value of this request header (lower-case name); absent counts as one shared value.
    Header(String),
}

// === impl RateLimitKeyPart ===

impl RateLimitKeyPart {
    /// The key kinds, for hints.
    pub const KINDS: &'static str = "client_address, route, header:<name>";

    /// Parses `client_address`, `route` or `header:<name>`; the header name is not checked
    /// here (the validator does).
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "client_address" => Ok(Self::ClientAddress),
            "route" => Ok(Self::Route),
            _ => match text.strip_prefix("header:") {
                Some(name) => Ok(Self::Header(name.to_owned())),
                None => Err(format!("unknown rate limit key {text:?}")),
            },
        }
    }
}

// === impl LocalRateLimitConfig / ListenerRateLimitConfig ===

impl LocalRateLimitConfig {
    /// The bucket size: `burst`, or `requests_per_second` when unset.
    pub fn burst(&self) -> u32 {
        self.burst.unwrap_or(self.requests_per_second)
    }
}

impl ListenerRateLimitConfig {
    /// The bucket size: `burst`, or `connections_per_second` when unset.
    pub fn burst(&self) -> u32 {
        self.burst.unwrap_or(self.connections_per_second)
    }
}

fn default_key() -> Vec<String> {
    vec!["client_address".to_owned()]
}

fn default_max_keys() -> u32 {
    100_000
}

fn default_sync_interval() -> ConfigDuration {
    ConfigDuration(Duration::from_millis(50))
}

fn default_timeout() -> ConfigDuration {
    ConfigDuration(Duration::from_millis(100))
}

/// `deserialize_with` for a list that may also be written as one string.
fn one_or_many<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    struct OneOrMany;

    impl<'de> Visitor<'de> for OneOrMany {
        type Value = Vec<String>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a key such as client_address, or a list such as [client_address, \"header:x-api-key\"]")
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<Vec<String>, E> {
            Ok(vec![text.to_owned()])
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
            let mut parts = Vec::new();
            while let Some(part) = seq.next_element::<String>()? {
                parts.push(part);
            }
            Ok(parts)
        }
    }

    deserializer.deserialize_any(OneOrMany)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_parts_parse() {
        assert_eq!(
            RateLimitKeyPart::parse("client_address"),
            Ok(RateLimitKeyPart::ClientAddress)
        );
        assert_eq!(
            RateLimitKeyPart::parse("route"),
            Ok(RateLimitKeyPart::Route)
        );
        assert_eq!(
            RateLimitKeyPart::parse("header:x-api-key"),
            Ok(RateLimitKeyPart::Header("x-api-key".into()))
        );
        assert!(RateLimitKeyPart::parse("cookie:x").is_err());
    }
}

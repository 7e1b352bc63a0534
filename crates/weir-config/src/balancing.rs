//! Load-balancing options of a cluster: the policy and its per-policy settings.
//!
//! The policy is named by `lb_policy`; its settings sit beside it in a block named after the
//! policy (`least_request:`, `peak_ewma:`, `ring_hash:`, `maglev:`), as Envoy's
//! `*_lb_config` blocks do. Options that apply to several policies (`hash_key`,
//! `hash_balance_factor`, `slow_start`, `panic_threshold`) are cluster keys of their own.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::ConfigDuration;

/// Load-balancing policy of a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LbPolicyConfig {
    /// Smooth weighted round robin (nginx's algorithm).
    #[default]
    RoundRobin,
    /// Weighted random.
    Random,
    /// Power of two choices (or a full scan) on in-flight requests, weighted.
    LeastRequest,
    /// Latency-aware: peak-sensitive EWMA of response time × (in-flight + 1), P2C.
    PeakEwma,
    /// Consistent hashing on a ketama-style ring.
    RingHash,
    /// Consistent hashing with Google's Maglev lookup table.
    Maglev,
}

/// Settings of `lb_policy: least_request`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LeastRequestConfig {
    /// How many endpoints to sample per pick (2 = power of two choices), or `all` to scan
    /// every endpoint (full least request). Default 2.
    pub choice_count: ChoiceCount,
    /// Exponent applied to the in-flight count when weights differ (Envoy's
    /// `active_request_bias`): 0 ignores load, 1 (default) divides weight by load.
    pub active_request_bias: f64,
}

/// Number of candidates a least-request pick samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChoiceCount {
    /// Sample this many endpoints (≥ 2).
    Sample(u32),
    /// Consider every endpoint.
    All,
}

/// Settings of `lb_policy: peak_ewma`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PeakEwmaConfig {
    /// Time constant of the moving average: how fast old latency is forgotten. Default 10s.
    pub decay: ConfigDuration,
    /// Latency assumed for an endpoint with no observation yet. Default 10ms.
    pub default_rtt: ConfigDuration,
    /// Latency charged for a failed request (5xx, connect error, reset). Default 1s.
    pub failure_penalty: ConfigDuration,
    /// How long a `429`/`503` without `Retry-After` keeps an endpoint penalised. Default 1s.
    pub overload_backoff: ConfigDuration,
}

/// Settings of `lb_policy: ring_hash`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RingHashConfig {
    /// Number of points on the ring (all endpoints together). Default 1024; 64 – 8388608.
    pub table_size: u32,
}

/// Settings of `lb_policy: maglev`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaglevConfig {
    /// Lookup table size; must be a prime. Default 65537.
    pub table_size: u32,
}

/// What a hashing policy hashes. Exactly one key must be set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HashKeyConfig {
    /// The value of this request header (L7).
    #[serde(default)]
    pub header: Option<String>,
    /// The value of this cookie (L7).
    #[serde(default)]
    pub cookie: Option<String>,
    /// The value of this query parameter (L7).
    #[serde(default)]
    pub query: Option<String>,
    /// The request path (L7).
    #[serde(default)]
    pub path: Option<bool>,
    /// The client's IP address (L7 and L4).
    #[serde(default)]
    pub source_ip: Option<bool>,
    /// Source and destination address, port and protocol (L4).
    #[serde(default)]
    pub five_tuple: Option<bool>,
}

/// Ramp-up of new or recovered endpoints (Envoy's slow start).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SlowStartConfig {
    /// How long the ramp lasts.
    pub window: ConfigDuration,
    /// Shape of the ramp: 1.0 (default) is linear, larger values ramp faster at the start.
    #[serde(default = "default_aggression")]
    pub aggression: f64,
    /// Share of its weight an endpoint gets at the start of the window, in percent. Default 10.
    #[serde(default = "default_min_weight_percent")]
    pub min_weight_percent: u32,
}

// === impl defaults ===

impl Default for LeastRequestConfig {
    fn default() -> Self {
        Self {
            choice_count: ChoiceCount::Sample(2),
            active_request_bias: 1.0,
        }
    }
}

impl Default for PeakEwmaConfig {
    fn default() -> Self {
        Self {
            decay: ConfigDuration(std::time::Duration::from_secs(10)),
            default_rtt: ConfigDuration(std::time::Duration::from_millis(10)),
            failure_penalty: ConfigDuration(std::time::Duration::from_secs(1)),
            overload_backoff: ConfigDuration(std::time::Duration::from_secs(1)),
        }
    }
}

impl Default for RingHashConfig {
    fn default() -> Self {
        Self { table_size: 1024 }
    }
}

impl Default for MaglevConfig {
    fn default() -> Self {
        Self { table_size: 65537 }
    }
}

fn default_aggression() -> f64 {
    1.0
}

fn default_min_weight_percent() -> u32 {
    10
}

/// Default `panic_threshold`: below 50 % healthy endpoints, balance over all of them.
pub(crate) fn default_panic_threshold() -> u32 {
    50
}

// === impl ChoiceCount ===

impl<'de> Deserialize<'de> for ChoiceCount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ChoiceVisitor;

        impl Visitor<'_> for ChoiceVisitor {
            type Value = ChoiceCount;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of choices (2 or more) or `all`")
            }

            fn visit_i64<E: de::Error>(self, n: i64) -> Result<ChoiceCount, E> {
                u32::try_from(n)
                    .ok()
                    .filter(|&n| n >= 2)
                    .map(ChoiceCount::Sample)
                    .ok_or_else(|| {
                        E::custom(format!(
                            "choice_count {n} is too small; use 2 or more, or `all`"
                        ))
                    })
            }

            fn visit_u64<E: de::Error>(self, n: u64) -> Result<ChoiceCount, E> {
                self.visit_i64(i64::try_from(n).unwrap_or(i64::MAX))
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<ChoiceCount, E> {
                match s {
                    "all" => Ok(ChoiceCount::All),
                    other => Err(E::custom(format!(
                        "`{other}` is not a choice count; use a number ≥ 2 or `all`"
                    ))),
                }
            }
        }

        deserializer.deserialize_any(ChoiceVisitor)
    }
}

// === impl HashKeyConfig ===

impl HashKeyConfig {
    /// Names of the keys that are set (valid configs have exactly one).
    pub fn set_keys(&self) -> Vec<&'static str> {
        let mut keys = Vec::new();
        if self.header.is_some() {
            keys.push("header");
        }
        if self.cookie.is_some() {
            keys.push("cookie");
        }
        if self.query.is_some() {
            keys.push("query");
        }
        if self.path == Some(true) {
            keys.push("path");
        }
        if self.source_ip == Some(true) {
            keys.push("source_ip");
        }
        if self.five_tuple == Some(true) {
            keys.push("five_tuple");
        }
        keys
    }
}

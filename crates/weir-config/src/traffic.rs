//! Per-route traffic experiments: request mirroring (shadowing) and fault injection.
//!
//! Both are route policy in the spirit of Envoy's `request_mirror_policies` and its HTTP fault
//! filter: `mirror` copies a share of a route's requests to a shadow cluster, fire and forget;
//! `fault` delays or aborts a share of them before they go anywhere. They live in their own
//! module so the route schema stays about matching and actions. The user-facing reference is
//! `docs/mirroring-and-faults.md`; the rules are checked in `validate/traffic.rs`.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use crate::{ConfigDuration, StringMatchConfig};

/// Default `mirror.max_body_bytes`: 64 KiB.
pub const DEFAULT_MIRROR_MAX_BODY_BYTES: u64 = 64 * 1024;

/// A number as written in the config (`0.1`, `10`, `12.5`).
///
/// Compared bit for bit, so config types that hold one stay `Eq` (a reload compares configs).
#[derive(Debug, Clone, Copy, Default)]
pub struct ConfigNumber(pub f64);

/// `mirror:` on a route: copy selected requests to a shadow cluster and ignore its answers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorConfig {
    /// The shadow cluster the copies go to.
    pub cluster: String,
    /// Share of requests copied, 0.0–1.0. At most one of `fraction` and `percent`; neither
    /// means every request.
    #[serde(default)]
    pub fraction: Option<ConfigNumber>,
    /// Share of requests copied, 0–100 (the same thing as `fraction`, in percent).
    #[serde(default)]
    pub percent: Option<ConfigNumber>,
    /// Only requests whose headers match all of these are copied (same syntax as
    /// `match.headers`). Default: no condition.
    #[serde(default)]
    pub headers: BTreeMap<String, StringMatchConfig>,
    /// Request bodies are copied up to this many bytes; a longer body abandons the copy.
    /// Default 65536 (64 KiB); 0 copies only requests without a body.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: u64,
    /// Count shadow responses whose status class (2xx, 3xx, 4xx, 5xx) differs from the
    /// primary's. Default false.
    #[serde(default)]
    pub compare_status: bool,
    /// Time allowed for the whole shadow exchange (response headers and body). Default 10s.
    #[serde(default = "default_mirror_timeout")]
    pub timeout: ConfigDuration,
}

/// `fault:` on a route: delay and/or abort a share of its requests (Envoy's fault filter).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FaultConfig {
    /// Wait before the request is handled further.
    #[serde(default)]
    pub delay: Option<FaultDelayConfig>,
    /// Answer at once with a status, without sending anything upstream.
    #[serde(default)]
    pub abort: Option<FaultAbortConfig>,
    /// Faults apply only to requests whose headers match all of these (same syntax as
    /// `match.headers`). Default: no condition.
    #[serde(default)]
    pub headers: BTreeMap<String, StringMatchConfig>,
}

/// `fault.delay`: a fixed delay for a share of requests.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FaultDelayConfig {
    /// How long a delayed request waits.
    pub fixed: ConfigDuration,
    /// Share of requests delayed, 0–100. Default 100.
    #[serde(default = "default_percent")]
    pub percent: ConfigNumber,
}

/// `fault.abort`: an immediate answer for a share of requests.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FaultAbortConfig {
    /// The status answered, 200–599.
    pub status: u16,
    /// Share of requests aborted, 0–100. Default 100.
    #[serde(default = "default_percent")]
    pub percent: ConfigNumber,
}

// === impl ConfigNumber ===

impl ConfigNumber {
    /// The value.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl PartialEq for ConfigNumber {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for ConfigNumber {}

impl<'de> Deserialize<'de> for ConfigNumber {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        f64::deserialize(deserializer).map(Self)
    }
}

// === impl MirrorConfig ===

impl MirrorConfig {
    /// The share of requests copied, 0.0–1.0 (from `fraction` or `percent`; 1.0 when neither).
    pub fn share(&self) -> f64 {
        match (self.fraction, self.percent) {
            (Some(f), _) => f.get(),
            (None, Some(p)) => p.get() / 100.0,
            (None, None) => 1.0,
        }
    }
}

fn default_max_body_bytes() -> u64 {
    DEFAULT_MIRROR_MAX_BODY_BYTES
}

fn default_mirror_timeout() -> ConfigDuration {
    ConfigDuration(std::time::Duration::from_secs(10))
}

fn default_percent() -> ConfigNumber {
    ConfigNumber(100.0)
}

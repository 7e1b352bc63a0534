//! Health options of a cluster: the active check (`health_check:`) and passive outlier detection
//! (`outlier_detection:`).
//!
//! The probe kind is chosen by which block is present — `http:`, `tcp:`, `grpc:` or `udp:` — as
//! Envoy's `oneof health_checker` does; the validator insists on exactly one. Timing and
//! hysteresis keys are shared by every kind. Defaults follow Envoy and HAProxy where they agree
//! (rise 2, fall 3) and are documented in `docs/health.md`.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::ConfigDuration;

/// `health_check:` on a cluster: probe every endpoint periodically.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckConfig {
    /// Time between checks of a healthy endpoint. Default 5s.
    #[serde(default = "default_interval")]
    pub interval: ConfigDuration,
    /// Time between checks of an unhealthy endpoint; defaults to `interval`.
    #[serde(default)]
    pub unhealthy_interval: Option<ConfigDuration>,
    /// Time a probe may take before it counts as failed. Default 1s.
    #[serde(default = "default_timeout")]
    pub timeout: ConfigDuration,
    /// Up to this much random time is added to every interval, so endpoints (and weir
    /// instances) do not probe in lockstep. Default 0; the first round is always spread.
    #[serde(default)]
    pub jitter: ConfigDuration,
    /// Consecutive passes that bring an unhealthy endpoint back. Default 2.
    #[serde(default = "default_healthy_threshold")]
    pub healthy_threshold: u32,
    /// Consecutive failures that take a healthy endpoint out. Default 3.
    #[serde(default = "default_unhealthy_threshold")]
    pub unhealthy_threshold: u32,
    /// Skip the probe (and count a pass) while the endpoint serves successful traffic: a
    /// success since the last check and no failure streak. Default false.
    #[serde(default)]
    pub skip_when_traffic_healthy: bool,
    /// Whether endpoints start healthy before their first check. Default false (Envoy's
    /// behaviour): an endpoint takes traffic only after its first check passes.
    #[serde(default)]
    pub start_healthy: bool,
    /// HTTP probe settings (`GET /healthz` expecting 2xx/3xx by default).
    #[serde(default)]
    pub http: Option<HttpCheckConfig>,
    /// TCP probe settings (connect, optionally send and expect bytes).
    #[serde(default)]
    pub tcp: Option<TcpCheckConfig>,
    /// gRPC probe settings (`grpc.health.v1.Health/Check`).
    #[serde(default)]
    pub grpc: Option<GrpcCheckConfig>,
    /// UDP probe settings (send a datagram, expect a reply).
    #[serde(default)]
    pub udp: Option<UdpCheckConfig>,
}

/// Which probe a [`HealthCheckConfig`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind<'a> {
    /// An HTTP request.
    Http(&'a HttpCheckConfig),
    /// A TCP connection.
    Tcp(&'a TcpCheckConfig),
    /// A gRPC health call.
    Grpc(&'a GrpcCheckConfig),
    /// A UDP exchange.
    Udp(&'a UdpCheckConfig),
}

/// `health_check.http`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpCheckConfig {
    /// Request path, with an optional query. Default `/healthz`.
    pub path: String,
    /// Request method. Default `GET`.
    pub method: String,
    /// `Host` header (`:authority` over HTTP/2); default the endpoint's address.
    pub host: Option<String>,
    /// Statuses that pass, as codes or ranges: `[200, "300-399"]`. Default `["200-399"]`.
    pub expected_statuses: Vec<StatusRange>,
    /// When set, the response body (its first 64 KiB) must contain this text.
    pub body_contains: Option<String>,
}

/// An inclusive range of HTTP status codes, written `204` or `"200-299"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusRange {
    /// Lowest status that matches.
    pub start: u16,
    /// Highest status that matches.
    pub end: u16,
}

/// `health_check.tcp`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TcpCheckConfig {
    /// Text sent once connected (YAML escapes such as `"PING\r\n"` work).
    pub send: Option<String>,
    /// Text the reply must contain; without it a completed connect passes.
    pub expect: Option<String>,
}

/// `health_check.grpc`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcCheckConfig {
    /// Service name asked about; empty (default) asks about the server as a whole.
    pub service: String,
    /// `:authority` of the call; default the endpoint's address.
    pub authority: Option<String>,
}

/// `health_check.udp`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UdpCheckConfig {
    /// Datagram payload sent to the endpoint.
    pub send: String,
    /// Text the reply must contain; without it any reply passes.
    #[serde(default)]
    pub expect: Option<String>,
}

/// `outlier_detection:` on a cluster: eject endpoints whose traffic keeps failing.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutlierDetectionConfig {
    /// Eject after this many consecutive 5xx answers (local gateway errors included); 0
    /// disables. Default 5.
    pub consecutive_5xx: u32,
    /// Eject after this many consecutive 502/503/504 answers (and resets, response timeouts);
    /// 0 disables. Default 0.
    pub consecutive_gateway_errors: u32,
    /// Eject after this many consecutive failed connection attempts, on HTTP and L4 clusters;
    /// 0 disables. Default 5.
    pub consecutive_connect_failures: u32,
    /// Eject endpoints whose share of failed exchanges in an interval is too high.
    pub failure_percentage: Option<FailurePercentageConfig>,
    /// How often the failure-percentage detector runs and multipliers decay. Default 10s.
    pub interval: ConfigDuration,
    /// The first ejection lasts this long; the n-th lasts n times as long. Default 30s.
    pub base_ejection_time: ConfigDuration,
    /// No ejection lasts longer than this (before jitter). Default 300s, or
    /// `base_ejection_time` when that is longer.
    pub max_ejection_time: Option<ConfigDuration>,
    /// Up to this much random time is added to each ejection. Default 0.
    pub ejection_jitter: ConfigDuration,
    /// At most this percentage of the cluster's endpoints is ejected at once. Default 50.
    pub max_ejection_percent: u32,
}

/// `outlier_detection.failure_percentage`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FailurePercentageConfig {
    /// Eject when failures are at least this percentage of an endpoint's exchanges. Default 85.
    pub threshold: u32,
    /// Endpoints with fewer exchanges in the interval are not judged. Default 50.
    pub request_volume: u32,
    /// The detector runs only when the cluster has at least this many endpoints. Default 5.
    pub minimum_endpoints: u32,
}

// === impl HealthCheckConfig ===

impl HealthCheckConfig {
    /// The probe this check runs, or `None` when the config names none (the validator rejects
    /// that, and also more than one).
    pub fn probe(&self) -> Option<ProbeKind<'_>> {
        let kinds = [
            self.http.as_ref().map(ProbeKind::Http),
            self.tcp.as_ref().map(ProbeKind::Tcp),
            self.grpc.as_ref().map(ProbeKind::Grpc),
            self.udp.as_ref().map(ProbeKind::Udp),
        ];
        kinds.into_iter().flatten().next()
    }

    /// The interval used while the endpoint is unhealthy.
    pub fn unhealthy_interval(&self) -> Duration {
        self.unhealthy_interval.unwrap_or(self.interval).get()
    }
}

// === impl HttpCheckConfig ===

impl Default for HttpCheckConfig {
    fn default() -> Self {
        Self {
            path: "/healthz".to_owned(),
            method: "GET".to_owned(),
            host: None,
            expected_statuses: vec![StatusRange {
                start: 200,
                end: 399,
            }],
            body_contains: None,
        }
    }
}

impl HttpCheckConfig {
    /// Whether `status` is one of the expected statuses.
    pub fn expects(&self, status: u16) -> bool {
        self.expected_statuses.iter().any(|r| r.contains(status))
    }
}

// === impl StatusRange ===

impl StatusRange {
    /// Whether `status` lies in the range.
    pub fn contains(&self, status: u16) -> bool {
        (self.start..=self.end).contains(&status)
    }
}

impl fmt::Display for StatusRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

impl<'de> Deserialize<'de> for StatusRange {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StatusRangeVisitor)
    }
}

struct StatusRangeVisitor;

impl Visitor<'_> for StatusRangeVisitor {
    type Value = StatusRange;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an HTTP status such as 200, or a range such as \"200-299\"")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<StatusRange, E> {
        let code = status(v).map_err(E::custom)?;
        Ok(StatusRange {
            start: code,
            end: code,
        })
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<StatusRange, E> {
        let v = u64::try_from(v).map_err(|_| E::custom(format!("{v} is not an HTTP status")))?;
        self.visit_u64(v)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<StatusRange, E> {
        let parse = |t: &str| -> Result<u16, String> {
            let v: u64 = t
                .trim()
                .parse()
                .map_err(|_| format!("{t:?} is not an HTTP status"))?;
            status(v)
        };
        let (start, end) = match text.split_once('-') {
            Some((a, b)) => (parse(a).map_err(E::custom)?, parse(b).map_err(E::custom)?),
            None => {
                let v = parse(text).map_err(E::custom)?;
                (v, v)
            }
        };
        if start > end {
            return Err(E::custom(format!(
                "status range {text:?} runs backwards; write the lower status first"
            )));
        }
        Ok(StatusRange { start, end })
    }
}

fn status(v: u64) -> Result<u16, String> {
    match u16::try_from(v) {
        Ok(code) if (100..=599).contains(&code) => Ok(code),
        _ => Err(format!("{v} is not an HTTP status (100-599)")),
    }
}

// === impl OutlierDetectionConfig ===

impl Default for OutlierDetectionConfig {
    fn default() -> Self {
        Self {
            consecutive_5xx: 5,
            consecutive_gateway_errors: 0,
            consecutive_connect_failures: 5,
            failure_percentage: None,
            interval: ConfigDuration(Duration::from_secs(10)),
            base_ejection_time: ConfigDuration(Duration::from_secs(30)),
            max_ejection_time: None,
            ejection_jitter: ConfigDuration(Duration::ZERO),
            max_ejection_percent: 50,
        }
    }
}

impl Default for FailurePercentageConfig {
    fn default() -> Self {
        Self {
            threshold: 85,
            request_volume: 50,
            minimum_endpoints: 5,
        }
    }
}

impl OutlierDetectionConfig {
    /// The longest an ejection lasts before jitter: `max_ejection_time`, or 300s (at least
    /// `base_ejection_time`) when not given.
    pub fn max_ejection_time(&self) -> Duration {
        let base = self.base_ejection_time.get();
        match self.max_ejection_time {
            Some(max) => max.get(),
            None => Duration::from_secs(300).max(base),
        }
    }
}

fn default_interval() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(5))
}

fn default_timeout() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(1))
}

fn default_healthy_threshold() -> u32 {
    2
}

fn default_unhealthy_threshold() -> u32 {
    3
}

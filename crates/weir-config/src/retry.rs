//! Retries, hedging and request buffering of a route, and the retry budget of a cluster.
//!
//! A retry is the cheapest way to hide one endpoint's bad moment from a client, and the fastest
//! way to turn a slow cluster into a dead one. The route says when a retry is worth it (`retry`,
//! `hedge`); the cluster says how many retries it can afford (`retry_budget`, and the
//! `max_retries` circuit breaker). The reference with examples is `docs/traffic-policy.md`.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::ConfigDuration;

/// When and how a route retries a failed attempt (Envoy's `retry_policy`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts in all, the first included: `1` never retries. Default 2.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// What makes a failed attempt worth retrying. Default `[connect-failure, refused-stream]`.
    #[serde(default = "default_on")]
    pub on: Vec<RetryOn>,
    /// Time one attempt has to produce response headers; the route's `timeout` still bounds
    /// the whole request, retries included. Default: none.
    #[serde(default)]
    pub per_try_timeout: Option<ConfigDuration>,
    /// Wait between attempts: exponential with full jitter.
    #[serde(default)]
    pub backoff: BackoffConfig,
    /// A failed response's `Retry-After` sets the wait before the retry; one asking for longer
    /// than `backoff.max` is not retried. Default true.
    #[serde(default = "default_true")]
    pub honor_retry_after: bool,
    /// Request bodies up to this size are kept for a replay; a retry of a request whose body
    /// was larger (and already partly sent) is not made. Default 65536 (64 KiB).
    #[serde(default = "default_replay_bytes")]
    pub max_replay_bytes: u64,
}

/// A condition under which a failed attempt is retried.
///
/// Written as a string (`connect-failure`, `refused-stream`, `reset`, `5xx`, `gateway-error`,
/// or a gRPC status name: `cancelled`, `deadline-exceeded`, `resource-exhausted`, `internal`,
/// `unavailable`) or as a status code number (`503`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetryOn {
    /// The connection to the endpoint could not be made (or timed out); always safe.
    ConnectFailure,
    /// The HTTP/2 endpoint refused the stream (`REFUSED_STREAM`) or it was above a GOAWAY's
    /// last stream id; always safe.
    RefusedStream,
    /// The endpoint closed or reset the exchange before response headers.
    Reset,
    /// Any 5xx response, and every failure to get a response.
    Status5xx,
    /// 502, 503 or 504, and every failure to get a response.
    GatewayError,
    /// This exact status code.
    Status(u16),
    /// A gRPC response with this `grpc-status` code (1, 4, 8, 13 or 14).
    Grpc(u8),
}

/// Exponential backoff: attempt `n` waits a random time in `[0, min(max, base × 2ⁿ⁻¹)]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackoffConfig {
    /// The first retry's upper bound. Default 25ms (Envoy's).
    pub base: ConfigDuration,
    /// The cap of any wait. Default 10 × base.
    pub max: Option<ConfigDuration>,
}

/// A second, parallel attempt when the first is slow (idempotent requests only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HedgeConfig {
    /// Send the hedge when the first attempt has no response headers after this long.
    pub delay: ConfigDuration,
}

/// Read the whole request body before choosing an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BufferConfig {
    /// A larger body is answered with 413.
    pub max_request_bytes: u64,
}

/// How many retries a cluster takes, relative to its requests (Linkerd's and Finagle's retry
/// budget): over any `window`, retries ≤ `percent` % of requests + `min_per_second` × window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryBudgetConfig {
    /// Retries allowed per 100 requests. Default 20.
    pub percent: u32,
    /// Retries always allowed per second, so a quiet cluster can still retry. Default 10.
    pub min_per_second: u32,
    /// The window the counts cover, 1s to 60s. Default 10s.
    pub window: ConfigDuration,
}

// === impl RetryOn ===

impl RetryOn {
    /// The gRPC status names `on` accepts, with their codes.
    pub const GRPC_NAMES: [(&'static str, u8); 5] = [
        ("cancelled", 1),
        ("deadline-exceeded", 4),
        ("resource-exhausted", 8),
        ("internal", 13),
        ("unavailable", 14),
    ];

    /// Whether this condition is about a response status rather than a failed exchange.
    pub fn is_status(self) -> bool {
        matches!(
            self,
            RetryOn::Status5xx | RetryOn::GatewayError | RetryOn::Status(_) | RetryOn::Grpc(_)
        )
    }
}

impl fmt::Display for RetryOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RetryOn::ConnectFailure => f.write_str("connect-failure"),
            RetryOn::RefusedStream => f.write_str("refused-stream"),
            RetryOn::Reset => f.write_str("reset"),
            RetryOn::Status5xx => f.write_str("5xx"),
            RetryOn::GatewayError => f.write_str("gateway-error"),
            RetryOn::Status(s) => write!(f, "{s}"),
            RetryOn::Grpc(code) => {
                let name = Self::GRPC_NAMES
                    .iter()
                    .find(|(_, c)| c == code)
                    .map_or("grpc", |(n, _)| n);
                f.write_str(name)
            }
        }
    }
}

/// Accepts the string and number forms of a [`RetryOn`].
struct RetryOnVisitor;

impl<'de> Deserialize<'de> for RetryOn {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RetryOnVisitor)
    }
}

impl Visitor<'_> for RetryOnVisitor {
    type Value = RetryOn;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "connect-failure, refused-stream, reset, 5xx, gateway-error, a status code such as \
             503, or a gRPC status (cancelled, deadline-exceeded, resource-exhausted, internal, \
             unavailable)",
        )
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<RetryOn, E> {
        match u16::try_from(v) {
            Ok(s @ 100..=599) => Ok(RetryOn::Status(s)),
            _ => Err(E::custom(format!(
                "{v} is not an HTTP status code (100-599)"
            ))),
        }
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RetryOn, E> {
        self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<RetryOn, E> {
        Ok(match v {
            "connect-failure" => RetryOn::ConnectFailure,
            "refused-stream" => RetryOn::RefusedStream,
            "reset" => RetryOn::Reset,
            "5xx" => RetryOn::Status5xx,
            "gateway-error" => RetryOn::GatewayError,
            other => {
                if let Ok(n) = other.parse::<i64>() {
                    return self.visit_i64(n);
                }
                match RetryOn::GRPC_NAMES.iter().find(|(n, _)| *n == other) {
                    Some((_, code)) => RetryOn::Grpc(*code),
                    None => {
                        return Err(E::custom(format!(
                            "unknown retry condition `{other}`; expected {}",
                            ExpectedRetryOn
                        )));
                    }
                }
            }
        })
    }
}

/// The list of valid conditions, for error messages.
struct ExpectedRetryOn;

impl fmt::Display for ExpectedRetryOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        RetryOnVisitor.expecting(f)
    }
}

// === impl BackoffConfig ===

impl BackoffConfig {
    /// The cap of any wait: `max`, or 10 × base.
    pub fn max_wait(&self) -> std::time::Duration {
        self.max.map_or(self.base.get() * 10, |m| m.get())
    }
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            base: ConfigDuration(std::time::Duration::from_millis(25)),
            max: None,
        }
    }
}

// === impl RetryBudgetConfig ===

impl Default for RetryBudgetConfig {
    fn default() -> Self {
        Self {
            percent: 20,
            min_per_second: 10,
            window: ConfigDuration(std::time::Duration::from_secs(10)),
        }
    }
}

fn default_attempts() -> u32 {
    2
}

fn default_on() -> Vec<RetryOn> {
    vec![RetryOn::ConnectFailure, RetryOn::RefusedStream]
}

fn default_true() -> bool {
    true
}

fn default_replay_bytes() -> u64 {
    64 * 1024
}

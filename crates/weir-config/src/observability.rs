//! Observability settings at the top level: the access log and W3C trace context.
//!
//! `access_log:` says where one JSON line per HTTP request, L4 connection and UDP session goes and which
//! fields it carries; `tracing:` turns on trace context propagation (`traceparent`,
//! `tracestate`) with a sampling ratio for the traces weir starts, and `tracing.otlp:` exports
//! the spans of sampled requests to an OTLP/HTTP collector. The user-facing reference is
//! `docs/observability.md`; the rules are checked in `validate/observability.rs`.

use serde::{Deserialize, Serialize};

use crate::{ConfigDuration, ConfigNumber};

/// Default `access_log.queue_capacity`: records waiting for the writer before new ones are
/// dropped.
pub const DEFAULT_ACCESS_LOG_QUEUE: u32 = 8192;

/// `access_log:` at the top level.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogConfig {
    /// A file path (opened for appending, created if missing) or `stdout`.
    pub path: String,
    /// The fields of each line, in this order. Default: every field.
    #[serde(default = "AccessLogField::all")]
    pub fields: Vec<AccessLogField>,
    /// Records that may wait for the writer; beyond it new records are dropped and counted.
    /// Default 8192.
    #[serde(default = "default_queue")]
    pub queue_capacity: u32,
}

/// One field of an access log line; the JSON key is the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessLogField {
    /// When the request (or connection) started, RFC 3339 in UTC with microseconds.
    Time,
    /// `http`, `tcp` or `udp`.
    Kind,
    /// The listener's name.
    Listener,
    /// (HTTP) the index of the matched route in its listener's `routes`.
    Route,
    /// The cluster the request or connection went to.
    Cluster,
    /// The address of the endpoint that answered (or took the connection).
    Endpoint,
    /// (HTTP) the request method.
    Method,
    /// (HTTP) the request's authority (`:authority` or `Host`).
    Authority,
    /// (HTTP) the request path with its query string.
    Path,
    /// (HTTP) the status sent to the client.
    Status,
    /// Body bytes received from the client (HTTP: request body; L4: bytes from the client).
    BytesIn,
    /// Body bytes sent to the client (HTTP: response body; L4: bytes to the client).
    BytesOut,
    /// (UDP) datagrams received from the client.
    DatagramsIn,
    /// (UDP) datagrams sent to the client.
    DatagramsOut,
    /// Milliseconds from the request's start to the end of its response body (L4: the
    /// connection's lifetime).
    DurationMs,
    /// (HTTP) milliseconds from sending the answering attempt to its response headers.
    UpstreamDurationMs,
    /// (HTTP) attempts made minus one (retries and hedges).
    Retries,
    /// (HTTP) the W3C trace id, 32 hex digits.
    TraceId,
    /// The client's address (`ip:port`; from a trusted PROXY header on L4 when one was sent).
    Client,
    /// (L4) how the connection ended: `closed`, `downstream_reset`, `upstream_reset`, `idle`,
    /// `shutdown`, `forbidden_proxy_header`, `rate_limited` or the error that stopped it; (UDP)
    /// how the session ended: `idle`, `evicted`, `refused`, `failed` or `shutdown`.
    End,
}

/// `tracing:` at the top level: W3C trace context propagation, and optionally span export.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TracingConfig {
    /// Share of the traces weir starts that are marked sampled, 0.0–1.0. Incoming traces keep
    /// their own flag. Default 1.0 (OpenTelemetry's parent-based always-on).
    #[serde(default = "default_sampling")]
    pub sampling: ConfigNumber,
    /// Where the spans of sampled requests are exported (OTLP/HTTP); none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otlp: Option<OtlpConfig>,
}

/// `tracing.otlp:`: export of one span per sampled request over OTLP/HTTP (JSON encoding).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    /// The collector's traces URL, `http://host:port/v1/traces` or `https://…`.
    pub endpoint: String,
    /// A PEM bundle of the CAs an `https://` collector's certificate is verified against.
    /// Default: the system's trust store.
    #[serde(default)]
    pub ca: Option<String>,
    /// The `service.name` resource attribute. Default `weir`.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// Spans per export request at most. Default 512.
    #[serde(default = "default_batch_size")]
    pub batch_size: u32,
    /// How long a span may wait for a batch to fill before it is sent anyway. Default 1s.
    #[serde(default = "default_flush_interval")]
    pub flush_interval: ConfigDuration,
    /// Spans that may wait for the exporter; beyond it new spans are dropped and counted.
    /// Default 8192.
    #[serde(default = "default_queue")]
    pub queue_capacity: u32,
    /// The deadline of one export request. Default 5s.
    #[serde(default = "default_export_timeout")]
    pub timeout: ConfigDuration,
}

// === impl AccessLogConfig ===

impl AccessLogConfig {
    /// Whether lines go to standard output rather than a file.
    pub fn is_stdout(&self) -> bool {
        self.path == "stdout"
    }
}

// === impl AccessLogField ===

impl AccessLogField {
    /// Every field, in the default order.
    pub fn all() -> Vec<Self> {
        use AccessLogField::*;
        vec![
            Time,
            Kind,
            Listener,
            Route,
            Cluster,
            Endpoint,
            Method,
            Authority,
            Path,
            Status,
            BytesIn,
            BytesOut,
            DatagramsIn,
            DatagramsOut,
            DurationMs,
            UpstreamDurationMs,
            Retries,
            TraceId,
            Client,
            End,
        ]
    }

    /// The field's name in the config and its JSON key.
    pub fn name(self) -> &'static str {
        use AccessLogField::*;
        match self {
            Time => "time",
            Kind => "kind",
            Listener => "listener",
            Route => "route",
            Cluster => "cluster",
            Endpoint => "endpoint",
            Method => "method",
            Authority => "authority",
            Path => "path",
            Status => "status",
            BytesIn => "bytes_in",
            BytesOut => "bytes_out",
            DatagramsIn => "datagrams_in",
            DatagramsOut => "datagrams_out",
            DurationMs => "duration_ms",
            UpstreamDurationMs => "upstream_duration_ms",
            Retries => "retries",
            TraceId => "trace_id",
            Client => "client",
            End => "end",
        }
    }
}

impl Default for TracingConfig {
    fn default() -> Self {
        Self {
            sampling: default_sampling(),
            otlp: None,
        }
    }
}

fn default_queue() -> u32 {
    DEFAULT_ACCESS_LOG_QUEUE
}

fn default_sampling() -> ConfigNumber {
    ConfigNumber(1.0)
}

fn default_service_name() -> String {
    "weir".to_owned()
}

fn default_batch_size() -> u32 {
    512
}

fn default_flush_interval() -> ConfigDuration {
    ConfigDuration(std::time::Duration::from_secs(1))
}

fn default_export_timeout() -> ConfigDuration {
    ConfigDuration(std::time::Duration::from_secs(5))
}

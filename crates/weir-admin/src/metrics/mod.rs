//! `GET /metrics`: the data plane's counters in the Prometheus / OpenMetrics text format.
//!
//! Nothing here is updated on the request path. Each scrape builds a [`Collector`] over the
//! snapshot current at that moment and the listeners' counters, and reads the atomics the data
//! plane keeps anyway (endpoint state, circuit breakers, retry budget) plus the few kept only
//! for metrics (`weir_proxy::ClusterStats`, `weir_proxy::ListenerCounters`). Series therefore
//! follow reloads by themselves: a cluster or endpoint that remains keeps its counters, one that
//! was removed disappears.
//!
//! The body is what `prometheus-client` encodes (OpenMetrics 1.0) when the scraper asks for
//! `application/openmetrics-text` — as Prometheus does. Other clients (curl, `promtool check
//! metrics`) get the classic Prometheus text format 0.0.4, which differs only in naming a
//! counter family with its `_total` suffix and having no `# UNIT` and `# EOF` lines.
//! The metric reference is `docs/observability.md`.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, NoLabelSet, text,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use weir_config::ListenerProtocol;
use weir_core::{Endpoint, EndpointError, Unhealthy};
use weir_proxy::{
    AffinityEvent, Cluster, ListenerCounters, STATUS_CLASSES, Snapshot, UpstreamFailure,
};

use crate::AdminState;
use crate::routes::AdminBody;

mod routes;

/// The content type of an OpenMetrics answer.
pub(crate) const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of a Prometheus text answer.
pub(crate) const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The label set of one series: label names with their values.
type Labels = Vec<(&'static str, String)>;

/// Reads one snapshot and the listener counters at scrape time.
#[derive(Debug)]
struct SnapshotCollector {
    snapshot: Arc<Snapshot>,
    /// Listener name, counters, and whether the listener counts bytes (HTTP, TCP, TLS
    /// passthrough: the listeners whose connections weir reads and writes).
    listeners: Vec<(String, Arc<ListenerCounters>, bool)>,
    per_endpoint: bool,
    /// Config reloads applied and rejected, when weir runs from a file.
    reloads: Option<(u64, u64)>,
    /// Families from outside the proxy (the kernel data plane).
    extra: Vec<crate::CounterFamily>,
    /// Endpoint records service discovery skipped as unparsable, when discovery is wired.
    discovery_bad_values: Option<u64>,
    /// Access log records dropped, when there is an access log.
    access_log_dropped: Option<u64>,
    /// Span export counters, while spans are exported or once some were counted.
    spans: Option<SpanCounts>,
}

/// The span export counters at scrape time.
#[derive(Debug)]
struct SpanCounts {
    exported: u64,
    dropped: u64,
    failed_spans: u64,
    failed_exports: u64,
}

/// Answers `GET /metrics`: OpenMetrics when `accept` asks for it, else Prometheus text.
pub(crate) fn respond(state: &AdminState, accept: &HeaderMap) -> Response<AdminBody> {
    let openmetrics = accept
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let body = match render(state, openmetrics) {
        Ok(body) => body,
        Err(fmt::Error) => {
            tracing::error!("metrics failed to encode");
            let mut res = Response::new(Full::new(Bytes::from_static(
                b"{\"error\":\"internal error\"}\n",
            )));
            *res.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            return res;
        }
    };
    let mut res = Response::new(Full::new(Bytes::from(body)));
    let headers = res.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(if openmetrics {
            OPENMETRICS
        } else {
            PROMETHEUS_TEXT
        }),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// The exposition of the current snapshot: OpenMetrics, or Prometheus text.
pub(crate) fn render(state: &AdminState, openmetrics: bool) -> Result<String, fmt::Error> {
    let listeners = state.listeners();
    let stream: Vec<&str> = listeners
        .iter()
        .filter(|l| {
            matches!(
                l.protocol,
                ListenerProtocol::Http | ListenerProtocol::Tcp | ListenerProtocol::TlsPassthrough
            )
        })
        .map(|l| l.name.as_str())
        .collect();
    let collector = SnapshotCollector {
        snapshot: state.snapshots().load(),
        listeners: state
            .listener_counters()
            .iter()
            .map(|(name, c)| (name.clone(), Arc::clone(c), stream.contains(&name.as_str())))
            .collect(),
        per_endpoint: state.per_endpoint_metrics(),
        reloads: state.reloader().map(|r| r.counts()),
        extra: state
            .extra_metrics()
            .map(|x| x.counter_families())
            .unwrap_or_default(),
        discovery_bad_values: state.discovery_bad_values(),
        access_log_dropped: state.access_log().map(|l| l.dropped()),
        spans: state.span_export().and_then(|s| {
            let c = s.counters();
            let counts = SpanCounts {
                exported: c.exported(),
                dropped: c.dropped(),
                failed_spans: c.failed_spans(),
                failed_exports: c.failed_exports(),
            };
            let any = counts.exported + counts.dropped + counts.failed_spans > 0;
            (s.is_enabled() || any).then_some(counts)
        }),
    };
    let mut registry = Registry::default();
    registry.register_collector(Box::new(collector));
    let mut out = String::new();
    text::encode(&mut out, &registry)?;
    Ok(if openmetrics {
        out
    } else {
        to_prometheus_text(&out)
    })
}

/// Turns OpenMetrics text into the Prometheus 0.0.4 text format: counter families are named
/// with their `_total` suffix in `# HELP` and `# TYPE`, and `# UNIT` and `# EOF` are dropped.
fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: Vec<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + 16 * counters.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let comment = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| Some((p, line.strip_prefix(p)?)));
        if let Some((prefix, rest)) = comment {
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            if counters.contains(&name) {
                out.push_str(prefix);
                out.push_str(name);
                out.push_str("_total ");
                out.push_str(tail);
                out.push('\n');
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

// === impl SnapshotCollector ===

impl Collector for SnapshotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        self.encode_listeners(&mut encoder)?;
        self.encode_clusters(&mut encoder)?;
        self.encode_routes(&mut encoder)?;
        if let Some((applied, rejected)) = self.reloads {
            counters(
                &mut encoder,
                "weir_config_reloads",
                "Config reloads (SIGHUP, POST /reload, file watch), by result.",
                None,
                [
                    (vec![("result", "applied".to_owned())], applied),
                    (vec![("result", "rejected".to_owned())], rejected),
                ]
                .into_iter(),
            )?;
        }
        if let Some(bad) = self.discovery_bad_values {
            counters(
                &mut encoder,
                "weir_discovery_bad_values",
                "Endpoint records service discovery skipped because they did not parse, by source.",
                None,
                std::iter::once((vec![("source", "etcd".to_owned())], bad)),
            )?;
        }
        self.encode_exports(&mut encoder)?;
        self.encode_tls(&mut encoder)?;
        if self.per_endpoint {
            self.encode_endpoints(&mut encoder)?;
        }
        for f in &self.extra {
            let unit = f.bytes.then_some(&Unit::Bytes);
            counters(
                &mut encoder,
                f.name,
                f.help,
                unit,
                f.samples.iter().cloned(),
            )?;
        }
        Ok(())
    }
}

impl SnapshotCollector {
    /// The access log's and the span exporter's counters: what they could not deliver.
    fn encode_exports(&self, e: &mut DescriptorEncoder<'_>) -> fmt::Result {
        counter(
            e,
            "weir_access_log_dropped",
            "Access log records dropped because the writer fell behind (the queue was full).",
            self.access_log_dropped,
        )?;
        let spans = self.spans.as_ref();
        counter(
            e,
            "weir_otlp_spans_exported",
            "Spans the OTLP collector accepted.",
            spans.map(|s| s.exported),
        )?;
        counter(
            e,
            "weir_otlp_spans_dropped",
            "Spans dropped because the export queue was full.",
            spans.map(|s| s.dropped),
        )?;
        counter(
            e,
            "weir_otlp_spans_failed",
            "Spans lost in failed export requests.",
            spans.map(|s| s.failed_spans),
        )?;
        counter(
            e,
            "weir_otlp_export_failures",
            "OTLP export requests that failed (connect error, timeout, non-2xx answer).",
            spans.map(|s| s.failed_exports),
        )
    }

    /// Certificate, key and CA files that changed on disk but did not load.
    fn encode_tls(&self, e: &mut DescriptorEncoder<'_>) -> fmt::Result {
        let failures = self.snapshot.tls_reload_failures();
        let of = |listener: bool, label: &'static str| {
            failures
                .iter()
                .filter(move |f| f.listener == listener)
                .map(move |f| (vec![(label, f.name.to_string())], f.failures))
        };
        counters(
            e,
            "weir_tls_certificate_reload_failures",
            "Rotations of a TLS listener's certificate, key or client CA files that did not load (the previous ones keep serving).",
            None,
            of(true, "listener"),
        )?;
        counters(
            e,
            "weir_tls_upstream_reload_failures",
            "Rotations of a TLS cluster's CA or client certificate files that did not load (the previous ones stay in use).",
            None,
            of(false, "cluster"),
        )
    }

    fn encode_listeners(&self, e: &mut DescriptorEncoder<'_>) -> fmt::Result {
        let all = || self.listeners.iter();
        let stream = || self.listeners.iter().filter(|l| l.2);
        let by = |name: &String| vec![("listener", name.clone())];
        counters(
            e,
            "weir_listener_connections_accepted",
            "Connections accepted by a listener (UDP: client sessions opened).",
            None,
            all().map(|(n, c, _)| (by(n), c.accepted())),
        )?;
        gauges(
            e,
            "weir_listener_active_connections",
            "Connections (UDP: client sessions) of a listener open now.",
            None,
            all().map(|(n, c, _)| (by(n), c.active())),
        )?;
        counters(
            e,
            "weir_listener_received",
            "Bytes received from clients (HTTP: after TLS decryption), counted as they are read.",
            Some(&Unit::Bytes),
            stream().map(|(n, c, _)| (by(n), c.received_bytes())),
        )?;
        counters(
            e,
            "weir_listener_sent",
            "Bytes sent to clients (HTTP: before TLS encryption), counted as they are written.",
            Some(&Unit::Bytes),
            stream().map(|(n, c, _)| (by(n), c.sent_bytes())),
        )
    }

    fn encode_clusters(&self, e: &mut DescriptorEncoder<'_>) -> fmt::Result {
        let clusters = self.snapshot.clusters();
        let all = || clusters.iter();
        let by = |c: &Cluster| vec![("cluster", c.name.to_string())];
        let with = |c: &Cluster, key: &'static str, value: &str| {
            vec![("cluster", c.name.to_string()), (key, value.to_owned())]
        };
        counters(
            e,
            "weir_upstream_requests",
            "Upstream HTTP attempts (retries and hedges included) that got a response, by status class.",
            None,
            all().flat_map(|c| {
                STATUS_CLASSES.iter().enumerate().map(move |(i, class)| {
                    (with(c, "class", class), c.upstream_stats().responses(i))
                })
            }),
        )?;
        counters(
            e,
            "weir_upstream_errors",
            "Upstream HTTP attempts that ended without a response, by reason.",
            None,
            all().flat_map(|c| {
                UpstreamFailure::ALL.into_iter().map(move |r| {
                    (
                        with(c, "reason", r.as_str()),
                        c.upstream_stats().failures(r),
                    )
                })
            }),
        )?;
        let mut m = e.encode_descriptor(
            "weir_upstream_request_duration",
            "Time from sending an upstream HTTP attempt to its response headers (or its failure).",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for c in all() {
            let h = c.upstream_stats().latency();
            let labels = by(c);
            m.encode_family(&labels)?.encode_histogram::<NoLabelSet>(
                h.sum_seconds,
                h.count,
                &h.buckets,
                None,
            )?;
        }
        counters(
            e,
            "weir_cluster_retries",
            "Retries and hedges sent.",
            None,
            all().map(|c| (by(c), c.retry_stats().retries)),
        )?;
        counters(
            e,
            "weir_cluster_retries_budget_exhausted",
            "Retries not sent because the cluster's retry budget was spent.",
            None,
            all().map(|c| (by(c), c.retry_stats().budget_exhausted)),
        )?;
        counters(
            e,
            "weir_cluster_retry_overflows",
            "Retries not sent because max_retries were already in progress.",
            None,
            all().map(|c| (by(c), c.retry_stats().overflowed)),
        )?;
        counters(
            e,
            "weir_cluster_circuit_breaker_overflows",
            "Requests, connections or retries a circuit breaker refused, by limit.",
            None,
            all().flat_map(|c| {
                let s = c.breaker_stats();
                [
                    ("max_connections", s.connection_overflows),
                    ("max_pending_requests", s.pending_overflows),
                    ("max_requests", s.request_overflows),
                    ("max_retries", s.retry_overflows),
                ]
                .into_iter()
                .map(move |(limit, n)| (with(c, "limit", limit), n))
            }),
        )?;
        gauges(
            e,
            "weir_cluster_active_requests",
            "Requests (and L4 connections) in progress, as max_requests counts them.",
            None,
            all().map(|c| (by(c), c.breaker_stats().requests)),
        )?;
        gauges(
            e,
            "weir_cluster_pending_requests",
            "Requests waiting for an upstream connection now.",
            None,
            all().map(|c| (by(c), c.breaker_stats().pending)),
        )?;
        gauges(
            e,
            "weir_cluster_upstream_connections",
            "Upstream connections open now.",
            None,
            all().map(|c| (by(c), c.breaker_stats().connections)),
        )?;
        for (event, help) in [
            (
                AffinityEvent::Hit,
                "Requests session affinity sent to their session's endpoint.",
            ),
            (
                AffinityEvent::New,
                "Affinity sessions begun (cookies issued, hashed keys without a live session).",
            ),
            (
                AffinityEvent::Moved,
                "Affinity sessions moved to another endpoint (theirs was gone, down, past its drain deadline, or failed).",
            ),
            (
                AffinityEvent::Evicted,
                "Live hashed affinity sessions forgotten to make room for new keys (max_sessions).",
            ),
            (
                AffinityEvent::Invalid,
                "Affinity cookies ignored because they were forged, damaged or expired.",
            ),
        ] {
            counters(
                e,
                &format!("weir_cluster_affinity_{}", event.as_str()),
                help,
                None,
                all().map(|c| (by(c), c.upstream_stats().affinity(event))),
            )?;
        }
        gauges(
            e,
            "weir_cluster_affinity_sessions",
            "Live hashed affinity sessions (header, client_address) the cluster remembers.",
            None,
            all().filter_map(|c| Some((by(c), c.affinity_sessions()?))),
        )?;
        counters(
            e,
            "weir_cluster_panic_picks",
            "Picks that went to an unhealthy endpoint because too few were healthy (panic mode).",
            None,
            all().map(|c| (by(c), c.panic_picks())),
        )?;
        gauges(
            e,
            "weir_cluster_endpoints",
            "Endpoints configured.",
            None,
            all().map(|c| (by(c), c.endpoints.len())),
        )?;
        gauges(
            e,
            "weir_cluster_healthy_endpoints",
            "Endpoints with no unhealthy reason.",
            None,
            all().map(|c| (by(c), count(c, |ep| ep.state.is_healthy()))),
        )?;
        gauges(
            e,
            "weir_cluster_ejected_endpoints",
            "Endpoints outlier detection holds out now.",
            None,
            all().map(|c| {
                let ejected = count(c, |ep| ep.state.health().contains(Unhealthy::Ejected));
                (by(c), ejected)
            }),
        )
    }

    fn encode_endpoints(&self, e: &mut DescriptorEncoder<'_>) -> fmt::Result {
        let clusters = self.snapshot.clusters();
        let all = || {
            clusters
                .iter()
                .flat_map(|c| c.endpoints.iter().map(move |ep| (c, ep)))
        };
        let by = |c: &Cluster, ep: &Endpoint| {
            vec![
                ("cluster", c.name.to_string()),
                ("endpoint", ep.address.to_string()),
            ]
        };
        counters(
            e,
            "weir_endpoint_requests",
            "Requests (and L4 connections) ever started against the endpoint.",
            None,
            all().map(|(c, ep)| (by(c, ep), ep.state.requests_total())),
        )?;
        gauges(
            e,
            "weir_endpoint_in_flight_requests",
            "Requests (and L4 connections) using the endpoint now.",
            None,
            all().map(|(c, ep)| (by(c, ep), ep.state.in_flight())),
        )?;
        counters(
            e,
            "weir_endpoint_connect_failures",
            "Connection attempts to the endpoint that failed.",
            None,
            all().map(|(c, ep)| (by(c, ep), ep.state.connect_failures())),
        )?;
        counters(
            e,
            "weir_endpoint_errors",
            "Exchanges with the endpoint that failed, by reason: 5xx answers, resets, timeouts, connect failures and timeouts.",
            None,
            all().flat_map(|(c, ep)| {
                EndpointError::ALL.into_iter().map(move |reason| {
                    let mut labels = by(c, ep);
                    labels.push(("reason", reason.as_str().to_owned()));
                    (labels, ep.state.errors.get(reason))
                })
            }),
        )?;
        gauges(
            e,
            "weir_endpoint_latency_ewma",
            "Moving average of the endpoint's response latency over about 10 s (HTTP: to response headers; L4: connect); absent until one was observed.",
            Some(&Unit::Seconds),
            all().filter_map(|(c, ep)| Some((by(c, ep), ep.state.response_latency.seconds()?))),
        )?;
        gauges(
            e,
            "weir_endpoint_healthy",
            "1 when the endpoint may take traffic (no unhealthy reason holds), else 0.",
            None,
            all().map(|(c, ep)| (by(c, ep), u64::from(ep.state.is_healthy()))),
        )?;
        gauges(
            e,
            "weir_endpoint_unhealthy",
            "1 while the reason holds for the endpoint, else 0.",
            None,
            all().flat_map(|(c, ep)| {
                let flags = ep.state.health();
                Unhealthy::ALL.into_iter().map(move |reason| {
                    let mut labels = by(c, ep);
                    labels.push(("reason", reason.as_str().to_owned()));
                    (labels, u64::from(flags.contains(reason)))
                })
            }),
        )?;
        counters(
            e,
            "weir_endpoint_ejections",
            "Times outlier detection ejected the endpoint.",
            None,
            all().map(|(c, ep)| (by(c, ep), ep.state.passive.ejections_total())),
        )
    }
}

/// Endpoints of `cluster` for which `f` holds.
fn count(cluster: &Cluster, f: impl Fn(&Endpoint) -> bool) -> u64 {
    cluster.endpoints.iter().filter(|ep| f(ep)).count() as u64
}

/// Encodes a counter family from `series`; nothing when it is empty.
fn counters(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    series: impl Iterator<Item = (Labels, u64)>,
) -> fmt::Result {
    family(e, name, help, unit, MetricType::Counter, series, |m, v| {
        m.encode_counter::<NoLabelSet, _, u64>(v, None)
    })
}

/// Encodes one counter without labels; nothing when `value` is `None`.
fn counter(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: Option<u64>,
) -> fmt::Result {
    let Some(value) = value else {
        return Ok(());
    };
    e.encode_descriptor(name, help, None, MetricType::Counter)?
        .encode_counter::<NoLabelSet, _, u64>(&value, None)
}

/// Encodes a gauge family from `series`; nothing when it is empty.
fn gauges<V: EncodeGaugeValue>(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    series: impl Iterator<Item = (Labels, V)>,
) -> fmt::Result {
    family(e, name, help, unit, MetricType::Gauge, series, |m, v| {
        m.encode_gauge(v)
    })
}

/// Encodes one family: its descriptor, then one sample per labelled value.
fn family<L: EncodeLabelSet, V>(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    kind: MetricType,
    series: impl Iterator<Item = (L, V)>,
    mut sample: impl FnMut(&mut prometheus_client::encoding::MetricEncoder<'_>, &V) -> fmt::Result,
) -> fmt::Result {
    let mut series = series.peekable();
    if series.peek().is_none() {
        return Ok(());
    }
    let mut m = e.encode_descriptor(name, help, unit, kind)?;
    for (labels, value) in series {
        sample(&mut m.encode_family(&labels)?, &value)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_names_counters_with_their_suffix() {
        let om = "\
# HELP weir_cluster_retries Retries and hedges sent.
# TYPE weir_cluster_retries counter
weir_cluster_retries_total{cluster=\"a\"} 3
# HELP weir_upstream_request_duration_seconds Time.
# TYPE weir_upstream_request_duration_seconds histogram
# UNIT weir_upstream_request_duration_seconds seconds
weir_upstream_request_duration_seconds_count 0
# HELP weir_cluster_endpoints Endpoints configured.
# TYPE weir_cluster_endpoints gauge
weir_cluster_endpoints{cluster=\"a\"} 2
# EOF
";
        assert_eq!(
            to_prometheus_text(om),
            "\
# HELP weir_cluster_retries_total Retries and hedges sent.
# TYPE weir_cluster_retries_total counter
weir_cluster_retries_total{cluster=\"a\"} 3
# HELP weir_upstream_request_duration_seconds Time.
# TYPE weir_upstream_request_duration_seconds histogram
weir_upstream_request_duration_seconds_count 0
# HELP weir_cluster_endpoints Endpoints configured.
# TYPE weir_cluster_endpoints gauge
weir_cluster_endpoints{cluster=\"a\"} 2
"
        );
    }
}

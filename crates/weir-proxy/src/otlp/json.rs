//! The OTLP JSON encoding of a batch (an `ExportTraceServiceRequest`), per the OTLP
//! specification's JSON mapping: ids as lowercase hex strings, 64-bit integers (times, integer
//! attributes) as decimal strings, enums as numbers, field names in lowerCamelCase.
//!
//! Each request becomes one server span (`kind` 2) named `HTTP <method>` with the attributes
//! `http.request.method`, `url.path`, `http.response.status_code` (when a response was sent),
//! `server.address` (the request's authority), `client.address`, `weir.listener`, `weir.route`
//! (the route's index), `weir.cluster`, `weir.endpoint` (the endpoint that answered) and
//! `weir.attempts`. A 5xx answer, or none, sets the span status to error.
//!
//! The matched route becomes an internal span (`kind` 1), child of the server span, named
//! `route <listener>/<index>`, with `weir.listener`, `weir.route`, `weir.cluster`,
//! `weir.lb_policy` (the balancing policy that picked the endpoints) and `weir.retries`; no
//! answer or a 5xx one sets its status to error.
//!
//! Each upstream attempt becomes a client span (`kind` 3), child of the route span, named
//! `upstream <cluster>`, with the OpenTelemetry HTTP client attributes `http.request.method`,
//! `server.address` / `server.port` (the authority sent upstream), `network.peer.address` /
//! `network.peer.port` (the endpoint), `http.response.status_code` or `error.type`, and
//! `http.request.resend_count` for a retry or hedge, plus `weir.cluster`, `weir.endpoint`,
//! `weir.attempt` and `weir.hedge`. A 4xx or 5xx answer, an error or a cancelled attempt sets
//! the span status to error (the client span convention).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::client::{AttemptOutcome, ClientSpan};
use super::{RouteSpan, SpanRecord};

/// OTLP `SPAN_KIND_INTERNAL`.
const KIND_INTERNAL: u8 = 1;
/// OTLP `SPAN_KIND_SERVER`.
const KIND_SERVER: u8 = 2;
/// OTLP `SPAN_KIND_CLIENT`.
const KIND_CLIENT: u8 = 3;
/// OTLP `STATUS_CODE_ERROR`.
const STATUS_ERROR: u8 = 2;

/// Encodes batches; knows the resource.
#[derive(Debug)]
pub(super) struct Encoder {
    service_name: String,
}

impl Encoder {
    /// An encoder for spans of service `service_name`.
    pub(super) fn new(service_name: String) -> Self {
        Self { service_name }
    }

    /// The request body of one export.
    pub(super) fn encode(&self, batch: &[SpanRecord]) -> Vec<u8> {
        let spans: Vec<Value> = batch.iter().map(|s| self.span(s)).collect();
        let request = json!({
            "resourceSpans": [{
                "resource": { "attributes": [string("service.name", &self.service_name)] },
                "scopeSpans": [{
                    "scope": { "name": "weir", "version": env!("CARGO_PKG_VERSION") },
                    "spans": spans,
                }],
            }],
        });
        serde_json::to_vec(&request).unwrap_or_default()
    }

    fn span(&self, s: &SpanRecord) -> Value {
        match s {
            SpanRecord::Server { ids, http } => self.server_span(ids, http),
            SpanRecord::Route(r) => route_span(r),
            SpanRecord::Client(c) => client_span(c),
        }
    }

    fn server_span(&self, ids: &super::SpanIds, h: &crate::access_log::HttpRecord) -> Value {
        let start = nanos(h.time);
        let end = start.saturating_add(u64::try_from(h.duration.as_nanos()).unwrap_or(u64::MAX));
        let mut attributes = vec![
            string("http.request.method", h.method.as_str()),
            string("url.path", h.uri.path()),
            string("client.address", &h.client.ip().to_string()),
            int("weir.attempts", u64::from(h.attempts)),
        ];
        if h.status != 0 {
            attributes.push(int("http.response.status_code", u64::from(h.status)));
        }
        let authority = h
            .uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .or_else(|| {
                h.host
                    .as_ref()
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            });
        if let Some(authority) = authority {
            attributes.push(string("server.address", &authority));
        }
        attributes.push(string("weir.listener", &h.listener));
        if let Some(route) = h.route {
            attributes.push(int("weir.route", route as u64));
        }
        if let Some(cluster) = &h.cluster {
            attributes.push(string("weir.cluster", cluster));
        }
        if let Some(endpoint) = h.endpoint {
            attributes.push(string("weir.endpoint", &endpoint.to_string()));
        }
        let mut span = json!({
            "traceId": hex(&ids.trace_id),
            "spanId": hex(&ids.span_id),
            "name": format!("HTTP {}", h.method),
            "kind": KIND_SERVER,
            "startTimeUnixNano": start.to_string(),
            "endTimeUnixNano": end.to_string(),
            "attributes": attributes,
            // W3C flags: sampled.
            "flags": 1,
        });
        if let Some(parent) = ids.parent_id {
            span["parentSpanId"] = Value::String(hex(&parent));
        }
        if h.status == 0 || h.status >= 500 {
            span["status"] = json!({ "code": STATUS_ERROR });
        }
        span
    }
}

/// The internal span of a request's matched route.
fn route_span(r: &RouteSpan) -> Value {
    let start = nanos(r.start);
    let end = start.saturating_add(u64::try_from(r.duration.as_nanos()).unwrap_or(u64::MAX));
    let mut attributes = vec![
        string("weir.listener", &r.listener),
        int("weir.route", r.route as u64),
        int("weir.retries", u64::from(r.retries)),
    ];
    if let Some(cluster) = &r.cluster {
        attributes.push(string("weir.cluster", cluster));
    }
    if let Some(policy) = r.lb_policy {
        attributes.push(string("weir.lb_policy", policy));
    }
    let mut span = json!({
        "traceId": hex(&r.trace_id),
        "spanId": hex(&r.span_id),
        "parentSpanId": hex(&r.parent_id),
        "name": format!("route {}/{}", r.listener, r.route),
        "kind": KIND_INTERNAL,
        "startTimeUnixNano": start.to_string(),
        "endTimeUnixNano": end.to_string(),
        "attributes": attributes,
        "flags": 1,
    });
    if r.status == 0 || r.status >= 500 {
        span["status"] = json!({ "code": STATUS_ERROR });
    }
    span
}

/// The client span of one upstream attempt.
fn client_span(c: &ClientSpan) -> Value {
    let start = nanos(c.start);
    let end = start.saturating_add(u64::try_from(c.duration.as_nanos()).unwrap_or(u64::MAX));
    let (host, port) = match &c.authority {
        Some(a) => split_authority(a),
        None => (c.endpoint.ip().to_string(), Some(c.endpoint.port())),
    };
    let mut attributes = vec![
        string("http.request.method", c.method.as_str()),
        string("server.address", &host),
        string("network.peer.address", &c.endpoint.ip().to_string()),
        int("network.peer.port", u64::from(c.endpoint.port())),
        string("weir.cluster", &c.cluster),
        string("weir.endpoint", &c.endpoint.to_string()),
        int("weir.attempt", u64::from(c.attempt)),
    ];
    if let Some(port) = port {
        attributes.push(int("server.port", u64::from(port)));
    }
    if c.attempt > 1 {
        attributes.push(int("http.request.resend_count", u64::from(c.attempt - 1)));
    }
    if c.hedge {
        attributes.push(json!({ "key": "weir.hedge", "value": { "boolValue": true } }));
    }
    let error = match c.outcome {
        AttemptOutcome::Status(status) => {
            attributes.push(int("http.response.status_code", u64::from(status)));
            (status >= 400).then(|| status.to_string())
        }
        AttemptOutcome::Error(kind) => Some(format!("{kind:?}")),
        AttemptOutcome::Cancelled => Some("cancelled".to_owned()),
    };
    let mut span = json!({
        "traceId": hex(&c.trace_id),
        "spanId": hex(&c.span_id),
        "parentSpanId": hex(&c.parent_id),
        "name": format!("upstream {}", c.cluster),
        "kind": KIND_CLIENT,
        "startTimeUnixNano": start.to_string(),
        "endTimeUnixNano": end.to_string(),
        "flags": 1,
    });
    if let Some(error) = error {
        attributes.push(string("error.type", &error));
        span["status"] = json!({ "code": STATUS_ERROR });
    }
    span["attributes"] = Value::Array(attributes);
    span
}

/// `host[:port]` as host and port (an IPv6 literal loses its brackets).
fn split_authority(authority: &str) -> (String, Option<u16>) {
    match authority.parse::<http::uri::Authority>() {
        Ok(a) => (a.host().trim_matches(['[', ']']).to_owned(), a.port_u16()),
        Err(_) => (authority.to_owned(), None),
    }
}

/// A string attribute.
fn string(key: &str, value: &str) -> Value {
    json!({ "key": key, "value": { "stringValue": value } })
}

/// An integer attribute (int64, a decimal string in JSON).
fn int(key: &str, value: u64) -> Value {
    json!({ "key": key, "value": { "intValue": value.to_string() } })
}

/// Nanoseconds since the Unix epoch.
fn nanos(t: SystemTime) -> u64 {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
}

/// Lowercase hex.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::access_log::HttpRecord;
    use crate::otlp::SpanIds;

    #[test]
    fn a_span_has_the_otlp_json_shape() {
        let time = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let record = SpanRecord::Server {
            ids: SpanIds {
                trace_id: [0x4b; 16],
                span_id: [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08],
                parent_id: Some([0xab; 8]),
                sampled: true,
            },
            http: HttpRecord {
                time,
                listener: "main".into(),
                route: Some(1),
                cluster: Some(Arc::from("c")),
                endpoint: Some("127.0.0.1:9000".parse().unwrap()),
                method: http::Method::GET,
                uri: "/a/b?x=1".parse().unwrap(),
                host: Some(http::HeaderValue::from_static("example.com")),
                status: 503,
                bytes_in: 0,
                bytes_out: 0,
                duration: Duration::from_millis(2),
                upstream_duration: None,
                attempts: 2,
                trace_id: Some([0x4b; 16]),
                client: "10.0.0.1:5555".parse().unwrap(),
            },
        };
        let encoder = Encoder::new("edge".into());
        let v: Value = serde_json::from_slice(&encoder.encode(&[record])).unwrap();
        let rs = &v["resourceSpans"][0];
        assert_eq!(
            rs["resource"]["attributes"][0]["value"]["stringValue"],
            "edge"
        );
        let span = &rs["scopeSpans"][0]["spans"][0];
        assert_eq!(span["traceId"], "4b".repeat(16));
        assert_eq!(span["spanId"], "0102030405060708");
        assert_eq!(span["parentSpanId"], "ab".repeat(8));
        assert_eq!(span["name"], "HTTP GET");
        assert_eq!(span["kind"], 2);
        assert_eq!(span["startTimeUnixNano"], "1700000000000000000");
        assert_eq!(span["endTimeUnixNano"], "1700000000002000000");
        assert_eq!(span["status"]["code"], 2);
        let attr = |key: &str| {
            span["attributes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["key"] == key)
                .map(|a| a["value"].clone())
                .unwrap()
        };
        assert_eq!(attr("url.path")["stringValue"], "/a/b");
        assert_eq!(attr("http.response.status_code")["intValue"], "503");
        assert_eq!(attr("server.address")["stringValue"], "example.com");
        assert_eq!(attr("weir.listener")["stringValue"], "main");
        assert_eq!(attr("weir.route")["intValue"], "1");
        assert_eq!(attr("weir.cluster")["stringValue"], "c");
        assert_eq!(attr("weir.endpoint")["stringValue"], "127.0.0.1:9000");
        assert_eq!(attr("weir.attempts")["intValue"], "2");
    }

    #[test]
    fn a_route_is_an_internal_span_under_the_server_span() {
        let record = SpanRecord::Route(RouteSpan {
            trace_id: [0x4b; 16],
            span_id: [0x33; 8],
            parent_id: [0x01; 8],
            start: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            duration: Duration::from_millis(5),
            listener: Arc::from("front"),
            route: 2,
            cluster: Some(Arc::from("api")),
            lb_policy: Some("maglev"),
            retries: 1,
            status: 200,
        });
        let encoder = Encoder::new("edge".into());
        let v: Value = serde_json::from_slice(&encoder.encode(&[record])).unwrap();
        let s = &v["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(s["kind"], 1);
        assert_eq!(s["name"], "route front/2");
        assert_eq!(s["spanId"], "33".repeat(8));
        assert_eq!(s["parentSpanId"], "01".repeat(8));
        assert_eq!(s["endTimeUnixNano"], "1700000000005000000");
        assert!(s.get("status").is_none());
        assert_eq!(attr(s, "weir.route")["intValue"], "2");
        assert_eq!(attr(s, "weir.cluster")["stringValue"], "api");
        assert_eq!(attr(s, "weir.lb_policy")["stringValue"], "maglev");
        assert_eq!(attr(s, "weir.retries")["intValue"], "1");
    }

    fn client(outcome: AttemptOutcome, attempt: u32, authority: Option<&str>) -> Value {
        let record = SpanRecord::Client(ClientSpan {
            trace_id: [0x4b; 16],
            span_id: [0x11; 8],
            parent_id: [0x22; 8],
            start: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            duration: Duration::from_millis(3),
            cluster: Arc::from("api"),
            endpoint: "[::1]:9000".parse().unwrap(),
            attempt,
            hedge: attempt == 2,
            method: http::Method::POST,
            authority: authority.map(str::to_owned),
            outcome,
        });
        let encoder = Encoder::new("edge".into());
        let v: Value = serde_json::from_slice(&encoder.encode(&[record])).unwrap();
        v["resourceSpans"][0]["scopeSpans"][0]["spans"][0].clone()
    }

    fn attr(span: &Value, key: &str) -> Value {
        span["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["key"] == key)
            .map_or(Value::Null, |a| a["value"].clone())
    }

    #[test]
    fn an_attempt_is_a_client_span_with_http_client_attributes() {
        let s = client(AttemptOutcome::Status(200), 1, Some("api.example.com:8443"));
        assert_eq!(s["kind"], 3);
        assert_eq!(s["name"], "upstream api");
        assert_eq!(s["spanId"], "11".repeat(8));
        assert_eq!(s["parentSpanId"], "22".repeat(8));
        assert_eq!(s["endTimeUnixNano"], "1700000000003000000");
        assert!(s.get("status").is_none());
        assert_eq!(attr(&s, "http.request.method")["stringValue"], "POST");
        assert_eq!(attr(&s, "server.address")["stringValue"], "api.example.com");
        assert_eq!(attr(&s, "server.port")["intValue"], "8443");
        assert_eq!(attr(&s, "network.peer.address")["stringValue"], "::1");
        assert_eq!(attr(&s, "network.peer.port")["intValue"], "9000");
        assert_eq!(attr(&s, "weir.endpoint")["stringValue"], "[::1]:9000");
        assert_eq!(attr(&s, "weir.attempt")["intValue"], "1");
        assert_eq!(attr(&s, "http.response.status_code")["intValue"], "200");
        assert_eq!(attr(&s, "http.request.resend_count"), Value::Null);
        assert_eq!(attr(&s, "error.type"), Value::Null);

        // A hedge that lost the race; no authority: the endpoint is the server.
        let s = client(AttemptOutcome::Cancelled, 2, None);
        assert_eq!(s["status"]["code"], 2);
        assert_eq!(attr(&s, "error.type")["stringValue"], "cancelled");
        assert_eq!(attr(&s, "weir.hedge")["boolValue"], true);
        assert_eq!(attr(&s, "http.request.resend_count")["intValue"], "1");
        assert_eq!(attr(&s, "server.address")["stringValue"], "::1");
        let s = client(
            AttemptOutcome::Error(weir_core::ErrorKind::ConnectFailed),
            3,
            None,
        );
        assert_eq!(attr(&s, "error.type")["stringValue"], "ConnectFailed");
        assert_eq!(attr(&s, "http.response.status_code"), Value::Null);
        let s = client(AttemptOutcome::Status(404), 1, None);
        assert_eq!(attr(&s, "error.type")["stringValue"], "404");
    }
}

//! OTLP span export (issue #9): an in-process collector (a hyper server decoding the OTLP JSON
//! body) receives, per sampled request, a server span, an internal route span under it and one
//! client span per upstream attempt under that, with the ids weir propagated (the endpoint's
//! `/headers` shows the `traceparent` it got: its parent is the attempt's span) and the
//! request's attributes. A client span lasts until its response body ends. Sampling 0 exports
//! nothing; a collector that is down costs no request, only counted failures. A reload that
//! changes the collector takes effect; a rejected one leaves export as it was.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "end-to-end test: a panic is a failed test"
)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use weir_e2e::{TestProxy, get, h1_client};
use weir_test_support::{MockHttp, MockTcp, TestCa, wait_until};

const INCOMING: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

/// A minimal OTLP/HTTP JSON collector: keeps every span it receives.
struct Collector {
    addr: SocketAddr,
    spans: Arc<Mutex<Vec<Value>>>,
    content_types: Arc<Mutex<Vec<String>>>,
}

impl Collector {
    async fn start() -> Self {
        Self::start_with(None).await
    }

    /// A collector over TLS with `tls`'s certificate when given.
    async fn start_with(tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let spans = Arc::new(Mutex::new(Vec::new()));
        let content_types = Arc::new(Mutex::new(Vec::new()));
        let (s, c) = (Arc::clone(&spans), Arc::clone(&content_types));
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let acceptor = acceptor.clone();
                let (s, c) = (Arc::clone(&s), Arc::clone(&c));
                let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let (s, c) = (Arc::clone(&s), Arc::clone(&c));
                    async move {
                        assert_eq!(req.uri().path(), "/v1/traces");
                        let ct = req.headers()[http::header::CONTENT_TYPE].to_str().unwrap();
                        c.lock().unwrap().push(ct.to_owned());
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let v: Value = serde_json::from_slice(&body).unwrap();
                        for rs in v["resourceSpans"].as_array().unwrap() {
                            let service = &rs["resource"]["attributes"][0];
                            assert_eq!(service["key"], "service.name");
                            for ss in rs["scopeSpans"].as_array().unwrap() {
                                for span in ss["spans"].as_array().unwrap() {
                                    let mut span = span.clone();
                                    span["service"] = service["value"]["stringValue"].clone();
                                    s.lock().unwrap().push(span);
                                }
                            }
                        }
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                            Bytes::from_static(b"{}"),
                        )))
                    }
                });
                tokio::spawn(async move {
                    let http = hyper::server::conn::http1::Builder::new();
                    match acceptor {
                        None => {
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                        // A handshake that fails (an untrusting client) ends the connection.
                        Some(acceptor) => {
                            if let Ok(tls) = acceptor.accept(stream).await {
                                let _ = http.serve_connection(TokioIo::new(tls), service).await;
                            }
                        }
                    }
                });
            }
        });
        Self {
            addr,
            spans,
            content_types,
        }
    }

    fn spans(&self) -> Vec<Value> {
        self.spans.lock().unwrap().clone()
    }

    fn len(&self) -> usize {
        self.spans.lock().unwrap().len()
    }
}

fn config(sampling: &str, collector: SocketAddr, endpoint: SocketAddr) -> String {
    format!(
        "tracing:
  sampling: {sampling}
  otlp:
    endpoint: http://{collector}/v1/traces
    service_name: edge
    batch_size: 2
    flush_interval: 100ms
    timeout: 1s
listeners:
  - name: front
    address: 127.0.0.1:0
    routes:
      - cluster: c
clusters:
  - name: c
    endpoints: [ {endpoint} ]
"
    )
}

/// The `traceparent` line of an `/headers` answer.
fn traceparent(echoed: &str) -> String {
    echoed
        .lines()
        .find_map(|l| l.strip_prefix("traceparent: "))
        .unwrap()
        .to_owned()
}

fn attr(span: &Value, key: &str) -> Value {
    span["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| a["value"].clone())
        .unwrap_or(Value::Null)
}

fn span_with_id<'a>(spans: &'a [Value], id: &str) -> &'a Value {
    spans
        .iter()
        .find(|s| s["spanId"] == id)
        .unwrap_or_else(|| panic!("no span {id} in {spans:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampled_requests_are_exported_with_the_propagated_ids() {
    let collector = Collector::start().await;
    let mock = MockHttp::start("m").await;
    let p = TestProxy::start(&config("1.0", collector.addr, mock.addr())).await;
    let client = h1_client();

    // Continued: the span is the parent the endpoint saw, its parent the caller's span.
    let echoed = get(
        &client,
        &p.url("/headers?a=1"),
        &[("traceparent", INCOMING)],
    )
    .await
    .text();
    let sent = traceparent(&echoed);
    let parts: Vec<&str> = sent.split('-').collect();
    assert_eq!(parts[1], TRACE_ID);
    let continued_span = parts[2].to_owned();

    // Started: a new trace, no parent.
    let echoed = get(&client, &p.url("/headers"), &[]).await.text();
    let sent = traceparent(&echoed);
    let parts: Vec<&str> = sent.split('-').collect();
    let (started_trace, started_span) = (parts[1].to_owned(), parts[2].to_owned());

    // An error answer from the endpoint.
    let r = get(&client, &p.url("/status/503"), &[("traceparent", INCOMING)]).await;
    assert_eq!(r.status, 503);

    // Each request: its server span, its route span and the client span of its one attempt.
    assert!(wait_until(Duration::from_secs(10), || collector.len() >= 9).await);
    let spans = collector.spans();
    assert_eq!(spans.len(), 9, "{spans:#?}");
    let exporter = p.proxy().span_export().counters();
    assert!(wait_until(Duration::from_secs(5), || exporter.exported() == 9).await);
    assert_eq!((exporter.dropped(), exporter.failed_exports()), (0, 0));
    assert!(
        collector
            .content_types
            .lock()
            .unwrap()
            .iter()
            .all(|c| c == "application/json")
    );

    // The endpoint's parent is the attempt's client span, whose parent is the route span,
    // whose parent is weir's server span.
    let attempt = span_with_id(&spans, &continued_span);
    assert_eq!(attempt["kind"], 3);
    assert_eq!(attempt["name"], "upstream c");
    assert_eq!(attempt["traceId"], TRACE_ID);
    assert_eq!(attr(attempt, "weir.attempt")["intValue"], "1");
    assert_eq!(
        attr(attempt, "http.response.status_code")["intValue"],
        "200"
    );
    let route = span_with_id(&spans, attempt["parentSpanId"].as_str().unwrap());
    assert_eq!(route["kind"], 1, "internal: {route}");
    assert_eq!(route["name"], "route front/0");
    assert_eq!(route["traceId"], TRACE_ID);
    assert_eq!(attr(route, "weir.route")["intValue"], "0");
    assert_eq!(attr(route, "weir.cluster")["stringValue"], "c");
    assert_eq!(attr(route, "weir.lb_policy")["stringValue"], "round_robin");
    assert_eq!(attr(route, "weir.retries")["intValue"], "0");
    let nanos = |s: &Value, key: &str| -> u64 { s[key].as_str().unwrap().parse().unwrap() };
    let s = span_with_id(&spans, route["parentSpanId"].as_str().unwrap());
    // Nested in time: server ⊇ route ⊇ attempt.
    assert!(nanos(s, "startTimeUnixNano") <= nanos(route, "startTimeUnixNano"));
    assert!(nanos(route, "startTimeUnixNano") <= nanos(attempt, "startTimeUnixNano"));
    assert!(nanos(attempt, "endTimeUnixNano") <= nanos(route, "endTimeUnixNano"));
    assert!(nanos(route, "endTimeUnixNano") <= nanos(s, "endTimeUnixNano"));
    assert_eq!(s["traceId"], TRACE_ID);
    assert_eq!(s["parentSpanId"], PARENT_ID);
    assert_eq!(s["name"], "HTTP GET");
    assert_eq!(s["kind"], 2);
    assert_eq!(s["service"], "edge");
    let start: u64 = s["startTimeUnixNano"].as_str().unwrap().parse().unwrap();
    let end: u64 = s["endTimeUnixNano"].as_str().unwrap().parse().unwrap();
    assert!(start > 1_600_000_000_000_000_000 && end >= start);
    assert_eq!(attr(s, "http.request.method")["stringValue"], "GET");
    assert_eq!(attr(s, "url.path")["stringValue"], "/headers");
    assert_eq!(attr(s, "http.response.status_code")["intValue"], "200");
    let authority = p
        .url("/")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    assert_eq!(attr(s, "server.address")["stringValue"], authority.as_str());
    assert_eq!(attr(s, "weir.listener")["stringValue"], "front");
    assert_eq!(attr(s, "weir.route")["intValue"], "0");
    assert_eq!(attr(s, "weir.cluster")["stringValue"], "c");
    assert_eq!(
        attr(s, "weir.endpoint")["stringValue"],
        mock.addr().to_string().as_str()
    );
    assert_eq!(attr(s, "weir.attempts")["intValue"], "1");
    assert!(s.get("status").is_none(), "unset for a 200");

    let attempt = span_with_id(&spans, &started_span);
    let route = span_with_id(&spans, attempt["parentSpanId"].as_str().unwrap());
    let s = span_with_id(&spans, route["parentSpanId"].as_str().unwrap());
    assert_eq!(s["kind"], 2);
    assert_eq!(s["traceId"], started_trace.as_str());
    assert!(s.get("parentSpanId").is_none(), "a root span: {s}");

    let failed: Vec<&Value> = spans
        .iter()
        .filter(|s| s["kind"] == 2 && attr(s, "http.response.status_code")["intValue"] == "503")
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["traceId"], TRACE_ID);
    assert_eq!(failed[0]["status"]["code"], 2, "5xx is an error");
    let failed_route = spans
        .iter()
        .find(|r| r["kind"] == 1 && r["parentSpanId"] == failed[0]["spanId"])
        .unwrap();
    assert_eq!(failed_route["status"]["code"], 2, "its route span too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsampled_requests_are_not_exported() {
    let collector = Collector::start().await;
    let mock = MockHttp::start("m").await;
    let p = TestProxy::start(&config("0", collector.addr, mock.addr())).await;
    let client = h1_client();
    let unsampled = INCOMING.replace("-01", "-00");
    for _ in 0..5 {
        assert_eq!(get(&client, &p.url("/"), &[]).await.status, 200);
        let r = get(&client, &p.url("/"), &[("traceparent", &unsampled)]).await;
        assert_eq!(r.status, 200);
    }
    // The caller's sampled flag stands: this one is exported (its server span, its route
    // span and its attempt's client span), and nothing else was.
    get(&client, &p.url("/last"), &[("traceparent", INCOMING)]).await;
    assert!(wait_until(Duration::from_secs(10), || collector.len() >= 3).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let spans = collector.spans();
    assert_eq!(spans.len(), 3, "{spans:#?}");
    let server: Vec<&Value> = spans.iter().filter(|s| s["kind"] == 2).collect();
    assert_eq!(server.len(), 1, "{spans:#?}");
    assert_eq!(attr(server[0], "url.path")["stringValue"], "/last");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_down_costs_no_request() {
    // A port that refuses connections (no other test can be given it).
    let closed = MockTcp::refusing_addr();
    let mock = MockHttp::start("m").await;
    let p = TestProxy::start(&config("1.0", closed, mock.addr())).await;
    let client = h1_client();
    for _ in 0..6 {
        assert_eq!(get(&client, &p.url("/"), &[]).await.status, 200);
    }
    let exporter = p.proxy().span_export().counters();
    // Six server spans, six route spans and six client spans.
    assert!(wait_until(Duration::from_secs(10), || exporter.failed_spans() == 18).await);
    assert!(exporter.failed_exports() >= 6, "batches of 2");
    assert_eq!(exporter.exported(), 0);
}

/// A request retried once (the first endpoint answers 503) is one server span, one route span
/// under it (`weir.retries` 1) and two client spans under that, one per attempt with its
/// endpoint; each endpoint received a `traceparent` whose parent id is its own attempt's span
/// id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_upstream_attempt_is_a_client_span() {
    let collector = Collector::start().await;
    let bad = MockHttp::builder("bad")
        .fail_with(http::StatusCode::SERVICE_UNAVAILABLE)
        .start()
        .await;
    let good = MockHttp::start("good").await;
    let yaml = config("1.0", collector.addr, bad.addr())
        .replace(
            "      - cluster: c\n",
            "      - cluster: c\n        retry: { attempts: 2, on: [503], backoff: { base: 1ms } }\n",
        )
        .replace(
            &format!("endpoints: [ {} ]", bad.addr()),
            &format!(
                "endpoints: [ {}, {} ]\n    retry_budget: {{ percent: 100 }}",
                bad.addr(),
                good.addr()
            ),
        );
    let p = TestProxy::start(&yaml).await;
    let client = h1_client();
    // Round robin: of two requests, at least one goes to `bad` first and is retried on `good`.
    for _ in 0..2 {
        assert_eq!(get(&client, &p.url("/"), &[]).await.status, 200);
    }
    assert!(wait_until(Duration::from_secs(10), || good.requests() == 2).await);
    // Two server spans, two route spans, one client span per attempt.
    let total = 2 + 2 + 2 + bad.requests() as usize;
    assert!(wait_until(Duration::from_secs(10), || collector.len() >= total).await);
    let spans = collector.spans();
    assert_eq!(spans.len(), total, "{spans:#?}");

    let retried = spans
        .iter()
        .find(|s| s["kind"] == 2 && attr(s, "weir.attempts")["intValue"] == "2")
        .unwrap_or_else(|| panic!("no retried request in {spans:#?}"));
    let trace = retried["traceId"].clone();
    let mut attempts: Vec<&Value> = spans
        .iter()
        .filter(|s| s["traceId"] == trace && s["kind"] == 3)
        .collect();
    attempts.sort_by_key(|s| {
        attr(s, "weir.attempt")["intValue"]
            .as_str()
            .unwrap()
            .to_owned()
    });
    assert_eq!(attempts.len(), 2, "{spans:#?}");
    assert_eq!(
        spans.iter().filter(|s| s["traceId"] == trace).count(),
        4,
        "1 server + 1 route + 2 client spans"
    );
    let route = spans
        .iter()
        .find(|s| s["traceId"] == trace && s["kind"] == 1)
        .unwrap();
    assert_eq!(route["parentSpanId"], retried["spanId"]);
    assert_eq!(attr(route, "weir.retries")["intValue"], "1");
    let parent_seen = |tp: &String| tp.split('-').nth(2).unwrap().to_owned();
    for (attempt, (number, endpoint, status)) in attempts
        .iter()
        .zip([("1", &bad, "503"), ("2", &good, "200")])
    {
        assert_eq!(attempt["parentSpanId"], route["spanId"], "{attempt}");
        assert_eq!(attempt["name"], "upstream c");
        assert_eq!(attr(attempt, "weir.attempt")["intValue"], number);
        assert_eq!(
            attr(attempt, "weir.endpoint")["stringValue"],
            endpoint.addr().to_string().as_str()
        );
        assert_eq!(
            attr(attempt, "network.peer.address")["stringValue"],
            "127.0.0.1"
        );
        assert_eq!(
            attr(attempt, "network.peer.port")["intValue"],
            endpoint.addr().port().to_string().as_str()
        );
        assert_eq!(attr(attempt, "server.address")["stringValue"], "127.0.0.1");
        assert_eq!(
            attr(attempt, "http.response.status_code")["intValue"],
            status
        );
        let start: u64 = attempt["startTimeUnixNano"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let end: u64 = attempt["endTimeUnixNano"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(end >= start);
        // The endpoint saw this attempt as its parent.
        let id = attempt["spanId"].as_str().unwrap();
        assert!(
            endpoint
                .traceparents()
                .iter()
                .any(|tp| parent_seen(tp) == id),
            "{} saw {:?}, not {id}",
            endpoint.name(),
            endpoint.traceparents()
        );
    }
    assert_eq!(
        attempts[0]["status"]["code"], 2,
        "a 503 attempt is an error"
    );
    assert_eq!(attr(attempts[0], "error.type")["stringValue"], "503");
    assert!(attempts[1].get("status").is_none());
    assert_eq!(
        attr(attempts[1], "http.request.resend_count")["intValue"],
        "1"
    );
    // Every traceparent any endpoint saw names a client span, never the server or route span.
    let client_ids: Vec<&str> = spans
        .iter()
        .filter(|s| s["kind"] == 3)
        .map(|s| s["spanId"].as_str().unwrap())
        .collect();
    for tp in bad.traceparents().iter().chain(&good.traceparents()) {
        assert!(client_ids.contains(&parent_seen(tp).as_str()), "{tp}");
    }
}

/// A reload that changes `tracing.otlp` takes effect: spans go to the new collector, stop when
/// export is turned off, and come back when it is turned on again; the counters go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_switches_the_exporter() {
    let first = Collector::start().await;
    let second = Collector::start().await;
    let mock = MockHttp::start("m").await;
    let load = |yaml: &str| weir_config::load_str(yaml, "reload.yaml").unwrap();
    let p = TestProxy::start(&config("1.0", first.addr, mock.addr())).await;
    let client = h1_client();
    let url = p.url("/");

    assert_eq!(get(&client, &url, &[]).await.status, 200);
    // Server, route and client span.
    assert!(wait_until(Duration::from_secs(10), || first.len() == 3).await);

    p.weir
        .reload(&load(&config("1.0", second.addr, mock.addr())))
        .unwrap();
    assert_eq!(get(&client, &url, &[]).await.status, 200);
    assert!(wait_until(Duration::from_secs(10), || second.len() == 3).await);
    assert_eq!(first.len(), 3, "the old exporter got nothing new");

    // Export off: propagation stays (sampling), nothing is exported.
    let off = format!(
        "tracing: {{ sampling: 1.0 }}\n{}",
        config("1.0", second.addr, mock.addr())
            .split_once("listeners:")
            .map(|(_, rest)| format!("listeners:{rest}"))
            .unwrap()
    );
    p.weir.reload(&load(&off)).unwrap();
    assert!(!p.proxy().span_export().is_enabled());
    assert_eq!(get(&client, &url, &[]).await.status, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(second.len(), 3);

    // And on again.
    p.weir
        .reload(&load(&config("1.0", second.addr, mock.addr())))
        .unwrap();
    assert_eq!(get(&client, &url, &[]).await.status, 200);
    assert!(wait_until(Duration::from_secs(10), || second.len() == 6).await);
    let counters = p.proxy().span_export().counters();
    assert!(wait_until(Duration::from_secs(5), || counters.exported() == 9).await);
}

/// A reload that changes `tracing.otlp` but is rejected (a new listener cannot bind) changes
/// nothing: spans keep going to the old collector, the new one gets none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_reload_leaves_span_export_as_it_was() {
    let first = Collector::start().await;
    let second = Collector::start().await;
    let mock = MockHttp::start("m").await;
    let p = TestProxy::start(&config("1.0", first.addr, mock.addr())).await;
    let client = h1_client();
    let url = p.url("/");
    assert_eq!(get(&client, &url, &[]).await.status, 200);
    assert!(wait_until(Duration::from_secs(10), || first.len() == 3).await);

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let rejected = config("1.0", second.addr, mock.addr()).replace(
        "clusters:\n",
        &format!(
            "  - name: extra\n    address: {}\n    routes: [ {{ cluster: c }} ]\nclusters:\n",
            taken.local_addr().unwrap()
        ),
    );
    let error = p
        .weir
        .reload(&weir_config::load_str(&rejected, "rejected.yaml").unwrap())
        .unwrap_err();
    assert!(format!("{error:#}").contains("cannot bind"), "{error:#}");
    assert_eq!(p.weir.reload_counts().rejected, 1);

    assert_eq!(get(&client, &url, &[]).await.status, 200);
    assert!(
        wait_until(Duration::from_secs(10), || first.len() == 6).await,
        "the old collector still gets the spans"
    );
    let counters = p.proxy().span_export().counters();
    assert!(wait_until(Duration::from_secs(5), || counters.exported() == 6).await);
    assert_eq!(
        second.len(),
        0,
        "the rejected config's collector got nothing"
    );
}

/// A client span lasts until its response body ends, not just to the response headers: a body
/// the endpoint drips over 600 ms makes an attempt span at least that long, and the route span
/// covers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_span_ends_with_the_response_body() {
    let collector = Collector::start().await;
    let mock = MockHttp::start("m").await;
    let p = TestProxy::start(&config("1.0", collector.addr, mock.addr())).await;
    let client = h1_client();
    // Seven chunks, 100 ms apart: the body takes at least 600 ms after the headers.
    let r = get(&client, &p.url("/drip/7/100"), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 7 * weir_test_support::DRIP_CHUNK);
    assert!(wait_until(Duration::from_secs(10), || collector.len() >= 3).await);
    let spans = collector.spans();
    let nanos = |s: &Value, key: &str| -> u64 { s[key].as_str().unwrap().parse().unwrap() };
    let duration = |s: &Value| nanos(s, "endTimeUnixNano") - nanos(s, "startTimeUnixNano");
    let attempt = spans.iter().find(|s| s["kind"] == 3).unwrap();
    let route = spans.iter().find(|s| s["kind"] == 1).unwrap();
    assert!(
        duration(attempt) >= 600_000_000,
        "the attempt span lasted {} ns",
        duration(attempt)
    );
    assert_eq!(attempt["parentSpanId"], route["spanId"]);
    assert!(nanos(attempt, "endTimeUnixNano") <= nanos(route, "endTimeUnixNano"));
}

/// An `https://` collector: spans reach it verified against the configured `ca`, and one
/// whose certificate that CA did not sign gets nothing (each export counted as failed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_https_collector_verified_against_its_ca() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = ca.write_cert(&dir.path().join("ca.pem"));
    let https = |collector: SocketAddr, endpoint: SocketAddr| {
        config("1.0", collector, endpoint)
            .replace("endpoint: http://", "endpoint: https://")
            .replace(
                "    service_name: edge\n",
                &format!("    service_name: edge\n    ca: {}\n", ca_file.display()),
            )
    };
    let mock = MockHttp::start("m").await;

    let tls = ca
        .issue_pem("collector", &["127.0.0.1"])
        .server_config(&[b"http/1.1"]);
    let collector = Collector::start_with(Some(tls)).await;
    let p = TestProxy::start(&https(collector.addr, mock.addr())).await;
    assert_eq!(get(&h1_client(), &p.url("/"), &[]).await.status, 200);
    assert!(
        wait_until(Duration::from_secs(10), || collector.len() >= 3).await,
        "server, route and client spans arrived over TLS: {:#?}",
        collector.spans()
    );
    assert_eq!(p.proxy().span_export().counters().failed_spans(), 0);

    let other = TestCa::new();
    let rogue_tls = other
        .issue_pem("rogue", &["127.0.0.1"])
        .server_config(&[b"http/1.1"]);
    let rogue = Collector::start_with(Some(rogue_tls)).await;
    let p = TestProxy::start(&https(rogue.addr, mock.addr())).await;
    assert_eq!(get(&h1_client(), &p.url("/"), &[]).await.status, 200);
    let spans = p.proxy().span_export().counters();
    assert!(
        wait_until(Duration::from_secs(10), || spans.failed_spans() >= 3).await,
        "exports to an untrusted collector fail and are counted"
    );
    assert_eq!(rogue.len(), 0);
}

//! The admin API over real HTTP: a snapshot compiled from YAML, the server on an ephemeral
//! loopback port, and a plain hyper client.
#![allow(
    clippy::unwrap_used,
    reason = "integration test: a panic is a failed test"
)]

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use weir_admin::{AdminServer, AdminState, ListenerInfo, RunningConfig};
use weir_config::ListenerProtocol;
use weir_core::{CheckResult, Clock, SystemClock, Unhealthy};
use weir_proxy::{Snapshot, SnapshotHandle};

const CONFIG: &str = "
listeners:
  - name: web
    address: 127.0.0.1:0
    routes: [ { match: { path_prefix: / }, cluster: web } ]
  - name: raw
    address: 127.0.0.1:0
    protocol: tcp
    cluster: api
clusters:
  - name: web
    endpoints:
      - 127.0.0.1:9001
      - { address: 127.0.0.1:9002, weight: 2 }
  - name: api
    protocol: http2
    endpoints: [ 127.0.0.1:9003 ]
";

/// A running admin server over [`CONFIG`].
struct Harness {
    admin: AdminServer,
    snapshots: SnapshotHandle,
}

/// One answer: status, headers and the raw body.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Harness {
    async fn start() -> Self {
        let config = weir_config::load_str(CONFIG, "test.yaml").unwrap();
        let snapshots = SnapshotHandle::new(Snapshot::compile(&config, None).unwrap());
        let bound = [
            ("web".to_owned(), "127.0.0.1:8080".parse().unwrap()),
            ("raw".to_owned(), "127.0.0.1:8081".parse().unwrap()),
        ];
        let state = AdminState::new(
            snapshots.clone(),
            ListenerInfo::from_config(&config, &bound),
        );
        let admin = AdminServer::start("127.0.0.1:0".parse().unwrap(), state)
            .await
            .unwrap();
        Self { admin, snapshots }
    }

    async fn request(&self, method: Method, path: &str) -> Answer {
        request(self.admin.local_addr(), method, path).await
    }

    /// `GET path`, expecting a JSON answer with `status`.
    async fn get_json(&self, path: &str, status: StatusCode) -> Value {
        let answer = self.request(Method::GET, path).await;
        assert_eq!(answer.status, status, "GET {path}");
        assert_eq!(answer.headers[header::CONTENT_TYPE], "application/json");
        serde_json::from_slice(&answer.body).unwrap()
    }
}

async fn request(addr: SocketAddr, method: Method, path: &str) -> Answer {
    request_with(addr, method, path, &[]).await
}

async fn request_with(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
) -> Answer {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, addr.to_string());
    for &(name, value) in headers {
        req = req.header(name, value);
    }
    let req = req.body(Full::new(Bytes::new())).unwrap();
    let res = tokio::time::timeout(Duration::from_secs(5), sender.send_request(req))
        .await
        .unwrap()
        .unwrap();
    let (parts, body) = res.into_parts();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

#[tokio::test]
async fn ready_says_ready() {
    let h = Harness::start().await;
    let v = h.get_json("/ready", StatusCode::OK).await;
    assert_eq!(v, json!({ "ready": true }));
    h.admin.shutdown().await;
}

#[tokio::test]
async fn clusters_list_every_cluster_with_its_endpoints() {
    let h = Harness::start().await;
    let v = h.get_json("/clusters", StatusCode::OK).await;
    let clusters = v["clusters"].as_array().unwrap();
    assert_eq!(clusters.len(), 2);
    let (web, api) = (&clusters[0], &clusters[1]);
    assert_eq!(web["name"], "web");
    assert_eq!(web["protocol"], "http1");
    assert_eq!(api["name"], "api");
    assert_eq!(api["protocol"], "http2");
    assert_eq!(
        web["circuit_breakers"],
        json!({
            "connections": 0, "pending": 0, "requests": 0,
            "connection_overflows": 0, "pending_overflows": 0, "request_overflows": 0,
            "retries": 0, "retry_overflows": 0,
        })
    );
    assert_eq!(
        web["retries"],
        json!({ "sent": 0, "budget_exhausted": 0, "overflowed": 0 })
    );
    let eps = web["endpoints"].as_array().unwrap();
    assert_eq!(eps.len(), 2);
    assert_eq!(eps[0]["address"], "127.0.0.1:9001");
    assert_eq!(eps[0]["weight"], 1);
    assert_eq!(eps[1]["address"], "127.0.0.1:9002");
    assert_eq!(eps[1]["weight"], 2);
    for ep in eps {
        assert_eq!(ep["health"], "healthy");
        assert_eq!(ep["reasons"], json!([]));
        assert_eq!(ep["in_flight"], 0);
        assert_eq!(ep["requests_total"], 0);
        assert_eq!(ep["connect_failures"], 0);
        assert!(ep.get("ewma_latency_ms").is_none());
        assert_eq!(
            ep["outlier"],
            json!({
                "ejections_total": 0, "ejected_for_ms": null, "consecutive_5xx": 0,
                "consecutive_gateway": 0, "consecutive_connect": 0,
            })
        );
        assert!(ep["active_check"].is_null());
    }
    h.admin.shutdown().await;
}

#[tokio::test]
async fn one_cluster_shows_ejection_and_the_last_check() {
    let h = Harness::start().await;
    {
        let snapshot = h.snapshots.load();
        let web = snapshot.cluster("web").unwrap();
        let state = &web.endpoints[1].state;
        let now = SystemClock.now();
        let _ = state.set_unhealthy(Unhealthy::Ejected, true, now);
        let _ = state.passive.note_ejection(now + 30_000_000_000);
        state.record_connect_failure();
        state.check.store(CheckResult {
            at: SystemTime::now(),
            success: false,
            detail: "connection refused".to_owned(),
            latency: Duration::from_millis(3),
        });
        let _ = state.set_unhealthy(Unhealthy::ActiveCheck, true, now);
    }
    let web = h.get_json("/clusters/web", StatusCode::OK).await;
    assert_eq!(web["name"], "web");
    let healthy = &web["endpoints"][0];
    assert_eq!(healthy["health"], "healthy");
    let ep = &web["endpoints"][1];
    assert_eq!(ep["health"], "failed_active_check+ejected");
    assert_eq!(ep["reasons"], json!(["failed_active_check", "ejected"]));
    assert_eq!(ep["connect_failures"], 1);
    assert_eq!(ep["outlier"]["ejections_total"], 1);
    let left = ep["outlier"]["ejected_for_ms"].as_u64().unwrap();
    assert!(left > 0 && left <= 30_000, "{left}");
    let check = &ep["active_check"];
    assert_eq!(check["success"], false);
    assert_eq!(check["detail"], "connection refused");
    assert_eq!(check["latency_ms"], 3.0);
    assert_eq!((&check["total"], &check["failed"]), (&json!(1), &json!(1)));
    assert!(check["at"].as_str().unwrap().ends_with('Z'));
    assert!(check["at_unix_ms"].as_u64().unwrap() > 1_700_000_000_000);
    h.admin.shutdown().await;
}

#[tokio::test]
async fn listeners_show_bound_addresses_and_protocols() {
    let h = Harness::start().await;
    let v = h.get_json("/listeners", StatusCode::OK).await;
    assert_eq!(
        v,
        json!({ "listeners": [
            { "name": "web", "address": "127.0.0.1:8080", "protocol": "http" },
            { "name": "raw", "address": "127.0.0.1:8081", "protocol": "tcp" },
        ]})
    );
    h.admin.shutdown().await;
}

#[tokio::test]
async fn a_new_snapshot_shows_on_the_next_request() {
    let h = Harness::start().await;
    h.get_json("/clusters/extra", StatusCode::NOT_FOUND).await;
    let yaml = format!("{CONFIG}  - name: extra\n    endpoints: [ 127.0.0.1:9004 ]\n");
    let config = weir_config::load_str(&yaml, "test.yaml").unwrap();
    let next = Snapshot::compile(&config, Some(&h.snapshots.load())).unwrap();
    h.snapshots.store(next);
    let v = h.get_json("/clusters/extra", StatusCode::OK).await;
    assert_eq!(v["endpoints"][0]["address"], "127.0.0.1:9004");
    h.admin.shutdown().await;
}

#[tokio::test]
async fn unknown_cluster_and_unknown_path_are_json_404s() {
    let h = Harness::start().await;
    let v = h.get_json("/clusters/nope", StatusCode::NOT_FOUND).await;
    assert!(v["error"].as_str().unwrap().contains("nope"), "{v}");
    for path in [
        "/nope",
        "/index.html",
        "/stats/x",
        "/clusters/web/endpoints",
        "/ready/x",
    ] {
        let v = h.get_json(path, StatusCode::NOT_FOUND).await;
        assert!(v["error"].is_string(), "{path}: {v}");
    }
    h.admin.shutdown().await;
}

#[tokio::test]
async fn wrong_method_is_405_with_allow() {
    let h = Harness::start().await;
    for method in [Method::POST, Method::PUT, Method::DELETE] {
        let answer = h.request(method.clone(), "/clusters").await;
        assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(answer.headers[header::ALLOW], "GET, HEAD");
        let v: Value = serde_json::from_slice(&answer.body).unwrap();
        assert!(v["error"].as_str().unwrap().contains(method.as_str()));
    }
    // An unknown path stays a 404 whatever the method.
    let answer = h.request(Method::POST, "/nope").await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    h.admin.shutdown().await;
}

#[tokio::test]
async fn bad_percent_encoding_is_400_and_good_encoding_decodes() {
    let h = Harness::start().await;
    let v = h.get_json("/clusters/%ff", StatusCode::BAD_REQUEST).await;
    assert!(v["error"].is_string());
    let v = h.get_json("/clusters/w%65b", StatusCode::OK).await;
    assert_eq!(v["name"], "web");
    h.admin.shutdown().await;
}

#[tokio::test]
async fn head_sends_headers_without_a_body() {
    let h = Harness::start().await;
    let get = h.request(Method::GET, "/ready").await;
    let head = h.request(Method::HEAD, "/ready").await;
    assert_eq!(head.status, StatusCode::OK);
    assert!(head.body.is_empty());
    assert_eq!(
        head.headers[header::CONTENT_LENGTH],
        get.body.len().to_string().as_str()
    );
    h.admin.shutdown().await;
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let h = Harness::start().await;
    let addr = h.admin.local_addr();
    assert_ne!(addr.port(), 0);
    h.get_json("/ready", StatusCode::OK).await;
    h.admin.shutdown().await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "nothing listens after shutdown"
    );
}

#[tokio::test]
async fn start_fails_on_a_taken_port() {
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = taken.local_addr().unwrap();
    let state = AdminState::new(
        SnapshotHandle::new(
            Snapshot::compile(&weir_config::load_str(CONFIG, "t.yaml").unwrap(), None).unwrap(),
        ),
        vec![ListenerInfo {
            name: "web".to_owned(),
            address: addr,
            protocol: ListenerProtocol::Http,
        }],
    );
    assert!(AdminServer::start(addr, state).await.is_err());
}

#[tokio::test]
async fn http2_prior_knowledge_is_served() {
    let h = Harness::start().await;
    let stream = TcpStream::connect(h.admin.local_addr()).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = Request::builder()
        .uri(format!("http://{}/ready", h.admin.local_addr()))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = sender.send_request(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v, json!({ "ready": true }));
    h.admin.shutdown().await;
}

#[tokio::test]
async fn metrics_show_every_cluster_and_endpoint_as_prometheus_text() {
    let h = Harness::start().await;
    let snapshot = h.snapshots.load();
    let web = snapshot.cluster("web").unwrap();
    let clock = SystemClock;
    let _ = web.endpoints[1]
        .state
        .set_unhealthy(Unhealthy::Drained, true, clock.now());
    let _busy = web.endpoints[0].state.begin_request();

    let a = h.request(Method::GET, "/metrics").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.headers[header::CONTENT_TYPE],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = String::from_utf8(a.body.to_vec()).unwrap();
    for line in [
        "# TYPE weir_upstream_requests_total counter",
        "weir_upstream_requests_total{cluster=\"web\",class=\"2xx\"} 0",
        "weir_upstream_errors_total{cluster=\"api\",reason=\"connect_failure\"} 0",
        "# TYPE weir_upstream_request_duration_seconds histogram",
        "weir_upstream_request_duration_seconds_bucket{le=\"0.0005\",cluster=\"web\"} 0",
        "weir_upstream_request_duration_seconds_bucket{le=\"+Inf\",cluster=\"web\"} 0",
        "weir_upstream_request_duration_seconds_count{cluster=\"web\"} 0",
        "weir_cluster_circuit_breaker_overflows_total{cluster=\"web\",limit=\"max_requests\"} 0",
        "weir_cluster_endpoints{cluster=\"web\"} 2",
        "weir_cluster_healthy_endpoints{cluster=\"web\"} 1",
        "weir_cluster_ejected_endpoints{cluster=\"web\"} 0",
        "weir_endpoint_requests_total{cluster=\"web\",endpoint=\"127.0.0.1:9001\"} 1",
        "weir_endpoint_in_flight_requests{cluster=\"web\",endpoint=\"127.0.0.1:9001\"} 1",
        "weir_endpoint_healthy{cluster=\"web\",endpoint=\"127.0.0.1:9002\"} 0",
        "weir_endpoint_unhealthy{cluster=\"web\",endpoint=\"127.0.0.1:9002\",reason=\"drained\"} 1",
        "weir_endpoint_unhealthy{cluster=\"web\",endpoint=\"127.0.0.1:9002\",reason=\"ejected\"} 0",
        "weir_endpoint_healthy{cluster=\"api\",endpoint=\"127.0.0.1:9003\"} 1",
        "weir_endpoint_errors_total{cluster=\"web\",endpoint=\"127.0.0.1:9001\",reason=\"5xx\"} 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }
    assert!(!text.contains("# EOF") && !text.contains("# UNIT"));
    assert!(
        !text.contains("weir_endpoint_latency_ewma"),
        "no EWMA was observed"
    );

    // What Prometheus asks for: OpenMetrics, as prometheus-client encodes it.
    let om = request_with(
        h.admin.local_addr(),
        Method::GET,
        "/metrics",
        &[(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
        )],
    )
    .await;
    assert_eq!(
        om.headers[header::CONTENT_TYPE],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let om = String::from_utf8(om.body.to_vec()).unwrap();
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert!(om.contains("# TYPE weir_upstream_requests counter\n"));
    assert!(om.contains("# UNIT weir_upstream_request_duration_seconds seconds\n"));

    let head = h.request(Method::HEAD, "/metrics").await;
    assert_eq!(head.status, StatusCode::OK);
    assert!(head.body.is_empty());
    assert_eq!(
        head.headers[header::CONTENT_LENGTH],
        text.len().to_string().as_str()
    );
    h.admin.shutdown().await;
}

#[tokio::test]
async fn metrics_leave_out_endpoint_series_when_turned_off() {
    let config = weir_config::load_str(CONFIG, "t.yaml").unwrap();
    let state = AdminState::new(
        SnapshotHandle::new(Snapshot::compile(&config, None).unwrap()),
        ListenerInfo::from_config(&config, &[]),
    )
    .with_per_endpoint_metrics(false);
    let admin = AdminServer::start("127.0.0.1:0".parse().unwrap(), state)
        .await
        .unwrap();
    let a = request(admin.local_addr(), Method::GET, "/metrics").await;
    let text = String::from_utf8(a.body.to_vec()).unwrap();
    assert!(text.contains("weir_cluster_healthy_endpoints{cluster=\"web\"} 2\n"));
    assert!(!text.contains("weir_endpoint_"), "{text}");
    admin.shutdown().await;
}

#[tokio::test]
async fn the_root_serves_the_dashboard_page() {
    let h = Harness::start().await;
    let page = h.request(Method::GET, "/").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(
        page.headers[header::CONTENT_TYPE],
        "text/html; charset=utf-8"
    );
    assert_eq!(page.headers[header::CACHE_CONTROL], "no-store");
    let csp = page.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"));
    let html = std::str::from_utf8(&page.body).unwrap();
    assert!(
        html.contains("<canvas") || html.contains("\"canvas\""),
        "charts are canvases"
    );
    assert!(html.contains("fetch(\"stats\""));
    let head = h.request(Method::HEAD, "/").await;
    assert_eq!(head.status, StatusCode::OK);
    assert!(head.body.is_empty());
    assert_eq!(
        head.headers[header::CONTENT_LENGTH],
        page.body.len().to_string().as_str()
    );
    let post = h.request(Method::POST, "/").await;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
    h.admin.shutdown().await;
}

#[tokio::test]
async fn stats_are_compact_cumulative_totals_per_cluster() {
    let h = Harness::start().await;
    let snapshot = h.snapshots.load();
    let web = snapshot.cluster("web").unwrap();
    let _in_flight = web.endpoints[1].state.begin_request();
    let now = SystemClock.now();
    let _ = web.endpoints[0]
        .state
        .set_unhealthy(Unhealthy::Ejected, true, now);
    let before = SystemTime::now();
    let answer = h.request(Method::GET, "/stats").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(answer.headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(
        answer.body.iter().filter(|&&b| b == b'\n').count(),
        1,
        "compact: one line"
    );
    let v: Value = serde_json::from_slice(&answer.body).unwrap();
    let at = v["at_unix_ms"].as_u64().unwrap();
    let before_ms = u64::try_from(
        before
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    assert!(
        at >= before_ms && at < before_ms + 60_000,
        "{at} vs {before_ms}"
    );
    let bounds = v["latency_bounds_ms"].as_array().unwrap();
    let names: Vec<&str> = v["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web", "api"], "config order");
    let c = &v["clusters"][0];
    assert_eq!(c["responses"]["2xx"], 0);
    assert_eq!(c["failures"]["reset"], 0);
    assert_eq!(
        c["latency"]["buckets"].as_array().unwrap().len(),
        bounds.len() + 1
    );
    assert_eq!(c["in_flight"], 1);
    assert_eq!(c["healthy_endpoints"], 1);
    assert_eq!(
        c["endpoints"],
        json!([
            { "address": "127.0.0.1:9001", "weight": 1, "status": "unhealthy",
              "reasons": ["ejected"], "in_flight": 0, "requests_total": 0,
              "connect_failures": 0 },
            { "address": "127.0.0.1:9002", "weight": 2, "status": "healthy", "reasons": [],
              "in_flight": 1, "requests_total": 1, "connect_failures": 0 },
        ])
    );
    h.admin.shutdown().await;
}

#[tokio::test]
async fn config_shows_the_running_config_with_secrets_redacted() {
    let token = "do-not-show-this-token-0123";
    let yaml = format!("admin: {{ address: 127.0.0.1:0, token: {token} }}\n{CONFIG}");
    let config = weir_config::load_str(&yaml, "weir.yaml").unwrap();
    let snapshots = SnapshotHandle::new(Snapshot::compile(&config, None).unwrap());
    let running = RunningConfig::new(&config);
    let state = AdminState::new(snapshots, ListenerInfo::from_config(&config, &[]))
        .with_token(Some(token))
        .with_running_config(running.clone());
    let admin = AdminServer::start("127.0.0.1:0".parse().unwrap(), state)
        .await
        .unwrap();
    let get = |path: &'static str| request(admin.local_addr(), Method::GET, path);

    let answer = get("/config").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.headers[header::CONTENT_TYPE], "application/json");
    let text = std::str::from_utf8(&answer.body).unwrap();
    assert!(!text.contains(token), "the token leaked: {text}");
    let v: Value = serde_json::from_str(text).unwrap();
    assert_eq!(v["source"], "weir.yaml");
    let c = &v["config"];
    assert_eq!(c["admin"]["token"], "<redacted>");
    assert_eq!(c["admin"]["address"], "127.0.0.1:0");
    assert_eq!(
        c["admin"]["metrics"]["per_endpoint"], true,
        "defaults are shown"
    );
    assert_eq!(c["listeners"][1]["protocol"], "tcp");
    assert_eq!(c["clusters"][0]["name"], "web");
    assert_eq!(
        c["clusters"][0]["endpoints"][1],
        json!({ "address": "127.0.0.1:9002", "weight": 2 })
    );
    assert_eq!(c["clusters"][1]["protocol"], "http2");

    // A reload that applies a new config shows at once.
    let next = weir_config::load_str(&CONFIG.replace("9003", "9004"), "next.yaml").unwrap();
    running.set(&next);
    let v: Value = serde_json::from_slice(&get("/config").await.body).unwrap();
    assert_eq!(v["source"], "next.yaml");
    assert!(v["config"]["admin"].is_null());
    assert_eq!(
        v["config"]["clusters"][1]["endpoints"][0]["address"],
        "127.0.0.1:9004"
    );
    admin.shutdown().await;
}

#[tokio::test]
async fn config_is_404_without_a_config_to_show() {
    let h = Harness::start().await;
    let v = h.get_json("/config", StatusCode::NOT_FOUND).await;
    assert!(v["error"].as_str().unwrap().contains("config"), "{v}");
    h.admin.shutdown().await;
}

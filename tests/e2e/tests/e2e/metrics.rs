//! `GET /metrics` after known traffic: every series that should move moved by exactly the
//! traffic sent, counters survive a reload, and `promtool check metrics` (Debian package
//! `prometheus`, installed by `scripts/test`) finds nothing to complain about.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "end-to-end test: a panic is a failed test"
)]

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::net::UdpSocket;
use weir_e2e::{TestProxy, echo_round_trip, get, h1_client};
use weir_test_support::{MockHttp, MockTcp, MockUdp, wait_until};

/// The scraped samples: `name{labels}` exactly as exposed, to the value.
pub(crate) type Samples = BTreeMap<String, f64>;

pub(crate) async fn scrape_text(admin: SocketAddr) -> String {
    let reply = get(&h1_client(), &format!("http://{admin}/metrics"), &[]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type"),
        "text/plain; version=0.0.4; charset=utf-8"
    );
    reply.text()
}

pub(crate) fn parse(text: &str) -> Samples {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            (series.to_owned(), value.parse().unwrap())
        })
        .collect()
}

/// The value of `series`, which must be exposed.
pub(crate) fn value(samples: &Samples, series: &str) -> f64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("{series} is not exposed; have: {samples:#?}"))
}

/// Whether the tests must have every external tool (CI), rather than skip without one.
fn tools_required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
        || std::env::var("WEIR_REQUIRE_PRIVILEGED").is_ok_and(|v| v == "1")
}

/// Runs `promtool check metrics` on `text` and asserts it is clean; without promtool, fails
/// in CI and skips (saying why) elsewhere.
pub(crate) fn promtool_check(text: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if tools_required() => {
            panic!("promtool is required ({e}); scripts/test installs the prometheus package")
        }
        Err(e) => {
            eprintln!("skipping promtool check: promtool not runnable ({e}); run scripts/test");
            return;
        }
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics: {:?}\n{said}\non:\n{text}",
        out.status
    );
}

fn config(a: SocketAddr, b: SocketAddr, echo: SocketAddr, extra: &str) -> String {
    format!(
        "admin: {{ address: 127.0.0.1:0 }}
listeners:
  - name: web
    address: 127.0.0.1:0
    routes: [ {{ cluster: c }} ]
  - name: raw
    address: 127.0.0.1:0
    protocol: tcp
    cluster: echo
clusters:
  - name: c
    lb_policy: round_robin
    endpoints: [ {a}, {b}{extra} ]
  - name: echo
    endpoints: [ {echo} ]
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_traffic_moves_exactly_the_right_series() {
    let a = MockHttp::start("a").await;
    let b = MockHttp::start("b").await;
    let echo = MockTcp::echo().await;
    let p = TestProxy::start(&config(a.addr(), b.addr(), echo.addr(), "")).await;
    let admin = p.weir.admin_addr().unwrap();

    let client = h1_client();
    for i in 0..100 {
        let path = if i % 10 == 9 { "/status/503" } else { "/" };
        let reply = get(&client, &p.url(path), &[]).await;
        assert_eq!(reply.status, if i % 10 == 9 { 503 } else { 200 });
    }
    // One TCP connection through the `raw` listener: 5 bytes each way.
    let raw = p.proxy().listener_addr("raw").unwrap();
    drop(echo_round_trip(raw, b"hello").await);

    // The TCP connection's bytes are counted when its copy ends, a moment after the client
    // closed: scrape until the listener has no open connection (bounded).
    let mut text = String::new();
    for _ in 0..200 {
        text = scrape_text(admin).await;
        let s = parse(&text);
        if value(&s, "weir_listener_active_connections{listener=\"raw\"}") == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let s = parse(&text);
    let c =
        |class: &str| format!("weir_upstream_requests_total{{cluster=\"c\",class=\"{class}\"}}");
    assert_eq!(value(&s, &c("2xx")), 90.0);
    assert_eq!(value(&s, &c("5xx")), 10.0);
    for class in ["1xx", "3xx", "4xx"] {
        assert_eq!(value(&s, &c(class)), 0.0, "{class}");
    }
    for reason in ["connect_failure", "connect_timeout", "timeout", "reset"] {
        let series = format!("weir_upstream_errors_total{{cluster=\"c\",reason=\"{reason}\"}}");
        assert_eq!(value(&s, &series), 0.0, "{series}");
    }
    assert_eq!(
        value(
            &s,
            "weir_upstream_request_duration_seconds_count{cluster=\"c\"}"
        ),
        100.0
    );
    assert_eq!(
        value(
            &s,
            "weir_upstream_request_duration_seconds_bucket{le=\"+Inf\",cluster=\"c\"}"
        ),
        100.0
    );
    let sum = value(
        &s,
        "weir_upstream_request_duration_seconds_sum{cluster=\"c\"}",
    );
    assert!(sum > 0.0, "{sum}");
    // Round robin alternates: 50 requests each.
    for ep in [a.addr(), b.addr()] {
        let labels = format!("{{cluster=\"c\",endpoint=\"{ep}\"}}");
        assert_eq!(
            value(&s, &format!("weir_endpoint_requests_total{labels}")),
            50.0
        );
        assert_eq!(
            value(&s, &format!("weir_endpoint_in_flight_requests{labels}")),
            0.0
        );
        assert_eq!(value(&s, &format!("weir_endpoint_healthy{labels}")), 1.0);
        assert_eq!(
            value(&s, &format!("weir_endpoint_connect_failures_total{labels}")),
            0.0
        );
        assert_eq!(
            value(&s, &format!("weir_endpoint_ejections_total{labels}")),
            0.0
        );
    }
    assert_eq!(a.requests() + b.requests(), 100);
    assert_eq!(
        value(&s, "weir_cluster_healthy_endpoints{cluster=\"c\"}"),
        2.0
    );
    assert_eq!(
        value(&s, "weir_cluster_ejected_endpoints{cluster=\"c\"}"),
        0.0
    );
    assert_eq!(value(&s, "weir_cluster_retries_total{cluster=\"c\"}"), 0.0);
    assert_eq!(
        value(&s, "weir_cluster_panic_picks_total{cluster=\"c\"}"),
        0.0
    );
    // The keep-alive client used at least one connection and at most one per request.
    let accepted = value(
        &s,
        "weir_listener_connections_accepted_total{listener=\"web\"}",
    );
    assert!((1.0..=100.0).contains(&accepted), "{accepted}");
    assert_eq!(
        value(
            &s,
            "weir_listener_connections_accepted_total{listener=\"raw\"}"
        ),
        1.0
    );
    assert_eq!(
        value(&s, "weir_listener_active_connections{listener=\"raw\"}"),
        0.0
    );
    assert_eq!(
        value(&s, "weir_listener_received_bytes_total{listener=\"raw\"}"),
        5.0
    );
    assert_eq!(
        value(&s, "weir_listener_sent_bytes_total{listener=\"raw\"}"),
        5.0
    );
    // HTTP listeners count bytes too, as they are read and written: at least every request
    // line with its Host header (what hyper's client sends, at the least) and every response's
    // status line and one-byte body (the endpoint's name), and not wildly more.
    let host = format!("host: {}\r\n", p.addr);
    let request = ("GET / HTTP/1.1\r\n".len() + host.len() + 2) as f64;
    let received = value(&s, "weir_listener_received_bytes_total{listener=\"web\"}");
    assert!(
        (90.0 * request + 10.0 * (request + 10.0)..=300.0 * request).contains(&received),
        "{received} for 100 requests of at least {request} bytes"
    );
    let sent = value(&s, "weir_listener_sent_bytes_total{listener=\"web\"}");
    let response = "HTTP/1.1 200 OK\r\n\r\na".len() as f64;
    assert!(
        (100.0 * response..=100.0 * 1024.0).contains(&sent),
        "{sent} for 100 responses of at least {response} bytes"
    );
    // The client's keep-alive connection is still open: its bytes showed while it lives.
    assert!(value(&s, "weir_listener_active_connections{listener=\"web\"}") >= 1.0);
    assert_eq!(
        value(
            &s,
            &format!(
                "weir_endpoint_requests_total{{cluster=\"echo\",endpoint=\"{}\"}}",
                echo.addr()
            )
        ),
        1.0
    );

    promtool_check(&text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_survive_a_reload_and_new_endpoints_start_at_zero() {
    let a = MockHttp::start("a").await;
    let b = MockHttp::start("b").await;
    let c = MockHttp::start("c").await;
    let echo = MockTcp::echo().await;
    let p = TestProxy::start(&config(a.addr(), b.addr(), echo.addr(), "")).await;
    let admin = p.weir.admin_addr().unwrap();
    let client = h1_client();
    for _ in 0..10 {
        assert_eq!(get(&client, &p.url("/"), &[]).await.status, 200);
    }
    let next = config(a.addr(), b.addr(), echo.addr(), &format!(", {}", c.addr()));
    p.weir
        .reload(&weir_config::load_str(&next, "reload.yaml").unwrap())
        .unwrap();

    let s = parse(&scrape_text(admin).await);
    let two_xx = "weir_upstream_requests_total{cluster=\"c\",class=\"2xx\"}";
    assert_eq!(value(&s, two_xx), 10.0);
    assert_eq!(
        value(
            &s,
            "weir_upstream_request_duration_seconds_count{cluster=\"c\"}"
        ),
        10.0
    );
    let requests =
        |ep: SocketAddr| format!("weir_endpoint_requests_total{{cluster=\"c\",endpoint=\"{ep}\"}}");
    assert_eq!(value(&s, &requests(a.addr())), 5.0);
    assert_eq!(value(&s, &requests(b.addr())), 5.0);
    assert_eq!(value(&s, &requests(c.addr())), 0.0);
    assert_eq!(value(&s, "weir_cluster_endpoints{cluster=\"c\"}"), 3.0);

    for _ in 0..3 {
        assert_eq!(get(&client, &p.url("/"), &[]).await.status, 200);
    }
    let s = parse(&scrape_text(admin).await);
    assert_eq!(value(&s, two_xx), 13.0);
    let total: f64 = [a.addr(), b.addr(), c.addr()]
        .into_iter()
        .map(|ep| value(&s, &requests(ep)))
        .sum();
    assert_eq!(total, 13.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_endpoint_series_can_be_turned_off() {
    let a = MockHttp::start("a").await;
    let b = MockHttp::start("b").await;
    let echo = MockTcp::echo().await;
    let yaml = config(a.addr(), b.addr(), echo.addr(), "").replace(
        "admin: { address: 127.0.0.1:0 }",
        "admin: { address: 127.0.0.1:0, metrics: { per_endpoint: false } }",
    );
    let p = TestProxy::start(&yaml).await;
    assert_eq!(get(&h1_client(), &p.url("/"), &[]).await.status, 200);
    let text = scrape_text(p.weir.admin_addr().unwrap()).await;
    let s = parse(&text);
    assert_eq!(
        value(
            &s,
            "weir_upstream_requests_total{cluster=\"c\",class=\"2xx\"}"
        ),
        1.0
    );
    assert!(!text.contains("weir_endpoint_"), "{text}");
    promtool_check(&text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_sessions_count_as_listener_connections() {
    let ep = MockUdp::echo("ep").await;
    let p = TestProxy::start(&format!(
        "admin: {{ address: 127.0.0.1:0 }}
listeners:
  - name: dns
    address: 127.0.0.1:0
    protocol: udp
    cluster: u
clusters:
  - name: u
    endpoints: [ {} ]
",
        ep.addr()
    ))
    .await;
    // Two clients, two sessions; each datagram comes back through weir.
    let mut clients = Vec::new();
    for i in 0..2u8 {
        let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        c.connect(p.addr).await.unwrap();
        c.send(&[i; 3]).await.unwrap();
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(10), c.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..n], &[i; 3]);
        clients.push(c);
    }
    let text = scrape_text(p.weir.admin_addr().unwrap()).await;
    let s = parse(&text);
    assert_eq!(
        value(
            &s,
            "weir_listener_connections_accepted_total{listener=\"dns\"}"
        ),
        2.0
    );
    assert_eq!(
        value(&s, "weir_listener_active_connections{listener=\"dns\"}"),
        2.0
    );
    assert!(
        !text.contains("weir_listener_received_bytes_total"),
        "no byte counts for UDP"
    );
    promtool_check(&text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_policies_are_counted_per_route() {
    let primary = MockHttp::start("primary").await;
    let shadow = MockHttp::start("shadow").await;
    let p = TestProxy::start(&format!(
        "admin: {{ address: 127.0.0.1:0 }}
listeners:
  - name: web
    address: 127.0.0.1:0
    routes:
      - match: {{ path_prefix: /limited }}
        cluster: c
        rate_limit: {{ key: route, local: {{ requests_per_second: 1, burst: 2 }} }}
      - match: {{ path_prefix: /faulty }}
        cluster: c
        fault: {{ abort: {{ status: 503, percent: 100 }} }}
      - cluster: c
        mirror: {{ cluster: s, fraction: 1.0 }}
clusters:
  - name: c
    endpoints: [ {} ]
  - name: s
    endpoints: [ {} ]
",
        primary.addr(),
        shadow.addr()
    ))
    .await;
    let admin = p.weir.admin_addr().unwrap();
    let client = h1_client();
    // The burst of 2 passes, the next 3 are refused within the same second.
    let limited_url = p.url("/limited");
    let limited: Vec<u16> =
        futures_util::future::join_all((0..5).map(|_| get(&client, &limited_url, &[])))
            .await
            .iter()
            .map(|r| r.status.as_u16())
            .collect();
    let refused = limited.iter().filter(|s| **s == 429).count();
    assert!(refused >= 3, "{limited:?}");
    for _ in 0..4 {
        assert_eq!(get(&client, &p.url("/faulty"), &[]).await.status, 503);
    }
    for _ in 0..6 {
        assert_eq!(get(&client, &p.url("/"), &[]).await.status, 200);
    }
    assert!(wait_until(Duration::from_secs(10), || shadow.requests() == 6).await);

    let route = |r: usize, extra: &str| format!("{{listener=\"web\",route=\"{r}\"{extra}}}");
    let mut samples = parse(&scrape_text(admin).await);
    // The shadow's exchange is counted when it ends; give it a moment after the endpoint saw it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while samples
        .get(&format!(
            "weir_route_mirror_results_total{}",
            route(2, ",result=\"succeeded\"")
        ))
        .copied()
        != Some(6.0)
    {
        assert!(std::time::Instant::now() < deadline, "{samples:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
        samples = parse(&scrape_text(admin).await);
    }
    assert_eq!(
        value(
            &samples,
            &format!(
                "weir_route_rate_limited_total{}",
                route(0, ",result=\"limited\"")
            )
        ),
        refused as f64
    );
    assert_eq!(
        value(
            &samples,
            &format!(
                "weir_route_rate_limited_total{}",
                route(0, ",result=\"unavailable\"")
            )
        ),
        0.0
    );
    assert_eq!(
        value(
            &samples,
            &format!("weir_route_faults_total{}", route(1, ",kind=\"aborted\""))
        ),
        4.0
    );
    assert_eq!(
        value(
            &samples,
            &format!("weir_route_faults_total{}", route(1, ",kind=\"delayed\""))
        ),
        0.0
    );
    assert_eq!(
        value(
            &samples,
            &format!("weir_route_mirror_selected_total{}", route(2, ""))
        ),
        6.0
    );
    // Every route counts what it answered, weir's own 429s and 503s included.
    let class = |r: usize, c: &str| {
        value(
            &samples,
            &format!(
                "weir_route_requests_total{}",
                route(r, &format!(",class=\"{c}\""))
            ),
        )
    };
    assert_eq!(class(0, "4xx"), refused as f64);
    assert_eq!(class(0, "2xx"), (5 - refused) as f64);
    assert_eq!(class(1, "5xx"), 4.0);
    assert_eq!(class(2, "2xx"), 6.0);
    assert_eq!(
        value(
            &samples,
            &format!("weir_route_request_duration_seconds_count{}", route(2, ""))
        ),
        6.0
    );
    promtool_check(&scrape_text(admin).await);
}

/// The access log's drop counter and the span exporter's counters are series: with a
/// collector that is down, every span of the traffic is counted as lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_and_span_export_counters_are_exposed() {
    let a = MockHttp::start("a").await;
    let b = MockHttp::start("b").await;
    let echo = MockTcp::echo().await;
    let dir = tempfile::tempdir().unwrap();
    // A port that refuses connections (no other test can be given it).
    let closed = MockTcp::refusing_addr();
    let yaml = format!(
        "access_log: {{ path: {} }}
tracing:
  sampling: 1.0
  otlp: {{ endpoint: http://{closed}/v1/traces, batch_size: 1, flush_interval: 10ms, timeout: 1s }}
{}",
        dir.path().join("access.log").display(),
        config(a.addr(), b.addr(), echo.addr(), "")
    );
    let p = TestProxy::start(&yaml).await;
    let admin = p.weir.admin_addr().unwrap();
    let client = h1_client();
    for _ in 0..2 {
        assert_eq!(get(&client, &p.url("/"), &[]).await.status, 200);
    }
    // Two server spans, two route spans and two client spans, each lost in its own failed
    // export.
    let spans = p.proxy().span_export().counters();
    assert!(wait_until(Duration::from_secs(10), || spans.failed_spans() == 6).await);
    let text = scrape_text(admin).await;
    let s = parse(&text);
    assert_eq!(value(&s, "weir_access_log_dropped_total"), 0.0);
    assert_eq!(value(&s, "weir_otlp_spans_exported_total"), 0.0);
    assert_eq!(value(&s, "weir_otlp_spans_dropped_total"), 0.0);
    assert_eq!(value(&s, "weir_otlp_spans_failed_total"), 6.0);
    assert_eq!(value(&s, "weir_otlp_export_failures_total"), 6.0);
    promtool_check(&text);

    // Without an access log or span export, the series are absent.
    let p = TestProxy::start(&config(a.addr(), b.addr(), echo.addr(), "")).await;
    let text = scrape_text(p.weir.admin_addr().unwrap()).await;
    assert!(!text.contains("weir_access_log_"), "{text}");
    assert!(!text.contains("weir_otlp_"), "{text}");
}

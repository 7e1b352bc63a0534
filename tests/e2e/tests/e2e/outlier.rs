//! Passive outlier detection through the running proxy: 3 consecutive 503s or 3 connect
//! failures eject an endpoint (HTTP and TCP clusters), the ejected endpoint gets no traffic,
//! comes back after the ejection time, and `max_ejection_percent` keeps half of a failing
//! cluster in rotation. Real sockets, real time, one-sided time bounds.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "end-to-end test: a panic is a failed test"
)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weir_core::Unhealthy;
use weir_e2e::{TestProxy, get, h1_client};
use weir_test_support::{MockHttp, MockTcp, wait_until};

const SECS_10: Duration = Duration::from_secs(10);

fn http_config(outlier: &str, endpoints: &[SocketAddr]) -> String {
    let eps: Vec<String> = endpoints.iter().map(ToString::to_string).collect();
    format!(
        "listeners:
  - name: l
    address: 127.0.0.1:0
    routes: [ {{ cluster: c }} ]
clusters:
  - name: c
    outlier_detection: {outlier}
    endpoints: [ {} ]
",
        eps.join(", ")
    )
}

/// The fused health of endpoint `i` of cluster `c`.
fn health(p: &TestProxy, i: usize) -> weir_core::HealthFlags {
    p.proxy().snapshots().load().cluster("c").unwrap().endpoints[i]
        .state
        .health()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_503s_eject_until_the_ejection_time_has_passed() {
    let bad = MockHttp::builder("bad")
        .fail_with(StatusCode::SERVICE_UNAVAILABLE)
        .start()
        .await;
    let good = MockHttp::start("good").await;
    let outlier = "{ consecutive_gateway_errors: 3, base_ejection_time: 400ms, interval: 10s }";
    let p = TestProxy::start(&http_config(outlier, &[bad.addr(), good.addr()])).await;
    let client = h1_client();

    // Round robin alternates: after six requests the bad endpoint has answered three 503s.
    // The walk starts at a random endpoint, so the ejection happens during the fifth or the
    // sixth request: no earlier than `ejected_at`, taken before the fifth.
    let mut ejected_at = Instant::now();
    for i in 0..6 {
        if i == 4 {
            ejected_at = Instant::now();
        }
        get(&client, &p.url("/"), &[]).await;
    }
    assert_eq!(bad.requests(), 3);
    assert!(health(&p, 0).contains(Unhealthy::Ejected));
    for _ in 0..20 {
        assert_eq!(get(&client, &p.url("/"), &[]).await.status, 200);
    }
    assert_eq!(bad.requests(), 3, "an ejected endpoint receives nothing");

    assert!(wait_until(SECS_10, || health(&p, 0).is_healthy()).await);
    assert!(
        ejected_at.elapsed() >= Duration::from_millis(400),
        "re-admitted only after base_ejection_time"
    );
    let endpoint =
        std::sync::Arc::clone(&p.proxy().snapshots().load().cluster("c").unwrap().endpoints[0]);
    assert_eq!(endpoint.state.passive.ejections_total(), 1);
    // Back in rotation it gets traffic again, and three more 503s eject it a second time.
    for _ in 0..6 {
        get(&client, &p.url("/"), &[]).await;
    }
    assert_eq!(bad.requests(), 6);
    assert!(health(&p, 0).contains(Unhealthy::Ejected));
    assert_eq!(endpoint.state.passive.ejections_total(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_connect_failures_eject_on_an_http_cluster() {
    let dead = MockTcp::refusing_addr();
    let good = MockHttp::start("good").await;
    let outlier = "{ consecutive_connect_failures: 3, base_ejection_time: 1h }";
    let p = TestProxy::start(&http_config(outlier, &[dead, good.addr()])).await;
    let client = h1_client();
    for _ in 0..30 {
        get(&client, &p.url("/"), &[]).await;
    }
    let snapshot = p.proxy().snapshots().load();
    let state = &snapshot.cluster("c").unwrap().endpoints[0].state;
    assert_eq!(
        state.connect_failures(),
        3,
        "no connect attempt after the ejection"
    );
    assert!(state.health().contains(Unhealthy::Ejected));
    assert_eq!(good.requests(), 27);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_connect_failures_eject_on_a_tcp_cluster() {
    let dead = MockTcp::refusing_addr();
    let echo = MockTcp::echo().await;
    let yaml = format!(
        "listeners:
  - name: l
    address: 127.0.0.1:0
    protocol: tcp
    cluster: c
    tcp: {{ connect_attempts: 2 }}
clusters:
  - name: c
    outlier_detection: {{ consecutive_connect_failures: 3, base_ejection_time: 1h }}
    endpoints: [ {dead}, {} ]
",
        echo.addr()
    );
    let p = TestProxy::start(&yaml).await;
    for i in 0..20u8 {
        // Every connection works: a refused connect is retried on the other endpoint.
        let mut s = TcpStream::connect(p.addr).await.unwrap();
        s.write_all(&[i]).await.unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.unwrap();
        assert_eq!(b[0], i);
    }
    let snapshot = p.proxy().snapshots().load();
    let state = &snapshot.cluster("c").unwrap().endpoints[0].state;
    assert_eq!(state.connect_failures(), 3);
    assert!(state.health().contains(Unhealthy::Ejected));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_ejection_percent_keeps_two_of_four_failing_endpoints() {
    let mut mocks = Vec::new();
    for i in 0..4 {
        mocks.push(
            MockHttp::builder(format!("bad{i}"))
                .fail_with(StatusCode::BAD_GATEWAY)
                .start()
                .await,
        );
    }
    let addrs: Vec<SocketAddr> = mocks.iter().map(MockHttp::addr).collect();
    let outlier = "{ consecutive_gateway_errors: 3, base_ejection_time: 1h }";
    let p = TestProxy::start(&http_config(outlier, &addrs)).await;
    let client = h1_client();
    for _ in 0..60 {
        assert_eq!(get(&client, &p.url("/"), &[]).await.status, 502);
    }
    let ejected = (0..4)
        .filter(|&i| health(&p, i).contains(Unhealthy::Ejected))
        .count();
    assert_eq!(ejected, 2, "50 % of four endpoints at most");
    let snapshot = p.proxy().snapshots().load();
    let cluster = snapshot.cluster("c").unwrap();
    assert_eq!(cluster.outlier_detector().unwrap().ejected_count(), 2);
    assert_eq!(cluster.panic_picks(), 0, "two of four healthy is not panic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checked_endpoints_wait_for_their_first_pass_and_panic_fails_open() {
    // The health check probes a path that always fails, so the endpoint never passes one: it
    // stays out of rotation, the cluster panics and serves anyway, counting each such pick.
    let ep = MockHttp::start("ep").await;
    let yaml = format!(
        "listeners:
  - name: l
    address: 127.0.0.1:0
    routes: [ {{ cluster: c }} ]
clusters:
  - name: c
    health_check: {{ interval: 50ms, http: {{ path: /status/500 }} }}
    endpoints: [ {} ]
",
        ep.addr()
    );
    let p = TestProxy::start(&yaml).await;
    let checked = || {
        let s = p.proxy().snapshots().load();
        s.cluster("c").unwrap().endpoints[0].state.check.counts().0 >= 2
    };
    assert!(wait_until(SECS_10, checked).await);
    assert!(health(&p, 0).contains(Unhealthy::ActiveCheck));
    for _ in 0..5 {
        assert_eq!(get(&h1_client(), &p.url("/"), &[]).await.status, 200);
    }
    let snapshot = p.proxy().snapshots().load();
    assert_eq!(snapshot.cluster("c").unwrap().panic_picks(), 5);
}

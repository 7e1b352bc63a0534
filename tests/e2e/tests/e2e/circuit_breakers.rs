//! Circuit breakers: past a cluster's limit, requests get 503 at once (with the limit named in
//! `x-weir-overloaded`) while the work already admitted completes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "end-to-end test: a panic is a failed test"
)]

use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use weir_e2e::{TestProxy, get, h1_client};
use weir_test_support::{MockHttp, MockTcp, wait_until};

const SECS_10: Duration = Duration::from_secs(10);

fn config(protocol: &str, breakers: &str, endpoint: std::net::SocketAddr) -> String {
    let listener = if protocol == "tcp" {
        "protocol: tcp\n    cluster: c"
    } else {
        "routes: [ { cluster: c } ]"
    };
    format!(
        "listeners:
  - name: l
    address: 127.0.0.1:0
    {listener}
clusters:
  - name: c
    circuit_breakers: {breakers}
    endpoints: [ {endpoint} ]
"
    )
}

fn stats(p: &TestProxy) -> weir_proxy::BreakerStats {
    p.proxy()
        .snapshots()
        .load()
        .cluster("c")
        .unwrap()
        .breaker_stats()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_eleventh_concurrent_request_gets_503_and_the_first_ten_complete() {
    let slow = MockHttp::builder("slow")
        .delay(Duration::from_millis(1500))
        .start()
        .await;
    let p = TestProxy::start(&config("http", "{ max_requests: 10 }", slow.addr())).await;
    let url = p.url("/");
    let first_ten: Vec<_> = (0..10)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { get(&h1_client(), &url, &[]).await })
        })
        .collect();
    assert!(
        wait_until(SECS_10, || slow.requests() == 10).await,
        "ten reached the endpoint"
    );
    let eleventh = get(&h1_client(), &url, &[]).await;
    assert_eq!(eleventh.status, 503);
    assert_eq!(eleventh.header("x-weir-overloaded"), "max_requests");
    assert_eq!(
        slow.requests(),
        10,
        "the refused request never reached the endpoint"
    );
    for r in first_ten {
        assert_eq!(r.await.unwrap().status, 200);
    }
    let s = stats(&p);
    assert_eq!((s.requests, s.request_overflows), (0, 1));
    // With room again, requests pass.
    assert_eq!(get(&h1_client(), &url, &[]).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_bounds_upstream_connections() {
    let slow = MockHttp::builder("slow")
        .delay(Duration::from_millis(1500))
        .start()
        .await;
    let p = TestProxy::start(&config("http", "{ max_connections: 2 }", slow.addr())).await;
    let url = p.url("/");
    let two: Vec<_> = (0..2)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { get(&h1_client(), &url, &[]).await })
        })
        .collect();
    assert!(wait_until(SECS_10, || slow.requests() == 2).await);
    // Both HTTP/1.1 connections are busy and no third may be opened.
    let third = get(&h1_client(), &url, &[]).await;
    assert_eq!(third.status, 503);
    assert_eq!(third.header("x-weir-overloaded"), "max_connections");
    for r in two {
        assert_eq!(r.await.unwrap().status, 200);
    }
    assert_eq!(slow.connections(), 2);
    assert_eq!(stats(&p).connection_overflows, 1);
}

#[tokio::test]
async fn l4_connections_count_against_max_requests() {
    let echo = MockTcp::echo().await;
    let p = TestProxy::start(&config("tcp", "{ max_requests: 2 }", echo.addr())).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(weir_e2e::echo_round_trip(p.addr, b"hi").await);
    }
    let mut third = TcpStream::connect(p.addr).await.unwrap();
    let mut b = [0u8; 2];
    let n = tokio::time::timeout(SECS_10, third.read(&mut b))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "the third connection is closed");
    assert_eq!(echo.connections(), 2);
    assert_eq!(stats(&p).request_overflows, 1);
}

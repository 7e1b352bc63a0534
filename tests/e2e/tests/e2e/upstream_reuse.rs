//! Upstream connection reuse under client churn (issue #11, scenario 7): clients that each open a
//! connection, make one request and close must not make weir open upstream connections — the
//! pooled HTTP/1.1 connections go back to the pool as each answer ends, whoever closes first.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "end-to-end test: a panic is a failed test"
)]

use std::net::SocketAddr;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use weir_e2e::TestProxy;
use weir_test_support::MockHttp;

/// Client connections in the churn, and how many run at once.
const CLIENTS: usize = 500;
const CONCURRENT: usize = 10;

async fn proxy_to(ep: &MockHttp, max_idle: usize) -> TestProxy {
    TestProxy::start(&format!(
        "listeners:
  - name: l
    address: 127.0.0.1:0
    routes:
      - cluster: c
clusters:
  - name: c
    protocol: http1
    pool_max_idle_per_endpoint: {max_idle}
    endpoints: [ {} ]
",
        ep.addr()
    ))
    .await
}

/// One client connection: connect, one GET of `path` read to its end, close. Returns the status.
async fn one_request_connection(proxy: SocketAddr, path: &str) -> u16 {
    let stream = tokio::net::TcpStream::connect(proxy).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let driver = tokio::spawn(conn);
    let req = http::Request::get(path)
        .header(http::header::HOST, proxy.to_string())
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(req).await.unwrap();
    let status = response.status().as_u16();
    response.into_body().collect().await.unwrap();
    // Closing the connection right after the answer, as a churning client does.
    drop(sender);
    driver.await.unwrap().unwrap();
    status
}

/// `CLIENTS` one-request connections, `CONCURRENT` at a time, each worker strictly sequential.
async fn churn(proxy: SocketAddr, path: &'static str) {
    let workers: Vec<_> = (0..CONCURRENT)
        .map(|_| {
            tokio::spawn(async move {
                for _ in 0..CLIENTS / CONCURRENT {
                    assert_eq!(one_request_connection(proxy, path).await, 200);
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
}

#[tokio::test]
async fn sequential_churning_clients_share_one_upstream_connection() {
    let ep = MockHttp::start("ep").await;
    let p = proxy_to(&ep, 64).await;
    for _ in 0..CLIENTS {
        assert_eq!(one_request_connection(p.addr, "/").await, 200);
    }
    assert_eq!(ep.requests(), CLIENTS as u64);
    assert_eq!(
        ep.connections(),
        1,
        "one client at a time never needs a second upstream connection"
    );
}

#[tokio::test]
async fn concurrent_churning_clients_open_no_more_upstream_connections_than_in_flight() {
    let ep = MockHttp::start("ep").await;
    let p = proxy_to(&ep, 64).await;
    // A body of several frames, so the last frame and the end of the exchange are observed
    // separately.
    churn(p.addr, "/bytes/100000").await;
    churn(p.addr, "/").await;
    assert_eq!(ep.requests(), 2 * CLIENTS as u64);
    // At most CONCURRENT exchanges are ever in flight, so a pool that takes every connection
    // back needs at most CONCURRENT of them, however the 1,000 client connections come and go.
    assert!(
        ep.connections() <= CONCURRENT as u64,
        "{} upstream connections for {} churning clients, {CONCURRENT} at a time",
        ep.connections(),
        2 * CLIENTS
    );
}

#[tokio::test]
async fn churn_above_the_idle_cap_waits_for_pooled_connections_instead_of_opening_more() {
    let ep = MockHttp::start("ep").await;
    // Two idle connections kept, ten exchanges at once: a connection opened beyond the two would
    // be closed again at its release, so one per burst would be opened and lost.
    let p = proxy_to(&ep, 2).await;
    churn(p.addr, "/").await;
    assert_eq!(ep.requests(), CLIENTS as u64);
    assert!(
        ep.connections() <= CONCURRENT as u64,
        "{} upstream connections for {CLIENTS} churning clients, {CONCURRENT} at a time, \
         2 kept idle",
        ep.connections(),
    );
}

//! Graceful shutdown of the HTTP proxy: with 50 streaming responses in flight (25 over
//! keep-alive HTTP/1.1 connections, 25 streams on one HTTP/2 connection), shutdown stops
//! accepting at once, yet every response already running completes byte-exact before weir
//! reports a clean drain.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "end-to-end test: a panic is a failed test"
)]

use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use weir_e2e::{TestClient, TestProxy, h1_client, h2_client};
use weir_test_support::{DRIP_CHUNK, MockHttp, pattern_byte};

/// 20 chunks, 50 ms apart: each response is in flight for about a second.
const CHUNKS: usize = 20;

async fn start_stream(client: &TestClient, url: &str) -> http::Response<Incoming> {
    let req = http::Request::get(url)
        .body(http_body_util::Full::default())
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .expect("response headers in time")
        .expect("request sent")
}

/// Reads the rest of `res` and checks every byte against the mock's pattern.
async fn finish_exact(res: http::Response<Incoming>) -> usize {
    let body = res
        .into_body()
        .collect()
        .await
        .expect("the stream completes")
        .to_bytes();
    for (i, b) in body.iter().enumerate() {
        assert_eq!(*b, pattern_byte(i as u64), "byte {i} differs");
    }
    body.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_streams_in_flight_finish_byte_exact_during_shutdown() {
    let ep = MockHttp::start("drip").await;
    let p = TestProxy::start(&format!(
        "listeners:
  - name: l
    address: 127.0.0.1:0
    routes: [ {{ cluster: c }} ]
clusters:
  - name: c
    endpoints: [ {} ]
",
        ep.addr()
    ))
    .await;
    let url = p.url(&format!("/drip/{CHUNKS}/50"));
    let addr = p.addr;
    let h1: Vec<TestClient> = (0..25).map(|_| h1_client()).collect();
    let h2 = h2_client();
    let mut streams = Vec::new();
    for c in &h1 {
        streams.push(start_stream(c, &url).await);
    }
    for _ in 0..25 {
        streams.push(start_stream(&h2, &url).await);
    }
    assert_eq!(streams.len(), 50);
    assert!(streams.iter().all(|r| r.status() == http::StatusCode::OK));

    let shutdown = tokio::spawn(p.weir.shutdown(Duration::from_secs(20)));
    // New connections are refused once shutdown has begun (the listener is closed).
    let refused = async {
        loop {
            if tokio::net::TcpStream::connect(addr).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), refused)
        .await
        .expect("the listener stops accepting");

    let lengths = futures_util::future::join_all(streams.into_iter().map(finish_exact)).await;
    assert!(
        lengths.iter().all(|&n| n == CHUNKS * DRIP_CHUNK),
        "every stream is whole: {lengths:?}"
    );
    assert!(
        shutdown.await.unwrap(),
        "everything drained within the grace period"
    );
}

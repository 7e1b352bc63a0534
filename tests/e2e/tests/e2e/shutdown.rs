//! Graceful shutdown of the HTTP proxy: with 50 streaming responses in flight (25 over
//! keep-alive HTTP/1.1 connections, 25 streams on one HTTP/2 connection), shutdown stops
//! accepting at once, yet every response already running completes byte-exact before weir
//! reports a clean drain. A reload asked for during the drain is refused with 503 and binds
//! nothing: it would restart what the shutdown stopped.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "end-to-end test: a panic is a failed test"
)]

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::Value;
use weir::Weir;
use weir_e2e::{TestClient, TestProxy, get, h1_client, h2_client, send};
use weir_test_support::{DRIP_CHUNK, MockHttp, pattern_byte, wait_until};

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

/// `POST /reload` while a graceful shutdown drains a slow request: 503 saying why, the new
/// listener of the reloaded file is not bound, nothing is counted, and the drain completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_during_the_drain_is_refused_and_binds_nothing() {
    let slow = MockHttp::start("slow").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("weir.yaml");
    let yaml = |extra: &str| {
        format!(
            "admin: {{ address: 127.0.0.1:0 }}
listeners:
  - name: l
    address: 127.0.0.1:0
    routes: [ {{ cluster: c }} ]
{extra}clusters:
  - name: c
    endpoints: [ {} ]
",
            slow.addr()
        )
    };
    std::fs::write(&file, yaml("")).unwrap();
    let weir = Weir::start_file(&file).await.unwrap();
    let admin = weir.admin_addr().unwrap();
    // Long enough that the request still drains while the admin API is asked below, even on
    // a loaded machine.
    let url = format!("http://{}/delay/6000", weir.proxy().listener_addrs()[0].1);
    let in_flight = tokio::spawn(async move { get(&h1_client(), &url, &[]).await });
    assert!(wait_until(Duration::from_secs(10), || slow.requests() == 1).await);

    let shutdown = tokio::spawn(weir.shutdown(Duration::from_secs(20)));
    let client = h1_client();
    let ready = format!("http://{admin}/ready");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while get(&client, &ready, &[]).await.status != StatusCode::SERVICE_UNAVAILABLE {
        assert!(tokio::time::Instant::now() < deadline, "never shut down");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // A free port for a listener the reloaded file adds.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        &file,
        yaml(&format!(
            "  - name: extra\n    address: 127.0.0.1:{port}\n    routes: [ {{ cluster: c }} ]\n"
        )),
    )
    .unwrap();
    let req = http::Request::post(format!("http://{admin}/reload"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = send(&client, req).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("shutting down"),
        "{body}"
    );

    let listeners: Value = serde_json::from_slice(
        &get(&client, &format!("http://{admin}/listeners"), &[])
            .await
            .body,
    )
    .unwrap();
    let names: Vec<&str> = listeners["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    // The draining proxy lists none of its stopped listeners, and no new one.
    assert!(!names.contains(&"extra"), "{listeners}");
    let metrics = get(&client, &format!("http://{admin}/metrics"), &[])
        .await
        .text();
    assert!(
        metrics.contains("weir_config_reloads_total{result=\"applied\"} 0")
            && metrics.contains("weir_config_reloads_total{result=\"rejected\"} 0"),
        "a refusal is not a rejected config: {metrics}"
    );

    assert_eq!(in_flight.await.unwrap().status, StatusCode::OK);
    assert!(shutdown.await.unwrap(), "drained in time");
}

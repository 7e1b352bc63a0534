//! `GET /ready` (issue #9): 200 once weir has started, 503 with a reason until every cluster's
//! service discovery has answered once, and from the moment a graceful shutdown begins — while
//! a slow request still drains — so a load balancer in front stops sending.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "end-to-end test: a panic is a failed test"
)]

use std::time::Duration;

use http::StatusCode;
use serde_json::{Value, json};
use weir::Weir;
use weir_e2e::{TestProxy, get, h1_client};
use weir_test_support::{MockHttp, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_after_start_and_503_while_a_graceful_shutdown_drains() {
    let slow = MockHttp::builder("slow")
        .delay(Duration::from_secs(2))
        .start()
        .await;
    let p = TestProxy::start(&format!(
        "admin: {{ address: 127.0.0.1:0 }}
listeners:
  - name: l
    address: 127.0.0.1:0
    routes: [ {{ cluster: c }} ]
clusters:
  - name: c
    endpoints: [ {} ]
",
        slow.addr()
    ))
    .await;
    let ready_url = format!("http://{}/ready", p.weir.admin_addr().unwrap());
    let client = h1_client();
    let ready = get(&client, &ready_url, &[]).await;
    assert_eq!(ready.status, StatusCode::OK);
    let body: Value = serde_json::from_slice(&ready.body).unwrap();
    assert_eq!(body, json!({ "ready": true }));

    // A slow request in flight, then a graceful shutdown.
    let url = p.url("/slow");
    let in_flight = tokio::spawn(async move { get(&h1_client(), &url, &[]).await });
    assert!(wait_until(Duration::from_secs(10), || slow.requests() == 1).await);
    let weir = p.weir;
    let shutdown = tokio::spawn(weir.shutdown(Duration::from_secs(20)));

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let not_ready = loop {
        let r = get(&h1_client(), &ready_url, &[]).await;
        if r.status == StatusCode::SERVICE_UNAVAILABLE {
            break r;
        }
        assert!(tokio::time::Instant::now() < deadline, "still {}", r.status);
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let body: Value = serde_json::from_slice(&not_ready.body).unwrap();
    assert_eq!(body, json!({ "ready": false, "reason": "shutting down" }));
    assert!(
        !in_flight.is_finished(),
        "503 while the slow request still drains"
    );

    let answered = in_flight.await.unwrap();
    assert_eq!(answered.status, StatusCode::OK);
    assert!(shutdown.await.unwrap(), "drained in time");
}

/// A cluster fed by an endpoints file that does not exist yet keeps weir unready (503 naming
/// the cluster) until the file appears and is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_until_initial_discovery_has_answered() {
    let ep = MockHttp::start("ep").await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("weir.yaml");
    std::fs::write(
        &config,
        "admin: { address: 127.0.0.1:0 }
listeners:
  - name: l
    address: 127.0.0.1:0
    routes: [ { cluster: api } ]
clusters:
  - name: api
    discovery:
      file: { path: eps.yaml, interval: 50ms }
",
    )
    .unwrap();
    let weir = Weir::start_file(&config).await.unwrap();
    let ready_url = format!("http://{}/ready", weir.admin_addr().unwrap());
    let client = h1_client();
    let r = get(&client, &ready_url, &[]).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["ready"], false);
    assert_eq!(
        body["reason"],
        "waiting for the first service discovery answer of cluster(s) api"
    );

    std::fs::write(
        dir.path().join("eps.yaml"),
        format!("endpoints:\n  - {{ address: {} }}\n", ep.addr()),
    )
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = get(&client, &ready_url, &[]).await;
        if r.status == StatusCode::OK {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never ready: {}",
            r.text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(weir.shutdown(Duration::from_secs(5)).await);
}

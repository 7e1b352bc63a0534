//! What a reload keeps: an endpoint that remains keeps its latency estimate (`peak_ewma`), its
//! request count and its pooled upstream connections (no new connection after the reload), and
//! a request already running when a reload moves its route to another cluster finishes on the
//! snapshot it started with — the old cluster's endpoint and the old route's header edits.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "end-to-end test: a panic is a failed test"
)]

use std::time::Duration;

use weir::Weir;
use weir_e2e::{get, h1_client};
use weir_test_support::{MockHttp, wait_until};

fn write(path: &std::path::Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

/// A listener whose route sends to `cluster` and tags responses `x-config: {tag}`, and
/// clusters `ewma` (peak_ewma over `a`, `b`) and `other` (`c`).
fn config(tag: &str, cluster: &str, a: &MockHttp, b: &MockHttp, c: &MockHttp) -> String {
    format!(
        "admin: {{ address: 127.0.0.1:0 }}
listeners:
  - name: l
    address: 127.0.0.1:0
    routes:
      - cluster: {cluster}
        response_headers: {{ set: {{ x-config: {tag} }} }}
clusters:
  - name: ewma
    lb_policy: peak_ewma
    endpoints: [ {}, {} ]
  - name: other
    endpoints: [ {} ]
",
        a.addr(),
        b.addr(),
        c.addr()
    )
}

/// `GET /clusters/ewma` on the admin API: each endpoint's (ewma_latency_ms, requests_total).
async fn ewma_view(weir: &Weir) -> Vec<(Option<f64>, u64)> {
    let admin = weir.admin_addr().unwrap();
    let r = get(&h1_client(), &format!("http://{admin}/clusters/ewma"), &[]).await;
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    v["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["ewma_latency_ms"].as_f64(),
                e["requests_total"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_that_remain_keep_their_ewma_counts_and_pooled_connections() {
    let (a, b, c) = (
        MockHttp::start("a").await,
        MockHttp::start("b").await,
        MockHttp::start("c").await,
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("weir.yaml");
    write(&file, &config("one", "ewma", &a, &b, &c));
    let weir = Weir::start_file(&file).await.unwrap();
    let url = format!("http://{}/", weir.proxy().listener_addrs()[0].1);
    // One request at a time: the pool needs one connection per endpoint.
    let client = h1_client();
    for _ in 0..40 {
        assert_eq!(get(&client, &url, &[]).await.header("x-config"), "one");
    }
    let before = ewma_view(&weir).await;
    // peak_ewma may keep to the endpoint it measured (an unmeasured one costs a pessimistic
    // default), so at least one has an estimate.
    assert!(
        before.iter().any(|(ewma, n)| ewma.is_some() && *n > 0),
        "a latency estimate: {before:?}"
    );
    let connections = (a.connections(), b.connections());

    // A reload that changes the route, not the cluster.
    write(&file, &config("two", "ewma", &a, &b, &c));
    weir.reload_file().unwrap();
    assert_eq!(
        ewma_view(&weir).await,
        before,
        "latency estimates and request counts carried over"
    );
    for _ in 0..40 {
        assert_eq!(get(&client, &url, &[]).await.header("x-config"), "two");
    }
    assert_eq!(
        (a.connections(), b.connections()),
        connections,
        "the pooled upstream connections served on after the reload"
    );
    let after = ewma_view(&weir).await;
    assert_eq!(
        after.iter().map(|e| e.1).sum::<u64>(),
        before.iter().map(|e| e.1).sum::<u64>() + 40,
        "request counts went on from where they were"
    );
    assert!(weir.shutdown(Duration::from_secs(5)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_finishes_on_the_snapshot_it_started_with() {
    let a = MockHttp::builder("a")
        .delay(Duration::from_millis(800))
        .start()
        .await;
    let (b, c) = (MockHttp::start("b").await, MockHttp::start("c").await);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("weir.yaml");
    // `ewma` has a twice: every request of the old config reaches the slow endpoint.
    write(
        &file,
        &config("one", "ewma", &a, &a, &c).replacen(
            &format!("[ {}, {} ]", a.addr(), a.addr()),
            &format!("[ {} ]", a.addr()),
            1,
        ),
    );
    let weir = Weir::start_file(&file).await.unwrap();
    let url = format!("http://{}/", weir.proxy().listener_addrs()[0].1);
    let in_flight = tokio::spawn({
        let url = url.clone();
        async move { get(&h1_client(), &url, &[]).await }
    });
    assert!(wait_until(Duration::from_secs(10), || a.requests() == 1).await);

    // The route now sends to `other` and tags `two`.
    write(&file, &config("two", "other", &a, &b, &c));
    weir.reload_file().unwrap();
    let now = get(&h1_client(), &url, &[]).await;
    assert_eq!(
        (now.header("x-endpoint"), now.header("x-config")),
        ("c", "two")
    );

    let old = in_flight.await.unwrap();
    assert_eq!(old.status, http::StatusCode::OK);
    assert_eq!(
        (old.header("x-endpoint"), old.header("x-config")),
        ("a", "one"),
        "the request that started before the reload finished on the old route and cluster"
    );
    assert!(weir.shutdown(Duration::from_secs(5)).await);
}

//! Draining an endpoint through the admin API: it gets no new requests, the one in flight
//! finishes, undrain brings it back, and a configured token guards both calls.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "end-to-end test: a panic is a failed test"
)]

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;
use weir_core::Unhealthy;
use weir_e2e::{Reply, TestProxy, get, h1_client, send};
use weir_test_support::{MockHttp, wait_until};

const TOKEN: &str = "0123456789abcdef-test";

async fn post(url: &str, token: Option<&str>) -> Reply {
    let mut req = http::Request::post(url);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    send(&h1_client(), req.body(Full::new(Bytes::new())).unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_endpoint_finishes_its_request_and_gets_no_new_ones() {
    let slow = MockHttp::builder("slow")
        .delay(Duration::from_millis(300))
        .start()
        .await;
    let other = MockHttp::start("other").await;
    let yaml = format!(
        "admin: {{ address: 127.0.0.1:0, token: {TOKEN} }}
listeners:
  - name: l
    address: 127.0.0.1:0
    routes: [ {{ cluster: c }} ]
clusters:
  - name: c
    endpoints: [ {}, {} ]
",
        slow.addr(),
        other.addr()
    );
    let p = TestProxy::start(&yaml).await;
    let admin = p.weir.admin_addr().unwrap();
    let drain = format!("http://{admin}/clusters/c/endpoints/{}/drain", slow.addr());

    // A request is in flight on the slow endpoint when it is drained (round robin sends one of
    // two concurrent requests to each endpoint).
    let in_flight: Vec<_> = (0..2)
        .map(|_| {
            let url = p.url("/");
            tokio::spawn(async move { get(&h1_client(), &url, &[]).await })
        })
        .collect();
    assert!(wait_until(Duration::from_secs(10), || slow.requests() == 1).await);

    let refused = post(&drain, None).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        post(&drain, Some("wrong-token-wrong-token")).await.status,
        401
    );
    let snapshot = p.proxy().snapshots().load();
    let state = &snapshot.cluster("c").unwrap().endpoints[0].state;
    assert!(state.is_healthy(), "a refused call changes nothing");

    let ok = post(&drain, Some(TOKEN)).await;
    assert_eq!(ok.status, StatusCode::OK);
    let view: serde_json::Value = serde_json::from_slice(&ok.body).unwrap();
    assert_eq!(view["health"], "drained");
    assert!(state.health().contains(Unhealthy::Drained));

    let client = h1_client();
    for _ in 0..10 {
        let r = get(&client, &p.url("/"), &[]).await;
        assert_eq!(r.header("x-endpoint"), "other");
    }
    let mut finished_on_slow = 0;
    for r in in_flight {
        let r = r.await.unwrap();
        assert_eq!(r.status, StatusCode::OK);
        finished_on_slow += usize::from(r.header("x-endpoint") == "slow");
    }
    assert_eq!(
        finished_on_slow, 1,
        "the request in flight on the drained endpoint finished"
    );
    assert_eq!(slow.requests(), 1);

    let undrain = drain.replace("/drain", "/undrain");
    assert_eq!(post(&undrain, Some(TOKEN)).await.status, StatusCode::OK);
    assert!(state.is_healthy());
    let mut seen = false;
    for _ in 0..4 {
        seen |= get(&client, &p.url("/"), &[]).await.header("x-endpoint") == "slow";
    }
    assert!(seen, "undrained endpoints take traffic again");

    // Reads need no token; wrong method, cluster or endpoint get proper errors.
    let r = get(&client, &format!("http://{admin}/clusters"), &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(get(&client, &drain, &[]).await.status, 405);
    let missing = format!("http://{admin}/clusters/c/endpoints/127.0.0.1:1/drain");
    assert_eq!(post(&missing, Some(TOKEN)).await.status, 404);
    let bad = format!("http://{admin}/clusters/c/endpoints/nonsense/drain");
    assert_eq!(post(&bad, Some(TOKEN)).await.status, 400);
}

//! etcd service discovery through the running proxy, against a real `etcd` server: a key added
//! under the prefix is routed to, and a deleted one is not, within 1 s and without a reload; a
//! bad value is skipped and counted in `/metrics`; with etcd killed the last set keeps serving;
//! with etcd back the watch resumes. Skips with a printed reason when etcd is not installed
//! (fails under `CI=true`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "end-to-end test: a panic is a failed test"
)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use http::StatusCode;
use weir_e2e::{TestProxy, answering, get, h1_client, until_answering};
use weir_test_support::{Etcd, MockHttp};

fn value(mock: &MockHttp) -> String {
    format!(
        r#"{{"address":"{}","weight":1,"metadata":{{"from":"e2e"}}}}"#,
        mock.addr()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_keys_drive_routing_and_survive_an_etcd_restart() {
    let Some(mut etcd) = Etcd::start().await else {
        return;
    };
    let (a, b, c) = (
        MockHttp::start("a").await,
        MockHttp::start("b").await,
        MockHttp::start("c").await,
    );
    etcd.put("/weir/api/a", &value(&a)).await;
    let p = TestProxy::start(&format!(
        "admin: {{ address: 127.0.0.1:0 }}
listeners:
  - name: l
    address: 127.0.0.1:0
    routes: [ {{ cluster: api }} ]
clusters:
  - name: api
    discovery:
      etcd: {{ endpoints: [ \"{}\" ], prefix: /weir/api/ }}
",
        etcd.url()
    ))
    .await;
    let client = h1_client();
    // No static endpoints: 503 until the first list arrives.
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&client, &p.url("/"), &[]).await.status != StatusCode::OK {
        assert!(
            Instant::now() < deadline,
            "etcd discovery never fed the cluster"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    until_answering(&client, &p, &["a"]).await;

    // Add: routed to within 1 s of the put, no reload.
    etcd.put("/weir/api/b", &value(&b)).await;
    let added = until_answering(&client, &p, &["a", "b"]).await;
    // Delete: no longer routed to within 1 s.
    etcd.delete("/weir/api/a").await;
    let deleted = until_answering(&client, &p, &["b"]).await;
    eprintln!("etcd discovery: add followed in {added:?}, delete in {deleted:?}");
    assert!(added < Duration::from_secs(1), "add took {added:?}");
    assert!(deleted < Duration::from_secs(1), "delete took {deleted:?}");

    // A bad value is skipped and counted; routing is untouched.
    etcd.put("/weir/api/bad", r#"{"address":"not-an-address"}"#)
        .await;
    let metrics = format!("http://{}/metrics", p.weir.admin_addr().unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !get(&client, &metrics, &[])
        .await
        .text()
        .contains("\nweir_discovery_bad_values_total{source=\"etcd\"} 1\n")
    {
        assert!(Instant::now() < deadline, "the bad value was never counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        answering(&client, &p, 4).await,
        BTreeSet::from(["b".to_owned()])
    );

    // etcd dies: the last set keeps serving (every request a 200 from b) for a few seconds,
    // through the reconnect attempts.
    etcd.kill().await;
    let down = Instant::now();
    while down.elapsed() < Duration::from_secs(3) {
        assert_eq!(
            answering(&client, &p, 4).await,
            BTreeSet::from(["b".to_owned()])
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // etcd comes back (same data, same port): the watch resumes, so a key put now is routed
    // to. The reconnect backoff is at most 5 s.
    etcd.restart().await;
    etcd.put("/weir/api/c", &value(&c)).await;
    let resumed = until_answering(&client, &p, &["b", "c"]).await;
    eprintln!("etcd discovery: a key put after the restart followed in {resumed:?}");
    assert!(
        resumed < Duration::from_secs(15),
        "resumed after {resumed:?}"
    );
}

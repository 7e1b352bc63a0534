//! DNS service discovery through the running proxy: a cluster with no static endpoints gets
//! them from SRV records (ports and weights), follows a changed answer within the TTL without
//! a reload, and keeps serving its last good set when the name disappears.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "end-to-end test: a panic is a failed test"
)]

use std::time::{Duration, Instant};

use http::StatusCode;
use weir_e2e::{TestProxy, get, h1_client};
use weir_test_support::{MockDns, MockHttp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_discovery_feeds_the_cluster_and_follows_changes() {
    let (a, b) = (MockHttp::start("a").await, MockHttp::start("b").await);
    let dns = MockDns::start().await;
    let srv = "_http._tcp.api.test.";
    dns.set_ips("a.test.", &[a.addr().ip()], 1);
    dns.set_ips("b.test.", &[b.addr().ip()], 1);
    dns.set_srv(
        srv,
        &[
            ("a.test.", a.addr().port(), 1),
            ("b.test.", b.addr().port(), 3),
        ],
        1,
    );
    let p = TestProxy::start(&format!(
        "listeners:
  - name: l
    address: 127.0.0.1:0
    routes: [ {{ cluster: api }} ]
clusters:
  - name: api
    discovery:
      dns: {{ name: \"{srv}\", record: srv, nameservers: [ {} ], min_ttl: 100ms }}
",
        dns.addr()
    ))
    .await;
    let client = h1_client();

    // No static endpoints: 503 until the first answer arrives.
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&client, &p.url("/"), &[]).await.status != StatusCode::OK {
        assert!(Instant::now() < deadline, "discovery never fed the cluster");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (a0, b0) = (a.requests(), b.requests());
    for _ in 0..40 {
        assert_eq!(get(&client, &p.url("/"), &[]).await.status, StatusCode::OK);
    }
    // Round robin over weights 1 and 3: exactly a quarter to a.
    assert_eq!(
        (a.requests() - a0, b.requests() - b0),
        (10, 30),
        "SRV weights apply"
    );

    // The answer changes to `a` only; weir follows within the 1 s TTL, without a reload.
    let changed = Instant::now();
    dns.set_srv(srv, &[("a.test.", a.addr().port(), 1)], 1);
    loop {
        let b_before = b.requests();
        for _ in 0..8 {
            get(&client, &p.url("/"), &[]).await;
        }
        if b.requests() == b_before {
            break;
        }
        assert!(
            changed.elapsed() < Duration::from_secs(10),
            "still sending to b"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        changed.elapsed() < Duration::from_secs(3),
        "followed after {:?}",
        changed.elapsed()
    );

    // The name disappears: the last good set keeps serving.
    dns.set_srv(srv, &[], 1);
    let asked = dns.queries();
    let deadline = Instant::now() + Duration::from_secs(10);
    while dns.queries() < asked + 2 {
        assert!(Instant::now() < deadline, "weir stopped asking");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..10 {
        let r = get(&client, &p.url("/"), &[]).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("x-endpoint"), "a");
    }
}

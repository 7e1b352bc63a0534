//! The decision record (issue #9): a trusted client that sends `x-weir-debug: 1` learns why
//! its request went where it went (policy, candidates with scores, exclusions, retries); an
//! untrusted one gets nothing, and no endpoint ever sees `x-weir-debug`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "end-to-end test: a panic is a failed test"
)]

use std::net::SocketAddr;

use http::StatusCode;
use weir_core::Unhealthy;
use weir_e2e::{TestProxy, endpoint_list, get, h1_client};
use weir_test_support::MockHttp;

fn config(trusted: &str, policy: &str, route_extra: &str, endpoints: &[SocketAddr]) -> String {
    format!(
        "listeners:
  - name: l
    address: 127.0.0.1:0
    http: {{ debug_trusted: [ {trusted} ] }}
    routes:
      - cluster: c
{route_extra}
clusters:
  - name: c
    lb_policy: {policy}
    panic_threshold: 0
    endpoints:
{}",
        endpoint_list(endpoints, 6)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_client_gets_the_record_with_candidates_exclusions_and_the_pick() {
    let mocks = [
        MockHttp::start("a").await,
        MockHttp::start("b").await,
        MockHttp::start("c").await,
    ];
    let addrs: Vec<SocketAddr> = mocks.iter().map(MockHttp::addr).collect();
    let p = TestProxy::start(&config("127.0.0.1", "least_request", "", &addrs)).await;
    let snapshot = p.proxy().snapshots().load();
    let down = &snapshot.cluster("c").unwrap().endpoints[2];
    let _ = down.state.set_unhealthy(Unhealthy::ActiveCheck, true, 0);
    let client = h1_client();
    for _ in 0..20 {
        let r = get(&client, &p.url("/headers"), &[("x-weir-debug", "1")]).await;
        assert_eq!(r.status, StatusCode::OK);
        let record = r.header("x-weir-decision").to_owned();
        let name = r.header("x-endpoint");
        let mock = mocks.iter().find(|m| m.name() == name).unwrap();
        assert!(record.starts_with("policy=least_request;"), "{record}");
        assert!(
            record.contains(&format!("chose={};", mock.addr())),
            "{record}"
        );
        assert!(record.contains("candidates="), "{record}");
        assert!(record.contains("(in_flight="), "{record}");
        assert!(record.contains("excluded=1(unhealthy=1)"), "{record}");
        assert!(record.contains("attempts=1(first "), "{record}");
        assert!(!record.contains(&addrs[2].to_string()), "{record}");
        assert!(
            !r.text().contains("x-weir-debug"),
            "never forwarded: {}",
            r.text()
        );
    }
    let _ = down.state.set_unhealthy(Unhealthy::ActiveCheck, false, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_record_lists_a_retry_and_why() {
    let bad = MockHttp::builder("bad")
        .fail_with(StatusCode::SERVICE_UNAVAILABLE)
        .start()
        .await;
    let good = MockHttp::start("good").await;
    let route = "        retry: { attempts: 2, on: [ \"503\" ], backoff: { base: 1ms } }";
    let yaml = config(
        "127.0.0.0/8",
        "round_robin",
        route,
        &[bad.addr(), good.addr()],
    );
    let p = TestProxy::start(&format!("{yaml}    retry_budget: {{ percent: 100 }}\n")).await;
    let client = h1_client();
    let mut retried = None;
    for _ in 0..10 {
        let r = get(&client, &p.url("/"), &[("x-weir-debug", "1")]).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("x-endpoint"), "good");
        let record = r.header("x-weir-decision").to_owned();
        assert!(
            record.contains(&format!("chose={};", good.addr())),
            "{record}"
        );
        if record.contains("attempts=2") {
            retried = Some(record);
        }
    }
    let record = retried.expect("round robin sends some first attempts to the failing endpoint");
    let expected = format!(
        "attempts=2(first {} -> 503, retry {} -> 200)",
        bad.addr(),
        good.addr()
    );
    assert!(record.contains(&expected), "{record}");
    assert!(record.contains("policy=round_robin;"), "{record}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_client_gets_no_record_and_the_header_is_stripped() {
    let mock = MockHttp::start("a").await;
    let p = TestProxy::start(&config("10.9.0.0/16", "round_robin", "", &[mock.addr()])).await;
    let client = h1_client();
    let r = get(&client, &p.url("/headers"), &[("x-weir-debug", "1")]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.headers.get("x-weir-decision").is_none(),
        "{:?}",
        r.headers
    );
    assert!(!r.text().contains("x-weir-debug"), "{}", r.text());
}

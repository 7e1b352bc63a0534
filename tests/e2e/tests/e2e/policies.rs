//! Balancing policies end to end: latency awareness and hash affinity through the real proxy.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "end-to-end test: a panic is a failed test"
)]

use std::collections::BTreeMap;
use std::time::Duration;

use weir_e2e::{TestProxy, get, h1_client};
use weir_test_support::MockHttp;

fn config(policy_block: &str, endpoints: &[&MockHttp]) -> String {
    let list: Vec<String> = endpoints.iter().map(|e| e.addr().to_string()).collect();
    format!(
        "listeners:
  - name: l
    address: 127.0.0.1:0
    routes: [ {{ cluster: c }} ]
clusters:
  - name: c
{policy_block}    endpoints: [ {} ]
",
        list.join(", ")
    )
}

/// Three endpoints, one answering in 200 ms: peak EWMA sends it < 5 % of 2,000 requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peak_ewma_avoids_the_slow_endpoint() {
    let slow = MockHttp::builder("slow")
        .delay(Duration::from_millis(200))
        .start()
        .await;
    let fast1 = MockHttp::builder("fast1")
        .delay(Duration::from_millis(1))
        .start()
        .await;
    let fast2 = MockHttp::builder("fast2")
        .delay(Duration::from_millis(1))
        .start()
        .await;
    let p = TestProxy::start(&config(
        "    lb_policy: peak_ewma\n",
        &[&slow, &fast1, &fast2],
    ))
    .await;
    let url = p.url("/");
    // 8 concurrent closed-loop clients, 250 requests each.
    let clients = (0..8).map(|_| {
        let url = url.clone();
        tokio::spawn(async move {
            let client = h1_client();
            for _ in 0..250 {
                assert_eq!(get(&client, &url, &[]).await.status, 200);
            }
        })
    });
    for c in clients {
        c.await.unwrap();
    }
    let total = slow.requests() + fast1.requests() + fast2.requests();
    assert_eq!(total, 2_000);
    let share = slow.requests() as f64 / total as f64;
    assert!(
        share < 0.05,
        "slow endpoint got {:.1} % ({})",
        share * 100.0,
        slow.requests()
    );
}

async fn endpoints_seen(
    p: &TestProxy,
    requests: &[(String, Vec<(String, String)>)],
) -> Vec<String> {
    let client = h1_client();
    let mut out = Vec::new();
    for (path, headers) in requests {
        let h: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        out.push(
            get(&client, &p.url(path), &h)
                .await
                .header("x-endpoint")
                .to_owned(),
        );
    }
    out
}

#[tokio::test]
async fn hash_policies_keep_a_key_on_one_endpoint_and_spread_keys() {
    let eps = [
        MockHttp::start("e0").await,
        MockHttp::start("e1").await,
        MockHttp::start("e2").await,
        MockHttp::start("e3").await,
    ];
    let refs: Vec<&MockHttp> = eps.iter().collect();
    let cases = [
        (
            "    lb_policy: ring_hash\n    hash_key: { header: x-user }\n",
            "header",
        ),
        (
            "    lb_policy: maglev\n    hash_key: { cookie: session }\n",
            "cookie",
        ),
        (
            "    lb_policy: maglev\n    hash_key: { query: user }\n",
            "query",
        ),
    ];
    for (block, kind) in cases {
        let p = TestProxy::start(&config(block, &refs)).await;
        let request = |user: usize| -> (String, Vec<(String, String)>) {
            match kind {
                "header" => ("/".into(), vec![("x-user".into(), format!("user-{user}"))]),
                "cookie" => (
                    "/".into(),
                    vec![("cookie".into(), format!("a=b; session=s{user}"))],
                ),
                _ => (format!("/?x=1&user=u{user}"), vec![]),
            }
        };
        // The same key, ten times: always the same endpoint.
        let same: Vec<_> = (0..10).map(|_| request(7)).collect();
        let seen = endpoints_seen(&p, &same).await;
        assert!(seen.iter().all(|e| e == &seen[0]), "{kind}: {seen:?}");
        // 200 different keys: every endpoint gets some.
        let many: Vec<_> = (0..200).map(request).collect();
        let mut counts = BTreeMap::new();
        for e in endpoints_seen(&p, &many).await {
            *counts.entry(e).or_insert(0) += 1;
        }
        assert_eq!(
            counts.len(),
            4,
            "{kind}: keys spread over all endpoints: {counts:?}"
        );
        assert!(counts.values().all(|&c| c >= 20), "{kind}: {counts:?}");
    }
}

#[tokio::test]
async fn source_ip_hash_pins_a_client_across_connections() {
    let eps = [
        MockHttp::start("e0").await,
        MockHttp::start("e1").await,
        MockHttp::start("e2").await,
    ];
    let refs: Vec<&MockHttp> = eps.iter().collect();
    let p = TestProxy::start(&config(
        "    lb_policy: maglev\n    hash_key: { source_ip: true }\n",
        &refs,
    ))
    .await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..10 {
        // A new client (and so a new connection and source port) each time.
        seen.insert(
            get(&h1_client(), &p.url("/"), &[])
                .await
                .header("x-endpoint")
                .to_owned(),
        );
    }
    assert_eq!(seen.len(), 1, "one client IP, one endpoint: {seen:?}");
}

#[tokio::test]
async fn overloaded_endpoint_with_retry_after_is_left_alone() {
    let busy = MockHttp::builder("busy")
        .fail_with(http::StatusCode::TOO_MANY_REQUESTS)
        .start()
        .await;
    let ok = MockHttp::start("ok").await;
    let p = TestProxy::start(&config("    lb_policy: peak_ewma\n", &[&busy, &ok])).await;
    let client = h1_client();
    for _ in 0..200 {
        get(&client, &p.url("/"), &[]).await;
    }
    // Without Retry-After the 429 backs the endpoint off for `overload_backoff` (1 s) each time.
    assert!(busy.requests() <= 20, "busy got {} of 200", busy.requests());
}

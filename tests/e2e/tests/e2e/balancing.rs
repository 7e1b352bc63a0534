//! The mission's example: L7 balancing is per request, not per connection.
//!
//! Two HTTP/2 client connections, one sending 1 request per second and one 50 per second, over
//! two endpoints: each endpoint must get 45–55 % of all requests. A connection-level (L4)
//! balancer would pin each client to one endpoint and split them ~2 % / 98 %.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "end-to-end test: a panic is a failed test"
)]

use std::time::Duration;

use weir_e2e::{TestProxy, get, h2_client};
use weir_test_support::MockHttp;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_h2_clients_at_1_and_50_rps_spread_evenly_over_two_endpoints() {
    let (a, b) = (MockHttp::start("a").await, MockHttp::start("b").await);
    let p = TestProxy::start(&format!(
        "listeners:
  - name: l
    address: 127.0.0.1:0
    routes: [ {{ cluster: c }} ]
clusters:
  - name: c
    lb_policy: round_robin
    endpoints: [ {}, {} ]
",
        a.addr(),
        b.addr()
    ))
    .await;
    let url = p.url("/");
    let run = |rate_per_sec: u64, seconds: u64| {
        let url = url.clone();
        async move {
            // Each client is its own HTTP/2 connection (hyper's pool keeps one per authority).
            let client = h2_client();
            let mut tick = tokio::time::interval(Duration::from_millis(1_000 / rate_per_sec));
            for _ in 0..rate_per_sec * seconds {
                tick.tick().await;
                assert_eq!(get(&client, &url, &[]).await.status, 200);
            }
        }
    };
    tokio::join!(run(1, 4), run(50, 4));
    let (ra, rb) = (a.requests(), b.requests());
    assert_eq!(ra + rb, 204);
    let share_a = ra as f64 / (ra + rb) as f64;
    assert!((0.45..=0.55).contains(&share_a), "a {ra}, b {rb}");
    assert_eq!(
        a.connections() + b.connections(),
        2,
        "one upstream connection per endpoint"
    );
}

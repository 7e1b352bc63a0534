//! `GET /metrics` after known failures: retried 503s, a route timeout, a circuit-breaker
//! overflow and an outlier ejection move exactly the expected series per route, cluster and
//! endpoint; every endpoint that answered has a latency average; `promtool` accepts it all.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "end-to-end test: a panic is a failed test"
)]

use std::net::SocketAddr;
use std::time::Duration;

use http::StatusCode;
use weir_e2e::{TestProxy, get, h1_client};
use weir_test_support::{MockHttp, wait_until};

use crate::metrics::{Samples, parse, promtool_check, scrape_text, value};

const SECS_10: Duration = Duration::from_secs(10);

/// Route 0 retries 503s from `flaky` (which ejects after 3 in a row); route 1 times out on
/// `slow` after 200 ms; route 2 sends to `narrow`, which takes one request at a time; route 3
/// forwards to `ok`.
fn config(flaky: SocketAddr, slow: SocketAddr, narrow: SocketAddr, ok: SocketAddr) -> String {
    format!(
        "admin: {{ address: 127.0.0.1:0 }}
listeners:
  - name: web
    address: 127.0.0.1:0
    routes:
      - match: {{ path_prefix: /status/503 }}
        cluster: flaky
        retry: {{ attempts: 3, on: [503], backoff: {{ base: 1ms }} }}
      - match: {{ path_prefix: /delay/3000 }}
        cluster: slow
        timeout: 200ms
      - match: {{ path_prefix: /delay/1000 }}
        cluster: narrow
      - cluster: ok
clusters:
  - name: flaky
    outlier_detection: {{ consecutive_gateway_errors: 3, base_ejection_time: 1h, max_ejection_percent: 100 }}
    endpoints: [ {flaky} ]
  - name: slow
    endpoints: [ {slow} ]
  - name: narrow
    circuit_breakers: {{ max_requests: 1 }}
    endpoints: [ {narrow} ]
  - name: ok
    endpoints: [ {ok} ]
"
    )
}

/// `name{listener="web",route="<route>",cluster="<cluster>"<extra>}`.
fn route(name: &str, route: usize, cluster: &str, extra: &str) -> String {
    format!("{name}{{listener=\"web\",route=\"{route}\",cluster=\"{cluster}\"{extra}}}")
}

/// `name{cluster="<cluster>",endpoint="<ep>"<extra>}`.
fn endpoint(name: &str, cluster: &str, ep: SocketAddr, extra: &str) -> String {
    format!("{name}{{cluster=\"{cluster}\",endpoint=\"{ep}\"{extra}}}")
}

/// Every `weir_endpoint_errors_total` reason of `ep` with its count, as expected.
fn assert_endpoint_errors(s: &Samples, cluster: &str, ep: SocketAddr, want: &[(&str, f64)]) {
    for reason in [
        "5xx",
        "reset",
        "timeout",
        "connect_failure",
        "connect_timeout",
    ] {
        let series = endpoint(
            "weir_endpoint_errors_total",
            cluster,
            ep,
            &format!(",reason=\"{reason}\""),
        );
        let expected = want.iter().find(|(r, _)| *r == reason).map_or(0.0, |w| w.1);
        assert_eq!(value(s, &series), expected, "{series}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_timeouts_overflows_and_ejections_are_counted_where_they_happened() {
    let flaky = MockHttp::builder("flaky")
        .fail_with(StatusCode::SERVICE_UNAVAILABLE)
        .start()
        .await;
    let slow = MockHttp::start("slow").await;
    let narrow = MockHttp::start("narrow").await;
    let ok = MockHttp::start("ok").await;
    let p = TestProxy::start(&config(flaky.addr(), slow.addr(), narrow.addr(), ok.addr())).await;
    let admin = p.weir.admin_addr().unwrap();
    let client = h1_client();

    // One request, three attempts (two retries), three 503s in a row: the endpoint is ejected.
    assert_eq!(get(&client, &p.url("/status/503"), &[]).await.status, 503);
    assert_eq!(flaky.requests(), 3);
    // The endpoint does not answer within the route's 200 ms: 504.
    assert_eq!(get(&client, &p.url("/delay/3000"), &[]).await.status, 504);
    // max_requests 1: a second request while the first is in progress is refused.
    let first = {
        let url = p.url("/delay/1000");
        tokio::spawn(async move { get(&h1_client(), &url, &[]).await })
    };
    assert!(wait_until(SECS_10, || narrow.requests() == 1).await);
    let refused = get(&client, &p.url("/delay/1000"), &[]).await;
    assert_eq!(refused.status, 503);
    assert_eq!(refused.header("x-weir-overloaded"), "max_requests");
    assert_eq!(first.await.unwrap().status, 200);
    for _ in 0..5 {
        assert_eq!(get(&client, &p.url("/"), &[]).await.status, 200);
    }

    let text = scrape_text(admin).await;
    let s = parse(&text);
    // Per route and cluster.
    let retries = |r, c| value(&s, &route("weir_route_retries_total", r, c, ""));
    let timeouts = |r, c| value(&s, &route("weir_route_timeouts_total", r, c, ""));
    assert_eq!(retries(0, "flaky"), 2.0);
    assert_eq!(timeouts(0, "flaky"), 0.0);
    assert_eq!(retries(1, "slow"), 0.0);
    assert_eq!(timeouts(1, "slow"), 1.0);
    assert_eq!((retries(2, "narrow"), timeouts(2, "narrow")), (0.0, 0.0));
    assert_eq!((retries(3, "ok"), timeouts(3, "ok")), (0.0, 0.0));
    for (r, c) in [(0, "flaky"), (1, "slow"), (2, "narrow"), (3, "ok")] {
        for limit in [
            "max_connections",
            "max_pending_requests",
            "max_requests",
            "max_retries",
        ] {
            let series = route(
                "weir_route_circuit_breaker_overflows_total",
                r,
                c,
                &format!(",limit=\"{limit}\""),
            );
            let want = if (c, limit) == ("narrow", "max_requests") {
                1.0
            } else {
                0.0
            };
            assert_eq!(value(&s, &series), want, "{series}");
        }
    }
    let class = |r: usize, c: &str| {
        value(
            &s,
            &format!("weir_route_requests_total{{listener=\"web\",route=\"{r}\",class=\"{c}\"}}"),
        )
    };
    assert_eq!(class(0, "5xx"), 1.0);
    assert_eq!(class(1, "5xx"), 1.0);
    assert_eq!((class(2, "2xx"), class(2, "5xx")), (1.0, 1.0));
    assert_eq!(class(3, "2xx"), 5.0);

    // Per cluster: the same facts.
    let cluster =
        |name: &str, c: &str, extra: &str| value(&s, &format!("{name}{{cluster=\"{c}\"{extra}}}"));
    assert_eq!(cluster("weir_cluster_retries_total", "flaky", ""), 2.0);
    assert_eq!(
        cluster("weir_upstream_requests_total", "flaky", ",class=\"5xx\""),
        3.0
    );
    assert_eq!(
        cluster("weir_upstream_errors_total", "slow", ",reason=\"timeout\""),
        1.0
    );
    assert_eq!(
        cluster(
            "weir_cluster_circuit_breaker_overflows_total",
            "narrow",
            ",limit=\"max_requests\""
        ),
        1.0
    );
    assert_eq!(cluster("weir_cluster_ejected_endpoints", "flaky", ""), 1.0);

    // Per endpoint: errors by reason, the ejection, and a latency average for every endpoint
    // that answered (none for the one that never did).
    assert_endpoint_errors(&s, "flaky", flaky.addr(), &[("5xx", 3.0)]);
    assert_endpoint_errors(&s, "slow", slow.addr(), &[("timeout", 1.0)]);
    assert_endpoint_errors(&s, "narrow", narrow.addr(), &[]);
    assert_endpoint_errors(&s, "ok", ok.addr(), &[]);
    let ejections = |c, ep| value(&s, &endpoint("weir_endpoint_ejections_total", c, ep, ""));
    assert_eq!(ejections("flaky", flaky.addr()), 1.0);
    assert_eq!(ejections("ok", ok.addr()), 0.0);
    let unhealthy = endpoint(
        "weir_endpoint_unhealthy",
        "flaky",
        flaky.addr(),
        ",reason=\"ejected\"",
    );
    assert_eq!(value(&s, &unhealthy), 1.0);
    let ewma = |c, ep| {
        s.get(&endpoint("weir_endpoint_latency_ewma_seconds", c, ep, ""))
            .copied()
    };
    for (c, ep) in [("flaky", flaky.addr()), ("ok", ok.addr())] {
        let v = ewma(c, ep).unwrap_or_else(|| panic!("no latency average for {c}"));
        assert!(v > 0.0 && v < 1.0, "{c}: {v}");
    }
    // The one answer of `narrow` took its second.
    let narrow_ewma = ewma("narrow", narrow.addr()).unwrap();
    assert!((1.0..10.0).contains(&narrow_ewma), "{narrow_ewma}");
    assert_eq!(ewma("slow", slow.addr()), None, "never answered");

    promtool_check(&text);
}

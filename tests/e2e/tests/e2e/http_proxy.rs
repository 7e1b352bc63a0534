//! HTTP/1.1 and HTTP/2 proxying through weir: protocol combinations, header hygiene, pooling.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "end-to-end test: a panic is a failed test"
)]

use weir_e2e::{TestProxy, get, h1_client, h2_client};
use weir_test_support::MockHttp;

async fn proxy_to(ep: &MockHttp, upstream: &str, extra_listener: &str) -> TestProxy {
    TestProxy::start(&format!(
        "listeners:
  - name: l
    address: 127.0.0.1:0
{extra_listener}    routes:
      - cluster: c
clusters:
  - name: c
    protocol: {upstream}
    endpoints: [ {} ]
",
        ep.addr()
    ))
    .await
}

#[tokio::test]
async fn every_downstream_upstream_protocol_pair_works() {
    let ep = MockHttp::start("ep").await;
    for upstream in ["http1", "http2"] {
        let p = proxy_to(&ep, upstream, "").await;
        for (client, down) in [(h1_client(), "HTTP/1.1"), (h2_client(), "HTTP/2")] {
            let r = get(&client, &p.url("/a/b?x=1"), &[("host", "svc.local")]).await;
            assert_eq!(r.status, 200, "{down} → {upstream}");
            assert_eq!(r.header("x-endpoint"), "ep");
            assert_eq!(r.header("x-seen-path"), "/a/b?x=1");
            let want = if upstream == "http1" {
                "HTTP/1.1"
            } else {
                "HTTP/2.0"
            };
            assert_eq!(r.header("x-seen-version"), want, "{down} → {upstream}");
            // The authority weir routed on reaches the endpoint as Host / :authority: the Host
            // header for HTTP/1.1 clients, the URI's :authority for HTTP/2 clients.
            let want_host = if down == "HTTP/1.1" {
                "svc.local".to_owned()
            } else {
                p.addr.to_string()
            };
            assert_eq!(r.header("x-seen-host"), want_host, "{down} → {upstream}");
        }
    }
}

#[tokio::test]
async fn authority_is_preserved_for_http2_upstreams() {
    let ep = MockHttp::start("ep").await;
    let p = proxy_to(&ep, "http2", "").await;
    let r = get(
        &h1_client(),
        &p.url("/"),
        &[("host", "api.example.com:8080")],
    )
    .await;
    assert_eq!(r.header("x-seen-host"), "api.example.com:8080");
}

#[tokio::test]
async fn hop_by_hop_headers_are_removed_and_forwarding_headers_added() {
    let ep = MockHttp::start("ep").await;
    let p = proxy_to(&ep, "http1", "    http: { via: weir }\n").await;
    let r = get(
        &h1_client(),
        &p.url("/headers"),
        &[
            ("connection", "keep-alive, x-private"),
            ("x-private", "secret"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("x-forwarded-for", "203.0.113.7"),
            ("x-kept", "yes"),
        ],
    )
    .await;
    let seen = r.text();
    assert!(!seen.contains("x-private"), "{seen}");
    assert!(!seen.contains("keep-alive: timeout"), "{seen}");
    assert!(!seen.contains("proxy-connection"), "{seen}");
    assert!(seen.contains("x-kept: yes"), "{seen}");
    assert!(
        seen.contains("x-forwarded-for: 203.0.113.7, 127.0.0.1"),
        "{seen}"
    );
    assert!(seen.contains("x-forwarded-proto: http"), "{seen}");
    assert!(seen.contains("via: 1.1 weir"), "{seen}");
    assert_eq!(r.header("via"), "1.1 weir", "via on the response too");
}

#[tokio::test]
async fn forwarding_headers_can_be_turned_off() {
    let ep = MockHttp::start("ep").await;
    let p = proxy_to(&ep, "http1", "    http: { x_forwarded: false }\n").await;
    let r = get(
        &h1_client(),
        &p.url("/headers"),
        &[("x-forwarded-for", "203.0.113.7")],
    )
    .await;
    let seen = r.text();
    assert!(
        seen.lines().any(|l| l == "x-forwarded-for: 203.0.113.7"),
        "passed as sent: {seen}"
    );
    assert!(!seen.contains("127.0.0.1"), "no hop appended: {seen}");
    assert!(!seen.contains("x-forwarded-proto"), "{seen}");
}

#[tokio::test]
async fn upstream_http1_connections_are_reused() {
    let ep = MockHttp::start("ep").await;
    let p = proxy_to(&ep, "http1", "").await;
    let client = h1_client();
    for _ in 0..20 {
        assert_eq!(get(&client, &p.url("/"), &[]).await.status, 200);
    }
    assert_eq!(ep.requests(), 20);
    assert_eq!(
        ep.connections(),
        1,
        "sequential requests share one pooled connection"
    );
}

#[tokio::test]
async fn upstream_http2_multiplexes_concurrent_requests_on_one_connection() {
    let ep = MockHttp::start("ep").await;
    let p = proxy_to(&ep, "http2", "").await;
    let client = h2_client();
    let url = p.url("/delay/50");
    let calls = (0..20).map(|_| get(&client, &url, &[]));
    let replies = futures_util::future::join_all(calls).await;
    assert!(replies.iter().all(|r| r.status == 200));
    assert_eq!(
        ep.connections(),
        1,
        "all 20 concurrent requests on one HTTP/2 connection"
    );
}

#[tokio::test]
async fn status_codes_and_bodies_pass_through() {
    let ep = MockHttp::start("ep").await;
    let p = proxy_to(&ep, "http1", "").await;
    let r = get(&h1_client(), &p.url("/status/418"), &[]).await;
    assert_eq!(r.status, 418);
    assert_eq!(r.text(), "ep");
}

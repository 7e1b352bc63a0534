//! DNS service discovery through the running proxy: a cluster with no static endpoints gets
//! them from SRV records (ports and weights), or from AAAA / A + AAAA records (IPv6 endpoints on
//! `::1`), follows a changed answer within the TTL without a reload, and keeps serving its last
//! good set when the name disappears.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "end-to-end test: a panic is a failed test"
)]

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use http::StatusCode;
use weir_e2e::{TestClient, TestProxy, get, h1_client};
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

    // The answer changes to `a` only; weir follows within the 1 s TTL, without a reload. With
    // weights 1 and 3 round robin never answers from `a` twice in a row while `b` is in the
    // set, so the first of 8 answers in a row from `a` was served after the change took hold.
    let changed = Instant::now();
    dns.set_srv(srv, &[("a.test.", a.addr().port(), 1)], 1);
    let took = followed_after(&client, &p, changed, "a").await;
    println!("SRV change with a 1 s TTL served after {took:?}");
    assert!(
        // Measured ≈ 1.0 s; the slack is for a loaded 2-core CI machine's timers.
        took <= Duration::from_millis(2000),
        "followed after {took:?}, the TTL is 1 s"
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

/// How long after `changed` the proxy began answering only from `endpoint`: the start of the
/// first run of 8 answers in a row from it (waits up to 10 s).
async fn followed_after(
    client: &TestClient,
    p: &TestProxy,
    changed: Instant,
    endpoint: &str,
) -> Duration {
    let mut run: Option<Instant> = None;
    let mut in_a_row = 0;
    while in_a_row < 8 {
        assert!(
            changed.elapsed() < Duration::from_secs(10),
            "still not only {endpoint}"
        );
        let sent = Instant::now();
        let r = get(client, &p.url("/"), &[]).await;
        assert_eq!(r.status, StatusCode::OK);
        if r.header("x-endpoint") == endpoint {
            run.get_or_insert(sent);
            in_a_row += 1;
        } else {
            (run, in_a_row) = (None, 0);
        }
    }
    run.map_or(Duration::ZERO, |t| t - changed)
}

/// Two listeners on one port: `[::1]` and `127.0.0.1` (A/AAAA discovery gives every address
/// the same port).
fn dual_stack_pair() -> (TcpListener, TcpListener) {
    for _ in 0..50 {
        let v6 = TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).unwrap();
        let port = v6.local_addr().unwrap().port();
        if let Ok(v4) = TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
            return (v4, v6);
        }
    }
    panic!("no port free on both 127.0.0.1 and ::1");
}

/// A cluster discovered from `record` answers of `name` on `port`, behind a listener.
async fn proxy_for(dns: &MockDns, record: &str, port: u16) -> TestProxy {
    TestProxy::start(&format!(
        "listeners:
  - name: l
    address: 127.0.0.1:0
    routes: [ {{ cluster: api }} ]
clusters:
  - name: api
    discovery:
      dns: {{ name: api.test., record: {record}, port: {port}, nameservers: [ {} ], min_ttl: 100ms }}
",
        dns.addr()
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aaaa_discovery_routes_to_ipv6_endpoints() {
    let (_, v6) = dual_stack_pair();
    let six = MockHttp::builder("six").start_on(v6);
    let port = six.addr().port();
    let dns = MockDns::start().await;
    // An A record too, on a port nothing serves: `record: aaaa` must not use it.
    dns.set_ips(
        "api.test.",
        &[six.addr().ip(), "127.0.0.9".parse().unwrap()],
        1,
    );
    let p = proxy_for(&dns, "aaaa", port).await;
    let client = h1_client();
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&client, &p.url("/"), &[]).await.status != StatusCode::OK {
        assert!(Instant::now() < deadline, "discovery never fed the cluster");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = six.requests();
    for _ in 0..10 {
        let r = get(&client, &p.url("/"), &[]).await;
        assert_eq!((r.status, r.header("x-endpoint")), (StatusCode::OK, "six"));
    }
    assert_eq!(six.requests() - before, 10);
    let found: Vec<SocketAddr> = p.proxy().snapshots().load().clusters()[0]
        .endpoints
        .iter()
        .map(|e| e.address)
        .collect();
    assert_eq!(found, [SocketAddr::from((Ipv6Addr::LOCALHOST, port))]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_aaaa_discovery_routes_to_both_families_and_follows_a_change() {
    let (v4, v6) = dual_stack_pair();
    let (four, six) = (
        MockHttp::builder("four").start_on(v4),
        MockHttp::builder("six").start_on(v6),
    );
    let dns = MockDns::start().await;
    dns.set_ips("api.test.", &[four.addr().ip(), six.addr().ip()], 1);
    let p = proxy_for(&dns, "a_aaaa", four.addr().port()).await;
    let client = h1_client();

    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&client, &p.url("/"), &[]).await.status != StatusCode::OK {
        assert!(Instant::now() < deadline, "discovery never fed the cluster");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (f0, s0) = (four.requests(), six.requests());
    for _ in 0..20 {
        assert_eq!(get(&client, &p.url("/"), &[]).await.status, StatusCode::OK);
    }
    assert_eq!(
        (four.requests() - f0, six.requests() - s0),
        (10, 10),
        "round robin over the A and the AAAA address"
    );

    // The A record goes: only the IPv6 endpoint remains, within the TTL.
    let changed = Instant::now();
    dns.set_ips("api.test.", &[six.addr().ip()], 1);
    let took = followed_after(&client, &p, changed, "six").await;
    println!("A + AAAA change with a 1 s TTL served after {took:?}");
    assert!(
        // Measured ≈ 1.0 s; the slack is for a loaded 2-core CI machine's timers.
        took <= Duration::from_millis(2000),
        "followed after {took:?}, the TTL is 1 s"
    );
}

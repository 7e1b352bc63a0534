//! DNS discovery against a real DNS server on loopback (`MockDns`): A, AAAA and both (`a_aaaa`)
//! with the configured port, SRV ports and weights, answers that change being followed within
//! the TTL, a failed question retried after `min_ttl`, and a vanished name leaving the last
//! good set in place.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a panic is a failed test"
)]

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use weir_config::{ConfigDuration, DnsDiscoveryConfig, DnsRecordKind, EndpointConfig};
use weir_discovery::{Discovery, DiscoveryTarget, Source};
use weir_test_support::{MockDns, wait_until};

type Seen = Arc<Mutex<Vec<(String, Vec<EndpointConfig>, Instant)>>>;

fn dns(
    server: &MockDns,
    name: &str,
    record: DnsRecordKind,
    port: Option<u16>,
) -> DnsDiscoveryConfig {
    DnsDiscoveryConfig {
        name: name.into(),
        record,
        port,
        weight: 1,
        min_ttl: ConfigDuration(Duration::from_millis(100)),
        max_ttl: ConfigDuration(Duration::from_secs(30)),
        nameservers: vec![server.addr()],
    }
}

fn discovery() -> (Discovery, Seen) {
    let seen: Seen = Arc::default();
    let sink = {
        let seen = Arc::clone(&seen);
        Arc::new(move |cluster: &str, eps: Vec<EndpointConfig>| {
            seen.lock()
                .unwrap()
                .push((cluster.to_owned(), eps, Instant::now()));
        })
    };
    (Discovery::new(sink), seen)
}

fn ep(addr: &str, weight: u32) -> EndpointConfig {
    EndpointConfig {
        address: addr.parse::<SocketAddr>().unwrap(),
        weight,
    }
}

fn last(seen: &Seen) -> Option<Vec<EndpointConfig>> {
    seen.lock().unwrap().last().map(|(_, e, _)| e.clone())
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_records_are_followed_within_the_ttl() {
    let server = MockDns::start().await;
    server.set_ips("api.test.", &[ip("127.0.0.2"), ip("127.0.0.3")], 1);
    let (mut d, seen) = discovery();
    d.reconcile(vec![DiscoveryTarget {
        cluster: "api".into(),
        source: Source::Dns(dns(&server, "api.test.", DnsRecordKind::A, Some(8080))),
    }]);
    assert!(wait_until(Duration::from_secs(10), || last(&seen).is_some()).await);
    assert_eq!(
        last(&seen).unwrap(),
        [ep("127.0.0.2:8080", 1), ep("127.0.0.3:8080", 1)]
    );
    assert_eq!(seen.lock().unwrap()[0].0, "api");

    // The answer changes; the TTL is 1 s, so weir asks again at most 1 s later (plus the
    // time a question takes on a loaded machine).
    let changed = Instant::now();
    server.set_ips("api.test.", &[ip("127.0.0.4")], 1);
    let want = vec![ep("127.0.0.4:8080", 1)];
    assert!(
        wait_until(Duration::from_secs(10), || last(&seen).as_ref()
            == Some(&want))
        .await
    );
    let took = seen.lock().unwrap().last().unwrap().2 - changed;
    println!("A record change with a 1 s TTL followed after {took:?}");
    assert!(
        // Measured ≈ 1.0 s; the slack is for a loaded 2-core CI machine's timers.
        took <= Duration::from_millis(2000),
        "followed after {took:?}, the TTL is 1 s"
    );
    // An unchanged answer is not reported again.
    let reports = seen.lock().unwrap().len();
    let asked = server.queries();
    assert!(wait_until(Duration::from_secs(10), || server.queries() >= asked + 2).await);
    assert_eq!(seen.lock().unwrap().len(), reports);
    d.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_records_give_ports_and_weights() {
    let server = MockDns::start().await;
    server.set_srv(
        "_http._tcp.api.test.",
        &[
            ("a.test.", 9001, 3),
            ("b.test.", 9002, 1),
            ("c.test.", 9003, 0),
        ],
        5,
    );
    server.set_ips("a.test.", &[ip("127.0.0.2")], 5);
    server.set_ips("b.test.", &[ip("127.0.0.3")], 5);
    server.set_ips("c.test.", &[ip("127.0.0.4")], 5);
    let (mut d, seen) = discovery();
    d.reconcile(vec![DiscoveryTarget {
        cluster: "api".into(),
        source: Source::Dns(dns(
            &server,
            "_http._tcp.api.test.",
            DnsRecordKind::Srv,
            None,
        )),
    }]);
    assert!(wait_until(Duration::from_secs(10), || last(&seen).is_some()).await);
    assert_eq!(
        last(&seen).unwrap(),
        [
            ep("127.0.0.2:9001", 3),
            ep("127.0.0.3:9002", 1),
            ep("127.0.0.4:9003", 1),
        ],
        "SRV weight 0 becomes the smallest weir weight, 1"
    );
    d.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_name_keeps_the_last_good_set() {
    let server = MockDns::start().await;
    server.set_ips("api.test.", &[ip("127.0.0.2")], 1);
    let (mut d, seen) = discovery();
    d.reconcile(vec![DiscoveryTarget {
        cluster: "api".into(),
        source: Source::Dns(dns(&server, "api.test.", DnsRecordKind::A, Some(80))),
    }]);
    assert!(wait_until(Duration::from_secs(10), || last(&seen).is_some()).await);
    server.set_ips("api.test.", &[], 1);
    let asked = server.queries();
    assert!(wait_until(Duration::from_secs(10), || server.queries() >= asked + 2).await);
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "NXDOMAIN is not an empty set"
    );
    assert_eq!(last(&seen).unwrap(), [ep("127.0.0.2:80", 1)]);
    // Reconciling to nothing stops the task.
    d.reconcile(vec![]);
    assert!(d.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aaaa_records_give_ipv6_endpoints() {
    let server = MockDns::start().await;
    // A records too: `record: aaaa` must not pick them up.
    server.set_ips("api.test.", &[ip("::1"), ip("fd00::2"), ip("127.0.0.2")], 1);
    let (mut d, seen) = discovery();
    d.reconcile(vec![DiscoveryTarget {
        cluster: "api".into(),
        source: Source::Dns(dns(&server, "api.test.", DnsRecordKind::Aaaa, Some(8080))),
    }]);
    assert!(wait_until(Duration::from_secs(10), || last(&seen).is_some()).await);
    assert_eq!(
        last(&seen).unwrap(),
        [ep("[::1]:8080", 1), ep("[fd00::2]:8080", 1)]
    );

    let changed = Instant::now();
    server.set_ips("api.test.", &[ip("fd00::3")], 1);
    let want = vec![ep("[fd00::3]:8080", 1)];
    assert!(
        wait_until(Duration::from_secs(10), || last(&seen).as_ref()
            == Some(&want))
        .await
    );
    let took = seen.lock().unwrap().last().unwrap().2 - changed;
    println!("AAAA record change with a 1 s TTL followed after {took:?}");
    assert!(
        // Measured ≈ 1.0 s; the slack is for a loaded 2-core CI machine's timers.
        took <= Duration::from_millis(2000),
        "followed after {took:?}, the TTL is 1 s"
    );
    d.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_aaaa_gives_both_families() {
    let server = MockDns::start().await;
    server.set_ips("api.test.", &[ip("127.0.0.2"), ip("::1")], 1);
    let (mut d, seen) = discovery();
    d.reconcile(vec![DiscoveryTarget {
        cluster: "api".into(),
        source: Source::Dns(dns(&server, "api.test.", DnsRecordKind::Both, Some(80))),
    }]);
    assert!(wait_until(Duration::from_secs(10), || last(&seen).is_some()).await);
    assert_eq!(
        last(&seen).unwrap(),
        [ep("127.0.0.2:80", 1), ep("[::1]:80", 1)]
    );
    // Losing one family leaves the other.
    server.set_ips("api.test.", &[ip("::1")], 1);
    let want = vec![ep("[::1]:80", 1)];
    assert!(
        wait_until(Duration::from_secs(10), || last(&seen).as_ref()
            == Some(&want))
        .await
    );
    d.shutdown();
}

/// A failed question is asked again after `min_ttl` (not twice that), then backs off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_question_is_retried_after_min_ttl() {
    let server = MockDns::start().await;
    let (mut d, seen) = discovery();
    let mut config = dns(&server, "missing.test.", DnsRecordKind::A, Some(80));
    config.min_ttl = ConfigDuration(Duration::from_secs(1));
    d.reconcile(vec![DiscoveryTarget {
        cluster: "api".into(),
        source: Source::Dns(config),
    }]);
    // The times at which the name server saw the first three questions.
    let mut asked = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen_queries = 0;
    while asked.len() < 3 {
        assert!(Instant::now() < deadline, "asked only {asked:?}");
        let now = server.queries();
        if now > seen_queries {
            seen_queries = now;
            asked.push(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (first, second) = (asked[1] - asked[0], asked[2] - asked[1]);
    println!("retries after NXDOMAIN with min_ttl 1 s: {first:?}, then {second:?}");
    assert!(
        // Below 1.8 s: the first retry must not be the old 2 × min_ttl.
        first >= Duration::from_millis(900) && first <= Duration::from_millis(1800),
        "first retry after {first:?}, min_ttl is 1 s"
    );
    assert!(
        second >= Duration::from_millis(1900) && second <= Duration::from_millis(3000),
        "second retry after {second:?}, 2 × min_ttl is 2 s"
    );
    assert!(seen.lock().unwrap().is_empty(), "NXDOMAIN reports no set");
    d.shutdown();
}

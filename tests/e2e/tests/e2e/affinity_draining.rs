//! Draining under hashed session affinity (issue #6): with `header` affinity over HTTP and
//! `client_address` affinity over TCP and UDP, a drained endpoint's existing sessions keep reaching it
//! until `drain_timeout`, new keys never reach it, its keys move once the deadline passes, and
//! keys of the other endpoints never move. The session table's counters show in `/clusters`
//! and `/metrics`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "end-to-end test: a panic is a failed test"
)]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use weir_e2e::{TestProxy, endpoint_list, get, h1_client, send};
use weir_test_support::{MockHttp, MockTcp, MockUdp, TcpEcho};

const TOKEN: &str = "0123456789abcdef-draining";
/// The `drain_timeout` under test.
const DEADLINE: Duration = Duration::from_secs(2);
/// How long a test waits for the deadline to have moved every session (a loaded box).
const PATIENCE: Duration = Duration::from_secs(30);

/// Drains endpoint `endpoint` of cluster `c` through the admin API.
async fn drain(p: &TestProxy, endpoint: SocketAddr) {
    let admin = p.weir.admin_addr().unwrap();
    let req = http::Request::post(format!(
        "http://{admin}/clusters/c/endpoints/{endpoint}/drain"
    ))
    .header("authorization", format!("Bearer {TOKEN}"))
    .body(Full::new(Bytes::new()))
    .unwrap();
    assert_eq!(send(&h1_client(), req).await.status, 200);
}

/// The `session_affinity` block of cluster `c` in admin `/clusters`.
async fn counters(p: &TestProxy) -> serde_json::Value {
    let admin = p.weir.admin_addr().unwrap();
    let r = get(&h1_client(), &format!("http://{admin}/clusters"), &[]).await;
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    v["clusters"][0]["session_affinity"].clone()
}

/// The value of one series of cluster `c` in admin `/metrics`.
async fn metric(p: &TestProxy, name: &str) -> u64 {
    let admin = p.weir.admin_addr().unwrap();
    let text = get(&h1_client(), &format!("http://{admin}/metrics"), &[])
        .await
        .text();
    let series = format!("{name}{{cluster=\"c\"}}");
    text.lines()
        .find_map(|l| l.strip_prefix(&series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{series} missing from\n{text}"))
}

/// Answers after the drain of `victim` at `drained_at` (taken before the admin call, so the
/// proxy's deadline is never earlier), checked as they come: keys of other endpoints stay, a
/// victim's key leaves it only after the deadline, once, and never comes back.
struct Round<'a> {
    before: &'a HashMap<String, String>,
    victim: &'a str,
    drained_at: Instant,
    /// The victim's keys that moved, and where to.
    moved: HashMap<String, String>,
    /// Answers the draining victim gave its own keys.
    kept: usize,
}

impl Round<'_> {
    /// Notes that `key` (answered at `answered`) went to `endpoint`.
    fn check(&mut self, key: &str, endpoint: &str, answered: Instant) {
        let home = &self.before[key];
        if home != self.victim {
            assert_eq!(endpoint, home, "{key} of a healthy endpoint moved");
            return;
        }
        if endpoint == self.victim {
            assert!(
                !self.moved.contains_key(key),
                "{key} went back to the draining endpoint"
            );
            self.kept += 1;
            return;
        }
        assert!(
            answered.duration_since(self.drained_at) >= DEADLINE,
            "{key} left the draining endpoint before the deadline"
        );
        let first = self.moved.entry(key.to_owned()).or_insert(endpoint.into());
        assert_eq!(first.as_str(), endpoint, "{key} moved twice");
    }

    /// Keys of the victim that have not moved yet.
    fn left(&self) -> usize {
        let on_victim = self.before.values().filter(|e| *e == self.victim).count();
        on_victim - self.moved.len()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_sessions_stay_on_a_draining_endpoint_until_the_deadline() {
    let m = [
        MockHttp::start("a").await,
        MockHttp::start("b").await,
        MockHttp::start("c").await,
    ];
    let addrs: Vec<SocketAddr> = m.iter().map(MockHttp::addr).collect();
    let yaml = format!(
        "admin: {{ address: 127.0.0.1:0, token: {TOKEN} }}
listeners:
  - name: l
    address: 127.0.0.1:0
    routes: [ {{ cluster: c }} ]
clusters:
  - name: c
    session_affinity: {{ header: x-user, drain_timeout: 2s, session_idle: 1m }}
    endpoints:
{}",
        endpoint_list(&addrs, 6)
    );
    let p = TestProxy::start(&yaml).await;
    let client = h1_client();
    let at = |key: &str| {
        let (client, url, key) = (client.clone(), p.url("/"), key.to_owned());
        async move {
            let r = get(&client, &url, &[("x-user", &key)]).await;
            (r.header("x-endpoint").to_owned(), Instant::now())
        }
    };
    let keys: Vec<String> = (0..50).map(|i| format!("user-{i}")).collect();
    let mut before = HashMap::new();
    for k in &keys {
        before.insert(k.clone(), at(k).await.0);
    }
    // The endpoint with the most keys is drained.
    let victim = ["a", "b", "c"]
        .into_iter()
        .max_by_key(|e| before.values().filter(|v| v == e).count())
        .unwrap();
    let on_victim: Vec<&String> = keys.iter().filter(|k| before[*k] == victim).collect();
    assert!(!on_victim.is_empty() && on_victim.len() < 50);
    assert_eq!(counters(&p).await["new_sessions"], 50);
    assert_eq!(metric(&p, "weir_cluster_affinity_sessions").await, 50);

    let drained_at = Instant::now();
    drain(&p, m.iter().find(|x| x.name() == victim).unwrap().addr()).await;
    let mut round = Round {
        before: &before,
        victim,
        drained_at,
        moved: HashMap::new(),
        kept: 0,
    };
    // Right after the drain its sessions still reach it.
    for k in &on_victim {
        let (endpoint, answered) = at(k).await;
        round.check(k, &endpoint, answered);
    }
    assert!(round.moved.is_empty(), "keys left before the deadline");
    assert_eq!(round.kept, on_victim.len());
    let mut fresh = 0;
    while round.left() > 0 {
        assert!(drained_at.elapsed() < PATIENCE, "sessions never moved");
        for k in &keys {
            let (endpoint, answered) = at(k).await;
            round.check(k, &endpoint, answered);
        }
        for _ in 0..10 {
            fresh += 1;
            let (endpoint, _) = at(&format!("new-{fresh}")).await;
            assert_ne!(endpoint, victim, "a new key reached the draining endpoint");
        }
    }
    // Settled: every key stays where it is now.
    for k in &keys {
        let (endpoint, answered) = at(k).await;
        round.check(k, &endpoint, answered);
    }
    let c = counters(&p).await;
    assert_eq!(c["moved_sessions"], on_victim.len(), "{c}");
    assert_eq!(c["new_sessions"], 50 + fresh, "{c}");
    assert_eq!(c["evicted_sessions"], 0, "{c}");
    assert_eq!(c["sessions"], 50 + fresh, "{c}");
    assert_eq!(
        metric(&p, "weir_cluster_affinity_moved_sessions_total").await,
        on_victim.len() as u64
    );
}

/// Which of `echoes` took one echoed connection from `ip` to `addr`.
async fn tcp_home(echoes: &[TcpEcho], ip: Ipv4Addr, addr: SocketAddr) -> usize {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let counts: Vec<u64> = echoes.iter().map(TcpEcho::connections).collect();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::V4(ip), 0)).unwrap();
    let mut s = socket.connect(addr).await.unwrap();
    s.write_all(b"ping").await.unwrap();
    let mut back = [0u8; 4];
    s.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"ping");
    which(&counts, echoes.iter().map(TcpEcho::connections))
}

/// Which of `echoes` answered one datagram of a new UDP session from `ip` to `addr`.
async fn udp_home(echoes: &[MockUdp], ip: Ipv4Addr, addr: SocketAddr) -> usize {
    let counts: Vec<u64> = echoes.iter().map(MockUdp::datagrams).collect();
    let socket = tokio::net::UdpSocket::bind((ip, 0)).await.unwrap();
    socket.connect(addr).await.unwrap();
    socket.send(b"ping").await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buf))
        .await
        .expect("the echo answered")
        .unwrap();
    assert_eq!(&buf[..n], b"ping");
    which(&counts, echoes.iter().map(MockUdp::datagrams))
}

/// The one index whose count moved from `before` to `after`.
fn which(before: &[u64], after: impl Iterator<Item = u64>) -> usize {
    let took: Vec<usize> = after
        .zip(before)
        .enumerate()
        .filter(|(_, (a, b))| a != *b)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(took.len(), 1, "one exchange counted by {took:?}");
    took[0]
}

/// A proxy with an admin API and an L4 listener of `protocol` to cluster `c` over `endpoints`
/// with `client_address` affinity and a 2 s drain deadline.
async fn l4_proxy(protocol: &str, endpoints: &[SocketAddr]) -> TestProxy {
    let list: Vec<String> = endpoints.iter().map(ToString::to_string).collect();
    TestProxy::start(&format!(
        "admin: {{ address: 127.0.0.1:0, token: {TOKEN} }}
listeners:
  - name: l
    address: 127.0.0.1:0
    protocol: {protocol}
    cluster: c
clusters:
  - name: c
    session_affinity: {{ client_address: true, drain_timeout: 2s }}
    endpoints: [ {} ]
",
        list.join(", ")
    ))
    .await
}

/// Client-address draining over an L4 listener: 30 client addresses from `127.0.{net}.x` find
/// their endpoints through `home`; the busiest endpoint of `endpoints` is drained; then rounds
/// of every client and 5 newcomers run until the drained endpoint's clients have all moved.
async fn l4_drain(
    p: &TestProxy,
    endpoints: &[SocketAddr],
    net: u8,
    home: impl AsyncFn(Ipv4Addr) -> usize,
) {
    let clients: Vec<Ipv4Addr> = (1..=30).map(|i| Ipv4Addr::new(127, 0, net, i)).collect();
    let mut before = HashMap::new();
    for &ip in &clients {
        before.insert(ip.to_string(), home(ip).await.to_string());
    }
    let victim = (0..endpoints.len())
        .max_by_key(|e| before.values().filter(|v| **v == e.to_string()).count())
        .unwrap();
    let victim_name = victim.to_string();
    let on_victim = before.values().filter(|v| **v == victim_name).count();
    assert!(on_victim > 0 && on_victim < 30);

    let drained_at = Instant::now();
    drain(p, endpoints[victim]).await;
    let mut round = Round {
        before: &before,
        victim: &victim_name,
        drained_at,
        moved: HashMap::new(),
        kept: 0,
    };
    let mut newcomer = 0u8;
    loop {
        for &ip in &clients {
            let took = home(ip).await;
            round.check(&ip.to_string(), &took.to_string(), Instant::now());
        }
        for _ in 0..5 {
            newcomer = newcomer.wrapping_add(1).max(1);
            let took = home(Ipv4Addr::new(127, 0, net + 1, newcomer)).await;
            assert_ne!(took, victim, "a new client reached the draining endpoint");
        }
        if round.left() == 0 {
            break;
        }
        assert!(drained_at.elapsed() < PATIENCE, "sessions never moved");
    }
    assert!(
        round.kept >= on_victim,
        "the first round after the drain kept every client"
    );
    let c = counters(p).await;
    assert_eq!(c["moved_sessions"], on_victim, "{c}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_address_sessions_over_tcp_stay_on_a_draining_endpoint_until_the_deadline() {
    let echoes = [
        MockTcp::echo().await,
        MockTcp::echo().await,
        MockTcp::echo().await,
    ];
    let addrs: Vec<SocketAddr> = echoes.iter().map(TcpEcho::addr).collect();
    let p = l4_proxy("tcp", &addrs).await;
    l4_drain(&p, &addrs, 3, async |ip| {
        tcp_home(&echoes, ip, p.addr).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_address_sessions_over_udp_stay_on_a_draining_endpoint_until_the_deadline() {
    let echoes = [
        MockUdp::echo("a").await,
        MockUdp::echo("b").await,
        MockUdp::echo("c").await,
    ];
    let addrs: Vec<SocketAddr> = echoes.iter().map(MockUdp::addr).collect();
    let p = l4_proxy("udp", &addrs).await;
    l4_drain(&p, &addrs, 5, async |ip| {
        udp_home(&echoes, ip, p.addr).await
    })
    .await;
}

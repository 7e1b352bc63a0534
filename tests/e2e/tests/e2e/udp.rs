//! UDP listeners: one session per client address, relayed without loss, sticky to an endpoint,
//! bounded by `max_sessions` with least-recently-used eviction, and dropped when idle.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "end-to-end test: a panic is a failed test"
)]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use weir_e2e::TestProxy;
use weir_test_support::{MockUdp, wait_until};

/// How long any one reply may take before the test calls it lost.
const WAIT: Duration = Duration::from_secs(5);

/// Weir with UDP listener `l` (options `udp`) in front of cluster `c`.
async fn proxy(endpoints: &[&MockUdp], cluster_options: &str, udp: &str) -> TestProxy {
    let list: Vec<String> = endpoints.iter().map(|e| e.addr().to_string()).collect();
    TestProxy::start(&format!(
        "listeners:
  - name: l
    address: 127.0.0.1:0
    protocol: udp
    cluster: c
    udp: {udp}
clusters:
  - name: c
{cluster_options}    endpoints: [ {} ]
",
        list.join(", ")
    ))
    .await
}

fn sessions(p: &TestProxy) -> usize {
    p.proxy().udp_sessions("l").expect("a udp listener named l")
}

/// Sessions ever opened to the cluster's endpoint `index` (each counts as one request).
fn opened(p: &TestProxy, index: usize) -> u64 {
    p.proxy().snapshots().load().cluster("c").unwrap().endpoints[index]
        .state
        .requests_total()
}

/// A client socket on `127.0.0.1`, connected to the proxy so that only its replies arrive.
async fn client(p: &TestProxy) -> UdpSocket {
    client_from(Ipv4Addr::LOCALHOST, 0, p.addr).await.unwrap()
}

async fn client_from(ip: Ipv4Addr, port: u16, proxy: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = UdpSocket::bind((ip, port)).await?;
    socket.connect(proxy).await?;
    Ok(socket)
}

async fn recv(socket: &UdpSocket) -> Vec<u8> {
    let mut buf = vec![0u8; 65_535];
    let n = tokio::time::timeout(WAIT, socket.recv(&mut buf))
        .await
        .expect("reply lost")
        .unwrap();
    buf.truncate(n);
    buf
}

/// Sends `payload` and expects it back, byte for byte.
async fn echo(socket: &UdpSocket, payload: &[u8]) {
    socket.send(payload).await.unwrap();
    assert_eq!(recv(socket).await, payload);
}

/// Datagram `seq` of the no-loss run: the sequence number, then 0–1019 bytes derived from it.
fn numbered(seq: u32) -> Vec<u8> {
    let len = (seq as usize * 7_919) % 1_020;
    let mut payload = seq.to_be_bytes().to_vec();
    payload.extend((0..len).map(|i| (seq as usize).wrapping_mul(31).wrapping_add(i) as u8));
    payload
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_datagrams_echo_through_weir_without_loss() {
    const TOTAL: u32 = 10_000;
    // At most 64 datagrams of ≤ 1 KiB in flight: every socket buffer on the path (≥ 208 KiB by
    // default) holds them all, so loopback cannot drop one and the run needs no retries.
    const WINDOW: u32 = 64;
    let ep = MockUdp::echo("ep").await;
    let p = proxy(&[&ep], "", "{}").await;
    let c = client(&p).await;

    let mut received = vec![false; TOTAL as usize];
    let mut next = 0;
    while next < WINDOW {
        c.send(&numbered(next)).await.unwrap();
        next += 1;
    }
    for got in 0..TOTAL {
        let reply = recv(&c).await;
        let seq = u32::from_be_bytes(reply[..4].try_into().unwrap());
        assert_eq!(reply, numbered(seq), "reply {got} is byte-exact");
        assert!(!received[seq as usize], "datagram {seq} echoed twice");
        received[seq as usize] = true;
        if next < TOTAL {
            c.send(&numbered(next)).await.unwrap();
            next += 1;
        }
    }
    assert_eq!(ep.datagrams(), u64::from(TOTAL));
    assert_eq!(sessions(&p), 1, "one client, one session");
    assert_eq!(ep.distinct_peers(), 1, "the endpoint saw one stable source");
}

#[tokio::test]
async fn datagrams_of_every_size_up_to_the_udp_maximum_pass_intact() {
    let ep = MockUdp::echo("ep").await;
    let p = proxy(&[&ep], "", "{}").await;
    let c = client(&p).await;
    // 65,507 is the largest UDP payload over IPv4.
    for len in [0, 1, 1_472, 9_000, 65_507] {
        let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        echo(&c, &payload).await;
    }
}

#[tokio::test]
async fn each_client_sticks_to_one_endpoint_and_clients_spread_over_both() {
    let (a, b) = (MockUdp::echo("a").await, MockUdp::echo("b").await);
    let p = proxy(&[&a, &b], "    lb_policy: round_robin\n", "{}").await;
    let mut clients_per_endpoint = [0, 0];
    for i in 0..4 {
        let c = client(&p).await;
        let before = (a.datagrams(), b.datagrams());
        for j in 0..25 {
            echo(&c, format!("client {i} datagram {j}").as_bytes()).await;
        }
        match (a.datagrams() - before.0, b.datagrams() - before.1) {
            (25, 0) => clients_per_endpoint[0] += 1,
            (0, 25) => clients_per_endpoint[1] += 1,
            split => panic!("client {i} was split over both endpoints: {split:?}"),
        }
    }
    assert_eq!(clients_per_endpoint, [2, 2], "round robin over sessions");
    assert_eq!((a.distinct_peers(), b.distinct_peers()), (2, 2));
}

#[tokio::test]
async fn a_source_ip_hash_sends_every_port_of_a_client_to_one_endpoint() {
    let (a, b) = (MockUdp::echo("a").await, MockUdp::echo("b").await);
    let p = proxy(
        &[&a, &b],
        "    lb_policy: maglev\n    hash_key: { source_ip: true }\n",
        "{}",
    )
    .await;
    for i in 0..8 {
        echo(&client(&p).await, format!("client {i}").as_bytes()).await;
    }
    let counts = (a.datagrams(), b.datagrams());
    assert!(counts == (8, 0) || counts == (0, 8), "{counts:?}");
    assert_eq!(sessions(&p), 8, "still one session per client port");
}

// 50,000 distinct (address, port) pairs exceed one address's ephemeral range, so they come from
// fixed ports on 127.0.0.2–127.0.0.5 (loopback is the whole 127/8 on Linux), below the ephemeral
// range so that no socket of this or another test can hold them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_table_stays_at_its_bound_under_50000_source_addresses() {
    const BOUND: usize = 1_000;
    const PER_ADDRESS: u32 = 12_500;
    let ep = MockUdp::echo("ep").await;
    let p = Arc::new(proxy(&[&ep], "", "{ max_sessions: 1000 }").await);

    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (p, done) = (Arc::clone(&p), Arc::clone(&done));
        tokio::spawn(async move {
            let (mut max, mut samples) = (0, 0u32);
            while !done.load(Ordering::SeqCst) {
                max = max.max(sessions(&p));
                samples += 1;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            (max, samples)
        })
    };
    let started = Instant::now();
    let workers: Vec<_> = (2..=5u8)
        .map(|last| {
            let proxy_addr = p.addr;
            tokio::spawn(async move {
                let ip = Ipv4Addr::new(127, 0, 0, last);
                let mut port: u16 = 20_000;
                for i in 0..PER_ADDRESS {
                    // Another process may hold a port; the next one serves as well.
                    let socket = loop {
                        let bound = client_from(ip, port, proxy_addr).await;
                        port = port.checked_add(1).expect("ran out of ports");
                        if let Ok(socket) = bound {
                            break socket;
                        }
                    };
                    echo(&socket, format!("{ip} #{i}").as_bytes()).await;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    let elapsed = started.elapsed();
    done.store(true, Ordering::SeqCst);
    let (max, samples) = sampler.await.unwrap();

    assert_eq!(ep.datagrams(), 50_000, "every client got its answer");
    assert!(max <= BOUND, "the table held {max} sessions");
    assert!(samples >= 10, "sampled only {samples} times in {elapsed:?}");
    assert_eq!(sessions(&p), BOUND, "full, not over");
    assert_eq!(opened(&p, 0), 50_000, "one session per source address");
    // The full table still admits new clients.
    for i in 0..10 {
        echo(&client(&p).await, format!("late {i}").as_bytes()).await;
    }
    assert_eq!(sessions(&p), BOUND);
}

// Real time: with tokio's paused clock the runtime would jump ahead while datagrams are still in
// flight. Only the lower bound is tight; a slow machine can only make expiry look later.
#[tokio::test]
async fn idle_sessions_expire_after_the_idle_timeout() {
    let ep = MockUdp::echo("ep").await;
    let p = proxy(&[&ep], "", "{ idle_timeout: 300ms }").await;
    let clients = [client(&p).await, client(&p).await, client(&p).await];
    let started = Instant::now();
    for c in &clients {
        echo(c, b"hello").await;
    }
    assert_eq!(sessions(&p), 3);
    assert!(
        wait_until(Duration::from_secs(5), || sessions(&p) == 0).await,
        "sessions expired"
    );
    let waited = started.elapsed();
    // On time: not before the timeout, and not long after it (room for a loaded CI machine).
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(2),
        "expired after {waited:?} for a 300ms idle timeout"
    );
    // A returning client simply gets a new session.
    echo(&clients[0], b"back").await;
    assert_eq!((sessions(&p), opened(&p, 0)), (1, 4));
}

#[tokio::test]
async fn a_new_client_evicts_the_least_recently_used_session_when_full() {
    let ep = MockUdp::echo("ep").await;
    let p = proxy(&[&ep], "", "{ max_sessions: 2 }").await;
    let (a, b, c) = (client(&p).await, client(&p).await, client(&p).await);

    // Table, least recently used first, after each step.
    echo(&a, b"a").await;
    echo(&b, b"b").await;
    echo(&c, b"c").await; // [b, c]: a evicted
    assert_eq!((sessions(&p), opened(&p, 0)), (2, 3));
    assert_eq!(ep.distinct_peers(), 3, "three sessions, three sources");
    echo(&a, b"a").await; // [c, a]: a needed a new session; b evicted
    assert_eq!(opened(&p, 0), 4);
    echo(&c, b"c").await; // [a, c]: c kept
    assert_eq!(opened(&p, 0), 4);
    echo(&b, b"b").await; // [c, b]: a evicted, the least recently used (FIFO: c, the oldest)
    assert_eq!(opened(&p, 0), 5);
    echo(&c, b"c").await; // c kept, which FIFO eviction would have dropped
    assert_eq!((sessions(&p), opened(&p, 0)), (2, 5));
    echo(&a, b"a").await;
    assert_eq!(opened(&p, 0), 6);
}

#[tokio::test]
async fn shutdown_ends_every_session() {
    let ep = MockUdp::echo("ep").await;
    let p = proxy(&[&ep], "", "{}").await;
    for i in 0..5 {
        echo(&client(&p).await, format!("{i}").as_bytes()).await;
    }
    assert_eq!(sessions(&p), 5);
    let state = Arc::clone(&p.proxy().snapshots().load().clusters()[0].endpoints[0].state);
    assert_eq!(state.in_flight(), 5, "each session counts as one in flight");
    assert!(
        p.weir.shutdown(Duration::from_secs(5)).await,
        "closed in time"
    );
    assert_eq!(state.in_flight(), 0);
}

//! TCP listeners end to end: byte-exact streaming, half-close, server-speaks-first, balancing,
//! connect retries, reset propagation, limits, idle timeout and the PROXY protocol.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "end-to-end test: a panic is a failed test"
)]

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use weir_e2e::{TestProxy, echo_round_trip};
use weir_test_support::{MockTcp, wait_until};

const SECS_10: Duration = Duration::from_secs(10);

fn tcp_config(endpoints: &[SocketAddr], listener_extra: &str, cluster_extra: &str) -> String {
    let list: Vec<String> = endpoints.iter().map(ToString::to_string).collect();
    format!(
        "listeners:
  - name: l
    address: 127.0.0.1:0
    protocol: tcp
    cluster: c
{listener_extra}clusters:
  - name: c
    connect_timeout: 1s
{cluster_extra}    endpoints: [ {} ]
",
        list.join(", ")
    )
}

/// A one-shot upstream: accepts one connection and hands it to the test.
async fn one_shot() -> (SocketAddr, tokio::sync::oneshot::Receiver<TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        let _ = tx.send(s);
    });
    (addr, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_mib_round_trip_is_byte_exact_with_splice() {
    hundred_mib_round_trip("    tcp: { zero_copy: true }\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_mib_round_trip_is_byte_exact_buffered() {
    hundred_mib_round_trip("    tcp: { zero_copy: false }\n").await;
}

async fn hundred_mib_round_trip(listener_extra: &str) {
    let echo = MockTcp::echo().await;
    let p = TestProxy::start(&tcp_config(&[echo.addr()], listener_extra, "")).await;
    let stream = TcpStream::connect(p.addr).await.unwrap();
    let (mut r, mut w) = stream.into_split();
    const TOTAL: usize = 100 * 1024 * 1024;
    let writer = tokio::spawn(async move {
        let mut chunk = vec![0u8; 64 * 1024];
        let mut sent = 0usize;
        while sent < TOTAL {
            for (i, b) in chunk.iter_mut().enumerate() {
                *b = ((sent + i) % 251) as u8;
            }
            w.write_all(&chunk).await.unwrap();
            sent += chunk.len();
        }
        w.shutdown().await.unwrap();
    });
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0usize;
    loop {
        let n = r.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        for (i, &b) in buf[..n].iter().enumerate() {
            assert_eq!(b, ((got + i) % 251) as u8, "byte {}", got + i);
        }
        got += n;
    }
    writer.await.unwrap();
    assert_eq!(
        got, TOTAL,
        "every byte echoed, then EOF after the client's half-close"
    );
}

#[tokio::test]
async fn client_half_close_still_gets_the_whole_answer() {
    for mode in [
        "    tcp: { zero_copy: true }\n",
        "    tcp: { zero_copy: false }\n",
    ] {
        client_half_close(mode).await;
    }
}

async fn client_half_close(listener_extra: &str) {
    let (addr, upstream) = one_shot().await;
    let p = TestProxy::start(&tcp_config(&[addr], listener_extra, "")).await;
    let mut client = TcpStream::connect(p.addr).await.unwrap();
    client.write_all(b"question").await.unwrap();
    client.shutdown().await.unwrap();
    let mut up = upstream.await.unwrap();
    let mut q = Vec::new();
    up.read_to_end(&mut q).await.unwrap();
    assert_eq!(q, b"question", "the upstream saw the request and then EOF");
    up.write_all(b"answer after your FIN").await.unwrap();
    up.shutdown().await.unwrap();
    let mut a = Vec::new();
    client.read_to_end(&mut a).await.unwrap();
    assert_eq!(a, b"answer after your FIN");
}

#[tokio::test]
async fn server_half_close_still_accepts_client_bytes() {
    for mode in [
        "    tcp: { zero_copy: true }\n",
        "    tcp: { zero_copy: false }\n",
    ] {
        server_half_close(mode).await;
    }
}

async fn server_half_close(listener_extra: &str) {
    let (addr, upstream) = one_shot().await;
    let p = TestProxy::start(&tcp_config(&[addr], listener_extra, "")).await;
    let mut client = TcpStream::connect(p.addr).await.unwrap();
    let mut up = upstream.await.unwrap();
    // Server speaks first, then closes its sending half.
    up.write_all(b"220 ready\r\n").await.unwrap();
    up.shutdown().await.unwrap();
    let mut banner = Vec::new();
    client.read_to_end(&mut banner).await.unwrap();
    assert_eq!(
        banner, b"220 ready\r\n",
        "banner arrived without the client sending anything"
    );
    client.write_all(b"late data").await.unwrap();
    client.shutdown().await.unwrap();
    let mut late = Vec::new();
    up.read_to_end(&mut late).await.unwrap();
    assert_eq!(late, b"late data");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_connections_spread_evenly_with_round_robin() {
    let echoes = [
        MockTcp::echo().await,
        MockTcp::echo().await,
        MockTcp::echo().await,
        MockTcp::echo().await,
    ];
    let addrs: Vec<SocketAddr> = echoes.iter().map(|e| e.addr()).collect();
    let p = TestProxy::start(&tcp_config(&addrs, "", "    lb_policy: round_robin\n")).await;
    let mut conns = Vec::new();
    for i in 0..1_000u32 {
        let mut s = TcpStream::connect(p.addr).await.unwrap();
        s.write_all(&i.to_be_bytes()).await.unwrap();
        conns.push(s);
    }
    // All 1,000 are open at once; each echoes its own bytes.
    for (i, s) in conns.iter_mut().enumerate() {
        let mut b = [0u8; 4];
        s.read_exact(&mut b).await.unwrap();
        assert_eq!(u32::from_be_bytes(b), i as u32);
    }
    for e in &echoes {
        let n = e.connections();
        assert!(
            (225..=275).contains(&n),
            "endpoint got {n} of 1000 connections"
        );
    }
}

#[tokio::test]
async fn connect_failure_moves_to_the_next_endpoint() {
    let echo = MockTcp::echo().await;
    let dead = MockTcp::refusing_addr();
    let p = TestProxy::start(&tcp_config(
        &[dead, echo.addr()],
        "    tcp: { connect_attempts: 2 }\n",
        "",
    ))
    .await;
    for _ in 0..10 {
        echo_round_trip(p.addr, b"ping").await;
    }
    assert_eq!(
        echo.connections(),
        10,
        "every connection landed on the live endpoint"
    );
}

#[tokio::test]
async fn all_endpoints_refusing_closes_the_client() {
    let p = TestProxy::start(&tcp_config(&[MockTcp::refusing_addr()], "", "")).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    let mut b = [0u8; 1];
    let n = tokio::time::timeout(SECS_10, s.read(&mut b))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "closed, not hung");
}

#[tokio::test]
async fn upstream_reset_reaches_the_client() {
    for mode in [
        "    tcp: { zero_copy: true }\n",
        "    tcp: { zero_copy: false }\n",
    ] {
        upstream_reset(mode).await;
    }
}

async fn upstream_reset(listener_extra: &str) {
    let (addr, upstream) = one_shot().await;
    let p = TestProxy::start(&tcp_config(&[addr], listener_extra, "")).await;
    let mut client = TcpStream::connect(p.addr).await.unwrap();
    client.write_all(b"x").await.unwrap();
    let up = upstream.await.unwrap();
    up.set_zero_linger().unwrap();
    drop(up);
    let mut b = [0u8; 8];
    let r = tokio::time::timeout(SECS_10, client.read(&mut b))
        .await
        .unwrap();
    assert_eq!(
        r.map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionReset),
        "RST, not a clean EOF"
    );
}

#[tokio::test]
async fn client_reset_reaches_the_upstream() {
    let (addr, upstream) = one_shot().await;
    let p = TestProxy::start(&tcp_config(&[addr], "", "")).await;
    let client = TcpStream::connect(p.addr).await.unwrap();
    let mut up = upstream.await.unwrap();
    client.set_zero_linger().unwrap();
    drop(client);
    let mut b = [0u8; 8];
    let r = tokio::time::timeout(SECS_10, up.read(&mut b))
        .await
        .unwrap();
    assert_eq!(
        r.map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionReset)
    );
}

#[tokio::test]
async fn connection_limit_closes_extra_connections() {
    let echo = MockTcp::echo().await;
    let p = TestProxy::start(&tcp_config(
        &[echo.addr()],
        "    tcp: { max_connections: 2 }\n",
        "",
    ))
    .await;
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(echo_round_trip(p.addr, b"hi").await);
    }
    let mut third = TcpStream::connect(p.addr).await.unwrap();
    let mut b = [0u8; 2];
    let n = tokio::time::timeout(SECS_10, third.read(&mut b))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "the third connection is closed at once");
    drop(held);
    // Once the two close, a new connection is served again.
    assert!(
        wait_until(SECS_10, || echo.connections() == 2).await,
        "only two reached the endpoint"
    );
    let served = async {
        loop {
            let mut s = TcpStream::connect(p.addr).await.unwrap();
            let _ = s.write_all(b"ok").await;
            let mut b = [0u8; 2];
            if s.read_exact(&mut b).await.is_ok() {
                return b;
            }
        }
    };
    assert_eq!(&tokio::time::timeout(SECS_10, served).await.unwrap(), b"ok");
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let echo = MockTcp::echo().await;
    let p = TestProxy::start(&tcp_config(
        &[echo.addr()],
        "    tcp: { idle_timeout: 300ms }\n",
        "",
    ))
    .await;
    let mut s = echo_round_trip(p.addr, b"hi").await;
    let mut b = [0u8; 2];
    let started = std::time::Instant::now();
    let n = tokio::time::timeout(SECS_10, s.read(&mut b))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0);
    let waited = started.elapsed();
    // On time: not before the timeout (less the echo's own round trip), and not long after it;
    // the upper bound leaves room for a loaded 2-core CI machine.
    assert!(
        waited >= Duration::from_millis(200) && waited < Duration::from_secs(2),
        "closed after {waited:?} for a 300ms idle timeout"
    );
}

#[tokio::test]
async fn proxy_protocol_is_sent_to_endpoints() {
    for (version, expect_v1) in [("v1", true), ("v2", false)] {
        let (addr, upstream) = one_shot().await;
        let p = TestProxy::start(&tcp_config(
            &[addr],
            "",
            &format!("    proxy_protocol: {version}\n"),
        ))
        .await;
        let mut client = TcpStream::connect(p.addr).await.unwrap();
        let client_addr = client.local_addr().unwrap();
        client.write_all(b"payload").await.unwrap();
        client.shutdown().await.unwrap();
        let mut up = upstream.await.unwrap();
        let mut got = Vec::new();
        up.read_to_end(&mut got).await.unwrap();
        if expect_v1 {
            let want = format!(
                "PROXY TCP4 127.0.0.1 127.0.0.1 {} {}\r\npayload",
                client_addr.port(),
                p.addr.port()
            );
            assert_eq!(String::from_utf8_lossy(&got), want);
        } else {
            assert_eq!(&got[..12], b"\r\n\r\n\0\r\nQUIT\n", "v2 signature");
            assert_eq!(got[12], 0x21, "version 2, PROXY command");
            assert_eq!(
                u16::from_be_bytes([got[24], got[25]]),
                client_addr.port(),
                "source port"
            );
            assert!(got.ends_with(b"payload"));
        }
    }
}

#[tokio::test]
async fn trusted_proxy_header_carries_the_real_client_to_the_endpoint() {
    let (addr, upstream) = one_shot().await;
    let p = TestProxy::start(&tcp_config(
        &[addr],
        "    proxy_protocol: { trusted: [ 127.0.0.0/8 ] }\n",
        "    proxy_protocol: v1\n",
    ))
    .await;
    let mut client = TcpStream::connect(p.addr).await.unwrap();
    client
        .write_all(b"PROXY TCP4 192.0.2.10 127.0.0.1 40000 443\r\nhello")
        .await
        .unwrap();
    client.shutdown().await.unwrap();
    let mut up = upstream.await.unwrap();
    let mut got = Vec::new();
    up.read_to_end(&mut got).await.unwrap();
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("PROXY TCP4 192.0.2.10 127.0.0.1 40000 "),
        "the endpoint sees the original client: {text}"
    );
    assert!(
        text.ends_with("\r\nhello"),
        "the incoming header was consumed: {text}"
    );
}

#[tokio::test]
async fn proxy_header_from_an_untrusted_peer_is_refused() {
    let echo = MockTcp::echo().await;
    let p = TestProxy::start(&tcp_config(
        &[echo.addr()],
        "    proxy_protocol: { trusted: [ 10.0.0.0/8 ] }\n",
        "",
    ))
    .await;
    let mut client = TcpStream::connect(p.addr).await.unwrap();
    client
        .write_all(b"PROXY TCP4 192.0.2.10 127.0.0.1 40000 443\r\nhello")
        .await
        .unwrap();
    let mut b = [0u8; 16];
    let r = tokio::time::timeout(SECS_10, client.read(&mut b))
        .await
        .unwrap();
    assert!(matches!(r, Ok(0) | Err(_)), "connection refused: {r:?}");
    let stats = p.proxy().listener_stats("l").unwrap();
    assert!(
        wait_until(SECS_10, || stats
            .rejected_proxy_headers
            .load(std::sync::atomic::Ordering::Relaxed)
            == 1)
        .await
    );
    // An untrusted peer that speaks its own protocol is served normally.
    echo_round_trip(p.addr, b"plain").await;
}

/// A PROXY v2 header announcing TCP over IPv4 from `src` to `dst`.
fn proxy_v2(src: ([u8; 4], u16), dst: ([u8; 4], u16)) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x21); // version 2, PROXY command
    h.push(0x11); // TCP over IPv4
    h.extend_from_slice(&12u16.to_be_bytes());
    h.extend_from_slice(&src.0);
    h.extend_from_slice(&dst.0);
    h.extend_from_slice(&src.1.to_be_bytes());
    h.extend_from_slice(&dst.1.to_be_bytes());
    h
}

#[tokio::test]
async fn a_trusted_peer_may_send_v2_and_must_send_a_header() {
    let (addr, upstream) = one_shot().await;
    let p = TestProxy::start(&tcp_config(
        &[addr],
        "    proxy_protocol: { trusted: [ 127.0.0.0/8 ] }\n",
        "    proxy_protocol: v1\n",
    ))
    .await;
    let mut client = TcpStream::connect(p.addr).await.unwrap();
    let mut first = proxy_v2(([192, 0, 2, 10], 40000), ([127, 0, 0, 1], 443));
    first.extend_from_slice(b"hello");
    client.write_all(&first).await.unwrap();
    client.shutdown().await.unwrap();
    let mut up = upstream.await.unwrap();
    let mut got = Vec::new();
    up.read_to_end(&mut got).await.unwrap();
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("PROXY TCP4 192.0.2.10 127.0.0.1 40000 "),
        "the endpoint sees the client the v2 header named: {text}"
    );
    assert!(
        text.ends_with("\r\nhello"),
        "the v2 header was consumed: {text}"
    );

    // A trusted peer that starts without a header is refused, counted, and dials nothing.
    let echo = MockTcp::echo().await;
    let p = TestProxy::start(&tcp_config(
        &[echo.addr()],
        "    proxy_protocol: { trusted: [ 127.0.0.0/8 ] }\n",
        "",
    ))
    .await;
    let counters = p
        .proxy()
        .listener_counters()
        .into_iter()
        .find(|(name, _)| name == "l")
        .unwrap()
        .1;
    // A load balancer's TCP health check (connect, then close without a byte) is no rejection.
    drop(TcpStream::connect(p.addr).await.unwrap());
    assert!(
        wait_until(SECS_10, || counters.accepted() == 1
            && counters.active() == 0)
        .await
    );
    let stats = p.proxy().listener_stats("l").unwrap();
    assert_eq!(
        stats
            .rejected_proxy_headers
            .load(std::sync::atomic::Ordering::Relaxed),
        0,
        "a silent connection is not a rejected header"
    );
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"hello without a header\r\n").await.unwrap();
    let mut b = [0u8; 16];
    let r = tokio::time::timeout(SECS_10, s.read(&mut b)).await.unwrap();
    assert!(matches!(r, Ok(0) | Err(_)), "connection refused: {r:?}");
    assert!(
        wait_until(SECS_10, || stats
            .rejected_proxy_headers
            .load(std::sync::atomic::Ordering::Relaxed)
            == 1)
        .await
    );
    assert_eq!(echo.connections(), 0, "no endpoint was dialled");
}

#[tokio::test]
async fn source_ip_hashing_keeps_a_client_on_one_endpoint() {
    let echoes = [
        MockTcp::echo().await,
        MockTcp::echo().await,
        MockTcp::echo().await,
    ];
    let addrs: Vec<SocketAddr> = echoes.iter().map(|e| e.addr()).collect();
    let p = TestProxy::start(&tcp_config(
        &addrs,
        "",
        "    lb_policy: maglev\n    hash_key: { source_ip: true }\n",
    ))
    .await;
    for _ in 0..12 {
        echo_round_trip(p.addr, b"x").await;
    }
    let counts: Vec<u64> = echoes.iter().map(|e| e.connections()).collect();
    assert_eq!(
        counts.iter().filter(|&&c| c > 0).count(),
        1,
        "one client IP, one endpoint: {counts:?}"
    );
}

#[tokio::test]
async fn an_untrusted_client_whose_first_read_is_short_is_still_served() {
    // `P` alone could start `PROXY `; weir must wait for more before deciding, not refuse.
    let echo = MockTcp::echo().await;
    let p = TestProxy::start(&tcp_config(
        &[echo.addr()],
        "    proxy_protocol: { trusted: [ 10.0.0.0/8 ] }\n",
        "",
    ))
    .await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"P").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    s.write_all(b"ING\r\n").await.unwrap();
    let mut b = [0u8; 6];
    s.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"PING\r\n");
    // A SIP-style CRLF keep-alive is ordinary data too.
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"\r\n\r\n").await.unwrap();
    s.shutdown().await.unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"\r\n\r\n");
    let stats = p.proxy().listener_stats("l").unwrap();
    assert_eq!(
        stats
            .rejected_proxy_headers
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

#[tokio::test]
async fn shutdown_lets_open_connections_finish_within_the_grace_period() {
    let echo = MockTcp::echo().await;
    let p = TestProxy::start(&tcp_config(&[echo.addr()], "", "")).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"before").await.unwrap();
    let mut b = [0u8; 6];
    s.read_exact(&mut b).await.unwrap();
    let shutdown = tokio::spawn(p.weir.shutdown(Duration::from_secs(10)));
    // New connections are refused while this one keeps working.
    assert!(
        wait_until(SECS_10, || std::net::TcpStream::connect(p.addr).is_err()).await,
        "the listener stopped accepting"
    );
    s.write_all(b"during").await.unwrap();
    s.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"during");
    s.shutdown().await.unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).await.unwrap();
    assert!(shutdown.await.unwrap(), "finished within the grace period");
}

#[tokio::test]
async fn connections_still_open_after_the_grace_period_are_closed() {
    let echo = MockTcp::echo().await;
    let p = TestProxy::start(&tcp_config(&[echo.addr()], "", "")).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"x").await.unwrap();
    let mut b = [0u8; 1];
    s.read_exact(&mut b).await.unwrap();
    let finished = p.weir.shutdown(Duration::from_millis(300)).await;
    assert!(!finished, "the open connection outlived the grace period");
    let n = tokio::time::timeout(SECS_10, s.read(&mut b))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "and was closed at the hard stop");
}

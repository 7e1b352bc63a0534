//! Unit tests of the UDP session relay, with real sockets on loopback.
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::*;
use crate::{Snapshot, SnapshotHandle};

const WAIT: Duration = Duration::from_secs(5);

/// One UDP listener served by [`serve`], outside a `Proxy`.
struct Harness {
    addr: SocketAddr,
    snapshots: SnapshotHandle,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl Harness {
    async fn start(endpoint: SocketAddr, udp: &str) -> Self {
        let yaml = format!(
            "listeners:
  - name: l
    address: 127.0.0.1:0
    protocol: udp
    cluster: c
    udp: {udp}
clusters:
  - name: c
    endpoints: [ {endpoint} ]
"
        );
        let config = weir_config::load_str(&yaml, "test.yaml").unwrap();
        let snapshots = SnapshotHandle::new(Snapshot::compile(&config, None).unwrap());
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = socket.local_addr().unwrap();
        let (shutdown, tasks) = (CancellationToken::new(), TaskTracker::new());
        let ctx = ListenerCtx {
            listener: crate::listeners::ListenerRef::new("l".into()),
            snapshots: snapshots.clone(),
            shutdown: shutdown.clone(),
            hard_stop: shutdown.clone(),
            tasks: tasks.clone(),
            counters: Default::default(),
            access_log: crate::AccessLogs::default(),
            spans: None,
        };
        tasks.spawn(serve(socket, ctx));
        Self {
            addr,
            snapshots,
            shutdown,
            tasks,
        }
    }

    fn sessions(&self) -> usize {
        session_count(self.addr).unwrap()
    }

    /// Sessions ever opened to the (only) endpoint.
    fn opened(&self) -> u64 {
        self.snapshots.load().clusters[0].endpoints[0]
            .state
            .requests_total()
    }

    fn endpoint_state(&self) -> Arc<weir_core::EndpointState> {
        Arc::clone(&self.snapshots.load().clusters[0].endpoints[0].state)
    }

    async fn client(&self) -> UdpSocket {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        socket.connect(self.addr).await.unwrap();
        socket
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.tasks.close();
        tokio::time::timeout(WAIT, self.tasks.wait()).await.unwrap();
        assert_eq!(session_count(self.addr), None, "unregistered");
    }
}

/// An endpoint that echoes, except that `push` makes it send `ticks` datagrams to the sender,
/// one every `every`.
async fn pushing_endpoint(ticks: usize, every: Duration) -> SocketAddr {
    let socket = Arc::new(UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap());
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
            if &buf[..n] == b"push" {
                let socket = Arc::clone(&socket);
                tokio::spawn(async move {
                    for i in 0..ticks {
                        tokio::time::sleep(every).await;
                        let _ = socket.send_to(format!("tick{i}").as_bytes(), peer).await;
                    }
                });
            } else {
                let _ = socket.send_to(&buf[..n], peer).await;
            }
        }
    });
    addr
}

async fn recv(socket: &UdpSocket) -> Vec<u8> {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let n = tokio::time::timeout(WAIT, socket.recv(&mut buf))
        .await
        .expect("a reply")
        .unwrap();
    buf.truncate(n);
    buf
}

async fn echo(socket: &UdpSocket, payload: &[u8]) {
    socket.send(payload).await.unwrap();
    assert_eq!(recv(socket).await, payload);
}

async fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cond()
}

#[tokio::test]
async fn an_endpoint_that_refuses_ends_the_session_and_the_next_datagram_opens_another() {
    // Bound and released: nothing listens there, so the kernel answers ICMP unreachable.
    let refusing = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap();
    let h = Harness::start(refusing, "{ idle_timeout: 60s }").await;
    let state = h.endpoint_state();
    let client = h.client().await;
    client.send(b"anyone?").await.unwrap();
    assert!(eventually(|| h.opened() == 1 && state.connect_failures() == 1).await);
    assert!(
        eventually(|| h.sessions() == 0).await,
        "the refused session ended"
    );
    client.send(b"again").await.unwrap();
    assert!(eventually(|| h.opened() == 2).await, "a new session");
    assert_eq!(
        state.in_flight(),
        0,
        "refused sessions hold no in-flight count"
    );
    h.stop().await;
}

#[tokio::test]
async fn endpoint_traffic_keeps_a_session_alive_past_its_client_idle_time() {
    // 75 ticks over ~1.5 s, one every 20 ms: well past the 1 s idle timeout, but never close to
    // 1 s apart (a wide margin for a loaded CI machine), so the session must live until the last
    // one arrives.
    let endpoint = pushing_endpoint(75, Duration::from_millis(20)).await;
    let h = Harness::start(endpoint, "{ idle_timeout: 1s }").await;
    let client = h.client().await;
    client.send(b"push").await.unwrap();
    for i in 0..75 {
        assert_eq!(recv(&client).await, format!("tick{i}").as_bytes());
    }
    let last = Instant::now();
    assert_eq!(h.opened(), 1);
    assert!(
        eventually(|| h.sessions() == 0).await,
        "expired after the ticks"
    );
    assert!(
        last.elapsed() >= Duration::from_millis(800),
        "not before the idle timeout"
    );
    assert_eq!(h.endpoint_state().in_flight(), 0);
    h.stop().await;
}

#[tokio::test]
async fn eviction_spares_a_session_its_endpoint_keeps_using() {
    let endpoint = pushing_endpoint(1_000, Duration::from_millis(5)).await;
    let h = Harness::start(endpoint, "{ max_sessions: 2, idle_timeout: 60s }").await;
    let (a, b, c) = (h.client().await, h.client().await, h.client().await);
    a.send(b"push").await.unwrap();
    assert!(recv(&a).await.starts_with(b"tick"));
    echo(&b, b"b").await;
    // A's client sent least recently, but its endpoint spoke after B's did: let queued
    // ticks arrive, drop them, and wait for one relayed well after B's echo.
    tokio::time::sleep(Duration::from_millis(30)).await;
    while a.try_recv(&mut [0u8; 64]).is_ok() {}
    assert!(recv(&a).await.starts_with(b"tick"));
    echo(&c, b"c").await;
    assert_eq!((h.sessions(), h.opened()), (2, 3));
    a.send(b"a").await.unwrap();
    let reply = loop {
        let reply = recv(&a).await;
        if !reply.starts_with(b"tick") {
            break reply;
        }
    };
    assert_eq!(reply, b"a");
    assert_eq!(h.opened(), 3, "A's session survived");
    echo(&b, b"b").await;
    assert_eq!(h.opened(), 4, "B's session was evicted");
    assert_eq!(h.sessions(), 2);
    h.stop().await;
}

#[tokio::test]
async fn shutdown_ends_every_session() {
    let endpoint = pushing_endpoint(0, Duration::ZERO).await;
    let h = Harness::start(endpoint, "{ idle_timeout: 60s }").await;
    let state = h.endpoint_state();
    for _ in 0..3 {
        echo(&h.client().await, b"hello").await;
    }
    assert_eq!(h.sessions(), 3);
    assert_eq!(state.in_flight(), 3, "each session counts as one in flight");
    h.stop().await;
    assert_eq!(state.in_flight(), 0);
}

//! TLS passthrough: weir routes by the ClientHello's SNI without terminating TLS.
//!
//! Every client verifies the endpoint's certificate against a test CA, so a handshake through
//! the proxy proves both that weir reached the endpoint holding the right certificate and that
//! it forwarded the ClientHello byte for byte (the handshake transcript covers it).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "end-to-end test: a panic is a failed test"
)]

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weir_e2e::TestProxy;
use weir_test_support::{MockTls, TestCa, TlsStream, tls_connect, wait_until};

/// How long any single step may take before the test fails instead of hanging.
const STEP: Duration = Duration::from_secs(10);

/// A listener `l` routing `a.test` to `a`, `*.b.test` to `b`, anything else to `d`.
struct Setup {
    ca: TestCa,
    a: MockTls,
    b: MockTls,
    d: MockTls,
    proxy: TestProxy,
}

impl Setup {
    async fn start() -> Self {
        let ca = TestCa::new();
        let a = MockTls::start("a", &["a.test"], &ca).await;
        let b = MockTls::start("b", &["*.b.test"], &ca).await;
        let d = MockTls::start("d", &["127.0.0.1", "other.test"], &ca).await;
        let proxy = TestProxy::start(&format!(
            "listeners:
  - name: l
    address: 127.0.0.1:0
    protocol: tls_passthrough
    sni:
      - {{ server_names: [a.test], cluster: a }}
      - {{ server_names: [\"*.b.test\"], cluster: b }}
    default_cluster: d
    tcp: {{ first_bytes_timeout: 300ms }}
clusters:
  - {{ name: a, endpoints: [ {} ] }}
  - {{ name: b, endpoints: [ {} ] }}
  - {{ name: d, endpoints: [ {} ] }}
",
            a.addr(),
            b.addr(),
            d.addr()
        ))
        .await;
        Self { ca, a, b, d, proxy }
    }

    /// Connects through the proxy as a client of `server_name` and returns the name of the
    /// endpoint that answered, after checking that it echoes.
    async fn reached(&self, server_name: &str) -> String {
        let mut tls =
            tokio::time::timeout(STEP, tls_connect(self.proxy.addr, server_name, &self.ca))
                .await
                .expect("TLS handshake through the proxy timed out")
                .unwrap_or_else(|e| panic!("TLS handshake as {server_name} failed: {e}"));
        let name = read_some(&mut tls).await;
        tls.write_all(b"ping").await.unwrap();
        let mut echo = [0u8; 4];
        tokio::time::timeout(STEP, tls.read_exact(&mut echo))
            .await
            .expect("echo timed out")
            .unwrap();
        assert_eq!(&echo, b"ping");
        name
    }

    fn rejected_client_hellos(&self) -> u64 {
        self.proxy
            .proxy()
            .listener_stats("l")
            .expect("`l` is a stream listener")
            .rejected_client_hellos
            .load(Ordering::Relaxed)
    }

    fn endpoint_connections(&self) -> u64 {
        self.a.connections() + self.b.connections() + self.d.connections()
    }
}

/// The first bytes the endpoint wrote: its name.
async fn read_some(tls: &mut TlsStream) -> String {
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(STEP, tls.read(&mut buf))
        .await
        .expect("endpoint name timed out")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Reads until the proxy closes the connection; fails the test if it stays open.
async fn closed_by_proxy(stream: &mut TcpStream) {
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(STEP, stream.read(&mut buf))
        .await
        .expect("the proxy kept the connection open");
    // A reset is as good as an orderly close here; either way nothing was sent back.
    assert!(matches!(read, Ok(0) | Err(_)), "proxy answered {read:?}");
}

#[tokio::test]
async fn routes_by_sni_and_passes_the_handshake_through() {
    let s = Setup::start().await;
    assert_eq!(s.reached("a.test").await, "a");
    assert_eq!(s.reached("x.b.test").await, "b");
    assert_eq!(s.reached("Y.B.Test").await, "b", "case-insensitive");
    assert_eq!(s.reached("other.test").await, "d", "no route matches");
    assert_eq!(s.reached("127.0.0.1").await, "d", "no SNI at all");
    assert_eq!(
        (s.a.handshakes(), s.b.handshakes(), s.d.handshakes()),
        (1, 2, 2)
    );
    assert_eq!(s.rejected_client_hellos(), 0);
}

#[tokio::test]
async fn the_client_verifies_the_endpoint_it_was_routed_to() {
    let s = Setup::start().await;
    // `b.test` itself does not match `*.b.test`, so it goes to `d`, whose certificate lacks it.
    let result = tokio::time::timeout(STEP, tls_connect(s.proxy.addr, "b.test", &s.ca))
        .await
        .expect("handshake timed out");
    assert!(result.is_err(), "d must not pass as b.test");
    assert!(wait_until(STEP, || s.d.connections() == 1).await);
    assert_eq!(s.a.connections() + s.b.connections(), 0);
}

#[tokio::test]
async fn a_client_sending_garbage_is_closed_and_counted() {
    let s = Setup::start().await;
    let mut stream = TcpStream::connect(s.proxy.addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: a.test\r\n\r\n")
        .await
        .unwrap();
    closed_by_proxy(&mut stream).await;
    assert!(wait_until(STEP, || s.rejected_client_hellos() == 1).await);
    assert_eq!(s.endpoint_connections(), 0, "no endpoint was dialled");
    // The listener still serves well-behaved clients.
    assert_eq!(s.reached("a.test").await, "a");
}

// Real time on purpose (see limits.rs): only a one-sided bound on the wait is asserted.
#[tokio::test]
async fn a_silent_client_is_closed_after_first_bytes_timeout() {
    let s = Setup::start().await;
    let mut stream = TcpStream::connect(s.proxy.addr).await.unwrap();
    let started = Instant::now();
    closed_by_proxy(&mut stream).await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250),
        "closed after only {waited:?}"
    );
    assert!(wait_until(STEP, || s.rejected_client_hellos() == 1).await);
    assert_eq!(s.endpoint_connections(), 0);
}

#[tokio::test]
async fn a_client_hello_trickling_in_is_still_routed() {
    let s = Setup::start().await;
    // A client whose ClientHello arrives a few bytes at a time, within the timeout.
    let relay = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay_addr = relay.local_addr().unwrap();
    let proxy_addr = s.proxy.addr;
    tokio::spawn(async move {
        let (mut client, _) = relay.accept().await.unwrap();
        let mut up = TcpStream::connect(proxy_addr).await.unwrap();
        up.set_nodelay(true).unwrap();
        let mut first = [0u8; 4096];
        let n = client.read(&mut first).await.unwrap();
        for chunk in first[..n].chunks(7) {
            up.write_all(chunk).await.unwrap();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::io::copy_bidirectional(&mut client, &mut up)
            .await
            .ok();
    });
    let mut tls = tokio::time::timeout(STEP, tls_connect(relay_addr, "a.test", &s.ca))
        .await
        .expect("handshake timed out")
        .unwrap();
    assert_eq!(read_some(&mut tls).await, "a");
}

#[tokio::test]
async fn an_oversized_client_hello_is_closed_and_counted() {
    let s = Setup::start().await;
    let mut stream = TcpStream::connect(s.proxy.addr).await.unwrap();
    // A handshake message announcing 1 MiB, sent as full TLS records: past weir's 64 KiB bound.
    let mut first = vec![0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x10, 0x00, 0x00];
    first.resize(5 + 0x4000, 0xAB);
    let mut record = vec![0x16, 0x03, 0x01, 0x40, 0x00];
    record.resize(5 + 0x4000, 0xAB);
    let writer = tokio::spawn(async move {
        if stream.write_all(&first).await.is_err() {
            return stream;
        }
        for _ in 0..8 {
            if stream.write_all(&record).await.is_err() {
                break;
            }
        }
        stream
    });
    let mut stream = tokio::time::timeout(STEP, writer)
        .await
        .expect("weir kept reading past its bound")
        .unwrap();
    closed_by_proxy(&mut stream).await;
    assert!(wait_until(STEP, || s.rejected_client_hellos() == 1).await);
    assert_eq!(s.endpoint_connections(), 0, "no endpoint was dialled");
}

#[tokio::test]
async fn a_proxy_header_from_an_untrusted_peer_is_refused_as_one() {
    let ca = TestCa::new();
    let a = MockTls::start("a", &["a.test"], &ca).await;
    let proxy = TestProxy::start(&format!(
        "listeners:
  - name: l
    address: 127.0.0.1:0
    protocol: tls_passthrough
    sni: [ {{ server_names: [a.test], cluster: a }} ]
    proxy_protocol: {{ trusted: [ 10.0.0.0/8 ] }}
clusters:
  - {{ name: a, endpoints: [ {} ] }}
",
        a.addr()
    ))
    .await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(b"PROXY TCP4 192.0.2.10 127.0.0.1 40000 443\r\n")
        .await
        .unwrap();
    closed_by_proxy(&mut stream).await;
    let stats = proxy.proxy().listener_stats("l").unwrap();
    assert!(
        wait_until(STEP, || stats
            .rejected_proxy_headers
            .load(Ordering::Relaxed)
            == 1)
        .await
    );
    assert_eq!(stats.rejected_client_hellos.load(Ordering::Relaxed), 0);
    assert_eq!(a.connections(), 0, "no endpoint was dialled");
    // An untrusted client speaking TLS is served as usual.
    let mut tls = tokio::time::timeout(STEP, tls_connect(proxy.addr, "a.test", &ca))
        .await
        .expect("handshake timed out")
        .unwrap();
    assert_eq!(read_some(&mut tls).await, "a");
}

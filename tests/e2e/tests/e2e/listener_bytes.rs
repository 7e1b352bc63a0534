//! Listener byte counters (`weir_listener_{received,sent}_bytes_total`) on every kind of
//! connection weir reads and writes itself — HTTP/2 with prior knowledge, HTTPS (counted after
//! decryption), TCP — and while the connection is still open, not only once it has ended.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "end-to-end test: a panic is a failed test"
)]

use std::sync::Arc;
use std::time::Duration;

use weir_e2e::{TestProxy, echo_round_trip, get, h2_client};
use weir_proxy::ListenerCounters;
use weir_test_support::{MockHttp, MockTcp, wait_until};

use crate::tls_client::{Pki, connect, get1, h1};

const SECS_10: Duration = Duration::from_secs(10);

/// The counters of the listener named `name`.
fn counters(p: &TestProxy, name: &str) -> Arc<ListenerCounters> {
    p.proxy()
        .listener_counters()
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, c)| c)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_https_and_tcp_bytes_count_while_connections_are_open() {
    let pki = Pki::new();
    pki.server("a", "a", &["a.test"]);
    let app = MockHttp::start("app").await;
    let echo = MockTcp::echo().await;
    let p = TestProxy::start(&format!(
        "listeners:
  - name: web
    address: 127.0.0.1:0
    routes: [ {{ cluster: app }} ]
  - name: https
    address: 127.0.0.1:0
    routes: [ {{ cluster: app }} ]
    tls: {{ certificates: [ {} ] }}
  - name: raw
    address: 127.0.0.1:0
    protocol: tcp
    cluster: echo
clusters:
  - {{ name: app, endpoints: [ {} ] }}
  - {{ name: echo, endpoints: [ {} ] }}
",
        pki.entry("a"),
        app.addr(),
        echo.addr()
    ))
    .await;

    // HTTP/2 with prior knowledge: the 24-byte preface and frames in, 100,000 body bytes out
    // (plus HEADERS and DATA frame heads, and SETTINGS).
    let client = h2_client();
    let reply = get(&client, &p.url("/bytes/100000"), &[]).await;
    assert_eq!(reply.status, 200);
    let web = counters(&p, "web");
    assert!(web.active() >= 1, "the client's connection is still open");
    let (received, sent) = (web.received_bytes(), web.sent_bytes());
    assert!((24..4096).contains(&received), "{received}");
    assert!((100_000..110_000).contains(&sent), "{sent}");

    // HTTPS over HTTP/1.1: the counts are the decrypted bytes, so the request is exactly what
    // the client wrote (no TLS records), and the response at least its body.
    let https_addr = p.proxy().listener_addr("https").unwrap();
    let c = connect(https_addr, "a.test", &pki.ca, &[b"http/1.1"], None)
        .await
        .unwrap();
    let mut sender = h1(c.stream).await;
    let answer = get1(&mut sender, "a.test", "/bytes/50000", &[])
        .await
        .unwrap();
    // (The body is binary; the helper keeps it as lossy text, so its length says nothing.)
    assert_eq!(answer.status.as_u16(), 200);
    let https = counters(&p, "https");
    assert_eq!(https.active(), 1, "the TLS connection is still open");
    let request = "GET /bytes/50000 HTTP/1.1\r\nhost: a.test\r\n\r\n".len() as u64;
    assert_eq!(https.received_bytes(), request);
    let sent = https.sent_bytes();
    assert!((50_000..52_000).contains(&sent), "{sent}");

    // TCP: the bytes show while the connection is open, as they are relayed.
    let raw = counters(&p, "raw");
    let conn = echo_round_trip(p.proxy().listener_addr("raw").unwrap(), &[7u8; 3000]).await;
    assert!(
        wait_until(SECS_10, || raw.received_bytes() == 3000
            && raw.sent_bytes() == 3000)
        .await,
        "received {} sent {}",
        raw.received_bytes(),
        raw.sent_bytes()
    );
    assert_eq!(raw.active(), 1, "counted before the connection ended");
    drop(conn);
    drop(sender);
}

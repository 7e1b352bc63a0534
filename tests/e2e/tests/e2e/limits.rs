//! Connection limits that protect the proxy: idle timeout and HTTP/2 stream concurrency.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "end-to-end test: a panic is a failed test"
)]

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weir_e2e::TestProxy;
use weir_test_support::MockHttp;

/// A proxy with one HTTP listener (its `http:` settings given) in front of `ep`.
pub(crate) async fn proxy(ep: &MockHttp, http: &str) -> TestProxy {
    TestProxy::start(&format!(
        "listeners:
  - name: l
    address: 127.0.0.1:0
    http: {http}
    routes: [ {{ cluster: c }} ]
clusters:
  - name: c
    endpoints: [ {} ]
",
        ep.addr()
    ))
    .await
}

/// Reads one whole HTTP/1.1 response (head and its content-length body) from `stream`.
async fn read_response(stream: &mut tokio::net::TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(
            n > 0,
            "connection closed mid-response: {:?}",
            String::from_utf8_lossy(&out)
        );
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let len: usize = text
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if out.len() >= end + 4 + len {
                return text;
            }
        }
    }
}

// Real time on purpose: with tokio's paused clock, the runtime auto-advances whenever it looks
// idle, even while loopback bytes are in flight, so the idle timer could fire "before" the client
// sees its response. The lower bound is loose (500 ms for a 1 s timeout) because the clock starts
// when the test has read the response, a little after weir's own idle clock started.
#[tokio::test]
async fn idle_connections_close_after_idle_timeout_but_busy_ones_do_not() {
    let ep = MockHttp::start("ep").await;
    let p = proxy(&ep, "{ idle_timeout: 1s, header_read_timeout: 30s }").await;
    let mut stream = tokio::net::TcpStream::connect(p.addr).await.unwrap();

    // A request that takes longer than the idle timeout must not be cut: it is in flight.
    stream
        .write_all(b"GET /delay/1500 HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let head = read_response(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    // Now idle: the proxy closes the connection once 1 s passes with nothing in flight.
    let started = std::time::Instant::now();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buf))
        .await
        .expect("connection closed by the idle timeout")
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without sending anything");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(500),
        "closed after only {waited:?}"
    );
}

/// The `SETTINGS_MAX_CONCURRENT_STREAMS` weir advertises on an HTTP/2 connection.
async fn advertised_stream_limit(p: &TestProxy) -> usize {
    let io = TokioIo::new(tokio::net::TcpStream::connect(p.addr).await.unwrap());
    let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .unwrap();
    tokio::pin!(conn);
    // After one exchange the server's SETTINGS have certainly been applied.
    let exchange = async {
        let req = http::Request::get(format!("http://{}/", p.addr))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let res = sender.send_request(req).await.unwrap();
        res.into_body().collect().await.unwrap();
    };
    tokio::select! {
        _ = conn.as_mut() => panic!("connection ended early"),
        () = exchange => {}
    }
    conn.current_max_send_streams()
}

#[tokio::test]
async fn http2_clients_are_told_the_stream_limit() {
    let ep = MockHttp::start("ep").await;
    let p = proxy(&ep, "{ max_concurrent_streams: 7 }").await;
    assert_eq!(advertised_stream_limit(&p).await, 7);
    let p = proxy(&ep, "{}").await;
    assert_eq!(advertised_stream_limit(&p).await, 100, "the default");
}

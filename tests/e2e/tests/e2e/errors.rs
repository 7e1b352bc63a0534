//! Failure paths: each error class maps to its status (one place decides: l7/respond.rs), and
//! the client always gets an answer, never a hung connection.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "end-to-end test: a panic is a failed test"
)]

use http::StatusCode;
use weir_e2e::{TestProxy, get, h1_client};
use weir_test_support::{MockHttp, MockTcp};

async fn proxy_with(endpoints: &str, route_extra: &str) -> TestProxy {
    TestProxy::start(&format!(
        "listeners:
  - name: l
    address: 127.0.0.1:0
    routes:
      - match: {{ path_prefix: / }}
        cluster: c
{route_extra}clusters:
  - name: c
    connect_timeout: 1s
    endpoints: [ {endpoints} ]
"
    ))
    .await
}

#[tokio::test]
async fn no_endpoints_is_503() {
    let p = proxy_with("", "").await;
    let r = get(&h1_client(), &p.url("/"), &[]).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        r.text(),
        "503 no healthy upstream
"
    );
}

#[tokio::test]
async fn connection_refused_is_502() {
    let p = proxy_with(&MockTcp::refusing_addr().to_string(), "").await;
    let r = get(&h1_client(), &p.url("/"), &[]).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert_eq!(
        r.text(),
        "502 upstream connect error\n",
        "no endpoint address leaks to clients"
    );
}

#[tokio::test]
async fn connection_reset_before_response_is_502() {
    let ep = MockHttp::builder("rst").reset().start().await;
    let p = proxy_with(&ep.addr().to_string(), "").await;
    let r = get(&h1_client(), &p.url("/"), &[]).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn route_timeout_is_504() {
    let ep = MockHttp::start("slow").await;
    let p = proxy_with(&ep.addr().to_string(), "        timeout: 200ms\n").await;
    let r = get(&h1_client(), &p.url("/delay/10000"), &[]).await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(r.text(), "504 upstream request timeout\n");
    // A request inside the budget still succeeds on the same proxy.
    let r = get(&h1_client(), &p.url("/delay/1"), &[]).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn endpoint_that_never_answers_is_504_not_a_hang() {
    let hole = MockTcp::blackhole().await;
    let p = proxy_with(&hole.addr().to_string(), "        timeout: 300ms\n").await;
    let r = get(&h1_client(), &p.url("/"), &[]).await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
}

#[tokio::test]
async fn upstream_error_statuses_pass_through_unchanged() {
    let ep = MockHttp::builder("sick")
        .fail_with(StatusCode::SERVICE_UNAVAILABLE)
        .start()
        .await;
    let p = proxy_with(&ep.addr().to_string(), "").await;
    let r = get(&h1_client(), &p.url("/"), &[]).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        r.header("x-endpoint"),
        "sick",
        "the endpoint's own 503, not weir's"
    );
}

#[tokio::test]
async fn oversized_request_headers_get_431() {
    let ep = MockHttp::start("ep").await;
    let p = proxy_with(&ep.addr().to_string(), "").await;
    let big = "x".repeat(70 * 1024);
    let mut stream = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    let req = format!("GET / HTTP/1.1\r\nhost: a\r\nx-big: {big}\r\n\r\n");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // The proxy may answer and close before reading everything; a write error is fine.
    let _ = stream.write_all(req.as_bytes()).await;
    let mut buf = vec![0u8; 1024];
    let n = stream.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 431"), "{head}");
    assert_eq!(ep.requests(), 0);
}

#[tokio::test]
async fn too_many_header_fields_get_431() {
    let ep = MockHttp::start("ep").await;
    let p = proxy_with(&ep.addr().to_string(), "").await;
    let mut req = String::from("GET / HTTP/1.1\r\nhost: a\r\n");
    for i in 0..150 {
        req.push_str(&format!("x-h{i}: v\r\n"));
    }
    req.push_str("\r\n");
    let mut stream = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = stream.write_all(req.as_bytes()).await;
    let mut buf = vec![0u8; 1024];
    let n = stream.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 431"), "{head}");
}

#[tokio::test(start_paused = true)]
async fn slow_header_senders_are_cut_off() {
    // Slowloris: headers that never finish. With paused time the 10 s default elapses at once.
    let ep = MockHttp::start("ep").await;
    let p = proxy_with(&ep.addr().to_string(), "").await;
    let mut stream = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: a\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let read =
        tokio::time::timeout(std::time::Duration::from_secs(60), stream.read(&mut buf)).await;
    let n = read
        .expect("the proxy must close the connection, not wait forever")
        .unwrap_or(0);
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(
        n == 0 || head.starts_with("HTTP/1.1 408"),
        "closed or 408, got {head:?}"
    );
}

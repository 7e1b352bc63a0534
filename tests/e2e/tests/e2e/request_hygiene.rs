//! What weir refuses or repairs on the way through: Host/authority rules, CONNECT, h2c
//! upgrades, cookie joining, conflicting framing, and pooled connections that are still busy.
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
use weir_e2e::{TestProxy, get, h1_client, h2_client};
use weir_test_support::MockHttp;

async fn proxy_to(ep: SocketAddr, protocol: &str) -> TestProxy {
    TestProxy::start(&format!(
        "listeners:
  - name: l
    address: 127.0.0.1:0
    routes: [ {{ cluster: c }} ]
clusters:
  - name: c
    protocol: {protocol}
    endpoints: [ {ep} ]
"
    ))
    .await
}

/// Sends raw bytes and returns everything read until the proxy closes or 5 s pass.
async fn raw(addr: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        if out.windows(4).any(|w| w == b"\r\n\r\n")
            && String::from_utf8_lossy(&out).contains("content-length: 0")
        {
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn several_host_headers_or_none_are_rejected() {
    let ep = MockHttp::start("ep").await;
    let p = proxy_to(ep.addr(), "http1").await;
    let two = raw(p.addr, "GET / HTTP/1.1\r\nhost: public.example\r\nhost: admin.internal\r\nconnection: close\r\n\r\n").await;
    assert!(two.starts_with("HTTP/1.1 400"), "{two}");
    let none = raw(p.addr, "GET / HTTP/1.1\r\nconnection: close\r\n\r\n").await;
    assert!(none.starts_with("HTTP/1.1 400"), "{none}");
    assert_eq!(ep.requests(), 0, "neither reached the endpoint");
}

#[tokio::test]
async fn absolute_form_authority_wins_over_host() {
    let ep = MockHttp::start("ep").await;
    let p = proxy_to(ep.addr(), "http1").await;
    let r = raw(
        p.addr,
        "GET http://routed.example/x HTTP/1.1\r\nhost: other.example\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(r.contains("x-seen-host: routed.example"), "{r}");
}

#[tokio::test]
async fn http2_clients_reach_http1_endpoints_with_their_authority() {
    let ep = MockHttp::start("ep").await;
    let p = proxy_to(ep.addr(), "http1").await;
    let r = get(&h2_client(), &p.url("/"), &[]).await;
    assert_eq!(
        r.header("x-seen-host"),
        p.addr.to_string(),
        ":authority became Host"
    );
}

#[tokio::test]
async fn connect_is_refused_with_405() {
    let ep = MockHttp::start("ep").await;
    let p = proxy_to(ep.addr(), "http1").await;
    let r = raw(
        p.addr,
        "CONNECT internal.example:443 HTTP/1.1\r\nhost: internal.example:443\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 405"), "{r}");
    assert_eq!(ep.requests(), 0);
}

#[tokio::test]
async fn h2c_upgrade_requests_are_not_passed_on() {
    let ep = MockHttp::start("ep").await;
    let p = proxy_to(ep.addr(), "http1").await;
    let r = get(
        &h1_client(),
        &p.url("/headers"),
        &[
            ("connection", "upgrade, http2-settings"),
            ("upgrade", "h2c"),
            ("http2-settings", "AAMAAABkAARAAAAAAAIAAAAA"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    let seen = r.text().to_lowercase();
    assert!(
        !seen.contains("upgrade") && !seen.contains("http2-settings"),
        "{seen}"
    );
}

#[tokio::test]
async fn http2_cookies_are_joined_for_http1_endpoints() {
    let ep = MockHttp::start("ep").await;
    let p = proxy_to(ep.addr(), "http1").await;
    let req = http::Request::get(p.url("/headers"))
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .body(Default::default())
        .unwrap();
    let r = weir_e2e::send(&h2_client(), req).await;
    let seen = r.text();
    assert_eq!(seen.matches("cookie:").count(), 1, "{seen}");
    assert!(seen.contains("cookie: a=1; b=2"), "{seen}");
}

#[tokio::test]
async fn a_response_with_chunking_and_a_length_is_not_truncated() {
    // An endpoint that sends both framings; chunked wins (RFC 9112 §6.3).
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf).await;
        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\nb\r\nhello world\r\n0\r\n\r\n")
            .await
            .unwrap();
    });
    let p = proxy_to(addr, "http1").await;
    let r = get(&h1_client(), &p.url("/"), &[]).await;
    assert_eq!(r.text(), "hello world");
}

#[tokio::test]
async fn a_connection_still_sending_a_body_is_not_lent_to_the_next_request() {
    // The endpoint answers 401 before reading the upload; client A then stalls mid-body.
    let ep = MockHttp::start("ep").await;
    let p = proxy_to(ep.addr(), "http1").await;
    let mut a = TcpStream::connect(p.addr).await.unwrap();
    a.write_all(b"POST /status/401 HTTP/1.1\r\nhost: a\r\ncontent-length: 1000\r\n\r\n0123456789")
        .await
        .unwrap();
    let mut head = [0u8; 64];
    let n = a.read(&mut head).await.unwrap();
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 401"));
    // Client B must get its own connection, not wait behind A's unfinished upload.
    let r = tokio::time::timeout(Duration::from_secs(5), get(&h1_client(), &p.url("/"), &[]))
        .await
        .expect("the second request was stuck behind the first one's body");
    assert_eq!(r.status, 200);
    drop(a);
}

#[tokio::test]
async fn a_stalled_upload_is_cut_off_by_the_stream_idle_timeout() {
    let ep = MockHttp::start("ep").await;
    let p = TestProxy::start(&format!(
        "listeners:
  - name: l
    address: 127.0.0.1:0
    http: {{ stream_idle_timeout: 300ms, idle_timeout: 1s }}
    routes: [ {{ cluster: c }} ]
clusters: [ {{ name: c, endpoints: [ {} ] }} ]
",
        ep.addr()
    ))
    .await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"POST /sink HTTP/1.1\r\nhost: a\r\ncontent-length: 100\r\n\r\nabc")
        .await
        .unwrap();
    // weir gives up on the body and answers (or closes); it never waits for the 97 bytes.
    let mut buf = [0u8; 256];
    let r = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("the stalled upload was still open after 10 s");
    match r {
        Ok(0) | Err(_) => {}
        Ok(n) => {
            let head = String::from_utf8_lossy(&buf[..n]);
            assert!(
                head.starts_with("HTTP/1.1 4") || head.starts_with("HTTP/1.1 5"),
                "{head}"
            );
        }
    }
}

#[tokio::test]
async fn a_stalled_response_body_is_cut_off() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf).await;
        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
            .await
            .unwrap();
        // ...and never the rest; hold the socket open.
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
    let p = TestProxy::start(&format!(
        "listeners:
  - name: l
    address: 127.0.0.1:0
    http: {{ stream_idle_timeout: 300ms }}
    routes: [ {{ cluster: c }} ]
clusters: [ {{ name: c, endpoints: [ {addr} ] }} ]
"
    ))
    .await;
    let res = h1_client().get(p.url("/").parse().unwrap()).await.unwrap();
    assert_eq!(res.status(), 200);
    let body = tokio::time::timeout(
        Duration::from_secs(10),
        http_body_util::BodyExt::collect(res.into_body()),
    )
    .await
    .expect("the stalled download was still open after 10 s");
    assert!(body.is_err(), "the client learns the body is incomplete");
}

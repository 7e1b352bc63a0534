//! gRPC through weir with a real tonic client and server: unary, server streaming and
//! bidirectional streaming, deadlines, errors and cancellation.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "end-to-end test: a panic is a failed test"
)]

use std::time::Duration;

use tokio_stream::StreamExt;
use weir_e2e::TestProxy;
use weir_test_support::grpc::pb::EchoRequest;
use weir_test_support::grpc::pb::echo_client::EchoClient;
use weir_test_support::tonic::{Code, Request};
use weir_test_support::{GrpcEcho, wait_until};

async fn proxy_to(endpoints: &str) -> TestProxy {
    TestProxy::start(&format!(
        "listeners:
  - name: l
    address: 127.0.0.1:0
    routes:
      - match: {{ path_prefix: /weir.test.Echo/ }}
        cluster: grpc
clusters:
  - name: grpc
    protocol: http2
    endpoints: [ {endpoints} ]
"
    ))
    .await
}

async fn client(p: &TestProxy) -> EchoClient<weir_test_support::tonic::transport::Channel> {
    EchoClient::connect(p.url("")).await.unwrap()
}

fn req(message: &str, delay_ms: u32, count: u32) -> EchoRequest {
    EchoRequest {
        message: message.into(),
        delay_ms,
        count,
    }
}

#[tokio::test]
async fn unary_calls_are_balanced_per_request_over_one_client_connection() {
    let (a, b) = (GrpcEcho::start("a").await, GrpcEcho::start("b").await);
    let p = proxy_to(&format!("{}, {}", a.addr(), b.addr())).await;
    let mut c = client(&p).await;
    for i in 0..10 {
        let reply = c
            .unary(req(&format!("hi {i}"), 0, 0))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(reply.message, format!("hi {i}"));
    }
    assert_eq!(
        (a.requests(), b.requests()),
        (5, 5),
        "round robin per call, not per connection"
    );
}

#[tokio::test]
async fn server_streaming_delivers_every_message_and_the_trailers() {
    let ep = GrpcEcho::start("s").await;
    let p = proxy_to(&ep.addr().to_string()).await;
    let mut stream = client(&p)
        .await
        .server_stream(req("tick", 0, 25))
        .await
        .unwrap()
        .into_inner();
    let mut n = 0;
    while let Some(item) = stream.next().await {
        let reply = item.expect("stream ended with OK status (trailers passed through)");
        assert_eq!(reply.endpoint, "s");
        n += 1;
    }
    assert_eq!(n, 25);
}

#[tokio::test]
async fn bidirectional_streaming_is_interactive() {
    let ep = GrpcEcho::start("bidi").await;
    let p = proxy_to(&ep.addr().to_string()).await;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut replies = client(&p)
        .await
        .bidi_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    // Each reply must arrive before the next message is sent: nothing is buffered end to end.
    for i in 0..10 {
        tx.send(req(&format!("m{i}"), 0, 0)).await.unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(5), replies.next())
            .await
            .expect("reply streamed back before the client sent more")
            .unwrap()
            .unwrap();
        assert_eq!(reply.message, format!("m{i}"));
    }
    drop(tx);
    assert!(
        replies.next().await.is_none(),
        "stream closes after the client half-closes"
    );
}

#[tokio::test]
async fn grpc_timeout_is_enforced_by_weir_as_deadline_exceeded() {
    // tonic's client and server both enforce grpc-timeout themselves, so to see weir's own
    // enforcement the endpoint is a plain HTTP/2 server that knows nothing of gRPC deadlines.
    let ep = weir_test_support::MockHttp::builder("slow")
        .delay(Duration::from_secs(30))
        .start()
        .await;
    let p = proxy_to(&ep.addr().to_string()).await;
    let request = http::Request::post(p.url("/weir.test.Echo/Unary"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", "200m")
        .body(Default::default())
        .unwrap();
    let started = std::time::Instant::now();
    let r = weir_e2e::send(&weir_e2e::h2_client(), request).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the deadline cut the call short"
    );
    assert_eq!(r.status, 200, "gRPC errors are HTTP 200 + grpc-status");
    assert_eq!(r.header("grpc-status"), "4", "DEADLINE_EXCEEDED: {r:?}");
    assert_eq!(r.header("content-type"), "application/grpc");
}

#[tokio::test]
async fn grpc_timeout_is_forwarded_to_the_endpoint() {
    let ep = weir_test_support::MockHttp::start("ep").await;
    let p = TestProxy::start(&format!(
        "listeners:
  - name: l
    address: 127.0.0.1:0
    routes: [ {{ cluster: c }} ]
clusters: [ {{ name: c, protocol: http2, endpoints: [ {} ] }} ]
",
        ep.addr()
    ))
    .await;
    let request = http::Request::post(p.url("/headers"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", "200m")
        .body(Default::default())
        .unwrap();
    let r = weir_e2e::send(&weir_e2e::h2_client(), request).await;
    let seen = r.text();
    assert!(
        seen.contains("grpc-timeout: 200m"),
        "the endpoint knows the deadline: {seen}"
    );
    assert!(seen.contains("te: trailers"), "{seen}");
}

#[tokio::test]
async fn grpc_timeout_reaches_the_endpoint_and_a_client_deadline_ends_the_call() {
    let ep = GrpcEcho::start("slow").await;
    let p = proxy_to(&ep.addr().to_string()).await;
    let mut request = Request::new(req("late", 5_000, 0));
    request.set_timeout(Duration::from_millis(200));
    let started = std::time::Instant::now();
    let status = client(&p).await.unary(request).await.unwrap_err();
    // Client, weir and endpoint all enforce the same deadline; whichever fires first, the call
    // ends as a deadline failure well before the endpoint's 5 s reply.
    assert!(
        matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{status:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(4));
    assert!(
        wait_until(Duration::from_secs(5), || ep.cancelled() >= 1).await,
        "the endpoint stopped working on the call"
    );
}

#[tokio::test]
async fn no_endpoint_is_unavailable() {
    let p = proxy_to("").await;
    let status = client(&p).await.unary(req("x", 0, 0)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
}

#[tokio::test]
async fn refused_endpoint_is_unavailable() {
    let p = proxy_to(&weir_test_support::MockTcp::refusing_addr().to_string()).await;
    let status = client(&p).await.unary(req("x", 0, 0)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
}

#[tokio::test]
async fn client_cancellation_reaches_the_endpoint() {
    let ep = GrpcEcho::start("c").await;
    let p = proxy_to(&ep.addr().to_string()).await;
    let mut stream = client(&p)
        .await
        .server_stream(req("slow", 100, 1_000))
        .await
        .unwrap()
        .into_inner();
    assert!(stream.next().await.unwrap().is_ok());
    drop(stream);
    assert!(
        wait_until(Duration::from_secs(5), || ep.cancelled() >= 1).await,
        "the endpoint saw the call cancelled"
    );
}

//! `GrpcEcho` through the generated client: unary, deadlines, streaming and cancellation.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use weir_test_support::grpc::pb::EchoRequest;
use weir_test_support::tonic::{Code, Request};
use weir_test_support::{GrpcEcho, wait_until};

const WAIT: Duration = Duration::from_secs(5);

fn req(message: &str, delay_ms: u32, count: u32) -> EchoRequest {
    EchoRequest {
        message: message.to_owned(),
        delay_ms,
        count,
    }
}

#[tokio::test]
async fn unary_replies_with_message_and_endpoint() {
    let echo = GrpcEcho::start("g1").await;
    let mut client = echo.client().await;
    let reply = client.unary(req("hi", 0, 0)).await.unwrap().into_inner();
    assert_eq!(
        (reply.message.as_str(), reply.endpoint.as_str()),
        ("hi", "g1")
    );
    client.unary(req("again", 0, 0)).await.unwrap();
    assert_eq!(
        (echo.requests(), echo.cancelled(), echo.connections()),
        (2, 0, 1)
    );
    assert_eq!(echo.name(), "g1");
}

#[tokio::test]
async fn unary_past_its_deadline_fails_and_counts_as_cancelled() {
    let echo = GrpcEcho::start("g1").await;
    let mut client = echo.client().await;
    let mut request = Request::new(req("slow", 60_000, 0));
    request.set_timeout(Duration::from_millis(50));
    let status = client.unary(request).await.unwrap_err();
    assert!(
        matches!(status.code(), Code::Cancelled | Code::DeadlineExceeded),
        "{status:?}"
    );
    assert!(wait_until(WAIT, || echo.cancelled() == 1).await);
}

#[tokio::test]
async fn client_going_away_counts_as_cancelled() {
    let echo = GrpcEcho::start("g1").await;
    let mut client = echo.client().await;
    let call = tokio::spawn(async move { client.unary(req("hang", 60_000, 0)).await });
    assert!(wait_until(WAIT, || echo.requests() == 1).await);
    assert_eq!(echo.cancelled(), 0);
    call.abort();
    assert!(wait_until(WAIT, || echo.cancelled() == 1).await);
}

#[tokio::test]
async fn server_stream_sends_count_replies() {
    let echo = GrpcEcho::start("g2").await;
    let mut client = echo.client().await;
    let mut stream = client
        .server_stream(req("m", 1, 5))
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    while let Some(reply) = stream.message().await.unwrap() {
        assert_eq!(reply.endpoint, "g2");
        got.push(reply.message);
    }
    assert_eq!(got, ["m#0", "m#1", "m#2", "m#3", "m#4"]);
    assert_eq!((echo.requests(), echo.cancelled()), (1, 0));
}

#[tokio::test]
async fn dropping_a_server_stream_counts_as_cancelled() {
    let echo = GrpcEcho::start("g2").await;
    let mut client = echo.client().await;
    let mut stream = client
        .server_stream(req("m", 5, 100_000))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stream.message().await.unwrap().unwrap().message, "m#0");
    drop(stream);
    assert!(wait_until(WAIT, || echo.cancelled() == 1).await);
}

#[tokio::test]
async fn bidi_answers_each_message_as_it_arrives() {
    let echo = GrpcEcho::start("g3").await;
    let mut client = echo.client().await;
    let (tx, rx) = mpsc::channel(4);
    let mut replies = client
        .bidi_stream(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    // The next message is only sent once the previous reply arrived: replies are not batched.
    for message in ["a", "b", "c"] {
        tx.send(req(message, 0, 0)).await.unwrap();
        let reply = replies.message().await.unwrap().unwrap();
        assert_eq!(
            (reply.message.as_str(), reply.endpoint.as_str()),
            (message, "g3")
        );
    }
    drop(tx);
    assert!(replies.message().await.unwrap().is_none());
    assert_eq!((echo.requests(), echo.cancelled()), (1, 0));
}

#[tokio::test]
async fn dropping_a_bidi_stream_counts_as_cancelled() {
    let echo = GrpcEcho::start("g3").await;
    let mut client = echo.client().await;
    let (tx, rx) = mpsc::channel(4);
    let mut replies = client
        .bidi_stream(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    tx.send(req("a", 0, 0)).await.unwrap();
    replies.message().await.unwrap().unwrap();
    drop(replies);
    drop(tx);
    assert!(wait_until(WAIT, || echo.cancelled() == 1).await);
}

#[tokio::test]
async fn shutdown_ends_open_connections() {
    let echo = GrpcEcho::start("g4").await;
    let addr = echo.addr();
    let mut client = echo.client().await;
    let mut stream = client
        .server_stream(req("m", 5, 100_000))
        .await
        .unwrap()
        .into_inner();
    stream.message().await.unwrap().unwrap();
    tokio::time::timeout(WAIT, echo.shutdown()).await.unwrap();
    let end = tokio::time::timeout(WAIT, async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => {}
                other => return other.map(drop),
            }
        }
    })
    .await
    .unwrap();
    assert!(end.is_err(), "the stream should fail, not end cleanly");
    let refused = tokio::net::TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
}

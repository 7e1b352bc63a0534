//! `MockHttp`'s WebSocket echo, driven by a tokio-tungstenite client.

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use weir_test_support::MockHttp;
use weir_test_support::tokio_tungstenite::client_async;
use weir_test_support::tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn websocket_echoes_text_and_binary_frames() {
    let mock = MockHttp::start("ws").await;
    let io = TcpStream::connect(mock.addr()).await.unwrap();
    let url = format!("ws://{}/socket", mock.addr());
    let (mut ws, resp) = client_async(url, io).await.unwrap();
    assert_eq!(resp.status(), http::StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(resp.headers()["x-endpoint"], "ws");
    assert_eq!(resp.headers()["x-seen-path"], "/socket");

    for msg in [
        Message::text("hello"),
        Message::binary(vec![0u8, 1, 2, 255]),
        Message::text("again"),
    ] {
        ws.send(msg.clone()).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), msg);
    }
    ws.close(None).await.unwrap();
    // The server answers the close; the stream then ends.
    while let Some(msg) = ws.next().await {
        assert!(msg.unwrap().is_close());
    }
    assert_eq!(mock.requests(), 1);
}

#[tokio::test]
async fn dropping_the_mock_ends_an_open_websocket() {
    let mock = MockHttp::start("ws").await;
    let io = TcpStream::connect(mock.addr()).await.unwrap();
    let (mut ws, _) = client_async(format!("ws://{}/", mock.addr()), io)
        .await
        .unwrap();
    ws.send(Message::text("ping")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("ping"));
    drop(mock);
    let end = tokio::time::timeout(std::time::Duration::from_secs(5), ws.next())
        .await
        .unwrap();
    assert!(!matches!(
        end,
        Some(Ok(Message::Text(_) | Message::Binary(_)))
    ));
}

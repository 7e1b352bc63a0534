//! WebSocket (HTTP/1.1 Upgrade) passes through weir as a byte tunnel.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "end-to-end test: a panic is a failed test"
)]

use futures_util::{SinkExt, StreamExt};
use weir_e2e::TestProxy;
use weir_test_support::MockHttp;
use weir_test_support::tokio_tungstenite::connect_async;
use weir_test_support::tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn websocket_echo_through_weir() {
    let ep = MockHttp::start("ws").await;
    let p = TestProxy::start(&format!(
        "listeners:
  - name: l
    address: 127.0.0.1:0
    routes: [ {{ cluster: c }} ]
clusters:
  - name: c
    endpoints: [ {} ]
",
        ep.addr()
    ))
    .await;
    let (mut ws, response) = connect_async(format!("ws://{}/chat", p.addr))
        .await
        .unwrap();
    assert_eq!(response.status(), 101);
    for i in 0..5 {
        ws.send(Message::text(format!("hello {i}"))).await.unwrap();
        let echoed = ws.next().await.unwrap().unwrap();
        assert_eq!(echoed, Message::text(format!("hello {i}")));
    }
    ws.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::binary(vec![0u8, 1, 2, 255])
    );
    ws.close(None).await.unwrap();
}

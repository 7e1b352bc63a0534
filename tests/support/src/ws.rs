//! WebSocket echo for [`crate::MockHttp`]: answers an HTTP/1.1 `Upgrade: websocket` request with
//! the RFC 6455 §4.2.2 handshake (`Sec-WebSocket-Accept` = base64(SHA-1(key + GUID)), computed by
//! tungstenite), then echoes every text and binary message through hyper's upgrade mechanism.
//!
//! Pings are answered and close frames returned by tungstenite itself.

use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_util::sync::CancellationToken;

use crate::http::{MockBody, empty, text};

/// Whether `headers` ask for a WebSocket upgrade (`Upgrade: websocket`, any case).
pub(crate) fn is_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|proto| proto.trim().eq_ignore_ascii_case("websocket"))
}

/// Answers the handshake and spawns the echo, which stops when the peer closes or `token` is
/// cancelled. A request without `Sec-WebSocket-Key` gets 400.
pub(crate) fn accept(mut req: Request<Incoming>, token: CancellationToken) -> Response<MockBody> {
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY) else {
        return text(StatusCode::BAD_REQUEST, "missing sec-websocket-key");
    };
    let accept_key = derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let upgraded = tokio::select! {
            () = token.cancelled() => return,
            upgraded = on_upgrade => match upgraded {
                Ok(upgraded) => upgraded,
                Err(error) => {
                    tracing::debug!(%error, "mock websocket upgrade failed");
                    return;
                }
            },
        };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        tokio::select! {
            () = token.cancelled() => {}
            () = echo(ws) => {}
        }
    });
    let mut resp = empty(StatusCode::SWITCHING_PROTOCOLS);
    let headers = resp.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    if let Ok(value) = HeaderValue::from_str(&accept_key) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, value);
    }
    resp
}

/// Sends every data message back until the stream ends or fails.
async fn echo<S>(mut ws: WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    while let Some(msg) = ws.next().await {
        match msg {
            Ok(msg) if msg.is_text() || msg.is_binary() => {
                if ws.send(msg).await.is_err() {
                    return;
                }
            }
            // Ping/pong/close replies are queued by tungstenite and flushed by the next read.
            Ok(_) => {}
            Err(error) => {
                tracing::debug!(%error, "mock websocket echo ended");
                return;
            }
        }
    }
}

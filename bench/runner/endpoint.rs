//! The endpoint every peer forwards to (and `direct` is measured against): a minimal hyper
//! server on one thread answering every request with `200` and a 12-byte body, over HTTP/1.1
//! keep-alive or HTTP/2 with prior knowledge (h2c) on the same port.
//!
//! Two extras serve the scenarios that measure something other than requests:
//! - it counts the connections it accepts and answers `GET /__accepts` with the count, so
//!   scenario 7 can tell how many new upstream connections a proxy opened (ask it directly, not
//!   through a proxy);
//! - a second, raw TCP port serves scenario 5: a client sends a decimal byte count and a
//!   newline, and gets that many bytes back before the endpoint closes its side.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// The body of every answer (the same 12 bytes as nginx `return 200 "hello world\n"`).
pub(crate) const BODY: &[u8] = b"hello world\n";

/// The path answering with the number of HTTP connections accepted so far.
pub(crate) const ACCEPTS_PATH: &str = "/__accepts";

/// HTTP connections accepted since start.
static ACCEPTS: AtomicU64 = AtomicU64::new(0);

/// Serves HTTP on `addr` and the bulk source on `bulk` until the process is killed, on a
/// current-thread runtime.
pub(crate) fn serve(addr: SocketAddr, bulk: SocketAddr) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind(addr).await?;
        let bulk = TcpListener::bind(bulk).await?;
        tokio::spawn(async move {
            while let Ok((stream, _)) = bulk.accept().await {
                tokio::spawn(send_bulk(stream));
            }
        });
        loop {
            let (stream, _) = listener.accept().await?;
            ACCEPTS.fetch_add(1, Ordering::Relaxed);
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = service_fn(|req: Request<hyper::body::Incoming>| async move {
                    let body = if req.uri().path() == ACCEPTS_PATH {
                        Bytes::from(ACCEPTS.load(Ordering::Relaxed).to_string())
                    } else {
                        Bytes::from_static(BODY)
                    };
                    Ok::<_, Infallible>(Response::new(Full::new(body)))
                });
                let _ = Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

/// Scenario 5's source: reads `<bytes>\n`, writes that many bytes, closes.
async fn send_bulk(stream: TcpStream) {
    let mut stream = BufReader::new(stream);
    let mut line = String::new();
    if stream.read_line(&mut line).await.is_err() {
        return;
    }
    let Ok(mut left) = line.trim().parse::<u64>() else {
        return;
    };
    let chunk = vec![0x5a_u8; 256 * 1024];
    let stream = stream.get_mut();
    while left > 0 {
        let n = chunk.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        if stream.write_all(&chunk[..n]).await.is_err() {
            return;
        }
        left -= n as u64;
    }
    let _ = stream.shutdown().await;
}

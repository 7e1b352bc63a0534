//! The endpoint every peer forwards to (and `direct` is measured against): a minimal hyper
//! server on one thread answering every request with `200` and a 12-byte body, over HTTP/1.1
//! keep-alive or HTTP/2 with prior knowledge (h2c) on the same port.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use tokio::net::TcpListener;

/// The body of every answer (the same 12 bytes as nginx `return 200 "hello world\n"`).
pub(crate) const BODY: &[u8] = b"hello world\n";

/// Serves on `addr` until the process is killed, on a current-thread runtime.
pub(crate) fn serve(addr: SocketAddr) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind(addr).await?;
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = service_fn(|_req: Request<hyper::body::Incoming>| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(BODY))))
                });
                let _ = Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

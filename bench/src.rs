//! Helpers for weir's whole-proxy benchmarks: an in-process proxy and loopback endpoints.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benchmark harness: a panic is a failed run"
)]

use std::net::SocketAddr;

use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use weir_proxy::Proxy;

/// Starts weir from `yaml` and returns it with its listeners' addresses by name.
pub async fn start_proxy(yaml: &str) -> Proxy {
    let config = weir_config::load_str(yaml, "bench.yaml").unwrap_or_else(|e| panic!("{e}"));
    Proxy::start(&config).await.unwrap()
}

/// A TCP endpoint that reads every connection to EOF, discarding the bytes, then closes.
pub async fn sink() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 256 * 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            });
        }
    });
    addr
}

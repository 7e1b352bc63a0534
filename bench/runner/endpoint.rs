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
//!
//! Scenario 8 (balancing quality) uses [`serve_many`] instead: ten such endpoints on ten ports
//! of one process, each counting the requests it served (`GET /__count`) and each able to answer
//! late for a window armed by a control request (`GET /__stall`), so one of them can stall.

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

/// The path answering with the number of requests one port of [`serve_many`] served.
pub(crate) const COUNT_PATH: &str = "/__count";

/// The path arming a stall on one port of [`serve_many`]:
/// `/__stall?after_ms=A&for_ms=F&delay_ms=D` makes the requests arriving between A and A+F
/// milliseconds from now wait D milliseconds before their answer.
pub(crate) const STALL_PATH: &str = "/__stall";

/// One port of [`serve_many`]: what it served and its stall window (milliseconds since start).
#[derive(Default)]
struct PortState {
    served: AtomicU64,
    stall_from_ms: AtomicU64,
    stall_until_ms: AtomicU64,
    stall_delay_ms: AtomicU64,
}

/// Scenario 8's endpoints: `count` ports from `first` on, served by one current-thread
/// runtime, each counting its requests (`GET /__count`) and able to stall (`GET /__stall`).
pub(crate) fn serve_many(first: SocketAddr, count: u16) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let start = tokio::time::Instant::now();
        let mut listeners = Vec::new();
        for i in 0..count {
            let addr = SocketAddr::new(first.ip(), first.port() + i);
            listeners.push(TcpListener::bind(addr).await?);
        }
        let mut tasks = Vec::new();
        for listener in listeners {
            let state = std::sync::Arc::new(PortState::default());
            tasks.push(tokio::spawn(accept_counting(listener, state, start)));
        }
        for t in tasks {
            t.await??;
        }
        anyhow::Ok(())
    })
}

async fn accept_counting(
    listener: TcpListener,
    state: std::sync::Arc<PortState>,
    start: tokio::time::Instant,
) -> anyhow::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let state = std::sync::Arc::clone(&state);
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                let state = std::sync::Arc::clone(&state);
                async move {
                    let body = answer(&req, &state, start).await;
                    Ok::<_, Infallible>(Response::new(Full::new(body)))
                }
            });
            let _ = Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The body for `req` on a port of [`serve_many`], after the stall if one is on.
async fn answer(
    req: &Request<hyper::body::Incoming>,
    state: &PortState,
    start: tokio::time::Instant,
) -> Bytes {
    let now_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    match req.uri().path() {
        COUNT_PATH => return Bytes::from(state.served.load(Ordering::Relaxed).to_string()),
        STALL_PATH => {
            let q = |name: &str| -> u64 {
                req.uri()
                    .query()
                    .unwrap_or("")
                    .split('&')
                    .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
                    .unwrap_or(0)
            };
            let from = now_ms + q("after_ms");
            state.stall_from_ms.store(from, Ordering::Relaxed);
            state
                .stall_until_ms
                .store(from + q("for_ms"), Ordering::Relaxed);
            state.stall_delay_ms.store(q("delay_ms"), Ordering::Relaxed);
            return Bytes::from_static(b"armed\n");
        }
        _ => {}
    }
    state.served.fetch_add(1, Ordering::Relaxed);
    let from = state.stall_from_ms.load(Ordering::Relaxed);
    let until = state.stall_until_ms.load(Ordering::Relaxed);
    if (from..until).contains(&now_ms) {
        let delay = state.stall_delay_ms.load(Ordering::Relaxed);
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    }
    Bytes::from_static(BODY)
}

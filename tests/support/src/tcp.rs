//! Raw TCP mocks for connect-failure, timeout and L4 tests: an address nothing listens on, a
//! blackhole that accepts and then never reads or writes, and a byte echo that honours half-close.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::util::{Background, accept_loop, bind_loopback};

/// Constructors for the raw TCP mocks.
#[derive(Debug, Clone, Copy)]
pub struct MockTcp;

/// Accepts connections and holds them open without reading or writing, until dropped.
#[derive(Debug)]
pub struct Blackhole {
    addr: SocketAddr,
    connections: Arc<AtomicU64>,
    background: Background,
}

/// Echoes every byte back on each connection; when the peer half-closes, finishes echoing and
/// half-closes in turn.
#[derive(Debug)]
pub struct TcpEcho {
    addr: SocketAddr,
    connections: Arc<AtomicU64>,
    background: Background,
}

impl MockTcp {
    /// A loopback address where connecting is refused, for the life of the test process: a
    /// socket is bound to it and never listens (Linux answers a SYN to it with a reset), and
    /// it is kept open on purpose, so no other test's listener can be given the port.
    pub fn refusing_addr() -> SocketAddr {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("a TCP socket");
        socket
            .bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())
            .expect("bind 127.0.0.1:0");
        let addr = socket
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .expect("local_addr of a bound socket");
        // Held until the process exits: one descriptor per call, a few per test run.
        std::mem::forget(socket);
        addr
    }

    /// Starts a [`Blackhole`] on `127.0.0.1:0`.
    pub async fn blackhole() -> Blackhole {
        let (listener, addr) = bind_loopback().await;
        let connections = Arc::new(AtomicU64::new(0));
        let token = CancellationToken::new();
        let held = token.clone();
        let serve = accept_loop(
            listener,
            token.clone(),
            Arc::clone(&connections),
            move |stream, _peer| {
                let held = held.clone();
                async move {
                    // Keep the socket open, untouched, until the mock stops.
                    held.cancelled().await;
                    drop(stream);
                }
            },
        );
        Blackhole {
            addr,
            connections,
            background: Background::spawn(token, serve),
        }
    }

    /// Starts a [`TcpEcho`] on `127.0.0.1:0`.
    pub async fn echo() -> TcpEcho {
        let (listener, addr) = bind_loopback().await;
        let connections = Arc::new(AtomicU64::new(0));
        let token = CancellationToken::new();
        let serve = accept_loop(
            listener,
            token.clone(),
            Arc::clone(&connections),
            |stream, _peer| echo(stream),
        );
        TcpEcho {
            addr,
            connections,
            background: Background::spawn(token, serve),
        }
    }
}

impl Blackhole {
    /// The bound loopback address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }

    /// Closes the listener and every held connection, and waits until they are closed.
    pub async fn shutdown(self) {
        self.background.shutdown().await;
    }
}

impl TcpEcho {
    /// The bound loopback address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }

    /// Closes the listener and every open connection, and waits until they are closed.
    pub async fn shutdown(self) {
        self.background.shutdown().await;
    }
}

/// Copies the read half into the write half until EOF, then shuts the write half down.
async fn echo(mut stream: TcpStream) {
    let (mut read, mut write) = stream.split();
    if let Err(error) = tokio::io::copy(&mut read, &mut write).await {
        tracing::debug!(%error, "mock tcp echo ended with an error");
        return;
    }
    let _ = write.shutdown().await;
}

//! A UDP echo endpoint for L4 tests: every datagram goes back, byte for byte, to its sender.
//!
//! It counts the datagrams it received and the distinct source addresses they came from, so a
//! test can see how a proxy spread its sessions (one source address per session).

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use crate::util::Background;

/// Largest datagram the echo receives whole (the UDP maximum).
const MAX_DATAGRAM: usize = 65_535;

/// Echoes every datagram back to its sender, unchanged, until dropped.
#[derive(Debug)]
pub struct MockUdp {
    name: String,
    addr: SocketAddr,
    stats: Arc<Stats>,
    background: Background,
}

#[derive(Debug, Default)]
struct Stats {
    datagrams: AtomicU64,
    peers: Mutex<HashSet<SocketAddr>>,
}

impl MockUdp {
    /// Starts an echo named `name` (for logs) on `127.0.0.1:0`.
    pub async fn echo(name: &str) -> MockUdp {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind udp 127.0.0.1:0");
        let addr = socket.local_addr().expect("local_addr of a bound socket");
        let stats = Arc::new(Stats::default());
        let token = CancellationToken::new();
        let serve = echo(socket, token.clone(), Arc::clone(&stats), name.to_owned());
        MockUdp {
            name: name.to_owned(),
            addr,
            stats,
            background: Background::spawn(token, serve),
        }
    }

    /// The name given at start.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bound loopback address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Datagrams received so far (each was echoed).
    pub fn datagrams(&self) -> u64 {
        self.stats.datagrams.load(Ordering::SeqCst)
    }

    /// Distinct source addresses (IP and port) datagrams came from so far.
    pub fn distinct_peers(&self) -> usize {
        self.stats.peers.lock().expect("peers lock").len()
    }

    /// Closes the socket and waits until the echo has stopped.
    pub async fn shutdown(self) {
        self.background.shutdown().await;
    }
}

async fn echo(socket: UdpSocket, token: CancellationToken, stats: Arc<Stats>, name: String) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, peer) = tokio::select! {
            () = token.cancelled() => return,
            received = socket.recv_from(&mut buf) => match received {
                Ok(pair) => pair,
                Err(error) => {
                    // ICMP errors from a peer that went away; the echo carries on.
                    tracing::debug!(mock = %name, %error, "mock udp receive failed");
                    continue;
                }
            },
        };
        stats.peers.lock().expect("peers lock").insert(peer);
        // Count before replying, so a test that has its reply sees the count.
        stats.datagrams.fetch_add(1, Ordering::SeqCst);
        if let Err(error) = socket.send_to(&buf[..n], peer).await {
            tracing::debug!(mock = %name, %peer, %error, "mock udp echo not sent");
        }
    }
}

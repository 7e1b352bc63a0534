//! The packet source and the counting sink of `weir-bench kernel`: a multi-flow UDP flood and
//! a receiver that counts what arrives.
//!
//! The flood opens one connected UDP socket per flow (each on its own ephemeral source port, so
//! the balancers' flow hash spreads them) and `send`s small datagrams round-robin over them in a
//! tight loop on one thread — plain `send` rather than `sendmmsg`: the syscall cost is the same
//! for every data plane and the flood only has to outrun the slowest of them. The runner pins
//! both processes with `taskset` and reads the kernel's counters itself; these print their own
//! counts as JSON when they stop.

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// What the flood did.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct FloodReport {
    /// Datagrams the kernel accepted.
    pub(crate) sent: u64,
    /// Sends refused (`ENOBUFS`, `EAGAIN`, ...): the path was full.
    pub(crate) refused: u64,
    /// Seconds of flooding.
    pub(crate) seconds: f64,
}

/// Floods `targets` from `flows` sockets for `duration` with `size`-byte datagrams; flow `i`
/// sends to `targets[i % targets.len()]`.
pub(crate) fn flood(
    targets: &[SocketAddr],
    flows: u32,
    size: usize,
    duration: Duration,
) -> anyhow::Result<FloodReport> {
    anyhow::ensure!(!targets.is_empty(), "no target to flood");
    let mut sockets = Vec::with_capacity(flows as usize);
    for (i, target) in targets
        .iter()
        .cycle()
        .take(flows.max(1) as usize)
        .enumerate()
    {
        let socket = UdpSocket::bind("0.0.0.0:0").context("binding a flood socket")?;
        socket
            .connect(target)
            .with_context(|| format!("flow {i}: connecting to {target}"))?;
        sockets.push(socket);
    }
    let payload = vec![0x5au8; size];
    let (mut sent, mut refused) = (0u64, 0u64);
    let start = Instant::now();
    let deadline = start + duration;
    'outer: loop {
        for socket in &sockets {
            match socket.send(&payload) {
                Ok(_) => sent += 1,
                // A full queue or an ICMP error from an earlier datagram: count and go on.
                Err(e) if is_transient(&e) => refused += 1,
                Err(e) => return Err(e).context("flood send"),
            }
        }
        if Instant::now() >= deadline {
            break 'outer;
        }
    }
    Ok(FloodReport {
        sent,
        refused,
        seconds: start.elapsed().as_secs_f64(),
    })
}

fn is_transient(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::WouldBlock | ErrorKind::ConnectionRefused | ErrorKind::HostUnreachable
    ) || e.raw_os_error() == Some(105) // ENOBUFS
}

/// What the sink received.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SinkReport {
    /// Datagrams read.
    pub(crate) received: u64,
}

/// Reads datagrams on `addr` for `duration`, counting them.
pub(crate) fn sink(addr: SocketAddr, duration: Duration) -> anyhow::Result<SinkReport> {
    let socket = UdpSocket::bind(addr).with_context(|| format!("binding the sink on {addr}"))?;
    socket.set_read_timeout(Some(Duration::from_millis(100)))?;
    let deadline = Instant::now() + duration;
    let mut buf = [0u8; 2048];
    let mut received = 0u64;
    while Instant::now() < deadline {
        // Check the clock once per batch, not per datagram.
        for _ in 0..256 {
            match socket.recv(&mut buf) {
                Ok(_) => received += 1,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
                Err(e) => return Err(e).context("sink recv"),
            }
        }
    }
    Ok(SinkReport { received })
}

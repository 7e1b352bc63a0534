//! The packet source and the counting sink of `weir-bench kernel`: a multi-flow UDP flood and
//! a receiver that counts what arrives.
//!
//! The flood opens one connected UDP socket per flow (each on its own ephemeral source port, so
//! the balancers' flow hash spreads them) and sends small datagrams round-robin over them in a
//! tight loop on one thread, `batch` datagrams per `sendmmsg` call, so the source's syscall cost
//! is a small share of a packet's and the planes, not the source, set the pace. The runner pins
//! both processes with `taskset` and reads the kernel's counters itself; these print their own
//! counts as JSON when they stop.

use std::io::{ErrorKind, IoSlice};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::Context;
use rustix::net::{MMsgHdr, SendAncillaryBuffer, SendFlags, sendmmsg};
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

/// Floods `targets` from `flows` sockets for `duration` with `size`-byte datagrams, `batch`
/// per `sendmmsg`; flow `i` sends to `targets[i % targets.len()]`, or, with fewer flows than
/// targets, to targets spread evenly over the list.
pub(crate) fn flood(
    targets: &[SocketAddr],
    flows: u32,
    size: usize,
    batch: usize,
    duration: Duration,
) -> anyhow::Result<FloodReport> {
    anyhow::ensure!(!targets.is_empty(), "no target to flood");
    let mut sockets = Vec::new();
    let flows = flows.max(1) as usize;
    // Fewer flows than targets: spread them evenly over all targets.
    let pick = |i: usize| {
        if flows < targets.len() {
            &targets[i * targets.len() / flows]
        } else {
            &targets[i % targets.len()]
        }
    };
    for (i, target) in (0..flows).map(|i| (i, pick(i))) {
        let socket = UdpSocket::bind("0.0.0.0:0").context("binding a flood socket")?;
        socket
            .connect(target)
            .with_context(|| format!("flow {i}: connecting to {target}"))?;
        sockets.push(socket);
    }
    let payload = vec![0x5au8; size];
    let iov = [IoSlice::new(&payload)];
    let mut controls: Vec<SendAncillaryBuffer<'_, '_, '_>> = (0..batch.max(1))
        .map(|_| SendAncillaryBuffer::default())
        .collect();
    let mut messages: Vec<MMsgHdr<'_>> = controls
        .iter_mut()
        .map(|control| MMsgHdr::new(&iov, control))
        .collect();
    let (mut sent, mut refused) = (0u64, 0u64);
    let start = Instant::now();
    let deadline = start + duration;
    'outer: loop {
        for socket in &sockets {
            match sendmmsg(socket, &mut messages, SendFlags::empty()) {
                Ok(n) => {
                    sent += n as u64;
                    refused += (messages.len() - n) as u64;
                }
                // A full queue or an ICMP error from an earlier datagram: count and go on.
                Err(e) if is_transient(&std::io::Error::from(e)) => {
                    refused += messages.len() as u64;
                }
                Err(e) => return Err(e).context("flood sendmmsg"),
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

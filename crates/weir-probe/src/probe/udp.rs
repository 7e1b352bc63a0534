//! The UDP probe: send one datagram from a connected socket and wait for a reply (containing
//! the expected text, when one is set).
//!
//! The socket is connected so the kernel reports an ICMP port-unreachable as `ECONNREFUSED`:
//! a stopped endpoint fails at once with `connection refused` instead of timing out.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::net::UdpSocket;
use weir_config::UdpCheckConfig;

use super::{MAX_READ, Verdict, contains, io_detail, missing};

/// Checks `addr` as `config` says; the caller bounds the wait for the reply.
pub(super) async fn check(config: &UdpCheckConfig, addr: SocketAddr) -> Verdict {
    let socket = UdpSocket::bind(local_for(addr))
        .await
        .map_err(|e| format!("bind failed: {}", io_detail(&e)))?;
    socket.connect(addr).await.map_err(|e| io_detail(&e))?;
    socket
        .send(config.send.as_bytes())
        .await
        .map_err(|e| io_detail(&e))?;
    let mut reply = vec![0u8; MAX_READ];
    let n = socket.recv(&mut reply).await.map_err(|e| io_detail(&e))?;
    match &config.expect {
        None => Ok(format!("reply of {n} bytes")),
        Some(expect) if contains(&reply[..n], expect.as_bytes()) => {
            Ok(format!("reply contains {expect:?}"))
        }
        Some(expect) => Err(missing("reply", expect)),
    }
}

/// An ephemeral port of `addr`'s family: on loopback for a loopback endpoint, so a probe of a
/// local endpoint never leaves it, else on every address.
fn local_for(addr: SocketAddr) -> SocketAddr {
    match (addr, addr.ip().is_loopback()) {
        (SocketAddr::V4(_), true) => (Ipv4Addr::LOCALHOST, 0).into(),
        (SocketAddr::V4(_), false) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        (SocketAddr::V6(_), true) => (Ipv6Addr::LOCALHOST, 0).into(),
        (SocketAddr::V6(_), false) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    }
}

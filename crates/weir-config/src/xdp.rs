//! Options of `xdp` and `nftables` listeners: weir's kernel data planes (an XDP Maglev balancer
//! and nftables verdict maps, see docs/kernel.md), which balance packets to VIPs without a
//! socket in weir.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

/// The `xdp` block of an `xdp` listener.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct XdpListenerConfig {
    /// Interfaces the program is attached to (native XDP where the driver supports it,
    /// generic otherwise): those the VIP's packets arrive on.
    pub interfaces: Vec<String>,
    /// More VIPs balanced over the same cluster, besides the listener's `address`.
    #[serde(default)]
    pub vips: Vec<SocketAddr>,
    /// The VIPs' transport protocol. Default `tcp`.
    #[serde(default)]
    pub transport: KernelTransport,
    /// How packets reach the endpoint. Default `ipip`.
    #[serde(default)]
    pub forwarding: XdpForwarding,
    /// The balancer's own IPv4 address: the outer source of IP-in-IP packets (required with
    /// `forwarding: ipip`). Every `xdp` listener must give the same one.
    #[serde(default)]
    pub local_address: Option<IpAddr>,
    /// The next hop's MAC (`aa:bb:cc:dd:ee:ff`): balanced packets are sent back out of the
    /// interface they came in on, to it (`XDP_TX`, one-arm like Katran). Unset: the next hop
    /// is chosen by `forwarding_path`. Every `xdp` listener must give the same one.
    #[serde(default)]
    pub gateway_mac: Option<String>,
    /// Without `gateway_mac`, how balanced packets leave. Default `fib`: the program asks the
    /// kernel's routing table and neighbours and sends the packet itself. Every `xdp` listener
    /// must give the same one.
    #[serde(default)]
    pub forwarding_path: XdpForwardingPath,
}

/// How an `xdp` listener without `gateway_mac` sends balanced packets on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum XdpForwardingPath {
    /// The program looks the new destination up in the kernel's FIB (`bpf_fib_lookup`) and
    /// redirects the frame to the egress interface itself; what the FIB cannot answer at once
    /// (no neighbour entry yet, fragmentation needed, expiring TTL) is passed to the kernel.
    #[default]
    Fib,
    /// The program hands every balanced packet to the kernel (`XDP_PASS`), which routes it:
    /// for egress devices that cannot receive XDP redirects.
    Kernel,
}

/// The `nftables` block of an `nftables` listener (optional).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NftablesListenerConfig {
    /// More VIPs balanced over the same cluster, besides the listener's `address`.
    #[serde(default)]
    pub vips: Vec<SocketAddr>,
    /// The VIPs' transport protocol. Default `tcp`.
    #[serde(default)]
    pub transport: KernelTransport,
}

/// Transport protocol of a kernel listener's VIPs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KernelTransport {
    /// TCP.
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

/// How an `xdp` listener forwards packets to the chosen endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum XdpForwarding {
    /// IP-in-IP encapsulation; the endpoint decapsulates and answers the client directly.
    #[default]
    Ipip,
    /// Destination NAT to the endpoint's address and port; replies must route back through
    /// the balancer, which restores the VIP as their source.
    Dnat,
}

/// Parses `aa:bb:cc:dd:ee:ff` (hex, `:` or `-` separated) into six bytes.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split([':', '-']);
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

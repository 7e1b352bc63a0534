//! Rust mirrors of the keys and values of `bpf/xdp_lb.c`'s maps.
//!
//! The layouts are `repr(C)` copies of the C structs (fields in the same order, explicit
//! padding, addresses and ports in network byte order as the packet carries them). aya copies
//! them to and from the kernel as plain bytes, which is what [`aya::Pod`] promises is sound.
#![allow(
    unsafe_code,
    reason = "aya::Pod is an unsafe marker trait for plain-old-data map types"
)]

use std::net::{Ipv4Addr, SocketAddrV4};

/// `struct vip_info`'s `flags`: rewrite the destination (DNAT) instead of encapsulating.
pub(crate) const VIP_MODE_DNAT: u32 = 1;
/// `struct lb_config`'s `flags`: hand balanced packets to the kernel instead of the FIB.
pub(crate) const CFG_KERNEL_PATH: u16 = 1;
/// Entries of `fwd_stats` (`FWD_REASONS`): how many ways a balanced packet leaves.
pub(crate) const FWD_REASONS: u32 = 10;
/// `struct endpoint`'s `flags`: the slot is in use (conntrack may keep flows on it).
pub(crate) const EP_PRESENT: u16 = 1;
/// `struct endpoint`'s `flags`: new flows may be sent to it (healthy, or the cluster panics).
pub(crate) const EP_ELIGIBLE: u16 = 2;

/// `struct vip_key`: a VIP's address, port and IP protocol.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct VipKey {
    pub(crate) addr: [u8; 4],
    pub(crate) port: [u8; 2],
    pub(crate) proto: u8,
    pub(crate) pad: u8,
}

impl VipKey {
    pub(crate) fn new(addr: SocketAddrV4, proto: u8) -> Self {
        Self {
            addr: addr.ip().octets(),
            port: addr.port().to_be_bytes(),
            proto,
            pad: 0,
        }
    }
}

/// `struct vip_info`: where the VIP's Maglev table lives in `ring` and how it forwards.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct VipInfo {
    pub(crate) id: u32,
    pub(crate) ring_base: u32,
    pub(crate) ring_size: u32,
    pub(crate) flags: u32,
}

/// `struct endpoint`: an endpoint's address and its `EP_*` flags.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct EndpointValue {
    pub(crate) addr: [u8; 4],
    pub(crate) port: [u8; 2],
    pub(crate) flags: u16,
}

impl EndpointValue {
    pub(crate) fn new(addr: SocketAddrV4, flags: u16) -> Self {
        Self {
            addr: addr.ip().octets(),
            port: addr.port().to_be_bytes(),
            flags,
        }
    }
}

/// `struct lb_config`: the balancer's own address (IP-in-IP outer source), next hop and
/// `CFG_*` flags.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct LbConfig {
    pub(crate) local_addr: [u8; 4],
    pub(crate) gw_mac: [u8; 6],
    pub(crate) flags: u16,
}

impl LbConfig {
    pub(crate) fn new(local: Ipv4Addr, gateway_mac: Option<[u8; 6]>, flags: u16) -> Self {
        Self {
            local_addr: local.octets(),
            gw_mac: gateway_mac.unwrap_or_default(),
            flags,
        }
    }
}

/// `struct counters`: packets and bytes, one copy per CPU.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct CountersValue {
    pub(crate) packets: u64,
    pub(crate) bytes: u64,
}

/// `struct flow_key`: a connection-table key (only read back to forget removed endpoints).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FlowKey {
    pub(crate) src: [u8; 4],
    pub(crate) dst: [u8; 4],
    pub(crate) sport: [u8; 2],
    pub(crate) dport: [u8; 2],
    pub(crate) proto: u8,
    pub(crate) pad: [u8; 3],
}

// SAFETY: every type is repr(C), Copy, made of integers and byte arrays with explicit padding
// fields, so any byte pattern is a valid value and no uninitialised padding is exposed.
unsafe impl aya::Pod for VipKey {}
unsafe impl aya::Pod for VipInfo {}
unsafe impl aya::Pod for EndpointValue {}
unsafe impl aya::Pod for LbConfig {}
unsafe impl aya::Pod for CountersValue {}
unsafe impl aya::Pod for FlowKey {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_the_c_structs() {
        assert_eq!(size_of::<VipKey>(), 8);
        assert_eq!(size_of::<VipInfo>(), 16);
        assert_eq!(size_of::<EndpointValue>(), 8);
        assert_eq!(size_of::<LbConfig>(), 12);
        assert_eq!(size_of::<CountersValue>(), 16);
        assert_eq!(size_of::<FlowKey>(), 16);
    }
}

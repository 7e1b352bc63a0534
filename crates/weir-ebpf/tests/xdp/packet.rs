//! Hand-built Ethernet/IPv4/TCP/UDP frames and the checks on what the program wrote back.

use std::net::{Ipv4Addr, SocketAddrV4};

pub(crate) const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub(crate) const LB_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub(crate) const ETH_IP: usize = 14;
pub(crate) const IP_LEN: usize = 20;

/// The one's-complement sum of `bytes` folded to 16 bits (not inverted).
fn sum16(bytes: &[u8], mut acc: u32) -> u32 {
    for chunk in bytes.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        acc += u32::from(word);
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc
}

/// The checksum to store in an IPv4 header (`header` with its checksum field zeroed).
pub(crate) fn ip_checksum(header: &[u8]) -> u16 {
    !(sum16(header, 0) as u16)
}

/// The TCP/UDP checksum over the pseudo-header and `segment` (its checksum field zeroed).
pub(crate) fn l4_checksum(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, segment: &[u8]) -> u16 {
    let mut pseudo = Vec::with_capacity(12);
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, proto]);
    pseudo.extend_from_slice(&(segment.len() as u16).to_be_bytes());
    let acc = sum16(&pseudo, 0);
    !(sum16(segment, acc) as u16)
}

/// Whether the IPv4 header at `ip` (20 bytes) and its TCP/UDP segment have valid checksums.
pub(crate) fn checksums_valid(ip: &[u8]) -> bool {
    if sum16(&ip[..IP_LEN], 0) != 0xffff {
        return false;
    }
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let proto = ip[9];
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let segment = &ip[IP_LEN..total];
    if proto == 17 && segment[6..8] == [0, 0] {
        return true; // UDP without a checksum
    }
    let mut pseudo = Vec::with_capacity(12);
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, proto]);
    pseudo.extend_from_slice(&(segment.len() as u16).to_be_bytes());
    sum16(segment, sum16(&pseudo, 0)) == 0xffff
}

/// An Ethernet frame carrying IPv4 with a TCP (proto 6) or UDP (17) segment and `payload`.
pub(crate) fn frame(src: SocketAddrV4, dst: SocketAddrV4, proto: u8, payload: &[u8]) -> Vec<u8> {
    let mut l4 = Vec::new();
    l4.extend_from_slice(&src.port().to_be_bytes());
    l4.extend_from_slice(&dst.port().to_be_bytes());
    if proto == 6 {
        l4.extend_from_slice(&1u32.to_be_bytes()); // seq
        l4.extend_from_slice(&0u32.to_be_bytes()); // ack
        l4.extend_from_slice(&[0x50, 0x02]); // 20-byte header, SYN
        l4.extend_from_slice(&64_240u16.to_be_bytes()); // window
        l4.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent
    } else {
        l4.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        l4.extend_from_slice(&[0, 0]);
    }
    l4.extend_from_slice(payload);
    let check = l4_checksum(*src.ip(), *dst.ip(), proto, &l4);
    let at = if proto == 6 { 16 } else { 6 };
    l4[at..at + 2].copy_from_slice(&check.to_be_bytes());

    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&((IP_LEN + l4.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, proto, 0, 0]); // id, DF, ttl, proto
    ip.extend_from_slice(&src.ip().octets());
    ip.extend_from_slice(&dst.ip().octets());
    let check = ip_checksum(&ip);
    ip[10..12].copy_from_slice(&check.to_be_bytes());

    let mut f = Vec::new();
    f.extend_from_slice(&LB_MAC);
    f.extend_from_slice(&CLIENT_MAC);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&l4);
    f
}

/// Rewrites the IPv4 header of `f` with `edit` and fixes its header checksum.
pub(crate) fn edit_ip(f: &mut [u8], edit: impl FnOnce(&mut [u8])) {
    let ip = &mut f[ETH_IP..ETH_IP + IP_LEN];
    edit(ip);
    ip[10..12].copy_from_slice(&[0, 0]);
    let check = ip_checksum(ip);
    ip[10..12].copy_from_slice(&check.to_be_bytes());
}

/// The IPv4 address at `at` in `bytes`.
pub(crate) fn addr(bytes: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3])
}

/// The big-endian u16 at `at` in `bytes`.
pub(crate) fn be16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

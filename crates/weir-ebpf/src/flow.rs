//! The flow hash the XDP program computes for a new connection, mirrored in Rust.
//!
//! The kernel hashes the 5-tuple with this function and hands the result to the same Maglev
//! walk weir-balance does for a request hash, so `Maglev::pick` with
//! `PickContext { hash: Some(flow_hash(..)), .. }` names the endpoint the kernel chooses (the
//! BPF tests check exactly that). Keep it in step with `flow_hash` in `bpf/xdp_lb.c`.

use std::net::SocketAddrV4;

/// IANA protocol number of TCP.
pub const IPPROTO_TCP: u8 = 6;
/// IANA protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;

/// SplitMix64's finaliser (weir-balance's `mix64`).
fn mix64(x: u64) -> u64 {
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The hash of a flow from `src` to `dst` over IP protocol `proto`, as the XDP program computes
/// it: addresses and ports as host-order numbers, mixed twice.
pub fn flow_hash(src: SocketAddrV4, dst: SocketAddrV4, proto: u8) -> u64 {
    let h = mix64((u64::from(u32::from(*src.ip())) << 32) | u64::from(u32::from(*dst.ip())));
    let p = (u64::from(src.port()) << 32) | (u64::from(dst.port()) << 16) | u64::from(proto);
    mix64(h ^ p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depends_on_every_field() {
        let a: SocketAddrV4 = "10.0.0.1:1000".parse().unwrap();
        let b: SocketAddrV4 = "10.0.0.2:80".parse().unwrap();
        let base = flow_hash(a, b, IPPROTO_TCP);
        assert_ne!(base, flow_hash(b, a, IPPROTO_TCP));
        assert_ne!(base, flow_hash(a, b, IPPROTO_UDP));
        assert_ne!(
            base,
            flow_hash("10.0.0.1:1001".parse().unwrap(), b, IPPROTO_TCP)
        );
        assert_eq!(base, flow_hash(a, b, IPPROTO_TCP));
    }
}

//! The program's cost per packet under `BPF_PROG_TEST_RUN` with many repeats, for 1, 1,000 and
//! 10,000 VIPs: printed (a figure for docs/kernel.md, not asserted: the box is shared), and checked to
//! still balance. Run with `--nocapture` to see it.
//!
//! The kernel runs the program again on the frame it rewrote, so each VIP's one endpoint is the
//! VIP itself in DNAT mode: the rewrite is a no-op and every run takes the whole path of an
//! established flow (VIP lookup, connection table hit, endpoint lookup, counters, checksum
//! updates, `XDP_TX`).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use aya::programs::{TestRun, TestRunOptions};
use weir_config::MaglevConfig;
use weir_core::Endpoint;
use weir_ebpf::{Forwarding, IPPROTO_TCP, Limits, Protocol, Vip, XdpBalancer};

use crate::packet::frame;
use crate::privileged;

const XDP_TX: u32 = 3;
const REPEAT: u32 = 200_000;

fn ns_per_packet(vips: u32) -> Option<f64> {
    let mut lb = XdpBalancer::load(Limits {
        max_vips: vips,
        max_endpoints: vips + 1,
        ring_capacity: 7,
        conntrack_entries: 4_096,
    })
    .expect("load");
    lb.set_local(
        Ipv4Addr::new(10, 99, 0, 1),
        Some([2, 0, 0, 0, 0, 0xfe]),
        weir_ebpf::ForwardingPath::Fib,
    )
    .unwrap();
    // A one-endpoint table: its size does not change the established path measured.
    let table = MaglevConfig { table_size: 7 };
    for v in 0..vips {
        let address = SocketAddrV4::new(Ipv4Addr::from(0x0a00_0000 + v), 80);
        let vip = Vip {
            address,
            protocol: Protocol::Tcp,
        };
        let itself = [Arc::new(Endpoint::new(address.into(), 1))];
        lb.set_vip(vip, Forwarding::Dnat, &itself, &table, 50)
            .unwrap();
    }
    let input = frame(
        "192.0.2.7:40000".parse().unwrap(),
        SocketAddrV4::new(Ipv4Addr::from(0x0a00_0000 + vips / 2), 80),
        IPPROTO_TCP,
        &[0u8; 64],
    );
    let mut out = vec![0u8; input.len() + 64];
    let result = lb
        .program()
        .unwrap()
        .test_run(TestRunOptions {
            data_in: Some(&input),
            data_out: Some(&mut out),
            repeat: REPEAT,
            ..TestRunOptions::default()
        })
        .unwrap();
    assert_eq!(result.return_value, XDP_TX);
    // The kernel reports the mean duration of one run.
    Some(result.duration.as_nanos() as f64)
}

#[test]
fn cost_per_packet_is_printed_for_1_to_10000_vips() {
    if !privileged::allowed("cost_per_packet_is_printed_for_1_to_10000_vips") {
        return;
    }
    for vips in [1, 1_000, 10_000] {
        if let Some(ns) = ns_per_packet(vips) {
            println!(
                "xdp_lb: {vips} VIPs: {ns:.0} ns per packet (BPF_PROG_TEST_RUN, {REPEAT} runs, established flow, DNAT)"
            );
        }
    }
}

//! The XDP program under `BPF_PROG_TEST_RUN`: crafted frames in, verdicts and rewritten frames
//! out, checked against weir-balance's Maglev for the endpoint every flow gets.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;

use aya::programs::{TestRun, TestRunOptions};
use weir_balance::{Balancer, BuildContext, CommonOptions, Maglev, PickContext, SeededRandom};
use weir_config::MaglevConfig;
use weir_core::{Endpoint, SystemClock};
use weir_ebpf::{
    Forwarding, ForwardingPath, IPPROTO_TCP, IPPROTO_UDP, Limits, Protocol, Vip, XdpBalancer,
    flow_hash,
};

use crate::packet::{self, ETH_IP, IP_LEN, LB_MAC, addr, be16, checksums_valid, edit_ip, frame};
use crate::privileged;

const XDP_DROP: u32 = 1;
pub(crate) const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const GATEWAY_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xfe];
pub(crate) const LOCAL: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
pub(crate) const TABLE: MaglevConfig = MaglevConfig { table_size: 251 };

pub(crate) fn vip(proto: Protocol) -> Vip {
    Vip {
        address: "10.0.0.100:80".parse().unwrap(),
        protocol: proto,
    }
}

pub(crate) fn endpoints(addrs: &[&str]) -> Vec<Arc<Endpoint>> {
    addrs
        .iter()
        .map(|a| Arc::new(Endpoint::new(a.parse().unwrap(), 1)))
        .collect()
}

pub(crate) fn client(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 7), port)
}

/// A loaded balancer with one VIP, or `None` when the test must skip.
fn balancer(test: &str, forwarding: Forwarding, eps: &[Arc<Endpoint>]) -> Option<XdpBalancer> {
    if !privileged::allowed(test) {
        return None;
    }
    let mut lb = XdpBalancer::load(Limits {
        max_vips: 8,
        max_endpoints: 64,
        ring_capacity: 1_009,
        conntrack_entries: 4_096,
    })
    .expect("load the XDP object");
    // DNAT replies follow the forwarding path, not the gateway: the kernel path keeps their
    // verdict independent of this machine's routes (the FIB path is tested in fib.rs).
    lb.set_local(LOCAL, Some(GATEWAY_MAC), ForwardingPath::Kernel)
        .unwrap();
    for proto in [Protocol::Tcp, Protocol::Udp] {
        lb.set_vip(vip(proto), forwarding, eps, &TABLE, 50).unwrap();
    }
    Some(lb)
}

/// Runs the program once on `input`: the verdict and the frame it left.
pub(crate) fn run(lb: &XdpBalancer, input: &[u8]) -> (u32, Vec<u8>) {
    let mut out = vec![0u8; input.len() + 256];
    let result = lb
        .program()
        .unwrap()
        .test_run(TestRunOptions {
            data_in: Some(input),
            data_out: Some(&mut out),
            repeat: 1,
            ..TestRunOptions::default()
        })
        .expect("BPF_PROG_TEST_RUN");
    out.truncate(result.data_size_out as usize);
    (result.return_value, out)
}

/// What userspace Maglev picks for the flow, built over the same endpoints.
fn userspace_pick(
    eps: &[Arc<Endpoint>],
    src: SocketAddrV4,
    dst: SocketAddrV4,
    proto: u8,
) -> SocketAddr {
    let maglev = Maglev::new(
        eps,
        &BuildContext {
            clock: Arc::new(SystemClock),
            random: Arc::new(SeededRandom::new(1)),
        },
        &CommonOptions::default(),
        &TABLE,
    );
    let hash = flow_hash(src, dst, proto);
    let i = maglev
        .pick(&PickContext {
            hash: Some(hash),
            attempt: 0,
        })
        .unwrap();
    eps[i].address
}

/// The endpoint an IP-in-IP frame was sent to, after checking the encapsulation.
fn ipip_target(input: &[u8], verdict: u32, out: &[u8]) -> Ipv4Addr {
    assert_eq!(verdict, XDP_TX);
    assert_eq!(out.len(), input.len() + IP_LEN);
    assert_eq!(&out[..6], &GATEWAY_MAC, "to the next hop");
    assert_eq!(&out[6..12], &LB_MAC, "from the interface's own MAC");
    let outer = &out[ETH_IP..ETH_IP + IP_LEN];
    assert_eq!(outer[0], 0x45);
    assert_eq!(outer[9], 4, "IP-in-IP");
    assert_eq!(usize::from(be16(outer, 2)), input.len() - ETH_IP + IP_LEN);
    assert_eq!(addr(outer, 12), LOCAL);
    assert_eq!(packet::ip_checksum(outer), 0, "outer header checksum");
    assert_eq!(
        &out[ETH_IP + IP_LEN..],
        &input[ETH_IP..],
        "inner packet untouched"
    );
    addr(outer, 16)
}

#[test]
fn vip_hits_are_encapsulated_to_the_endpoint_userspace_maglev_picks() {
    let eps = endpoints(&["10.1.0.1:8080", "10.1.0.2:8080", "10.1.0.3:8080"]);
    let Some(lb) = balancer("vip_hits_are_encapsulated", Forwarding::Ipip, &eps) else {
        return;
    };
    let mut seen = [0usize; 3];
    for (proto, vip) in [
        (IPPROTO_TCP, vip(Protocol::Tcp)),
        (IPPROTO_UDP, vip(Protocol::Udp)),
    ] {
        for port in 40_000..40_150 {
            let input = frame(client(port), vip.address, proto, b"hello");
            let (verdict, out) = run(&lb, &input);
            let target = ipip_target(&input, verdict, &out);
            let want = userspace_pick(&eps, client(port), vip.address, proto);
            assert_eq!(
                SocketAddr::from((target, 8080)),
                want,
                "port {port} proto {proto}"
            );
            seen[usize::from(target.octets()[3] - 1)] += 1;
        }
    }
    assert!(
        seen.iter().all(|&n| n > 50),
        "every endpoint gets flows: {seen:?}"
    );
    let counters = lb.vip_counters().unwrap();
    let tcp = counters
        .iter()
        .find(|(v, ..)| v.protocol == Protocol::Tcp)
        .unwrap()
        .2;
    assert_eq!(tcp.packets, 150);
    let per_endpoint: u64 = lb
        .endpoint_counters()
        .unwrap()
        .iter()
        .map(|(.., c)| c.packets)
        .sum();
    assert_eq!(per_endpoint, 300);
}

#[test]
fn dnat_rewrites_destination_and_replies_with_valid_checksums() {
    let eps = endpoints(&["10.1.0.1:8080", "10.1.0.2:9090"]);
    let Some(lb) = balancer("dnat_rewrites_destination", Forwarding::Dnat, &eps) else {
        return;
    };
    for (proto, vip) in [
        (IPPROTO_TCP, vip(Protocol::Tcp)),
        (IPPROTO_UDP, vip(Protocol::Udp)),
    ] {
        let input = frame(client(50_000), vip.address, proto, b"payload!");
        let (verdict, out) = run(&lb, &input);
        assert_eq!(verdict, XDP_TX);
        assert_eq!(out.len(), input.len());
        let ip = &out[ETH_IP..];
        let want = userspace_pick(&eps, client(50_000), vip.address, proto);
        let SocketAddr::V4(want) = want else {
            unreachable!()
        };
        assert_eq!(addr(ip, 16), *want.ip());
        assert_eq!(be16(ip, IP_LEN + 2), want.port());
        assert_eq!(addr(ip, 12), *client(50_000).ip(), "client address kept");
        assert!(checksums_valid(ip), "proto {proto}: checksums after DNAT");

        // The endpoint's reply comes back with the VIP as its source.
        let reply = frame(want, client(50_000), proto, b"reply");
        let (verdict, out) = run(&lb, &reply);
        assert_eq!(verdict, XDP_PASS);
        let ip = &out[ETH_IP..];
        assert_eq!(addr(ip, 12), *vip.address.ip());
        assert_eq!(be16(ip, IP_LEN), vip.address.port());
        assert!(
            checksums_valid(ip),
            "proto {proto}: checksums after reverse DNAT"
        );
    }
}

#[test]
fn traffic_the_balancer_does_not_own_passes_untouched() {
    let eps = endpoints(&["10.1.0.1:8080"]);
    let Some(lb) = balancer("traffic_not_owned_passes", Forwarding::Ipip, &eps) else {
        return;
    };
    let hit = frame(client(1234), vip(Protocol::Tcp).address, IPPROTO_TCP, b"x");
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    cases.push((
        "other port",
        frame(
            client(1234),
            "10.0.0.100:81".parse().unwrap(),
            IPPROTO_TCP,
            b"x",
        ),
    ));
    cases.push((
        "other address",
        frame(
            client(1234),
            "10.0.0.101:80".parse().unwrap(),
            IPPROTO_TCP,
            b"x",
        ),
    ));
    let mut arp = hit.clone();
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    cases.push(("ARP", arp));
    let mut v6 = hit.clone();
    v6[12..14].copy_from_slice(&[0x86, 0xdd]);
    cases.push(("IPv6", v6));
    let mut more_fragments = hit.clone();
    edit_ip(&mut more_fragments, |ip| ip[6] = 0x20);
    cases.push(("first fragment", more_fragments));
    let mut later_fragment = hit.clone();
    edit_ip(&mut later_fragment, |ip| ip[7] = 0x10);
    cases.push(("later fragment", later_fragment));
    let mut options = hit.clone();
    edit_ip(&mut options, |ip| ip[0] = 0x46);
    cases.push(("IP options", options));
    let mut icmp = hit.clone();
    edit_ip(&mut icmp, |ip| ip[9] = 1);
    cases.push(("ICMP", icmp));
    for cut in [0, 1, 13, 14, 20, 33, 34, 35, 37] {
        cases.push(("truncated", hit[..cut].to_vec()));
    }
    for (what, input) in cases {
        if input.len() < 14 {
            // The kernel refuses test frames shorter than an Ethernet header.
            continue;
        }
        let (verdict, out) = run(&lb, &input);
        assert_eq!(verdict, XDP_PASS, "{what} ({} bytes)", input.len());
        assert_eq!(out, input, "{what}: unchanged");
    }
    // A TCP header cut short still has its ports: IP-in-IP needs no more, so it is balanced.
    let (verdict, _) = run(&lb, &hit[..42]);
    assert_eq!(verdict, XDP_TX);
    assert_eq!(run(&lb, &hit).0, XDP_TX, "the whole frame is a hit");
    let _ = XDP_DROP;
}

#[test]
fn established_flows_keep_their_endpoint_and_down_endpoints_get_no_new_flows() {
    let mut eps = endpoints(&["10.1.0.1:8080", "10.1.0.2:8080", "10.1.0.3:8080"]);
    let Some(mut lb) = balancer(
        "established_flows_keep_their_endpoint",
        Forwarding::Ipip,
        &eps,
    ) else {
        return;
    };
    let vip = vip(Protocol::Tcp);
    let flows: Vec<u16> = (30_000..30_400).collect();
    let before: Vec<Ipv4Addr> = flows
        .iter()
        .map(|&p| {
            let input = frame(client(p), vip.address, IPPROTO_TCP, b"");
            let (v, out) = run(&lb, &input);
            ipip_target(&input, v, &out)
        })
        .collect();

    // A fourth endpoint takes about a quarter of the table: new flows follow the new table,
    // established ones stay.
    eps.push(Arc::new(Endpoint::new("10.1.0.4:8080".parse().unwrap(), 1)));
    lb.set_vip(vip, Forwarding::Ipip, &eps, &TABLE, 50).unwrap();
    let mut moved_in_table = 0;
    for (&p, &was) in flows.iter().zip(&before) {
        let input = frame(client(p), vip.address, IPPROTO_TCP, b"");
        let (v, out) = run(&lb, &input);
        assert_eq!(
            ipip_target(&input, v, &out),
            was,
            "flow {p} kept its endpoint"
        );
        if userspace_pick(&eps, client(p), vip.address, IPPROTO_TCP)
            != SocketAddr::from((was, 8080))
        {
            moved_in_table += 1;
        }
    }
    assert!(
        moved_in_table > 40,
        "the new table moved flows: {moved_in_table}"
    );
    for p in 31_000..31_200 {
        let input = frame(client(p), vip.address, IPPROTO_TCP, b"");
        let (v, out) = run(&lb, &input);
        let want = userspace_pick(&eps, client(p), vip.address, IPPROTO_TCP);
        assert_eq!(SocketAddr::from((ipip_target(&input, v, &out), 8080)), want);
    }

    // An endpoint marked down gets no new flows; the kernel agrees with userspace Maglev.
    eps[1].state.set_healthy(false, 0);
    // One entry rewritten per VIP listing it (the TCP and the UDP VIP).
    assert_eq!(lb.refresh_health().unwrap(), 2, "one update per VIP");
    for p in 32_000..32_300 {
        let input = frame(client(p), vip.address, IPPROTO_TCP, b"");
        let (v, out) = run(&lb, &input);
        let target = ipip_target(&input, v, &out);
        assert_ne!(
            target,
            Ipv4Addr::new(10, 1, 0, 2),
            "flow {p} sent to a down endpoint"
        );
        let want = userspace_pick(&eps, client(p), vip.address, IPPROTO_TCP);
        assert_eq!(SocketAddr::from((target, 8080)), want);
    }

    // A removed endpoint's flows are forgotten and re-balanced.
    let on_first: Vec<u16> = flows
        .iter()
        .zip(&before)
        .filter(|(_, a)| **a == Ipv4Addr::new(10, 1, 0, 1))
        .map(|(p, _)| *p)
        .collect();
    assert!(!on_first.is_empty());
    let remaining: Vec<_> = eps[1..].to_vec();
    lb.set_vip(vip, Forwarding::Ipip, &remaining, &TABLE, 50)
        .unwrap();
    for p in on_first {
        let input = frame(client(p), vip.address, IPPROTO_TCP, b"");
        let (v, out) = run(&lb, &input);
        let target = ipip_target(&input, v, &out);
        assert_ne!(
            target,
            Ipv4Addr::new(10, 1, 0, 1),
            "flow {p} still on a removed endpoint"
        );
    }
}

#[test]
fn a_down_endpoint_keeps_established_flows_but_not_new_connections() {
    let eps = endpoints(&["10.1.0.1:8080", "10.1.0.2:8080", "10.1.0.3:8080"]);
    let Some(mut lb) = balancer(
        "a_down_endpoint_keeps_established_flows",
        Forwarding::Ipip,
        &eps,
    ) else {
        return;
    };
    let vip = vip(Protocol::Tcp);
    let syn = frame(client(45_000), vip.address, IPPROTO_TCP, b"");
    let (v, out) = run(&lb, &syn);
    let first = ipip_target(&syn, v, &out);
    let down = eps
        .iter()
        .position(|e| e.address == SocketAddr::from((first, 8080)))
        .unwrap();
    eps[down].state.set_healthy(false, 0);
    lb.refresh_health().unwrap();
    // The flow's next segment (ACK) stays on its endpoint ...
    let mut ack = syn.clone();
    ack[ETH_IP + IP_LEN + 13] = 0x10;
    let (v, out) = run(&lb, &ack);
    assert_eq!(ipip_target(&ack, v, &out), first, "established flow kept");
    // ... but a new connection reusing the 5-tuple (a SYN) is balanced afresh.
    let (v, out) = run(&lb, &syn);
    let again = ipip_target(&syn, v, &out);
    assert_ne!(again, first, "a new connection sent to a down endpoint");
    let want = userspace_pick(&eps, client(45_000), vip.address, IPPROTO_TCP);
    assert_eq!(SocketAddr::from((again, 8080)), want);
    // And the connection table now holds the new choice.
    let (v, out) = run(&lb, &ack);
    assert_eq!(ipip_target(&ack, v, &out), again);
}

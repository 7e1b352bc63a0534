//! The FIB forwarding path under `BPF_PROG_TEST_RUN`, inside a network namespace the test
//! owns (a test run's ingress interface is that namespace's loopback): with a neighbour entry
//! the program rewrites the Ethernet addresses, decrements the TTL and redirects to the egress
//! veth; without one, with an expiring TTL, without a route or with forwarding off it passes
//! the (translated) packet to the kernel and counts why; the kernel path passes everything.

use std::net::SocketAddrV4;
use std::process::Command;

use weir_ebpf::{
    ForwardOutcome, Forwarding, ForwardingPath, IPPROTO_TCP, IPPROTO_UDP, Limits, Protocol,
    XdpBalancer,
};
use weir_test_support::netns::{Netns, veth};

use crate::packet::{ETH_IP, IP_LEN, addr, be16, checksums_valid, edit_ip, frame};
use crate::privileged;
use crate::test_run::{LOCAL, TABLE, XDP_PASS, client, endpoints, run, vip};

const XDP_REDIRECT: u32 = 4;
const NEIGHBOUR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x31];
const CLIENT_NEIGHBOUR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x32];

/// The MAC address of `dev` in `ns`, from `ip -br link`.
fn mac_of(ns: &Netns, dev: &str) -> [u8; 6] {
    let out = Command::new("ip")
        .args(["-n", ns.name(), "-br", "link", "show", dev])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = text.split_whitespace().nth(2).unwrap();
    weir_config::parse_mac(field).expect("a MAC address in `ip -br link`")
}

/// The packets counted per outcome label.
fn counted(lb: &XdpBalancer, label: &str) -> u64 {
    lb.forward_counters()
        .unwrap()
        .into_iter()
        .find(|(_, l, _)| *l == label)
        .unwrap()
        .2
}

#[test]
fn fib_path_redirects_with_a_neighbour_and_falls_back_to_the_kernel_otherwise() {
    let test = "fib_path_redirects_with_a_neighbour";
    if !privileged::allowed(test) {
        return;
    }
    let pid = std::process::id();
    let lb_ns = Netns::new(&format!("wfib-lb-{pid}"));
    let ep_ns = Netns::new(&format!("wfib-ep-{pid}"));
    veth(
        &lb_ns,
        "to-ep",
        "10.1.0.254/24",
        &ep_ns,
        "eth0",
        "10.1.0.1/24",
    );
    lb_ns.sysctl("net.ipv4.ip_forward", "1");
    let egress_mac = mac_of(&lb_ns, "to-ep");

    let mut lb = XdpBalancer::load(Limits {
        max_vips: 8,
        max_endpoints: 64,
        ring_capacity: 1_009,
        conntrack_entries: 4_096,
    })
    .expect("load the XDP object");
    lb.set_local(LOCAL, None, ForwardingPath::Fib).unwrap();
    let eps = endpoints(&["10.1.0.1:8080"]);
    for proto in [Protocol::Tcp, Protocol::Udp] {
        lb.set_vip(vip(proto), Forwarding::Dnat, &eps, &TABLE, 50)
            .unwrap();
    }
    let endpoint: SocketAddrV4 = "10.1.0.1:8080".parse().unwrap();
    // Test runs use the calling thread's namespace: run them from inside the balancer's.
    let (lb, lb_ns) = std::thread::spawn(move || {
        lb_ns.enter();
        let dnat_checked = |out: &[u8], ttl: u8, proto: u8| {
            let ip = &out[ETH_IP..];
            assert_eq!(addr(ip, 16), *endpoint.ip(), "destination rewritten");
            assert_eq!(be16(ip, IP_LEN + 2), endpoint.port());
            assert_eq!(ip[8], ttl, "TTL");
            assert!(checksums_valid(ip), "checksums (proto {proto})");
        };
        let udp = vip(Protocol::Udp).address;
        // No neighbour entry yet: the kernel forwards it (and resolves the neighbour).
        let input = frame(client(40_000), udp, IPPROTO_UDP, b"first");
        let (verdict, out) = run(&lb, &input);
        assert_eq!(verdict, XDP_PASS, "no neighbour yet");
        dnat_checked(&out, 64, IPPROTO_UDP);
        assert_eq!(counted(&lb, "no_neighbour"), 1);

        // With the neighbour known, the program forwards the frame itself.
        lb_ns.ip(&[
            "neigh",
            "replace",
            "10.1.0.1",
            "lladdr",
            "02:00:00:00:00:31",
            "dev",
            "to-ep",
            "nud",
            "permanent",
        ]);
        for (proto, vip) in [
            (IPPROTO_UDP, udp),
            (IPPROTO_TCP, vip(Protocol::Tcp).address),
        ] {
            let input = frame(client(40_001), vip, proto, b"fast path");
            let (verdict, out) = run(&lb, &input);
            assert_eq!(verdict, XDP_REDIRECT, "redirected to the egress veth");
            assert_eq!(&out[..6], &NEIGHBOUR_MAC, "to the neighbour");
            assert_eq!(&out[6..12], &egress_mac, "from the egress interface");
            dnat_checked(&out, 63, proto);
        }
        assert_eq!(counted(&lb, "redirect"), 2);

        // A TTL that would expire: the kernel sends the ICMP error.
        let mut input = frame(client(40_002), udp, IPPROTO_UDP, b"ttl");
        edit_ip(&mut input, |ip| ip[8] = 1);
        let (verdict, out) = run(&lb, &input);
        assert_eq!(verdict, XDP_PASS, "TTL 1 goes to the kernel");
        dnat_checked(&out, 1, IPPROTO_UDP);
        assert_eq!(counted(&lb, "ttl"), 1);

        // The endpoint's reply: translated back, then sent to the client by the FIB.
        let reply = frame(endpoint, client(40_001), IPPROTO_UDP, b"reply");
        let (verdict, out) = run(&lb, &reply);
        assert_eq!(verdict, XDP_PASS, "no route to the client");
        assert_eq!(
            addr(&out[ETH_IP..], 12),
            *udp.ip(),
            "source back to the VIP"
        );
        assert_eq!(counted(&lb, "no_route"), 1);
        lb_ns.ip(&["route", "add", "192.0.2.0/24", "dev", "to-ep"]);
        lb_ns.ip(&[
            "neigh",
            "replace",
            "192.0.2.7",
            "lladdr",
            "02:00:00:00:00:32",
            "dev",
            "to-ep",
            "nud",
            "permanent",
        ]);
        let (verdict, out) = run(&lb, &reply);
        assert_eq!(verdict, XDP_REDIRECT, "reply forwarded by the program");
        assert_eq!(&out[..6], &CLIENT_NEIGHBOUR_MAC);
        let ip = &out[ETH_IP..];
        assert_eq!((addr(ip, 12), be16(ip, IP_LEN)), (*udp.ip(), udp.port()));
        assert!(checksums_valid(ip), "reply checksums");

        // Forwarding off: the kernel decides (and drops).
        lb_ns.sysctl("net.ipv4.ip_forward", "0");
        let input = frame(client(40_003), udp, IPPROTO_UDP, b"off");
        assert_eq!(run(&lb, &input).0, XDP_PASS);
        assert_eq!(counted(&lb, "forwarding_disabled"), 1);
        (lb, lb_ns)
    })
    .join()
    .expect("FIB checks in the balancer namespace");

    let mut lb = lb;
    let fallbacks: u64 = lb
        .forward_counters()
        .unwrap()
        .iter()
        .filter(|(o, ..)| *o == ForwardOutcome::Fallback)
        .map(|(.., n)| n)
        .sum();
    assert_eq!(
        fallbacks, 4,
        "no_neighbour, ttl, no_route, forwarding_disabled"
    );

    // forwarding_path: kernel hands every balanced packet to the kernel untouched otherwise.
    lb.set_local(LOCAL, None, ForwardingPath::Kernel).unwrap();
    let input = frame(
        client(40_004),
        vip(Protocol::Udp).address,
        IPPROTO_UDP,
        b"k",
    );
    let (verdict, out) = run(&lb, &input);
    assert_eq!(verdict, XDP_PASS);
    assert_eq!(out[ETH_IP + 8], 64, "TTL left to the kernel");
    assert_eq!(counted(&lb, "kernel"), 1);
    drop((ep_ns, lb_ns));
}

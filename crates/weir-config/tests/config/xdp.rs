//! `protocol: xdp` and `protocol: nftables` listeners: the kernel data planes' VIPs, interfaces and
//! forwarding.

use std::net::SocketAddr;

use weir_config::{KernelTransport, ListenerProtocol, XdpForwarding, XdpForwardingPath, parse_mac};

use crate::common::{assert_error, load_ok};

const CLUSTER: [&str; 2] = [
    "clusters:",
    "  - { name: c, endpoints: [ 10.1.0.1:8080, 10.1.0.2:8080 ] }",
];

/// `listener` (from line 2 on) after `listeners:`, then cluster `c`.
fn with_listener(listener: &[&'static str]) -> Vec<&'static str> {
    let mut lines = vec!["listeners:"];
    lines.extend_from_slice(listener);
    lines.extend_from_slice(&CLUSTER);
    lines
}

#[test]
fn xdp_listeners_load_with_defaults_and_options() {
    let config = load_ok(&with_listener(&[
        "  - name: fast",
        "    protocol: xdp",
        "    address: 10.0.0.100:80",
        "    cluster: c",
        "    xdp: { interfaces: [eth0], local_address: 10.0.0.2 }",
        "  - name: dns",
        "    protocol: xdp",
        "    address: 10.0.0.100:53",
        "    cluster: c",
        "    xdp:",
        "      interfaces: [eth0, eth1]",
        "      vips: [ \"10.0.0.101:53\" ]",
        "      transport: udp",
        "      forwarding: dnat",
        "      local_address: 10.0.0.2",
    ]));
    let l = &config.config().listeners;
    assert_eq!(l[0].protocol, ListenerProtocol::Xdp);
    let x = l[0].xdp.as_ref().unwrap();
    assert_eq!(
        (x.transport, x.forwarding),
        (KernelTransport::Tcp, XdpForwarding::Ipip)
    );
    let y = l[1].xdp.as_ref().unwrap();
    assert_eq!(
        (y.transport, y.forwarding),
        (KernelTransport::Udp, XdpForwarding::Dnat)
    );
    assert_eq!(y.vips, vec!["10.0.0.101:53".parse::<SocketAddr>().unwrap()]);
    assert_eq!(
        (x.forwarding_path, y.forwarding_path),
        (XdpForwardingPath::Fib, XdpForwardingPath::Fib),
        "the program forwards through the FIB by default"
    );
    assert_eq!(
        parse_mac("02:42:ac:11:00:01"),
        Some([2, 0x42, 0xac, 0x11, 0, 1])
    );
    assert_eq!(parse_mac("02:42:ac:11:00"), None);
}

#[test]
fn xdp_listener_needs_its_block_a_cluster_and_ipv4_vips() {
    assert_error(
        &with_listener(&["  - { name: f, protocol: xdp, address: 10.0.0.100:80, cluster: c }"]),
        "listeners[0]",
        2,
        "needs an `xdp` block",
        "interfaces: [eth0]",
    );
    assert_error(
        &with_listener(&[
            "  - name: f",
            "    protocol: xdp",
            "    address: 10.0.0.100:80",
            "    xdp: { interfaces: [eth0], local_address: 10.0.0.2 }",
        ]),
        "listeners[0]",
        2,
        "a `xdp` listener needs a `cluster`",
        "cluster: <name>",
    );
    assert_error(
        &with_listener(&[
            "  - name: f",
            "    protocol: xdp",
            "    address: \"[::1]:80\"",
            "    cluster: c",
            "    xdp: { interfaces: [eth0], local_address: 10.0.0.2 }",
        ]),
        "listeners[0].address",
        4,
        "must be an IPv4 address with a port",
        "IPv4 VIPs",
    );
    assert_error(
        &with_listener(&[
            "  - name: f",
            "    protocol: xdp",
            "    address: 10.0.0.100:80",
            "    cluster: c",
            "    xdp:",
            "      interfaces: []",
            "      local_address: 10.0.0.2",
        ]),
        "listeners[0].xdp.interfaces",
        7,
        "interfaces is empty",
        "eth0",
    );
}

#[test]
fn ipip_needs_a_local_address_and_settings_are_shared() {
    assert_error(
        &with_listener(&[
            "  - name: f",
            "    protocol: xdp",
            "    address: 10.0.0.100:80",
            "    cluster: c",
            "    xdp:",
            "      interfaces: [eth0]",
        ]),
        "listeners[0].xdp.local_address",
        6,
        "`forwarding: ipip` needs a local_address",
        "local_address:",
    );
    assert_error(
        &with_listener(&[
            "  - name: f",
            "    protocol: xdp",
            "    address: 10.0.0.100:80",
            "    cluster: c",
            "    xdp:",
            "      interfaces: [eth0]",
            "      forwarding: dnat",
            "      gateway_mac: nope",
        ]),
        "listeners[0].xdp.gateway_mac",
        9,
        "\"nope\" is not a MAC address",
        "six hex bytes",
    );
    assert_error(
        &with_listener(&[
            "  - { name: a, protocol: xdp, address: 10.0.0.100:80, cluster: c, xdp: { interfaces: [eth0], local_address: 10.0.0.2 } }",
            "  - { name: b, protocol: xdp, address: 10.0.0.100:81, cluster: c, xdp: { interfaces: [eth0], local_address: 10.0.0.3 } }",
        ]),
        "listeners[1].xdp",
        3,
        "differ from listeners[0]'s",
        "same local_address",
    );
    assert_error(
        &with_listener(&[
            "  - { name: a, protocol: xdp, address: 10.0.0.100:80, cluster: c, xdp: { interfaces: [eth0], forwarding: dnat } }",
            "  - { name: b, protocol: xdp, address: 10.0.0.100:81, cluster: c, xdp: { interfaces: [eth0], forwarding: dnat, forwarding_path: kernel } }",
        ]),
        "listeners[1].xdp",
        3,
        "forwarding_path differ from listeners[0]'s",
        "same local_address, gateway_mac and forwarding_path",
    );
    assert_error(
        &with_listener(&[
            "  - { name: a, protocol: xdp, address: 10.0.0.100:80, cluster: c, xdp: { interfaces: [eth0], local_address: 10.0.0.2 } }",
            "  - { name: b, protocol: xdp, address: 10.0.0.101:80, cluster: c, xdp: { interfaces: [eth0], local_address: 10.0.0.2, vips: [ \"10.0.0.100:80\" ] } }",
        ]),
        "listeners[1].xdp.vips[0]",
        3,
        "already balanced by listeners[0]",
        "one listener",
    );
}

#[test]
fn xdp_forwarding_path_kernel_is_accepted_and_unknown_paths_rejected() {
    let config = load_ok(&with_listener(&[
        "  - name: fast",
        "    protocol: xdp",
        "    address: 10.0.0.100:80",
        "    cluster: c",
        "    xdp: { interfaces: [eth0], forwarding: dnat, forwarding_path: kernel }",
    ]));
    let x = config.config().listeners[0].xdp.as_ref().unwrap();
    assert_eq!(x.forwarding_path, XdpForwardingPath::Kernel);
    assert_error(
        &with_listener(&[
            "  - name: fast",
            "    protocol: xdp",
            "    address: 10.0.0.100:80",
            "    cluster: c",
            "    xdp:",
            "      interfaces: [eth0]",
            "      forwarding: dnat",
            "      forwarding_path: redirect",
        ]),
        "listeners[0].xdp.forwarding_path",
        9,
        "unknown value `redirect`",
        "fib, kernel",
    );
}

#[test]
fn xdp_block_belongs_to_xdp_listeners_only() {
    assert_error(
        &with_listener(&[
            "  - name: t",
            "    protocol: tcp",
            "    address: 127.0.0.1:7000",
            "    cluster: c",
            "    xdp: { interfaces: [eth0] }",
        ]),
        "listeners[0].xdp",
        6,
        "`xdp` only applies to an `xdp` listener",
        "protocol: xdp",
    );
    assert_error(
        &with_listener(&[
            "  - name: f",
            "    protocol: xdp",
            "    address: 10.0.0.100:80",
            "    cluster: c",
            "    routes: [ { cluster: c } ]",
            "    xdp: { interfaces: [eth0], local_address: 10.0.0.2 }",
        ]),
        "listeners[0].routes",
        6,
        "`routes` does not apply to a `xdp` listener",
        "xdp listeners use `cluster` and `xdp` options",
    );
}

#[test]
fn nftables_listeners_load_and_check_their_vips() {
    let config = load_ok(&with_listener(&[
        "  - { name: n, protocol: nftables, address: 10.0.0.100:80, cluster: c }",
        "  - name: m",
        "    protocol: nftables",
        "    address: 10.0.0.100:53",
        "    cluster: c",
        "    nftables: { vips: [ \"10.0.0.101:53\" ], transport: udp }",
    ]));
    let l = &config.config().listeners;
    assert_eq!(l[0].protocol, ListenerProtocol::Nftables);
    assert_eq!(l[0].nftables, None);
    assert_eq!(
        l[1].nftables.as_ref().unwrap().transport,
        KernelTransport::Udp
    );
    assert_error(
        &with_listener(&[
            "  - { name: n, protocol: nftables, address: 10.0.0.100:80, cluster: c }",
            "  - { name: m, protocol: nftables, address: 10.0.0.100:80, cluster: c }",
        ]),
        "listeners[1].address",
        3,
        "already balanced by listeners[0]",
        "one listener",
    );
    assert_error(
        &with_listener(&[
            "  - name: t",
            "    protocol: tcp",
            "    address: 127.0.0.1:7000",
            "    cluster: c",
            "    nftables: {}",
        ]),
        "listeners[0].nftables",
        6,
        "`nftables` only applies to an `nftables` listener",
        "protocol: nftables",
    );
}

//! Rules for `xdp` listeners: interfaces to attach to, IPv4 VIPs, what each forwarding mode
//! needs, and the settings the one kernel program shares across listeners.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use super::Checker;
use crate::path::YamlPath;
use crate::{Config, ListenerProtocol, XdpForwarding, XdpForwardingPath, parse_mac};

/// The settings every `xdp` listener must agree on: `local_address`, `gateway_mac`,
/// `forwarding_path`.
type Shared = (Option<IpAddr>, Option<String>, XdpForwardingPath);

/// Longest interface name Linux accepts (IFNAMSIZ − 1).
const MAX_INTERFACE_NAME: usize = 15;

// === impl Checker ===

impl Checker<'_> {
    /// Checks every listener's `xdp` block, and that `xdp` listeners agree on shared settings.
    pub(super) fn xdp_listeners(&mut self, config: &Config) {
        let mut shared: Option<(Shared, usize)> = None;
        let mut vips: HashMap<(SocketAddr, crate::KernelTransport), usize> = HashMap::new();
        let mut nft_vips: HashMap<(SocketAddr, crate::KernelTransport), usize> = HashMap::new();
        for (i, listener) in config.listeners.iter().enumerate() {
            let path = YamlPath::root().key("listeners").index(i);
            if listener.nftables.is_some() && listener.protocol != ListenerProtocol::Nftables {
                self.report(
                    &path.key("nftables"),
                    "`nftables` only applies to an `nftables` listener",
                    "set `protocol: nftables` or remove the key",
                );
            }
            if listener.protocol == ListenerProtocol::Nftables {
                let block = listener.nftables.clone().unwrap_or_default();
                let vips = std::iter::once((listener.address, path.key("address"))).chain(
                    block
                        .vips
                        .iter()
                        .enumerate()
                        .map(|(j, v)| (*v, path.key("nftables").key("vips").index(j))),
                );
                for (vip, at) in vips {
                    self.kernel_vip(vip, at, block.transport, i, &mut nft_vips);
                }
                continue;
            }
            if listener.protocol != ListenerProtocol::Xdp {
                if listener.xdp.is_some() {
                    self.report(
                        &path.key("xdp"),
                        "`xdp` only applies to an `xdp` listener",
                        "set `protocol: xdp` or remove the key",
                    );
                }
                continue;
            }
            let Some(xdp) = &listener.xdp else {
                self.report(
                    &path,
                    "an `xdp` listener needs an `xdp` block naming its interfaces",
                    "add `xdp: { interfaces: [eth0], local_address: 10.0.0.2 }`",
                );
                continue;
            };
            let p = path.key("xdp");
            if xdp.interfaces.is_empty() {
                self.report(
                    &p.key("interfaces"),
                    "interfaces is empty",
                    "name the interfaces the VIPs' packets arrive on, e.g. [eth0]",
                );
            }
            for (j, name) in xdp.interfaces.iter().enumerate() {
                if name.is_empty()
                    || name.len() > MAX_INTERFACE_NAME
                    || name.chars().any(|c| c == '/' || c.is_whitespace())
                {
                    self.report(
                        &p.key("interfaces").index(j),
                        format!("{name:?} is not an interface name"),
                        "use a name `ip link` shows (at most 15 characters)",
                    );
                }
            }
            let all_vips = std::iter::once((listener.address, path.key("address"))).chain(
                xdp.vips
                    .iter()
                    .enumerate()
                    .map(|(j, v)| (*v, p.key("vips").index(j))),
            );
            for (vip, at) in all_vips {
                self.kernel_vip(vip, at, xdp.transport, i, &mut vips);
            }
            match xdp.local_address {
                Some(IpAddr::V4(a)) if !a.is_unspecified() => {}
                Some(other) => self.report(
                    &p.key("local_address"),
                    format!("local_address {other} must be a specific IPv4 address"),
                    "give the balancer's own IPv4 address on the interface",
                ),
                None if xdp.forwarding == XdpForwarding::Ipip => self.report(
                    &p.key("local_address"),
                    "`forwarding: ipip` needs a local_address (the outer source address)",
                    "add `local_address: <the balancer's IPv4 address>`",
                ),
                None => {}
            }
            if let Some(mac) = &xdp.gateway_mac
                && parse_mac(mac).is_none()
            {
                self.report(
                    &p.key("gateway_mac"),
                    format!("{mac:?} is not a MAC address"),
                    "write six hex bytes, e.g. 02:42:ac:11:00:01",
                );
            }
            let mine = (
                (
                    xdp.local_address,
                    xdp.gateway_mac.clone(),
                    xdp.forwarding_path,
                ),
                i,
            );
            match &shared {
                None => shared = Some(mine),
                Some((settings, first)) if settings != &mine.0 => self.report(
                    &p,
                    format!(
                        "local_address, gateway_mac or forwarding_path differ from \
                         listeners[{first}]'s; one kernel program serves every xdp listener"
                    ),
                    "give every xdp listener the same local_address, gateway_mac and \
                     forwarding_path",
                ),
                Some(_) => {}
            }
        }
    }

    /// A VIP must be IPv4 with a port, and belong to one listener of its kind.
    fn kernel_vip(
        &mut self,
        vip: SocketAddr,
        at: YamlPath,
        transport: crate::KernelTransport,
        listener: usize,
        seen: &mut HashMap<(SocketAddr, crate::KernelTransport), usize>,
    ) {
        if !vip.is_ipv4() || vip.ip().is_unspecified() || vip.port() == 0 {
            self.report(
                &at,
                format!("VIP {vip} must be an IPv4 address with a port"),
                "the kernel data planes handle IPv4 VIPs such as 10.0.0.100:80",
            );
        } else if let Some(other) = seen.insert((vip, transport), listener) {
            self.report(
                &at,
                format!("VIP {vip} is already balanced by listeners[{other}]"),
                "a VIP belongs to one listener",
            );
        }
    }
}

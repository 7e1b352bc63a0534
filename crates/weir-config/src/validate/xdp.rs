//! Rules for `xdp` listeners: interfaces to attach to, IPv4 VIPs, what each forwarding mode
//! needs, and the settings the one kernel program shares across listeners.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use super::Checker;
use crate::path::YamlPath;
use crate::{Config, ListenerProtocol, XdpForwarding, parse_mac};

/// Longest interface name Linux accepts (IFNAMSIZ − 1).
const MAX_INTERFACE_NAME: usize = 15;

// === impl Checker ===

impl Checker<'_> {
    /// Checks every listener's `xdp` block, and that `xdp` listeners agree on shared settings.
    pub(super) fn xdp_listeners(&mut self, config: &Config) {
        let mut shared: Option<(Option<IpAddr>, Option<String>, usize)> = None;
        let mut vips: HashMap<(SocketAddr, crate::XdpTransport), usize> = HashMap::new();
        for (i, listener) in config.listeners.iter().enumerate() {
            let path = YamlPath::root().key("listeners").index(i);
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
                if !vip.is_ipv4() || vip.ip().is_unspecified() || vip.port() == 0 {
                    self.report(
                        &at,
                        format!("VIP {vip} must be an IPv4 address with a port"),
                        "the XDP balancer handles IPv4 VIPs such as 10.0.0.100:80",
                    );
                } else if let Some(other) = vips.insert((vip, xdp.transport), i) {
                    self.report(
                        &at,
                        format!("VIP {vip} is already balanced by listeners[{other}]"),
                        "a VIP belongs to one xdp listener",
                    );
                }
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
            let mine = (xdp.local_address, xdp.gateway_mac.clone(), i);
            match &shared {
                None => shared = Some(mine),
                Some((local, mac, first)) if (local, mac) != (&mine.0, &mine.1) => self.report(
                    &p,
                    format!(
                        "local_address and gateway_mac differ from listeners[{first}]'s; one \
                         kernel program serves every xdp listener"
                    ),
                    "give every xdp listener the same local_address and gateway_mac",
                ),
                Some(_) => {}
            }
        }
    }
}

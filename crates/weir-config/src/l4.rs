//! Layer-4 listener options: TCP and UDP forwarding, TLS passthrough routes by SNI, and the
//! PROXY protocol (accepted from trusted peers, sent to endpoints).

use std::fmt;

use ipnet::IpNet;
use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::ConfigDuration;

/// Options of `tcp` and `tls_passthrough` listeners.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TcpOptionsConfig {
    /// A connection with no bytes moving in either direction for this long is closed. Default 1h.
    pub idle_timeout: ConfigDuration,
    /// Connections open at once on this listener; more are closed at accept. Default 10000.
    pub max_connections: u32,
    /// Endpoints tried when connecting fails, the first included. Default 3.
    pub connect_attempts: u32,
    /// Time allowed for a client's first bytes where weir must read them (TLS ClientHello,
    /// PROXY header). Default 5s.
    pub first_bytes_timeout: ConfigDuration,
    /// Move bytes with `splice(2)` through a pipe, never copying them into weir (Linux; other
    /// systems copy through a buffer). Default false: on loopback it measured slower than the
    /// buffered copy (docs/l4.md, Performance).
    pub zero_copy: bool,
}

/// Options of `udp` listeners.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct UdpOptionsConfig {
    /// Client sessions (source address and port) tracked at once; the least recently used is
    /// evicted beyond it. Default 10000.
    pub max_sessions: u32,
    /// A session with no datagram in either direction for this long is dropped. Default 60s.
    pub idle_timeout: ConfigDuration,
}

/// One TLS passthrough route: connections whose SNI matches go to `cluster`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SniRouteConfig {
    /// Server names: exact (`api.example.com`, case-insensitive) or `*.suffix`.
    pub server_names: Vec<String>,
    /// Target cluster.
    pub cluster: String,
}

/// Accepting the PROXY protocol (v1 or v2) on a listener.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptProxyProtocolConfig {
    /// Peers (CIDRs or addresses) that must send a PROXY header; the address in it replaces
    /// theirs. A PROXY header from any other peer closes the connection.
    pub trusted: CidrList,
}

/// A list of networks written as CIDRs (`10.0.0.0/8`) or single addresses (`127.0.0.1`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CidrList(pub Vec<IpNet>);

/// PROXY protocol version weir sends to a cluster's endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProxyProtocolVersion {
    /// The human-readable v1 line.
    V1,
    /// The binary v2 header.
    V2,
}

// === impl defaults ===

impl Default for TcpOptionsConfig {
    fn default() -> Self {
        Self {
            idle_timeout: ConfigDuration(std::time::Duration::from_secs(3600)),
            max_connections: 10_000,
            connect_attempts: 3,
            first_bytes_timeout: ConfigDuration(std::time::Duration::from_secs(5)),
            zero_copy: false,
        }
    }
}

impl Default for UdpOptionsConfig {
    fn default() -> Self {
        Self {
            max_sessions: 10_000,
            idle_timeout: ConfigDuration(std::time::Duration::from_secs(60)),
        }
    }
}

// === impl CidrList ===

impl CidrList {
    /// Whether `ip` is inside one of the networks.
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) compare as IPv4.
fn canonical(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
        v4 => v4,
    }
}

fn parse_net(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    text.parse::<std::net::IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("`{text}` is not a network; write a CIDR such as 10.0.0.0/8 or an address such as 127.0.0.1"))
}

impl<'de> Deserialize<'de> for CidrList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ListVisitor;

        impl<'de> Visitor<'de> for ListVisitor {
            type Value = CidrList;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of CIDRs such as [10.0.0.0/8, 127.0.0.1]")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<CidrList, A::Error> {
                let mut nets = Vec::new();
                while let Some(text) = seq.next_element::<String>()? {
                    nets.push(parse_net(&text).map_err(de::Error::custom)?);
                }
                Ok(CidrList(nets))
            }
        }

        deserializer.deserialize_seq(ListVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_and_plain_addresses() {
        let list = CidrList(vec![
            parse_net("10.0.0.0/8").unwrap(),
            parse_net("127.0.0.1").unwrap(),
        ]);
        assert!(list.contains("10.1.2.3".parse().unwrap()));
        assert!(list.contains("127.0.0.1".parse().unwrap()));
        assert!(
            list.contains("::ffff:10.9.9.9".parse().unwrap()),
            "mapped IPv4"
        );
        assert!(!list.contains("127.0.0.2".parse().unwrap()));
        assert!(parse_net("10.0.0.0/33").is_err());
        assert!(parse_net("nope").unwrap_err().contains("CIDR"));
        assert_eq!(
            parse_net("10.1.2.3/8").unwrap().to_string(),
            "10.0.0.0/8",
            "host bits are dropped"
        );
    }
}

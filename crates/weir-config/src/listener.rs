//! Listeners (where weir accepts traffic) and the admin endpoint.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::l4::{AcceptProxyProtocolConfig, SniRouteConfig, TcpOptionsConfig, UdpOptionsConfig};
use crate::{ConfigDuration, RouteConfig};

/// Where the admin API listens when `admin:` names no `address`: loopback only, on the port
/// Envoy's documentation uses for its admin interface.
pub const DEFAULT_ADMIN_ADDRESS: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9901);

/// The admin HTTP endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address to bind; [`DEFAULT_ADMIN_ADDRESS`] (loopback only) when not given.
    #[serde(
        default = "default_admin_address",
        deserialize_with = "crate::address::deserialize"
    )]
    pub address: SocketAddr,
    /// When set, requests that change state (drain, undrain) must carry
    /// `authorization: Bearer <token>`; reads stay open.
    #[serde(default)]
    pub token: Option<String>,
    /// What `GET /metrics` exports.
    #[serde(default)]
    pub metrics: AdminMetricsConfig,
}

/// Options of the admin API's Prometheus `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminMetricsConfig {
    /// Export per-endpoint series (requests, in-flight, health, ...); turn off for clusters
    /// with very many endpoints, where they would dominate the scrape. Default `true`.
    #[serde(default = "yes")]
    pub per_endpoint: bool,
}

fn default_admin_address() -> SocketAddr {
    DEFAULT_ADMIN_ADDRESS
}

impl Default for AdminMetricsConfig {
    fn default() -> Self {
        Self { per_endpoint: true }
    }
}

fn yes() -> bool {
    true
}

/// One bound address and what it speaks.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Unique name, used in logs and metrics.
    pub name: String,
    /// Address to bind, e.g. `0.0.0.0:8080`; port 0 picks a free port.
    #[serde(deserialize_with = "crate::address::deserialize")]
    pub address: SocketAddr,
    /// The protocol spoken downstream.
    #[serde(default)]
    pub protocol: ListenerProtocol,
    /// HTTP routes, first match wins (for `protocol: http`).
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// HTTP connection limits and options.
    #[serde(default)]
    pub http: HttpOptionsConfig,
    /// Target cluster of a `tcp` or `udp` listener.
    #[serde(default)]
    pub cluster: Option<String>,
    /// Routes of a `tls_passthrough` listener by SNI, first match wins.
    #[serde(default)]
    pub sni: Vec<SniRouteConfig>,
    /// Cluster for `tls_passthrough` connections that match no SNI route (or send no SNI).
    #[serde(default)]
    pub default_cluster: Option<String>,
    /// Options of `tcp` and `tls_passthrough` listeners.
    #[serde(default)]
    pub tcp: TcpOptionsConfig,
    /// Options of `udp` listeners.
    #[serde(default)]
    pub udp: UdpOptionsConfig,
    /// Accept the PROXY protocol from trusted peers (`tcp` and `tls_passthrough` listeners).
    #[serde(default)]
    pub proxy_protocol: Option<AcceptProxyProtocolConfig>,
    /// New connections per second (`tcp` and `tls_passthrough` listeners).
    #[serde(default)]
    pub rate_limit: Option<crate::ListenerRateLimitConfig>,
    /// Terminate TLS (`http` listeners): certificates, versions, client certificates.
    #[serde(default)]
    pub tls: Option<crate::ListenerTlsConfig>,
    /// The kernel data plane of an `xdp` listener: interfaces, more VIPs, forwarding.
    #[serde(default)]
    pub xdp: Option<crate::XdpListenerConfig>,
    /// More VIPs and the transport of an `nftables` listener.
    #[serde(default)]
    pub nftables: Option<crate::NftablesListenerConfig>,
}

/// Downstream protocol of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ListenerProtocol {
    /// HTTP/1.1 and HTTP/2 (prior knowledge, h2c) on the same port.
    #[default]
    Http,
    /// Raw TCP forwarded to `cluster`.
    Tcp,
    /// UDP datagrams relayed to `cluster`, one session per client address.
    Udp,
    /// TLS forwarded untouched, routed by the SNI of the ClientHello.
    TlsPassthrough,
    /// Packets to the VIP `address` (and `xdp.vips`) balanced in the kernel by an XDP program
    /// over `cluster` (docs/kernel.md); weir binds no socket for it.
    Xdp,
    /// Connections to the VIP `address` (and `nftables.vips`) DNAT'ed by netfilter through
    /// nftables maps over `cluster` (docs/kernel.md); weir binds no socket for it.
    Nftables,
}

/// Limits and options for HTTP listeners; the defaults protect the proxy.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpOptionsConfig {
    /// Time allowed to receive a request's headers (HTTP/1.1). Default 10s.
    pub header_read_timeout: ConfigDuration,
    /// Maximum total size of request headers in bytes. Default 65536.
    pub max_request_headers_bytes: u32,
    /// Maximum number of request header fields. Default 100.
    pub max_request_headers: u32,
    /// A connection with no request in flight for this long is closed. Default 60s.
    pub idle_timeout: ConfigDuration,
    /// A request or response body that moves no bytes for this long is aborted (slow-POST and
    /// stalled-endpoint protection; Envoy's `stream_idle_timeout`). Default 5m.
    pub stream_idle_timeout: ConfigDuration,
    /// HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS` advertised to clients. Default 100.
    pub max_concurrent_streams: u32,
    /// When set, weir adds `via: <protocol> <value>` to requests and responses.
    pub via: Option<String>,
    /// Whether weir appends the client address to `x-forwarded-for` and sets
    /// `x-forwarded-proto` on requests it forwards. Default true; false leaves both headers as
    /// the client sent them (HAProxy without `option forwardfor`, Envoy's `skip_xff_append`).
    pub x_forwarded: bool,
    /// Clients (CIDRs or addresses) whose `x-weir-debug: 1` request header is honoured: their
    /// response carries the decision record (`x-weir-decision`). Default empty: nobody. The
    /// header is stripped from every request, trusted or not, and never forwarded upstream.
    pub debug_trusted: crate::CidrList,
}

impl Default for HttpOptionsConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: ConfigDuration(std::time::Duration::from_secs(10)),
            max_request_headers_bytes: 64 * 1024,
            max_request_headers: 100,
            idle_timeout: ConfigDuration(std::time::Duration::from_secs(60)),
            stream_idle_timeout: ConfigDuration(std::time::Duration::from_secs(300)),
            max_concurrent_streams: 100,
            via: None,
            x_forwarded: true,
            debug_trusted: crate::CidrList::default(),
        }
    }
}

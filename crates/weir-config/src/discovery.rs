//! Service discovery of a cluster's endpoints, alongside its static list.
//!
//! A cluster may name one source that keeps its endpoint set current without a config reload:
//! DNS (A/AAAA with a fixed port, or SRV with ports and weights from the records, re-resolved
//! as the records' TTL says within configured bounds), etcd (one JSON value per endpoint under
//! a key prefix, listed then watched) or an endpoints file (polled for changes). The reference
//! is `docs/discovery.md`.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::ConfigDuration;

/// Where a cluster's endpoints come from besides `endpoints`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryConfig {
    /// Resolve endpoints from DNS.
    #[serde(default)]
    pub dns: Option<DnsDiscoveryConfig>,
    /// Read and watch endpoints under a key prefix in etcd (v3 API).
    #[serde(default)]
    pub etcd: Option<EtcdDiscoveryConfig>,
    /// Read endpoints from a file, again whenever its contents change.
    #[serde(default)]
    pub file: Option<FileDiscoveryConfig>,
}

/// etcd discovery: which cluster of etcd servers, which key prefix.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdDiscoveryConfig {
    /// etcd client URLs, e.g. `http://127.0.0.1:2379`; tried in turn (plain HTTP/2, no TLS).
    pub endpoints: Vec<String>,
    /// The key prefix; every key under it holds one endpoint as JSON
    /// (`{"address": "10.0.0.1:8080", "weight": 2, "metadata": {...}}`).
    pub prefix: String,
    /// How long connecting to one etcd server may take. Default 2s.
    #[serde(default = "default_etcd_connect_timeout")]
    pub connect_timeout: ConfigDuration,
    /// etcd user to authenticate as (with `password`); none means no authentication.
    #[serde(default)]
    pub username: Option<String>,
    /// The etcd user's password; redacted in `/config`.
    #[serde(default)]
    pub password: Option<String>,
}

/// File discovery: an endpoints file (YAML, or JSON which is YAML too) watched for changes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileDiscoveryConfig {
    /// The file; a relative path is resolved from the config file's directory.
    pub path: PathBuf,
    /// How often the file is read to look for a change. Default 1s.
    #[serde(default = "default_file_interval")]
    pub interval: ConfigDuration,
}

/// The contents of an endpoints file (file discovery): `endpoints:` in the form of a cluster's.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointsFile {
    /// The endpoints, each `ip:port` or `{ address, weight }`.
    pub endpoints: Vec<crate::EndpointConfig>,
}

/// DNS discovery: which name, which records, how often.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DnsDiscoveryConfig {
    /// The name to resolve, e.g. `api.internal` or `_http._tcp.api.internal` for SRV.
    pub name: String,
    /// Which records: `a`, `aaaa`, `a_aaaa` (both) or `srv`. Default `a_aaaa`.
    #[serde(default)]
    pub record: DnsRecordKind,
    /// The port of every address found (A/AAAA); SRV records carry their own.
    #[serde(default)]
    pub port: Option<u16>,
    /// Weight of every address found (A/AAAA); SRV records carry their own. Default 1.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Re-resolve no sooner than this, whatever the TTL. Default 1s.
    #[serde(default = "default_min_ttl")]
    pub min_ttl: ConfigDuration,
    /// Re-resolve at least this often, whatever the TTL. Default 300s.
    #[serde(default = "default_max_ttl")]
    pub max_ttl: ConfigDuration,
    /// Name servers to ask (`ip:port`); empty means the system's (`/etc/resolv.conf`).
    #[serde(default)]
    pub nameservers: Vec<SocketAddr>,
}

/// The DNS records a cluster is built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DnsRecordKind {
    /// IPv4 addresses.
    A,
    /// IPv6 addresses.
    Aaaa,
    /// IPv4 and IPv6 addresses (`a_aaaa`).
    #[default]
    #[serde(rename = "a_aaaa")]
    Both,
    /// Service records: a target, port and weight each (RFC 2782).
    Srv,
}

fn default_weight() -> u32 {
    1
}

fn default_min_ttl() -> ConfigDuration {
    ConfigDuration(std::time::Duration::from_secs(1))
}

fn default_max_ttl() -> ConfigDuration {
    ConfigDuration(std::time::Duration::from_secs(300))
}

fn default_etcd_connect_timeout() -> ConfigDuration {
    ConfigDuration(std::time::Duration::from_secs(2))
}

fn default_file_interval() -> ConfigDuration {
    ConfigDuration(std::time::Duration::from_secs(1))
}

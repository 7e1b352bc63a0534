//! Rules for a cluster's service discovery: exactly one source; for DNS a name that can be
//! resolved, a port where the records carry none, TTL bounds that make sense; for etcd
//! `http://` URLs, a non-empty prefix and a username with a password; for a file a path and
//! a positive interval.

use super::Checker;
use crate::path::YamlPath;
use crate::{
    ClusterConfig, DnsDiscoveryConfig, DnsRecordKind, EtcdDiscoveryConfig, FileDiscoveryConfig,
};

// === impl Checker ===

impl Checker<'_> {
    /// Checks `discovery` of `cluster` at `path`.
    pub(super) fn discovery(&mut self, cluster: &ClusterConfig, path: &YamlPath) {
        let Some(discovery) = &cluster.discovery else {
            return;
        };
        let path = path.key("discovery");
        let sources = [
            discovery.dns.is_some(),
            discovery.etcd.is_some(),
            discovery.file.is_some(),
        ];
        match sources.iter().filter(|&&s| s).count() {
            0 => self.report(
                &path,
                "discovery names no source",
                "add one of `dns: { name: ..., port: ... }`, `etcd: { endpoints: [...], prefix: ... }` \
                 or `file: { path: ... }`",
            ),
            1 => {}
            _ => self.report(
                &path,
                "discovery names more than one source",
                "keep one of `dns`, `etcd` and `file`; split the endpoints into two clusters \
                 and use weighted_clusters to send traffic to both",
            ),
        }
        if let Some(dns) = &discovery.dns {
            self.dns_discovery(dns, &path.key("dns"));
        }
        if let Some(etcd) = &discovery.etcd {
            self.etcd_discovery(etcd, &path.key("etcd"));
        }
        if let Some(file) = &discovery.file {
            self.file_discovery(file, &path.key("file"));
        }
    }

    fn etcd_discovery(&mut self, etcd: &EtcdDiscoveryConfig, path: &YamlPath) {
        if etcd.endpoints.is_empty() {
            self.report(
                &path.key("endpoints"),
                "no etcd endpoints",
                "list the etcd client URLs, e.g. `endpoints: [ http://127.0.0.1:2379 ]`",
            );
        }
        for (i, url) in etcd.endpoints.iter().enumerate() {
            let ok = url
                .strip_prefix("http://")
                .and_then(|rest| {
                    rest.split_once('/')
                        .map_or(Some(rest), |(h, p)| p.is_empty().then_some(h))
                })
                .and_then(|authority| authority.rsplit_once(':'))
                .is_some_and(|(host, port)| {
                    !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0)
                });
            if !ok {
                self.report(
                    &path.key("endpoints").index(i),
                    format!("{url:?} is not an etcd client URL weir can use"),
                    "give `http://host:port`, e.g. http://127.0.0.1:2379 (TLS to etcd is not supported)",
                );
            }
        }
        if etcd.prefix.is_empty() {
            self.report(
                &path.key("prefix"),
                "prefix is empty, which would read every key in etcd",
                "give the prefix the endpoints are stored under, e.g. /weir/clusters/api/",
            );
        }
        match (&etcd.username, &etcd.password) {
            (Some(_), None) => self.report(
                &path.key("username"),
                "username is set without a password",
                "add `password`, or remove `username` for an etcd without authentication",
            ),
            (None, Some(_)) => self.report(
                &path.key("password"),
                "password is set without a username",
                "add `username`, or remove `password` for an etcd without authentication",
            ),
            (Some(user), Some(_)) if user.is_empty() => self.report(
                &path.key("username"),
                "username is empty",
                "give the etcd user weir authenticates as",
            ),
            _ => {}
        }
        if etcd.connect_timeout.get().is_zero() {
            self.report(
                &path.key("connect_timeout"),
                "connect_timeout is 0; no connection could be made",
                "give a positive duration such as 2s",
            );
        }
    }

    fn file_discovery(&mut self, file: &FileDiscoveryConfig, path: &YamlPath) {
        if file.path.as_os_str().is_empty() {
            self.report(
                &path.key("path"),
                "path is empty",
                "give the endpoints file, e.g. endpoints/api.yaml (relative to the config file)",
            );
        }
        if file.interval.get().is_zero() {
            self.report(
                &path.key("interval"),
                "interval is 0; the file would be read in a busy loop",
                "give a positive duration such as 1s",
            );
        }
    }

    fn dns_discovery(&mut self, dns: &DnsDiscoveryConfig, path: &YamlPath) {
        let path = path.clone();
        let name = dns.name.trim_end_matches('.');
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
            self.report(
                &path.key("name"),
                format!("{:?} is not a DNS name", dns.name),
                "give a name such as api.internal (SRV: _http._tcp.api.internal)",
            );
        }
        match (dns.record, dns.port) {
            (DnsRecordKind::Srv, Some(_)) => self.report(
                &path.key("port"),
                "port is set but SRV records carry their own",
                "remove `port`, or use `record: a_aaaa` with it",
            ),
            (DnsRecordKind::Srv, None) => {}
            (_, None) => self.report(
                &path,
                "A/AAAA discovery needs a port",
                "add `port: 8080` (the port every address found listens on), or use `record: srv`",
            ),
            (_, Some(0)) => self.report(
                &path.key("port"),
                "port is 0",
                "give the port the endpoints listen on",
            ),
            (_, Some(_)) => {}
        }
        if dns.weight == 0 {
            self.report(
                &path.key("weight"),
                "weight is 0",
                "give a weight of 1 or more (the default is 1)",
            );
        }
        if dns.min_ttl.get().is_zero() {
            self.report(
                &path.key("min_ttl"),
                "min_ttl is 0; a 0-second TTL would resolve in a busy loop",
                "give a positive duration such as 1s",
            );
        }
        if dns.max_ttl.get() < dns.min_ttl.get() {
            self.report(
                &path.key("max_ttl"),
                format!("max_ttl {} is below min_ttl {}", dns.max_ttl, dns.min_ttl),
                "give a max_ttl at least as long as min_ttl",
            );
        }
    }
}

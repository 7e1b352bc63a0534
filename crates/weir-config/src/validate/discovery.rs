//! Rules for a cluster's service discovery: a name that can be resolved, a port where the
//! records carry none, TTL bounds that make sense.

use super::Checker;
use crate::path::YamlPath;
use crate::{ClusterConfig, DnsRecordKind};

// === impl Checker ===

impl Checker<'_> {
    /// Checks `discovery` of `cluster` at `path`.
    pub(super) fn discovery(&mut self, cluster: &ClusterConfig, path: &YamlPath) {
        let Some(discovery) = &cluster.discovery else {
            return;
        };
        let path = path.key("discovery");
        let Some(dns) = &discovery.dns else {
            self.report(
                &path,
                "discovery names no source",
                "add `dns: { name: ..., port: ... }`",
            );
            return;
        };
        let path = path.key("dns");
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

//! DNS discovery: resolve, report a changed set, wait until the answer expires, repeat.
//!
//! hickory's cache is turned off so that every re-resolution asks the name server: weir
//! schedules the next question itself for the moment the answer's TTL runs out (counted from
//! when the question was asked, so the time a lookup takes does not add up), bounded by
//! `min_ttl` and `max_ttl`. A change on the name server is therefore seen at most one TTL
//! later. An SRV answer gives targets, ports and weights; each target is then resolved to
//! its addresses (A and AAAA).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfig, NameServerConfigGroup, ResolverConfig,
};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::{ResolveError, TokioResolver};
use tokio_util::sync::CancellationToken;
use weir_config::{DnsDiscoveryConfig, DnsRecordKind, EndpointConfig};

use crate::Sink;

/// Resolves `cluster`'s `dns` source until `stop`, reporting each changed endpoint set.
pub(crate) async fn run(
    cluster: String,
    dns: DnsDiscoveryConfig,
    sink: Sink,
    stop: CancellationToken,
) {
    let resolver = match resolver(&dns) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(%cluster, name = %dns.name, error = %e, "DNS discovery cannot start: no resolver");
            return;
        }
    };
    let (min, max) = (dns.min_ttl.get(), dns.max_ttl.get());
    let mut last: Option<Vec<EndpointConfig>> = None;
    let mut failures = 0u32;
    loop {
        let asked = tokio::time::Instant::now();
        let wait = match resolve(&resolver, &dns).await {
            Ok((endpoints, ttl)) => {
                failures = 0;
                if last.as_ref() != Some(&endpoints) {
                    tracing::info!(
                        %cluster,
                        name = %dns.name,
                        endpoints = endpoints.len(),
                        "DNS discovery found a new endpoint set"
                    );
                    sink(&cluster, endpoints.clone());
                    last = Some(endpoints);
                }
                ttl.clamp(min, max)
            }
            Err(e) => {
                tracing::warn!(
                    %cluster,
                    name = %dns.name,
                    error = %e,
                    "DNS discovery failed; keeping the last good endpoint set"
                );
                // Retry sooner than a TTL, backing off: min, 2 × min, … up to max.
                let backoff = retry_after(failures, min, max);
                failures = failures.saturating_add(1);
                backoff
            }
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep_until(asked + wait) => {}
        }
    }
}

/// How long after a failed question to ask again, when `failures` questions had failed in a
/// row before it: `min`, then 2 × `min`, 4 × `min`, … up to `max`.
fn retry_after(failures: u32, min: Duration, max: Duration) -> Duration {
    min.saturating_mul(1 << failures.min(16)).min(max)
}

/// A resolver for `dns`: its name servers (system's when none), no cache.
fn resolver(dns: &DnsDiscoveryConfig) -> Result<TokioResolver, ResolveError> {
    let mut builder = if dns.nameservers.is_empty() {
        TokioResolver::builder_tokio()?
    } else {
        let servers: Vec<NameServerConfig> = dns
            .nameservers
            .iter()
            .flat_map(|&addr| {
                [
                    NameServerConfig::new(addr, Protocol::Udp),
                    NameServerConfig::new(addr, Protocol::Tcp),
                ]
            })
            .collect();
        let config = ResolverConfig::from_parts(None, vec![], NameServerConfigGroup::from(servers));
        TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
    };
    let opts = builder.options_mut();
    opts.cache_size = 0;
    opts.ip_strategy = match dns.record {
        DnsRecordKind::A => LookupIpStrategy::Ipv4Only,
        DnsRecordKind::Aaaa => LookupIpStrategy::Ipv6Only,
        DnsRecordKind::Both | DnsRecordKind::Srv => LookupIpStrategy::Ipv4AndIpv6,
    };
    Ok(builder.build())
}

/// Resolves `dns` once: the endpoints (sorted, one per address) and how long the answer is
/// valid, counted from when this call began.
pub(crate) async fn resolve(
    resolver: &TokioResolver,
    dns: &DnsDiscoveryConfig,
) -> Result<(Vec<EndpointConfig>, Duration), ResolveError> {
    let mut found: BTreeMap<SocketAddr, u32> = BTreeMap::new();
    let now = Instant::now();
    let valid_until = match (dns.record, dns.port) {
        (DnsRecordKind::Srv, _) => {
            let srv = resolver.srv_lookup(dns.name.as_str()).await?;
            let mut until = srv.as_lookup().valid_until();
            for record in srv.iter() {
                let ips = resolver.lookup_ip(record.target().clone()).await?;
                until = until.min(ips.valid_until());
                // SRV weight 0 means "rarely"; weir's weights run from 1 to 10000.
                let weight = u32::from(record.weight()).clamp(1, 10_000);
                for ip in ips.iter() {
                    let w = found.entry(SocketAddr::new(ip, record.port())).or_default();
                    *w = (*w).max(weight);
                }
            }
            until
        }
        (_, port) => {
            let ips = resolver.lookup_ip(dns.name.as_str()).await?;
            for ip in ips.iter() {
                found.insert(SocketAddr::new(ip, port.unwrap_or(0)), dns.weight);
            }
            ips.valid_until()
        }
    };
    let endpoints = found
        .into_iter()
        .map(|(address, weight)| EndpointConfig { address, weight })
        .collect();
    Ok((endpoints, valid_until.saturating_duration_since(now)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_retry_waits_min_ttl_then_backs_off_to_max_ttl() {
        let (min, max) = (Duration::from_secs(1), Duration::from_secs(30));
        let waits: Vec<u64> = (0..7).map(|n| retry_after(n, min, max).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(retry_after(u32::MAX, min, max), max);
    }
}

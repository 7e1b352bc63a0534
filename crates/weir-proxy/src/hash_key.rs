//! The request hash that consistent-hashing policies (ring hash, Maglev) pick by.
//!
//! A cluster's `hash_key` names what identifies "the same client" for affinity: a header, a
//! cookie, a query parameter, the path, the client IP or the connection's 5-tuple. The value
//! is hashed with XXH3 (fixed seed, so every weir instance maps a key to the same endpoint).
//! A request without the key gets no hash, and the policy picks at random (as Envoy does).

use std::net::SocketAddr;

use http::HeaderMap;
use http::header::{COOKIE, HeaderName};
use weir_config::HashKeyConfig;
use xxhash_rust::xxh3::xxh3_64;

/// A compiled `hash_key`.
#[derive(Debug, Clone)]
pub(crate) enum HashKey {
    Header(HeaderName),
    Cookie(String),
    Query(String),
    Path,
    SourceIp,
    FiveTuple,
}

/// The facts about a request or connection that a hash key may read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HashInput<'a> {
    pub(crate) headers: Option<&'a HeaderMap>,
    pub(crate) path: Option<&'a str>,
    pub(crate) query: Option<&'a str>,
    pub(crate) client: SocketAddr,
    pub(crate) local: SocketAddr,
}

// === impl HashKey ===

impl HashKey {
    /// Compiles the config; `None` when it names no key (validation prevents that).
    pub(crate) fn from_config(cfg: &HashKeyConfig) -> Option<Self> {
        if let Some(h) = &cfg.header {
            return HeaderName::from_bytes(h.as_bytes())
                .ok()
                .map(HashKey::Header);
        }
        if let Some(c) = &cfg.cookie {
            return Some(HashKey::Cookie(c.clone()));
        }
        if let Some(q) = &cfg.query {
            return Some(HashKey::Query(q.clone()));
        }
        match (cfg.path, cfg.source_ip, cfg.five_tuple) {
            (Some(true), _, _) => Some(HashKey::Path),
            (_, Some(true), _) => Some(HashKey::SourceIp),
            (_, _, Some(true)) => Some(HashKey::FiveTuple),
            _ => None,
        }
    }

    /// The hash of this key's value in `input`, or `None` when the value is absent.
    pub(crate) fn hash(&self, input: &HashInput<'_>) -> Option<u64> {
        match self {
            HashKey::Header(name) => {
                let v = input.headers?.get(name)?;
                Some(xxh3_64(v.as_bytes()))
            }
            HashKey::Cookie(name) => {
                let headers = input.headers?;
                headers
                    .get_all(COOKIE)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .flat_map(|v| v.split(';'))
                    .find_map(|pair| {
                        let (k, v) = pair.trim().split_once('=')?;
                        (k == name).then(|| xxh3_64(v.as_bytes()))
                    })
            }
            HashKey::Query(name) => {
                let q = input.query?;
                form_urlencoded::parse(q.as_bytes())
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| xxh3_64(v.as_bytes()))
            }
            HashKey::Path => input.path.map(|p| xxh3_64(p.as_bytes())),
            HashKey::SourceIp => Some(hash_ip(input.client.ip())),
            HashKey::FiveTuple => {
                // Addresses canonical and fixed-width, ports, then the transport: no allocation.
                let mut buf = [0u8; 16 + 2 + 16 + 2];
                buf[..16].copy_from_slice(&v6_octets(input.client.ip()));
                buf[16..18].copy_from_slice(&input.client.port().to_be_bytes());
                buf[18..34].copy_from_slice(&v6_octets(input.local.ip()));
                buf[34..].copy_from_slice(&input.local.port().to_be_bytes());
                Some(xxh3_64(&buf))
            }
        }
    }
}

/// Hashes an address so that an IPv4 client hashes alike whether it arrives over IPv4 or as
/// an IPv4-mapped IPv6 address on a dual-stack listener.
pub(crate) fn hash_ip(ip: std::net::IpAddr) -> u64 {
    match ip.to_canonical() {
        std::net::IpAddr::V4(v4) => xxh3_64(&v4.octets()),
        std::net::IpAddr::V6(v6) => xxh3_64(&v6.octets()),
    }
}

fn v6_octets(ip: std::net::IpAddr) -> [u8; 16] {
    match ip.to_canonical() {
        std::net::IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        std::net::IpAddr::V6(v6) => v6.octets(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> HashInput<'a> {
        HashInput {
            headers: Some(headers),
            path: Some("/a"),
            query,
            client: "10.0.0.1:5000".parse().unwrap(),
            local: "127.0.0.1:80".parse().unwrap(),
        }
    }

    #[test]
    fn same_value_same_hash_missing_value_none() {
        let mut h = HeaderMap::new();
        h.insert("x-user", "alice".parse().unwrap());
        h.insert("cookie", "a=1; session=s42; b=2".parse().unwrap());
        let header = HashKey::Header(HeaderName::from_static("x-user"));
        assert_eq!(header.hash(&input(&h, None)), Some(xxh3_64(b"alice")));
        assert_eq!(header.hash(&input(&HeaderMap::new(), None)), None);
        let cookie = HashKey::Cookie("session".into());
        assert_eq!(cookie.hash(&input(&h, None)), Some(xxh3_64(b"s42")));
        let query = HashKey::Query("u".into());
        assert_eq!(
            query.hash(&input(&h, Some("x=1&u=bob"))),
            Some(xxh3_64(b"bob"))
        );
        assert_eq!(query.hash(&input(&h, Some("x=1"))), None);
        assert_eq!(HashKey::Path.hash(&input(&h, None)), Some(xxh3_64(b"/a")));
    }

    #[test]
    fn source_ip_ignores_the_port_and_five_tuple_does_not() {
        let h = HeaderMap::new();
        let mut a = input(&h, None);
        let mut b = input(&h, None);
        b.client = "10.0.0.1:6000".parse().unwrap();
        assert_eq!(HashKey::SourceIp.hash(&a), HashKey::SourceIp.hash(&b));
        assert_ne!(HashKey::FiveTuple.hash(&a), HashKey::FiveTuple.hash(&b));
        a.client = "10.0.0.2:5000".parse().unwrap();
        assert_ne!(HashKey::SourceIp.hash(&a), HashKey::SourceIp.hash(&b));
        // A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d; they hash the same.
        let mut mapped = input(&h, None);
        mapped.client = "[::ffff:10.0.0.1]:5000".parse().unwrap();
        let plain = input(&h, None);
        assert_eq!(
            HashKey::SourceIp.hash(&mapped),
            HashKey::SourceIp.hash(&plain)
        );
        assert_eq!(
            HashKey::FiveTuple.hash(&mapped),
            HashKey::FiveTuple.hash(&plain)
        );
    }
}

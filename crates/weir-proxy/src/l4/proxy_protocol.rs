//! The PROXY protocol (HAProxy's spec, v1 text and v2 binary): tell an endpoint who the real
//! client is, and learn it from a trusted load balancer in front of weir.
//!
//! Parsing and encoding are `ppp`'s; this module bounds what we buffer, turns headers into
//! addresses, and recognises a header's signature so one from an untrusted peer is refused.

use std::net::{IpAddr, SocketAddr};

use ppp::HeaderResult;
use ppp::v2::{Builder, Command, Protocol, Version};
use weir_config::ProxyProtocolVersion;

/// A v1 header is at most 107 bytes (spec §2.1).
const V1_MAX: usize = 107;
/// A v2 header is 16 bytes plus at most 65535 of addresses and TLVs (spec §2.2).
pub(crate) const MAX_HEADER: usize = 16 + 65_535;
/// The v2 signature.
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// The result of parsing what has been read so far.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// More bytes are needed.
    Incomplete,
    /// A whole header of `consumed` bytes; `source` is the original client (None for
    /// `LOCAL`/`UNKNOWN` headers, which carry no address).
    Done {
        consumed: usize,
        source: Option<SocketAddr>,
    },
    /// Not a valid header.
    Invalid(String),
}

/// Parses a PROXY header at the start of `buf`.
///
/// We frame the header ourselves — a v1 header ends at its CRLF, a v2 header's length is in its
/// 16-byte preamble — and hand `ppp` only complete headers: its own partial-input detection
/// calls some prefixes invalid (a half-written port) and some malformed lines incomplete.
pub(crate) fn parse(buf: &[u8]) -> Parsed {
    if buf.is_empty() {
        return Parsed::Incomplete;
    }
    if !could_be_header(buf) {
        return Parsed::Invalid("no PROXY protocol signature".into());
    }
    let whole = if buf.starts_with(b"PROXY") || b"PROXY".starts_with(&buf[..buf.len().min(5)]) {
        match buf.windows(2).position(|w| w == b"\r\n") {
            Some(end) if end + 2 <= V1_MAX => &buf[..end + 2],
            Some(_) => return Parsed::Invalid("PROXY v1 header too long".into()),
            None if buf.len() >= V1_MAX => {
                return Parsed::Invalid("PROXY v1 header too long".into());
            }
            None => return Parsed::Incomplete,
        }
    } else {
        if buf.len() < 16 {
            return Parsed::Incomplete;
        }
        let len = 16 + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
        if buf.len() < len {
            return Parsed::Incomplete;
        }
        &buf[..len]
    };
    match HeaderResult::parse(whole) {
        HeaderResult::V1(Ok(h)) => Parsed::Done {
            consumed: whole.len(),
            source: match h.addresses {
                ppp::v1::Addresses::Tcp4(a) => {
                    Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
                }
                ppp::v1::Addresses::Tcp6(a) => {
                    Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
                }
                ppp::v1::Addresses::Unknown => None,
            },
        },
        HeaderResult::V2(Ok(h)) => Parsed::Done {
            consumed: whole.len(),
            source: match (h.command, h.addresses) {
                (Command::Proxy, ppp::v2::Addresses::IPv4(a)) => {
                    Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
                }
                (Command::Proxy, ppp::v2::Addresses::IPv6(a)) => {
                    Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
                }
                _ => None,
            },
        },
        HeaderResult::V1(Err(e)) => Parsed::Invalid(format!("invalid PROXY v1 header: {e}")),
        HeaderResult::V2(Err(e)) => Parsed::Invalid(format!("invalid PROXY v2 header: {e}")),
    }
}

/// What an untrusted peer's first bytes say about a PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FirstBytes {
    /// They start with a full signature (`PROXY ` or the 12-byte v2 preamble): refuse.
    Header,
    /// They are a strict prefix of a signature (`P`, `\r\n`…): read more before deciding.
    Undecided,
    /// They are not a PROXY header: forward them.
    NotHeader,
}

/// Classifies an untrusted peer's first bytes. Only a complete signature counts as a header, so
/// a client that happens to start with `P` or a blank line is not refused.
pub(crate) fn classify_first(bytes: &[u8]) -> FirstBytes {
    const V1_SIGNATURE: &[u8] = b"PROXY ";
    if bytes.starts_with(V1_SIGNATURE) || bytes.starts_with(V2_SIGNATURE) {
        FirstBytes::Header
    } else if V1_SIGNATURE.starts_with(bytes) || V2_SIGNATURE.starts_with(bytes) {
        FirstBytes::Undecided
    } else {
        FirstBytes::NotHeader
    }
}

/// Whether `first` (the first bytes a peer sent) is, or may become, a PROXY header.
pub(crate) fn could_be_header(first: &[u8]) -> bool {
    let n = first.len();
    b"PROXY"[..n.min(5)] == first[..n.min(5)] || V2_SIGNATURE[..n.min(12)] == first[..n.min(12)]
}

/// The header announcing a connection from `source` to `destination`.
pub(crate) fn encode(
    version: ProxyProtocolVersion,
    source: SocketAddr,
    destination: SocketAddr,
) -> Vec<u8> {
    // Both addresses must be of one family; map IPv4 into IPv6 when they differ.
    let (source, destination) = same_family(source, destination);
    match version {
        ProxyProtocolVersion::V1 => ppp::v1::Addresses::from((source, destination))
            .to_string()
            .into_bytes(),
        ProxyProtocolVersion::V2 => Builder::with_addresses(
            Version::Two | Command::Proxy,
            Protocol::Stream,
            (source, destination),
        )
        .build()
        // Building into a Vec only fails on a length overflow, impossible with two addresses.
        .unwrap_or_default(),
    }
}

fn same_family(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    let v6 = |s: SocketAddr| match s.ip() {
        IpAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), s.port()),
        IpAddr::V6(_) => s,
    };
    if a.is_ipv4() == b.is_ipv4() {
        (a, b)
    } else {
        (v6(a), v6(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v1_and_v2_round_trip() {
        for version in [ProxyProtocolVersion::V1, ProxyProtocolVersion::V2] {
            let mut bytes = encode(version, addr("192.0.2.7:41000"), addr("127.0.0.1:6379"));
            let len = bytes.len();
            bytes.extend_from_slice(b"PING\r\n");
            assert_eq!(
                parse(&bytes),
                Parsed::Done {
                    consumed: len,
                    source: Some(addr("192.0.2.7:41000"))
                },
                "{version:?}"
            );
            // Every strict prefix is incomplete, never invalid.
            for cut in 1..len {
                assert_eq!(
                    parse(&bytes[..cut]),
                    Parsed::Incomplete,
                    "{version:?} cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn ipv6_and_mixed_families() {
        let bytes = encode(
            ProxyProtocolVersion::V1,
            addr("[2001:db8::1]:5000"),
            addr("127.0.0.1:80"),
        );
        assert!(matches!(parse(&bytes), Parsed::Done { source: Some(s), .. } if s.port() == 5000));
        let bytes = encode(
            ProxyProtocolVersion::V2,
            addr("[2001:db8::1]:5000"),
            addr("[::1]:80"),
        );
        assert!(
            matches!(parse(&bytes), Parsed::Done { source: Some(s), .. } if s == addr("[2001:db8::1]:5000"))
        );
    }

    #[test]
    fn garbage_is_invalid_and_bounded() {
        assert!(matches!(parse(b"GET / HTTP/1.1\r\n"), Parsed::Invalid(_)));
        assert!(matches!(
            parse(b"PROXY TCP4 nonsense here\r\n"),
            Parsed::Invalid(_)
        ));
        let long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 200]].concat();
        assert!(
            matches!(parse(&long), Parsed::Invalid(_)),
            "no endless buffering"
        );
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n"),
            Parsed::Done {
                consumed: 15,
                source: None
            }
        );
    }

    #[test]
    fn untrusted_first_bytes_need_a_whole_signature() {
        assert_eq!(classify_first(b"PROXY TCP4 "), FirstBytes::Header);
        assert_eq!(classify_first(b"\r\n\r\n\0\r\nQUIT\n!"), FirstBytes::Header);
        for undecided in [&b"P"[..], b"PRO", b"PROXY", b"\r\n", b"\r\n\r\n"] {
            assert_eq!(
                classify_first(undecided),
                FirstBytes::Undecided,
                "{undecided:?}"
            );
        }
        for normal in [&b"PING\r\n"[..], b"PROXYZ", b"\r\n\r\nGET", b"*1\r\n"] {
            assert_eq!(classify_first(normal), FirstBytes::NotHeader, "{normal:?}");
        }
    }

    #[test]
    fn signature_detection() {
        assert!(could_be_header(b"PRO"));
        assert!(could_be_header(b"PROXY TCP4"));
        assert!(could_be_header(b"\r\n\r\n\0"));
        assert!(!could_be_header(b"GET /"));
        assert!(!could_be_header(b"*1\r\n$4\r\nPING"));
    }
}

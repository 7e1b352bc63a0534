//! Socket addresses (`ip:port`) with errors that say what is missing.
//!
//! `std`'s parser only says "invalid socket address syntax"; the usual mistakes are a missing
//! port and a hostname where weir needs an IP (it does not resolve names in the config), so this
//! module tells those apart.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use serde::Deserializer;
use serde::de::{self, Visitor};

/// What an address looks like, for error hints.
const EXAMPLE: &str = "write ip:port, e.g. 127.0.0.1:8080 or [::1]:8080";

/// Parses `ip:port`; the error is `message; hint`.
pub(crate) fn parse(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        let example = match ip {
            IpAddr::V4(_) => format!("{ip}:8080"),
            IpAddr::V6(_) => format!("[{ip}]:8080"),
        };
        return Err(format!("`{text}` has no port; add one, e.g. {example}"));
    }
    if let Some((host, port)) = text.rsplit_once(':') {
        if port.parse::<u16>().is_err() {
            return Err(format!(
                "`{text}`: `{port}` is not a port (0–65535); {EXAMPLE}"
            ));
        }
        if host.parse::<IpAddr>().is_err() {
            return Err(format!(
                "`{text}`: `{host}` is not an IP address; hostnames are not resolved here, {EXAMPLE}"
            ));
        }
    }
    Err(format!("`{text}` is not an ip:port address; {EXAMPLE}"))
}

/// `deserialize_with` for `SocketAddr` fields.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<SocketAddr, D::Error> {
    deserializer.deserialize_str(AddressVisitor)
}

struct AddressVisitor;

impl Visitor<'_> for AddressVisitor {
    type Value = SocketAddr;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an ip:port address such as 127.0.0.1:8080")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<SocketAddr, E> {
        parse(text).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_the_usual_mistakes_apart() {
        assert!(parse("127.0.0.1:80").is_ok());
        assert!(parse("[::1]:80").is_ok());
        let cases = [
            ("127.0.0.1", "no port"),
            ("::1", "[::1]:8080"),
            ("nope:80", "hostnames are not resolved"),
            ("127.0.0.1:http", "not a port"),
            ("nope", "not an ip:port"),
        ];
        for (text, needle) in cases {
            let Err(e) = parse(text) else {
                panic!("{text} parsed")
            };
            assert!(e.contains(needle), "{text}: {e}");
            assert!(e.contains("; "), "{text}: no hint in {e}");
        }
    }
}

//! TLS settings: termination on HTTP listeners (certificates by SNI, minimum version, client
//! certificates) and TLS from weir to a cluster's endpoints.
//!
//! Only what the YAML itself can say is checked here (shapes, names, header syntax); the files
//! the paths point at are read and checked when the data plane compiles the config, so a reload
//! picks up rotated certificates and a bad file is reported with the path of its key.

use std::fmt;
use std::path::PathBuf;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `tls:` of an HTTP listener: weir terminates TLS and serves HTTP/1.1 or HTTP/2 (by ALPN).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTlsConfig {
    /// Certificates offered by SNI; the first one is the default (no SNI, or no name matches).
    pub certificates: Vec<CertificateConfig>,
    /// Lowest protocol version accepted. Default TLS 1.2.
    #[serde(default)]
    pub min_version: TlsVersion,
    /// Ask clients for a certificate and verify it (mTLS).
    #[serde(default)]
    pub client_auth: Option<ClientAuthConfig>,
    /// Request header that carries the verified client identity to the endpoint; always removed
    /// from what the client sent. Needs `client_auth`.
    #[serde(default)]
    pub client_cert_header: Option<String>,
}

/// One certificate chain and its private key, both PEM files.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    /// PEM file with the leaf certificate first, then its intermediates.
    pub cert: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// SNI names this certificate answers (exact or `*.suffix`); each must be covered by the
    /// certificate's subject alternative names. Default: the certificate's DNS names.
    #[serde(default)]
    pub server_names: Vec<String>,
}

/// Client certificate verification on a listener.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClientAuthConfig {
    /// PEM file of the CA certificates that client certificates must chain to.
    pub ca: PathBuf,
    /// `true`: a client without a valid certificate is refused during the handshake; `false`:
    /// a certificate is asked for and verified when given, but not needed. Default true.
    #[serde(default = "yes")]
    pub required: bool,
}

/// Lowest TLS version a listener accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3.
    #[default]
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

/// `tls:` of a cluster: weir speaks TLS to the endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsConfig {
    /// Server name sent as SNI and verified against the endpoint's certificate. Default: the
    /// endpoint's IP address (verified against IP SANs; no SNI is sent).
    #[serde(default)]
    pub sni: Option<String>,
    /// PEM file of the CA certificates endpoint certificates must chain to. Default: the
    /// roots chosen by `roots`.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Which roots endpoint certificates must chain to when there is no `ca`. Default
    /// `system`: the operating system's store.
    #[serde(default)]
    pub roots: Option<RootStore>,
    /// A client certificate weir presents to endpoints that ask for one.
    #[serde(default)]
    pub client_cert: Option<ClientCertConfig>,
    /// Accept any endpoint certificate without verification. For tests only: it gives up every
    /// protection TLS offers against a man in the middle. Default false.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// The trust anchors of a cluster without `ca`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RootStore {
    /// The operating system's store (`/etc/ssl/certs` and friends, from the `ca-certificates`
    /// package), or the files `SSL_CERT_FILE` / `SSL_CERT_DIR` name, read once per process.
    #[default]
    System,
    /// Mozilla's root store compiled into weir (`webpki-roots`): the same on every machine,
    /// whatever the image ships.
    Webpki,
}

// === impl RootStore ===

impl RootStore {
    /// The value as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::Webpki => "webpki",
        }
    }
}

/// A certificate chain and key weir presents as a TLS client.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCertConfig {
    /// PEM file with the certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM file with the private key.
    pub key: PathBuf,
}

fn yes() -> bool {
    true
}

// === impl TlsVersion ===

impl TlsVersion {
    /// The version as written in the config, `1.2` or `1.3`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tls12 => "1.2",
            Self::Tls13 => "1.3",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text.trim() {
            "1.2" | "TLS1.2" | "tls1.2" => Some(Self::Tls12),
            "1.3" | "TLS1.3" | "tls1.3" => Some(Self::Tls13),
            _ => None,
        }
    }
}

impl Serialize for TlsVersion {
    /// As written in the config: `"1.2"` or `"1.3"`.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(match self {
            TlsVersion::Tls12 => "1.2",
            TlsVersion::Tls13 => "1.3",
        })
    }
}

impl<'de> Deserialize<'de> for TlsVersion {
    /// Accepts `"1.2"` / `"1.3"` and, since YAML reads an unquoted `1.2` as a number, the
    /// numbers 1.2 and 1.3.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct VersionVisitor;

        impl Visitor<'_> for VersionVisitor {
            type Value = TlsVersion;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a TLS version: \"1.2\" or \"1.3\"")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<TlsVersion, E> {
                TlsVersion::parse(text).ok_or_else(|| {
                    E::custom(format!(
                        "unknown TLS version `{text}`; use \"1.2\" or \"1.3\""
                    ))
                })
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<TlsVersion, E> {
                self.visit_str(&v.to_string())
            }
        }

        deserializer.deserialize_any(VersionVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_from_text() {
        assert_eq!(TlsVersion::parse("1.2"), Some(TlsVersion::Tls12));
        assert_eq!(TlsVersion::parse("1.3"), Some(TlsVersion::Tls13));
        assert_eq!(TlsVersion::parse("1.1"), None);
        assert_eq!(TlsVersion::Tls13.as_str(), "1.3");
    }
}

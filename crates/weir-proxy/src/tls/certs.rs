//! Reading PEM certificates and keys, and checking them before they serve.
//!
//! A certificate that cannot serve should fail when the config is loaded or the file rotated,
//! never during a client's handshake: so every load names the file and says what is wrong —
//! unreadable, not PEM, no key, a key that belongs to another certificate, expired (or not yet
//! valid), or missing a name the config says it answers.

use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use x509_parser::extensions::GeneralName;

/// Why a certificate and key do not pair up: the reason, and which of the two files it is about.
#[derive(Debug)]
pub(crate) struct PairError {
    /// `true` when the key file is at fault, `false` for the certificate file.
    pub(crate) in_key: bool,
    pub(crate) reason: String,
}

/// A checked certificate: the key rustls serves, and the DNS names its SANs cover.
#[derive(Debug)]
pub(crate) struct Checked {
    pub(crate) key: Arc<CertifiedKey>,
    pub(crate) dns_names: Vec<String>,
}

/// The ring provider every TLS config of weir uses (no process-wide default needed).
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads `file` whole; the error names it.
pub(crate) fn read(file: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))
}

/// The certificates of a PEM file, in file order; at least one.
pub(crate) fn chain(pem: &[u8], file: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not a valid PEM file: {e}", file.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{} holds no certificate (expected a PEM `BEGIN CERTIFICATE` block)",
            file.display()
        ));
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub(crate) fn key(pem: &[u8], file: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => format!(
            "{} holds no private key (expected a PEM `BEGIN PRIVATE KEY`, `BEGIN RSA PRIVATE KEY` or `BEGIN EC PRIVATE KEY` block)",
            file.display()
        ),
        e => format!("{} is not a valid PEM key file: {e}", file.display()),
    })
}

/// A root store of every certificate in a PEM file (a CA bundle).
pub(crate) fn roots(pem: &[u8], file: &Path) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    for cert in chain(pem, file)? {
        store
            .add(cert)
            .map_err(|e| format!("{}: not a usable CA certificate: {e}", file.display()))?;
    }
    Ok(store)
}

/// Pairs a chain with its key and checks them: the key matches the leaf, the leaf is within
/// its validity period, and covers every name in `server_names`.
pub(crate) fn certified(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    cert_file: &Path,
    key_file: &Path,
    server_names: &[String],
) -> Result<Checked, PairError> {
    let in_cert = |reason| PairError {
        in_key: false,
        reason,
    };
    let leaf = chain
        .first()
        .ok_or_else(|| in_cert(format!("{} holds no certificate", cert_file.display())))?;
    let dns_names = check_leaf(leaf, cert_file, server_names).map_err(in_cert)?;
    let key = CertifiedKey::from_der(chain, key, &provider()).map_err(|e| PairError {
        in_key: true,
        reason: match e {
            rustls::Error::InconsistentKeys(_) => format!(
                "the key in {} does not match the certificate in {}",
                key_file.display(),
                cert_file.display()
            ),
            e => format!("{}: unusable private key: {e}", key_file.display()),
        },
    })?;
    Ok(Checked {
        key: Arc::new(key),
        dns_names,
    })
}

/// Checks the leaf's validity period and names; returns its SAN DNS names.
fn check_leaf(
    leaf: &CertificateDer<'_>,
    file: &Path,
    server_names: &[String],
) -> Result<Vec<String>, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).map_err(|e| {
        format!(
            "{}: the first certificate does not parse: {e}",
            file.display()
        )
    })?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let validity = cert.validity();
    if validity.not_after.timestamp() < now {
        return Err(format!(
            "the certificate in {} expired on {} (notAfter)",
            file.display(),
            validity.not_after
        ));
    }
    if validity.not_before.timestamp() > now {
        return Err(format!(
            "the certificate in {} is not valid before {} (notBefore)",
            file.display(),
            validity.not_before
        ));
    }
    let dns_names: Vec<String> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        Ok(None) => Vec::new(),
        Err(e) => {
            return Err(format!(
                "{}: the subject alternative names do not parse: {e}",
                file.display()
            ));
        }
    };
    for name in server_names {
        if !dns_names.iter().any(|san| covers(san, name)) {
            return Err(format!(
                "the certificate in {} does not cover server name {name:?}; its DNS names are [{}]",
                file.display(),
                dns_names.join(", ")
            ));
        }
    }
    Ok(dns_names)
}

/// Whether certificate name `san` (exact or `*.suffix`, one label) covers the configured
/// `name` (exact or `*.suffix`).
pub(crate) fn covers(san: &str, name: &str) -> bool {
    if san.eq_ignore_ascii_case(name) {
        return true;
    }
    match san.strip_prefix("*.") {
        Some(suffix) => name
            .split_once('.')
            .is_some_and(|(label, rest)| label != "*" && rest.eq_ignore_ascii_case(suffix)),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_cover_one_label() {
        assert!(covers("a.test", "A.Test"));
        assert!(covers("*.b.test", "x.b.test"));
        assert!(covers("*.b.test", "*.b.test"));
        assert!(!covers("*.b.test", "y.x.b.test"));
        assert!(!covers("*.b.test", "b.test"));
        assert!(!covers("a.test", "b.test"));
    }

    #[test]
    fn garbage_is_named_with_its_file() {
        let file = Path::new("/etc/weir/x.pem");
        let e = chain(b"hello", file).unwrap_err();
        assert!(
            e.contains("/etc/weir/x.pem") && e.contains("no certificate"),
            "{e}"
        );
        let e = key(b"hello", file).unwrap_err();
        assert!(e.contains("no private key"), "{e}");
        let e = read(Path::new("/nonexistent/weir.pem")).unwrap_err();
        assert!(e.contains("cannot read /nonexistent/weir.pem"), "{e}");
    }
}

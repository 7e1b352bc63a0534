//! The identity of a verified client certificate as one header value, in the style of Envoy's
//! `x-forwarded-client-cert`: `Subject="CN=a,O=b";URI=spiffe://x/y;DNS=a.example;IP=10.0.0.1;
//! Email=a@example.com`.
//!
//! `Subject` is the full distinguished name as an RFC 4514 string (last RDN first, `,` between
//! RDNs, `+` inside a multi-valued one, RFC 4514 escapes in values) and is always quoted; then
//! every SAN of the four kinds, URIs first, then DNS names, IP addresses and email addresses,
//! each in certificate order. A value is quoted when it holds `,` `;` `=` `"` `\` a space or
//! anything outside printable ASCII; inside quotes `"` is `\"`, `\` is `\\`, and any other byte
//! outside printable ASCII is `\XX` (hex). So a certificate cannot smuggle a `;Subject=…` or a
//! line break into the header: every `;` that separates fields is outside quotes.

use std::fmt::Write;
use std::net::IpAddr;

use rustls::pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;
use x509_parser::x509::{AttributeTypeAndValue, X509Name};

/// RFC 4514 §3 names for the attribute types it lists; other types are written as a dotted OID.
const SHORT_NAMES: &[(&str, &str)] = &[
    ("2.5.4.3", "CN"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "ST"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("2.5.4.6", "C"),
    ("2.5.4.9", "STREET"),
    ("0.9.2342.19200300.100.1.25", "DC"),
    ("0.9.2342.19200300.100.1.1", "UID"),
];

/// The identity of `leaf` (see the module doc); `None` when it does not parse or has neither a
/// subject nor a SAN of the four kinds.
pub(crate) fn identity(leaf: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).ok()?;
    let mut out = String::new();
    let subject = rfc4514(cert.subject());
    if !subject.is_empty() {
        out.push_str("Subject=");
        quote(&mut out, &subject);
    }
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        let names = &san.value.general_names;
        let uris = names.iter().filter_map(|n| match n {
            GeneralName::URI(u) => Some(("URI", (*u).to_owned())),
            _ => None,
        });
        let dns = names.iter().filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(("DNS", (*d).to_owned())),
            _ => None,
        });
        let ips = names.iter().filter_map(|n| match n {
            GeneralName::IPAddress(b) => ip(b).map(|a| ("IP", a.to_string())),
            _ => None,
        });
        let emails = names.iter().filter_map(|n| match n {
            GeneralName::RFC822Name(e) => Some(("Email", (*e).to_owned())),
            _ => None,
        });
        for (key, value) in uris.chain(dns).chain(ips).chain(emails) {
            if !out.is_empty() {
                out.push(';');
            }
            out.push_str(key);
            out.push('=');
            if needs_quotes(&value) {
                quote(&mut out, &value);
            } else {
                out.push_str(&value);
            }
        }
    }
    (!out.is_empty()).then_some(out)
}

/// `name` as an RFC 4514 string.
fn rfc4514(name: &X509Name<'_>) -> String {
    let rdns: Vec<String> = name
        .iter_rdn()
        .map(|rdn| rdn.iter().map(attribute).collect::<Vec<_>>().join("+"))
        .collect();
    // RFC 4514 §2.1: the last RDN of the sequence comes first.
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

/// One `type=value` of an RDN.
fn attribute(attr: &AttributeTypeAndValue<'_>) -> String {
    let oid = attr.attr_type().to_id_string();
    let mut out = SHORT_NAMES
        .iter()
        .find(|(o, _)| *o == oid)
        .map_or(oid.clone(), |(_, n)| (*n).to_owned());
    out.push('=');
    match attr.as_str() {
        Ok(text) => escape_value(&mut out, text),
        // Not a string type: RFC 4514 §2.4's `#` and the value's bytes in hex.
        Err(_) => {
            out.push('#');
            for b in attr.as_slice() {
                let _ = write!(out, "{b:02x}");
            }
        }
    }
    out
}

/// Appends `text` with RFC 4514 §2.4's escapes.
fn escape_value(out: &mut String, text: &str) {
    let last = text.chars().count().saturating_sub(1);
    for (i, c) in text.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            '\0' => out.push_str("\\00"),
            c => out.push(c),
        }
    }
}

/// Whether a SAN value must be quoted to stay one field.
fn needs_quotes(value: &str) -> bool {
    value
        .bytes()
        .any(|b| matches!(b, b',' | b';' | b'=' | b'"' | b'\\') || !(0x21..0x7f).contains(&b))
}

/// Appends `value` in double quotes: `"` and `\` backslash-escaped, bytes outside printable
/// ASCII as `\XX`.
fn quote(out: &mut String, value: &str) {
    out.push('"');
    for b in value.bytes() {
        match b {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(char::from(b));
            }
            0x20..0x7f => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\{b:02X}");
            }
        }
    }
    out.push('"');
}

/// An IP address SAN (4 or 16 bytes).
fn ip(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test")]

    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

    use super::*;

    fn leaf(params: CertificateParams) -> CertificateDer<'static> {
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn subject_and_every_san_kind_in_xfcc_form() {
        let mut p = CertificateParams::new(vec!["a.test".to_owned()]).unwrap();
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(DnType::CountryName, "FR");
        p.distinguished_name
            .push(DnType::OrganizationName, "Weir, Inc.");
        p.distinguished_name.push(DnType::CommonName, "client-1");
        p.subject_alt_names.extend([
            SanType::URI("spiffe://weir.test/ns/a".try_into().unwrap()),
            SanType::IpAddress("10.0.0.1".parse().unwrap()),
            SanType::Rfc822Name("ops@weir.test".try_into().unwrap()),
            SanType::DnsName("b.test".try_into().unwrap()),
        ]);
        let id = identity(&leaf(p)).unwrap();
        // rcgen writes the DN in push order (C, O, CN); RFC 4514 reverses it.
        assert_eq!(
            id,
            "Subject=\"CN=client-1,O=Weir\\\\, Inc.,C=FR\";URI=spiffe://weir.test/ns/a;DNS=a.test;DNS=b.test;IP=10.0.0.1;Email=ops@weir.test"
        );
    }

    #[test]
    fn values_cannot_forge_fields_or_lines() {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name
            .push(DnType::CommonName, "x\";DNS=evil.test\r\nX: y");
        p.subject_alt_names
            .push(SanType::URI("urn:a;DNS=evil.test".try_into().unwrap()));
        let id = identity(&leaf(p)).unwrap();
        assert_eq!(
            id,
            "Subject=\"CN=x\\\\\\\"\\\\;DNS=evil.test\\0D\\0AX: y\";URI=\"urn:a;DNS=evil.test\""
        );
        assert!(http::HeaderValue::try_from(id).is_ok());
    }

    /// Splits a header value back into its fields, as a consumer would: `;` outside quotes
    /// separates, and `\"`, `\\` and `\XX` are undone inside quotes.
    fn parse(header: &str) -> Vec<(String, Vec<u8>)> {
        let b = header.as_bytes();
        let (mut out, mut i) = (Vec::new(), 0);
        loop {
            let start = i;
            while b[i] != b'=' {
                i += 1;
            }
            let key = header[start..i].to_owned();
            i += 1;
            let mut v = Vec::new();
            if b.get(i) == Some(&b'"') {
                i += 1;
                loop {
                    match b[i] {
                        b'"' => break i += 1,
                        b'\\' if matches!(b[i + 1], b'"' | b'\\') => {
                            v.push(b[i + 1]);
                            i += 2;
                        }
                        b'\\' => {
                            v.push(u8::from_str_radix(&header[i + 1..i + 3], 16).unwrap());
                            i += 3;
                        }
                        c => {
                            v.push(c);
                            i += 1;
                        }
                    }
                }
            } else {
                while i < b.len() && b[i] != b';' {
                    v.push(b[i]);
                    i += 1;
                }
            }
            out.push((key, v));
            if i == b.len() {
                return out;
            }
            assert_eq!(b[i], b';', "{header}");
            i += 1;
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Whatever a certificate holds, the header is a valid header value and reads back as
        /// exactly its fields: no value can add or alter one.
        #[test]
        fn any_subject_or_uri_reads_back_as_itself(cn in "(?s).{0,24}", uri in "[ -~]{1,24}") {
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.distinguished_name = DistinguishedName::new();
            p.distinguished_name.push(DnType::CommonName, cn.as_str());
            p.subject_alt_names.push(SanType::URI(uri.as_str().try_into().unwrap()));
            let id = identity(&leaf(p)).unwrap();
            proptest::prop_assert!(http::HeaderValue::try_from(id.as_str()).is_ok(), "{}", id);
            let mut subject = "CN=".to_owned();
            escape_value(&mut subject, &cn);
            proptest::prop_assert_eq!(
                parse(&id),
                vec![
                    ("Subject".to_owned(), subject.into_bytes()),
                    ("URI".to_owned(), uri.into_bytes()),
                ]
            );
        }
    }

    #[test]
    fn rfc4514_escapes_leading_and_trailing_specials() {
        let mut out = String::new();
        escape_value(&mut out, "#a b ");
        assert_eq!(out, "\\#a b\\ ");
    }
}

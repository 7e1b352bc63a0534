//! Rules for `tls:` on listeners and clusters that the YAML alone can decide: TLS termination
//! only on HTTP listeners, at least one certificate, valid SNI names and header names, and no
//! contradictory upstream settings. The files themselves are checked when the snapshot compiles.

use std::path::Path;

use super::{Checker, syntax};
use crate::path::YamlPath;
use crate::{ListenerTlsConfig, UpstreamTlsConfig};

/// Headers weir manages itself; the client identity may not be written into one of them.
const MANAGED: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "upgrade",
    "x-forwarded-for",
    "x-forwarded-proto",
    "via",
];

// === impl Checker ===

impl Checker<'_> {
    /// Checks a listener's `tls` block at `path`.
    pub(super) fn listener_tls(&mut self, tls: &ListenerTlsConfig, path: &YamlPath) {
        if tls.certificates.is_empty() {
            self.report(
                &path.key("certificates"),
                "certificates is empty",
                "list at least one `{ cert: cert.pem, key: key.pem }`; the first is the default",
            );
        }
        for (i, cert) in tls.certificates.iter().enumerate() {
            let p = path.key("certificates").index(i);
            self.file_path(&cert.cert, &p.key("cert"));
            self.file_path(&cert.key, &p.key("key"));
            for (j, name) in cert.server_names.iter().enumerate() {
                let at = p.key("server_names").index(j);
                if name.starts_with('[') {
                    self.report(
                        &at,
                        format!("{name:?} is an address; SNI carries host names only"),
                        "write a DNS name such as api.example.com or *.example.com",
                    );
                } else if let Err(problem) = syntax::check_host(name) {
                    self.report(&at, problem.message, problem.hint);
                }
            }
        }
        if let Some(auth) = &tls.client_auth {
            self.file_path(&auth.ca, &path.key("client_auth").key("ca"));
        }
        if let Some(header) = &tls.client_cert_header {
            let at = path.key("client_cert_header");
            if let Err(problem) = syntax::check_header_name(header) {
                self.report(&at, problem.message, problem.hint);
            } else if MANAGED.contains(&header.as_str()) {
                self.report(
                    &at,
                    format!("`{header}` is a header weir manages itself"),
                    "use a header of its own, e.g. x-client-cert-subject",
                );
            }
            if tls.client_auth.is_none() {
                self.report(
                    &at,
                    "client_cert_header needs client_auth: without it there is no verified identity",
                    "add `client_auth: { ca: clients-ca.pem }` or remove client_cert_header",
                );
            }
        }
    }

    /// Checks a cluster's `tls` block at `path`.
    pub(super) fn cluster_tls(&mut self, tls: &UpstreamTlsConfig, path: &YamlPath) {
        if let Some(sni) = &tls.sni {
            let bad = sni.starts_with("*.")
                || sni.starts_with('[')
                || sni.parse::<std::net::IpAddr>().is_ok()
                || syntax::check_host(sni).is_err();
            if bad {
                self.report(
                    &path.key("sni"),
                    format!("sni {sni:?} is not a DNS name"),
                    "write the name on the endpoints' certificate, e.g. api.internal; leave sni out to verify the endpoint's IP address",
                );
            }
        }
        if let Some(ca) = &tls.ca {
            self.file_path(ca, &path.key("ca"));
            if tls.insecure_skip_verify {
                self.report(
                    &path.key("insecure_skip_verify"),
                    "insecure_skip_verify is true, so `ca` would never be used",
                    "remove one of them; verifying against `ca` is what you want outside tests",
                );
            }
        }
        if let Some(roots) = tls.roots {
            let replaced_by = if tls.insecure_skip_verify {
                Some("insecure_skip_verify is true")
            } else if tls.ca.is_some() {
                Some("`ca` is given")
            } else {
                None
            };
            if let Some(why) = replaced_by {
                self.report(
                    &path.key("roots"),
                    format!("roots: {} would never be used: {why}", roots.as_str()),
                    "remove `roots`; it chooses the trust only for a cluster without `ca`",
                );
            }
        }
        if let Some(cc) = &tls.client_cert {
            self.file_path(&cc.cert, &path.key("client_cert").key("cert"));
            self.file_path(&cc.key, &path.key("client_cert").key("key"));
        }
    }

    fn file_path(&mut self, file: &Path, path: &YamlPath) {
        if file.as_os_str().is_empty() {
            self.report(
                path,
                "the file path is empty",
                "give the path of a PEM file",
            );
        }
    }
}

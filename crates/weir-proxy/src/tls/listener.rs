//! TLS termination for one HTTP listener: the rustls server config, the SNI certificate
//! resolver, and hot rotation of certificates and of the client CA.
//!
//! The resolver holds its certificate table in an `ArcSwap`, so a rotated certificate is one
//! pointer swap: the `ServerConfig` (and with it the session cache and ticket keys) stays, new
//! handshakes get the new certificate, and connections already open are not touched. The table
//! is built from the files when the snapshot compiles (every reload) and again by
//! [`ListenerTls::refresh`] whenever the watcher sees a file change. The client CA (`client_auth`)
//! lives in the `ServerConfig`'s verifier, so a changed CA file swaps in a new `ServerConfig`
//! that shares the resolver of the old one (with a fresh session cache and ticket keys).

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::HeaderName;
use rustls::server::{
    ClientHello, ResolvesServerCert, ServerSessionMemoryCache, WebPkiClientVerifier,
};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, SupportedProtocolVersion};
use tokio_rustls::TlsAcceptor;
use weir_config::{CertificateConfig, ClientAuthConfig, ListenerTlsConfig, TlsVersion};

use super::certs;
use super::watch::{Watched, frames, push_framed};
use crate::CompileError;

/// TLS sessions kept for resumption by session ID, per listener.
const SESSION_CACHE_ENTRIES: usize = 4096;

/// A listener's TLS: what accepts connections, and what rotates certificates.
pub(crate) struct ListenerTls {
    /// What new handshakes use; swapped when the client CA file changes.
    config: ArcSwap<ServerConfig>,
    resolver: Arc<SniResolver>,
    /// Header that carries the verified client identity upstream (and is stripped from input).
    pub(crate) client_cert_header: Option<HeaderName>,
    sources: Vec<CertificateConfig>,
    /// The certificate and key files, in `sources` order.
    certificates: Watched,
    /// The TLS versions and client authentication, to rebuild the `ServerConfig` from.
    min_version: TlsVersion,
    client_auth: Option<ClientAuthConfig>,
    /// The client CA file, when there is `client_auth`.
    client_ca: Option<Watched>,
    /// `listeners[i].tls`, for log lines.
    path: String,
}

/// Chooses the certificate for a handshake by its SNI.
#[derive(Debug)]
struct SniResolver {
    table: ArcSwap<CertTable>,
}

/// Certificates by name: exact names first, then `*.suffix` wildcards (one label, like the
/// certificates themselves), then the default.
#[derive(Debug)]
struct CertTable {
    default: Arc<CertifiedKey>,
    exact: BTreeMap<String, Arc<CertifiedKey>>,
    wildcard: BTreeMap<String, Arc<CertifiedKey>>,
}

// === impl ListenerTls ===

impl ListenerTls {
    /// Builds the listener's TLS from `cfg` at YAML path `path` (`listeners[i].tls`), reading
    /// every file. The session cache and ticket keys carry over from `previous` so a reload
    /// does not end resumption (unless the client CA or `client_auth` changed).
    pub(crate) fn compile(
        cfg: &ListenerTlsConfig,
        path: &str,
        previous: Option<&ListenerTls>,
    ) -> Result<Self, CompileError> {
        let contents = read_all(&cfg.certificates, path)?;
        let table = build_table(&cfg.certificates, &contents, path)?;
        let resolver = Arc::new(SniResolver {
            table: ArcSwap::from_pointee(table),
        });
        let err = |at: String, reason: String| CompileError { path: at, reason };
        let ca_pem = match &cfg.client_auth {
            Some(auth) => {
                certs::read(&auth.ca).map_err(|r| err(format!("{path}.client_auth.ca"), r))?
            }
            None => Vec::new(),
        };
        // Resumption carries over a reload unless client verification changed: a session
        // verified against another CA must not resume.
        let same_auth = previous.filter(|p| {
            p.client_auth.as_ref() == cfg.client_auth.as_ref()
                && p.client_ca
                    .as_ref()
                    .is_none_or(|ca| *ca.seen() == framed(&ca_pem))
        });
        let (session_storage, ticketer) = match same_auth {
            Some(p) => {
                let config = p.config.load();
                (
                    Arc::clone(&config.session_storage),
                    Arc::clone(&config.ticketer),
                )
            }
            None => (
                ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES) as _,
                rustls::crypto::ring::Ticketer::new()
                    .map_err(|e| err(path.to_owned(), format!("session tickets: {e}")))?,
            ),
        };
        let config = Arc::new(server_config(
            cfg.min_version,
            cfg.client_auth.as_ref().map(|a| (a, ca_pem.as_slice())),
            path,
            Arc::clone(&resolver),
            session_storage,
            ticketer,
        )?);
        let client_cert_header = match &cfg.client_cert_header {
            Some(h) => Some(HeaderName::try_from(h.as_str()).map_err(|_| {
                err(
                    format!("{path}.client_cert_header"),
                    format!("`{h}` is not a header name"),
                )
            })?),
            None => None,
        };
        let files = cfg
            .certificates
            .iter()
            .flat_map(|c| [c.cert.clone(), c.key.clone()])
            .collect();
        let client_ca = cfg.client_auth.as_ref().map(|auth| {
            Watched::new(
                vec![auth.ca.clone()],
                framed(&ca_pem),
                previous.and_then(|p| Some(p.client_ca.as_ref()?.status())),
            )
        });
        Ok(Self {
            config: ArcSwap::new(config),
            resolver,
            client_cert_header,
            sources: cfg.certificates.clone(),
            certificates: Watched::new(files, contents, previous.map(|p| p.certificates.status())),
            min_version: cfg.min_version,
            client_auth: cfg.client_auth.clone(),
            client_ca,
            path: path.to_owned(),
        })
    }

    /// What accepts the next connection.
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.load_full())
    }

    /// Looks at the client CA file and, if it changed, swaps in a `ServerConfig` verifying
    /// client certificates against the new CA (same certificates; a new session cache and new
    /// ticket keys, so no session resumes past the rotation). A CA file that does not load
    /// keeps the old CA (see [`Watched`]). Returns whether it swapped.
    pub(crate) async fn refresh_client_ca(&self) -> bool {
        let (Some(auth), Some(watched)) = (&self.client_auth, &self.client_ca) else {
            return false;
        };
        let at = format!("{}.client_auth.ca", self.path);
        let Some(contents) = watched.changed(&at).await else {
            return false;
        };
        let pem = frames(&contents).first().copied().unwrap_or_default();
        let built = rustls::crypto::ring::Ticketer::new()
            .map_err(|e| format!("session tickets: {e}"))
            .and_then(|ticketer| {
                server_config(
                    self.min_version,
                    Some((auth, pem)),
                    &self.path,
                    Arc::clone(&self.resolver),
                    ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES),
                    ticketer,
                )
                .map_err(|e| e.to_string())
            });
        let swapped = match built {
            Ok(config) => {
                self.config.store(Arc::new(config));
                Ok(())
            }
            Err(e) => Err(e),
        };
        let ok = swapped.is_ok();
        watched.built(contents, swapped, &at, "client CA");
        ok
    }

    /// Looks at the certificate files and, if they changed, swaps in the new certificates. A
    /// change that does not load (half-written file, key of another certificate, expired)
    /// keeps the old certificates serving (see [`Watched`]). Returns whether it swapped.
    pub(crate) async fn refresh(&self) -> bool {
        let at = format!("{}.certificates", self.path);
        let Some(contents) = self.certificates.changed(&at).await else {
            return false;
        };
        let swapped = match build_table(&self.sources, &contents, &self.path) {
            Ok(table) => {
                self.resolver.table.store(Arc::new(table));
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        };
        let ok = swapped.is_ok();
        self.certificates
            .built(contents, swapped, &at, "certificates");
        ok
    }

    /// Reload failures reported for this listener's certificates and client CA, and the reason
    /// of the last one still unresolved.
    pub(crate) fn reload_failures(&self) -> (u64, Option<String>) {
        let mut failures = self.certificates.status().failures();
        let mut last = self.certificates.status().last_error();
        if let Some(ca) = &self.client_ca {
            failures += ca.status().failures();
            last = last.or_else(|| ca.status().last_error());
        }
        (failures, last)
    }
}

impl std::fmt::Debug for ListenerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerTls")
            .field("path", &self.path)
            .field("certificates", &self.sources.len())
            .field("client_cert_header", &self.client_cert_header)
            .finish()
    }
}

/// The listener's `ServerConfig`: TLS versions, client verification against `client_auth`'s CA
/// (its file's contents given), the SNI resolver, ALPN `h2` / `http/1.1`, and the session
/// cache and ticket keys to use.
fn server_config(
    min_version: TlsVersion,
    client_auth: Option<(&ClientAuthConfig, &[u8])>,
    path: &str,
    resolver: Arc<SniResolver>,
    session_storage: Arc<dyn rustls::server::StoresServerSessions>,
    ticketer: Arc<dyn rustls::server::ProducesTickets>,
) -> Result<ServerConfig, CompileError> {
    let provider = certs::provider();
    let versions: &[&SupportedProtocolVersion] = match min_version {
        TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let err = |at: String, reason: String| CompileError { path: at, reason };
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(versions)
        .map_err(|e| err(format!("{path}.min_version"), e.to_string()))?;
    let builder = match client_auth {
        Some((auth, pem)) => {
            let at = format!("{path}.client_auth.ca");
            let roots = certs::roots(pem, &auth.ca).map_err(|r| err(at.clone(), r))?;
            let mut verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            if !auth.required {
                verifier = verifier.allow_unauthenticated();
            }
            let verifier = verifier.build().map_err(|e| err(at, e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(resolver as _);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.session_storage = session_storage;
    config.ticketer = ticketer;
    Ok(config)
}

/// Reads every certificate and key file, each framed by its length so that moving bytes from
/// one file to the next still counts as a change.
fn read_all(sources: &[CertificateConfig], path: &str) -> Result<Vec<u8>, CompileError> {
    let mut contents = Vec::new();
    for (i, c) in sources.iter().enumerate() {
        for (key, file) in [("cert", &c.cert), ("key", &c.key)] {
            let bytes = certs::read(file).map_err(|reason| CompileError {
                path: format!("{path}.certificates[{i}].{key}"),
                reason,
            })?;
            push_framed(&mut contents, &bytes);
        }
    }
    Ok(contents)
}

/// `bytes` as the one frame of a one-file watch.
fn framed(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    push_framed(&mut out, bytes);
    out
}

/// Builds the SNI table from the files' `contents` (as framed by [`read_all`]).
fn build_table(
    sources: &[CertificateConfig],
    contents: &[u8],
    path: &str,
) -> Result<CertTable, CompileError> {
    let files = frames(contents);
    let mut default = None;
    let mut exact = BTreeMap::new();
    let mut wildcard = BTreeMap::new();
    for (i, c) in sources.iter().enumerate() {
        let at = format!("{path}.certificates[{i}]");
        let fail = |key: &str, reason: String| CompileError {
            path: format!("{at}.{key}"),
            reason,
        };
        let (Some(cert_pem), Some(key_pem)) = (files.get(2 * i), files.get(2 * i + 1)) else {
            return Err(fail("cert", "certificate files went missing".to_owned()));
        };
        let chain = certs::chain(cert_pem, &c.cert).map_err(|r| fail("cert", r))?;
        let key = certs::key(key_pem, &c.key).map_err(|r| fail("key", r))?;
        let checked = certs::certified(chain, key, &c.cert, &c.key, &c.server_names)
            .map_err(|e| fail(if e.in_key { "key" } else { "cert" }, e.reason))?;
        let names = if c.server_names.is_empty() {
            checked.dns_names.clone()
        } else {
            c.server_names
                .iter()
                .map(|n| n.to_ascii_lowercase())
                .collect()
        };
        for name in names {
            let target = match name.strip_prefix("*.") {
                Some(suffix) => (&mut wildcard, suffix.to_owned()),
                None => (&mut exact, name),
            };
            // The first certificate to claim a name keeps it.
            target
                .0
                .entry(target.1)
                .or_insert_with(|| Arc::clone(&checked.key));
        }
        default.get_or_insert_with(|| Arc::clone(&checked.key));
    }
    let default = default.ok_or_else(|| CompileError {
        path: format!("{path}.certificates"),
        reason: "no certificate".to_owned(),
    })?;
    Ok(CertTable {
        default,
        exact,
        wildcard,
    })
}

// === impl CertTable ===

impl CertTable {
    /// The certificate for server name `sni` (already lower case), or the default.
    fn pick(&self, sni: Option<&str>) -> Arc<CertifiedKey> {
        let found = sni.and_then(|name| {
            self.exact.get(name).or_else(|| {
                let (_, parent) = name.split_once('.')?;
                self.wildcard.get(parent)
            })
        });
        Arc::clone(found.unwrap_or(&self.default))
    }
}

// === impl SniResolver ===

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let table = self.table.load();
        Some(match hello.server_name() {
            Some(name) if name.bytes().any(|b| b.is_ascii_uppercase()) => {
                table.pick(Some(&name.to_ascii_lowercase()))
            }
            name => table.pick(name),
        })
    }
}

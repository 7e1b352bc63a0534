//! The trust anchors of a cluster that names no `ca`: the operating system's store (`roots:
//! system`, the default, like HAProxy's `@system-ca`) or Mozilla's list compiled into weir
//! (`roots: webpki`).
//!
//! The system store is read with `rustls-native-certs` (which honours `SSL_CERT_FILE` and
//! `SSL_CERT_DIR`) once it is first asked for (by [`warm`] or a compile), then kept for the life of the process:
//! every cluster and every reload shares one `Arc<RootCertStore>`, so parsing a few hundred
//! certificates happens once. A store that cannot be read or holds no usable certificate is not
//! kept, and the compile that asked for it fails, so a reload keeps the config that serves and
//! a later reload (after `ca-certificates` is installed) tries again.
//!
//! Reading and parsing the store is blocking work (a few milliseconds to tens of them on a busy
//! machine), and a compile can run on a runtime worker (`POST /reload`, `SIGHUP`). So [`warm`]
//! reads it on a thread of its own when the proxy starts, and a compile that needs it before
//! that thread is done hands its worker's other tasks to another worker while it reads
//! (`block_in_place`), when the runtime has another worker; on a current-thread runtime
//! (`--threads 1`) it can only wait, which warming makes a start-up-only case.

use std::sync::{Arc, Once, OnceLock};

use rustls::RootCertStore;
use rustls_native_certs::CertificateResult;
use tokio::runtime::{Handle, RuntimeFlavor};

/// The system store once it loaded.
static SYSTEM: OnceLock<Arc<RootCertStore>> = OnceLock::new();
/// Held while the system store is read, so a compile that needs it while [`warm`]'s thread
/// reads it waits for that read instead of doing it twice.
static LOADING: parking_lot::Mutex<()> = parking_lot::const_mutex(());
/// Set once [`warm`] started its thread.
static WARMING: Once = Once::new();
/// Mozilla's store as rustls wants it, built on first use.
static WEBPKI: OnceLock<Arc<RootCertStore>> = OnceLock::new();

/// The operating system's roots (or those of `SSL_CERT_FILE` / `SSL_CERT_DIR`), read on first
/// use and shared afterwards. The error says what was tried and what to do. Does not block a
/// worker of a multi-threaded runtime; see the module docs.
pub(crate) fn system() -> Result<Arc<RootCertStore>, String> {
    match SYSTEM.get() {
        Some(store) => Ok(Arc::clone(store)),
        None => off_worker(load),
    }
}

/// Starts reading the system store on a thread of its own, once per process, so that the
/// first compile needing it finds it ready. A store that cannot be read is only logged at
/// debug here: the compile that needs it says why.
pub(crate) fn warm() {
    WARMING.call_once(|| {
        if SYSTEM.get().is_some() {
            return;
        }
        let spawned = std::thread::Builder::new()
            .name("weir-roots".to_owned())
            .spawn(|| {
                if let Err(error) = load() {
                    tracing::debug!(%error, "the system certificate store is not read ahead");
                }
            });
        if let Err(error) = spawned {
            tracing::debug!(%error, "the system certificate store is not read ahead");
        }
    });
}

/// Reads the system store unless another thread did meanwhile.
fn load() -> Result<Arc<RootCertStore>, String> {
    let _loading = LOADING.lock();
    if let Some(store) = SYSTEM.get() {
        return Ok(Arc::clone(store));
    }
    // Name what was read: the variables replace the platform's store when set.
    let from: Vec<String> = ["SSL_CERT_FILE", "SSL_CERT_DIR"]
        .into_iter()
        .filter_map(|v| Some(format!("{v}={}", std::env::var_os(v)?.to_string_lossy())))
        .collect();
    let what = match from.is_empty() {
        true => "the system certificate store".to_owned(),
        false => format!("the system certificate store ({})", from.join(", ")),
    };
    let store = Arc::new(store_of(rustls_native_certs::load_native_certs(), &what)?);
    tracing::info!(
        roots = store.len(),
        "loaded the system certificate store for TLS to endpoints"
    );
    Ok(Arc::clone(SYSTEM.get_or_init(|| store)))
}

/// Runs the blocking `work` so that it does not hold up other tasks: through `block_in_place`
/// on a worker of a multi-threaded runtime, which then hands its other tasks to another
/// worker. Elsewhere (a current-thread runtime, where `block_in_place` would panic; a plain
/// or blocking-pool thread) it runs right here.
fn off_worker<R>(work: impl FnOnce() -> R) -> R {
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// Mozilla's root store compiled into weir.
pub(crate) fn webpki() -> Arc<RootCertStore> {
    Arc::clone(WEBPKI.get_or_init(|| {
        Arc::new(RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        })
    }))
}

/// The roots in a CA bundle `file` and/or a hashed certificate directory `dir`, read the way
/// the system store is (the loader behind [`system`], with explicit paths).
#[cfg(test)]
pub(crate) fn from_paths(
    file: Option<&std::path::Path>,
    dir: Option<&std::path::Path>,
) -> Result<RootCertStore, String> {
    let what = match (file, dir) {
        (Some(f), _) => f.display().to_string(),
        (None, Some(d)) => d.display().to_string(),
        (None, None) => "no path".to_owned(),
    };
    store_of(rustls_native_certs::load_certs_from_paths(file, dir), &what)
}

/// A root store of the usable certificates of `found`; an error when there is none.
fn store_of(found: CertificateResult, what: &str) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    let (added, _ignored) = store.add_parsable_certificates(found.certs);
    if added > 0 {
        for error in &found.errors {
            tracing::warn!(%error, "part of {what} could not be read; the rest is used");
        }
        return Ok(store);
    }
    let errors: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
    let why = if errors.is_empty() {
        "it holds no usable CA certificate".to_owned()
    } else {
        errors.join("; ")
    };
    Err(format!(
        "{what} cannot be used ({why}); install the ca-certificates package, point SSL_CERT_FILE at a PEM bundle, give the cluster a `ca`, or use `roots: webpki`"
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test")]

    use super::*;

    /// A fresh self-signed CA certificate in PEM.
    fn ca_pem() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn a_bundle_file_becomes_a_store() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bundle.pem");
        std::fs::write(&file, format!("{}{}", ca_pem(), ca_pem())).unwrap();
        let store = from_paths(Some(&file), None).unwrap();
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn a_missing_or_empty_bundle_is_an_error_that_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let e = from_paths(Some(&missing), None).unwrap_err();
        assert!(
            e.contains("missing.pem") && e.contains("ca-certificates"),
            "{e}"
        );
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no certificates here\n").unwrap();
        let e = from_paths(Some(&empty), None).unwrap_err();
        assert!(e.contains("no usable CA certificate"), "{e}");
        assert!(e.contains("roots: webpki"), "{e}");
    }

    /// Needs the machine's store (`scripts/test` installs `ca-certificates`).
    #[test]
    fn the_system_store_is_read_once_and_shared() {
        let first = system().unwrap();
        assert!(!first.is_empty());
        assert!(Arc::ptr_eq(&first, &system().unwrap()));
    }

    /// Read ahead on a thread of its own, then shared with every compile.
    #[test]
    fn warming_reads_the_system_store_ahead() {
        let start = std::time::Instant::now();
        warm();
        warm();
        let deadline = start + std::time::Duration::from_secs(30);
        while SYSTEM.get().is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "the system store was not read ahead"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        println!("system store ready {:?} after warm()", start.elapsed());
        assert!(Arc::ptr_eq(SYSTEM.get().unwrap(), &system().unwrap()));
    }

    /// On a worker of a multi-threaded runtime, the blocking work lets the worker's other
    /// tasks run elsewhere: with one worker, a task queued behind it still runs while it waits.
    #[test]
    fn blocking_work_on_a_worker_does_not_hold_up_its_tasks() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let ran = rt.block_on(async {
            tokio::spawn(async {
                let (tx, rx) = std::sync::mpsc::channel();
                tokio::spawn(async move { tx.send(()).unwrap() });
                off_worker(|| rx.recv_timeout(std::time::Duration::from_secs(10)).is_ok())
            })
            .await
            .unwrap()
        });
        assert!(ran, "the other task did not run while the work blocked");
    }

    /// A current-thread runtime (`--threads 1`) cannot move its tasks: the work runs in place
    /// instead of panicking in `block_in_place`.
    #[tokio::test(flavor = "current_thread")]
    async fn blocking_work_on_a_current_thread_runtime_runs_in_place() {
        assert_eq!(off_worker(|| 7), 7);
        assert_eq!(
            tokio::task::spawn_blocking(|| off_worker(|| 8))
                .await
                .unwrap(),
            8
        );
    }

    #[test]
    fn webpki_roots_are_shared() {
        assert!(Arc::ptr_eq(&webpki(), &webpki()));
        assert!(webpki().len() > 100);
    }
}

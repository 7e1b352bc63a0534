//! `weir run` and `weir check`: load a config, then serve it or just validate it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use weir::upgrade::{self, UpgradeSocket};
use weir::{Inherited, Weir};

/// Validates `path` as `weir run` would, without binding anything.
pub(crate) fn check(path: &Path) -> anyhow::Result<()> {
    let config = weir::check_file(path)?;
    let c = config.config();
    let routes: usize = c.listeners.iter().map(|l| l.routes.len()).sum();
    println!(
        "{}: ok ({} listeners, {} routes, {} clusters)",
        path.display(),
        c.listeners.len(),
        routes,
        c.clusters.len()
    );
    Ok(())
}

/// How `weir run` runs, besides its config file.
#[derive(Debug, Default)]
pub(crate) struct RunOptions {
    /// Reload when the file changes, checking this often.
    pub(crate) watch: Option<Duration>,
    /// Wait for upgrades on this Unix socket.
    pub(crate) upgrade_socket: Option<PathBuf>,
    /// Take over from the weir waiting on this Unix socket.
    pub(crate) takeover: Option<PathBuf>,
    /// How long in-flight work may take to finish when stopping (`--drain-timeout`); the
    /// running config's `shutdown.drain_timeout` when `None`.
    pub(crate) drain_timeout: Option<Duration>,
}

/// Serves `path` until SIGINT or SIGTERM — then keeps serving for the config's
/// `shutdown.ready_delay` while `/ready` answers 503 — or until a new weir took over
/// (`upgrade_socket`, no delay), then drains for up to the drain timeout (`--drain-timeout`, else the running config's
/// `shutdown.drain_timeout`, 30 s by default). `SIGHUP`, `POST /reload` on the admin API and
/// (with `watch`) a change of the file reload it; a config that fails to load, validate or
/// compile is logged with the same precise error as `weir check` and the old one keeps
/// serving. `SIGUSR1` reopens the access log file (logrotate's `postrotate`). With `takeover`,
/// the listening sockets come from the running weir, which drains once this one serves.
pub(crate) async fn run(path: &Path, options: RunOptions) -> anyhow::Result<()> {
    let (inherited, handover) = match &options.takeover {
        Some(from) => {
            let (inherited, handover) = upgrade::take_over(from)
                .await
                .with_context(|| format!("taking over from the weir at {}", from.display()))?;
            (inherited, Some(handover))
        }
        None => (Inherited::default(), None),
    };
    // Everything that can fail happens before `ready`; on failure the handover is dropped
    // unanswered and the old weir keeps serving.
    let mut upgrades = match (&options.upgrade_socket, &handover) {
        (Some(p), Some(_)) => Some(UpgradeSocket::bind_beside(p)?),
        (Some(p), None) => Some(UpgradeSocket::bind(p)?),
        (None, _) => None,
    };
    let weir = Weir::start_file_with(path, inherited).await?;
    if let Some(handover) = handover {
        // From here on this weir serves whatever happens: exiting would leave nobody.
        match handover.ready().await {
            Ok(()) => tracing::info!("took over; the old weir drains"),
            Err(e) => tracing::warn!("the old weir did not acknowledge the takeover: {e:#}"),
        }
        if let (Some(u), Some(p)) = (&mut upgrades, &options.upgrade_socket)
            && let Err(e) = u.publish(p)
        {
            tracing::error!("{e:#}; upgrades wait on {} instead", u.path().display());
        }
    }
    // Installed before the addresses are printed, so a SIGHUP sent after seeing them reloads
    // and a SIGTERM drains (rather than killing the process outright).
    let stop = stop_signals()?;
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler")?;
    let mut usr1 = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())
        .context("installing the SIGUSR1 handler")?;
    for (name, addr) in weir.proxy().listener_addrs() {
        println!("listener {name} on http://{addr}");
    }
    if let Some(addr) = weir.admin_addr() {
        println!("admin API on http://{addr}/clusters");
    }
    if let Some(u) = &upgrades {
        println!("upgrade socket on {}", u.path().display());
    }
    if let Some(interval) = options.watch {
        weir.watch(interval);
    }
    tokio::pin!(stop);
    {
        let handed_over = async {
            match &upgrades {
                Some(u) => u.handover(|| weir.sockets()).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(handed_over);
        loop {
            tokio::select! {
                () = &mut stop => break,
                r = &mut handed_over => { r?; weir.handed_over(); break; }
                // Outcomes are logged and counted by the reload itself.
                _ = hangup.recv() => { let _ = weir.reload_file(); }
                _ = usr1.recv() => match weir.reopen_access_log().await {
                    Ok(()) => tracing::info!("access log reopened"),
                    Err(e) => tracing::error!(error = %e, "reopening the access log failed; still writing to the old file"),
                },
            }
        }
    }
    // Read now: a reload may have changed it since the start.
    let grace = options
        .drain_timeout
        .unwrap_or_else(|| weir.drain_timeout());
    tracing::info!(?grace, "shutting down: draining in-flight requests");
    // No takeover once the shutdown began: closing the upgrade socket makes a new weir's
    // `--takeover` fail at once instead of waiting for an answer that never comes.
    drop(upgrades);
    // During the shutdown a SIGHUP is refused (and logged) rather than left unanswered, a
    // second SIGTERM/SIGINT ends the ready delay, and SIGUSR1 still reopens the access log.
    let reloads = weir.reload_handle();
    let cut = weir.ready_delay_cutter();
    let logs = weir.proxy().access_logs().clone();
    let again = stop_signals()?;
    tokio::pin!(again);
    let shutdown = weir.shutdown(grace);
    tokio::pin!(shutdown);
    let drained = loop {
        tokio::select! {
            biased;
            drained = &mut shutdown => break drained,
            () = &mut again, if !cut.is_cancelled() => {
                tracing::info!("second stop signal: ending the ready delay");
                cut.cancel();
            }
            _ = hangup.recv() => { let _ = reloads.reload_file(); }
            _ = usr1.recv() => match reopen(&logs).await {
                Ok(()) => tracing::info!("access log reopened"),
                Err(e) => tracing::error!(error = %e, "reopening the access log failed; still writing to the old file"),
            },
        }
    };
    if !drained {
        tracing::warn!(
            ?grace,
            "some connections were still open after the drain timeout; closed them"
        );
    }
    Ok(())
}

/// Reopens the current access log, if any (`SIGUSR1`, after logrotate renamed the file).
async fn reopen(logs: &weir_proxy::AccessLogs) -> std::io::Result<()> {
    match logs.current() {
        Some(log) => log.reopen().await,
        None => Ok(()),
    }
}

/// Installs the SIGINT (Ctrl-C) and SIGTERM handlers now — from here on either signal stops
/// weir gracefully instead of killing it — and returns what resolves when one arrives.
pub(crate) fn stop_signals() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}

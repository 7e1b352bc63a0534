//! `weir run` and `weir check`: load a config, then serve it or just validate it.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use weir::Weir;
use weir_proxy::Snapshot;

/// How long in-flight requests may take to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Validates `path` as `weir run` would, without binding anything.
pub(crate) fn check(path: &Path) -> anyhow::Result<()> {
    let config = weir_config::load_file(path)?;
    Snapshot::compile(&config, None).with_context(|| format!("{}", path.display()))?;
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

/// Serves `path` until SIGINT or SIGTERM, then drains.
pub(crate) async fn run(path: &Path) -> anyhow::Result<()> {
    let config = weir_config::load_file(path)?;
    let weir = Weir::start(&config).await?;
    for (name, addr) in weir.proxy().listener_addrs() {
        println!("listener {name} on http://{addr}");
    }
    if let Some(addr) = weir.admin_addr() {
        println!("admin API on http://{addr}/clusters");
    }
    wait_for_signal().await?;
    tracing::info!("shutting down: draining in-flight requests");
    if !weir.shutdown(SHUTDOWN_GRACE).await {
        tracing::warn!(grace = ?SHUTDOWN_GRACE, "some connections were still open after the grace period");
    }
    Ok(())
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub(crate) async fn wait_for_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
        _ = term.recv() => {}
    }
    Ok(())
}

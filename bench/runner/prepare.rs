//! What `weir-bench all` needs before it measures: the peers, load generators and the charts'
//! font from Debian, and weir built in release.
//!
//! The build runs without the variables `cargo run` set for this program (`CARGO_PKG_NAME`,
//! `CARGO_MANIFEST_DIR`, …): `ring`'s build script declares `rerun-if-env-changed` on them, so
//! passing weir-bench's values on made the nested `cargo build` rebuild ring, rustls and
//! everything above them on every run, and the next `cargo run` rebuild them back.

use std::path::Path;
use std::process::Command;

use anyhow::bail;

/// The font the charts are drawn with (Debian's `fonts-dejavu-core`).
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// Installs the peers, load generators and the charts' font from Debian when one is missing.
pub(crate) fn install(no_install: bool) -> anyhow::Result<()> {
    let missing = ["nginx", "haproxy", "wrk", "h2load", "taskset"]
        .iter()
        .any(|c| !sh(&format!("command -v {c} >/dev/null")))
        || !Path::new("/usr/lib/nginx/modules/ngx_stream_module.so").exists()
        || !Path::new(FONT).exists();
    if !missing {
        return Ok(());
    }
    if no_install {
        bail!("nginx, haproxy, wrk, h2load, nginx's stream module or {FONT} is missing");
    }
    eprintln!("installing nginx haproxy wrk nghttp2-client libnginx-mod-stream fonts-dejavu-core");
    if !sh(
        "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y \
            nginx haproxy wrk nghttp2-client libnginx-mod-stream util-linux fonts-dejavu-core",
    ) {
        bail!("apt-get install failed");
    }
    Ok(())
}

/// `cargo build --release -p weir` in `root`, in the environment the user ran `cargo` in.
pub(crate) fn build_weir(root: &Path) -> anyhow::Result<()> {
    eprintln!("building weir (release)");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--release", "-p", "weir"])
        .current_dir(root);
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(set_by_cargo_run) {
            cmd.env_remove(name);
        }
    }
    if !cmd.status()?.success() {
        bail!("cargo build --release -p weir failed");
    }
    Ok(())
}

/// Whether `cargo run` sets this variable for the program it runs (the package's and the
/// target's facts), as opposed to the user's own settings (`CARGO_HOME`, `CARGO_TARGET_DIR`,
/// `RUSTFLAGS`, …) that the nested build must keep.
fn set_by_cargo_run(name: &str) -> bool {
    name.starts_with("CARGO_PKG_")
        || name.starts_with("CARGO_MANIFEST_")
        || matches!(
            name,
            "CARGO_CRATE_NAME" | "CARGO_BIN_NAME" | "CARGO_PRIMARY_PACKAGE" | "OUT_DIR"
        )
}

fn sh(script: &str) -> bool {
    Command::new("sh")
        .args(["-c", script])
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_variables_of_cargo_run_are_dropped() {
        for name in [
            "CARGO_PKG_NAME",
            "CARGO_PKG_VERSION_MAJOR",
            "CARGO_MANIFEST_DIR",
            "CARGO_MANIFEST_PATH",
            "CARGO_CRATE_NAME",
            "CARGO_BIN_NAME",
        ] {
            assert!(set_by_cargo_run(name), "{name}");
        }
        for name in [
            "CARGO",
            "CARGO_HOME",
            "CARGO_TARGET_DIR",
            "RUSTFLAGS",
            "PATH",
        ] {
            assert!(!set_by_cargo_run(name), "{name}");
        }
    }
}

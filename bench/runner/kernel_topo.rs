//! The network namespaces and veth pairs of `weir-bench kernel` (client, balancer, endpoint),
//! the commands that build them, and the waits the runs share (Ctrl-C aware). Everything made
//! here is removed again on drop, even when a run fails.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::kernel::{DIRECT, ENDPOINTS, VIP_ADDR};
use crate::orchestrate::Proc;

/// The client, balancer and endpoint namespaces; deleted (with their veths, XDP programs and
/// nftables tables) on drop.
pub(crate) struct Topology {
    pub(crate) client: Ns,
    pub(crate) lb: Ns,
    pub(crate) endpoint: Ns,
}

impl Topology {
    pub(crate) fn new() -> anyhow::Result<Self> {
        let pid = std::process::id();
        let client = Ns::new(format!("wkb-c-{pid}"))?;
        let lb = Ns::new(format!("wkb-lb-{pid}"))?;
        let endpoint = Ns::new(format!("wkb-e-{pid}"))?;
        veth(&lb, "xc", "10.78.1.1/24", &client, "eth0", "10.78.1.2/24")?;
        veth(
            &lb,
            "xe",
            "10.78.10.1/24",
            &endpoint,
            "eth0",
            "10.78.10.2/24",
        )?;
        veth(
            &client,
            "ed",
            "10.78.20.2/24",
            &endpoint,
            "ed",
            &format!("{DIRECT}/24"),
        )?;
        // XDP redirects into a veth only reach its peer when the peer runs NAPI (an XDP
        // program, or GRO on), and a redirected frame loses the "checksum still partial" mark
        // of a local sender's packet, so senders compute full checksums (transmit checksum
        // offload off). Set on every end whatever the plane, so all planes pay the same.
        for (ns, dev) in [
            (&client, "eth0"),
            (&client, "ed"),
            (&endpoint, "eth0"),
            (&endpoint, "ed"),
        ] {
            ns.exec(&["ethtool", "-K", dev, "gro", "on", "tx", "off"])?;
        }
        for extra in &ENDPOINTS[1..] {
            endpoint.ip(&["addr", "add", &format!("{extra}/24"), "dev", "eth0"])?;
        }
        client.ip(&["route", "add", "default", "via", "10.78.1.1"])?;
        endpoint.ip(&["route", "add", "default", "via", "10.78.10.1"])?;
        // The userspace proxy binds the VIPs; the kernel planes never look at this address.
        lb.ip(&["addr", "add", &format!("{VIP_ADDR}/32"), "dev", "lo"])?;
        lb.exec(&["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"])?;
        // Neighbour entries resolved once, so the first run does not measure ARP.
        let _ = client.exec(&["ping", "-c1", "-W1", "10.78.1.1"]);
        let _ = client.exec(&["ping", "-c1", "-W1", DIRECT]);
        for ep in ENDPOINTS {
            let _ = lb.exec(&["ping", "-c1", "-W1", ep]);
        }
        Ok(Self {
            client,
            lb,
            endpoint,
        })
    }
}

/// A named network namespace, deleted on drop.
pub(crate) struct Ns {
    pub(crate) name: String,
}

impl Ns {
    pub(crate) fn new(name: String) -> anyhow::Result<Self> {
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        cmd("ip", &["netns", "add", &name])?;
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub(crate) fn ip(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        cmd("ip", &all)
    }

    /// Runs `args` inside the namespace; its stdout.
    pub(crate) fn exec(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut all = vec!["netns", "exec", self.name.as_str()];
        all.extend_from_slice(args);
        cmd("ip", &all)
    }

    /// Starts `program args` inside the namespace pinned to `cpu`, stdout piped.
    pub(crate) fn spawn(
        &self,
        cpu: &str,
        program: &Path,
        args: &[&str],
        log: &Path,
    ) -> anyhow::Result<Proc> {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name, "taskset", "-c", cpu])
            .arg(program)
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log)?)
            .spawn()
            .with_context(|| format!("starting {} in {}", program.display(), self.name))?;
        Ok(Proc { child })
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

pub(crate) fn veth(
    a: &Ns,
    a_name: &str,
    a_addr: &str,
    b: &Ns,
    b_name: &str,
    b_addr: &str,
) -> anyhow::Result<()> {
    a.ip(&[
        "link", "add", a_name, "type", "veth", "peer", "name", b_name, "netns", &b.name,
    ])?;
    a.ip(&["addr", "add", a_addr, "dev", a_name])?;
    a.ip(&["link", "set", a_name, "up"])?;
    b.ip(&["addr", "add", b_addr, "dev", b_name])?;
    b.ip(&["link", "set", b_name, "up"])?;
    Ok(())
}

pub(crate) fn cmd(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub(crate) fn sh_ok(script: &str) -> bool {
    Command::new("sh")
        .args(["-c", script])
        .status()
        .is_ok_and(|s| s.success())
}

pub(crate) fn crate_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2))
            == Some("0")
    })
}

/// Sets `stop` on ctrl-c, so the run in progress ends with an error and every guard (weir,
/// the flood, the namespaces) is dropped.
pub(crate) fn watch_ctrl_c(stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        if rt.block_on(tokio::signal::ctrl_c()).is_ok() {
            stop.store(true, Ordering::SeqCst);
        }
    });
}

/// Sleeps `d`, failing early when ctrl-c was pressed.
pub(crate) fn sleep(d: Duration, stop: &AtomicBool) -> anyhow::Result<()> {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if stop.load(Ordering::SeqCst) {
            bail!("interrupted");
        }
        std::thread::sleep(Duration::from_millis(20).min(end - Instant::now()));
    }
    Ok(())
}

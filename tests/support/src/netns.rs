//! Network namespaces and veth pairs for tests of weir's kernel data planes (root only).
//!
//! [`Netns`] creates a named namespace with `ip netns add` and deletes it on drop, which also
//! destroys its interfaces (and any XDP program attached to them), so a failing test leaves
//! nothing behind. [`Netns::spawn`] runs a closure on a thread that has entered the namespace:
//! sockets it opens, and threads and processes it starts, live there.

#![allow(
    clippy::panic,
    reason = "test support: a failed setup step is a failed test"
)]

use std::fs::File;
use std::process::Command;
use std::thread::JoinHandle;

use nix::sched::{CloneFlags, setns};

/// Whether this process runs as root (privileged tests need it).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("Uid:"))?.to_owned();
            line.split_whitespace().nth(2).map(|u| u == "0")
        })
        .unwrap_or(false)
}

/// The privileged-test rule: `true` as root; otherwise prints why `test` is skipped and
/// returns `false`, or panics when `WEIR_REQUIRE_PRIVILEGED=1` (CI) requires it to run.
pub fn privileged(test: &str) -> bool {
    if is_root() {
        return true;
    }
    let required = std::env::var("WEIR_REQUIRE_PRIVILEGED").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "{test}: needs root and WEIR_REQUIRE_PRIVILEGED=1 requires it"
    );
    eprintln!("skipping {test}: needs root (network namespaces)");
    false
}

/// Runs `ip` (or any command) with `args`, panicking with its stderr when it fails.
pub fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A named network namespace, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates namespace `name` (deleting a stale one first) with its loopback up.
    pub fn new(name: &str) -> Self {
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        run("ip", &["netns", "add", name]);
        let ns = Self {
            name: name.to_owned(),
        };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n <name> args…`.
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        run("ip", &all);
    }

    /// Writes `value` to the sysctl `key` (e.g. `net.ipv4.ip_forward`) inside the namespace,
    /// through `/proc/sys` from a thread that entered it (no `sysctl` binary needed).
    pub fn sysctl(&self, key: &str, value: &str) {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        let value = value.to_owned();
        self.spawn(move || {
            std::fs::write(&path, value).unwrap_or_else(|e| panic!("write {path}: {e}"));
        })
        .join()
        .unwrap_or_else(|_| panic!("sysctl {key} failed"));
    }

    /// Moves the calling thread into the namespace.
    pub fn enter(&self) {
        enter(&self.name);
    }

    /// Runs `f` on a new thread inside the namespace.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> JoinHandle<T> {
        let name = self.name.clone();
        std::thread::spawn(move || {
            enter(&name);
            f()
        })
    }
}

fn enter(name: &str) {
    let file = File::open(format!("/run/netns/{name}"))
        .unwrap_or_else(|e| panic!("open netns {name}: {e}"));
    setns(&file, CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| panic!("setns {name}: {e}"));
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Creates a veth pair, `a_name` in `a` and `b_name` in `b`, both up, with the given
/// `addr/prefix` addresses.
pub fn veth(a: &Netns, a_name: &str, a_addr: &str, b: &Netns, b_name: &str, b_addr: &str) {
    a.ip(&[
        "link",
        "add",
        a_name,
        "type",
        "veth",
        "peer",
        "name",
        b_name,
        "netns",
        b.name(),
    ]);
    a.ip(&["addr", "add", a_addr, "dev", a_name]);
    a.ip(&["link", "set", a_name, "up"]);
    b.ip(&["addr", "add", b_addr, "dev", b_name]);
    b.ip(&["link", "set", b_name, "up"]);
}

//! A real single-member `etcd` server for discovery tests, on free loopback ports with a
//! throwaway data directory, written to with `etcdctl`.
//!
//! Both come from Debian packages (`etcd-server`, `etcd-client`) that `scripts/test` installs.
//! When `etcd` is not on `PATH` the tests skip with a printed reason, except under `CI=true`,
//! where a missing peer is a failure. The server can be killed and started again on the same
//! ports and data directory, to test that a client's watch resumes.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::process::{Child, Command};

/// A running (or killed) etcd server; killed and its data directory removed on drop.
#[derive(Debug)]
pub struct Etcd {
    dir: PathBuf,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
    /// `user:password` for etcdctl once authentication is on.
    user: Option<String>,
}

// === impl Etcd ===

impl Etcd {
    /// Starts etcd and waits until it answers; `None` (after printing why) when `etcd` or
    /// `etcdctl` is not installed, unless `CI=true`, where that panics.
    pub async fn start() -> Option<Self> {
        for tool in ["etcd", "etcdctl"] {
            if std::process::Command::new(tool)
                .arg("--version")
                .output()
                .is_err()
            {
                let why = format!(
                    "{tool} is not installed (scripts/test installs the etcd-server and \
                     etcd-client packages)"
                );
                assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
                eprintln!("skipping: {why}");
                return None;
            }
        }
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "weir-etcd-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut etcd = Self {
            dir,
            client_port: free_port(),
            peer_port: free_port(),
            child: None,
            user: None,
        };
        etcd.restart().await;
        Some(etcd)
    }

    /// The client URL, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// Kills the server (SIGKILL), as a crash or a lost machine would.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Starts the server (again) on the same ports and data directory and waits until it
    /// answers.
    pub async fn restart(&mut self) {
        self.kill().await;
        let (client, peer) = (
            format!("http://127.0.0.1:{}", self.client_port),
            format!("http://127.0.0.1:{}", self.peer_port),
        );
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("etcd.log"))
            .unwrap();
        let child = Command::new("etcd")
            .args(["--name", "weir-test", "--data-dir"])
            .arg(self.dir.join("data"))
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &format!("weir-test={peer}")])
            .args(["--logger", "zap", "--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let mut up = false;
        while !up && tokio::time::Instant::now() < deadline {
            up = self.try_ctl(&["endpoint", "health"]).await.is_ok();
            if !up {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        assert!(
            up,
            "etcd did not come up on {client}; see {}",
            self.dir.join("etcd.log").display()
        );
    }

    /// Turns authentication on, with `root` as the one user (etcd needs a root user for it);
    /// `etcdctl` calls from here on authenticate as root.
    pub async fn enable_auth(&mut self, password: &str) {
        self.ctl(&[
            "user",
            "add",
            "root",
            &format!("--new-user-password={password}"),
        ])
        .await;
        self.ctl(&["auth", "enable"]).await;
        self.user = Some(format!("root:{password}"));
    }

    /// `etcdctl put key value`.
    pub async fn put(&self, key: &str, value: &str) {
        self.ctl(&["put", key, value]).await;
    }

    /// `etcdctl del key`.
    pub async fn delete(&self, key: &str) {
        self.ctl(&["del", key]).await;
    }

    async fn ctl(&self, args: &[&str]) {
        let result = self.try_ctl(args).await;
        assert!(result.is_ok(), "etcdctl {args:?}: {result:?}");
    }

    async fn try_ctl(&self, args: &[&str]) -> Result<(), String> {
        let mut command = Command::new("etcdctl");
        command
            .arg(format!("--endpoints={}", self.url()))
            .args(["--dial-timeout=2s", "--command-timeout=5s"]);
        if let Some(user) = &self.user {
            command.arg(format!("--user={user}"));
        }
        let out = command
            .args(args)
            .output()
            .await
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A loopback port that was free a moment ago (etcd needs a concrete port to listen on).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

//! A real peer behind a TCP listener: `redis-server`, driven by `redis-cli` and
//! `redis-benchmark` through weir (Debian packages; `scripts/test` installs them).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "end-to-end test: a panic is a failed test"
)]

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use weir_e2e::TestProxy;

/// A redis-server on a free loopback port, killed on drop.
pub(crate) struct Redis {
    child: Child,
    pub(crate) addr: SocketAddr,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn require(tool: &str) {
    if Command::new(tool).arg("--version").output().is_err() {
        panic!(
            "{tool} is required (scripts/test installs the redis-server and redis-tools packages)"
        );
    }
}

pub(crate) async fn start_redis() -> Redis {
    require("redis-server");
    // redis-server needs a concrete port: take a free one from the OS.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let up = weir_test_support::wait_until(Duration::from_secs(10), || {
        std::net::TcpStream::connect(addr).is_ok()
    })
    .await;
    assert!(up, "redis-server did not start on {addr}");
    Redis { child, addr }
}

fn redis_cli(addr: SocketAddr, args: &[&str]) -> String {
    redis_cli_stdin(addr, args, b"")
}

/// Runs redis-cli; with `-x` its last argument is read from `stdin`.
fn redis_cli_stdin(addr: SocketAddr, args: &[&str], stdin: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("redis-cli")
        .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "redis-cli {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cli_and_benchmark_through_weir() {
    require("redis-cli");
    let redis = start_redis().await;
    let p = TestProxy::start(&format!(
        "listeners:
  - name: redis
    address: 127.0.0.1:0
    protocol: tcp
    cluster: redis
clusters:
  - name: redis
    endpoints: [ {} ]
",
        redis.addr
    ))
    .await;
    let weir = p.addr;
    let cli = tokio::task::spawn_blocking(move || {
        assert_eq!(redis_cli(weir, &["PING"]), "PONG");
        assert_eq!(
            redis_cli(weir, &["SET", "greeting", "hello through weir"]),
            "OK"
        );
        assert_eq!(redis_cli(weir, &["GET", "greeting"]), "hello through weir");
        // A 1 MiB value (sent on stdin: too long for argv) survives the trip byte for byte.
        let big = vec![b'x'; 1 << 20];
        assert_eq!(redis_cli_stdin(weir, &["-x", "SET", "big"], &big), "OK");
        assert_eq!(redis_cli(weir, &["STRLEN", "big"]), "1048576");
        let bench = Command::new("redis-benchmark")
            .args(["-h", "127.0.0.1", "-p", &weir.port().to_string()])
            .args(["-n", "20000", "-c", "20", "-t", "set,get", "-q"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&bench.stdout).into_owned();
        assert!(bench.status.success(), "redis-benchmark failed: {text}");
        text
    })
    .await
    .unwrap();
    println!("redis-benchmark through weir:\n{cli}");
    for cmd in ["SET", "GET"] {
        assert!(
            cli.contains(&format!("{cmd}: ")),
            "no {cmd} result in: {cli}"
        );
    }
    // The value written through weir is in the real server.
    assert_eq!(
        redis_cli(redis.addr, &["GET", "greeting"]),
        "hello through weir"
    );
    // Every benchmark request reached the server and none failed there.
    let stats = redis_cli(redis.addr, &["INFO", "commandstats"]);
    for cmd in ["set", "get"] {
        let line = stats
            .lines()
            .find(|l| l.starts_with(&format!("cmdstat_{cmd}:")))
            .unwrap_or_else(|| panic!("no cmdstat_{cmd} in: {stats}"));
        let field = |name: &str| -> u64 {
            line.split([':', ','])
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .map_or(0, |v| v.parse().unwrap())
        };
        assert!(field("calls") >= 20_000, "{line}");
        assert_eq!(field("failed_calls") + field("rejected_calls"), 0, "{line}");
    }
}

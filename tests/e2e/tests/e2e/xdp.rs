//! `protocol: xdp` and `protocol: nftables` listeners end to end: weir, started from YAML inside
//! a balancer network namespace, loads its XDP program on the veths there (DNAT mode: the
//! program rewrites the destination, and the endpoints' replies on the way back) or installs its
//! nftables table; real TCP connections from a client namespace to the VIP reach endpoint
//! namespaces through it. Checks the shares, that an established flow keeps its endpoint while
//! one is added, that an endpoint its health check marks down gets no new flows, the `/metrics`
//! counters (XDP), and that shutdown detaches the program or deletes the table. The XDP
//! program forwards through the kernel's FIB itself (`bpf_redirect` to the egress veth, both
//! directions); the counters show that path was taken and fallbacks to the kernel stayed rare.
//! Needs root (privileged-test rule); the namespaces go away even when the test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "end-to-end test: a panic is a failed test"
)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use weir::Weir;
use weir_config::ValidatedConfig;
use weir_proxy::SnapshotHandle;
use weir_test_support::netns::{Netns, privileged, veth};

const VIP: &str = "10.77.100.1:80";
const ENDPOINT_PORT: u16 = 8080;
const DEADLINE: Duration = Duration::from_secs(30);

/// Client, balancer and four endpoint namespaces wired through the balancer.
struct Topology {
    client: Netns,
    lb: Netns,
    endpoints: Vec<Netns>,
}

fn topology(tag: &str) -> Topology {
    let pid = std::process::id();
    let client = Netns::new(&format!("w{tag}-c-{pid}"));
    let lb = Netns::new(&format!("w{tag}-lb-{pid}"));
    veth(&lb, "xc", "10.77.1.1/24", &client, "eth0", "10.77.1.2/24");
    client.ip(&["route", "add", "default", "via", "10.77.1.1"]);
    let endpoints = (0..4)
        .map(|i| {
            let ep = Netns::new(&format!("w{tag}-e{i}-{pid}"));
            let net = 10 + i;
            veth(
                &lb,
                &format!("xe{i}"),
                &format!("10.77.{net}.1/24"),
                &ep,
                "eth0",
                &format!("10.77.{net}.2/24"),
            );
            ep.ip(&["route", "add", "default", "via", &format!("10.77.{net}.1")]);
            ep
        })
        .collect();
    lb.sysctl("net.ipv4.ip_forward", "1");
    // The client's and the endpoints' ends send what the balancer redirects and receive it
    // (docs/kernel.md, "What the devices need").
    for ns in std::iter::once(&client).chain(&endpoints) {
        xdp_peer(ns, "eth0");
    }
    Topology {
        client,
        lb,
        endpoints,
    }
}

/// Sets up `dev` in `ns`, a veth end facing the balancer, for XDP redirects (`ethtool -K`):
/// GRO on, so a frame the balancer redirects into the veth is delivered (the receiving end
/// must run NAPI); transmit checksum offload off, so what it sends carries full checksums —
/// a redirected frame loses the "checksum still partial" mark a local stack's packet has.
fn xdp_peer(ns: &Netns, dev: &str) {
    let out = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            ns.name(),
            "ethtool",
            "-K",
            dev,
            "gro",
            "on",
            "tx",
            "off",
        ])
        .output()
        .expect("ethtool (scripts/test installs it)");
    assert!(
        out.status.success(),
        "ethtool -K {dev} gro on tx off: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An endpoint server: answers each connection with its index byte, then echoes.
struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(ns: &Netns, index: u8) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready, is_ready) = mpsc::channel();
        let thread = ns.spawn({
            let stop = Arc::clone(&stop);
            move || {
                let listener = TcpListener::bind(("0.0.0.0", ENDPOINT_PORT)).unwrap();
                listener.set_nonblocking(true).unwrap();
                ready.send(()).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((mut conn, _)) => {
                            conn.set_nonblocking(false).unwrap();
                            std::thread::spawn(move || {
                                let _ = conn.write_all(&[index]);
                                let mut buf = [0u8; 64];
                                while let Ok(n) = conn.read(&mut buf) {
                                    if n == 0 || conn.write_all(&buf[..n]).is_err() {
                                        break;
                                    }
                                }
                            });
                        }
                        // Polls the stop flag between accepts.
                        Err(_) => std::thread::sleep(Duration::from_millis(2)),
                    }
                }
            }
        });
        is_ready.recv().unwrap();
        Self {
            stop,
            thread: Some(thread),
        }
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Which kernel data plane a test drives.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Xdp,
    Nftables,
}

fn config(mode: Mode, endpoints: usize) -> ValidatedConfig {
    let eps: Vec<String> = (0..endpoints)
        .map(|i| format!("{{ address: \"10.77.{}.2:{ENDPOINT_PORT}\" }}", 10 + i))
        .collect();
    let listener = match mode {
        Mode::Xdp => {
            "protocol: xdp\n    xdp: { interfaces: [xc, xe0, xe1, xe2, xe3], forwarding: dnat }"
        }
        Mode::Nftables => "protocol: nftables",
    };
    let yaml = format!(
        "\
admin: {{ address: \"127.0.0.1:0\" }}
listeners:
  - name: fast
    address: \"{VIP}\"
    cluster: web
    {listener}
clusters:
  - name: web
    lb_policy: maglev
    maglev: {{ table_size: 1009 }}
    health_check:
      interval: 100ms
      timeout: 500ms
      healthy_threshold: 1
      unhealthy_threshold: 1
      tcp: {{}}
    endpoints: [ {} ]
",
        eps.join(", ")
    );
    weir_config::load_str(&yaml, "xdp.yaml").unwrap()
}

enum Command {
    Reload(Box<ValidatedConfig>, mpsc::Sender<()>),
    Stop(mpsc::Sender<()>),
}

/// weir running on its own thread inside the balancer namespace.
struct Running {
    commands: tokio::sync::mpsc::UnboundedSender<Command>,
    snapshots: SnapshotHandle,
    admin: SocketAddr,
}

impl Running {
    fn start(lb: &Netns, config: ValidatedConfig) -> Self {
        let (commands, mut inbox) = tokio::sync::mpsc::unbounded_channel();
        let (started, is_started) = mpsc::channel();
        lb.spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let weir = Weir::start(&config).await.unwrap();
                started
                    .send((weir.proxy().snapshots().clone(), weir.admin_addr().unwrap()))
                    .unwrap();
                while let Some(command) = inbox.recv().await {
                    match command {
                        Command::Reload(config, done) => {
                            weir.reload(&config).unwrap();
                            let _ = done.send(());
                        }
                        Command::Stop(done) => {
                            weir.shutdown(Duration::from_secs(1)).await;
                            let _ = done.send(());
                            return;
                        }
                    }
                }
            });
        });
        let (snapshots, admin) = is_started.recv().expect("weir started in the balancer ns");
        Self {
            commands,
            snapshots,
            admin,
        }
    }

    fn reload(&self, config: ValidatedConfig) {
        let (done, is_done) = mpsc::channel();
        let _ = self.commands.send(Command::Reload(Box::new(config), done));
        is_done.recv().unwrap();
    }

    fn stop(&self) {
        let (done, is_done) = mpsc::channel();
        if self.commands.send(Command::Stop(done)).is_ok() {
            let _ = is_done.recv();
        }
    }

    fn healthy(&self) -> Vec<bool> {
        let snapshot = self.snapshots.load();
        snapshot
            .cluster("web")
            .unwrap()
            .endpoints
            .iter()
            .map(|e| e.state.is_healthy())
            .collect()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Connects to the VIP from the client namespace: the endpoint that answered and the stream.
fn connect(client: &Netns) -> JoinHandle<std::io::Result<(u8, TcpStream)>> {
    client.spawn(|| {
        let mut s = TcpStream::connect_timeout(&VIP.parse().unwrap(), Duration::from_secs(3))?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        let mut who = [0u8; 1];
        s.read_exact(&mut who)?;
        Ok((who[0], s))
    })
}

/// `n` short connections from the client namespace, counted per endpoint; failures counted at
/// index 255's place (`failures`).
fn connections(client: &Netns, n: usize) -> ([usize; 4], usize) {
    client
        .spawn(move || {
            let mut counts = [0usize; 4];
            let mut failures = 0;
            for _ in 0..n {
                let once = || -> std::io::Result<u8> {
                    let mut s =
                        TcpStream::connect_timeout(&VIP.parse().unwrap(), Duration::from_secs(3))?;
                    s.set_read_timeout(Some(Duration::from_secs(3)))?;
                    let mut who = [0u8; 1];
                    s.read_exact(&mut who)?;
                    Ok(who[0])
                };
                match once() {
                    Ok(i) => counts[usize::from(i)] += 1,
                    Err(_) => failures += 1,
                }
            }
            (counts, failures)
        })
        .join()
        .unwrap()
}

fn http_get(lb: &Netns, addr: SocketAddr, path: &str) -> String {
    let path = path.to_owned();
    lb.spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    })
    .join()
    .unwrap()
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn xdp_dnat_balances_keeps_flows_and_follows_health() {
    if privileged("xdp_dnat_balances_keeps_flows_and_follows_health") {
        scenario(Mode::Xdp);
    }
}

#[test]
fn nftables_balances_keeps_flows_and_follows_health() {
    if privileged("nftables_balances_keeps_flows_and_follows_health") {
        scenario(Mode::Nftables);
    }
}

fn attached(lb: &Netns) -> bool {
    let link = std::process::Command::new("ip")
        .args(["-n", lb.name(), "link", "show", "xc"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&link.stdout).contains("prog/xdp")
}

fn nft_tables(lb: &Netns) -> String {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", lb.name(), "nft", "list", "tables"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn scenario(mode: Mode) {
    let t = topology(match mode {
        Mode::Xdp => "xdp",
        Mode::Nftables => "nft",
    });
    let mut servers: Vec<Server> = t
        .endpoints
        .iter()
        .enumerate()
        .map(|(i, ns)| Server::start(ns, i as u8))
        .collect();
    let weir = Running::start(&t.lb, config(mode, 3));
    wait_until("the three endpoints healthy", || {
        weir.healthy() == [true; 3]
    });
    match mode {
        Mode::Xdp => assert!(attached(&t.lb), "XDP attached to xc"),
        Mode::Nftables => assert!(nft_tables(&t.lb).contains("table ip weir")),
    }

    // Shares: Maglev over 3 equal endpoints, within ±10 % of a third each.
    let n = 3_000;
    let (counts, failures) = connections(&t.client, n);
    assert_eq!(
        failures, 0,
        "every connection through the VIP answered: {counts:?}"
    );
    for (i, &c) in counts[..3].iter().enumerate() {
        let share = c as f64 / n as f64;
        assert!(
            (share - 1.0 / 3.0).abs() <= 0.1 / 3.0,
            "endpoint {i}: {c} of {n}"
        );
    }

    // A long-lived flow keeps its endpoint while a fourth endpoint is added.
    let (first, mut flow) = connect(&t.client).join().unwrap().unwrap();
    weir.reload(config(mode, 4));
    wait_until("the fourth endpoint healthy", || {
        weir.healthy() == [true; 4]
    });
    wait_until("the fourth endpoint takes new flows", || {
        connections(&t.client, 100).0[3] > 10
    });
    flow.write_all(b"still here").unwrap();
    let mut echo = [0u8; 10];
    flow.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"still here", "the flow stayed on endpoint {first}");
    drop(flow);

    // An endpoint its health check marks down receives no new flows.
    servers[1].stop();
    wait_until("endpoint 1 marked down", || !weir.healthy()[1]);
    // The sync thread applies the change within its interval; then no flow reaches it.
    wait_until("no new flows to endpoint 1", || {
        let (counts, failures) = connections(&t.client, 60);
        counts[1] == 0 && failures == 0
    });
    let (counts, failures) = connections(&t.client, 300);
    assert_eq!((counts[1], failures), (0, 0), "{counts:?}");

    if mode == Mode::Xdp {
        xdp_metrics(&t.lb, weir.admin);
    }
    weir.stop();
    match mode {
        Mode::Xdp => assert!(!attached(&t.lb), "XDP detached on shutdown"),
        Mode::Nftables => assert_eq!(nft_tables(&t.lb), "", "table removed on shutdown"),
    }
    drop(servers);
}

fn xdp_metrics(lb: &Netns, admin: SocketAddr) {
    let metrics = http_get(lb, admin, "/metrics");
    let vip_packets = metrics
        .lines()
        .find(|l| l.starts_with("weir_xdp_vip_packets_total{"))
        .unwrap_or_else(|| panic!("no XDP VIP counter in /metrics:\n{metrics}"));
    let packets: u64 = vip_packets.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(packets > 3_000 * 3, "{vip_packets}");
    // Both directions took the program's FIB path; fallbacks to the kernel (a neighbour not
    // yet resolved) are at most a few first packets.
    let sample = |line_start: &str| -> u64 {
        metrics
            .lines()
            .find(|l| l.starts_with(line_start))
            .unwrap_or_else(|| panic!("no {line_start} in /metrics:\n{metrics}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let redirected = sample("weir_xdp_forwarded_packets_total{path=\"redirect\"}");
    assert!(
        redirected >= packets,
        "redirected {redirected} of {packets}"
    );
    assert_eq!(
        sample("weir_xdp_forwarded_packets_total{path=\"kernel\"}"),
        0
    );
    let fallbacks: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("weir_xdp_fallback_packets_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert!(
        fallbacks <= 20,
        "{fallbacks} packets fell back to the kernel:\n{metrics}"
    );
    for family in [
        "weir_xdp_endpoint_packets_total{",
        "weir_xdp_vip_received_bytes_total{",
        "weir_xdp_endpoint_received_bytes_total{",
    ] {
        assert!(metrics.contains(family), "{family} missing:\n{metrics}");
    }
}

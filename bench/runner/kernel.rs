//! `weir-bench kernel` (root only): packets per second and CPU per packet of weir's three L4
//! data planes — the XDP balancer (DNAT), the nftables service mode and the userspace `udp`
//! proxy — on the same veth path, with 1, 1,000 and 10,000 configured VIPs (issue #10).
//!
//! The topology is the namespace e2e test's (`tests/e2e/tests/e2e/xdp.rs`): a client namespace,
//! a balancer namespace and an endpoint namespace joined by veth pairs, the balancer routing
//! between them. Each run starts weir in the balancer namespace from a generated YAML file,
//! floods the VIPs from the client (pinned to CPU 0; at least 256 flows, one flow per VIP up to
//! 4,096 flows spread evenly over all VIPs, `sendmmsg` batches), counts what reaches the
//! endpoint (the endpoint namespace's UDP counters, and a counting sink pinned to CPU 1), and
//! reads the CPU time of the window from `/proc/stat` and `/proc/<pid>/stat`. A `direct` run
//! per VIP count (the client floods the endpoint over a veth of their own, with as many flows)
//! gives the cost of sending and receiving, which every plane pays too; a `baseline` run (no balancer: the endpoints' own
//! addresses, routed by the balancer namespace's kernel) the cost of plain routing. The
//! receiving veth ends have GRO on, so XDP can redirect into them (docs/kernel.md). The method and what is
//! counted: `docs/benchmarks.md` ("Kernel data planes") and `docs/kernel.md`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::flood::{FloodReport, SinkReport};
use crate::kernel_topo::{Ns, Topology, crate_is_root, sh_ok, sleep, watch_ctrl_c};
use crate::orchestrate::{Proc, clk_tck, sh_out};

/// Options of `weir-bench kernel`.
#[derive(Debug, clap::Args)]
pub(crate) struct Options {
    /// VIP counts, comma-separated: every VIP is configured (with the same endpoints); the
    /// flood targets the first.
    #[arg(long, default_value = "1,1000,10000", value_delimiter = ',')]
    pub(crate) vips: Vec<u32>,
    /// Seconds measured per run (after one second of warm-up).
    #[arg(long, default_value_t = 5)]
    pub(crate) duration: u64,
    /// Interleaved rounds: each runs the baseline and every (plane, VIPs) cell once.
    #[arg(long, default_value_t = 3)]
    pub(crate) rounds: u32,
    /// Flows (source ports) of the flood.
    #[arg(long, default_value_t = 256)]
    pub(crate) flows: u32,
    /// UDP payload bytes per packet.
    #[arg(long, default_value_t = 18)]
    pub(crate) size: usize,
    /// Most flows (sockets) the flood spreads over many VIPs: one flow per VIP up to this many,
    /// spread evenly over all VIPs beyond.
    #[arg(long, default_value_t = 4_096)]
    pub(crate) max_flows: u32,
    /// Datagrams per `sendmmsg` call of the flood.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Data planes, comma-separated: xdp, nftables, userspace (flood source only).
    #[arg(long, default_value = "xdp,nftables,userspace", value_delimiter = ',')]
    planes: Vec<Plane>,
    /// Packet source: `flood` (UDP sockets in a client namespace, through veth's native XDP)
    /// or `live` (frames generated in the kernel by `BPF_PROG_TEST_RUN` live-frames mode,
    /// CPU per frame of the generating thread; see `kernel_live`).
    #[arg(long, value_enum, default_value_t = Source::Flood)]
    pub(crate) source: Source,
    /// Live source: frames of the large test runs (and their live batch: ≤ 256, so every
    /// frame gets a fresh page).
    #[arg(long, default_value_t = 256)]
    pub(crate) repeat: u32,
    /// Live source: frames of the small test runs, alternating with the large ones (the
    /// slope between the two is the per-frame cost without a test run's fixed cost).
    #[arg(long, default_value_t = 32)]
    pub(crate) live_small: u32,
}

/// Where the packets of `weir-bench kernel` come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Source {
    /// A UDP flood from the client namespace.
    Flood,
    /// `BPF_PROG_TEST_RUN` live frames, injected on the balancer's client-side veth.
    Live,
}

/// How packets get from the client to the endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Plane {
    /// No balancer, no balancer namespace: the client sends to the endpoint over a veth of
    /// their own (the floor every plane pays: sending and receiving).
    Direct,
    /// No balancer: the client sends to the endpoints' addresses, the balancer ns routes.
    Baseline,
    /// weir's XDP program, DNAT forwarding (`protocol: xdp`).
    Xdp,
    /// weir's nftables service mode (`protocol: nftables`).
    Nftables,
    /// weir's userspace UDP proxy (`protocol: udp`).
    Userspace,
}

impl Plane {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Plane::Direct => "direct",
            Plane::Baseline => "baseline",
            Plane::Xdp => "xdp",
            Plane::Nftables => "nftables",
            Plane::Userspace => "userspace",
        }
    }
}

/// One measured run.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct KernelRun {
    pub(crate) plane: Plane,
    pub(crate) vips: u32,
    pub(crate) round: u32,
    /// Flows (sockets) of the flood in this run.
    #[serde(default)]
    pub(crate) flows: u32,
    /// XDP only: `native` or `generic`, as `ip link` shows it.
    pub(crate) attach: Option<String>,
    /// Seconds of the measured window.
    pub(crate) seconds: f64,
    /// Packets that reached the endpoint namespace's UDP layer in the window.
    pub(crate) delivered: u64,
    /// Packets per second delivered.
    pub(crate) pps: f64,
    /// Packets per second the flood got the kernel to accept (whole run).
    pub(crate) sent_pps: f64,
    /// Packets the counting sink read (whole run).
    pub(crate) sink_received: u64,
    /// Both CPUs' `system` + `irq` + `softirq` time in the window, ns per delivered packet.
    pub(crate) kernel_ns_per_pkt: f64,
    /// Both CPUs' `softirq` time alone, ns per delivered packet: where XDP and netfilter run,
    /// and the column other tenants' work pollutes least.
    pub(crate) softirq_ns_per_pkt: f64,
    /// weir's user time in the window, ns per delivered packet (its system time is already in
    /// `kernel_ns_per_pkt`).
    pub(crate) weir_user_ns_per_pkt: f64,
    /// weir's user + system time, ns per delivered packet.
    pub(crate) weir_ns_per_pkt: f64,
    /// `kernel_ns_per_pkt + weir_user_ns_per_pkt`: everything but the generators' and other
    /// tenants' user time.
    pub(crate) cpu_ns_per_pkt: f64,
    /// Both CPUs' `user` + `nice` time in the window, ns per delivered packet (information:
    /// flood, sink, weir and anything else running).
    pub(crate) user_ns_per_pkt: f64,
    /// CPU time of the run's own processes — flood, sink, weir — and of the `ksoftirqd`
    /// threads, ns per delivered packet: the softirq work of the path (veth NAPI, XDP,
    /// netfilter, routing) is charged to the task it runs on, which is the flood or the sink
    /// except when ksoftirqd takes over. Unlike the `/proc/stat` columns, other tenants'
    /// work on the shared machine hardly enters it.
    #[serde(default)]
    pub(crate) own_ns_per_pkt: f64,
    /// 1-minute load average at the end of the run.
    pub(crate) loadavg: f64,
}

/// Everything `kernel` writes to `target/bench/kernel.json`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct KernelResults {
    #[serde(flatten)]
    pub(crate) machine: Machine,
    pub(crate) flows: u32,
    pub(crate) size: usize,
    pub(crate) duration_s: u64,
    pub(crate) runs: Vec<KernelRun>,
}

/// The command, date, kernel, CPU and weir commit a kernel-bench result file was made with.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Machine {
    pub(crate) command: String,
    pub(crate) date: String,
    pub(crate) kernel: String,
    pub(crate) cpu: String,
    pub(crate) weir: String,
}

impl Machine {
    /// This machine now, for a run started with `command` from the checkout at `root`.
    pub(crate) fn now(command: String, root: &Path) -> Self {
        Self {
            command,
            date: sh_out("date -u +%Y-%m-%dT%H:%MZ"),
            kernel: sh_out("uname -r"),
            cpu: sh_out("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"),
            weir: sh_out(&format!("git -C {} rev-parse --short HEAD", root.display())),
        }
    }
}

pub(crate) const VIP_ADDR: &str = "10.78.100.1";
pub(crate) const VIP_PORT0: u16 = 10_000;
pub(crate) const ENDPOINT_PORT: u16 = 8080;
/// The endpoints: four addresses on the endpoint namespace's interface, one sink on all.
pub(crate) const ENDPOINTS: [&str; 4] = ["10.78.10.2", "10.78.10.3", "10.78.10.4", "10.78.10.5"];
/// The endpoint's address on the client's direct veth (the `direct` plane).
pub(crate) const DIRECT: &str = "10.78.20.1";
const WARMUP: Duration = Duration::from_secs(1);

/// The whole benchmark; see the module docs.
pub(crate) fn run(o: &Options) -> anyhow::Result<()> {
    if !crate_is_root() {
        bail!(
            "weir-bench kernel needs root (it creates network namespaces, loads XDP and \
             nftables rules); run it with sudo"
        );
    }
    if o.vips.iter().any(|&v| v == 0 || v > 50_000) {
        bail!("--vips: each count must be 1..=50000");
    }
    for tool in ["ip", "nft", "taskset", "ss", "ethtool"] {
        if !sh_ok(&format!("command -v {tool} >/dev/null")) {
            bail!("{tool} is missing (Debian: iproute2, nftables, util-linux, ethtool)");
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    watch_ctrl_c(Arc::clone(&stop));
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace root")?
        .to_path_buf();
    if o.source == Source::Live {
        let topo = Topology::new()?;
        return crate::kernel_live::run(o, &topo, &std::env::current_exe()?, &root, &stop);
    }
    let out = root.join("target/bench");
    let work = out.join("kernel");
    std::fs::create_dir_all(&work)?;
    eprintln!("building weir (release)");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    if !Command::new(cargo)
        .args(["build", "--release", "-p", "weir"])
        .current_dir(&root)
        .status()?
        .success()
    {
        bail!("cargo build --release -p weir failed");
    }
    let weir = root.join("target/release/weir");
    let me = std::env::current_exe()?;
    let topo = Topology::new()?;
    let tick_ns = 1e9 / clk_tck();

    let mut results = KernelResults {
        machine: Machine::now(
            format!(
                "sudo target/release/weir-bench kernel --vips {} --duration {} --rounds {} --flows {} --max-flows {} --size {} --batch {}",
                o.vips
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
                o.duration,
                o.rounds,
                o.flows,
                o.max_flows,
                o.size,
                o.batch
            ),
            &root,
        ),
        flows: o.flows,
        size: o.size,
        duration_s: o.duration,
        runs: Vec::new(),
    };
    // `direct` once per VIP count: the flood opens as many flows as for that count's planes, so
    // the floor includes the same sender-side socket working set.
    let mut cells = vec![(Plane::Baseline, 0)];
    for &vips in &o.vips {
        if !cells.contains(&(Plane::Direct, vips)) {
            cells.push((Plane::Direct, vips));
        }
    }
    for &vips in &o.vips {
        for &plane in &o.planes {
            // weir holds about two descriptors per UDP listener; weir inherits our limit.
            let nofile: u64 = sh_out("ulimit -n").parse().unwrap_or(1024);
            if plane == Plane::Userspace && u64::from(vips) * 2 + 256 > nofile {
                eprintln!(
                    "skipping userspace with {vips} VIPs: {vips} UDP listeners need about {} \
                     descriptors and the open-file limit is {nofile}",
                    u64::from(vips) * 2 + 256
                );
                continue;
            }
            if !matches!(plane, Plane::Baseline | Plane::Direct) {
                cells.push((plane, vips));
            }
        }
    }
    // Round 0 is a warm-up (page cache, first XDP load) and is not kept.
    for round in 0..=o.rounds {
        for &(plane, vips) in &cells {
            let run = one(
                &topo, &weir, &me, &work, o, plane, vips, round, tick_ns, &stop,
            )
            .with_context(|| format!("{} with {vips} VIPs, round {round}", plane.name()))?;
            eprintln!(
                "{:9} {:>5} VIPs round {round}: {:>9.0} pps delivered (sent {:.0}), own CPU {:.0} ns/pkt, CPU {:.0} ns/pkt (kernel {:.0}, softirq {:.0}, weir {:.0}){}",
                plane.name(),
                vips,
                run.pps,
                run.sent_pps,
                run.own_ns_per_pkt,
                run.cpu_ns_per_pkt,
                run.kernel_ns_per_pkt,
                run.softirq_ns_per_pkt,
                run.weir_ns_per_pkt,
                run.attach
                    .as_ref()
                    .map_or(String::new(), |a| format!(", XDP {a}"))
            );
            if round > 0 {
                results.runs.push(run);
            }
        }
    }
    drop(topo);
    crate::kernel_report::save(&results, &out)
}

/// weir's configuration for `plane` with `vips` VIPs on ports 10000, 10001, ...
fn config(plane: Plane, vips: u32) -> String {
    let vip = |i: u32| format!("\"{VIP_ADDR}:{}\"", u32::from(VIP_PORT0) + i);
    let extra = (1..vips).map(vip).collect::<Vec<_>>().join(", ");
    let endpoints = ENDPOINTS
        .iter()
        .map(|e| format!("\"{e}:{ENDPOINT_PORT}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let mut y = String::from("listeners:\n");
    match plane {
        Plane::Baseline | Plane::Direct => {}
        Plane::Xdp => y.push_str(&format!(
            "  - {{ name: vip, address: {}, cluster: ep, protocol: xdp, xdp: {{ interfaces: [xc, xe], forwarding: dnat, transport: udp, vips: [{extra}] }} }}\n",
            vip(0)
        )),
        Plane::Nftables => y.push_str(&format!(
            "  - {{ name: vip, address: {}, cluster: ep, protocol: nftables, nftables: {{ transport: udp, vips: [{extra}] }} }}\n",
            vip(0)
        )),
        Plane::Userspace => {
            for i in 0..vips {
                y.push_str(&format!(
                    "  - {{ name: vip{i}, address: {}, cluster: ep, protocol: udp }}\n",
                    vip(i)
                ));
            }
        }
    }
    // A small Maglev table (the nftables plane's ring size): the XDP plane writes one ring per
    // VIP, and 10,000 rings of the default 65,537 slots take minutes to program.
    y.push_str(&format!(
        "clusters:\n  - name: ep\n    lb_policy: maglev\n    maglev: {{ table_size: 1009 }}\n    endpoints: [{endpoints}]\n"
    ));
    y
}

/// Waits until weir's plane is in place in the balancer namespace; the XDP attach mode.
fn wait_ready(
    lb: &Ns,
    plane: Plane,
    vips: u32,
    weir: &mut Proc,
    log: &Path,
    stop: &AtomicBool,
) -> anyhow::Result<Option<String>> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(Some(status)) = weir.child.try_wait() {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            bail!("weir exited ({status}): {}", log.trim());
        }
        match plane {
            Plane::Baseline | Plane::Direct => return Ok(None),
            Plane::Xdp => {
                let link = lb.ip(&["link", "show", "xc"])?;
                if link.contains("xdpgeneric") {
                    return Ok(Some("generic".into()));
                }
                if link.contains("xdp") {
                    return Ok(Some("native".into()));
                }
            }
            Plane::Nftables => {
                if lb.exec(&["nft", "list", "tables"])?.contains("table") {
                    return Ok(None);
                }
            }
            Plane::Userspace => {
                let bound = lb.exec(&["ss", "-Hunl"])?.lines().count();
                if bound >= vips as usize {
                    return Ok(None);
                }
            }
        }
        if Instant::now() > deadline {
            bail!("weir's {} plane not ready after 120 s", plane.name());
        }
        sleep(Duration::from_millis(100), stop)?;
    }
}

/// A CPU-time snapshot: both CPUs' `/proc/stat` fields and weir's own times, in ticks.
#[derive(Default, Clone, Copy)]
struct Cpu {
    user: f64,
    kernel: f64,
    softirq: f64,
    weir_user: f64,
    weir_system: f64,
}

fn cpu(weir: Option<u32>) -> Cpu {
    let mut c = Cpu::default();
    if let Ok(stat) = std::fs::read_to_string("/proc/stat") {
        for line in stat
            .lines()
            .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        {
            let f: Vec<f64> = line
                .split_whitespace()
                .skip(1)
                .filter_map(|v| v.parse().ok())
                .collect();
            let at = |i: usize| f.get(i).copied().unwrap_or(0.0);
            // user nice system idle iowait irq softirq steal
            c.user += at(0) + at(1);
            c.kernel += at(2) + at(5) + at(6);
            c.softirq += at(6);
        }
    }
    if let Some(pid) = weir
        && let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
    {
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| f.get(n - 3).and_then(|v| v.parse::<f64>().ok());
        c.weir_user = field(14).unwrap_or(0.0);
        c.weir_system = field(15).unwrap_or(0.0);
    }
    c
}

/// User + system ticks of `pids` (processes or threads), summed.
fn task_ticks(pids: &[u32]) -> f64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .map(|stat| {
            let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
            let f: Vec<&str> = rest.split_whitespace().collect();
            let field = |n: usize| {
                f.get(n - 3)
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or(0.0)
            };
            field(14) + field(15)
        })
        .sum()
}

/// The pids of the `ksoftirqd/N` threads.
fn ksoftirqd() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.starts_with("ksoftirqd/"))
        })
        .collect()
}

/// Packets that reached the namespace's UDP layer: `InDatagrams + RcvbufErrors`.
fn udp_in(ns: &Ns) -> anyhow::Result<u64> {
    let snmp = ns.exec(&["cat", "/proc/net/snmp"])?;
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        bail!("no Udp: lines in /proc/net/snmp");
    };
    let mut total = 0;
    for (name, value) in names.split_whitespace().zip(values.split_whitespace()) {
        if name == "InDatagrams" || name == "RcvbufErrors" {
            total += value.parse::<u64>().unwrap_or(0);
        }
    }
    Ok(total)
}

/// One run of `plane` with `vips` VIPs.
#[allow(
    clippy::too_many_arguments,
    reason = "one call site, all of it context"
)]
fn one(
    topo: &Topology,
    weir: &Path,
    me: &Path,
    work: &Path,
    o: &Options,
    plane: Plane,
    vips: u32,
    round: u32,
    tick_ns: f64,
    stop: &AtomicBool,
) -> anyhow::Result<KernelRun> {
    let log = work.join(format!("{}-{vips}.log", plane.name()));
    let mut proxy = None;
    let mut attach = None;
    if !matches!(plane, Plane::Baseline | Plane::Direct) {
        let file = work.join(format!("{}-{vips}.yaml", plane.name()));
        std::fs::write(&file, config(plane, vips))?;
        let path = file.display().to_string();
        let mut p = topo
            .lb
            .spawn("1", weir, &["run", "-c", &path, "--threads", "1"], &log)?;
        attach = wait_ready(&topo.lb, plane, vips, &mut p, &log, stop)?;
        proxy = Some(p);
    }
    // Every VIP gets traffic (one flow each, up to --max-flows flows spread evenly over them):
    // a uniform mix over the configured VIPs, not one hot VIP.
    let many = o.flows.max(vips.min(o.max_flows));
    let (targets, ports, flows): (Vec<String>, u32, u32) = match plane {
        Plane::Direct => (vec![format!("{DIRECT}:{ENDPOINT_PORT}")], 1, many),
        Plane::Baseline => (
            ENDPOINTS
                .iter()
                .map(|e| format!("{e}:{ENDPOINT_PORT}"))
                .collect(),
            1,
            o.flows,
        ),
        _ => (vec![format!("{VIP_ADDR}:{VIP_PORT0}")], vips, many),
    };
    let total = WARMUP + Duration::from_secs(o.duration);
    let secs = |d: Duration| format!("{:.1}", d.as_secs_f64());
    let sink_log = work.join("sink.log");
    let mut sink = topo.endpoint.spawn(
        "1",
        me,
        &[
            "sink",
            "--addr",
            &format!("0.0.0.0:{ENDPOINT_PORT}"),
            "--duration",
            &secs(total + Duration::from_secs(1)),
        ],
        &sink_log,
    )?;
    // The sink binds before the flood starts.
    let bound = Instant::now() + Duration::from_secs(10);
    while !topo.endpoint.exec(&["ss", "-Hunl"])?.contains(":8080") {
        if Instant::now() > bound {
            bail!("the sink did not bind");
        }
        sleep(Duration::from_millis(20), stop)?;
    }
    let mut args = vec![
        "flood".to_string(),
        "--flows".into(),
        flows.to_string(),
        "--ports".into(),
        ports.to_string(),
        "--batch".into(),
        o.batch.to_string(),
        "--size".into(),
        o.size.to_string(),
        "--duration".into(),
        secs(total),
    ];
    for t in &targets {
        args.push("--target".into());
        args.push(t.clone());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut flood = topo.client.spawn("0", me, &args, &work.join("flood.log"))?;
    let pid = proxy.as_ref().map(Proc::pid);
    let mut own: Vec<u32> = vec![flood.pid(), sink.pid()];
    own.extend(pid);
    own.extend(ksoftirqd());
    sleep(WARMUP, stop)?;
    let (c0, o0, u0, t0) = (
        cpu(pid),
        task_ticks(&own),
        udp_in(&topo.endpoint)?,
        Instant::now(),
    );
    sleep(Duration::from_secs(o.duration), stop)?;
    let (c1, o1, u1, seconds) = (
        cpu(pid),
        task_ticks(&own),
        udp_in(&topo.endpoint)?,
        t0.elapsed().as_secs_f64(),
    );
    let flood_report: FloodReport = output(&mut flood, "flood", stop)?;
    let sink_report: SinkReport = output(&mut sink, "sink", stop)?;
    let loadavg = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    drop(proxy);
    // Whatever weir's shutdown left (it detaches and deletes its table; this is insurance so a
    // run never measures the previous plane).
    let _ = topo.lb.exec(&["nft", "flush", "ruleset"]);
    for dev in ["xc", "xe"] {
        let _ = topo.lb.ip(&["link", "set", dev, "xdp", "off"]);
    }
    let delivered = u1.saturating_sub(u0);
    if delivered == 0 {
        bail!("no packet reached the endpoint (see {})", log.display());
    }
    let per = |ticks: f64| ticks * tick_ns / delivered as f64;
    let kernel_ns_per_pkt = per(c1.kernel - c0.kernel);
    let weir_user_ns_per_pkt = per(c1.weir_user - c0.weir_user);
    Ok(KernelRun {
        plane,
        vips,
        round,
        flows,
        attach,
        seconds,
        delivered,
        pps: delivered as f64 / seconds,
        sent_pps: flood_report.sent as f64 / flood_report.seconds.max(1e-9),
        sink_received: sink_report.received,
        kernel_ns_per_pkt,
        weir_user_ns_per_pkt,
        softirq_ns_per_pkt: per(c1.softirq - c0.softirq),
        weir_ns_per_pkt: per(c1.weir_user - c0.weir_user + c1.weir_system - c0.weir_system),
        cpu_ns_per_pkt: kernel_ns_per_pkt + weir_user_ns_per_pkt,
        user_ns_per_pkt: per(c1.user - c0.user),
        own_ns_per_pkt: per(o1 - o0),
        loadavg,
    })
}

/// Waits for a flood or sink process and parses the JSON line it printed.
fn output<T: serde::de::DeserializeOwned>(
    p: &mut Proc,
    what: &str,
    stop: &AtomicBool,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = p.child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            bail!("the {what} did not stop");
        }
        sleep(Duration::from_millis(20), stop)?;
    };
    let mut text = String::new();
    if let Some(mut out) = p.child.stdout.take() {
        std::io::Read::read_to_string(&mut out, &mut text)?;
    }
    if !status.success() {
        bail!("the {what} failed ({status})");
    }
    serde_json::from_str(text.trim()).with_context(|| format!("the {what}'s output: {text}"))
}

/// Where `kernel` writes its results.
pub(crate) fn results_path(out: &Path) -> PathBuf {
    out.join("kernel.json")
}

/// Parses `--target` values, each standing for `ports` consecutive ports (helper for the
/// `flood` subcommand).
pub(crate) fn parse_targets(targets: &[String], ports: u16) -> anyhow::Result<Vec<SocketAddr>> {
    let mut all = Vec::new();
    for t in targets {
        let first: SocketAddr = t.parse().with_context(|| format!("bad target {t}"))?;
        for i in 0..ports.max(1) {
            let port = first
                .port()
                .checked_add(i)
                .with_context(|| format!("{t} + {ports} ports passes 65535"))?;
            all.push(SocketAddr::new(first.ip(), port));
        }
    }
    Ok(all)
}

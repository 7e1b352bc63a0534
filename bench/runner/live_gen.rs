//! The packet source of `weir-bench kernel --source live`: weir's XDP program run by
//! `BPF_PROG_TEST_RUN` in live-frames mode (`BPF_F_TEST_XDP_LIVE_FRAMES`, Linux ≥ 5.18), inside
//! the balancer namespace, so one generator drives every plane with the same frames.
//!
//! The kernel builds each frame in a page of its own as if it had arrived on the ingress veth
//! (`xc`) and runs the program on it: `XDP_REDIRECT` transmits it for real (here: to the
//! endpoint veth), `XDP_PASS` hands it to the network stack (`netif_receive_skb_list`), all
//! synchronously in the calling thread — without the copy veth's native XDP makes of every
//! locally built packet. The calling thread's CPU time (plus its CPU's `ksoftirqd`, should the
//! kernel defer softirq work there) per frame is the per-core cost of a plane. The kernel
//! recycles a page without rewriting its content (Documentation/bpf/bpf_prog_run.rst), and the
//! planes rewrite frames (DNAT, MACs, TTL), so a test run sends at most one batch of copies of
//! one frame: every frame gets a fresh page from a page pool created for that run. That pool's
//! setup is a fixed cost per run; runs of `small` and `repeat` frames alternate, and the slope
//! of the thread's CPU between them is the cost of one more frame. Runs cycle over the
//! distinct frames (flows spread over the VIPs as the flood spreads them).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aya::programs::{TestRun, TestRunAttrs, TestRunOptions};
use rustix::time::{ClockId, clock_gettime};
use serde::{Deserialize, Serialize};
use weir_config::MaglevConfig;
use weir_core::Endpoint;
use weir_ebpf::{Forwarding, ForwardingPath, Limits, NftBalancer, Protocol, Vip, XdpBalancer};

use crate::kernel::{ENDPOINT_PORT, ENDPOINTS, Plane, VIP_ADDR, VIP_PORT0};

/// Options of the hidden `kernel-live-gen` subcommand (started by `kernel --source live`).
#[derive(Debug, clap::Args)]
pub(crate) struct GenOptions {
    /// Configured VIPs (ports 10000, 10001, ... of the VIP address).
    #[arg(long)]
    vips: u32,
    /// Distinct frames (flows) at least.
    #[arg(long, default_value_t = 256)]
    flows: u32,
    /// Most flows: one per VIP up to this many, spread evenly over the VIPs beyond.
    #[arg(long, default_value_t = 4_096)]
    max_flows: u32,
    /// UDP payload bytes.
    #[arg(long, default_value_t = 18)]
    size: usize,
    /// Seconds per measured run.
    #[arg(long, default_value_t = 2.0)]
    duration: f64,
    /// Measured rounds (after one warm-up round).
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Frames per large test run (its live batch too: 1..=256).
    #[arg(long, default_value_t = 256)]
    repeat: u32,
    /// Frames per small test run, alternating with the large ones (1..repeat).
    #[arg(long, default_value_t = 32)]
    small: u32,
    /// The interface frames arrive on.
    #[arg(long, default_value = "xc")]
    ingress: String,
    /// A process in the endpoint namespace (the sink): its `/proc/<pid>/net/snmp` counts what
    /// was delivered.
    #[arg(long)]
    sink_pid: u32,
    /// The CPU this process is pinned to (whose `ksoftirqd` is counted).
    #[arg(long, default_value_t = 0)]
    cpu: u32,
}

/// One measured run of a plane.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LiveRun {
    pub(crate) plane: Plane,
    pub(crate) vips: u32,
    pub(crate) round: u32,
    /// Distinct frames (flows) the runs cycled over.
    pub(crate) flows: u32,
    /// Frames the program ran on.
    pub(crate) frames: u64,
    /// Wall-clock seconds of the run.
    pub(crate) seconds: f64,
    /// CPU time of the generating thread (it runs the program, the stack and the softirqs it
    /// raises), ns.
    pub(crate) thread_ns: u64,
    /// CPU time of the pinned CPU's `ksoftirqd` in the run, ns (work the kernel deferred).
    pub(crate) ksoftirqd_ns: u64,
    /// Thread CPU ns per frame beyond a test run's fixed cost: the slope between the mean
    /// CPU time of the large and of the small test runs.
    pub(crate) marginal_ns: f64,
    /// The fixed thread CPU ns of one test run (page pool setup and teardown, syscall).
    pub(crate) setup_ns: f64,
    /// Datagrams that reached the endpoint namespace's UDP layer.
    pub(crate) delivered: u64,
    /// Frames weir's program forwarded itself (its `redirect` counter).
    pub(crate) redirected: u64,
    /// 1-minute load average at the end of the run.
    pub(crate) loadavg: f64,
}

impl LiveRun {
    /// CPU ns per frame: thread + `ksoftirqd`.
    pub(crate) fn ns_per_frame(&self) -> f64 {
        (self.thread_ns + self.ksoftirqd_ns) as f64 / self.frames.max(1) as f64
    }
}

const MAGLEV: MaglevConfig = MaglevConfig { table_size: 1_009 };
/// The client's address (the source of every frame).
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 78, 1, 2);
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x4c, 0x01];

/// Sets the planes up, runs the rounds and prints the runs as JSON.
pub(crate) fn generate(o: &GenOptions) -> anyhow::Result<()> {
    if o.repeat > 256 || o.small == 0 || o.small >= o.repeat {
        bail!("--repeat must be at most 256 and --small 1..repeat");
    }
    let sys = |f: &str| {
        std::fs::read_to_string(format!("/sys/class/net/{}/{f}", o.ingress))
            .with_context(|| format!("reading {f} of {}", o.ingress))
    };
    let ifindex: u32 = sys("ifindex")?.trim().parse()?;
    let mac = weir_config::parse_mac(sys("address")?.trim()).context("the ingress MAC")?;
    let endpoints: Vec<Arc<Endpoint>> = ENDPOINTS
        .iter()
        .map(|e| -> anyhow::Result<_> {
            Ok(Arc::new(Endpoint::new(
                format!("{e}:{ENDPOINT_PORT}").parse()?,
                1,
            )))
        })
        .collect::<anyhow::Result<_>>()?;
    let vip = |i: u32| -> anyhow::Result<Vip> {
        let port = u16::try_from(u32::from(VIP_PORT0) + i).context("VIP port")?;
        Ok(Vip {
            address: SocketAddrV4::new(VIP_ADDR.parse()?, port),
            protocol: Protocol::Udp,
        })
    };
    let limits = |vips: u32| Limits {
        max_vips: vips.max(1),
        max_endpoints: (vips.saturating_mul(4)).max(1_024),
        ring_capacity: Limits::ring_slots(MAGLEV.table_size),
        ..Limits::default()
    };
    eprintln!("live: loading weir's XDP program with {} VIPs", o.vips);
    let mut with_vips = XdpBalancer::load(limits(o.vips))?;
    with_vips.set_local(Ipv4Addr::UNSPECIFIED, None, ForwardingPath::Fib)?;
    for i in 0..o.vips {
        with_vips.set_vip(vip(i)?, Forwarding::Dnat, &endpoints, &MAGLEV, 50)?;
    }
    let mut no_vips = XdpBalancer::load(limits(1))?;
    no_vips.set_local(Ipv4Addr::UNSPECIFIED, None, ForwardingPath::Fib)?;

    // As the flood: at least `flows` flows, one per VIP up to `max_flows`, spread evenly.
    let flows = o.flows.max(o.vips.min(o.max_flows)).max(1);
    let payload = vec![0x5au8; o.size];
    let mut vip_frames = Vec::new();
    for j in 0..flows {
        let target = if flows < o.vips {
            u32::try_from(u64::from(j) * u64::from(o.vips) / u64::from(flows))?
        } else {
            j % o.vips.max(1)
        };
        let dst = vip(target)?.address;
        vip_frames.push(frame(mac, client(j)?, dst, &payload));
    }
    let mut base_frames = Vec::new();
    for j in 0..flows {
        let ep: Ipv4Addr = ENDPOINTS[j as usize % ENDPOINTS.len()].parse()?;
        let dst = SocketAddrV4::new(ep, ENDPOINT_PORT);
        base_frames.push(frame(mac, client(j)?, dst, &payload));
    }
    let runner = Gen {
        o,
        ifindex,
        len: vip_frames.first().map_or(0, Vec::len),
        ksoftirqd: ksoftirqd(o.cpu),
    };
    let mut runs = Vec::new();
    // Baseline first, before the nftables table exists (its hooks would put conntrack on the
    // plain routing path too); then xdp and nftables interleaved round by round.
    for round in 0..=o.rounds {
        let run = runner.measure(Plane::Baseline, &no_vips, &base_frames, round, flows)?;
        keep(&mut runs, run);
    }
    eprintln!(
        "live: installing weir's nftables service mode with {} VIPs",
        o.vips
    );
    let mut nft = NftBalancer::new("weir_live");
    let vips: Vec<Vip> = (0..o.vips).map(vip).collect::<anyhow::Result<_>>()?;
    let programmed: Vec<(Vip, &[Arc<Endpoint>], u32)> = vips
        .iter()
        .map(|&v| (v, endpoints.as_slice(), 50))
        .collect();
    nft.install(&programmed)?;
    for round in 0..=o.rounds {
        for (plane, lb) in [(Plane::Xdp, &with_vips), (Plane::Nftables, &no_vips)] {
            let run = runner.measure(plane, lb, &vip_frames, round, flows)?;
            keep(&mut runs, run);
        }
    }
    nft.remove()?;
    println!("{}", serde_json::to_string(&runs)?);
    Ok(())
}

/// Prints a run and keeps it unless it is the warm-up round.
fn keep(runs: &mut Vec<LiveRun>, run: LiveRun) {
    eprintln!(
        "live: {:8} {:>5} VIPs round {}: {:.0} ns/frame ({:.2} Mpps/core), marginal {:.0} ns/frame, setup {:.0} ns/run, ksoftirqd {} ns, {} frames, {} delivered, {} redirected by XDP, load {:.2}",
        run.plane.name(),
        run.vips,
        run.round,
        run.ns_per_frame(),
        1e3 / run.ns_per_frame().max(1e-9),
        run.marginal_ns,
        run.setup_ns,
        run.ksoftirqd_ns,
        run.frames,
        run.delivered,
        run.redirected,
        run.loadavg
    );
    if run.round > 0 {
        runs.push(run);
    }
}

/// Source address of flow `j`.
fn client(j: u32) -> anyhow::Result<SocketAddrV4> {
    Ok(SocketAddrV4::new(
        CLIENT,
        u16::try_from(20_000 + j).context("too many flows")?,
    ))
}

/// What every measured run shares.
struct Gen<'a> {
    o: &'a GenOptions,
    ifindex: u32,
    len: usize,
    ksoftirqd: Option<u32>,
}

impl Gen<'_> {
    /// Runs `lb`'s program on `frames` (cycling) for the run's duration.
    fn measure(
        &self,
        plane: Plane,
        lb: &XdpBalancer,
        frames: &[Vec<u8>],
        round: u32,
        flows: u32,
    ) -> anyhow::Result<LiveRun> {
        let program = lb.program()?;
        let ctx = xdp_md(self.len, self.ifindex)?;
        let redirects = |lb: &XdpBalancer| -> anyhow::Result<u64> {
            Ok(lb
                .forward_counters()?
                .into_iter()
                .find(|(_, label, _)| *label == "redirect")
                .map_or(0, |(_, _, n)| n))
        };
        let duration = Duration::try_from_secs_f64(self.o.duration)?;
        let (r0, u0, k0) = (redirects(lb)?, udp_in(self.o.sink_pid)?, self.softirq_ns());
        let ns = |t: rustix::time::Timespec| {
            u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000_000
                + u64::try_from(t.tv_nsec).unwrap_or(0)
        };
        let now = || ns(clock_gettime(ClockId::ThreadCPUTime));
        let t0 = Instant::now();
        // [small, large]: test runs and their thread CPU ns.
        let mut calls = [0u64; 2];
        let mut cpu = [0u64; 2];
        let mut sent = 0u64;
        let mut next = 0usize;
        while t0.elapsed() < duration {
            let data = frames
                .get(next % frames.len().max(1))
                .context("no frames")?;
            let (k, repeat) = if next.is_multiple_of(2) {
                (0, self.o.small)
            } else {
                (1, self.o.repeat)
            };
            let c = now();
            program
                .test_run(TestRunOptions {
                    data_in: Some(data),
                    ctx_in: Some(&ctx),
                    repeat,
                    // A batch as large as the run: every frame gets a fresh page.
                    attrs: TestRunAttrs::new().xdp_live_frames(repeat),
                    ..TestRunOptions::default()
                })
                .context("BPF_PROG_TEST_RUN (live frames)")?;
            cpu[k] += now().saturating_sub(c);
            calls[k] += 1;
            sent += u64::from(repeat);
            next += 1;
        }
        let seconds = t0.elapsed().as_secs_f64();
        let k1 = self.softirq_ns();
        // Whatever the sink's CPU still has in flight: wait until the count settles.
        let mut delivered = udp_in(self.o.sink_pid)?.saturating_sub(u0);
        let settle = Instant::now() + Duration::from_secs(5);
        while Instant::now() < settle {
            std::thread::sleep(Duration::from_millis(50));
            let now = udp_in(self.o.sink_pid)?.saturating_sub(u0);
            if now == delivered {
                break;
            }
            delivered = now;
        }
        let mean = |k: usize| cpu[k] as f64 / calls[k].max(1) as f64;
        let marginal_ns = (mean(1) - mean(0)) / f64::from(self.o.repeat - self.o.small);
        Ok(LiveRun {
            plane,
            vips: self.o.vips,
            round,
            flows,
            frames: sent,
            seconds,
            thread_ns: cpu[0] + cpu[1],
            ksoftirqd_ns: k1.saturating_sub(k0),
            marginal_ns,
            setup_ns: mean(0) - marginal_ns * f64::from(self.o.small),
            delivered,
            redirected: redirects(lb)?.saturating_sub(r0),
            loadavg: std::fs::read_to_string("/proc/loadavg")
                .ok()
                .and_then(|l| l.split_whitespace().next()?.parse().ok())
                .unwrap_or(0.0),
        })
    }

    /// CPU time of the pinned CPU's `ksoftirqd`, ns (`schedstat`: exact, not in ticks).
    fn softirq_ns(&self) -> u64 {
        self.ksoftirqd
            .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/schedstat")).ok())
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }
}

/// The pid of `ksoftirqd/<cpu>`.
fn ksoftirqd(cpu: u32) -> Option<u32> {
    let want = format!("ksoftirqd/{cpu}");
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == want)
        })
}

/// `InDatagrams + RcvbufErrors` of the namespace `pid` lives in.
fn udp_in(pid: u32) -> anyhow::Result<u64> {
    let snmp = std::fs::read_to_string(format!("/proc/{pid}/net/snmp"))
        .context("reading the endpoint namespace's UDP counters")?;
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        bail!("no Udp: lines in /proc/{pid}/net/snmp");
    };
    Ok(names
        .split_whitespace()
        .zip(values.split_whitespace())
        .filter(|(n, _)| *n == "InDatagrams" || *n == "RcvbufErrors")
        .filter_map(|(_, v)| v.parse::<u64>().ok())
        .sum())
}

/// The `xdp_md` context of a test run: the whole frame, arrived on `ifindex`, queue 0.
fn xdp_md(len: usize, ifindex: u32) -> anyhow::Result<Vec<u8>> {
    let len = u32::try_from(len)?;
    // data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex
    Ok([0, len, 0, ifindex, 0, 0]
        .iter()
        .flat_map(|v: &u32| v.to_ne_bytes())
        .collect())
}

/// An Ethernet/IPv4/UDP frame to `dst_mac` with valid checksums.
fn frame(dst_mac: [u8; 6], src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let ip_len = 20 + udp_len;
    let mut f = Vec::with_capacity(14 + ip_len);
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&CLIENT_MAC);
    f.extend_from_slice(&[0x08, 0x00]);
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
    ip[6] = 0x40; // don't fragment
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&src.ip().octets());
    ip[16..20].copy_from_slice(&dst.ip().octets());
    let sum = !fold(sum16(&ip));
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&ip);
    let mut udp = Vec::with_capacity(udp_len);
    udp.extend_from_slice(&src.port().to_be_bytes());
    udp.extend_from_slice(&dst.port().to_be_bytes());
    udp.extend_from_slice(&(udp_len as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let pseudo = sum16(&src.ip().octets()) + sum16(&dst.ip().octets()) + 17 + udp_len as u32;
    let mut sum = !fold(pseudo + sum16(&udp));
    if sum == 0 {
        sum = 0xffff;
    }
    udp[6..8].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&udp);
    f
}

/// The one's-complement sum of `b` as 16-bit big-endian words, unfolded.
fn sum16(b: &[u8]) -> u32 {
    b.chunks(2)
        .map(|c| u32::from(c[0]) << 8 | u32::from(c.get(1).copied().unwrap_or(0)))
        .sum()
}

fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_valid_ip_and_udp_checksums() {
        let src: SocketAddrV4 = "10.78.1.2:20001".parse().unwrap();
        let dst: SocketAddrV4 = "10.78.100.1:10007".parse().unwrap();
        let f = frame([2, 0, 0, 0, 0, 9], src, dst, &[0x5a; 19]);
        assert_eq!(f.len(), 14 + 20 + 8 + 19);
        assert_eq!(
            fold(sum16(&f[14..34])),
            0xffff,
            "IP header sums to all ones"
        );
        let udp = &f[34..];
        let pseudo = sum16(&f[26..34]) + 17 + udp.len() as u32;
        assert_eq!(fold(pseudo + sum16(udp)), 0xffff, "UDP checksum");
        assert_eq!(&udp[2..4], &10_007u16.to_be_bytes());
    }

    #[test]
    fn the_context_covers_the_frame_on_the_ingress_interface() {
        let ctx = xdp_md(60, 7).unwrap();
        assert_eq!(ctx.len(), 24);
        assert_eq!(&ctx[4..8], &60u32.to_ne_bytes());
        assert_eq!(&ctx[12..16], &7u32.to_ne_bytes());
    }
}

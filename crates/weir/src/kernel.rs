//! weir's kernel data planes, wired to the config, the snapshots and the health view: `xdp`
//! listeners are balanced by weir-ebpf's XDP program, `nftables` listeners by nftables maps,
//! instead of a socket.
//!
//! At start the XDP program is loaded, each listener's VIPs get the cluster's Maglev table, and
//! the program is attached to the listed interfaces; the nftables table is installed. A sync thread then follows the published
//! snapshots (reloads, service discovery: the endpoint set) and the health generation (active
//! checks, outlier ejection, drains) every [`SYNC_INTERVAL`], writing only what changed; so an
//! endpoint marked down stops receiving new flows within one check interval. Per-VIP and
//! per-endpoint counters are exported on `/metrics`. Shutdown detaches the program and deletes
//! the nftables table.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use weir_admin::{CounterFamily, ExtraMetrics};
use weir_config::{
    KernelTransport, ListenerProtocol, MaglevConfig, ValidatedConfig, XdpForwarding,
    XdpForwardingPath, parse_mac,
};
use weir_core::health_generation;
use weir_ebpf::{
    ForwardOutcome, Forwarding, ForwardingPath, Limits, NftBalancer, Protocol, Vip, XdpBalancer,
};
use weir_proxy::{Snapshot, SnapshotHandle};

/// How often the sync thread looks for endpoint and health changes: well under any health
/// check interval, and a load plus an atomic read when nothing changed.
pub(crate) const SYNC_INTERVAL: Duration = Duration::from_millis(100);

/// Which kernel data plane balances a VIP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Engine {
    Xdp,
    Nftables,
}

/// One VIP to program, from an `xdp` or `nftables` listener.
#[derive(Debug, Clone)]
struct VipPlan {
    engine: Engine,
    listener: String,
    vip: Vip,
    forwarding: Forwarding,
    cluster: String,
    maglev: MaglevConfig,
    panic_threshold: u32,
}

/// The running kernel data planes.
#[derive(Debug)]
pub(crate) struct KernelPlane {
    balancer: Option<Arc<Mutex<XdpBalancer>>>,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    metrics: Option<Arc<XdpMetrics>>,
}

/// `/metrics` families read from the program's per-CPU counters.
#[derive(Debug)]
pub(crate) struct XdpMetrics {
    balancer: Arc<Mutex<XdpBalancer>>,
    listener_of: HashMap<Vip, String>,
}

impl KernelPlane {
    /// Loads, programs and attaches the XDP balancer for `config`'s `xdp` listeners and
    /// installs the nftables table for its `nftables` listeners; `None` when there are none.
    pub(crate) fn start(
        config: &ValidatedConfig,
        snapshots: &SnapshotHandle,
    ) -> anyhow::Result<Option<Self>> {
        let plans = plans(config);
        if plans.is_empty() {
            return Ok(None);
        }
        let snapshot = snapshots.load();
        let mut synced = Synced::default();
        let xdp: Vec<VipPlan> = plans
            .iter()
            .filter(|p| p.engine == Engine::Xdp)
            .cloned()
            .collect();
        let balancer = if xdp.is_empty() {
            None
        } else {
            let mut lb = load_xdp(config, &xdp, &snapshot)?;
            synced.apply_xdp(&mut lb, &xdp, &snapshot, true)?;
            let mut interfaces: Vec<&str> = config
                .config()
                .listeners
                .iter()
                .filter_map(|l| l.xdp.as_ref())
                .flat_map(|x| x.interfaces.iter().map(String::as_str))
                .collect();
            interfaces.sort_unstable();
            interfaces.dedup();
            for interface in interfaces {
                let mode = lb
                    .attach(interface)
                    .with_context(|| format!("xdp: attaching to {interface}"))?;
                tracing::info!(interface, ?mode, "XDP balancer attached");
            }
            Some(Arc::new(Mutex::new(lb)))
        };
        let nft_plans: Vec<VipPlan> = plans
            .iter()
            .filter(|p| p.engine == Engine::Nftables)
            .cloned()
            .collect();
        let nft = if nft_plans.is_empty() {
            None
        } else {
            let mut nft = NftBalancer::new(NFT_TABLE);
            let vips: Vec<_> = nft_plans
                .iter()
                .map(|p| (p.vip, endpoints_of(&snapshot, p), p.panic_threshold))
                .collect();
            nft.install(&vips)
                .context("nftables: installing the table")?;
            tracing::info!(
                table = NFT_TABLE,
                vips = vips.len(),
                "nftables VIPs installed"
            );
            Some(nft)
        };
        synced.generation = health_generation();
        let metrics = balancer.as_ref().map(|b| {
            Arc::new(XdpMetrics {
                balancer: Arc::clone(b),
                listener_of: xdp.iter().map(|p| (p.vip, p.listener.clone())).collect(),
            })
        });
        let (stop, stopped) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("weir-kernel-sync".to_owned())
            .spawn({
                let balancer = balancer.clone();
                let snapshots = snapshots.clone();
                move || {
                    let mut engines = Engines {
                        xdp: balancer.as_deref(),
                        xdp_plans: &xdp,
                        nft,
                        nft_plans: &nft_plans,
                    };
                    sync_loop(&mut engines, &snapshots, synced, &stopped);
                }
            })
            .context("kernel data plane: starting the sync thread")?;
        Ok(Some(Self {
            metrics,
            balancer,
            stop: Some(stop),
            thread: Some(thread),
        }))
    }

    /// The `/metrics` source of the XDP program's counters, when it runs.
    pub(crate) fn metrics(&self) -> Option<Arc<dyn ExtraMetrics>> {
        self.metrics
            .as_ref()
            .map(|m| Arc::clone(m) as Arc<dyn ExtraMetrics>)
    }

    /// Stops the sync thread (which deletes the nftables table) and detaches the XDP program
    /// from every interface.
    pub(crate) fn shutdown(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the kernel data plane sync thread panicked");
        }
        if let Some(balancer) = &self.balancer
            && let Err(e) = lock(balancer).detach_all()
        {
            tracing::warn!(error = %e, "detaching the XDP balancer");
        }
    }
}

impl Drop for KernelPlane {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn lock(balancer: &Mutex<XdpBalancer>) -> MutexGuard<'_, XdpBalancer> {
    balancer.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The table weir's nftables VIPs live in.
const NFT_TABLE: &str = "weir";

/// The VIPs of every `xdp` and `nftables` listener, with the settings of their cluster.
fn plans(config: &ValidatedConfig) -> Vec<VipPlan> {
    let config = config.config();
    let mut plans = Vec::new();
    for l in &config.listeners {
        let Some(cluster) = &l.cluster else {
            continue;
        };
        let (engine, transport, forwarding, more) = match (l.protocol, &l.xdp) {
            (ListenerProtocol::Xdp, Some(xdp)) => (
                Engine::Xdp,
                xdp.transport,
                match xdp.forwarding {
                    XdpForwarding::Ipip => Forwarding::Ipip,
                    XdpForwarding::Dnat => Forwarding::Dnat,
                },
                xdp.vips.clone(),
            ),
            (ListenerProtocol::Nftables, _) => {
                let block = l.nftables.clone().unwrap_or_default();
                (
                    Engine::Nftables,
                    block.transport,
                    Forwarding::Dnat,
                    block.vips,
                )
            }
            _ => continue,
        };
        let Some(c) = config.clusters.iter().find(|c| &c.name == cluster) else {
            continue;
        };
        let protocol = match transport {
            KernelTransport::Tcp => Protocol::Tcp,
            KernelTransport::Udp => Protocol::Udp,
        };
        for address in std::iter::once(l.address).chain(more) {
            let SocketAddr::V4(address) = address else {
                continue; // validation rejects these
            };
            plans.push(VipPlan {
                engine,
                listener: l.name.clone(),
                vip: Vip { address, protocol },
                forwarding,
                cluster: cluster.clone(),
                maglev: c.maglev.clone().unwrap_or_default(),
                panic_threshold: c.panic_threshold,
            });
        }
    }
    plans
}

/// Ring memory above which loading the XDP program logs a warning (256 MiB).
const RING_WARN_BYTES: u64 = 256 << 20;

/// Loads the XDP program with maps sized for `plans` and sets the shared settings.
fn load_xdp(
    config: &ValidatedConfig,
    plans: &[VipPlan],
    snapshot: &Snapshot,
) -> anyhow::Result<XdpBalancer> {
    let endpoints: usize = plans.iter().map(|p| endpoints_of(snapshot, p).len()).sum();
    let limits = Limits {
        max_vips: u32::try_from(plans.len()).unwrap_or(u32::MAX).max(1),
        max_endpoints: u32::try_from(endpoints.saturating_mul(4))
            .unwrap_or(u32::MAX)
            .max(1_024),
        ring_capacity: plans
            .iter()
            .map(|p| Limits::ring_slots(p.maglev.table_size))
            .max()
            .unwrap_or(1),
        ..Limits::default()
    };
    // Each VIP reserves a ring of the largest Maglev table: 10,000 VIPs × the default 65,537
    // slots is 2.6 GB of kernel memory. Say so before the kernel refuses or the box swaps.
    let ring_bytes = u64::from(limits.max_vips) * u64::from(limits.ring_capacity) * 4;
    if ring_bytes > RING_WARN_BYTES {
        tracing::warn!(
            vips = limits.max_vips,
            slots_per_vip = limits.ring_capacity,
            mib = ring_bytes >> 20,
            "xdp: the Maglev rings take much kernel memory; with many VIPs, set the cluster's \
             maglev.table_size near 100 × its endpoint count (docs/kernel.md)"
        );
    }
    let mut lb = XdpBalancer::load(limits).context("xdp: loading the BPF program")?;
    let first = config.config().listeners.iter().find_map(|l| {
        l.xdp
            .as_ref()
            .filter(|_| l.protocol == ListenerProtocol::Xdp)
    });
    let local = match first.and_then(|x| x.local_address) {
        Some(IpAddr::V4(a)) => a,
        _ => Ipv4Addr::UNSPECIFIED,
    };
    let gateway = first
        .and_then(|x| x.gateway_mac.as_deref())
        .and_then(parse_mac);
    let path = match first.map(|x| x.forwarding_path).unwrap_or_default() {
        XdpForwardingPath::Fib => ForwardingPath::Fib,
        XdpForwardingPath::Kernel => ForwardingPath::Kernel,
    };
    lb.set_local(local, gateway, path)?;
    Ok(lb)
}

/// The endpoints of `plan`'s cluster in `snapshot` (none when the cluster is gone).
fn endpoints_of<'s>(snapshot: &'s Snapshot, plan: &VipPlan) -> &'s [Arc<weir_core::Endpoint>] {
    snapshot
        .cluster(&plan.cluster)
        .map(|c| c.endpoints.as_slice())
        .unwrap_or_default()
}

/// What the sync thread drives.
struct Engines<'a> {
    xdp: Option<&'a Mutex<XdpBalancer>>,
    xdp_plans: &'a [VipPlan],
    nft: Option<NftBalancer>,
    nft_plans: &'a [VipPlan],
}

/// What the sync thread last wrote: per VIP the endpoints (address, weight), and the health
/// generation seen.
#[derive(Debug, Default)]
struct Synced {
    endpoints: HashMap<Vip, Vec<(SocketAddr, u32)>>,
    generation: u64,
}

impl Synced {
    /// Whether `plan`'s endpoints differ from what was last written (recording them).
    fn changed(&mut self, plan: &VipPlan, endpoints: &[Arc<weir_core::Endpoint>]) -> bool {
        let key: Vec<(SocketAddr, u32)> = endpoints.iter().map(|e| (e.address, e.weight)).collect();
        if self.endpoints.get(&plan.vip) == Some(&key) {
            return false;
        }
        self.endpoints.insert(plan.vip, key);
        true
    }

    /// Programs every XDP VIP whose endpoint set differs from what was written (all when
    /// `force`), then rewrites the flags of endpoints whose health changed.
    fn apply_xdp(
        &mut self,
        lb: &mut XdpBalancer,
        plans: &[VipPlan],
        snapshot: &Snapshot,
        force: bool,
    ) -> Result<(), weir_ebpf::Error> {
        let generation = health_generation();
        let mut programmed = false;
        for plan in plans {
            let endpoints = endpoints_of(snapshot, plan);
            if !self.changed(plan, endpoints) && !force {
                continue;
            }
            lb.set_vip(
                plan.vip,
                plan.forwarding,
                endpoints,
                &plan.maglev,
                plan.panic_threshold,
            )?;
            tracing::info!(
                listener = %plan.listener,
                vip = %plan.vip.address,
                endpoints = endpoints.len(),
                "XDP VIP programmed"
            );
            programmed = true;
        }
        if !programmed && generation != self.generation {
            let changed = lb.refresh_health()?;
            tracing::debug!(changed, "XDP endpoint health synced");
        }
        Ok(())
    }

    /// Re-balances every nftables VIP: only changed ring slots are written.
    fn apply_nft(
        &mut self,
        nft: &mut NftBalancer,
        plans: &[VipPlan],
        snapshot: &Snapshot,
    ) -> Result<(), weir_ebpf::Error> {
        for (i, plan) in plans.iter().enumerate() {
            let endpoints = endpoints_of(snapshot, plan);
            self.changed(plan, endpoints);
            let changed = nft.update(i, endpoints, plan.panic_threshold)?;
            if changed > 0 {
                tracing::info!(
                    listener = %plan.listener,
                    vip = %plan.vip.address,
                    slots = changed,
                    "nftables VIP re-balanced"
                );
            }
        }
        Ok(())
    }

    fn apply(
        &mut self,
        engines: &mut Engines<'_>,
        snapshot: &Snapshot,
    ) -> Result<(), weir_ebpf::Error> {
        let generation = health_generation();
        if let Some(xdp) = engines.xdp {
            self.apply_xdp(&mut lock(xdp), engines.xdp_plans, snapshot, false)?;
        }
        if let Some(nft) = &mut engines.nft {
            self.apply_nft(nft, engines.nft_plans, snapshot)?;
        }
        self.generation = generation;
        Ok(())
    }
}

fn sync_loop(
    engines: &mut Engines<'_>,
    snapshots: &SnapshotHandle,
    mut synced: Synced,
    stopped: &mpsc::Receiver<()>,
) {
    let mut last = snapshots.load();
    let mut retry = false;
    // Stops when the sender is dropped (or sends).
    while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(SYNC_INTERVAL) {
        let snapshot = snapshots.load();
        let new_snapshot = !Arc::ptr_eq(&snapshot, &last);
        if !retry && !new_snapshot && health_generation() == synced.generation {
            continue;
        }
        retry = false;
        if let Err(e) = synced.apply(engines, &snapshot) {
            // Reprogram every VIP on the next tick: the maps may be half written.
            tracing::error!(error = %e, "kernel data plane update failed; retrying");
            synced.endpoints.clear();
            retry = true;
        }
        last = snapshot;
    }
    if let Some(nft) = &mut engines.nft
        && let Err(e) = nft.remove()
    {
        tracing::warn!(error = %e, "removing the nftables table");
    }
}

// === impl XdpMetrics ===

impl ExtraMetrics for XdpMetrics {
    fn counter_families(&self) -> Vec<CounterFamily> {
        let lb = lock(&self.balancer);
        let (Ok(vips), Ok(endpoints), Ok(paths)) = (
            lb.vip_counters(),
            lb.endpoint_counters(),
            lb.forward_counters(),
        ) else {
            return Vec::new();
        };
        let by_outcome = |outcome: ForwardOutcome, label: &'static str| {
            paths
                .iter()
                .filter(|(o, _, _)| *o == outcome)
                .map(|(_, name, n)| (vec![(label, (*name).to_owned())], *n))
                .collect()
        };
        let labels = |vip: &Vip| {
            vec![
                (
                    "listener",
                    self.listener_of.get(vip).cloned().unwrap_or_default(),
                ),
                ("vip", vip.address.to_string()),
            ]
        };
        let family = |name, help, bytes, samples| CounterFamily {
            name,
            help,
            bytes,
            samples,
        };
        let with_endpoint = |vip: &Vip, ep: &std::net::SocketAddrV4| {
            let mut l = labels(vip);
            l.push(("endpoint", ep.to_string()));
            l
        };
        vec![
            family(
                "weir_xdp_vip_packets",
                "Packets the XDP balancer sent on for a VIP.",
                false,
                vips.iter()
                    .map(|(v, _, c)| (labels(v), c.packets))
                    .collect(),
            ),
            family(
                "weir_xdp_vip_received",
                "Bytes of the packets the XDP balancer sent on for a VIP (as received).",
                true,
                vips.iter().map(|(v, _, c)| (labels(v), c.bytes)).collect(),
            ),
            family(
                "weir_xdp_endpoint_packets",
                "Packets the XDP balancer sent to an endpoint of a VIP.",
                false,
                endpoints
                    .iter()
                    .map(|(v, e, c)| (with_endpoint(v, e), c.packets))
                    .collect(),
            ),
            family(
                "weir_xdp_endpoint_received",
                "Bytes of the packets the XDP balancer sent to an endpoint of a VIP (as received).",
                true,
                endpoints
                    .iter()
                    .map(|(v, e, c)| (with_endpoint(v, e), c.bytes))
                    .collect(),
            ),
            family(
                "weir_xdp_forwarded_packets",
                "Packets the XDP balancer sent on as configured, by path: redirect or tx (the \
                 FIB's next hop), gateway (gateway_mac), kernel (forwarding_path: kernel).",
                false,
                by_outcome(ForwardOutcome::Forwarded, "path"),
            ),
            family(
                "weir_xdp_fallback_packets",
                "Packets the XDP balancer passed to the kernel because the FIB path could not \
                 be taken, by reason (ttl, no_neighbour, frag_needed, no_route, \
                 forwarding_disabled, other).",
                false,
                by_outcome(ForwardOutcome::Fallback, "reason"),
            ),
        ]
    }
}

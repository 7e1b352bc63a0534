//! weir's kernel data plane, wired to the config, the snapshots and the health view: `xdp`
//! listeners are balanced by weir-ebpf's XDP program instead of a socket.
//!
//! At start the program is loaded, each listener's VIPs get the cluster's Maglev table, and the
//! program is attached to the listed interfaces. A sync thread then follows the published
//! snapshots (reloads, service discovery: the endpoint set) and the health generation (active
//! checks, outlier ejection, drains) every [`SYNC_INTERVAL`], writing only what changed; so an
//! endpoint marked down stops receiving new flows within one check interval. Per-VIP and
//! per-endpoint counters are exported on `/metrics`. Shutdown detaches the program.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use weir_admin::{CounterFamily, ExtraMetrics};
use weir_config::{
    ListenerProtocol, MaglevConfig, ValidatedConfig, XdpForwarding, XdpTransport, parse_mac,
};
use weir_core::health_generation;
use weir_ebpf::{Forwarding, Limits, Protocol, Vip, XdpBalancer};
use weir_proxy::{Snapshot, SnapshotHandle};

/// How often the sync thread looks for endpoint and health changes: well under any health
/// check interval, and a load plus an atomic read when nothing changed.
pub(crate) const SYNC_INTERVAL: Duration = Duration::from_millis(100);

/// One VIP to program, from an `xdp` listener.
#[derive(Debug, Clone)]
struct VipPlan {
    listener: String,
    vip: Vip,
    forwarding: Forwarding,
    cluster: String,
    maglev: MaglevConfig,
    panic_threshold: u32,
}

/// The running kernel data plane.
#[derive(Debug)]
pub(crate) struct KernelPlane {
    balancer: Arc<Mutex<XdpBalancer>>,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    metrics: Arc<XdpMetrics>,
}

/// `/metrics` families read from the program's per-CPU counters.
#[derive(Debug)]
pub(crate) struct XdpMetrics {
    balancer: Arc<Mutex<XdpBalancer>>,
    listener_of: HashMap<Vip, String>,
}

impl KernelPlane {
    /// Loads, programs and attaches the XDP balancer for `config`'s `xdp` listeners; `None`
    /// when there are none.
    pub(crate) fn start(
        config: &ValidatedConfig,
        snapshots: &SnapshotHandle,
    ) -> anyhow::Result<Option<Self>> {
        let plans = plans(config);
        let Some(first) = config.config().listeners.iter().find_map(|l| {
            l.xdp
                .as_ref()
                .filter(|_| l.protocol == ListenerProtocol::Xdp)
        }) else {
            return Ok(None);
        };
        let snapshot = snapshots.load();
        let endpoints: usize = plans
            .iter()
            .map(|p| {
                snapshot
                    .cluster(&p.cluster)
                    .map_or(0, |c| c.endpoints.len())
            })
            .sum();
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
        let mut lb = XdpBalancer::load(limits).context("xdp: loading the BPF program")?;
        let local = match first.local_address {
            Some(IpAddr::V4(a)) => a,
            _ => Ipv4Addr::UNSPECIFIED,
        };
        lb.set_local(local, first.gateway_mac.as_deref().and_then(parse_mac))?;
        let mut synced = Synced::default();
        synced.apply(&mut lb, &plans, &snapshot, true)?;
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
        let listener_of = plans.iter().map(|p| (p.vip, p.listener.clone())).collect();
        let balancer = Arc::new(Mutex::new(lb));
        let (stop, stopped) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("weir-xdp-sync".to_owned())
            .spawn({
                let balancer = Arc::clone(&balancer);
                let snapshots = snapshots.clone();
                move || sync_loop(&balancer, &snapshots, &plans, synced, &stopped)
            })
            .context("xdp: starting the sync thread")?;
        Ok(Some(Self {
            metrics: Arc::new(XdpMetrics {
                balancer: Arc::clone(&balancer),
                listener_of,
            }),
            balancer,
            stop: Some(stop),
            thread: Some(thread),
        }))
    }

    /// The `/metrics` source of the program's counters.
    pub(crate) fn metrics(&self) -> Arc<dyn ExtraMetrics> {
        Arc::clone(&self.metrics) as Arc<dyn ExtraMetrics>
    }

    /// Stops the sync thread and detaches the program from every interface.
    pub(crate) fn shutdown(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the XDP sync thread panicked");
        }
        if let Err(e) = lock(&self.balancer).detach_all() {
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

/// The VIPs of every `xdp` listener, with the settings of the cluster they balance over.
fn plans(config: &ValidatedConfig) -> Vec<VipPlan> {
    let config = config.config();
    let mut plans = Vec::new();
    for l in &config.listeners {
        let (ListenerProtocol::Xdp, Some(xdp), Some(cluster)) = (l.protocol, &l.xdp, &l.cluster)
        else {
            continue;
        };
        let Some(c) = config.clusters.iter().find(|c| &c.name == cluster) else {
            continue;
        };
        let protocol = match xdp.transport {
            XdpTransport::Tcp => Protocol::Tcp,
            XdpTransport::Udp => Protocol::Udp,
        };
        let forwarding = match xdp.forwarding {
            XdpForwarding::Ipip => Forwarding::Ipip,
            XdpForwarding::Dnat => Forwarding::Dnat,
        };
        for address in std::iter::once(l.address).chain(xdp.vips.iter().copied()) {
            let SocketAddr::V4(address) = address else {
                continue; // validation rejects these
            };
            plans.push(VipPlan {
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

/// What the sync thread last wrote: per VIP the endpoints (address, weight), and the health
/// generation seen.
#[derive(Debug, Default)]
struct Synced {
    endpoints: HashMap<Vip, Vec<(SocketAddr, u32)>>,
    generation: u64,
}

impl Synced {
    /// Programs every VIP whose endpoint set differs from what was written (all when `force`),
    /// then rewrites the flags of endpoints whose health changed.
    fn apply(
        &mut self,
        lb: &mut XdpBalancer,
        plans: &[VipPlan],
        snapshot: &Snapshot,
        force: bool,
    ) -> Result<(), weir_ebpf::Error> {
        let generation = health_generation();
        let mut programmed = false;
        for plan in plans {
            let endpoints = snapshot
                .cluster(&plan.cluster)
                .map(|c| c.endpoints.as_slice())
                .unwrap_or_default();
            let key: Vec<(SocketAddr, u32)> =
                endpoints.iter().map(|e| (e.address, e.weight)).collect();
            if !force && self.endpoints.get(&plan.vip) == Some(&key) {
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
            self.endpoints.insert(plan.vip, key);
            programmed = true;
        }
        if !programmed && generation != self.generation {
            let changed = lb.refresh_health()?;
            tracing::debug!(changed, "XDP endpoint health synced");
        }
        self.generation = generation;
        Ok(())
    }
}

fn sync_loop(
    balancer: &Mutex<XdpBalancer>,
    snapshots: &SnapshotHandle,
    plans: &[VipPlan],
    mut synced: Synced,
    stopped: &mpsc::Receiver<()>,
) {
    let mut last = snapshots.load();
    let mut retry = false;
    loop {
        match stopped.recv_timeout(SYNC_INTERVAL) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        let snapshot = snapshots.load();
        let new_snapshot = !Arc::ptr_eq(&snapshot, &last);
        if !retry && !new_snapshot && health_generation() == synced.generation {
            continue;
        }
        retry = false;
        if let Err(e) = synced.apply(&mut lock(balancer), plans, &snapshot, false) {
            // Reprogram every VIP on the next tick: the maps may be half written.
            tracing::error!(error = %e, "XDP map update failed; retrying");
            synced.endpoints.clear();
            retry = true;
        }
        last = snapshot;
    }
}

// === impl XdpMetrics ===

impl ExtraMetrics for XdpMetrics {
    fn counter_families(&self) -> Vec<CounterFamily> {
        let lb = lock(&self.balancer);
        let (Ok(vips), Ok(endpoints)) = (lb.vip_counters(), lb.endpoint_counters()) else {
            return Vec::new();
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
        ]
    }
}

//! The XDP balancer as weir drives it: loads `bpf/xdp_lb.o`, attaches it to interfaces, and
//! keeps its maps in step with the VIPs, their endpoints and the health view.
//!
//! Each VIP owns a fixed region of the `ring` array (`ring_capacity` slots) holding the Maglev
//! table weir-balance builds, as stable endpoint ids rather than list indices, so a membership
//! change rewrites only the slots Maglev moved and a health change rewrites one endpoint's flags:
//! updates are incremental, never a reload. The kernel walks the table exactly as
//! `weir_balance::Maglev` does; eligibility (health, panic mode) is computed here with
//! [`weir_balance::eligible_endpoints`].

use std::collections::HashMap;
use std::net::{SocketAddr, SocketAddrV4};
use std::sync::Arc;

use aya::maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray, PerCpuValues};
use aya::programs::{ProgramError, Xdp, XdpMode, xdp::XdpLinkId};
use aya::{Ebpf, EbpfLoader};
use weir_balance::{CommonOptions, Maglev, eligible_endpoints};
use weir_config::MaglevConfig;
use weir_core::Endpoint;

use crate::flow::{IPPROTO_TCP, IPPROTO_UDP};
use crate::maps::{
    CFG_KERNEL_PATH, CountersValue, EP_ELIGIBLE, EP_PRESENT, EndpointValue, FWD_REASONS, FlowKey,
    LbConfig, VIP_MODE_DNAT, VipInfo, VipKey,
};
use crate::{Error, OBJECT, PROGRAM};

/// Map and table sizes, fixed when the program is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How many VIPs the maps hold.
    pub max_vips: u32,
    /// How many endpoints (summed over VIPs: each VIP's endpoints have their own entries)
    /// the maps hold.
    pub max_endpoints: u32,
    /// Slots reserved per VIP: the largest Maglev table size (a prime) a VIP may use.
    pub ring_capacity: u32,
    /// Entries of the LRU connection table (and of the DNAT reverse table).
    pub conntrack_entries: u32,
}

impl Limits {
    /// The ring slots a VIP needs for a configured Maglev `table_size` (the prime weir-balance
    /// rounds it up to).
    pub fn ring_slots(table_size: u32) -> u32 {
        u32::try_from(Maglev::table_len(table_size)).unwrap_or(u32::MAX)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_vips: 64,
            max_endpoints: 4096,
            ring_capacity: 65_537,
            conntrack_entries: 65_536,
        }
    }
}

/// The transport protocol of a VIP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    fn number(self) -> u8 {
        match self {
            Self::Tcp => IPPROTO_TCP,
            Self::Udp => IPPROTO_UDP,
        }
    }
}

/// How packets reach the chosen endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Forwarding {
    /// IP-in-IP encapsulation to the endpoint, which decapsulates and answers the client
    /// directly (direct server return).
    Ipip,
    /// Destination rewrite to the endpoint's address and port; replies must come back through
    /// the balancer, which rewrites their source back to the VIP.
    Dnat,
}

/// Without a gateway MAC, how balanced packets leave the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ForwardingPath {
    /// Look the new destination up in the kernel's FIB (`bpf_fib_lookup`) and send the frame
    /// from XDP (`bpf_redirect`, or `XDP_TX` when the egress is the ingress interface); what
    /// the FIB cannot answer at once is passed to the kernel and counted as a fallback.
    #[default]
    Fib,
    /// Hand every balanced packet to the kernel (`XDP_PASS`), which routes it.
    Kernel,
}

/// How packets left the program after balancing (or reverse translation), by `fwd_stats`
/// index: a label and whether it is a fallback to the kernel.
pub const FORWARD_OUTCOMES: [(ForwardOutcome, &str); FWD_REASONS as usize] = [
    (ForwardOutcome::Forwarded, "redirect"),
    (ForwardOutcome::Forwarded, "tx"),
    (ForwardOutcome::Forwarded, "gateway"),
    (ForwardOutcome::Forwarded, "kernel"),
    (ForwardOutcome::Fallback, "ttl"),
    (ForwardOutcome::Fallback, "no_neighbour"),
    (ForwardOutcome::Fallback, "frag_needed"),
    (ForwardOutcome::Fallback, "no_route"),
    (ForwardOutcome::Fallback, "forwarding_disabled"),
    (ForwardOutcome::Fallback, "other"),
];

/// Whether a [`FORWARD_OUTCOMES`] entry is the intended path or a fallback to the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ForwardOutcome {
    /// Sent as configured: `redirect` and `tx` (FIB), `gateway` (`gateway_mac`), `kernel`
    /// (`ForwardingPath::Kernel`).
    Forwarded,
    /// The FIB path could not be taken; the packet was passed to the kernel. Labels: `ttl`
    /// (TTL ≤ 1: the kernel sends the ICMP error), `no_neighbour` (the kernel resolves it for
    /// the next packets), `frag_needed` (larger than the egress MTU), `no_route` (blackhole,
    /// unreachable, prohibit, not forwarded), `forwarding_disabled` (on the ingress interface),
    /// `other`.
    Fallback,
}

/// A virtual IP: the address, port and protocol clients connect to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Vip {
    /// Address and port.
    pub address: SocketAddrV4,
    /// Transport protocol.
    pub protocol: Protocol,
}

/// Packet and byte counts summed over CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// Packets balanced.
    pub packets: u64,
    /// Bytes of those packets as received (before encapsulation).
    pub bytes: u64,
}

/// How a program ended up attached to an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachMode {
    /// In the driver (native XDP).
    Native,
    /// In the kernel's generic (skb) path, for drivers without XDP support.
    Generic,
}

#[derive(Debug)]
struct VipEntry {
    id: u32,
    forwarding: Forwarding,
    endpoints: Vec<Arc<Endpoint>>,
    panic_threshold: u32,
    /// Endpoint id per table slot, as written to `ring`.
    ring: Vec<u32>,
}

#[derive(Debug)]
struct EndpointEntry {
    id: u32,
    /// How many times the VIP lists the address.
    users: u32,
    /// The flags last written to the `endpoints` map.
    flags: u16,
}

/// The loaded XDP balancer and weir's view of what its maps hold.
#[derive(Debug)]
pub struct XdpBalancer {
    ebpf: Ebpf,
    limits: Limits,
    vips: HashMap<Vip, VipEntry>,
    free_vip_ids: Vec<u32>,
    /// Per (VIP, endpoint address): a VIP's own entry, so removing an endpoint from one VIP
    /// ends that VIP's pinned flows even while another VIP still lists the address.
    endpoints: HashMap<(Vip, SocketAddrV4), EndpointEntry>,
    free_endpoint_ids: Vec<u32>,
    links: Vec<(String, XdpLinkId)>,
}

impl XdpBalancer {
    /// Loads the program and creates its maps sized by `limits` (needs CAP_BPF / root).
    pub fn load(limits: Limits) -> Result<Self, Error> {
        let ring = limits
            .max_vips
            .checked_mul(limits.ring_capacity)
            .ok_or(Error::Limits("max_vips × ring_capacity overflows"))?;
        let mut ebpf = EbpfLoader::new()
            .map_max_entries("vips", limits.max_vips)
            .map_max_entries("vip_stats", limits.max_vips)
            .map_max_entries("ring", ring)
            .map_max_entries("endpoints", limits.max_endpoints)
            .map_max_entries("endpoint_stats", limits.max_endpoints)
            .map_max_entries("conntrack", limits.conntrack_entries)
            .map_max_entries("reverse_nat", limits.conntrack_entries)
            .load(OBJECT)?;
        let program: &mut Xdp = ebpf
            .program_mut(PROGRAM)
            .ok_or(Error::Missing(PROGRAM))?
            .try_into()?;
        program.load()?;
        Ok(Self {
            ebpf,
            limits,
            vips: HashMap::new(),
            free_vip_ids: (0..limits.max_vips).rev().collect(),
            endpoints: HashMap::new(),
            free_endpoint_ids: (0..limits.max_endpoints).rev().collect(),
            links: Vec::new(),
        })
    }

    /// Sets the balancer's own address (the outer source of IP-in-IP packets) and the next
    /// hop's MAC: with one, balanced packets leave by the interface they came in on (`XDP_TX`);
    /// without, `path` says whether the program forwards them itself to the FIB's next hop
    /// or hands them to the kernel (`XDP_PASS`). DNAT replies follow `path` too.
    pub fn set_local(
        &mut self,
        local: std::net::Ipv4Addr,
        gateway_mac: Option<[u8; 6]>,
        path: ForwardingPath,
    ) -> Result<(), Error> {
        let flags = match path {
            ForwardingPath::Fib => 0,
            ForwardingPath::Kernel => CFG_KERNEL_PATH,
        };
        let mut config: Array<&mut MapData, LbConfig> = Array::try_from(self.map_mut("config")?)?;
        config.set(0, LbConfig::new(local, gateway_mac, flags), 0)?;
        Ok(())
    }

    /// Packets per way out of the program ([`FORWARD_OUTCOMES`], same order), summed over
    /// CPUs: how many took the FIB fast path and how many fell back to the kernel, and why.
    pub fn forward_counters(&self) -> Result<Vec<(ForwardOutcome, &'static str, u64)>, Error> {
        let stats: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(self.map("fwd_stats")?)?;
        FORWARD_OUTCOMES
            .iter()
            .zip(0u32..)
            .map(|(&(outcome, label), i)| Ok((outcome, label, stats.get(&i, 0)?.iter().sum())))
            .collect()
    }

    /// The loaded XDP program (for attaching elsewhere or `BPF_PROG_TEST_RUN`).
    pub fn program(&self) -> Result<&Xdp, Error> {
        Ok(self
            .ebpf
            .program(PROGRAM)
            .ok_or(Error::Missing(PROGRAM))?
            .try_into()?)
    }

    /// Attaches the program to `interface`: native XDP when the driver supports it, generic
    /// otherwise. Detached by [`XdpBalancer::detach_all`] or when the balancer is dropped.
    pub fn attach(&mut self, interface: &str) -> Result<AttachMode, Error> {
        let program: &mut Xdp = self
            .ebpf
            .program_mut(PROGRAM)
            .ok_or(Error::Missing(PROGRAM))?
            .try_into()?;
        let (link, mode) = match program.attach(interface, XdpMode::Driver) {
            Ok(link) => (link, AttachMode::Native),
            Err(native) => match program.attach(interface, XdpMode::Skb) {
                Ok(link) => (link, AttachMode::Generic),
                Err(generic) => {
                    return Err(Error::Attach {
                        interface: interface.to_owned(),
                        native: Box::new(native),
                        generic: Box::new(generic),
                    });
                }
            },
        };
        self.links.push((interface.to_owned(), link));
        Ok(mode)
    }

    /// Detaches the program from every interface it was attached to.
    pub fn detach_all(&mut self) -> Result<(), Error> {
        let program: &mut Xdp = self
            .ebpf
            .program_mut(PROGRAM)
            .ok_or(Error::Missing(PROGRAM))?
            .try_into()?;
        let mut first_error = None;
        for (_, link) in self.links.drain(..) {
            if let Err(e) = program.detach(link) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), |e| Err(e.into()))
    }

    /// The interfaces the program is attached to.
    pub fn attached(&self) -> impl Iterator<Item = &str> {
        self.links.iter().map(|(name, _)| name.as_str())
    }

    /// Adds `vip` or replaces its endpoints and forwarding. The Maglev table is built by
    /// weir-balance from `endpoints` (IPv4 only) with `maglev.table_size`; only the slots whose
    /// endpoint changed are written, and established flows keep their endpoint (connection
    /// table) while it stays listed. `panic_threshold` is the cluster's (see
    /// [`weir_balance::CommonOptions`]).
    pub fn set_vip(
        &mut self,
        vip: Vip,
        forwarding: Forwarding,
        endpoints: &[Arc<Endpoint>],
        maglev: &MaglevConfig,
        panic_threshold: u32,
    ) -> Result<(), Error> {
        let (addrs, table) = crate::table::maglev_table(
            endpoints,
            &CommonOptions {
                panic_threshold,
                ..CommonOptions::default()
            },
            maglev,
        )?;
        let size = table.table().len();
        if size > self.limits.ring_capacity as usize {
            return Err(Error::TableTooLarge {
                size,
                capacity: self.limits.ring_capacity,
            });
        }
        let id = match self.vips.get(&vip) {
            Some(entry) => entry.id,
            None => self.free_vip_ids.pop().ok_or(Error::Full("VIPs"))?,
        };
        // Endpoints first (present, with their flags), then the table, then the VIP: the kernel
        // never reads a slot naming an endpoint it cannot find.
        let mut ids = Vec::with_capacity(addrs.len());
        let eligible = eligible_endpoints(endpoints, panic_threshold);
        for (addr, ok) in addrs.iter().zip(&eligible) {
            let entry_id = self.acquire_endpoint(vip, *addr)?;
            ids.push(entry_id);
            let flags = EP_PRESENT | if *ok { EP_ELIGIBLE } else { 0 };
            self.write_endpoint(vip, *addr, flags)?;
        }
        let ring: Vec<u32> = table.table().iter().map(|&i| ids[i as usize]).collect();
        let base = id * self.limits.ring_capacity;
        let old = self
            .vips
            .get(&vip)
            .map(|e| e.ring.clone())
            .unwrap_or_default();
        {
            let mut map: Array<&mut MapData, u32> = Array::try_from(self.map_mut("ring")?)?;
            for (slot, &ep) in ring.iter().enumerate() {
                if old.len() != ring.len() || old[slot] != ep {
                    map.set(base + slot as u32, ep, 0)?;
                }
            }
        }
        let info = VipInfo {
            id,
            ring_base: base,
            ring_size: ring.len() as u32,
            flags: match forwarding {
                Forwarding::Ipip => 0,
                Forwarding::Dnat => VIP_MODE_DNAT,
            },
        };
        let previous = self.vips.insert(
            vip,
            VipEntry {
                id,
                forwarding,
                endpoints: endpoints.to_vec(),
                panic_threshold,
                ring,
            },
        );
        if previous.is_none() {
            self.zero_counters("vip_stats", id)?;
        }
        let mut map: BpfHashMap<&mut MapData, VipKey, VipInfo> =
            BpfHashMap::try_from(self.map_mut("vips")?)?;
        map.insert(VipKey::new(vip.address, vip.protocol.number()), info, 0)?;
        if let Some(previous) = previous {
            for e in &previous.endpoints {
                if let SocketAddr::V4(a) = e.address {
                    self.release_endpoint(vip, a)?;
                }
            }
        }
        // Each VIP has its own endpoint entries, written above with this VIP's eligibility:
        // nothing of other VIPs changes.
        Ok(())
    }

    /// Removes `vip`: new packets to it pass to the kernel; returns whether it was there.
    pub fn remove_vip(&mut self, vip: Vip) -> Result<bool, Error> {
        let Some(entry) = self.vips.remove(&vip) else {
            return Ok(false);
        };
        let mut map: BpfHashMap<&mut MapData, VipKey, VipInfo> =
            BpfHashMap::try_from(self.map_mut("vips")?)?;
        map.remove(&VipKey::new(vip.address, vip.protocol.number()))?;
        for e in &entry.endpoints {
            if let SocketAddr::V4(a) = e.address {
                self.release_endpoint(vip, a)?;
            }
        }
        self.free_vip_ids.push(entry.id);
        Ok(true)
    }

    /// Re-reads every endpoint's health and rewrites the flags of those whose eligibility
    /// changed (one map update each); returns how many changed. Call it whenever health checks
    /// report: an endpoint marked down gets no new flows from then on.
    pub fn refresh_health(&mut self) -> Result<usize, Error> {
        let mut eligible: HashMap<(Vip, SocketAddrV4), bool> = HashMap::new();
        for (vip, entry) in &self.vips {
            let flags = eligible_endpoints(&entry.endpoints, entry.panic_threshold);
            for (e, ok) in entry.endpoints.iter().zip(flags) {
                if let SocketAddr::V4(a) = e.address {
                    *eligible.entry((*vip, a)).or_default() |= ok;
                }
            }
        }
        let mut changed = 0;
        for ((vip, addr), ok) in eligible {
            let flags = EP_PRESENT | if ok { EP_ELIGIBLE } else { 0 };
            if self
                .endpoints
                .get(&(vip, addr))
                .is_some_and(|e| e.flags != flags)
            {
                self.write_endpoint(vip, addr, flags)?;
                changed += 1;
            }
        }
        Ok(changed)
    }

    /// Per-VIP counters, summed over CPUs.
    pub fn vip_counters(&self) -> Result<Vec<(Vip, Forwarding, Counters)>, Error> {
        let stats: PerCpuArray<&MapData, CountersValue> =
            PerCpuArray::try_from(self.map("vip_stats")?)?;
        self.vips
            .iter()
            .map(|(vip, e)| Ok((*vip, e.forwarding, sum(&stats.get(&e.id, 0)?))))
            .collect()
    }

    /// Per-endpoint counters of each VIP, summed over CPUs.
    pub fn endpoint_counters(&self) -> Result<Vec<(Vip, SocketAddrV4, Counters)>, Error> {
        let stats: PerCpuArray<&MapData, CountersValue> =
            PerCpuArray::try_from(self.map("endpoint_stats")?)?;
        self.endpoints
            .iter()
            .map(|((vip, addr), e)| Ok((*vip, *addr, sum(&stats.get(&e.id, 0)?))))
            .collect()
    }

    /// The Maglev table of `vip` as written to the kernel, as endpoint addresses per slot.
    pub fn table(&self, vip: &Vip) -> Option<Vec<SocketAddrV4>> {
        let entry = self.vips.get(vip)?;
        let by_id: HashMap<u32, SocketAddrV4> = self
            .endpoints
            .iter()
            .map(|((_, a), e)| (e.id, *a))
            .collect();
        entry.ring.iter().map(|id| by_id.get(id).copied()).collect()
    }

    fn acquire_endpoint(&mut self, vip: Vip, addr: SocketAddrV4) -> Result<u32, Error> {
        if let Some(e) = self.endpoints.get_mut(&(vip, addr)) {
            e.users += 1;
            return Ok(e.id);
        }
        let id = self
            .free_endpoint_ids
            .pop()
            .ok_or(Error::Full("endpoints"))?;
        self.zero_counters("endpoint_stats", id)?;
        self.endpoints.insert(
            (vip, addr),
            EndpointEntry {
                id,
                users: 1,
                flags: 0,
            },
        );
        Ok(id)
    }

    /// Drops one listing of `addr` by `vip`; the last one marks the entry absent and forgets
    /// the connections pinned to it, so a later endpoint reusing the id inherits none of them.
    fn release_endpoint(&mut self, vip: Vip, addr: SocketAddrV4) -> Result<(), Error> {
        let Some(e) = self.endpoints.get_mut(&(vip, addr)) else {
            return Ok(());
        };
        e.users = e.users.saturating_sub(1);
        if e.users > 0 {
            return Ok(());
        }
        let id = e.id;
        self.write_endpoint(vip, addr, 0)?;
        self.endpoints.remove(&(vip, addr));
        let mut conntrack: BpfHashMap<&mut MapData, FlowKey, u32> =
            BpfHashMap::try_from(self.map_mut("conntrack")?)?;
        let pinned: Vec<FlowKey> = conntrack
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, v)| *v == id)
            .map(|(k, _)| k)
            .collect();
        for key in pinned {
            // Already evicted by the LRU is fine.
            let _ = conntrack.remove(&key);
        }
        self.free_endpoint_ids.push(id);
        Ok(())
    }

    fn write_endpoint(&mut self, vip: Vip, addr: SocketAddrV4, flags: u16) -> Result<(), Error> {
        let Some(id) = self.endpoints.get(&(vip, addr)).map(|e| e.id) else {
            return Ok(());
        };
        let mut map: Array<&mut MapData, EndpointValue> =
            Array::try_from(self.map_mut("endpoints")?)?;
        map.set(id, EndpointValue::new(addr, flags), 0)?;
        if let Some(e) = self.endpoints.get_mut(&(vip, addr)) {
            e.flags = flags;
        }
        Ok(())
    }

    fn zero_counters(&mut self, name: &'static str, id: u32) -> Result<(), Error> {
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| Error::Cpus(e))?;
        let mut map: PerCpuArray<&mut MapData, CountersValue> =
            PerCpuArray::try_from(self.map_mut(name)?)?;
        let zeros =
            PerCpuValues::try_from(vec![CountersValue::default(); cpus]).map_err(Error::Cpus)?;
        map.set(id, zeros, 0)?;
        Ok(())
    }

    fn map(&self, name: &'static str) -> Result<&aya::maps::Map, Error> {
        self.ebpf.map(name).ok_or(Error::Missing(name))
    }

    fn map_mut(&mut self, name: &'static str) -> Result<&mut aya::maps::Map, Error> {
        self.ebpf.map_mut(name).ok_or(Error::Missing(name))
    }
}

impl Drop for XdpBalancer {
    fn drop(&mut self) {
        if let Err(e) = self.detach_all() {
            tracing::warn!(error = %e, "detaching the XDP balancer");
        }
    }
}

fn sum(values: &PerCpuValues<CountersValue>) -> Counters {
    values.iter().fold(Counters::default(), |acc, c| Counters {
        packets: acc.packets + c.packets,
        bytes: acc.bytes + c.bytes,
    })
}

/// Maps a [`ProgramError`] for callers that only need to print it.
impl From<ProgramError> for Error {
    fn from(e: ProgramError) -> Self {
        Self::Program(Box::new(e))
    }
}

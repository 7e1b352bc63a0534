//! weir's kernel data planes: an XDP L4 balancer (Katran-style) and an nftables service mode,
//! both driven by weir's config, Maglev tables and health view.
//!
//! The BPF program is C (`bpf/xdp_lb.c`), compiled with clang `-target bpf` by
//! `scripts/build-bpf`; the object is committed (`bpf/xdp_lb.o`) so a machine without clang
//! still builds weir, and a test rebuilds it and compares bytes when clang is present.
//! [`XdpBalancer`] loads it with aya, attaches it to interfaces and keeps its maps up to date;
//! [`flow_hash`] is the kernel's flow hash, so userspace can tell which endpoint a flow gets.
//! [`NftBalancer`] programs the same VIPs as nftables verdict maps through `nft -f`.
//! `docs/kernel.md` describes the modes, requirements and limits for operators.

mod balancer;
mod flow;
mod maps;
mod nftables;
mod table;

pub use balancer::{
    AttachMode, Counters, FORWARD_OUTCOMES, ForwardOutcome, Forwarding, ForwardingPath, Limits,
    Protocol, Vip, XdpBalancer,
};
pub use flow::{IPPROTO_TCP, IPPROTO_UDP, flow_hash};
pub use nftables::{NftBalancer, RING_SLOTS};

/// The compiled BPF object, aligned as the ELF parser needs.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!("../bpf/xdp_lb.o");

/// The C source the object is built from (the source-match test rebuilds it).
pub const SOURCE_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/bpf/xdp_lb.c");

/// The name of the XDP program in the object.
pub const PROGRAM: &str = "xdp_lb";

/// What can go wrong loading or driving the XDP balancer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The object could not be loaded (not root, no BPF support, verifier rejection).
    #[error("loading the XDP object: {0}")]
    Load(#[from] aya::EbpfError),
    /// A program operation failed (load, attach, detach, test run).
    #[error("XDP program: {0}")]
    Program(Box<aya::programs::ProgramError>),
    /// A map read or update failed.
    #[error("XDP map: {0}")]
    Map(#[from] aya::maps::MapError),
    /// The object lacks a program or map this crate expects (a stale object).
    #[error("the XDP object has no {0:?}")]
    Missing(&'static str),
    /// The kernel balancer handles IPv4 endpoints only.
    #[error("endpoint {0} is not IPv4; the XDP balancer handles IPv4 only")]
    NotIpv4(std::net::SocketAddr),
    /// All VIP or endpoint slots are in use.
    #[error("no room for more {0} (raise the XDP limits)")]
    Full(&'static str),
    /// A Maglev table is larger than the slots reserved per VIP.
    #[error("a Maglev table of {size} slots exceeds the {capacity} reserved per VIP")]
    TableTooLarge {
        /// The table's size.
        size: usize,
        /// Slots reserved per VIP.
        capacity: u32,
    },
    /// The limits do not fit the maps.
    #[error("XDP limits: {0}")]
    Limits(&'static str),
    /// Neither native nor generic XDP could be attached.
    #[error("attaching XDP to {interface}: native: {native}; generic: {generic}")]
    Attach {
        /// The interface.
        interface: String,
        /// Why native mode failed.
        native: Box<aya::programs::ProgramError>,
        /// Why generic mode failed.
        generic: Box<aya::programs::ProgramError>,
    },
    /// The number of possible CPUs could not be read.
    #[error("reading the CPU count: {0}")]
    Cpus(std::io::Error),
    /// `nft` failed or could not be run (nftables mode).
    #[error("nftables: {0}")]
    Nft(String),
}

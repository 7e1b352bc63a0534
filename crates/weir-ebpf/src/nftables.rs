//! The nftables service mode: VIPs balanced by netfilter, programmed with `nft -f`.
//!
//! One table (`ip weir`, or the name given) holds a verdict map from (VIP address, protocol,
//! port) to a per-VIP chain whose single rule DNATs to `jhash(5-tuple) mod M map @ring_<i>`:
//! two O(1) lookups per new connection whatever the number of VIPs or endpoints (kube-proxy's
//! nftables design, with a Maglev table as the map). The ring is the Maglev table weir-balance
//! builds (M = [`RING_SLOTS`]); a slot whose endpoint is not eligible is given to the eligible
//! endpoints in turn. Netfilter's conntrack keeps established connections on their endpoint and
//! translates the replies. Every change is one `nft -f` transaction (atomic): the first creates
//! the table, later ones replace only the ring slots that changed. [`NftBalancer::remove`]
//! deletes the table.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddrV4;
use std::process::{Command, Stdio};
use std::sync::Arc;

use weir_balance::{CommonOptions, eligible_endpoints};
use weir_config::MaglevConfig;
use weir_core::Endpoint;

use crate::{Error, Protocol, Vip};

/// Slots of each VIP's ring map (a prime).
pub const RING_SLOTS: u32 = 1_009;

/// Seed of the 5-tuple `jhash`.
const JHASH_SEED: u32 = 0x7765_6972;

/// A VIP as programmed: its endpoints per ring slot.
#[derive(Debug)]
struct Programmed {
    vip: Vip,
    ring: Vec<SocketAddrV4>,
}

/// VIPs balanced by nftables maps in one table.
#[derive(Debug)]
pub struct NftBalancer {
    table: String,
    vips: Vec<Programmed>,
    installed: bool,
}

impl NftBalancer {
    /// A balancer that will own table `ip <table>` (replacing any stale one on install).
    pub fn new(table: &str) -> Self {
        Self {
            table: table.to_owned(),
            vips: Vec::new(),
            installed: false,
        }
    }

    /// Creates the table with `vips` (index = position), each balanced over its endpoints
    /// (IPv4) with the cluster's `panic_threshold`, in one transaction.
    pub fn install(&mut self, vips: &[(Vip, &[Arc<Endpoint>], u32)]) -> Result<(), Error> {
        let t = &self.table;
        let mut script = String::new();
        // Creating then deleting makes the delete succeed whether or not a stale table exists.
        let _ = writeln!(
            script,
            "add table ip {t}\ndelete table ip {t}\ntable ip {t} {{"
        );
        let _ = writeln!(
            script,
            "  map vips {{ type ipv4_addr . inet_proto . inet_service : verdict; }}"
        );
        let mut programmed = Vec::new();
        for (i, (vip, endpoints, panic)) in vips.iter().enumerate() {
            let proto = proto_name(vip.protocol);
            let _ = writeln!(
                script,
                "  map ring_{i} {{ typeof numgen inc mod 2 : ip daddr . {proto} dport; }}"
            );
            let _ = writeln!(
                script,
                "  chain vip_{i} {{\n    meta l4proto {proto} dnat ip addr . port to jhash ip saddr . \
                 {proto} sport . ip daddr . {proto} dport mod {RING_SLOTS} seed {JHASH_SEED:#x} \
                 map @ring_{i}\n  }}"
            );
            programmed.push(Programmed {
                vip: *vip,
                ring: ring(endpoints, *panic)?,
            });
        }
        let _ = writeln!(
            script,
            "  chain prerouting {{\n    type nat hook prerouting priority dstnat; policy accept;\n    \
             ip daddr . meta l4proto . th dport vmap @vips\n  }}\n}}"
        );
        for (i, p) in programmed.iter().enumerate() {
            if !p.ring.is_empty() {
                let elements: Vec<String> = p
                    .ring
                    .iter()
                    .enumerate()
                    .map(|(s, a)| format!("{s} : {} . {}", a.ip(), a.port()))
                    .collect();
                let _ = writeln!(
                    script,
                    "add element ip {t} ring_{i} {{ {} }}",
                    elements.join(", ")
                );
            }
            let _ = writeln!(
                script,
                "add element ip {t} vips {{ {} . {} . {} : goto vip_{i} }}",
                p.vip.address.ip(),
                proto_name(p.vip.protocol),
                p.vip.address.port()
            );
        }
        nft(&script)?;
        self.vips = programmed;
        self.installed = true;
        Ok(())
    }

    /// Re-balances VIP `index` over `endpoints` (health or membership changed): replaces only
    /// the ring slots whose endpoint changed, in one transaction; returns how many.
    pub fn update(
        &mut self,
        index: usize,
        endpoints: &[Arc<Endpoint>],
        panic_threshold: u32,
    ) -> Result<usize, Error> {
        let next = ring(endpoints, panic_threshold)?;
        let Some(p) = self.vips.get_mut(index) else {
            return Ok(0);
        };
        let t = &self.table;
        let mut script = String::new();
        let mut changed = 0;
        for s in 0..next.len().max(p.ring.len()) {
            let (old, new) = (p.ring.get(s), next.get(s));
            if old == new {
                continue;
            }
            changed += 1;
            if old.is_some() {
                let _ = writeln!(script, "delete element ip {t} ring_{index} {{ {s} }}");
            }
            if let Some(a) = new {
                let _ = writeln!(
                    script,
                    "add element ip {t} ring_{index} {{ {s} : {} . {} }}",
                    a.ip(),
                    a.port()
                );
            }
        }
        if changed > 0 {
            nft(&script)?;
        }
        p.ring = next;
        Ok(changed)
    }

    /// Deletes the table (and so every rule and map weir made).
    pub fn remove(&mut self) -> Result<(), Error> {
        if self.installed {
            nft(&format!("delete table ip {}\n", self.table))?;
            self.installed = false;
        }
        Ok(())
    }
}

impl Drop for NftBalancer {
    fn drop(&mut self) {
        if let Err(e) = self.remove() {
            tracing::warn!(error = %e, "removing the nftables table");
        }
    }
}

fn proto_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    }
}

/// The endpoint per ring slot: weir-balance's Maglev table, with the slots of ineligible
/// endpoints dealt to the eligible ones in turn (empty when there are no endpoints).
fn ring(endpoints: &[Arc<Endpoint>], panic_threshold: u32) -> Result<Vec<SocketAddrV4>, Error> {
    let (addrs, maglev) = crate::table::maglev_table(
        endpoints,
        &CommonOptions::default(),
        &MaglevConfig {
            table_size: RING_SLOTS,
        },
    )?;
    let eligible = eligible_endpoints(endpoints, panic_threshold);
    let takers: Vec<usize> = (0..addrs.len()).filter(|&i| eligible[i]).collect();
    let mut turn = 0;
    Ok(maglev
        .table()
        .iter()
        .map(|&i| {
            let i = i as usize;
            if eligible[i] || takers.is_empty() {
                addrs[i]
            } else {
                turn += 1;
                addrs[takers[turn % takers.len()]]
            }
        })
        .collect())
}

/// Runs `nft -f -` with `script` as one transaction.
fn nft(script: &str) -> Result<(), Error> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Nft(format!("running nft: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| Error::Nft(format!("writing to nft: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::Nft(format!("waiting for nft: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Nft(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn endpoints(n: u8) -> Vec<Arc<Endpoint>> {
        (1..=n)
            .map(|i| {
                Arc::new(Endpoint::new(
                    format!("10.1.0.{i}:8080").parse().unwrap(),
                    1,
                ))
            })
            .collect()
    }

    #[test]
    fn ring_is_the_maglev_table_and_down_endpoints_lose_only_their_slots() {
        let eps = endpoints(4);
        let before = ring(&eps, 50).unwrap();
        assert_eq!(before.len(), RING_SLOTS as usize);
        for ep in &eps {
            let SocketAddr::V4(a) = ep.address else {
                unreachable!()
            };
            let slots = before.iter().filter(|&&s| s == a).count();
            assert!((251..=254).contains(&slots), "{a}: {slots} slots");
        }
        eps[2].state.set_healthy(false, 0);
        let after = ring(&eps, 50).unwrap();
        let down: SocketAddrV4 = "10.1.0.3:8080".parse().unwrap();
        assert!(!after.contains(&down));
        for (old, new) in before.iter().zip(&after) {
            if *old != down {
                assert_eq!(old, new, "a healthy endpoint's slot moved");
            }
        }
        // Its slots are dealt evenly to the other three.
        for a in ["10.1.0.1:8080", "10.1.0.2:8080", "10.1.0.4:8080"] {
            let a: SocketAddrV4 = a.parse().unwrap();
            let slots = after.iter().filter(|&&s| s == a).count();
            assert!((334..=338).contains(&slots), "{a}: {slots} slots");
        }
    }

    #[test]
    fn all_down_fails_open_and_ipv6_is_refused() {
        let eps = endpoints(2);
        for e in &eps {
            e.state.set_healthy(false, 0);
        }
        // Panic mode (0 % healthy < 50 %): every endpoint stays in the ring.
        assert_eq!(ring(&eps, 50).unwrap(), ring(&endpoints(2), 50).unwrap());
        let v6 = [Arc::new(Endpoint::new("[::1]:80".parse().unwrap(), 1))];
        assert!(matches!(ring(&v6, 50), Err(Error::NotIpv4(_))));
        assert!(ring(&[], 50).unwrap().is_empty());
    }
}

//! Results of `weir-bench kernel`: the raw runs as JSON (`target/bench/kernel.json`) and a
//! Markdown summary (`target/bench/kernel.md`) with median and min–max per (plane, VIPs) cell,
//! the balancing cost over the `direct` floor (sending and receiving without a balancer hop),
//! and the ratios issue #10 sets goals for.

use std::fmt::Write as _;
use std::path::Path;

use crate::kernel::{KernelResults, KernelRun, Plane};
use crate::report::stats;

/// Writes the JSON and the Markdown and prints the Markdown.
pub(crate) fn save(results: &KernelResults, out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    let json = crate::kernel::results_path(out);
    std::fs::write(&json, serde_json::to_string_pretty(results)?)?;
    let md = markdown(results);
    std::fs::write(out.join("kernel.md"), &md)?;
    println!("{md}");
    eprintln!(
        "wrote {} and {}",
        json.display(),
        out.join("kernel.md").display()
    );
    Ok(())
}

/// Rebuilds the Markdown from a saved `kernel.json`.
pub(crate) fn from_file(path: &Path) -> anyhow::Result<()> {
    let results: KernelResults = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    let md = markdown(&results);
    if let Some(dir) = path.parent() {
        std::fs::write(dir.join("kernel.md"), &md)?;
    }
    println!("{md}");
    Ok(())
}

fn cell(r: &KernelResults, plane: Plane, vips: u32) -> Vec<&KernelRun> {
    r.runs
        .iter()
        .filter(|x| x.plane == plane && x.vips == vips)
        .collect()
}

fn med(runs: &[&KernelRun], f: impl Fn(&KernelRun) -> f64) -> Option<(f64, f64, f64)> {
    stats(runs.iter().map(|r| f(r)).collect())
}

fn fmt3((m, lo, hi): (f64, f64, f64), scale: f64) -> String {
    format!("{:.0} ({:.0}–{:.0})", m / scale, lo / scale, hi / scale)
}

fn markdown(r: &KernelResults) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# weir kernel data planes: UDP flood through a veth balancer namespace\n\n\
         `{}` — {}, kernel {}, {} — weir {}; {} flows, {}-byte payload, {} s measured per run; \
         median (min–max) of {} interleaved rounds.\n",
        r.machine.command,
        r.machine.date,
        r.machine.kernel,
        r.machine.cpu.trim(),
        r.machine.weir,
        r.flows,
        r.size,
        r.duration_s,
        r.runs.iter().map(|x| x.round).max().unwrap_or(0)
    );
    // The floor per VIP count: `direct` with that count's flows (runs saved before the floor
    // was per count have it at 0 VIPs).
    let floor_of = |v: u32| {
        let runs = cell(r, Plane::Direct, v);
        let runs = if runs.is_empty() {
            cell(r, Plane::Direct, 0)
        } else {
            runs
        };
        med(&runs, |x| x.own_ns_per_pkt).map_or(0.0, |t| t.0)
    };
    let _ = writeln!(
        s,
        "own CPU ns/pkt = user + system time of the flood, the sink, weir and the ksoftirqd \
         threads (where the path's softirq work is charged), per packet that reached the \
         endpoint; balancing = that minus the median of the `direct` runs with as many flows \
         (the same flood sent to the endpoint over a veth of its own: the sending and receiving \
         every plane pays; `baseline` against the first VIP count's); `baseline` is plain kernel \
         routing through the balancer namespace without a balancer. Mpps per core = 1000 ÷ balancing ns. system CPU ns/pkt = both \
         CPUs' system+irq+softirq time from /proc/stat plus weir's user time (includes other \
         tenants' kernel work).\n"
    );
    let _ = writeln!(
        s,
        "| plane | VIPs | flows | XDP mode | kpps delivered | kpps sent | own CPU ns/pkt | balancing ns/pkt | Mpps per balancing core | system CPU ns/pkt | weir process ns/pkt | load |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    let mut vips: Vec<u32> = r.runs.iter().map(|x| x.vips).collect();
    vips.sort_unstable();
    vips.dedup();
    let planes = [
        Plane::Direct,
        Plane::Baseline,
        Plane::Xdp,
        Plane::Nftables,
        Plane::Userspace,
    ];
    let mut balancing = Vec::new();
    for &v in &vips {
        for plane in planes {
            let runs = cell(r, plane, v);
            let (Some(pps), Some(sent), Some(cpu), Some(weir), Some(load), Some(system)) = (
                med(&runs, |x| x.pps),
                med(&runs, |x| x.sent_pps),
                med(&runs, |x| x.own_ns_per_pkt),
                med(&runs, |x| x.weir_ns_per_pkt),
                med(&runs, |x| x.loadavg),
                med(&runs, |x| x.cpu_ns_per_pkt),
            ) else {
                continue;
            };
            let base_cpu = if plane == Plane::Baseline {
                floor_of(vips.iter().copied().find(|&x| x > 0).unwrap_or(0))
            } else {
                floor_of(v)
            };
            let bal = (cpu.0 - base_cpu, cpu.1 - base_cpu, cpu.2 - base_cpu);
            let floor_plane = plane == Plane::Direct;
            let unbalanced = floor_plane || plane == Plane::Baseline;
            if !unbalanced {
                balancing.push((plane, v, bal.0, pps.0));
            }
            let flows = runs.iter().map(|x| x.flows).max().unwrap_or(0);
            let per_core = if floor_plane || bal.0 <= 0.0 {
                "–".to_string()
            } else {
                format!("{:.2}", 1000.0 / bal.0)
            };
            let attach = runs
                .iter()
                .find_map(|x| x.attach.clone())
                .unwrap_or_else(|| "–".into());
            let _ = writeln!(
                s,
                "| {} | {} | {flows} | {attach} | {} | {:.0} | {} | {} | {per_core} | {} | {:.0} | {:.1} |",
                plane.name(),
                if plane == Plane::Baseline || v == 0 {
                    "–".to_string()
                } else {
                    v.to_string()
                },
                fmt3(pps, 1000.0),
                sent.0 / 1000.0,
                fmt3(cpu, 1.0),
                if floor_plane {
                    "–".to_string()
                } else {
                    fmt3(bal, 1.0)
                },
                fmt3(system, 1.0),
                weir.0,
                load.0
            );
        }
    }
    let _ = writeln!(
        s,
        "\nGoals of issue #10 (per core = balancing CPU per packet; delivered pps alongside):\n"
    );
    let _ = writeln!(
        s,
        "| VIPs | XDP ÷ userspace, per core (goal ≥ 4) | XDP ÷ nftables, per core (goal ≥ 2) | XDP ÷ userspace, pps | XDP ÷ nftables, pps |\n|---|---|---|---|---|"
    );
    let find = |p: Plane, v: u32| balancing.iter().find(|b| b.0 == p && b.1 == v);
    let ratio = |a: f64, b: f64| {
        if a > 0.0 && b > 0.0 {
            format!("{:.2}", b / a)
        } else {
            "n/a".into()
        }
    };
    for &v in vips.iter().filter(|&&v| v > 0) {
        let (Some(x), u, n) = (
            find(Plane::Xdp, v),
            find(Plane::Userspace, v),
            find(Plane::Nftables, v),
        ) else {
            continue;
        };
        let _ = writeln!(
            s,
            "| {v} | {} | {} | {} | {} |",
            u.map_or("n/a".into(), |u| ratio(x.2, u.2)),
            n.map_or("n/a".into(), |n| ratio(x.2, n.2)),
            u.map_or("n/a".into(), |u| ratio(u.3, x.3)),
            n.map_or("n/a".into(), |n| ratio(n.3, x.3)),
        );
    }
    s
}

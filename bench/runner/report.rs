//! Raw results (`runs.json`, `runs.csv`) and their Markdown summary (`summary.md`): medians and
//! min–max per scenario and peer, and the ratio weir ÷ best peer.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// Where, when and how the runs were made.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Meta {
    pub(crate) date: String,
    pub(crate) command: String,
    pub(crate) nproc: usize,
    pub(crate) cpu: String,
    pub(crate) kernel: String,
    pub(crate) os: String,
    pub(crate) weir: String,
    pub(crate) nginx: String,
    pub(crate) haproxy: String,
    pub(crate) wrk: String,
    pub(crate) h2load: String,
    pub(crate) runs: u32,
    pub(crate) duration_s: u64,
}

/// One measured run of one scenario through one peer.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(crate) struct Run {
    pub(crate) scenario: String,
    pub(crate) peer: String,
    pub(crate) round: u32,
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    pub(crate) seconds: f64,
    pub(crate) rps: f64,
    pub(crate) p50_us: Option<f64>,
    pub(crate) p99_us: Option<f64>,
    pub(crate) mean_us: Option<f64>,
    /// Proxy utime+stime (all threads and child processes) ÷ requests; none for `direct`.
    pub(crate) proxy_cpu_us_per_req: Option<f64>,
    /// The endpoint's utime+stime ÷ requests.
    pub(crate) endpoint_cpu_us_per_req: f64,
    /// 1-minute load average when the run ended: other work on the machine shows up here.
    #[serde(default)]
    pub(crate) loadavg: f64,
    /// Bytes moved (scenario 5, bulk).
    #[serde(default)]
    pub(crate) bytes: u64,
    /// Proxy RSS in KiB before the idle connections were opened (scenario 6).
    #[serde(default)]
    pub(crate) rss_before_kib: Option<u64>,
    /// Proxy RSS in KiB while they were held (scenario 6).
    #[serde(default)]
    pub(crate) rss_kib: Option<u64>,
    /// Connections the endpoint accepted during the run (scenario 7, churn).
    #[serde(default)]
    pub(crate) upstream_conns: Option<u64>,
    /// 99.9th percentile latency of the answered requests (scenario 8).
    #[serde(default)]
    pub(crate) p999_us: Option<f64>,
    /// Requests not answered within the client timeout (scenario 8).
    #[serde(default)]
    pub(crate) timeouts: Option<u64>,
    /// Answered ÷ scheduled requests (scenario 8).
    #[serde(default)]
    pub(crate) success_rate: Option<f64>,
    /// Requests the stalled endpoint served during the run (scenario 8).
    #[serde(default)]
    pub(crate) stalled_requests: Option<u64>,
    /// Requests each endpoint served during the run, the stalled one first (scenario 8).
    #[serde(default)]
    pub(crate) endpoint_requests: Option<Vec<u64>>,
}

impl Run {
    /// Transfer rate in Gbit/s (scenario 5).
    pub(crate) fn gbit_per_s(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.seconds.max(1e-9) / 1e9
    }

    /// Gbit moved per second of proxy CPU (scenario 5): what one proxy core carries.
    pub(crate) fn gbit_per_core_s(&self) -> Option<f64> {
        let cpu_s = self.proxy_cpu_us_per_req? * self.requests as f64 / 1e6;
        (cpu_s > 0.0).then(|| self.bytes as f64 * 8.0 / cpu_s / 1e9)
    }

    /// New endpoint connections per 1,000 requests (scenario 7).
    pub(crate) fn upstream_per_1000(&self) -> Option<f64> {
        Some(self.upstream_conns? as f64 * 1000.0 / self.requests.max(1) as f64)
    }

    /// The scenario-specific figures, for the progress line.
    pub(crate) fn extra(&self) -> String {
        let mut s = String::new();
        if self.bytes > 0 {
            let _ = write!(s, ", {:.2} Gbit/s", self.gbit_per_s());
            if let Some(c) = self.gbit_per_core_s() {
                let _ = write!(s, ", {c:.2} Gbit/s per proxy core");
            }
        }
        if let (Some(b), Some(h)) = (self.rss_before_kib, self.rss_kib) {
            let _ = write!(
                s,
                ", RSS {:.1} → {:.1} MiB",
                b as f64 / 1024.0,
                h as f64 / 1024.0
            );
        }
        if let Some(u) = self.upstream_per_1000() {
            let _ = write!(s, ", {u:.2} new upstream connections per 1,000 requests");
        }
        s
    }
}

/// Everything one `weir-bench all` measured.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Results {
    pub(crate) meta: Meta,
    pub(crate) runs: Vec<Run>,
}

/// Writes `runs.json`, `runs.csv`, `summary.md` and the charts under `out`; returns the summary.
pub(crate) fn save(results: &Results, out: &Path) -> anyhow::Result<String> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    std::fs::write(
        out.join("runs.json"),
        serde_json::to_string_pretty(results)?,
    )?;
    std::fs::write(out.join("runs.csv"), csv(results))?;
    let charts = crate::charts::render(results, out)?;
    let md = markdown(results, "");
    std::fs::write(out.join("summary.md"), &md)?;
    eprintln!(
        "saved {}/{{runs.json,runs.csv,summary.md}} and {} charts",
        out.display(),
        charts.len()
    );
    Ok(md)
}

/// Every run as one CSV line.
fn csv(results: &Results) -> String {
    let mut csv = String::from(
        "scenario,peer,round,requests,errors,seconds,rps,p50_us,p99_us,mean_us,proxy_cpu_us_per_req,endpoint_cpu_us_per_req,loadavg,bytes,rss_before_kib,rss_kib,upstream_conns\n",
    );
    let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.2}"));
    for r in &results.runs {
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{:.3},{:.1},{},{},{},{},{:.2},{:.2},{},{},{},{}",
            r.scenario,
            r.peer,
            r.round,
            r.requests,
            r.errors,
            r.seconds,
            r.rps,
            opt(r.p50_us),
            opt(r.p99_us),
            opt(r.mean_us),
            opt(r.proxy_cpu_us_per_req),
            r.endpoint_cpu_us_per_req,
            r.loadavg,
            r.bytes,
            r.rss_before_kib.map_or(String::new(), |v| v.to_string()),
            r.rss_kib.map_or(String::new(), |v| v.to_string()),
            r.upstream_conns.map_or(String::new(), |v| v.to_string()),
        );
    }
    csv
}

/// Reads a `runs.json` written by `all`.
pub(crate) fn load(path: &Path) -> anyhow::Result<Results> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Median, min and max; `None` when empty.
pub(crate) fn stats(mut v: Vec<f64>) -> Option<(f64, f64, f64)> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some((median, v[0], v[n - 1]))
}

/// The Markdown summary; chart links are `images` + `<scenario>.png` (`""` next to the PNGs).
pub(crate) fn markdown(results: &Results, images: &str) -> String {
    let m = &results.meta;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Date {}; `{}`; {} runs of {} s per peer after a warm-up, interleaved.\n\
         Machine: {} vCPU ({}), {}, kernel {}. weir {}; {}; {}; {}; {}.\n",
        m.date,
        m.command,
        m.runs,
        m.duration_s,
        m.nproc,
        m.cpu,
        m.os,
        m.kernel,
        m.weir,
        m.nginx,
        m.haproxy,
        m.wrk,
        m.h2load
    );
    if results.runs.iter().any(|r| r.scenario == "quality") {
        s.push_str(
            "Scenario `quality` (8) ignores the rounds and duration above: one 2 s warm-up and one \
             run of `--quality-duration` per peer/policy.\n\n",
        );
    }
    let mut scenarios: Vec<&str> = Vec::new();
    for r in &results.runs {
        if !scenarios.contains(&r.scenario.as_str()) {
            scenarios.push(&r.scenario);
        }
    }
    let load = stats(results.runs.iter().map(|r| r.loadavg).collect());
    if let Some((m, lo, hi)) = load {
        let _ = writeln!(
            s,
            "1-minute load average at the end of the runs: median {m:.1} ({lo:.1}–{hi:.1}); \
             above ~2 other work shared the 2 vCPUs.\n"
        );
    }
    if !crate::bar::verdicts(&results.runs).is_empty() {
        let _ = writeln!(
            s,
            "![weir ÷ best peer per scenario against the bar of issue #11]({images}overview.png)\n"
        );
    }
    let peers = ["weir", "haproxy", "nginx", "direct"];
    for sc in scenarios {
        let chart = if crate::charts::has_chart(sc, &results.runs) {
            format!("![scenario {sc}]({images}{sc}.png)\n\n")
        } else {
            String::new()
        };
        let runs = |peer: &str| -> Vec<&Run> {
            results
                .runs
                .iter()
                .filter(|r| r.scenario == sc && r.peer == peer)
                .collect()
        };
        let med = |peer: &str, f: &dyn Fn(&Run) -> Option<f64>| {
            stats(runs(peer).into_iter().filter_map(f).collect()).map(|(m, _, _)| m)
        };
        let h2 = sc == "h2";
        let _ = writeln!(s, "### Scenario `{sc}`\n");
        if sc == "quality" {
            s.push_str(&quality_table(&results.runs));
            s.push('\n');
            s.push_str(&chart);
            continue;
        }
        if let Some(table) = special(sc, &results.runs) {
            s.push_str(&table);
            s.push('\n');
            s.push_str(&chart);
            continue;
        }
        let _ = writeln!(
            s,
            "| peer | proxy CPU µs/req, median (min–max) | endpoint CPU µs/req | req/s, median (min–max) | {} | errors |",
            if h2 {
                "mean latency (h2load)"
            } else {
                "p50 / p99 latency"
            }
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|");
        for peer in peers {
            let cpu = stats(
                runs(peer)
                    .into_iter()
                    .filter_map(|r| r.proxy_cpu_us_per_req)
                    .collect(),
            );
            let rps = stats(runs(peer).into_iter().map(|r| r.rps).collect());
            let ep = med(peer, &|r| Some(r.endpoint_cpu_us_per_req));
            let lat = if h2 {
                med(peer, &|r| r.mean_us).map_or("–".into(), fmt_us)
            } else {
                format!(
                    "{} / {}",
                    med(peer, &|r| r.p50_us).map_or("–".into(), fmt_us),
                    med(peer, &|r| r.p99_us).map_or("–".into(), fmt_us)
                )
            };
            let errors: u64 = runs(peer).into_iter().map(|r| r.errors).sum();
            let _ = writeln!(
                s,
                "| {peer} | {} | {} | {} | {lat} | {errors} |",
                cpu.map_or("–".into(), |(m, lo, hi)| format!(
                    "**{m:.1}** ({lo:.1}–{hi:.1})"
                )),
                ep.map_or("–".into(), |v| format!("{v:.1}")),
                rps.map_or("–".into(), |(m, lo, hi)| format!(
                    "{:.1}k ({:.1}–{:.1}k)",
                    m / 1e3,
                    lo / 1e3,
                    hi / 1e3
                )),
            );
        }
        let cpu = |peer: &str| med(peer, &|r| r.proxy_cpu_us_per_req);
        if let (Some(w), Some((best, best_cpu))) = (
            cpu("weir"),
            ["haproxy", "nginx"]
                .into_iter()
                .filter_map(|p| cpu(p).map(|c| (p, c)))
                .min_by(|a, b| a.1.total_cmp(&b.1)),
        ) {
            let _ = writeln!(
                s,
                "\nweir ÷ best peer ({best}), CPU per request: **{:.2}×**",
                w / best_cpu
            );
        }
        let rps = |peer: &str| med(peer, &|r| Some(r.rps));
        if let Some(d) = rps("direct") {
            let ratios: Vec<String> = ["weir", "haproxy", "nginx"]
                .into_iter()
                .filter_map(|p| rps(p).map(|r| format!("{p} {:.2}", r / d)))
                .collect();
            let _ = writeln!(
                s,
                "\nreq/s through the proxy ÷ direct: {}",
                ratios.join(", ")
            );
        }
        if sc == "h1-rate" {
            let p = |peer: &str, f: &dyn Fn(&Run) -> Option<f64>| med(peer, f);
            if let (Some(d50), Some(d99)) = (p("direct", &|r| r.p50_us), p("direct", &|r| r.p99_us))
            {
                let added: Vec<String> = ["weir", "haproxy", "nginx"]
                    .into_iter()
                    .filter_map(|peer| {
                        Some(format!(
                            "{peer} +{} / +{}",
                            fmt_us(p(peer, &|r| r.p50_us)? - d50),
                            fmt_us(p(peer, &|r| r.p99_us)? - d99)
                        ))
                    })
                    .collect();
                let _ = writeln!(
                    s,
                    "\nadded latency over direct (p50 / p99): {}",
                    added.join(", ")
                );
            }
        }
        s.push('\n');
        s.push_str(&chart);
    }
    s
}

/// A scenario's figure of merit for a peer.
type Merit<'a> = &'a dyn Fn(&str) -> Option<f64>;

/// The tables of scenarios 5–7, whose figure is not CPU per request: `None` for the others.
fn special(sc: &str, all: &[Run]) -> Option<String> {
    let peers = ["weir", "haproxy", "nginx", "direct"];
    let runs = |peer: &str| -> Vec<&Run> {
        all.iter()
            .filter(|r| r.scenario == sc && r.peer == peer)
            .collect()
    };
    let med = |peer: &str, f: &dyn Fn(&Run) -> Option<f64>| {
        stats(runs(peer).into_iter().filter_map(f).collect())
    };
    let cell = |v: Option<(f64, f64, f64)>, digits: usize| {
        v.map_or("–".into(), |(m, lo, hi)| {
            format!("**{m:.digits$}** ({lo:.digits$}–{hi:.digits$})")
        })
    };
    let mut s = String::new();
    // (figure of merit per peer, whether lower is better, its name)
    let (merit, lower_better, name): (Merit<'_>, bool, &str) = match sc {
        "bulk" => {
            let _ = writeln!(
                s,
                "| peer | Gbit/s per proxy core, median (min–max) | Gbit/s | proxy CPU s per GiB | errors |\n|---|---|---|---|---|"
            );
            for peer in peers {
                let errors: u64 = runs(peer).into_iter().map(|r| r.errors).sum();
                let _ = writeln!(
                    s,
                    "| {peer} | {} | {} | {} | {errors} |",
                    cell(med(peer, &|r| r.gbit_per_core_s()), 2),
                    cell(med(peer, &|r| Some(r.gbit_per_s())), 2),
                    cell(
                        med(peer, &|r| {
                            let gib = r.bytes as f64 / f64::from(1u32 << 30);
                            Some(r.proxy_cpu_us_per_req? / 1e6 / gib.max(1e-9))
                        }),
                        2
                    ),
                );
            }
            (
                &|p| med(p, &|r| r.gbit_per_core_s()).map(|m| m.0),
                false,
                "Gbit/s per proxy core",
            )
        }
        "idle" => {
            let _ = writeln!(
                s,
                "| peer | RSS with the connections held, MiB, median (min–max) over all rounds | first round (fresh process): RSS before → held, MiB | KiB per connection (first round) | connections held | failed |\n|---|---|---|---|---|---|"
            );
            for peer in ["weir", "haproxy", "nginx"] {
                let first = runs(peer).into_iter().min_by_key(|r| r.round);
                let held: u64 = first.map_or(0, |r| r.requests);
                let errors: u64 = runs(peer).into_iter().map(|r| r.errors).sum();
                let fresh = first
                    .and_then(|r| Some((r.rss_before_kib?, r.rss_kib?, r.requests.max(1))))
                    .map_or(("–".to_owned(), "–".to_owned()), |(b, h, n)| {
                        (
                            format!("{:.1} → {:.1}", b as f64 / 1024.0, h as f64 / 1024.0),
                            format!("**{:.2}**", (h as f64 - b as f64) / n as f64),
                        )
                    });
                let _ = writeln!(
                    s,
                    "| {peer} | {} | {} | {} | {held} | {errors} |",
                    cell(med(peer, &|r| Some(r.rss_kib? as f64 / 1024.0)), 1),
                    fresh.0,
                    fresh.1,
                );
            }
            (
                &|p| med(p, &|r| Some(r.rss_kib? as f64)).map(|m| m.0),
                true,
                "RSS",
            )
        }
        "churn" => {
            let _ = writeln!(
                s,
                "| peer | new upstream connections per 1,000 requests, median (min–max) | reuse | req/s | proxy CPU µs/req | errors |\n|---|---|---|---|---|---|"
            );
            for peer in peers {
                let per = med(peer, &|r| r.upstream_per_1000());
                let errors: u64 = runs(peer).into_iter().map(|r| r.errors).sum();
                let _ = writeln!(
                    s,
                    "| {peer} | {} | {} | {} | {} | {errors} |",
                    cell(per, 2),
                    per.map_or("–".into(), |(m, _, _)| format!(
                        "{:.2} %",
                        100.0 - m / 10.0
                    )),
                    cell(med(peer, &|r| Some(r.rps / 1e3)), 1).replace("**", "") + "k",
                    cell(med(peer, &|r| r.proxy_cpu_us_per_req), 1),
                );
            }
            (
                &|p| med(p, &|r| r.upstream_per_1000()).map(|m| m.0),
                true,
                "new upstream connections",
            )
        }
        _ => return None,
    };
    if let Some(w) = merit("weir") {
        let others: Vec<String> = ["haproxy", "nginx"]
            .into_iter()
            .filter_map(|p| merit(p).map(|v| format!("{p} {:.2}×", w / v.max(1e-9))))
            .collect();
        let _ = writeln!(
            s,
            "\nweir ÷ peer, {name} ({} is better): {}",
            if lower_better { "lower" } else { "higher" },
            others.join(", ")
        );
    }
    Some(s)
}

/// Scenario 8's table: one row per peer and policy, in run order.
fn quality_table(all: &[Run]) -> String {
    let mut s = String::from(
        "| peer/policy | success rate | p50 / p99 / p99.9 of answered requests | timeouts | other errors | requests to the stalled endpoint (share) | load average |\n|---|---|---|---|---|---|---|\n",
    );
    let us = |v: Option<f64>| v.map_or("–".into(), fmt_us);
    for r in all.iter().filter(|r| r.scenario == "quality") {
        let timeouts = r.timeouts.unwrap_or(0);
        let served: u64 = r.endpoint_requests.iter().flatten().sum();
        let _ = writeln!(
            s,
            "| {} | **{:.2} %** | {} / **{}** / {} | {timeouts} | {} | {} ({:.1} %) | {:.1} |",
            r.peer,
            r.success_rate.unwrap_or(0.0) * 100.0,
            us(r.p50_us),
            us(r.p99_us),
            us(r.p999_us),
            r.errors.saturating_sub(timeouts),
            r.stalled_requests.unwrap_or(0),
            r.stalled_requests.unwrap_or(0) as f64 * 100.0 / served.max(1) as f64,
            r.loadavg,
        );
    }
    s
}

fn fmt_us(v: f64) -> String {
    if v.abs() >= 1000.0 {
        format!("{:.2} ms", v / 1000.0)
    } else {
        format!("{v:.0} µs")
    }
}

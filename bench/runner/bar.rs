//! The bar of issue #11, scenario by scenario: weir's cost ÷ the best peer's and whether weir
//! meets the bar, for the overview chart. Every figure is turned into a cost (lower is better)
//! so that one axis fits all scenarios: CPU per request, added p99, CPU per byte (1 ÷ Gbit/s
//! per core), RSS, new upstream connections, unanswered requests.

use crate::report::{Run, stats};

/// weir against the best peer in one scenario.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Verdict {
    /// The scenario's short name (`h1`, `bulk`, …).
    pub(crate) scenario: String,
    /// What is compared, in a few words (`CPU/req`).
    pub(crate) figure: &'static str,
    /// weir's cost ÷ the best peer's; `None` when the best peer's cost is 0 and weir's is not.
    pub(crate) ratio: Option<f64>,
    /// The bar as a ratio to the best peer, when the issue sets one relative to the peers.
    pub(crate) limit: Option<f64>,
    /// Whether weir meets the bar; `None` when the issue sets none for this scenario.
    pub(crate) met: Option<bool>,
    /// Which peer (or peer/policy) was best.
    pub(crate) best: String,
}

/// weir's CPU µs per request may be at most this in scenarios 1, 3 and 4 (`None` elsewhere or
/// when a peer it is measured against is missing): 1.0 × HAProxy in all three, and also
/// 0.8 × nginx in scenario 1 and 0.5 × nginx in scenario 3.
pub(crate) fn cpu_limit(sc: &str, haproxy: Option<f64>, nginx: Option<f64>) -> Option<f64> {
    let h = haproxy?;
    match sc {
        "h1" => Some(nginx.map_or(h, |n| h.min(0.8 * n))),
        "h2" => Some(nginx.map_or(h, |n| h.min(0.5 * n))),
        "tcp" => Some(h),
        _ => None,
    }
}

/// One verdict per scenario present in `runs` that has a weir figure and a peer's.
pub(crate) fn verdicts(runs: &[Run]) -> Vec<Verdict> {
    crate::charts::scenarios(runs)
        .into_iter()
        .filter_map(|sc| verdict(sc, runs))
        .collect()
}

fn verdict(sc: &str, all: &[Run]) -> Option<Verdict> {
    let med = |peer: &str, f: &dyn Fn(&Run) -> Option<f64>| {
        stats(
            all.iter()
                .filter(|r| r.scenario == sc && r.peer == peer)
                .filter_map(f)
                .collect(),
        )
        .map(|(m, _, _)| m)
    };
    let peers = ["haproxy", "nginx"];
    // (figure, weir's cost, each peer's cost, the bar as an absolute cost for weir, or as a
    // yes/no when it is not relative to the peers)
    let (figure, weir, costs, limit, absolute): (_, f64, Vec<(String, f64)>, Option<f64>, _) =
        match sc {
            "h1" | "h2" | "tcp" => {
                let cpu = |p: &str| med(p, &|r| r.proxy_cpu_us_per_req);
                let costs = peers.iter().filter_map(|&p| Some((p.into(), cpu(p)?)));
                let limit = cpu_limit(sc, cpu("haproxy"), cpu("nginx"));
                ("CPU/req", cpu("weir")?, costs.collect(), limit, None)
            }
            "h1-rate" => {
                // Added p99 over direct; under 1 µs is noise, and a ratio needs a positive cost.
                let direct = med("direct", &|r| r.p99_us)?;
                let added = |p: &str| Some((med(p, &|r| r.p99_us)? - direct).max(1.0));
                let costs = peers.iter().filter_map(|&p| Some((p.into(), added(p)?)));
                (
                    "added p99",
                    added("weir")?,
                    costs.collect(),
                    added("haproxy"),
                    None,
                )
            }
            "bulk" => {
                let per_byte = |p: &str| Some(1.0 / med(p, &|r| r.gbit_per_core_s())?.max(1e-9));
                let costs = peers.iter().filter_map(|&p| Some((p.into(), per_byte(p)?)));
                ("CPU/byte", per_byte("weir")?, costs.collect(), None, None)
            }
            "idle" => {
                let rss = |p: &str| med(p, &|r| Some(r.rss_kib? as f64));
                let costs = peers.iter().filter_map(|&p| Some((p.into(), rss(p)?)));
                ("RSS", rss("weir")?, costs.collect(), rss("haproxy"), None)
            }
            "churn" => {
                let new = |p: &str| med(p, &|r| r.upstream_per_1000());
                let costs = peers.iter().filter_map(|&p| Some((p.into(), new(p)?)));
                let w = new("weir")?;
                // ≥ 99.9 % reuse: at most 1 new connection per 1,000 requests.
                ("new conns", w, costs.collect(), None, Some(w <= 1.0))
            }
            "quality" => {
                let rows = all.iter().filter(|r| r.scenario == sc);
                let failed = |r: &Run| Some((r.peer.clone(), 1.0 - r.success_rate?));
                let weir = rows
                    .clone()
                    .filter(|r| r.peer == "weir/peak_ewma")
                    .find_map(failed)?
                    .1;
                let costs: Vec<(String, f64)> = rows
                    .filter(|r| !r.peer.starts_with("weir"))
                    .filter_map(failed)
                    .collect();
                // ≥ 99.9 % success and better than every peer configuration.
                let met = weir <= 0.001 && costs.iter().all(|(_, c)| weir < *c);
                ("failed", weir, costs, None, Some(met))
            }
            _ => return None,
        };
    let (best, best_cost) = costs.into_iter().min_by(|a, b| a.1.total_cmp(&b.1))?;
    let ratio = |cost: f64| {
        if best_cost > 0.0 {
            Some(cost / best_cost)
        } else if cost <= 0.0 {
            Some(1.0)
        } else {
            None
        }
    };
    Some(Verdict {
        scenario: sc.to_owned(),
        figure,
        ratio: ratio(weir),
        limit: limit.and_then(ratio),
        met: absolute.or_else(|| limit.map(|l| weir <= l)),
        best,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(scenario: &str, peer: &str, f: impl FnOnce(&mut Run)) -> Run {
        let mut r = Run {
            scenario: scenario.into(),
            peer: peer.into(),
            requests: 1000,
            ..Run::default()
        };
        f(&mut r);
        r
    }

    #[test]
    fn h1_bar_is_the_stricter_of_haproxy_and_080_nginx() {
        let cpu = |peer, v| run("h1", peer, |r| r.proxy_cpu_us_per_req = Some(v));
        let runs = [cpu("weir", 14.0), cpu("haproxy", 15.0), cpu("nginx", 16.0)];
        let v = &verdicts(&runs)[0];
        assert_eq!(v.best, "haproxy");
        assert_eq!(v.ratio, Some(14.0 / 15.0));
        // 0.8 × 16 = 12.8 < 15: nginx sets the bar, which weir misses.
        assert_eq!(v.limit, Some(12.8 / 15.0));
        assert_eq!(v.met, Some(false));
    }

    #[test]
    fn churn_and_quality_bars_are_absolute() {
        let churn = |peer, conns| run("churn", peer, |r| r.upstream_conns = Some(conns));
        let q = |peer: &str, s| run("quality", peer, |r| r.success_rate = Some(s));
        let runs = [
            churn("weir", 0),
            churn("haproxy", 0),
            churn("nginx", 30),
            q("weir/peak_ewma", 0.9995),
            q("weir/least_request", 0.99),
            q("haproxy/leastconn", 0.999),
            q("nginx/least_conn", 0.98),
        ];
        let v = verdicts(&runs);
        assert_eq!((v[0].ratio, v[0].met), (Some(1.0), Some(true)));
        assert_eq!(v[1].best, "haproxy/leastconn");
        assert_eq!(v[1].met, Some(true));
        let r = v[1].ratio.unwrap_or(f64::NAN);
        assert!((r - 0.5).abs() < 1e-6, "{r}");
    }

    #[test]
    fn a_zero_cost_peer_makes_an_infinite_ratio() {
        let churn = |peer, conns| run("churn", peer, |r| r.upstream_conns = Some(conns));
        let v = verdicts(&[churn("weir", 5), churn("haproxy", 0)]);
        assert_eq!((v[0].ratio, v[0].met), (None, Some(false)));
    }
}

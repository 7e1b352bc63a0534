//! PNG charts of a run (issue #11 asks for them next to the table): one per scenario with its
//! primary figure per peer, and `overview.png`, weir ÷ best peer per scenario against the bar.
//!
//! Drawn with `plotters`' bitmap backend. Text goes through `ab_glyph` (pure Rust) from DejaVu
//! Sans read at run time, so building needs no fontconfig/freetype; running needs Debian's
//! `fonts-dejavu-core` (or `WEIR_BENCH_FONT` pointing at any TrueType font).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, bail};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::bar::{self, Verdict};
use crate::report::{Results, Run, stats};

/// Where Debian's `fonts-dejavu-core` puts the regular and bold faces.
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
const FONT_BOLD: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf";
/// The family name the charts ask plotters for.
const FAMILY: &str = "sans-serif";
const WIDTH: u32 = 960;
const HEIGHT: u32 = 540;
/// The peers of scenarios 1–7, in table order.
const PEERS: [&str; 4] = ["weir", "haproxy", "nginx", "direct"];

/// One bar: a label under it, the median as its height and min–max as its whisker.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Bar {
    pub(crate) label: String,
    pub(crate) median: f64,
    /// Min and max; `None` draws no whisker (a single figure).
    pub(crate) range: Option<(f64, f64)>,
    /// Colour override; `None` colours by peer.
    pub(crate) color: Option<RGBColor>,
}

/// One panel: its title, y axis, bars and horizontal reference lines (value, label).
struct Panel {
    title: String,
    y_desc: String,
    bars: Vec<Bar>,
    refs: Vec<(f64, String)>,
    /// Decimal places of the value printed above each bar.
    digits: usize,
    /// The y axis' lower end when it should not start at 0: a percentage near 100 %.
    y_floor: Option<f64>,
}

/// Renders every chart of `results` into `dir`; returns the files written.
pub(crate) fn render(results: &Results, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    register_fonts()?;
    let mut written = Vec::new();
    for sc in scenarios(&results.runs) {
        let foot = footer(results, sc);
        let panels = panels(sc, &results.runs);
        if panels.is_empty() {
            continue;
        }
        let path = dir.join(format!("{sc}.png"));
        // Room for the labels: ~150 px per bar, at least 3/4 of a single chart per panel.
        let width = panels
            .iter()
            .map(|p| (p.bars.len() as u32 * 150).max(WIDTH * 3 / 4))
            .sum::<u32>()
            + WIDTH / 4;
        draw(&path, width, &panels, &foot).with_context(|| format!("{}", path.display()))?;
        written.push(path);
    }
    let verdicts = bar::verdicts(&results.runs);
    if !verdicts.is_empty() {
        let path = dir.join("overview.png");
        overview(&path, &verdicts, &footer(results, ""))
            .with_context(|| format!("{}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// Whether `render` draws a chart for scenario `sc`.
pub(crate) fn has_chart(sc: &str, runs: &[Run]) -> bool {
    !panels(sc, runs).is_empty()
}

/// The scenarios in run order, each once.
pub(crate) fn scenarios(runs: &[Run]) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for r in runs {
        if !out.contains(&r.scenario.as_str()) {
            out.push(&r.scenario);
        }
    }
    out
}

/// Registers DejaVu Sans as plotters' `sans-serif` once per process.
fn register_fonts() -> anyhow::Result<()> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    let done = DONE.get_or_init(|| {
        let regular =
            std::env::var_os("WEIR_BENCH_FONT").map_or_else(|| PathBuf::from(FONT), PathBuf::from);
        let bytes = read_font(&regular)?;
        plotters::style::register_font(FAMILY, FontStyle::Normal, bytes)
            .map_err(|_| format!("{} is not a TrueType/OpenType font", regular.display()))?;
        // Bold is optional: titles fall back to the regular face.
        if let Ok(bold) = read_font(Path::new(FONT_BOLD)) {
            let _ = plotters::style::register_font(FAMILY, FontStyle::Bold, bold);
        }
        Ok(())
    });
    match done {
        Ok(()) => Ok(()),
        Err(e) => bail!("{e}"),
    }
}

/// A font file's bytes, kept for the whole process (plotters wants `&'static`).
fn read_font(p: &Path) -> Result<&'static [u8], String> {
    std::fs::read(p)
        .map(|b| &*Box::leak(b.into_boxed_slice()))
        .map_err(|e| {
            format!(
                "cannot read the charts' font {}: {e}; install it with \
                 `apt-get install -y fonts-dejavu-core` or set WEIR_BENCH_FONT to a .ttf file",
                p.display()
            )
        })
}

/// The line under every chart: which run this is (scenario 8 has one run per peer/policy).
fn footer(results: &Results, sc: &str) -> String {
    let m = &results.meta;
    let runs = if sc == "quality" {
        "one run per peer/policy".to_owned()
    } else {
        format!(
            "{} runs × {} s per peer, medians, whiskers min–max",
            m.runs, m.duration_s
        )
    };
    let load = stats(results.runs.iter().map(|r| r.loadavg).collect())
        .map_or(String::new(), |(l, _, _)| format!(", load average {l:.1}"));
    format!(
        "weir {} · {} · {} vCPU · {runs}{load}",
        m.weir, m.date, m.nproc
    )
}

/// The panels of one scenario's chart; empty when it has nothing to draw.
fn panels(sc: &str, all: &[Run]) -> Vec<Panel> {
    let runs = |peer: &'static str| {
        all.iter()
            .filter(move |r| r.scenario == sc && r.peer == peer)
    };
    let per_peer = |f: &dyn Fn(&Run) -> Option<f64>, peers: &[&'static str]| -> Vec<Bar> {
        peers
            .iter()
            .filter_map(|&p| {
                let (median, lo, hi) = stats(runs(p).filter_map(f).collect())?;
                Some(Bar {
                    label: p.to_owned(),
                    median,
                    range: Some((lo, hi)),
                    color: None,
                })
            })
            .collect()
    };
    let median = |bars: &[Bar], p: &str| bars.iter().find(|b| b.label == p).map(|b| b.median);
    let panel = |title: &str, y_desc: &str, bars: Vec<Bar>, digits: usize| Panel {
        title: title.to_owned(),
        y_desc: y_desc.to_owned(),
        bars,
        refs: Vec::new(),
        digits,
        y_floor: None,
    };
    let mut out = Vec::new();
    match sc {
        "h1" | "h1-rate" | "h2" | "tcp" => {
            let bars = per_peer(&|r| r.proxy_cpu_us_per_req, &PEERS[..3]);
            let title = match sc {
                "h1" => "Scenario 1 (h1): HTTP/1.1 keep-alive, 64 connections, saturation",
                "h1-rate" => "Scenario 2 (h1-rate): HTTP/1.1 at 5,000 req/s",
                "h2" => "Scenario 3 (h2): HTTP/2 front end, h2load -c8 -m32",
                _ => "Scenario 4 (tcp): L4 TCP relay of small exchanges",
            };
            let mut p = panel(title, "proxy CPU µs per request (lower is better)", bars, 1);
            if let Some(limit) =
                bar::cpu_limit(sc, median(&p.bars, "haproxy"), median(&p.bars, "nginx"))
            {
                p.refs.push((limit, "issue #11 bar for weir".to_owned()));
            }
            out.push(p);
            if sc == "h1-rate" {
                let p99 = per_peer(&|r| r.p99_us.map(|v| v / 1000.0), &PEERS);
                let mut p = panel(
                    "p99 latency at 5,000 req/s",
                    "p99 latency, ms (lower is better)",
                    p99,
                    2,
                );
                // Added p99 over direct ≤ HAProxy's: weir's p99 ≤ HAProxy's, same direct.
                if let Some(h) = median(&p.bars, "haproxy") {
                    p.refs
                        .push((h, "issue #11 bar: added p99 ≤ HAProxy's".to_owned()));
                }
                out.push(p);
            }
        }
        "bulk" => out.push(panel(
            "Scenario 5 (bulk): 1 GiB transfers through the L4 relay",
            "Gbit/s per proxy core (higher is better)",
            per_peer(&|r| r.gbit_per_core_s(), &PEERS[..3]),
            2,
        )),
        "idle" => {
            let mut rss = panel(
                "Scenario 6 (idle): RSS with the idle connections held",
                "proxy RSS, MiB (lower is better)",
                per_peer(&|r| Some(r.rss_kib? as f64 / 1024.0), &PEERS[..3]),
                1,
            );
            if let Some(h) = median(&rss.bars, "haproxy") {
                rss.refs.push((h, "issue #11 bar: ≤ HAProxy".to_owned()));
            }
            out.push(rss);
            // The first round only: a fresh process shows what the connections cost.
            let per_conn = PEERS[..3]
                .iter()
                .filter_map(|&p| {
                    let first = runs(p).min_by_key(|r| r.round)?;
                    let (b, h) = (first.rss_before_kib?, first.rss_kib?);
                    Some(Bar {
                        label: p.to_owned(),
                        median: (h as f64 - b as f64) / first.requests.max(1) as f64,
                        range: None,
                        color: None,
                    })
                })
                .collect();
            out.push(panel(
                "KiB per idle connection (first round, fresh process)",
                "KiB per connection (lower is better)",
                per_conn,
                2,
            ));
        }
        "churn" => {
            let mut p = panel(
                "Scenario 7 (churn): 1,000 clients connect, make one request, close",
                "new upstream conns per 1,000 requests (lower is better)",
                // Not direct: without a proxy every request is a new connection (1,000).
                per_peer(&|r| r.upstream_per_1000(), &PEERS[..3]),
                2,
            );
            p.refs
                .push((1.0, "issue #11 bar: ≥ 99.9 % reuse".to_owned()));
            out.push(p);
        }
        "quality" => out.extend(quality_panels(all)),
        _ => {}
    }
    out.retain(|p| !p.bars.is_empty());
    out
}

/// Scenario 8: one bar per peer/policy for the success rate and for p99.
fn quality_panels(all: &[Run]) -> Vec<Panel> {
    let rows: Vec<&Run> = all.iter().filter(|r| r.scenario == "quality").collect();
    let single = |r: &Run, v: f64| Bar {
        label: r.peer.clone(),
        median: v,
        range: None,
        color: None,
    };
    let success: Vec<Bar> = rows
        .iter()
        .filter_map(|r| Some(single(r, r.success_rate? * 100.0)))
        .collect();
    let lowest = success.iter().map(|b| b.median).fold(100.0, f64::min);
    // Zoom on the top of the scale: the differences that matter are fractions of a percent.
    let floor = ((lowest - (100.0 - lowest) * 0.25).min(99.5) * 2.0).floor() / 2.0;
    vec![
        Panel {
            title: "Scenario 8 (quality): success rate, one endpoint stalled".to_owned(),
            y_desc: "answered within 1 s, % (higher is better)".to_owned(),
            bars: success,
            refs: vec![(99.9, "issue #11 bar: ≥ 99.9 %".to_owned())],
            digits: 2,
            y_floor: Some(floor.max(0.0)),
        },
        Panel {
            title: "p99 latency of answered requests".to_owned(),
            y_desc: "p99 latency, ms (lower is better)".to_owned(),
            bars: rows
                .iter()
                .filter_map(|r| Some(single(r, r.p99_us? / 1000.0)))
                .collect(),
            refs: Vec::new(),
            digits: 1,
            y_floor: None,
        },
    ]
}

/// weir orange, the others in calm colours, picked by the label's peer (before any `/policy`).
fn peer_color(label: &str) -> RGBColor {
    match label.split('/').next().unwrap_or(label) {
        "weir" => RGBColor(230, 115, 0),
        "haproxy" => RGBColor(31, 119, 180),
        "nginx" => RGBColor(44, 160, 44),
        _ => RGBColor(127, 127, 127),
    }
}

/// One PNG with `panels` side by side and `foot` under them.
fn draw(path: &Path, width: u32, panels: &[Panel], foot: &str) -> anyhow::Result<()> {
    let root = BitMapBackend::new(path, (width, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let (main, bottom) = root.split_vertically(HEIGHT - 28);
    bottom.draw_text(foot, &text(14, &RGBColor(90, 90, 90)), (12, 6))?;
    let areas = main.split_evenly((1, panels.len()));
    for (area, p) in areas.iter().zip(panels) {
        panel(area, p)?;
    }
    root.present()?;
    Ok(())
}

fn text(size: u32, color: &RGBColor) -> TextStyle<'static> {
    (FAMILY, size).into_font().color(color)
}

/// Pixels left free on each side of a bar: bars fill 60 % of their slot, 160 px at most.
fn bar_pad(width: u32, n: usize) -> u32 {
    let slot = width / n.max(1) as u32;
    (slot - (slot * 3 / 5).min(160)) / 2
}

/// The chart's plane: bar `i` centred on x = `i`, values on y.
type Plane = plotters::coord::cartesian::Cartesian2d<
    plotters::coord::types::RangedCoordf64,
    plotters::coord::types::RangedCoordf64,
>;

/// Writes `labels[i]` under bar `i`, below the x axis at value `y` (plotters' own tick labels
/// fall where its "nice" numbers are, not under the bars).
fn under_axis(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    chart: &ChartContext<'_, BitMapBackend<'_>, Plane>,
    labels: &[String],
    y: f64,
    size: u32,
) -> anyhow::Result<()> {
    let (bx, by) = area.get_base_pixel();
    let style = text(size, &BLACK).pos(Pos::new(HPos::Center, VPos::Top));
    for (i, label) in labels.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(i as f64, y));
        area.draw_text(label, &style, (px - bx, py - by + 8))?;
    }
    Ok(())
}

/// Draws one panel of bars with whiskers, values and reference lines.
fn panel(area: &DrawingArea<BitMapBackend<'_>, Shift>, p: &Panel) -> anyhow::Result<()> {
    let n = p.bars.len();
    let top = p
        .bars
        .iter()
        .map(|b| b.range.map_or(b.median, |(_, hi)| hi.max(b.median)))
        .chain(p.refs.iter().map(|r| r.0))
        .fold(0.0, f64::max);
    let floor = p.y_floor.unwrap_or(0.0);
    let ceiling = if top > floor {
        top + (top - floor) * 0.18
    } else {
        floor + 1.0
    };
    let mut chart = ChartBuilder::on(area)
        .caption(&p.title, (FAMILY, 19, FontStyle::Bold).into_font())
        .margin(14)
        .x_label_area_size(36)
        .y_label_area_size(64)
        // Bar i is centred on x = i; the labels under the axis are drawn by `x_labels`.
        .build_cartesian_2d(-0.5..n as f64 - 0.5, floor..ceiling)?;
    let labels: Vec<String> = p.bars.iter().map(|b| b.label.clone()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .bold_line_style(RGBColor(225, 225, 225))
        .light_line_style(TRANSPARENT)
        .x_labels(0)
        .y_desc(p.y_desc.as_str())
        .label_style(text(15, &BLACK))
        .axis_desc_style(text(15, &BLACK))
        .draw()?;
    under_axis(area, &chart, &labels, floor, 15)?;
    let value_style = text(14, &BLACK).pos(Pos::new(HPos::Center, VPos::Bottom));
    for (i, b) in p.bars.iter().enumerate() {
        let color = b.color.unwrap_or_else(|| peer_color(&b.label));
        let mut rect = Rectangle::new(
            [(i as f64 - 0.5, floor), (i as f64 + 0.5, b.median)],
            color.filled(),
        );
        let pad = bar_pad(chart.plotting_area().dim_in_pixel().0, n);
        rect.set_margin(0, 0, pad, pad);
        chart.draw_series(std::iter::once(rect))?;
        let at = i as f64;
        let mut label_y = b.median;
        if let Some((lo, hi)) = b.range {
            let whisker = ShapeStyle::from(&BLACK).stroke_width(2);
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(at, lo), (at, hi)],
                whisker,
            )))?;
            for y in [lo, hi] {
                chart.draw_series(std::iter::once(
                    EmptyElement::at((at, y)) + PathElement::new(vec![(-8, 0), (8, 0)], whisker),
                ))?;
            }
            label_y = hi.max(b.median);
        }
        chart.draw_series(std::iter::once(
            EmptyElement::at((at, label_y))
                + Text::new(
                    format!("{:.*}", p.digits, b.median),
                    (0, -4),
                    value_style.clone(),
                ),
        ))?;
    }
    for (y, label) in &p.refs {
        let style = ShapeStyle::from(&RGBColor(200, 0, 0)).stroke_width(2);
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(-0.5, *y), (n as f64 - 0.5, *y)],
            style,
        )))?;
        chart.draw_series(std::iter::once(
            EmptyElement::at((n as f64 - 0.5, *y))
                + Text::new(
                    label.clone(),
                    (-6, -4),
                    text(13, &RGBColor(200, 0, 0)).pos(Pos::new(HPos::Right, VPos::Bottom)),
                ),
        ))?;
    }
    Ok(())
}

/// `overview.png`: weir's cost ÷ the best peer's per scenario, green where weir meets the bar of
/// issue #11, red where it misses it, grey where the issue sets none; the black tick is the bar.
fn overview(path: &Path, verdicts: &[Verdict], foot: &str) -> anyhow::Result<()> {
    // Ratios past 4× would flatten the rest; such bars are cut at the top and keep their value.
    let cap = verdicts
        .iter()
        .filter_map(|v| v.ratio)
        .chain(verdicts.iter().filter_map(|v| v.limit))
        .fold(1.0, f64::max)
        .min(4.0)
        * 1.2;
    let bars: Vec<Bar> = verdicts
        .iter()
        .map(|v| Bar {
            label: v.scenario.clone(),
            median: v.ratio.unwrap_or(f64::INFINITY).min(cap),
            range: None,
            color: Some(match v.met {
                Some(true) => RGBColor(46, 160, 67),
                Some(false) => RGBColor(214, 39, 40),
                None => RGBColor(150, 150, 150),
            }),
        })
        .collect();
    let root = BitMapBackend::new(path, (WIDTH + 240, HEIGHT + 60)).into_drawing_area();
    root.fill(&WHITE)?;
    let (main, bottom) = root.split_vertically(HEIGHT + 60 - 70);
    let legend = "green: issue #11 bar met · red: missed · grey: no bar in the issue · black tick: \
                  the bar as a ratio to the best peer · dashed: parity";
    bottom.draw_text(legend, &text(14, &BLACK), (12, 6))?;
    bottom.draw_text(foot, &text(14, &RGBColor(90, 90, 90)), (12, 40))?;
    let n = bars.len();
    let mut chart = ChartBuilder::on(&main)
        .caption(
            "weir ÷ best peer per scenario (each scenario's cost: lower is better)",
            (FAMILY, 20, FontStyle::Bold).into_font(),
        )
        .margin(14)
        .x_label_area_size(56)
        .y_label_area_size(64)
        .build_cartesian_2d(-0.5..n as f64 - 0.5, 0.0..cap)?;
    let labels: Vec<String> = verdicts
        .iter()
        .map(|v| format!("{}: {}", v.scenario, v.figure))
        .collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .bold_line_style(RGBColor(225, 225, 225))
        .light_line_style(TRANSPARENT)
        .x_labels(0)
        .y_desc("weir ÷ best of HAProxy and nginx")
        .label_style(text(14, &BLACK))
        .axis_desc_style(text(15, &BLACK))
        .draw()?;
    under_axis(&main, &chart, &labels, 0.0, 14)?;
    let parity = ShapeStyle::from(&BLACK).stroke_width(1);
    chart.draw_series(DashedLineSeries::new(
        vec![(-0.5, 1.0), (n as f64 - 0.5, 1.0)],
        8,
        6,
        parity,
    ))?;
    let value_style = text(14, &BLACK).pos(Pos::new(HPos::Center, VPos::Bottom));
    let tick = ShapeStyle::from(&BLACK).stroke_width(4);
    for (i, (b, v)) in bars.iter().zip(verdicts).enumerate() {
        let mut rect = Rectangle::new(
            [(i as f64 - 0.5, 0.0), (i as f64 + 0.5, b.median)],
            b.color.unwrap_or(BLACK).filled(),
        );
        let pad = bar_pad(chart.plotting_area().dim_in_pixel().0, n);
        rect.set_margin(0, 0, pad, pad);
        chart.draw_series(std::iter::once(rect))?;
        let at = i as f64;
        let value = v.ratio.map_or("∞".to_owned(), |r| format!("{r:.2}×"));
        // Above the bar and above its tick, whichever is higher.
        let label_y = v.limit.map_or(b.median, |l| l.min(cap).max(b.median));
        chart.draw_series(std::iter::once(
            EmptyElement::at((at, label_y))
                + Text::new(value, (0, -22), value_style.clone())
                + Text::new(
                    format!("vs {}", v.best),
                    (0, -6),
                    text(12, &RGBColor(70, 70, 70)).pos(Pos::new(HPos::Center, VPos::Bottom)),
                ),
        ))?;
        if let Some(limit) = v.limit {
            chart.draw_series(std::iter::once(
                EmptyElement::at((at, limit.min(cap)))
                    + PathElement::new(vec![(-40, 0), (40, 0)], tick),
            ))?;
        }
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::report::Meta;

    /// Every scenario, three rounds per peer, with figures of the size real runs show.
    pub(crate) fn sample() -> Results {
        let mut runs = Vec::new();
        let mut add = |scenario: &str, peer: &str, round: u32, f: &dyn Fn(&mut Run)| {
            let mut r = Run {
                scenario: scenario.into(),
                peer: peer.into(),
                round,
                requests: 100_000,
                seconds: 8.0,
                rps: 12_500.0,
                loadavg: 2.0,
                ..Run::default()
            };
            f(&mut r);
            runs.push(r);
        };
        for round in 1..=3 {
            let k = 1.0 + f64::from(round) / 50.0;
            for (sc, w, h, n) in [
                ("h1", 14.0, 15.0, 22.0),
                ("h1-rate", 18.0, 20.0, 30.0),
                ("h2", 9.0, 8.0, 20.0),
                ("tcp", 6.0, 6.5, 7.0),
            ] {
                for (peer, cpu) in [
                    ("weir", Some(w)),
                    ("haproxy", Some(h)),
                    ("nginx", Some(n)),
                    ("direct", None),
                ] {
                    add(sc, peer, round, &|r| {
                        r.proxy_cpu_us_per_req = cpu.map(|c| c * k);
                        r.p50_us = Some(400.0 * k);
                        r.p99_us = Some(if cpu.is_some() { 1500.0 } else { 1100.0 } * k);
                    });
                }
            }
            for (peer, gbit) in [
                ("weir", Some(9.5)),
                ("haproxy", Some(11.0)),
                ("nginx", Some(7.5)),
                ("direct", None),
            ] {
                add("bulk", peer, round, &|r| {
                    r.requests = 1;
                    r.bytes = 1 << 30;
                    r.seconds = 1.0;
                    r.proxy_cpu_us_per_req =
                        gbit.map(|g: f64| (1u64 << 30) as f64 * 8.0 / (g * k) / 1e3);
                });
            }
            for (peer, held) in [("weir", 31_000), ("haproxy", 40_000), ("nginx", 29_000)] {
                add("idle", peer, round - 1, &|r| {
                    r.requests = 10_000;
                    r.rss_before_kib = Some(8_000);
                    r.rss_kib = Some(held + u64::from(round) * 100);
                });
            }
            for (peer, conns) in [
                ("weir", 0),
                ("haproxy", 180),
                ("nginx", 17_000),
                ("direct", 100_000),
            ] {
                add("churn", peer, round, &|r| {
                    r.upstream_conns = Some(conns + u64::from(round))
                });
            }
        }
        for (peer, success, p99) in [
            ("weir/peak_ewma", 0.9994, 3000.0),
            ("weir/least_request", 0.999, 3200.0),
            ("haproxy/roundrobin", 0.9375, 2200.0),
            ("haproxy/leastconn", 0.9994, 2700.0),
            ("nginx/least_conn", 0.9979, 2600.0),
        ] {
            add("quality", peer, 0, &|r| {
                r.success_rate = Some(success);
                r.p99_us = Some(p99);
            });
        }
        Results {
            meta: Meta {
                date: "2026-11-22 06:29 UTC".into(),
                command: "cargo run -p weir-bench --release -- all".into(),
                nproc: 2,
                cpu: "test".into(),
                kernel: "test".into(),
                os: "test".into(),
                weir: "0000000".into(),
                nginx: "nginx".into(),
                haproxy: "haproxy".into(),
                wrk: "wrk".into(),
                h2load: "h2load".into(),
                runs: 3,
                duration_s: 8,
            },
            runs,
        }
    }

    /// Pixels of exactly `color` in a decoded PNG.
    fn count(img: &image::RgbImage, color: RGBColor) -> usize {
        img.pixels()
            .filter(|p| p.0 == [color.0, color.1, color.2])
            .count()
    }

    #[test]
    fn renders_one_readable_png_per_scenario_and_the_overview() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let written = render(&sample(), dir.path())?;
        let names: Vec<String> = written
            .iter()
            .filter_map(|p| Some(p.file_name()?.to_string_lossy().into_owned()))
            .collect();
        assert_eq!(
            names,
            [
                "h1", "h1-rate", "h2", "tcp", "bulk", "idle", "churn", "quality", "overview"
            ]
            .map(|n| format!("{n}.png"))
        );
        for path in &written {
            let img = image::open(path)?.to_rgb8();
            assert!(
                img.width() >= WIDTH && img.height() >= HEIGHT,
                "{}",
                path.display()
            );
            // Text was rendered: dark anti-aliased glyph pixels, not only the bars.
            let dark = img.pixels().filter(|p| p.0.iter().all(|&c| c < 60)).count();
            assert!(dark > 2_000, "{}: {dark} dark pixels", path.display());
        }
        // weir's bar is drawn (orange) in every per-scenario chart but churn's, where weir
        // opens ~0 connections per 1,000 requests.
        for path in written
            .iter()
            .filter(|p| !p.ends_with("overview.png") && !p.ends_with("churn.png"))
        {
            let img = image::open(path)?.to_rgb8();
            assert!(
                count(&img, peer_color("weir")) > 5_000,
                "{}",
                path.display()
            );
        }
        // The overview has bars that meet the bar (green), that miss it (red: h2) and that
        // have none (grey: bulk).
        let img = image::open(dir.path().join("overview.png"))?.to_rgb8();
        for color in [
            RGBColor(46, 160, 67),
            RGBColor(214, 39, 40),
            RGBColor(150, 150, 150),
        ] {
            assert!(count(&img, color) > 1_000, "{color:?}");
        }
        Ok(())
    }

    #[test]
    fn a_single_bar_is_drawn_in_the_middle() -> anyhow::Result<()> {
        let mut results = sample();
        results.runs.retain(|r| r.scenario == "quality");
        let dir = tempfile::tempdir()?;
        render(&results, dir.path())?;
        let img = image::open(dir.path().join("overview.png"))?.to_rgb8();
        // Red: weir's peak_ewma ties HAProxy's leastconn in the sample, and the bar asks for
        // better than every peer.
        let red = [214, 39, 40];
        let xs: Vec<u32> = img
            .enumerate_pixels()
            .filter(|(_, _, p)| p.0 == red)
            .map(|(x, _, _)| x)
            .collect();
        assert!(xs.len() > 1_000, "{} red pixels", xs.len());
        let mid = xs.iter().map(|&x| u64::from(x)).sum::<u64>() / xs.len() as u64;
        let centre = u64::from(img.width()) / 2;
        assert!(
            mid.abs_diff(centre) < 60,
            "bar centred at {mid}, image centre {centre}"
        );
        Ok(())
    }

    #[test]
    fn a_missing_font_says_which_package_to_install() {
        let e = read_font(Path::new("/nonexistent/DejaVuSans.ttf"))
            .err()
            .unwrap_or_default();
        assert!(
            e.contains("fonts-dejavu-core") && e.contains("WEIR_BENCH_FONT"),
            "{e}"
        );
    }
}

//! Where a run's results go: `target/bench/` by default, and with `--save` also
//! `bench/results/<YYYY-MM-DD-HHMM>/` plus `bench/results/latest.md`, the one stable path the
//! README links (issue #11: "the README links the latest table").

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::report::{Results, markdown, save};

/// The file in the results directory that always shows the last saved run.
pub(crate) const LATEST: &str = "latest.md";

/// `bench/results/` of this checkout: where `--save` without a directory puts runs.
pub(crate) fn default_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("results")
}

/// `--save` → `bench/results/`, `--save DIR` → `DIR`, no flag → `None`.
pub(crate) fn save_dir(flag: Option<&Option<PathBuf>>) -> Option<PathBuf> {
    flag.map(|d| d.clone().unwrap_or_else(default_dir))
}

/// `weir-bench report`: rewrites `runs.csv`, `summary.md` and the charts of a saved `runs.json`
/// into `out` (default: next to it), prints the summary, and publishes it too with `--save`.
pub(crate) fn report(
    runs: &Path,
    out: Option<&Path>,
    save_to: Option<&Path>,
) -> anyhow::Result<()> {
    let results = crate::report::load(runs)?;
    let out = out.map_or_else(
        || {
            runs.parent()
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
        },
        Path::to_path_buf,
    );
    println!("{}", save(&results, &out)?);
    if let Some(dir) = save_to {
        publish(&results, dir)?;
    }
    Ok(())
}

/// Saves `results` into `dir/<stamp>/` (raw runs, summary, charts) and rewrites `dir/latest.md`
/// to show that run's table and charts; returns the run's directory.
pub(crate) fn publish(results: &Results, dir: &Path) -> anyhow::Result<PathBuf> {
    let stamp = stamp(&results.meta.date)?;
    let run_dir = dir.join(&stamp);
    save(results, &run_dir)?;
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Latest benchmark results\n\n\
         Run [`{stamp}`]({stamp}/) ([runs.json]({stamp}/runs.json), [runs.csv]({stamp}/runs.csv), \
         [summary.md]({stamp}/summary.md)); earlier runs are the other dated folders here. \
         How to read and rerun it: [docs/benchmarks.md](../../docs/benchmarks.md). \
         Written by `weir-bench all --save` (or `weir-bench report <runs.json> --save`).\n"
    );
    md.push_str(&markdown(results, &format!("{stamp}/")));
    let latest = dir.join(LATEST);
    std::fs::write(&latest, md).with_context(|| format!("writing {}", latest.display()))?;
    eprintln!("saved {} and {}", run_dir.display(), latest.display());
    Ok(run_dir)
}

/// `2026-11-22 06:29 UTC` (the `date` of `Meta`) → `2026-11-22-0629`, the run's folder name.
pub(crate) fn stamp(date: &str) -> anyhow::Result<String> {
    let mut parts = date.split_whitespace();
    let (Some(day), Some(time)) = (parts.next(), parts.next()) else {
        bail!("run date {date:?} is not `YYYY-MM-DD HH:MM UTC`");
    };
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    let day_ok = day.split('-').map(str::len).eq([4, 2, 2]) && digits(&day.replace('-', ""), 8);
    let Some((h, m)) = time.split_once(':') else {
        bail!("run date {date:?} is not `YYYY-MM-DD HH:MM UTC`");
    };
    if !day_ok || !digits(h, 2) || !digits(m, 2) {
        bail!("run date {date:?} is not `YYYY-MM-DD HH:MM UTC`");
    }
    Ok(format!("{day}-{h}{m}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_writes_a_dated_run_and_points_latest_at_it() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let results = crate::charts::tests::sample();
        let run = publish(&results, dir.path())?;
        assert_eq!(run, dir.path().join("2026-11-22-0629"));
        for f in [
            "runs.json",
            "runs.csv",
            "summary.md",
            "h1.png",
            "overview.png",
        ] {
            assert!(run.join(f).is_file(), "{f}");
        }
        let reloaded = crate::report::load(&run.join("runs.json"))?;
        assert_eq!(reloaded.runs.len(), results.runs.len());
        // Every link in latest.md resolves from the results directory.
        let latest = std::fs::read_to_string(dir.path().join(LATEST))?;
        let links: Vec<&str> = latest
            .split("](")
            .skip(1)
            .filter_map(|s| s.split(')').next())
            .filter(|l| !l.starts_with("../"))
            .collect();
        assert!(links.contains(&"2026-11-22-0629/overview.png"), "{links:?}");
        assert!(links.contains(&"2026-11-22-0629/quality.png"), "{links:?}");
        for l in &links {
            assert!(dir.path().join(l).exists(), "broken link {l}");
        }
        // The summary next to the charts links them without the folder.
        let summary = std::fs::read_to_string(run.join("summary.md"))?;
        assert!(summary.contains("](h1.png)"), "{summary}");
        Ok(())
    }

    #[test]
    fn stamp_is_date_and_minute() {
        assert_eq!(
            stamp("2026-11-22 06:29 UTC").ok().as_deref(),
            Some("2026-11-22-0629")
        );
        for bad in [
            "",
            "2026-11-22",
            "26-11-22 06:29 UTC",
            "2026-11-22 6:29",
            "../x 06:29",
        ] {
            assert!(stamp(bad).is_err(), "{bad:?}");
        }
    }
}

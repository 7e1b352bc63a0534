//! File discovery: an endpoints file, read every interval and applied when its bytes change.
//!
//! A simple EDS for scripts and tools: anything that can write a file can feed a cluster.
//! Polling the contents (as the config file watch does) rather than inotify sees every way a
//! file gets replaced — in-place writes, an atomic rename, a Kubernetes ConfigMap's symlink
//! swap — with no platform code. The file is parsed and checked by `weir-config` with the rules
//! of a cluster's `endpoints`, so a bad file is reported with its path and line, and the last
//! good set keeps serving until the file is fixed.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use weir_config::{EndpointConfig, FileDiscoveryConfig};

use crate::Sink;

/// Follows `cluster`'s endpoints `file` until `stop`, reporting each changed endpoint set.
pub(crate) async fn run(
    cluster: String,
    file: FileDiscoveryConfig,
    sink: Sink,
    stop: CancellationToken,
) {
    let path = file.path.display().to_string();
    let mut ticks = tokio::time::interval(file.interval.get().max(Duration::from_millis(10)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The bytes last looked at, good or bad: a bad file is logged once, not every interval.
    let mut seen: Option<Vec<u8>> = None;
    let mut last: Option<Vec<EndpointConfig>> = None;
    let mut unreadable = false;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let bytes = match tokio::fs::read(&file.path).await {
            Ok(bytes) => bytes,
            Err(e) => {
                if !unreadable {
                    tracing::warn!(
                        %cluster,
                        file = %path,
                        error = %e,
                        "endpoints file cannot be read; keeping the last good endpoint set"
                    );
                    unreadable = true;
                }
                continue;
            }
        };
        unreadable = false;
        if seen.as_deref() == Some(bytes.as_slice()) {
            continue;
        }
        let parsed = match std::str::from_utf8(&bytes) {
            Ok(text) => parse(text, &path),
            Err(e) => Err(format!("{path}: not UTF-8: {e}")),
        };
        seen = Some(bytes);
        match parsed {
            Ok(endpoints) => {
                if last.as_ref() != Some(&endpoints) {
                    tracing::info!(
                        %cluster,
                        file = %path,
                        endpoints = endpoints.len(),
                        "endpoints file has a new endpoint set"
                    );
                    sink(&cluster, endpoints.clone());
                    last = Some(endpoints);
                }
            }
            Err(e) => tracing::error!(
                %cluster,
                "endpoints file rejected, keeping the last good endpoint set: {e}"
            ),
        }
    }
}

/// Parses and checks an endpoints file's `text`; the endpoints sorted by address.
pub(crate) fn parse(text: &str, path: &str) -> Result<Vec<EndpointConfig>, String> {
    let mut endpoints = weir_config::load_endpoints_str(text, path).map_err(|e| e.to_string())?;
    endpoints.sort_by_key(|e| e.address);
    Ok(endpoints)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test")]

    use super::parse;

    #[test]
    fn yaml_and_json_files_parse_to_sorted_endpoints() {
        let yaml = "endpoints:\n  - 127.0.0.3:80\n  - { address: 127.0.0.2:80, weight: 3 }\n";
        let eps = parse(yaml, "eps.yaml").unwrap();
        assert_eq!(eps[0].address.to_string(), "127.0.0.2:80");
        assert_eq!(eps[0].weight, 3);
        assert_eq!(eps[1].weight, 1);
        let json = r#"{"endpoints": [{"address": "127.0.0.2:80", "weight": 3}, "127.0.0.3:80"]}"#;
        assert_eq!(parse(json, "eps.json").unwrap(), eps);
        assert!(parse("endpoints: []\n", "eps.yaml").unwrap().is_empty());
    }

    #[test]
    fn a_bad_file_names_the_file_and_line() {
        let err = parse("endpoints:\n  - 127.0.0.2:80\n  - nonsense\n", "eps.yaml").unwrap_err();
        assert!(err.starts_with("eps.yaml: endpoints[1] (line 3)"), "{err}");
        let err = parse(
            "endpoints:\n  - 127.0.0.2:80\n  - { address: 127.0.0.3:80, weight: 0 }\n",
            "eps.yaml",
        )
        .unwrap_err();
        assert!(err.contains("line 3") && err.contains("weight 0"), "{err}");
        let err = parse(
            "endpoints:\n  - 127.0.0.2:80\n  - 127.0.0.2:80\n",
            "eps.yaml",
        )
        .unwrap_err();
        assert!(err.contains("listed twice in the endpoints file"), "{err}");
        assert!(parse("endpoint: []\n", "eps.yaml").is_err());
    }
}

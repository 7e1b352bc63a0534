//! The privileged-test rule: run as root; otherwise skip with a reason, or fail when
//! `WEIR_REQUIRE_PRIVILEGED=1` (CI) says the test must run.

/// The effective uid, from `/proc/self/status` (no libc call needed).
fn euid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Whether `test` may run: true as root; false (printing why) otherwise, unless privileged
/// tests are required, in which case it panics.
pub(crate) fn allowed(test: &str) -> bool {
    if euid() == Some(0) {
        return true;
    }
    let required = std::env::var("WEIR_REQUIRE_PRIVILEGED").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "{test}: needs root (BPF, network namespaces) and WEIR_REQUIRE_PRIVILEGED=1"
    );
    eprintln!("skipping {test}: needs root (loads BPF programs); run as root to test it");
    false
}

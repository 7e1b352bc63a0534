//! The committed `bpf/xdp_lb.o` is what `scripts/build-bpf` makes from `bpf/xdp_lb.c`.

use std::path::Path;
use std::process::Command;

#[test]
fn committed_object_matches_its_source() {
    let have = |tool: &str| {
        Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !have("clang") || !have("llvm-strip") {
        let required = std::env::var("WEIR_REQUIRE_PRIVILEGED").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "clang and llvm-strip are required to check bpf/xdp_lb.o"
        );
        eprintln!("skipping committed_object_matches_its_source: clang/llvm-strip not installed");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::env::temp_dir().join(format!("weir-xdp-lb-{}.o", std::process::id()));
    let status = Command::new(root.join("../../scripts/build-bpf"))
        .arg(&out)
        .status()
        .expect("run scripts/build-bpf");
    assert!(status.success(), "scripts/build-bpf failed");
    let rebuilt = std::fs::read(&out).unwrap();
    let _ = std::fs::remove_file(&out);
    assert!(
        rebuilt == weir_ebpf::OBJECT,
        "bpf/xdp_lb.o is stale: run scripts/build-bpf and commit the object"
    );
}

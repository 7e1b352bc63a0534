//! Compiles the etcd v3 API subset in `proto/` into a tonic client without the `protoc`
//! binary: `protox` (a pure-Rust protobuf compiler) builds the descriptor set that
//! `tonic-prost-build` turns into Rust, as `tests/support` does for its echo service.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/etcd.proto");
    println!("cargo:rerun-if-changed=proto/kv.proto");
    let fds = protox::compile(["etcd.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .compile_fds(fds)?;
    Ok(())
}

//! Compiles `proto/echo.proto` into tonic client and server code without the `protoc` binary:
//! `protox` (a pure-Rust protobuf compiler) builds the descriptor set that `tonic-prost-build`
//! turns into Rust.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/echo.proto");
    let fds = protox::compile(["echo.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}

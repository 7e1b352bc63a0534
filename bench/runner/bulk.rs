//! Scenario 5's client: one connection asks the endpoint's bulk port (through a proxy's L4
//! listener) for `bytes` bytes and reads them to the end, timing the transfer.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Instant;

use serde::Serialize;

/// What one bulk transfer measured.
#[derive(Debug, Serialize)]
pub(crate) struct BulkResult {
    /// Bytes received before the endpoint closed.
    pub(crate) bytes: u64,
    /// Seconds from connect to the last byte.
    pub(crate) seconds: f64,
    /// `1` when fewer bytes than asked arrived.
    pub(crate) errors: u64,
}

/// Runs one transfer of `bytes` bytes from the bulk endpoint behind `addr`.
pub(crate) fn run(addr: SocketAddr, bytes: u64) -> anyhow::Result<BulkResult> {
    let start = Instant::now();
    let mut stream = TcpStream::connect(addr)?;
    stream.write_all(format!("{bytes}\n").as_bytes())?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0u64;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(BulkResult {
        bytes: got,
        seconds: start.elapsed().as_secs_f64(),
        errors: u64::from(got != bytes),
    })
}

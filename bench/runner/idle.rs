//! Scenario 6's client: opens `conns` keep-alive connections, makes one request on each (so
//! each is a live HTTP connection the proxy has parsed and answered, not just an accepted
//! socket), then holds them all idle. It prints `ready <ok> <failed>` once they are all open
//! and keeps them until its standard input closes, while the runner reads the proxy's memory.

use std::io::{BufRead, Write};
use std::net::SocketAddr;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Opens the connections (64 at a time), reports, and holds them until stdin closes.
pub(crate) fn run(addr: SocketAddr, conns: u32) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let held = rt.block_on(async move {
        let mut held = Vec::with_capacity(conns as usize);
        let mut failed = 0u32;
        let mut left = conns;
        while left > 0 {
            let batch = left.min(64);
            left -= batch;
            let mut tasks = Vec::new();
            for _ in 0..batch {
                tasks.push(tokio::spawn(open(addr)));
            }
            for t in tasks {
                match t.await {
                    Ok(Some(s)) => held.push(s),
                    _ => failed += 1,
                }
            }
        }
        (held, failed)
    });
    let (held, failed) = held;
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready {} {failed}", held.len())?;
    out.flush()?;
    drop(out);
    // Hold until the runner is done measuring (it closes our stdin).
    let mut line = String::new();
    while std::io::stdin().lock().read_line(&mut line)? > 0 {
        line.clear();
    }
    drop(held);
    Ok(())
}

/// One connection with one answered request, or `None`.
async fn open(addr: SocketAddr) -> Option<TcpStream> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    let request = format!("GET / HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: weir-bench\r\n\r\n");
    s.write_all(request.as_bytes()).await.ok()?;
    let mut buf = vec![0u8; 4096];
    (crate::rate::read_response(&mut s, &mut buf).await? == 200).then_some(s)
}

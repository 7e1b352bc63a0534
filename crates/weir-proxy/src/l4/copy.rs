//! Moving bytes between a downstream and an upstream TCP connection.
//!
//! Both directions run at once. An orderly close (EOF) on one side becomes a `shutdown(WR)` on
//! the other, so half-closed protocols keep working (a client that has sent everything still
//! receives the whole answer). A reset on one side becomes a reset on the other (SO_LINGER 0),
//! so peers see the failure instead of a clean end. No bytes moving in either direction for the
//! idle timeout closes both. Bytes count on the listener as they are written, so `/metrics`
//! shows a long-lived connection's traffic while it lasts. Bytes go through a buffer unless the
//! listener sets `zero_copy`; then, on Linux, they move with `splice(2)` through a pipe (see
//! `splice.rs`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::proxy_protocol;
use crate::stats::ListenerCounters;

/// Buffer per direction for the buffered path.
const BUF: usize = 64 * 1024;

/// How a copy ended, and how many bytes went each way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CopyEnd {
    pub(crate) to_upstream: u64,
    pub(crate) to_downstream: u64,
    pub(crate) reason: EndReason,
}

/// Why a copy ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EndReason {
    /// Both sides closed their sending half.
    Closed,
    /// The downstream reset or failed; the upstream was reset.
    DownstreamReset,
    /// The upstream reset or failed; the downstream was reset.
    UpstreamReset,
    /// Nothing moved for the idle timeout.
    Idle,
    /// The proxy is shutting down.
    Shutdown,
    /// An untrusted peer sent a PROXY protocol header.
    ForbiddenProxyHeader,
}

impl EndReason {
    /// The reason as the access log writes it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            EndReason::Closed => "closed",
            EndReason::DownstreamReset => "downstream_reset",
            EndReason::UpstreamReset => "upstream_reset",
            EndReason::Idle => "idle",
            EndReason::Shutdown => "shutdown",
            EndReason::ForbiddenProxyHeader => "forbidden_proxy_header",
        }
    }
}

/// How bytes are moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CopyMode {
    /// Through a userspace buffer.
    Buffered,
    /// With `splice(2)` through a pipe (Linux), never entering userspace.
    ZeroCopy,
}

/// Which side of one direction a failure happened on.
pub(super) enum Failed {
    /// Reading the source failed (it reset or broke).
    Reader,
    /// Writing the destination failed.
    Writer,
    /// The first bytes were a PROXY header from an untrusted peer.
    ProxyHeader,
}

/// Bytes one direction has moved: the connection's own count (the access log's, read when the
/// copy ends) and its listener's running total (`/metrics`), both added to as bytes move.
pub(super) struct Moved<'a> {
    conn: AtomicU64,
    listener: &'a AtomicU64,
}

/// Shared bookkeeping of one copy: when bytes last moved.
pub(super) struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

/// Copies until both sides are done, one resets, the idle timeout passes or `shutdown` fires.
/// With `refuse_proxy_header`, a downstream whose first bytes are a PROXY header is cut off
/// before anything reaches the upstream (that direction then uses the buffered path, which
/// can look at the bytes).
pub(crate) async fn bidirectional(
    down: TcpStream,
    up: TcpStream,
    idle: Duration,
    refuse_proxy_header: bool,
    mode: CopyMode,
    shutdown: &CancellationToken,
    counters: &ListenerCounters,
) -> CopyEnd {
    let activity = Activity {
        start: Instant::now(),
        last_ms: AtomicU64::new(0),
    };
    // What goes up was received from the client; what comes down is sent to it.
    let sent_up = Moved::new(counters.received_counter());
    let sent_down = Moved::new(counters.sent_counter());
    let zero_copy = mode == CopyMode::ZeroCopy;
    let reason = {
        let a2b = direction(
            &down,
            &up,
            &activity,
            &sent_up,
            refuse_proxy_header,
            zero_copy,
        );
        let b2a = direction(&up, &down, &activity, &sent_down, false, zero_copy);
        tokio::pin!(a2b, b2a);
        let (mut a_done, mut b_done) = (false, false);
        loop {
            if a_done && b_done {
                break EndReason::Closed;
            }
            tokio::select! {
                r = &mut a2b, if !a_done => match r {
                    Ok(()) => a_done = true,
                    Err(Failed::ProxyHeader) => break EndReason::ForbiddenProxyHeader,
                    Err(Failed::Reader) => break EndReason::DownstreamReset,
                    Err(Failed::Writer) => break EndReason::UpstreamReset,
                },
                r = &mut b2a, if !b_done => match r {
                    Ok(()) => b_done = true,
                    Err(Failed::Reader) => break EndReason::UpstreamReset,
                    Err(Failed::Writer | Failed::ProxyHeader) => break EndReason::DownstreamReset,
                },
                () = activity.idle_expired(idle) => break EndReason::Idle,
                () = shutdown.cancelled() => break EndReason::Shutdown,
            }
        }
    };
    // Propagate a reset to the side that did not see it: SO_LINGER 0 turns close into RST.
    match reason {
        EndReason::DownstreamReset => reset(&up),
        EndReason::UpstreamReset => reset(&down),
        EndReason::ForbiddenProxyHeader => {
            reset(&down);
            reset(&up);
        }
        _ => {}
    }
    CopyEnd {
        to_upstream: sent_up.get(),
        to_downstream: sent_down.get(),
        reason,
    }
}

/// One direction, zero-copy when asked and possible.
async fn direction(
    src: &TcpStream,
    dst: &TcpStream,
    activity: &Activity,
    sent: &Moved<'_>,
    check_proxy_header: bool,
    zero_copy: bool,
) -> Result<(), Failed> {
    #[cfg(target_os = "linux")]
    if zero_copy
        && !check_proxy_header
        && let Some(pipe) = super::splice::Pipe::new()
    {
        return super::splice::pump(pipe, src, dst, activity, sent).await;
    }
    let _ = zero_copy;
    buffered(src, dst, activity, sent, check_proxy_header).await
}

/// Copies one direction through a buffer until EOF (then half-closes `dst`) or an error.
async fn buffered(
    src: &TcpStream,
    dst: &TcpStream,
    activity: &Activity,
    sent: &Moved<'_>,
    check_proxy_header: bool,
) -> Result<(), Failed> {
    let mut buf = vec![0u8; BUF];
    if check_proxy_header && refuse_proxy_header(src, dst, activity, sent, &mut buf).await? {
        // The peer closed while its first bytes were still undecided.
        return shutdown_write(dst);
    }
    loop {
        let n = read(src, &mut buf).await.map_err(|_| Failed::Reader)?;
        if n == 0 {
            // Orderly close: pass the half-close on. A failure here means the peer is gone.
            return shutdown_write(dst);
        }
        write_all(dst, &buf[..n])
            .await
            .map_err(|_| Failed::Writer)?;
        sent.add(n);
        activity.touch();
    }
}

/// Reads an untrusted peer's first bytes until they are certainly not a PROXY header (then
/// forwards them) or certainly are one (then fails). A short first read such as `P` or `\r\n`
/// is held back, not refused: only a whole signature decides. Returns whether the peer has
/// already closed its side.
async fn refuse_proxy_header(
    src: &TcpStream,
    dst: &TcpStream,
    activity: &Activity,
    sent: &Moved<'_>,
    buf: &mut [u8],
) -> Result<bool, Failed> {
    let mut first = Vec::new();
    loop {
        let n = read(src, buf).await.map_err(|_| Failed::Reader)?;
        first.extend_from_slice(&buf[..n]);
        match proxy_protocol::classify_first(&first) {
            proxy_protocol::FirstBytes::Header => return Err(Failed::ProxyHeader),
            proxy_protocol::FirstBytes::Undecided if n > 0 => continue,
            // Not a header, or EOF while undecided: what came is ordinary data.
            _ => {}
        }
        write_all(dst, &first).await.map_err(|_| Failed::Writer)?;
        sent.add(first.len());
        activity.touch();
        return Ok(n == 0);
    }
}

/// Reads through a shared reference: both directions use the same sockets at once.
///
/// A read that does not fill `buf` took everything the socket had, so the socket's readiness
/// is cleared then and there: the next read waits for the kernel's next event instead of
/// asking the socket once more only to be told `EAGAIN` (nginx and HAProxy do the same). The
/// readiness cleared is the one seen before the read, so data that arrives after it still
/// wakes the next read.
async fn read(src: &TcpStream, buf: &mut [u8]) -> std::io::Result<usize> {
    let len = buf.len();
    loop {
        src.readable().await?;
        let mut short = None;
        let r = src.try_io(Interest::READABLE, || match src.try_read(&mut *buf) {
            Ok(n) if n > 0 && n < len => {
                short = Some(n);
                Err(std::io::ErrorKind::WouldBlock.into())
            }
            r => r,
        });
        if let Some(n) = short {
            return Ok(n);
        }
        match r {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            r => return r,
        }
    }
}

async fn write_all(dst: &TcpStream, mut buf: &[u8]) -> std::io::Result<()> {
    while !buf.is_empty() {
        dst.writable().await?;
        match dst.try_write(buf) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `shutdown(SHUT_WR)`: sends FIN while the other direction goes on.
pub(super) fn shutdown_write(dst: &TcpStream) -> Result<(), Failed> {
    socket2::SockRef::from(dst)
        .shutdown(std::net::Shutdown::Write)
        .map_err(|_| Failed::Writer)
}

fn reset(stream: &TcpStream) {
    if let Err(e) = stream.set_zero_linger() {
        tracing::debug!(error = %e, "could not set SO_LINGER 0");
    }
}

// === impl Moved ===

impl<'a> Moved<'a> {
    /// Nothing moved yet; `listener` is the listener's total this direction adds to.
    fn new(listener: &'a AtomicU64) -> Self {
        Self {
            conn: AtomicU64::new(0),
            listener,
        }
    }

    /// Counts `n` bytes written to the destination.
    pub(super) fn add(&self, n: usize) {
        let n = n as u64;
        self.conn.fetch_add(n, Ordering::Relaxed);
        self.listener.fetch_add(n, Ordering::Relaxed);
    }

    /// The connection's bytes so far.
    fn get(&self) -> u64 {
        self.conn.load(Ordering::Relaxed)
    }
}

// === impl Activity ===

impl Activity {
    /// Records that bytes moved now.
    pub(super) fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Resolves once nothing has moved for `idle`.
    async fn idle_expired(&self, idle: Duration) {
        loop {
            let since = self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let deadline = since + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

//! Hitless binary upgrade: a new weir takes over the listening sockets of the running one.
//!
//! The way HAProxy, Envoy and Pingora do it: the running weir listens on a Unix socket
//! ([`UpgradeSocket`]); the new one connects ([`take_over`]) and receives a duplicate of every
//! listening socket (`SCM_RIGHTS`) with its listener's name, starts serving its own config on
//! them, and says `ready`. Only then does the old one stop accepting and drain. The listening
//! sockets never close, so the kernel keeps queueing connects throughout: nothing is refused.
//! If the new weir fails before `ready` (bad config, a bind error, a crash), the old one never
//! stopped and keeps serving; it waits for the next attempt.
//!
//! The exchange, in lines of text (the first one carries the descriptors):
//!
//! ```text
//! old → new   weir-upgrade 1
//!             listener tcp <name>     one line per descriptor, in order
//!             admin tcp admin
//!             end
//! new → old   ready                   the new weir is accepting on them
//! old → new   bye                     the old weir stopped waiting for upgrades; it drains
//! ```
//!
//! The Unix socket is created mode 0600: whoever can connect can take the listeners.

use std::io::{BufRead, BufReader, IoSlice, IoSliceMut, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use weir_proxy::ListenSocket;

use crate::Inherited;

/// The first line of the exchange; a different one is an incompatible weir.
const HELLO: &str = "weir-upgrade 1";
/// Descriptors one `SCM_RIGHTS` message may carry (Linux's `SCM_MAX_FD`).
const MAX_SOCKETS: usize = 253;
/// How long the old weir waits for the new one to start serving (it loads its config and
/// binds the listeners it did not inherit meanwhile).
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the new weir waits for the old one to acknowledge.
const BYE_TIMEOUT: Duration = Duration::from_secs(10);

/// The Unix socket a running weir waits on for a new weir to take over.
#[derive(Debug)]
pub struct UpgradeSocket {
    listener: tokio::net::UnixListener,
    path: PathBuf,
}

/// The new weir's side of a takeover, between receiving the sockets and serving on them.
#[derive(Debug)]
pub struct Handover {
    stream: UnixStream,
}

// === impl UpgradeSocket ===

impl UpgradeSocket {
    /// Listens on `path` (mode 0600), replacing a socket file left by a weir that is gone
    /// or that handed over. Must run inside a tokio runtime.
    pub fn bind(path: &Path) -> anyhow::Result<Self> {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
        }
        let listener = tokio::net::UnixListener::bind(path)
            .with_context(|| format!("upgrade socket: cannot bind {}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("upgrade socket: chmod 0600 {}", path.display()))?;
        tracing::info!(path = %path.display(), "waiting for upgrades");
        Ok(Self {
            listener,
            path: path.to_path_buf(),
        })
    }

    /// Listens beside `path` (at `path.<pid>`), for a weir that is taking over and may only
    /// take `path` once the old one acknowledged; see [`UpgradeSocket::publish`]. Binding
    /// first means a failure here aborts the takeover before the old weir stops.
    pub fn bind_beside(path: &Path) -> anyhow::Result<Self> {
        let mut pending = path.as_os_str().to_owned();
        pending.push(format!(".{}", std::process::id()));
        let mut socket = Self::bind(Path::new(&pending))?;
        socket.path = PathBuf::from(pending);
        Ok(socket)
    }

    /// Moves the socket to `path` (`rename(2)`: atomic, replacing the old weir's).
    pub fn publish(&mut self, path: &Path) -> anyhow::Result<()> {
        std::fs::rename(&self.path, path).with_context(|| {
            format!(
                "upgrade socket: cannot move {} to {}",
                self.path.display(),
                path.display()
            )
        })?;
        self.path = path.to_path_buf();
        tracing::info!(path = %path.display(), "waiting for upgrades");
        Ok(())
    }

    /// Where the socket is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Hands the sockets `sockets` returns to each new weir that connects, and resolves once
    /// one of them is serving on them: the caller then stops accepting and drains. A new weir
    /// that fails first is logged, and the next one awaited.
    pub async fn handover(
        &self,
        sockets: impl Fn() -> std::io::Result<Inherited>,
    ) -> anyhow::Result<()> {
        loop {
            let (stream, _) = self
                .listener
                .accept()
                .await
                .context("upgrade socket: accept")?;
            let inherited = match sockets() {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "upgrade refused: cannot duplicate the listening sockets");
                    continue;
                }
            };
            let stream = stream.into_std().context("upgrade socket")?;
            let outcome = tokio::task::spawn_blocking(move || hand(stream, inherited)).await;
            match outcome {
                Ok(Ok(())) => {
                    tracing::info!("the new weir is serving; this one stops accepting and drains");
                    return Ok(());
                }
                Ok(Err(e)) => tracing::warn!("upgrade aborted, still serving: {e:#}"),
                Err(e) => tracing::error!(error = %e, "upgrade aborted, still serving"),
            }
        }
    }
}

/// Sends `inherited` over `stream` and waits for `ready`; answers `bye`.
fn hand(stream: UnixStream, inherited: Inherited) -> anyhow::Result<()> {
    stream.set_nonblocking(false)?;
    let mut lines = vec![HELLO.to_owned()];
    let mut fds: Vec<OwnedFd> = Vec::new();
    for (name, socket) in inherited.listeners {
        if name.contains(['\n', '\r']) {
            // Not expressible in the exchange; the new weir binds it (and fails if the old
            // still holds the address, which aborts the upgrade cleanly).
            continue;
        }
        let (kind, fd) = match socket {
            ListenSocket::Tcp(s) => ("tcp", OwnedFd::from(s)),
            ListenSocket::Udp(s) => ("udp", OwnedFd::from(s)),
        };
        lines.push(format!("listener {kind} {name}"));
        fds.push(fd);
    }
    if let Some(admin) = inherited.admin {
        lines.push("admin tcp admin".to_owned());
        fds.push(OwnedFd::from(admin));
    }
    lines.push("end\n".to_owned());
    anyhow::ensure!(
        fds.len() <= MAX_SOCKETS,
        "{} sockets; one upgrade hands over at most {MAX_SOCKETS}",
        fds.len()
    );
    let header = lines.join("\n");
    let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(AsFd::as_fd).collect();
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_SOCKETS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    anyhow::ensure!(
        borrowed.is_empty() || control.push(SendAncillaryMessage::ScmRights(&borrowed)),
        "the descriptors do not fit one message"
    );
    let bytes = header.as_bytes();
    let sent = rustix::net::sendmsg(
        &stream,
        &[IoSlice::new(bytes)],
        &mut control,
        SendFlags::empty(),
    )
    .context("sending the listening sockets")?;
    // The descriptors went with the first byte; the rest of the text follows plainly.
    (&stream)
        .write_all(&bytes[sent..])
        .context("sending the socket list")?;
    drop(fds);
    stream.set_read_timeout(Some(READY_TIMEOUT))?;
    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .context("waiting for the new weir to be ready")?;
    match line.trim_end() {
        "ready" => {
            // The old weir stops waiting for upgrades; the new one may take the path.
            let _ = (&stream).write_all(b"bye\n");
            Ok(())
        }
        "" => anyhow::bail!("the new weir exited before it was ready (see its log)"),
        other => anyhow::bail!("the new weir said {other:?} instead of ready"),
    }
}

// === takeover ===

/// Connects to the upgrade socket at `path` of the running weir and receives its listening
/// sockets, by listener name. Serve on them (see [`crate::Weir::start_file_with`]), then call
/// [`Handover::ready`]; dropping the [`Handover`] before that aborts the upgrade and leaves the
/// old weir serving.
pub async fn take_over(path: &Path) -> anyhow::Result<(Inherited, Handover)> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || receive(&path))
        .await
        .context("takeover task")?
}

fn receive(path: &Path) -> anyhow::Result<(Inherited, Handover)> {
    let stream = UnixStream::connect(path).with_context(|| {
        format!(
            "connecting to the running weir's upgrade socket {}",
            path.display()
        )
    })?;
    stream.set_read_timeout(Some(READY_TIMEOUT))?;
    let mut buf = vec![0_u8; 64 * 1024];
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_SOCKETS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = rustix::net::recvmsg(
        &stream,
        &mut [IoSliceMut::new(&mut buf)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )
    .context("receiving the listening sockets")?;
    let mut fds: Vec<OwnedFd> = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    let mut text = buf.get(..got.bytes).unwrap_or_default().to_vec();
    let mut reader = BufReader::new(&stream);
    while !text.ends_with(b"\nend\n") {
        let mut more = Vec::new();
        let n = reader
            .read_until(b'\n', &mut more)
            .context("receiving the socket list")?;
        anyhow::ensure!(
            n > 0,
            "the running weir closed the upgrade connection mid-list"
        );
        text.extend_from_slice(&more);
    }
    let text = String::from_utf8(text).context("the socket list is not UTF-8")?;
    let mut lines = text.lines();
    anyhow::ensure!(
        lines.next() == Some(HELLO),
        "the running weir speaks another upgrade protocol (expected {HELLO:?})"
    );
    let mut inherited = Inherited::default();
    let mut fds = fds.into_iter();
    for line in lines.take_while(|l| *l != "end") {
        let mut parts = line.splitn(3, ' ');
        let (Some(role), Some(kind), Some(name)) = (parts.next(), parts.next(), parts.next())
        else {
            anyhow::bail!("bad socket list line {line:?}");
        };
        let fd = fds
            .next()
            .with_context(|| format!("no descriptor came for {line:?}"))?;
        match (role, kind) {
            ("listener", "tcp") => inherited
                .listeners
                .push((name.to_owned(), ListenSocket::Tcp(fd.into()))),
            ("listener", "udp") => inherited
                .listeners
                .push((name.to_owned(), ListenSocket::Udp(fd.into()))),
            ("admin", "tcp") => inherited.admin = Some(fd.into()),
            _ => anyhow::bail!("bad socket list line {line:?}"),
        }
    }
    drop(reader);
    Ok((inherited, Handover { stream }))
}

// === impl Handover ===

impl Handover {
    /// Tells the old weir that this one is serving, so it stops accepting and drains; waits
    /// for its acknowledgement (after which its upgrade socket path may be reused).
    pub async fn ready(self) -> anyhow::Result<()> {
        tokio::task::spawn_blocking(move || {
            let mut stream = &self.stream;
            stream
                .write_all(b"ready\n")
                .context("telling the old weir we are ready")?;
            self.stream.set_read_timeout(Some(BYE_TIMEOUT))?;
            let mut line = String::new();
            BufReader::new(&self.stream)
                .read_line(&mut line)
                .context("waiting for the old weir's acknowledgement")?;
            anyhow::ensure!(
                line.trim_end() == "bye",
                "the old weir answered {line:?} instead of bye"
            );
            Ok(())
        })
        .await
        .context("takeover task")?
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    /// Both sides in one process: the sockets received are the very sockets sent, an aborted
    /// takeover leaves the old side waiting, and `ready` completes the handover.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sockets_cross_over_and_an_aborted_takeover_leaves_the_old_side_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("upgrade.sock");
        let upgrades = UpgradeSocket::bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let admin = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (tcp_addr, udp_addr) = (tcp.local_addr().unwrap(), udp.local_addr().unwrap());
        let sockets = || {
            Ok(Inherited {
                listeners: vec![
                    ("web".into(), ListenSocket::Tcp(tcp.try_clone()?)),
                    ("dns server".into(), ListenSocket::Udp(udp.try_clone()?)),
                ],
                admin: Some(admin.try_clone()?),
            })
        };
        let old = upgrades.handover(sockets);
        tokio::pin!(old);

        // A new weir that takes the sockets and goes away without `ready`.
        let aborted = async {
            let (inherited, handover) = take_over(&path).await.unwrap();
            assert_eq!(inherited.listeners.len(), 2);
            drop(handover);
        };
        tokio::select! {
            r = &mut old => panic!("the handover ended without ready: {r:?}"),
            () = aborted => {}
        }

        let taking = async {
            let (inherited, handover) = take_over(&path).await.unwrap();
            handover.ready().await.unwrap();
            inherited
        };
        let (done, inherited) = tokio::join!(old, taking);
        done.unwrap();
        let names: Vec<&str> = inherited
            .listeners
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(names, ["web", "dns server"]);
        assert_eq!(
            inherited.admin.unwrap().local_addr().unwrap(),
            admin.local_addr().unwrap()
        );
        let mut listeners = inherited.listeners.into_iter();
        let Some((_, ListenSocket::Tcp(web))) = listeners.next() else {
            panic!("web is tcp");
        };
        let Some((_, ListenSocket::Udp(dns))) = listeners.next() else {
            panic!("dns is udp");
        };
        // The same sockets: a connect to the old one's address is accepted through the new
        // one, a datagram sent to it is read from the new one.
        let mut client = std::net::TcpStream::connect(tcp_addr).unwrap();
        let (mut accepted, _) = web.accept().unwrap();
        client.write_all(b"hi").unwrap();
        let mut got = [0_u8; 2];
        accepted.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hi");
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sender.send_to(b"q", udp_addr).unwrap();
        let mut buf = [0_u8; 4];
        let (n, _) = dns.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"q");
    }

    #[tokio::test]
    async fn taking_over_with_nobody_there_fails_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let e = take_over(&dir.path().join("none.sock")).await.unwrap_err();
        assert!(format!("{e:#}").contains("upgrade socket"), "{e:#}");
    }
}

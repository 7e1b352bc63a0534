//! The set of bound listeners, by name, and how a new config changes it without a restart.
//!
//! Each running listener has its own task and its own pair of cancellation tokens (children of
//! the proxy's): a reload that removes a listener stops its task accepting — the socket closes,
//! new connects are refused — and its open connections drain as on shutdown (HTTP/1.1 answers
//! its next request with `Connection: close`, HTTP/2 sends GOAWAY) until the drain grace ends
//! them. An added listener is bound before anything changes, so a bind failure rejects the
//! reload and everything keeps serving; its task starts once the snapshot that knows it is
//! published. A listener whose protocol or address changes is a removal plus an addition; when
//! the address stays (a new protocol, or a new name), the new listener takes over the old one's
//! socket, so the port never closes.
//!
//! Tasks and connections find their listener by name in the snapshot they load. A connection
//! of a removed listener still finds it: the last snapshot that had it is kept for the drain.
//!
//! Listening sockets can also come from outside ([`ListenSocket`]): the sockets another weir
//! handed over during a binary upgrade, taken over by name so that the kernel's accept queue
//! never closes. The registry keeps a duplicate of every socket so it can hand them on in turn.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;
use weir_config::{ListenerConfig, ListenerProtocol, ValidatedConfig};

use crate::server::{ListenerCtx, ProxyError, Shared};
use crate::snapshot::{Listener, Snapshot, SnapshotHandle};
use crate::stats::ListenerCounters;

/// A bound listening socket, as handed between weir processes (or by a supervisor).
#[derive(Debug)]
pub enum ListenSocket {
    /// A listening TCP socket (HTTP, TCP and TLS passthrough listeners).
    Tcp(std::net::TcpListener),
    /// A bound UDP socket (UDP listeners).
    Udp(std::net::UdpSocket),
}

/// Which listener a task or connection serves, found by name in each snapshot it loads.
#[derive(Debug, Clone)]
pub(crate) struct ListenerRef {
    /// The listener's name from the config.
    pub(crate) name: Arc<str>,
    /// Set when a reload removes the listener: the last snapshot that had it, which its
    /// draining connections keep serving from.
    retired: Arc<OnceLock<Arc<Snapshot>>>,
}

/// The running listeners of one proxy; cheap to clone, shared with the reload path.
#[derive(Debug, Clone)]
pub struct Listeners {
    /// Taken by reloads, upgrades and admin reads only, never on the request path (tasks and
    /// connections hold their `ListenerRef`).
    running: Arc<Mutex<Vec<Running>>>,
    shared: Shared,
}

/// One bound listener with its task.
#[derive(Debug)]
struct Running {
    listener: ListenerRef,
    /// The address and protocol as configured; a reload keeps the task when both stay.
    address: SocketAddr,
    protocol: ListenerProtocol,
    local: SocketAddr,
    counters: Arc<ListenerCounters>,
    /// A duplicate of the task's socket, to hand over in an upgrade or to a changed listener.
    socket: ListenSocket,
    /// Stops this listener accepting and starts its connections' drain.
    stop: CancellationToken,
    /// Ends this listener's connections.
    hard_stop: CancellationToken,
}

/// A listener of the next config whose socket is bound and whose task has not started.
#[derive(Debug)]
struct Pending {
    name: Arc<str>,
    address: SocketAddr,
    protocol: ListenerProtocol,
    /// Non-blocking, for the task.
    socket: ListenSocket,
    /// A duplicate for the registry.
    keep: ListenSocket,
    local: SocketAddr,
}

/// What the next config's listener `i` will be: one running now, or a new one.
#[derive(Debug)]
enum Slot {
    Kept(usize),
    New(Pending),
}

// === impl ListenSocket ===

impl ListenSocket {
    /// The address the socket is bound to.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match self {
            Self::Tcp(s) => s.local_addr(),
            Self::Udp(s) => s.local_addr(),
        }
    }

    /// Whether this is a UDP socket.
    pub fn is_udp(&self) -> bool {
        matches!(self, Self::Udp(_))
    }

    /// A second handle on the same socket (`dup(2)`).
    pub fn try_clone(&self) -> std::io::Result<Self> {
        Ok(match self {
            Self::Tcp(s) => Self::Tcp(s.try_clone()?),
            Self::Udp(s) => Self::Udp(s.try_clone()?),
        })
    }

    /// Whether a listener configured with `protocol` can serve on this socket.
    fn fits(&self, protocol: ListenerProtocol) -> bool {
        self.is_udp() == (protocol == ListenerProtocol::Udp)
    }
}

// === impl ListenerRef ===

impl ListenerRef {
    /// The listener named `name`, not removed.
    pub(crate) fn new(name: Arc<str>) -> Self {
        Self {
            name,
            retired: Arc::default(),
        }
    }

    /// The snapshot to serve from: the current one, or the last one that had this listener
    /// when a reload has removed it (its connections are draining).
    pub(crate) fn snapshot(&self, handle: &SnapshotHandle) -> Arc<Snapshot> {
        let current = handle.load();
        if current.listener(&self.name).is_some() {
            return current;
        }
        self.retired.get().map_or(current, Arc::clone)
    }

    /// This listener in `snapshot`.
    pub(crate) fn get<'s>(&self, snapshot: &'s Snapshot) -> Option<&'s Listener> {
        snapshot.listener(&self.name)
    }
}

// === impl Listeners ===

impl Listeners {
    /// Binds the listeners of `config` — on the `inherited` socket of the same name when one
    /// fits — and starts them; `shared.snapshots` must already hold `config`'s snapshot.
    pub(crate) fn start(
        config: &ValidatedConfig,
        shared: Shared,
        mut inherited: Vec<(String, ListenSocket)>,
    ) -> Result<Self, ProxyError> {
        let this = Self {
            running: Arc::default(),
            shared,
        };
        let slots = plan(&[], config, &mut inherited)?;
        let running = this.commit(Vec::new(), slots, Duration::ZERO);
        *this.lock() = running;
        Ok(this)
    }

    /// Publishes `next` (compiled from `config`) and brings the listeners in line with
    /// `config`: kept ones serve `next` at once, removed ones stop accepting and drain for up
    /// to `grace`, added ones start accepting. New sockets are bound first; if one fails,
    /// nothing changes and the error says which.
    pub fn swap(
        &self,
        config: &ValidatedConfig,
        next: Snapshot,
        grace: Duration,
    ) -> Result<(), ProxyError> {
        let mut running = self.lock();
        let slots = plan(&running, config, &mut Vec::new())?;
        let current = self.shared.snapshots.load();
        let kept: Vec<usize> = slots
            .iter()
            .filter_map(|s| match s {
                Slot::Kept(i) => Some(*i),
                Slot::New(_) => None,
            })
            .collect();
        for (i, r) in running.iter().enumerate() {
            if !kept.contains(&i) {
                let _ = r.listener.retired.set(Arc::clone(&current));
            }
        }
        self.shared.snapshots.store(next);
        let old = std::mem::take(&mut *running);
        *running = self.commit(old, slots, grace);
        Ok(())
    }

    /// Every listener's name and bound address, in config order.
    pub fn addrs(&self) -> Vec<(String, SocketAddr)> {
        self.lock()
            .iter()
            .map(|r| (r.listener.name.to_string(), r.local))
            .collect()
    }

    /// Every listener's name, bound address and protocol, in config order.
    pub fn describe(&self) -> Vec<(String, SocketAddr, ListenerProtocol)> {
        self.lock()
            .iter()
            .map(|r| (r.listener.name.to_string(), r.local, r.protocol))
            .collect()
    }

    /// Every listener's name with its connection and byte counters, in config order.
    pub fn counters(&self) -> Vec<(String, Arc<ListenerCounters>)> {
        self.lock()
            .iter()
            .map(|r| (r.listener.name.to_string(), Arc::clone(&r.counters)))
            .collect()
    }

    /// A duplicate of every listening socket with its listener's name, to hand to another
    /// process (binary upgrade).
    pub fn sockets(&self) -> std::io::Result<Vec<(String, ListenSocket)>> {
        self.lock()
            .iter()
            .map(|r| Ok((r.listener.name.to_string(), r.socket.try_clone()?)))
            .collect()
    }

    /// Drops the registry's socket duplicates, so that sockets close once their tasks stop
    /// (shutdown: connects are refused rather than queued for nobody).
    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, Vec<Running>> {
        self.running.lock()
    }

    /// Starts the new slots' tasks, stops the listeners of `old` that no slot keeps (their
    /// connections get `grace`), and returns the running list in config order.
    fn commit(&self, old: Vec<Running>, slots: Vec<Slot>, grace: Duration) -> Vec<Running> {
        let mut old: Vec<Option<Running>> = old.into_iter().map(Some).collect();
        let mut next = Vec::with_capacity(slots.len());
        for slot in slots {
            match slot {
                Slot::Kept(i) => {
                    if let Some(r) = old.get_mut(i).and_then(Option::take) {
                        next.push(r);
                    }
                }
                Slot::New(p) => match self.spawn(p) {
                    Ok(r) => next.push(r),
                    Err(e) => tracing::error!(error = %e, "listener could not start"),
                },
            }
        }
        for r in old.into_iter().flatten() {
            tracing::info!(listener = %r.listener.name, address = %r.local, ?grace, "listener removed; draining its connections");
            r.stop.cancel();
            let (hard_stop, proxy_stop) = (r.hard_stop, self.shared.shutdown.clone());
            self.shared.tasks.spawn(async move {
                tokio::select! {
                    () = tokio::time::sleep(grace) => hard_stop.cancel(),
                    // The proxy's own shutdown (and hard stop) takes over.
                    () = proxy_stop.cancelled() => {}
                }
            });
        }
        next
    }

    /// Starts the task of `p`; keeps a duplicate of its socket.
    fn spawn(&self, p: Pending) -> std::io::Result<Running> {
        let shared = &self.shared;
        let ctx = ListenerCtx {
            listener: ListenerRef::new(p.name),
            snapshots: shared.snapshots.clone(),
            shutdown: shared.shutdown.child_token(),
            hard_stop: shared.hard_stop.child_token(),
            tasks: shared.tasks.clone(),
            counters: Arc::default(),
            access_log: shared.access_log.clone(),
            spans: Some(shared.spans.clone()),
        };
        let local = p.local;
        let running = Running {
            listener: ctx.listener.clone(),
            address: p.address,
            protocol: p.protocol,
            local,
            counters: Arc::clone(&ctx.counters),
            socket: p.keep,
            stop: ctx.shutdown.clone(),
            hard_stop: ctx.hard_stop.clone(),
        };
        match p.socket {
            ListenSocket::Udp(s) => {
                let socket = UdpSocket::from_std(s)?;
                shared.tasks.spawn(crate::l4::udp::serve(socket, ctx));
            }
            ListenSocket::Tcp(s) => {
                let socket = TcpListener::from_std(s)?;
                shared.tasks.spawn(crate::server::accept_loop(socket, ctx));
            }
        }
        tracing::info!(listener = %running.listener.name, protocol = ?running.protocol, address = %local, "listening");
        Ok(running)
    }
}

/// Decides, for each listener of `config`, whether a running one stays (same name, protocol
/// and address) or a socket is needed, and finds that socket: the one of a running listener
/// that does not stay and has the configured address (its protocol or name changed; port 0
/// only under the same name), else an inherited one of the same name, else a new bind.
fn plan(
    running: &[Running],
    config: &ValidatedConfig,
    inherited: &mut Vec<(String, ListenSocket)>,
) -> Result<Vec<Slot>, ProxyError> {
    // Listeners balanced in the kernel (XDP, nftables) have no socket here.
    let listeners: Vec<&ListenerConfig> = config
        .config()
        .listeners
        .iter()
        .filter(|l| {
            !matches!(
                l.protocol,
                ListenerProtocol::Xdp | ListenerProtocol::Nftables
            )
        })
        .collect();
    let kept: Vec<Option<usize>> = listeners
        .iter()
        .map(|l| {
            running.iter().position(|r| {
                *r.listener.name == *l.name && r.protocol == l.protocol && r.address == l.address
            })
        })
        .collect();
    let mut taken: Vec<usize> = kept.iter().flatten().copied().collect();
    let mut slots = Vec::new();
    for (&l, kept) in listeners.iter().zip(kept) {
        if let Some(i) = kept {
            slots.push(Slot::Kept(i));
            continue;
        }
        let reusable = running.iter().enumerate().position(|(i, r)| {
            !taken.contains(&i)
                && r.address == l.address
                && r.socket.fits(l.protocol)
                && (*r.listener.name == *l.name || l.address.port() != 0)
        });
        let socket = match reusable {
            Some(i) => {
                taken.push(i);
                running[i]
                    .socket
                    .try_clone()
                    .map_err(|e| bind_error(l, e))?
            }
            None => match take_inherited(inherited, l) {
                Some(s) => s,
                None => bind(l)?,
            },
        };
        // What can fail is done now, while a failure still changes nothing.
        let ready = |socket: &ListenSocket| {
            match socket {
                ListenSocket::Tcp(s) => s.set_nonblocking(true)?,
                ListenSocket::Udp(s) => s.set_nonblocking(true)?,
            }
            Ok((socket.try_clone()?, socket.local_addr()?))
        };
        let (keep, local) = ready(&socket).map_err(|e| bind_error(l, e))?;
        slots.push(Slot::New(Pending {
            name: Arc::from(&*l.name),
            address: l.address,
            protocol: l.protocol,
            socket,
            keep,
            local,
        }));
    }
    Ok(slots)
}

/// The inherited socket for `l`: the one of the same name, if its kind fits and it is bound to
/// the configured address (any port when the config says port 0).
fn take_inherited(
    inherited: &mut Vec<(String, ListenSocket)>,
    l: &ListenerConfig,
) -> Option<ListenSocket> {
    let i = inherited.iter().position(|(name, s)| {
        let Ok(local) = s.local_addr() else {
            return false;
        };
        let address_fits =
            local == l.address || (l.address.port() == 0 && local.ip() == l.address.ip());
        *name == l.name && s.fits(l.protocol) && address_fits
    })?;
    Some(inherited.swap_remove(i).1)
}

/// Binds a new socket for `l`; TCP with what tokio's `TcpListener::bind` sets
/// (`SO_REUSEADDR`, a backlog of 1024). Synchronous: binding never waits on the network, and
/// the reload path holds a lock.
fn bind(l: &ListenerConfig) -> Result<ListenSocket, ProxyError> {
    let err = |e| bind_error(l, e);
    if l.protocol == ListenerProtocol::Udp {
        let s = std::net::UdpSocket::bind(l.address).map_err(err)?;
        return Ok(ListenSocket::Udp(s));
    }
    let domain = socket2::Domain::for_address(l.address);
    let s = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))
        .map_err(err)?;
    s.set_reuse_address(true).map_err(err)?;
    s.bind(&l.address.into()).map_err(err)?;
    s.listen(1024).map_err(err)?;
    Ok(ListenSocket::Tcp(s.into()))
}

fn bind_error(l: &ListenerConfig, source: std::io::Error) -> ProxyError {
    ProxyError::Bind {
        name: l.name.clone(),
        address: l.address,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Proxy;

    fn config(web_address: &str) -> ValidatedConfig {
        let yaml = format!(
            "listeners:
  - name: web
    address: {web_address}
    routes: [ {{ direct_response: {{ status: 200, body: ok }} }} ]
  - name: db
    address: 127.0.0.1:0
    protocol: tcp
    cluster: c
clusters:
  - name: c
    endpoints: [ 127.0.0.1:9 ]
"
        );
        weir_config::load_str(&yaml, "test.yaml").unwrap()
    }

    fn kinds(proxy: &Proxy) -> Vec<(String, bool)> {
        let sockets = proxy.listeners().sockets().unwrap();
        sockets.into_iter().map(|(n, s)| (n, s.is_udp())).collect()
    }

    #[tokio::test]
    async fn inherited_sockets_serve_the_listener_of_their_name_when_kind_and_address_fit() {
        let web = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let web_addr = web.local_addr().unwrap();
        // Offered for a TCP listener: the wrong kind, so `db` binds its own.
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let inherited = vec![
            ("web".to_owned(), ListenSocket::Tcp(web)),
            ("db".to_owned(), ListenSocket::Udp(udp)),
        ];
        // Port 0 in the config takes the inherited socket's port.
        let proxy = Proxy::start_with(&config("127.0.0.1:0"), inherited)
            .await
            .unwrap();
        assert_eq!(proxy.listener_addr("web"), Some(web_addr));
        assert_eq!(
            kinds(&proxy),
            [("web".to_owned(), false), ("db".to_owned(), false)]
        );
        assert!(proxy.shutdown(Duration::from_secs(1)).await);
    }

    #[tokio::test]
    async fn an_inherited_socket_on_another_address_is_not_used() {
        let web = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let elsewhere = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let wanted = elsewhere.local_addr().unwrap();
        drop(elsewhere);
        let inherited = vec![("web".to_owned(), ListenSocket::Tcp(web))];
        match Proxy::start_with(&config(&wanted.to_string()), inherited).await {
            Ok(proxy) => {
                assert_eq!(proxy.listener_addr("web"), Some(wanted));
                assert!(proxy.shutdown(Duration::from_secs(1)).await);
            }
            // Another test took the released port meanwhile: still not the inherited socket.
            Err(e) => assert!(e.to_string().contains("cannot bind"), "{e}"),
        }
    }
}

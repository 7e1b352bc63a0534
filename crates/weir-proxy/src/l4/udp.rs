//! UDP sessions: relaying datagrams between clients and a cluster's endpoints.
//!
//! UDP has no connections, so weir makes one per client, as Envoy's UDP proxy and nginx's
//! `proxy_responses` stream proxy do. The first datagram from a client address (IP and port)
//! opens a **session**: the listener loads the snapshot, picks an endpoint of the listener's
//! cluster (hashing policies see the client address, so `source_ip` or `five_tuple` keys give
//! affinity), and opens a UDP socket of its own *connected* to that endpoint. Later datagrams
//! from that client go out through the same socket, so the endpoint sees one stable 5-tuple per
//! client, can keep per-client state, and its replies come back to a socket that belongs to
//! exactly one client; the kernel filters anything else arriving there. A connected socket also
//! reports the endpoint's ICMP "port unreachable" as `ECONNREFUSED`, which ends the session.
//! A reload affects new sessions only: a session keeps its endpoint until it ends.
//!
//! **Tasks.** One task per listener owns the session table and reads the listener socket; it is
//! the only writer of the table, so the table needs no lock. Per client datagram it does one
//! hash lookup, moves the entry to the most-recently-used end, stamps an atomic and makes one
//! non-blocking `send(2)` on the session socket (a full send buffer drops that datagram rather
//! than stall every other client). One task per session reads its endpoint socket and answers
//! the client with `send_to` on the shared listener socket, stamping the same atomic. Session
//! tasks read into a per-thread 64 KiB buffer, so an idle session costs a socket and a small
//! task, not a datagram buffer. A session task that ends by itself tells the listener task over
//! a channel. Neither loop polls the shutdown token per datagram (waiting on a
//! `CancellationToken` takes the lock of the token shared by the whole proxy): on shutdown the
//! listener task is aborted, and dropping its table aborts every session task.
//!
//! **Bound and LRU.** The table (a linked hash map) holds at most the listener's `max_sessions`.
//! A new client when it is full evicts the least recently used session. The list is ordered by
//! client datagrams, which the listener task sees; eviction compares the few entries at its LRU
//! end by their last datagram in either direction, so a session kept busy by its endpoint alone
//! is not mistaken for an idle one.
//!
//! **Idle expiry.** `last_seen` (microseconds since the listener started) is stamped by both
//! directions. Each session task keeps one timer, armed for `last_seen + idle_timeout` and
//! re-armed only when it fires, so traffic never touches the timer wheel. When it fires and
//! nothing happened since, the task swaps `last_seen` to a `DEAD` mark with a compare-and-swap;
//! the listener's stamp is an atomic `fetch_max`, so a datagram racing the expiry either keeps
//! the session alive or sees `DEAD` and opens a new session. Nothing is ever sent into a session
//! that has stopped reading.
//!
//! **Access log.** With `access_log` configured, each session carries a [`UdpEntry`] in its
//! shared state: both loops add to its counters (relaxed atomics) and the reason the session
//! ended is noted where it is known (the session task's end, an eviction, a refused send). The
//! line is written when the last owner of the shared state lets go, so exactly once per
//! session, whichever way it ends.

use std::cell::RefCell;
use std::collections::hash_map::RandomState;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use hashlink::LinkedHashMap;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use weir_core::{Endpoint, InFlightGuard};

use crate::Cluster;
use crate::access_log::{UdpEnd, UdpEntry};
use crate::hash_key::HashInput;
use crate::server::ListenerCtx;
use crate::snapshot::Listener;

/// Largest UDP payload over IPv6 (65,535 minus the 8-byte UDP header) fits; IPv4's is smaller.
const MAX_DATAGRAM: usize = 65_535;

/// `last_seen` of a session whose task has ended or is ending.
const DEAD: u64 = u64::MAX;

/// Entries at the LRU end that one eviction compares.
const LRU_SAMPLE: usize = 8;

/// Endpoint datagrams a session task relays before letting other tasks run.
const DRAIN_BATCH: usize = 32;

/// Endpoints tried when opening the session socket fails (bind or route errors).
const PICK_ATTEMPTS: u32 = 3;

/// Idle timeouts beyond this are treated as this (keeps deadline arithmetic far from overflow).
const MAX_IDLE: Duration = Duration::from_secs(365 * 24 * 3600);

thread_local! {
    /// Receive buffer of the session tasks running on this thread; borrowed only between awaits.
    static UPSTREAM_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0; MAX_DATAGRAM].into_boxed_slice());
}

/// Session counts of the running UDP listeners, by bound address (unique per live socket,
/// unlike the listener index, which repeats across proxies in one process). Written when a
/// listener starts or stops, read by [`session_count`]; never touched per datagram.
static SESSION_COUNTS: LazyLock<ArcSwap<Vec<CountEntry>>> = LazyLock::new(ArcSwap::default);

/// A running listener's bound address and live session count.
type CountEntry = (SocketAddr, Arc<AtomicUsize>);

/// The listener task: the session table and what it needs to open sessions.
struct Relay {
    ctx: ListenerCtx,
    downstream: Arc<UdpSocket>,
    local: SocketAddr,
    epoch: Instant,
    /// Front = least recently used; back = most recently used.
    sessions: LinkedHashMap<SocketAddr, Session, RandomState>,
    next_id: u64,
    closed: mpsc::UnboundedSender<Closed>,
    count: Arc<AtomicUsize>,
}

/// A session as the listener task holds it. Dropping it ends the session's task.
struct Session {
    id: u64,
    shared: Arc<SessionShared>,
    /// `last_seen` when this entry last moved to the MRU end.
    touched: u64,
    task: AbortHandle,
}

/// What the listener task and a session task share.
struct SessionShared {
    /// Connected to the endpoint.
    upstream: UdpSocket,
    /// Microseconds since the listener's epoch of the last datagram either way, or [`DEAD`].
    last_seen: AtomicU64,
    endpoint: Arc<Endpoint>,
    /// The session's access log record, when the proxy has an access log.
    log: Option<UdpEntry>,
}

/// A session task's own state.
struct SessionTask {
    id: u64,
    client: SocketAddr,
    shared: Arc<SessionShared>,
    downstream: Arc<UdpSocket>,
    epoch: Instant,
    idle: u64,
    closed: mpsc::UnboundedSender<Closed>,
    /// Counts the session as one request in flight, for least-request balancing.
    _in_flight: InFlightGuard,
    /// Counts the session as one open "connection" of the listener (`/metrics`).
    _open: crate::stats::OpenConnection,
}

/// A session task that ended by itself, for the listener task to forget.
#[derive(Debug)]
struct Closed {
    client: SocketAddr,
    id: u64,
}

/// Why a session task ended by itself.
#[derive(Debug)]
enum End {
    Idle,
    Refused,
    Failed(io::Error),
}

/// The outcome of relaying one endpoint datagram.
enum Step {
    Relayed,
    Drained,
    /// The listener socket's send buffer is full; the datagram waits for room.
    Blocked(Vec<u8>),
    End(End),
}

/// Keeps a listener's session count in [`SESSION_COUNTS`] while it runs.
struct Registration {
    count: Arc<AtomicUsize>,
}

/// Relays datagrams for one UDP listener until shutdown. The listener is registered for
/// [`session_count`] as soon as this is called, before the returned future first runs.
pub(crate) fn serve(
    socket: UdpSocket,
    ctx: ListenerCtx,
) -> impl Future<Output = ()> + Send + 'static {
    let local = socket.local_addr();
    let registration = local.as_ref().ok().map(|&local| Registration::new(local));
    async move {
        let (Ok(local), Some(registration)) = (local, registration) else {
            tracing::warn!(
                listener = %ctx.listener.name,
                "udp listener has no local address; not serving"
            );
            return;
        };
        let (closed, closed_rx) = mpsc::unbounded_channel();
        let relay = Relay {
            ctx: ctx.clone(),
            downstream: Arc::new(socket),
            local,
            epoch: Instant::now(),
            sessions: LinkedHashMap::with_hasher(RandomState::new()),
            next_id: 0,
            closed,
            count: Arc::clone(&registration.count),
        };
        let task = ctx.tasks.spawn(relay.run(closed_rx));
        ctx.shutdown.cancelled().await;
        // Dropping the relay's table aborts every session task.
        task.abort();
        drop(registration);
    }
}

/// Sessions the UDP listener bound to `local` holds now; `None` if no such listener runs.
pub(crate) fn session_count(local: SocketAddr) -> Option<usize> {
    SESSION_COUNTS
        .load()
        .iter()
        .find(|(addr, _)| *addr == local)
        .map(|(_, count)| count.load(Ordering::Acquire))
}

// === impl Relay ===

impl Relay {
    async fn run(mut self, mut closed: mpsc::UnboundedReceiver<Closed>) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            tokio::select! {
                biased;
                Some(ended) = closed.recv() => self.reap(&ended),
                received = self.downstream.recv_from(&mut buf) => match received {
                    Ok((n, client)) => self.forward(client, &buf[..n]),
                    Err(e) => recv_failed(&e).await,
                },
            }
        }
    }

    /// Sends one client datagram to its session's endpoint, opening the session if needed.
    fn forward(&mut self, client: SocketAddr, datagram: &[u8]) {
        let now = micros_since(self.epoch);
        if let Some(session) = self.sessions.to_back(&client) {
            if session.shared.last_seen.fetch_max(now, Ordering::AcqRel) != DEAD {
                session.touched = now;
                if !send_upstream(&session.shared, client, datagram) {
                    self.sessions.remove(&client);
                    self.publish();
                }
                return;
            }
            // Its task has ended (idle or refused); the table has not heard yet.
            self.sessions.remove(&client);
        }
        let Some((session, max_sessions)) = self.open(client, now) else {
            self.publish();
            return;
        };
        while self.sessions.len() >= max_sessions {
            self.evict();
        }
        self.sessions.insert(client, session);
        // Published before the datagram leaves, so whoever sees its answer sees the session.
        self.publish();
        if let Some((_, session)) = self.sessions.back()
            && !send_upstream(&session.shared, client, datagram)
        {
            self.sessions.remove(&client);
            self.publish();
        }
    }

    /// Makes the table's size visible to [`session_count`].
    fn publish(&self) {
        self.count.store(self.sessions.len(), Ordering::Release);
    }

    /// Picks an endpoint for `client` from the current snapshot and starts a session to it;
    /// also returns the listener's current session bound.
    fn open(&mut self, client: SocketAddr, now: u64) -> Option<(Session, usize)> {
        let snapshot = self.ctx.listener.snapshot(&self.ctx.snapshots);
        let Some(Listener::Udp(listener)) = self.ctx.listener.get(&snapshot) else {
            tracing::debug!(
                listener = %self.ctx.listener.name,
                "listener is no longer udp; datagram dropped"
            );
            return None;
        };
        let cluster = snapshot.clusters.get(listener.cluster)?;
        let input = HashInput {
            headers: None,
            path: None,
            query: None,
            client,
            local: self.local,
        };
        let (endpoint, upstream) = connect(cluster, &input)?;
        let in_flight = endpoint.state.begin_request();
        let log = self.ctx.access_log.current().map(|log| {
            UdpEntry::begin(
                &log,
                &self.ctx.listener.name,
                &cluster.name,
                endpoint.address,
                client,
            )
        });
        let shared = Arc::new(SessionShared {
            upstream,
            last_seen: AtomicU64::new(now),
            endpoint,
            log,
        });
        let id = self.next_id;
        self.next_id += 1;
        let task = SessionTask {
            id,
            client,
            shared: Arc::clone(&shared),
            downstream: Arc::clone(&self.downstream),
            epoch: self.epoch,
            idle: micros(listener.idle_timeout.min(MAX_IDLE)),
            closed: self.closed.clone(),
            _in_flight: in_flight,
            _open: self.ctx.counters.open(),
        };
        tracing::debug!(%client, endpoint = %shared.endpoint.address, "udp session opened");
        let task = self.ctx.tasks.spawn(task.run()).abort_handle();
        let session = Session {
            id,
            shared,
            touched: now,
            task,
        };
        Some((session, listener.max_sessions.max(1)))
    }

    /// Drops the least recently used session. The list is ordered by client datagrams only, so
    /// the entries at its LRU end are sampled and the one whose last datagram either way is
    /// oldest goes; sampled entries whose endpoint has sent since their client last did move to
    /// the MRU end (approximate LRU over both directions, as Redis samples its LRU).
    fn evict(&mut self) {
        let mut spared = [None; LRU_SAMPLE];
        let mut victim: Option<(SocketAddr, u64)> = None;
        for (slot, (&client, session)) in spared.iter_mut().zip(self.sessions.iter()) {
            let seen = session.shared.last_seen.load(Ordering::Acquire);
            // An ended session goes first.
            let used = if seen == DEAD {
                0
            } else {
                seen.max(session.touched)
            };
            if victim.is_none_or(|(_, oldest)| used < oldest) {
                victim = Some((client, used));
            }
            if seen != DEAD && seen > session.touched {
                *slot = Some((client, seen));
            }
        }
        let Some((victim, _)) = victim else {
            return;
        };
        for (client, seen) in spared.into_iter().flatten() {
            if client != victim
                && let Some(session) = self.sessions.to_back(&client)
            {
                session.touched = seen;
            }
        }
        if let Some(log) = self
            .sessions
            .get(&victim)
            .and_then(|s| s.shared.log.as_ref())
        {
            log.set_end(UdpEnd::Evicted);
        }
        self.sessions.remove(&victim);
        tracing::debug!(client = %victim, "udp session evicted: table full");
    }

    /// Forgets a session whose task has ended, unless the client has a newer one already.
    fn reap(&mut self, ended: &Closed) {
        if self
            .sessions
            .get(&ended.client)
            .is_some_and(|s| s.id == ended.id)
        {
            self.sessions.remove(&ended.client);
            self.publish();
        }
    }
}

// === impl Session ===

impl Drop for Session {
    fn drop(&mut self) {
        // A no-op when the task has already ended.
        self.task.abort();
    }
}

// === impl SessionTask ===

impl SessionTask {
    async fn run(self) {
        let end = self.relay().await;
        self.shared.last_seen.store(DEAD, Ordering::Release);
        if let Some(log) = &self.shared.log {
            log.set_end(match end {
                End::Idle => UdpEnd::Idle,
                End::Refused => UdpEnd::Refused,
                End::Failed(_) => UdpEnd::Failed,
            });
        }
        let endpoint = self.shared.endpoint.address;
        match &end {
            End::Idle => tracing::debug!(client = %self.client, %endpoint, "udp session idle"),
            End::Refused => {
                self.shared.endpoint.state.record_connect_failure();
                tracing::debug!(client = %self.client, %endpoint, "udp session ended: endpoint refused");
            }
            End::Failed(e) => {
                tracing::debug!(client = %self.client, %endpoint, error = %e, "udp session failed");
            }
        }
        // The listener task may be gone (shutdown); then there is nothing to tell.
        let _ = self.closed.send(Closed {
            client: self.client,
            id: self.id,
        });
    }

    /// Relays endpoint datagrams to the client until the session is idle or its socket fails.
    async fn relay(&self) -> End {
        let seen = self.shared.last_seen.load(Ordering::Acquire);
        let idle = tokio::time::sleep_until(self.deadline(seen));
        tokio::pin!(idle);
        loop {
            tokio::select! {
                biased;
                () = &mut idle => {
                    let seen = self.shared.last_seen.load(Ordering::Acquire);
                    let expired = micros_since(self.epoch) >= seen.saturating_add(self.idle);
                    // A failed swap means a datagram just arrived: re-check at once.
                    if expired
                        && self
                            .shared
                            .last_seen
                            .compare_exchange(seen, DEAD, Ordering::AcqRel, Ordering::Acquire)
                            .is_ok()
                    {
                        return End::Idle;
                    }
                    idle.as_mut().reset(self.deadline(seen));
                }
                // ERROR too: an ICMP error on a connected socket is not readable, only an error.
                ready = self.shared.upstream.ready(Interest::READABLE | Interest::ERROR) => {
                    let ready = match ready {
                        Ok(ready) => ready,
                        Err(e) => return End::Failed(e),
                    };
                    if ready.is_error()
                        && let Some(end) = self.take_error()
                    {
                        return end;
                    }
                    if let Some(end) = self.drain().await {
                        return end;
                    }
                }
            }
        }
    }

    /// The socket's pending error (an ICMP error from the endpoint), which ends the session.
    /// Without one, the error readiness was stale (a send consumed the error) and is cleared.
    fn take_error(&self) -> Option<End> {
        let upstream = &self.shared.upstream;
        match upstream.take_error() {
            Ok(Some(e)) if e.kind() == io::ErrorKind::ConnectionRefused => Some(End::Refused),
            Ok(Some(e)) | Err(e) => Some(End::Failed(e)),
            Ok(None) => {
                // `try_io` clears the readiness it was asked about when the closure would block.
                let _ = upstream.try_io(Interest::ERROR, || {
                    Err::<(), _>(io::ErrorKind::WouldBlock.into())
                });
                None
            }
        }
    }

    /// Relays what the endpoint socket holds, up to a batch.
    async fn drain(&self) -> Option<End> {
        for _ in 0..DRAIN_BATCH {
            match UPSTREAM_BUF.with_borrow_mut(|buf| self.relay_one(buf)) {
                Step::Relayed => {}
                Step::Drained => return None,
                Step::Blocked(datagram) => {
                    match self.downstream.send_to(&datagram, self.client).await {
                        Ok(n) => self.relayed(n),
                        Err(e) => {
                            tracing::debug!(client = %self.client, error = %e, "udp reply not sent");
                        }
                    }
                }
                Step::End(end) => return Some(end),
            }
        }
        None
    }

    fn relay_one(&self, buf: &mut [u8]) -> Step {
        let n = match self.shared.upstream.try_recv(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Drained,
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                return Step::End(End::Refused);
            }
            Err(e) => return Step::End(End::Failed(e)),
        };
        self.shared
            .last_seen
            .fetch_max(micros_since(self.epoch), Ordering::AcqRel);
        let datagram = &buf[..n];
        match self.downstream.try_send_to(datagram, self.client) {
            Ok(n) => {
                self.relayed(n);
                Step::Relayed
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Step::Blocked(datagram.to_vec()),
            Err(e) => {
                // The client may be unreachable for a moment; the session lives on until idle.
                tracing::debug!(client = %self.client, error = %e, "udp reply not sent");
                Step::Relayed
            }
        }
    }

    /// Counts a datagram of `len` bytes sent to the client (access log).
    fn relayed(&self, len: usize) {
        if let Some(log) = &self.shared.log {
            log.endpoint_sent(len);
        }
    }

    /// When a session last seen at `seen` becomes idle.
    fn deadline(&self, seen: u64) -> Instant {
        let after = Duration::from_micros(seen.saturating_add(self.idle));
        self.epoch
            .checked_add(after)
            .unwrap_or_else(|| Instant::now() + MAX_IDLE)
    }
}

// === impl Registration ===

impl Registration {
    fn new(local: SocketAddr) -> Self {
        let count = Arc::new(AtomicUsize::new(0));
        SESSION_COUNTS.rcu(|list| {
            let mut next: Vec<_> = list.iter().filter(|(a, _)| *a != local).cloned().collect();
            next.push((local, Arc::clone(&count)));
            next
        });
        Self { count }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        SESSION_COUNTS.rcu(|list| {
            list.iter()
                .filter(|(_, c)| !Arc::ptr_eq(c, &self.count))
                .cloned()
                .collect::<Vec<_>>()
        });
    }
}

/// Sends a client datagram into its session; `false` when the session is over.
fn send_upstream(shared: &SessionShared, client: SocketAddr, datagram: &[u8]) -> bool {
    // tokio's `try_send` fails without a syscall until its reactor has seen the socket
    // writable, which would drop the first datagrams of every new session.
    match socket2::SockRef::from(&shared.upstream).send(datagram) {
        Ok(n) => {
            if let Some(log) = &shared.log {
                log.client_sent(n);
            }
            true
        }
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            // The endpoint's ICMP error surfaced on this send instead of the session's receive.
            shared.endpoint.state.record_connect_failure();
            if let Some(log) = &shared.log {
                log.set_end(UdpEnd::Refused);
            }
            tracing::debug!(%client, endpoint = %shared.endpoint.address, "udp session ended: endpoint refused");
            false
        }
        Err(e) => {
            // A full send buffer (WouldBlock) or a transient route error: drop this datagram,
            // as a router would, rather than stall every other client.
            tracing::debug!(%client, endpoint = %shared.endpoint.address, error = %e, "udp datagram dropped");
            true
        }
    }
}

/// Picks an endpoint and opens a socket connected to it, trying others if that fails locally.
fn connect(cluster: &Cluster, input: &HashInput<'_>) -> Option<(Arc<Endpoint>, UdpSocket)> {
    for attempt in 0..PICK_ATTEMPTS {
        let picked = cluster.pick_connection(input, attempt)?;
        match connect_upstream(picked.endpoint.address) {
            Ok(socket) => return Some((Arc::clone(picked.endpoint), socket)),
            Err(e) => {
                tracing::debug!(endpoint = %picked.endpoint.address, error = %e, "udp session socket not opened");
            }
        }
    }
    None
}

/// A socket on an ephemeral port of `endpoint`'s address family, connected to it. UDP's
/// `connect` only records the peer (no packets), so it is done synchronously.
fn connect_upstream(endpoint: SocketAddr) -> io::Result<UdpSocket> {
    let any: SocketAddr = match endpoint {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = std::net::UdpSocket::bind(any)?;
    socket.connect(endpoint)?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket)
}

/// A receive error on the listener socket. Resets and refusals (ICMP errors some platforms
/// report on unconnected sockets) are ignored; anything else is logged and briefly backed off.
async fn recv_failed(e: &io::Error) {
    match e.kind() {
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionRefused => {}
        _ => {
            tracing::warn!(error = %e, "udp receive failed");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(DEAD - 1)
}

fn micros_since(epoch: Instant) -> u64 {
    micros(epoch.elapsed())
}

#[cfg(test)]
mod tests;

//! [`MockDns`]: an authoritative DNS server on a loopback UDP port whose answers a test sets and
//! changes while it runs (A, AAAA and SRV records with a TTL), for service-discovery tests.
//!
//! A name with no records answers NXDOMAIN; a query of another type for a known name answers
//! an empty NOERROR. Messages are parsed and built with `hickory-proto`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use crate::util::Background;

/// A running mock DNS server. Dropping it stops the server.
#[derive(Debug)]
pub struct MockDns {
    addr: SocketAddr,
    zone: Arc<Zone>,
    _background: Background,
}

#[derive(Debug, Default)]
struct Zone {
    records: Mutex<HashMap<(String, RecordType), Vec<Record>>>,
    queries: AtomicU64,
}

impl MockDns {
    /// Binds `127.0.0.1:0` (UDP) and starts answering.
    pub async fn start() -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind UDP");
        let addr = socket.local_addr().expect("local address");
        let zone = Arc::new(Zone::default());
        let token = CancellationToken::new();
        let serve = serve(socket, Arc::clone(&zone), token.clone());
        Self {
            addr,
            zone,
            _background: Background::spawn(token, serve),
        }
    }

    /// The server's address, for a resolver's `nameservers`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queries answered so far.
    pub fn queries(&self) -> u64 {
        self.zone.queries.load(Ordering::SeqCst)
    }

    /// Answers `name` (e.g. `api.test.`) with these addresses (A and AAAA by family), `ttl`
    /// seconds; an empty list removes the name.
    pub fn set_ips(&self, name: &str, ips: &[IpAddr], ttl: u32) {
        let owner = fqdn(name);
        let (mut a, mut aaaa) = (Vec::new(), Vec::new());
        for ip in ips {
            match ip {
                IpAddr::V4(v4) => a.push(Record::from_rdata(owner.clone(), ttl, RData::A(A(*v4)))),
                IpAddr::V6(v6) => {
                    aaaa.push(Record::from_rdata(
                        owner.clone(),
                        ttl,
                        RData::AAAA(AAAA(*v6)),
                    ));
                }
            }
        }
        let mut records = self.lock();
        records.insert((key(&owner), RecordType::A), a);
        records.insert((key(&owner), RecordType::AAAA), aaaa);
    }

    /// Answers `name` with SRV records `(target, port, weight)`, priority 0, `ttl` seconds.
    pub fn set_srv(&self, name: &str, targets: &[(&str, u16, u16)], ttl: u32) {
        let owner = fqdn(name);
        let srv = targets
            .iter()
            .map(|&(target, port, weight)| {
                Record::from_rdata(
                    owner.clone(),
                    ttl,
                    RData::SRV(SRV::new(0, weight, port, fqdn(target))),
                )
            })
            .collect();
        self.lock().insert((key(&owner), RecordType::SRV), srv);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, RecordType), Vec<Record>>> {
        self.zone
            .records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

fn fqdn(name: &str) -> Name {
    let mut n = Name::from_ascii(name).expect("a valid DNS name");
    n.set_fqdn(true);
    n
}

fn key(name: &Name) -> String {
    name.to_ascii().to_ascii_lowercase()
}

async fn serve(socket: UdpSocket, zone: Arc<Zone>, token: CancellationToken) {
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, peer) = tokio::select! {
            () = token.cancelled() => return,
            r = socket.recv_from(&mut buf) => match r {
                Ok(pair) => pair,
                Err(_) => continue,
            },
        };
        let Ok(query) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        zone.queries.fetch_add(1, Ordering::SeqCst);
        let mut answer = Message::new();
        answer
            .set_id(query.id())
            .set_message_type(MessageType::Response)
            .set_op_code(query.op_code())
            .set_authoritative(true)
            .set_recursion_desired(query.recursion_desired())
            .set_recursion_available(true);
        let mut code = ResponseCode::NoError;
        for q in query.queries() {
            answer.add_query(q.clone());
            let records = zone.records.lock().unwrap_or_else(PoisonError::into_inner);
            let name = key(q.name());
            let known = records
                .iter()
                .any(|((n, _), r)| *n == name && !r.is_empty());
            match records.get(&(name, q.query_type())) {
                Some(found) if !found.is_empty() => {
                    answer.add_answers(found.iter().cloned());
                }
                _ if !known => code = ResponseCode::NXDomain,
                _ => {}
            }
        }
        answer.set_response_code(code);
        if let Ok(bytes) = answer.to_vec() {
            let _ = socket.send_to(&bytes, peer).await;
        }
    }
}

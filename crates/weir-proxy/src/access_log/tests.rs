//! The queue and the writer: lines in field order with the right values, drops counted (never
//! waited for) behind a stalled sink, failures counted.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::*;

/// A sink that hands each line to the test, and can be made to block.
struct TestSink {
    lines: std_mpsc::Sender<Vec<u8>>,
    /// While set, `write_line` waits for a message on `release`.
    stalled: Arc<AtomicBool>,
    release: std_mpsc::Receiver<()>,
    reopens: Arc<AtomicUsize>,
}

impl Sink for TestSink {
    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        if self.stalled.load(Ordering::SeqCst) {
            let _ = self.release.recv();
        }
        let _ = self.lines.send(line.to_vec());
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn reopen(&mut self) -> io::Result<()> {
        self.reopens.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

struct Harness {
    log: Arc<AccessLog>,
    lines: std_mpsc::Receiver<Vec<u8>>,
    stalled: Arc<AtomicBool>,
    release: std_mpsc::Sender<()>,
    reopens: Arc<AtomicUsize>,
}

fn harness(capacity: usize, fields: Vec<AccessLogField>) -> Harness {
    let (lines_tx, lines) = std_mpsc::channel();
    let (release, release_rx) = std_mpsc::channel();
    let stalled = Arc::new(AtomicBool::new(false));
    let reopens = Arc::new(AtomicUsize::new(0));
    let sink = TestSink {
        lines: lines_tx,
        stalled: Arc::clone(&stalled),
        release: release_rx,
        reopens: Arc::clone(&reopens),
    };
    let log = AccessLog::with_sink(Box::new(sink), capacity, fields).unwrap();
    Harness {
        log: Arc::new(log),
        lines,
        stalled,
        release,
        reopens,
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn http_record() -> HttpRecord {
    HttpRecord {
        time: UNIX_EPOCH + Duration::from_secs(1_709_210_096) + Duration::from_micros(5),
        listener: "public".into(),
        route: Some(2),
        cluster: Some(Arc::from("api")),
        endpoint: Some(addr("10.0.0.7:8080")),
        method: Method::POST,
        uri: Uri::from_static("/v1/orders?id=7"),
        host: Some(HeaderValue::from_static("api.example.com")),
        status: 201,
        bytes_in: 17,
        bytes_out: 1234,
        duration: Duration::from_micros(12_345),
        upstream_duration: Some(Duration::from_micros(10_001)),
        attempts: 3,
        trace_id: Some([0xab; 16]),
        client: addr("192.0.2.1:50000"),
    }
}

fn parse(line: &[u8]) -> Value {
    assert_eq!(line.last(), Some(&b'\n'), "one line each");
    serde_json::from_slice(line).unwrap()
}

#[tokio::test]
async fn an_http_line_has_every_field_with_its_value() {
    let h = harness(16, AccessLogField::all());
    h.log.submit(Record::Http(http_record()));
    let line = h.lines.recv_timeout(Duration::from_secs(5)).unwrap();
    let v = parse(&line);
    assert_eq!(v["time"], "2024-02-29T12:34:56.000005Z");
    assert_eq!(v["kind"], "http");
    assert_eq!(v["listener"], "public");
    assert_eq!(v["route"], 2);
    assert_eq!(v["cluster"], "api");
    assert_eq!(v["endpoint"], "10.0.0.7:8080");
    assert_eq!(v["method"], "POST");
    assert_eq!(v["authority"], "api.example.com");
    assert_eq!(v["path"], "/v1/orders?id=7");
    assert_eq!(v["status"], 201);
    assert_eq!(v["bytes_in"], 17);
    assert_eq!(v["bytes_out"], 1234);
    assert_eq!(v["duration_ms"], 12.345);
    assert_eq!(v["upstream_duration_ms"], 10.001);
    assert_eq!(v["retries"], 2);
    assert_eq!(v["trace_id"], "ab".repeat(16));
    assert_eq!(v["client"], "192.0.2.1:50000");
    assert!(v.get("end").is_none(), "an L4 field");
    // In the documented order.
    let text = String::from_utf8(line).unwrap();
    let mut at = 0;
    let names = AccessLogField::all().into_iter().map(AccessLogField::name);
    let l4_only = ["end", "datagrams_in", "datagrams_out"];
    for key in names.filter(|k| !l4_only.contains(k)) {
        let found = text.find(&format!("\"{key}\":")).unwrap();
        assert!(found >= at, "{key} out of order in {text}");
        at = found;
    }
    // The sink saw the line before the writer counted it.
    h.log.flush().await.unwrap();
    assert_eq!(h.log.written(), 1);
}

#[test]
fn unknown_values_are_null_and_fields_follow_the_config() {
    let fields = vec![
        AccessLogField::Status,
        AccessLogField::Endpoint,
        AccessLogField::TraceId,
        AccessLogField::Authority,
    ];
    let h = harness(16, fields);
    let mut r = http_record();
    r.endpoint = None;
    r.trace_id = None;
    // HTTP/2: the authority comes from the URI.
    r.uri = Uri::from_static("http://h2.example.com/x");
    h.log.submit(Record::Http(r));
    let line = h.lines.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(
        String::from_utf8(line).unwrap(),
        "{\"status\":201,\"endpoint\":null,\"trace_id\":null,\"authority\":\"h2.example.com\"}\n"
    );
}

#[test]
fn a_tcp_line_has_the_l4_fields_only() {
    let h = harness(16, AccessLogField::all());
    let record = |end| TcpRecord {
        time: SystemTime::now(),
        listener: "db".into(),
        cluster: Some(Arc::from("pg")),
        endpoint: Some(addr("10.0.0.9:5432")),
        client: addr("192.0.2.2:40000"),
        bytes_in: 100,
        bytes_out: 2000,
        duration: Duration::from_millis(3),
        end,
    };
    h.log.submit(Record::Tcp(record(TcpEnd::Reason("closed"))));
    h.log
        .submit(Record::Tcp(record(TcpEnd::Error(ErrorKind::ConnectFailed))));
    let v = parse(&h.lines.recv_timeout(Duration::from_secs(5)).unwrap());
    assert_eq!(v["kind"], "tcp");
    assert_eq!(v["listener"], "db");
    assert_eq!(v["cluster"], "pg");
    assert_eq!(v["endpoint"], "10.0.0.9:5432");
    assert_eq!(v["client"], "192.0.2.2:40000");
    assert_eq!(v["bytes_in"], 100);
    assert_eq!(v["bytes_out"], 2000);
    assert_eq!(v["duration_ms"], 3.0);
    assert_eq!(v["end"], "closed");
    for other in [
        "route",
        "method",
        "path",
        "status",
        "retries",
        "trace_id",
        "datagrams_in",
    ] {
        assert!(v.get(other).is_none(), "{other}");
    }
    for http_only in ["route", "method", "path", "status", "retries", "trace_id"] {
        assert!(v.get(http_only).is_none(), "{http_only}");
    }
    let v = parse(&h.lines.recv_timeout(Duration::from_secs(5)).unwrap());
    assert_eq!(v["end"], "connect_failed");
}

#[test]
fn a_udp_line_has_datagrams_and_bytes_both_ways() {
    let h = harness(16, AccessLogField::all());
    h.log.submit(Record::Udp(UdpRecord {
        time: SystemTime::now(),
        listener: "dns".into(),
        cluster: Arc::from("resolvers"),
        endpoint: addr("10.0.2.53:53"),
        client: addr("192.0.2.4:53011"),
        bytes_in: 120,
        bytes_out: 912,
        datagrams_in: 3,
        datagrams_out: 2,
        duration: Duration::from_millis(30),
        end: "idle",
    }));
    let v = parse(&h.lines.recv_timeout(Duration::from_secs(5)).unwrap());
    assert_eq!(v["kind"], "udp");
    assert_eq!(v["listener"], "dns");
    assert_eq!(v["cluster"], "resolvers");
    assert_eq!(v["endpoint"], "10.0.2.53:53");
    assert_eq!(v["client"], "192.0.2.4:53011");
    assert_eq!(
        (v["bytes_in"].clone(), v["bytes_out"].clone()),
        (120.into(), 912.into())
    );
    assert_eq!(v["datagrams_in"], 3);
    assert_eq!(v["datagrams_out"], 2);
    assert_eq!(v["duration_ms"], 30.0);
    assert_eq!(v["end"], "idle");
    for http_only in ["route", "method", "path", "status", "retries", "trace_id"] {
        assert!(v.get(http_only).is_none(), "{http_only}");
    }
}

#[tokio::test]
async fn a_stalled_writer_makes_records_drop_never_wait() {
    let h = harness(8, AccessLogField::all());
    h.stalled.store(true, Ordering::SeqCst);
    let started = Instant::now();
    for _ in 0..1000 {
        h.log.submit(Record::Http(http_record()));
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "submitting never waits: {took:?}"
    );
    // The writer holds one record in the stalled sink and 8 wait in the queue.
    let dropped = h.log.dropped();
    assert!((990..=992).contains(&dropped), "dropped {dropped}");

    h.stalled.store(false, Ordering::SeqCst);
    h.release.send(()).unwrap();
    h.log.flush().await.unwrap();
    assert_eq!(
        h.log.written() + h.log.dropped(),
        1000,
        "each one written or counted"
    );
    assert_eq!(h.lines.try_iter().count() as u64, h.log.written());
}

#[tokio::test]
async fn reopen_reaches_the_sink_in_order() {
    let h = harness(16, vec![AccessLogField::Status]);
    h.log.submit(Record::Http(http_record()));
    h.log.reopen().await.unwrap();
    assert_eq!(h.reopens.load(Ordering::SeqCst), 1);
    assert_eq!(h.lines.try_iter().count(), 1, "written before the reopen");
}

#[tokio::test]
async fn entries_are_submitted_when_dropped() {
    let h = harness(16, AccessLogField::all());
    let mut entry = HttpEntry::begin(
        Some(&h.log),
        None,
        "public".into(),
        addr("192.0.2.1:1"),
        &Method::GET,
        &Uri::from_static("/a"),
        &http::HeaderMap::new(),
    );
    entry.set_route(0);
    entry.set_status(http::StatusCode::OK);
    entry.add_bytes_out(10);
    entry.request_body_counter().fetch_add(5, Ordering::Relaxed);
    drop(entry);
    let mut tcp = TcpEntry::begin(&h.log, "db".into(), addr("192.0.2.1:2"));
    tcp.set_copied(1, 2, "idle");
    drop(tcp);
    h.log.flush().await.unwrap();
    let lines: Vec<Value> = h.lines.try_iter().map(|l| parse(&l)).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["status"], 200);
    assert_eq!(lines[0]["bytes_in"], 5);
    assert_eq!(lines[0]["bytes_out"], 10);
    assert_eq!(lines[0]["retries"], 0);
    assert_eq!(lines[1]["end"], "idle");
    assert_eq!(lines[1]["cluster"], Value::Null);
}

//! `weir demo`: a self-contained tour. Three in-process endpoints, weir in front of them with
//! an embedded config, a trickle of traffic to both clusters, the live dashboard URL and the
//! URLs to try with curl.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use weir::Weir;

/// One demo endpoint and how many requests it has served.
struct DemoEndpoint {
    name: String,
    addr: SocketAddr,
    served: Arc<AtomicU64>,
}

/// Runs the demo until Ctrl-C or for `duration` seconds.
pub(crate) async fn demo(port: u16, duration: Option<u64>) -> anyhow::Result<()> {
    let mut endpoints = Vec::new();
    for i in 1..=3 {
        endpoints.push(start_endpoint(format!("endpoint-{i}")).await?);
    }
    let yaml = demo_config(port, &endpoints);
    let config = weir_config::load_str(&yaml, "<demo config>")?;
    let weir = match Weir::start(&config).await {
        Ok(w) => w,
        Err(e) if port != 0 => {
            eprintln!("{e:#}; using free ports instead");
            let config = weir_config::load_str(&demo_config(0, &endpoints), "<demo config>")?;
            Weir::start(&config).await?
        }
        Err(e) => return Err(e),
    };
    let addr = weir
        .proxy()
        .listener_addr("demo")
        .context("demo listener missing")?;
    print_banner(addr, weir.admin_addr(), &endpoints);

    let traffic = tokio::spawn(light_traffic(addr));
    let stop = async {
        match duration {
            Some(secs) => {
                tokio::time::sleep(Duration::from_secs(secs)).await;
                anyhow::Ok(())
            }
            None => {
                crate::run::stop_signals()?.await;
                Ok(())
            }
        }
    };
    let mut report = tokio::time::interval(Duration::from_secs(5));
    report.tick().await;
    tokio::pin!(stop);
    loop {
        tokio::select! {
            r = &mut stop => { r?; break; }
            _ = report.tick() => {
                let counts: Vec<String> = endpoints
                    .iter()
                    .map(|e| format!("{} {}", e.name, e.served.load(Ordering::Relaxed)))
                    .collect();
                println!("requests served so far: {}", counts.join(", "));
            }
        }
    }
    traffic.abort();
    weir.shutdown(Duration::from_secs(5)).await;
    Ok(())
}

fn demo_config(port: u16, endpoints: &[DemoEndpoint]) -> String {
    let list = |eps: &[DemoEndpoint]| {
        eps.iter()
            .map(|e| format!("      - {}\n", e.addr))
            .collect::<String>()
    };
    // The admin API sits on the next port (any free port when the demo's is 0).
    let admin = if port == 0 { 0 } else { port.saturating_add(1) };
    format!(
        r#"admin: {{ address: "127.0.0.1:{admin}" }}
listeners:
  - name: demo
    address: 127.0.0.1:{port}
    routes:
      - match: {{ path: /hello }}
        direct_response: {{ status: 200, body: "hello from weir\n" }}
      - match: {{ path: /old }}
        redirect: {{ path: /, status: 301 }}
      - match: {{ path_prefix: /api }}
        cluster: api
        timeout: 2s
        response_headers: {{ set: {{ x-served-by: weir }} }}
      - match: {{ path_prefix: / }}
        cluster: web
clusters:
  - name: web
    lb_policy: round_robin
    health_check: {{ interval: 2s, http: {{ path: /healthz, body_contains: ok }} }}
    outlier_detection: {{ consecutive_5xx: 3, base_ejection_time: 10s }}
    endpoints:
{web}  - name: api
    lb_policy: least_request
    protocol: http2
    health_check: {{ interval: 2s, http: {{ path: /healthz }} }}
    endpoints:
{api}"#,
        web = list(endpoints),
        api = list(endpoints),
    )
}

fn print_banner(addr: SocketAddr, admin: Option<SocketAddr>, endpoints: &[DemoEndpoint]) {
    println!("weir demo is running. weir listens on http://{addr}");
    if let Some(admin) = admin {
        println!("  dashboard at http://{admin}/ (live requests/s, errors, latency, endpoints)");
        println!("  admin API at http://{admin}/clusters (health, ejections, last check)");
    }
    for e in endpoints {
        println!("  {} at http://{}", e.name, e.addr);
    }
    println!("Try:");
    println!(
        "  curl http://{addr}/              # round robin over the three endpoints (HTTP/1.1 upstream)"
    );
    println!("  curl http://{addr}/api/users     # least request, HTTP/2 to the endpoints");
    println!("  curl --http2-prior-knowledge http://{addr}/   # HTTP/2 from the client");
    println!("  curl -i http://{addr}/old        # a 301 redirect");
    println!("  curl http://{addr}/hello         # a direct response from weir");
    println!("Press Ctrl-C to stop.");
}

async fn start_endpoint(name: String) -> anyhow::Result<DemoEndpoint> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let served = Arc::new(AtomicU64::new(0));
    let endpoint = DemoEndpoint {
        name: name.clone(),
        addr,
        served: Arc::clone(&served),
    };
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (name, served) = (name.clone(), Arc::clone(&served));
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    // Health checks are not traffic: answer them without counting.
                    let body = if req.uri().path() == "/healthz" {
                        "ok\n".to_owned()
                    } else {
                        served.fetch_add(1, Ordering::Relaxed);
                        format!("hello from {name}: {} {}\n", req.method(), req.uri().path())
                    };
                    let mut res = Response::new(Full::new(Bytes::from(body)));
                    if let Ok(v) = name.parse() {
                        res.headers_mut().insert("x-endpoint", v);
                    }
                    async move { Ok::<_, std::convert::Infallible>(res) }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    Ok(endpoint)
}

/// Two requests a second through weir over one keep-alive connection, so the report shows
/// per-request balancing; they alternate between the `web` and the `api` cluster, so the
/// dashboard shows both.
async fn light_traffic(addr: SocketAddr) {
    let mut sent = 0_u64;
    loop {
        let Ok(stream) = tokio::net::TcpStream::connect(addr).await else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        let Ok((mut sender, conn)) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
        else {
            continue;
        };
        tokio::spawn(conn);
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            sent += 1;
            let path = if sent.is_multiple_of(2) {
                "/api/users"
            } else {
                "/"
            };
            let req = Request::get(path)
                .header("host", "demo.local")
                .body(Empty::<Bytes>::new());
            let Ok(req) = req else { return };
            match sender.send_request(req).await {
                Ok(res) => {
                    let _ = res.into_body().collect().await;
                }
                Err(_) => break,
            }
        }
    }
}

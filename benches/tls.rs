//! TLS keep-alive throughput on loopback (feature `rustls`): the crate's client and server
//! against hyper-util's legacy `Client` with hyper-rustls and a plain hyper HTTP/1 server over
//! tokio-rustls, with the same self-signed certificate, in one run. The cross pairs show each
//! side on its own.
//!
//! Each server runs in this process on its own tokio runtime (1 worker thread), the clients on
//! another (1 worker thread). Every (pair, concurrency) runs `rounds` times, interleaved; the
//! median is reported, and the ratio of the crate's pair to the peers' pair.
//!
//! ```text
//! cargo bench --features rustls --bench tls                    # 3 s per run, 3 rounds
//! cargo bench --features rustls --bench tls -- --quick         # 0.3 s per run, 1 round
//! cargo bench --features rustls --bench tls -- --duration 5s --rounds 5
//! ```

#[path = "../examples/support/tls.rs"]
mod tls;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioExecutor;
use keepalive::client::{Client, ClientConfig, TlsConnector};
use keepalive::ServerConfig;
use tls::TestTls;
use tokio::net::TcpListener;

const CONCURRENCIES: [usize; 2] = [1, 32];
const BODY: &[u8] = b"hello, world!";
/// Hard cap on one task's requests in one run (the time bound comes first in practice).
const MAX_REQUESTS_PER_TASK: u64 = 50_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Keepalive,
    Peer,
}

const PAIRS: [(Side, Side); 4] = [
    (Side::Keepalive, Side::Keepalive),
    (Side::Peer, Side::Peer),
    (Side::Keepalive, Side::Peer),
    (Side::Peer, Side::Keepalive),
];

fn pair_name((client, server): (Side, Side)) -> &'static str {
    match (client, server) {
        (Side::Keepalive, Side::Keepalive) => "keepalive client -> keepalive serve",
        (Side::Peer, Side::Peer) => "hyper-util+hyper-rustls -> hyper+tokio-rustls",
        (Side::Keepalive, Side::Peer) => "keepalive client -> hyper+tokio-rustls",
        (Side::Peer, Side::Keepalive) => "hyper-util+hyper-rustls -> keepalive serve",
    }
}

async fn hello(_req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(BODY))))
}

fn start_server(side: Side, tls: &TestTls) -> SocketAddr {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(match side {
            Side::Keepalive => "server-keepalive",
            Side::Peer => "server-peer",
        })
        .enable_all()
        .build()
        .expect("server runtime");
    let listener = runtime
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    let acceptor = tls.acceptor();
    std::thread::spawn(move || {
        runtime.block_on(async move {
            match side {
                Side::Keepalive => {
                    let service = tower::service_fn(hello);
                    let _ = keepalive::serve(listener, service)
                        .handshake(acceptor)
                        .config(ServerConfig::new().max_requests(u32::MAX))
                        .await;
                }
                Side::Peer => {
                    tls::serve_plain_tls(listener, acceptor, || hyper::service::service_fn(hello))
                        .await;
                }
            }
        });
    });
    addr
}

/// Runs `concurrency` tasks, each sending requests until the run's end; returns (ok, errors).
async fn drive<F, Fut>(concurrency: usize, duration: Duration, one: F) -> (u64, u64)
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    let deadline = tokio::time::Instant::now() + duration;
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let one = one.clone();
            tokio::spawn(async move {
                let (mut ok, mut errors) = (0u64, 0u64);
                for _ in 0..MAX_REQUESTS_PER_TASK {
                    if tokio::time::Instant::now() >= deadline {
                        break;
                    }
                    match tokio::time::timeout(Duration::from_secs(10), one()).await {
                        Ok(Ok(())) => ok += 1,
                        Ok(Err(error)) => {
                            errors += 1;
                            if errors <= 3 {
                                eprintln!("request failed: {error}");
                            }
                        }
                        Err(_) => errors += 1,
                    }
                }
                (ok, errors)
            })
        })
        .collect();
    let (mut ok, mut errors) = (0, 0);
    for task in tasks {
        let (o, e) = task.await.expect("load task panicked");
        ok += o;
        errors += e;
    }
    (ok, errors)
}

fn check(body: &[u8]) -> Result<(), String> {
    if body == BODY {
        Ok(())
    } else {
        Err(format!("unexpected body: {body:?}"))
    }
}

async fn run_client(
    side: Side,
    tls: &TestTls,
    uri: http::Uri,
    concurrency: usize,
    duration: Duration,
) -> (u64, u64) {
    match side {
        Side::Keepalive => {
            let config = ClientConfig::new().max_idle_per_host(concurrency);
            let connector = TlsConnector::new(&config, tls.client.clone());
            let client = Client::with_connector(config, connector);
            drive(concurrency, duration, move || {
                let (client, uri) = (client.clone(), uri.clone());
                async move {
                    let request = Request::get(uri).body(Empty::<Bytes>::new()).unwrap();
                    let response = client.request(request).await.map_err(|e| e.to_string())?;
                    let body = response.into_body().collect().await;
                    check(&body.map_err(|e| e.to_string())?.to_bytes())
                }
            })
            .await
        }
        Side::Peer => {
            // hyper-rustls sets ALPN itself (HTTP/1.1 only with `enable_http1`).
            let mut config = (*tls.client).clone();
            config.alpn_protocols.clear();
            let connector = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(config)
                .https_only()
                .enable_http1()
                .build();
            let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(concurrency)
                .build::<_, Empty<Bytes>>(connector);
            drive(concurrency, duration, move || {
                let (client, uri) = (client.clone(), uri.clone());
                async move {
                    let response = client.get(uri).await.map_err(|e| e.to_string())?;
                    let body = response.into_body().collect().await;
                    check(&body.map_err(|e| e.to_string())?.to_bytes())
                }
            })
            .await
        }
    }
}

/// One run: [requests/s, server CPU us/request, client CPU us/request].
type Sample = [f64; 3];

/// CPU time (ns) the threads whose name starts with `prefix` have run, from
/// /proc/self/task/*/schedstat (Linux; 0 elsewhere). CPU per request is steadier than requests/s
/// on a shared machine.
fn thread_cpu_ns(prefix: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|comm| comm.trim_end().starts_with(prefix))
        })
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn main() {
    let mut duration = Duration::from_secs(3);
    let mut rounds = 3usize;
    let mut pairs: Vec<usize> = (0..PAIRS.len()).collect();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => {
                duration = Duration::from_millis(300);
                rounds = 1;
            }
            "--duration" => {
                let value = args.next().unwrap_or_default();
                let secs: f64 = value.trim_end_matches('s').parse().unwrap_or(3.0);
                duration = Duration::from_secs_f64(secs.clamp(0.05, 60.0));
            }
            "--rounds" => {
                rounds = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(3)
                    .clamp(1, 20)
            }
            // Only these pairs (indexes into PAIRS, comma-separated), e.g. for a profile.
            "--pairs" => {
                pairs = args
                    .next()
                    .unwrap_or_default()
                    .split(',')
                    .filter_map(|p| p.trim().parse().ok())
                    .filter(|&p: &usize| p < PAIRS.len())
                    .collect();
            }
            _ => {} // cargo bench passes --bench
        }
    }
    let tls = TestTls::new();
    let keepalive = start_server(Side::Keepalive, &tls);
    let peer = start_server(Side::Peer, &tls);
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("client")
        .enable_all()
        .build()
        .expect("client runtime");
    println!(
        "tls bench: {:?} per run, {rounds} round(s), concurrency {CONCURRENCIES:?}",
        duration
    );
    let mut runs: Vec<((usize, usize), Vec<Sample>)> = Vec::new();
    for round in 0..rounds {
        for (c_index, &concurrency) in CONCURRENCIES.iter().enumerate() {
            // Alternate the order each round so no pair always runs first.
            let mut order = pairs.clone();
            if round % 2 == 1 {
                order.reverse();
            }
            for p in order {
                let (client, server) = PAIRS[p];
                let addr = match server {
                    Side::Keepalive => keepalive,
                    Side::Peer => peer,
                };
                let uri: http::Uri = format!("https://localhost:{}/", addr.port())
                    .parse()
                    .unwrap();
                let server_thread = match server {
                    Side::Keepalive => "server-keepaliv",
                    Side::Peer => "server-peer",
                };
                let server_cpu = thread_cpu_ns(server_thread);
                let client_cpu = thread_cpu_ns("client");
                let (ok, errors) =
                    client_rt.block_on(run_client(client, &tls, uri, concurrency, duration));
                let per_request = |ns: u64| ns as f64 / 1000.0 / ok.max(1) as f64;
                let server_us = per_request(thread_cpu_ns(server_thread) - server_cpu);
                let client_us = per_request(thread_cpu_ns("client") - client_cpu);
                let rps = ok as f64 / duration.as_secs_f64();
                println!(
                    "round {} c={concurrency:<3} {:<48} {rps:>9.0} req/s  CPU/request: server {server_us:.2} us, client {client_us:.2} us  errors {errors}",
                    round + 1,
                    pair_name(PAIRS[p]),
                );
                let sample = [rps, server_us, client_us];
                match runs.iter_mut().find(|(key, _)| *key == (p, c_index)) {
                    Some((_, values)) => values.push(sample),
                    None => runs.push(((p, c_index), vec![sample])),
                }
            }
        }
    }
    println!("\nmedians (requests/s; CPU per request of the server's and the client's thread):");
    for (c_index, &concurrency) in CONCURRENCIES.iter().enumerate() {
        let mut medians = [[0.0f64; 3]; PAIRS.len()];
        for (p, pair) in PAIRS.iter().enumerate() {
            let Some((_, samples)) = runs.iter().find(|(key, _)| *key == (p, c_index)) else {
                continue;
            };
            for (field, median_value) in medians[p].iter_mut().enumerate() {
                let mut values: Vec<f64> = samples.iter().map(|s| s[field]).collect();
                *median_value = median(&mut values);
            }
            let [rps, server_us, client_us] = medians[p];
            println!(
                "c={concurrency:<3} {:<48} {rps:>9.0} req/s  server {server_us:.2} us  client {client_us:.2} us",
                pair_name(*pair)
            );
        }
        let ratio = |a: f64, b: f64| if a > 0.0 && b > 0.0 { a / b } else { f64::NAN };
        println!(
            "c={concurrency:<3} keepalive pair / peer pair: {:.2}x requests/s; CPU per request: keepalive serve / hyper server {:.2}x, keepalive client / hyper-util client {:.2}x",
            ratio(medians[0][0], medians[1][0]),
            ratio(medians[0][1], medians[1][1]),
            ratio(medians[0][2], medians[1][2]),
        );
    }
}

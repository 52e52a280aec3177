//! End-to-end client throughput on loopback: the crate's `Client`, hyper-util's legacy
//! `Client`, reqwest and "dedicated" (one task per `hyper::client::conn::http1` connection,
//! no pool: the limit), all against one plain hyper-util HTTP/1 server answering
//! `hello, world!` (13 bytes).
//!
//! The server runs in this process on its own tokio runtime (1 worker thread), the clients on
//! another (1 worker thread). Each configuration (client x concurrency) runs `rounds` times,
//! interleaved, and the median is reported, with the connections the server accepted and the
//! CPU time the client runtime's threads used per request (`/proc/self/task/*/schedstat`: less
//! sensitive than req/s to a busy machine, since it counts only the client's own work).
//!
//! ```text
//! cargo bench --bench clients                       # 3 s per run, 3 rounds
//! cargo bench --bench clients -- --quick            # 0.3 s per run, 1 round (CI smoke)
//! cargo bench --bench clients -- --duration 5s --rounds 5
//! cargo bench --bench clients -- --clients keepalive,dedicated --concurrency 32
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use keepalive::client::{Client, ClientConfig};
use tokio::net::{TcpListener, TcpStream};

const BODY: &str = "hello, world!";
const CONCURRENCIES: [usize; 2] = [1, 32];
/// Hard cap on the requests of one task in one run (the time bound comes first in practice).
const MAX_REQUESTS_PER_TASK: u64 = 50_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Keepalive,
    HyperUtil,
    Reqwest,
    Dedicated,
}

impl Kind {
    const ALL: [Kind; 4] = [
        Kind::Keepalive,
        Kind::HyperUtil,
        Kind::Reqwest,
        Kind::Dedicated,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Keepalive => "keepalive",
            Kind::HyperUtil => "hyper-util",
            Kind::Reqwest => "reqwest",
            Kind::Dedicated => "dedicated",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct RunResult {
    requests: u64,
    errors: u64,
    elapsed: Duration,
    connections: u64,
    /// CPU time of the client runtime's threads during the run.
    cpu: Duration,
}

impl RunResult {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    fn cpu_per_request_us(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.requests.max(1) as f64
    }
}

struct Args {
    duration: Duration,
    rounds: usize,
    kinds: Vec<Kind>,
    concurrencies: Vec<usize>,
}

fn parse_args() -> Args {
    let mut args = Args {
        duration: Duration::from_secs(3),
        rounds: 3,
        kinds: Kind::ALL.to_vec(),
        concurrencies: CONCURRENCIES.to_vec(),
    };
    let mut quick = false;
    let mut duration = None;
    let mut rounds = None;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--duration" => {
                let value = it.next().expect("--duration needs a value (e.g. 3s)");
                duration = Some(parse_duration(&value).unwrap_or_else(|e| panic!("{e}")));
            }
            "--rounds" => {
                let value = it.next().expect("--rounds needs a value");
                rounds = Some(value.parse().expect("--rounds: a number"));
            }
            "--clients" => {
                let value = it
                    .next()
                    .expect("--clients needs a list (e.g. keepalive,dedicated)");
                args.kinds = value
                    .split(',')
                    .map(|name| {
                        Kind::ALL
                            .into_iter()
                            .find(|k| k.name() == name.trim())
                            .unwrap_or_else(|| panic!("--clients: unknown client {name:?}"))
                    })
                    .collect();
            }
            "--concurrency" => {
                let value = it.next().expect("--concurrency needs a list (e.g. 1,32)");
                args.concurrencies = value
                    .split(',')
                    .map(|n| n.trim().parse().expect("--concurrency: numbers"))
                    .collect();
            }
            // cargo bench passes `--bench`; anything else (filters) is ignored.
            _ => {}
        }
    }
    if quick {
        args.duration = Duration::from_millis(300);
        args.rounds = 1;
    }
    if let Some(d) = duration {
        args.duration = d;
    }
    if let Some(r) = rounds {
        args.rounds = r;
    }
    args.rounds = args.rounds.max(1);
    args
}

/// `250ms`, `3s`, `1.5s` or a bare number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("not a duration: {text:?}"))?;
    if !value.is_finite() || value <= 0.0 || value > 600.0 {
        return Err(format!("duration out of range: {text:?}"));
    }
    Ok(Duration::from_secs_f64(value * scale))
}

/// The server: plain hyper HTTP/1 (hyper-util's `TokioIo`), counting accepted connections.
async fn run_server(listener: TcpListener, accepted: Arc<AtomicU64>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        accepted.fetch_add(1, Ordering::Relaxed);
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(|_req: Request<Incoming>| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                    BODY.as_bytes(),
                ))))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Runs `concurrency` tasks, each looping `one` until `deadline`; returns (ok, errors).
async fn drive<F, Fut>(concurrency: usize, duration: Duration, one: F) -> (u64, u64)
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    let deadline = tokio::time::Instant::now() + duration;
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let one = one.clone();
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut errors) = (0u64, 0u64);
            let work = async {
                for _ in 0..MAX_REQUESTS_PER_TASK {
                    if tokio::time::Instant::now() >= deadline {
                        break;
                    }
                    match one().await {
                        Ok(()) => ok += 1,
                        Err(error) => {
                            errors += 1;
                            if errors <= 3 {
                                eprintln!("request failed: {error}");
                            }
                        }
                    }
                }
            };
            let _ = tokio::time::timeout(duration + Duration::from_secs(10), work).await;
            (ok, errors)
        }));
    }
    let (mut ok, mut errors) = (0, 0);
    for task in tasks {
        let (o, e) = task.await.expect("load task panicked");
        ok += o;
        errors += e;
    }
    (ok, errors)
}

async fn run_keepalive(uri: http::Uri, concurrency: usize, duration: Duration) -> (u64, u64) {
    let client = Client::new(ClientConfig::new().max_idle_per_host(concurrency.max(64)));
    // Each client's call returns a future that owns what it needs (no clone of the client per
    // request); the same pattern for all three clients.
    drive(concurrency, duration, move || {
        let response = Request::get(uri.clone())
            .body(Empty::<Bytes>::new())
            .map(|request| client.request(request));
        async move {
            let response = response
                .map_err(|e| e.to_string())?
                .await
                .map_err(|e| e.to_string())?;
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?;
            check_body(&body.to_bytes())
        }
    })
    .await
}

async fn run_hyper_util(uri: http::Uri, concurrency: usize, duration: Duration) -> (u64, u64) {
    let client: hyper_util::client::legacy::Client<_, Empty<Bytes>> =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http();
    drive(concurrency, duration, move || {
        let response = Request::get(uri.clone())
            .body(Empty::<Bytes>::new())
            .map(|request| client.request(request));
        async move {
            let response = response
                .map_err(|e| e.to_string())?
                .await
                .map_err(|e| e.to_string())?;
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?;
            check_body(&body.to_bytes())
        }
    })
    .await
}

async fn run_reqwest(url: String, concurrency: usize, duration: Duration) -> (u64, u64) {
    let client = reqwest::Client::new();
    drive(concurrency, duration, move || {
        let response = client.get(url.as_str()).send();
        async move {
            let response = response.await.map_err(|e| e.to_string())?;
            let body = response.bytes().await.map_err(|e| e.to_string())?;
            check_body(&body)
        }
    })
    .await
}

/// One task per connection, each owning a `hyper::client::conn::http1` sender: no pool.
async fn run_dedicated(addr: SocketAddr, concurrency: usize, duration: Duration) -> (u64, u64) {
    let deadline = tokio::time::Instant::now() + duration;
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut errors) = (0u64, 0u64);
            let work = async {
                let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
                let _ = stream.set_nodelay(true);
                let (mut sender, conn) =
                    hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
                        .await
                        .map_err(|e| e.to_string())?;
                let conn = tokio::spawn(conn);
                let host = addr.to_string();
                for _ in 0..MAX_REQUESTS_PER_TASK {
                    if tokio::time::Instant::now() >= deadline {
                        break;
                    }
                    let result = async {
                        sender.ready().await.map_err(|e| e.to_string())?;
                        let request = Request::get("/")
                            .header(http::header::HOST, host.as_str())
                            .body(Empty::<Bytes>::new())
                            .map_err(|e| e.to_string())?;
                        let response = sender
                            .send_request(request)
                            .await
                            .map_err(|e| e.to_string())?;
                        let body = response
                            .into_body()
                            .collect()
                            .await
                            .map_err(|e| e.to_string())?;
                        check_body(&body.to_bytes())
                    }
                    .await;
                    match result {
                        Ok(()) => ok += 1,
                        Err(error) => {
                            errors += 1;
                            eprintln!("dedicated request failed: {error}");
                            break;
                        }
                    }
                }
                drop(sender);
                let _ = conn.await;
                Ok::<(), String>(())
            };
            match tokio::time::timeout(duration + Duration::from_secs(10), work).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    errors += 1;
                    eprintln!("dedicated connection failed: {error}");
                }
                Err(_) => errors += 1,
            }
            (ok, errors)
        }));
    }
    let (mut ok, mut errors) = (0, 0);
    for task in tasks {
        let (o, e) = task.await.expect("load task panicked");
        ok += o;
        errors += e;
    }
    (ok, errors)
}

fn check_body(body: &[u8]) -> Result<(), String> {
    if body == BODY.as_bytes() {
        Ok(())
    } else {
        Err(format!("unexpected body: {body:?}"))
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn main() {
    let args = parse_args();

    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("bench-server")
        .enable_all()
        .build()
        .expect("server runtime");
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("bench-client")
        .enable_all()
        .build()
        .expect("client runtime");

    let accepted = Arc::new(AtomicU64::new(0));
    let listener = server_rt
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    server_rt.spawn(run_server(listener, accepted.clone()));
    let uri: http::Uri = format!("http://{addr}/").parse().expect("uri");
    let url = format!("http://{addr}/");

    println!(
        "clients bench: server {addr}, {} per run, {} round(s), concurrency {:?}",
        humantime(args.duration),
        args.rounds,
        args.concurrencies
    );

    // results[(kind, concurrency)] = runs
    let mut results: Vec<((Kind, usize), Vec<RunResult>)> = Vec::new();
    for &c in &args.concurrencies {
        for &kind in &args.kinds {
            results.push(((kind, c), Vec::new()));
        }
    }

    for round in 0..args.rounds {
        for &concurrency in &args.concurrencies {
            for &kind in &args.kinds {
                let before = accepted.load(Ordering::Relaxed);
                let cpu_before = client_cpu();
                let ticks_before = client_ticks();
                let start = Instant::now();
                let (requests, errors) = client_rt.block_on(async {
                    match kind {
                        Kind::Keepalive => {
                            run_keepalive(uri.clone(), concurrency, args.duration).await
                        }
                        Kind::HyperUtil => {
                            run_hyper_util(uri.clone(), concurrency, args.duration).await
                        }
                        Kind::Reqwest => run_reqwest(url.clone(), concurrency, args.duration).await,
                        Kind::Dedicated => run_dedicated(addr, concurrency, args.duration).await,
                    }
                });
                let elapsed = start.elapsed();
                let cpu = client_cpu().saturating_sub(cpu_before);
                let ticks = client_ticks();
                let (user, system) = (ticks.0 - ticks_before.0, ticks.1 - ticks_before.1);
                // Let the dropped clients' connections close before the next run.
                std::thread::sleep(Duration::from_millis(50));
                let connections = accepted.load(Ordering::Relaxed) - before;
                let run = RunResult {
                    requests,
                    errors,
                    elapsed,
                    connections,
                    cpu,
                };
                eprintln!(
                    "round {} {:>10} c={:<2} {:>9.0} req/s  {:>5.2} us cpu/req (user {:.2}, system {:.2})  {} requests, {} errors, {} connections",
                    round + 1,
                    kind.name(),
                    concurrency,
                    run.rate(),
                    run.cpu_per_request_us(),
                    ticks_per_request_us(user, requests),
                    ticks_per_request_us(system, requests),
                    requests,
                    errors,
                    connections
                );
                if let Some((_, runs)) = results.iter_mut().find(|(k, _)| *k == (kind, concurrency))
                {
                    runs.push(run);
                }
            }
        }
    }

    let summary = |kind: Kind, c: usize| -> Option<Summary> {
        let runs = &results.iter().find(|(k, _)| *k == (kind, c))?.1;
        let mut rates: Vec<f64> = runs.iter().map(RunResult::rate).collect();
        let mut cpus: Vec<f64> = runs.iter().map(RunResult::cpu_per_request_us).collect();
        Some(Summary {
            min: rates.iter().copied().fold(f64::INFINITY, f64::min),
            max: rates.iter().copied().fold(0.0, f64::max),
            median: median(&mut rates),
            cpu_us: median(&mut cpus),
            connections: runs.iter().map(|r| r.connections).max().unwrap_or(0),
            errors: runs.iter().map(|r| r.errors).sum(),
        })
    };

    println!();
    println!(
        "| client | concurrency | req/s (median of {}) | min-max | vs dedicated | client cpu us/req (median) | connections opened (max per run) | errors |",
        args.rounds
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for &c in &args.concurrencies {
        let dedicated = summary(Kind::Dedicated, c).map(|s| s.median);
        for &kind in &args.kinds {
            let Some(s) = summary(kind, c) else { continue };
            println!(
                "| {} | {} | {:.0} | {:.0}-{:.0} | {} | {:.2} | {} | {} |",
                kind.name(),
                c,
                s.median,
                s.min,
                s.max,
                ratio(Some(s.median), dedicated),
                s.cpu_us,
                s.connections,
                s.errors
            );
        }
    }
    println!();
    println!(
        "| concurrency | keepalive / hyper-util | keepalive / reqwest | keepalive / dedicated | cpu/req: keepalive / dedicated |"
    );
    println!("|---:|---:|---:|---:|---:|");
    for &c in &args.concurrencies {
        let rate = |kind| summary(kind, c).map(|s| s.median);
        let cpu = |kind| summary(kind, c).map(|s| s.cpu_us);
        let ka = rate(Kind::Keepalive);
        println!(
            "| {} | {} | {} | {} | {} |",
            c,
            ratio(ka, rate(Kind::HyperUtil)),
            ratio(ka, rate(Kind::Reqwest)),
            ratio(ka, rate(Kind::Dedicated)),
            ratio(cpu(Kind::Keepalive), cpu(Kind::Dedicated)),
        );
    }

    // Each round runs the clients back to back, so a ratio taken within a round cancels the
    // machine's slower drifts (other work, frequency): the median of those per-round ratios
    // is the steadier figure on a busy machine.
    let paired = |kind: Kind, other: Kind, c: usize| -> Option<f64> {
        let runs = |k: Kind| results.iter().find(|(key, _)| *key == (k, c)).map(|r| &r.1);
        let (ours, theirs) = (runs(kind)?, runs(other)?);
        let mut ratios: Vec<f64> = ours
            .iter()
            .zip(theirs)
            .map(|(a, b)| a.rate() / b.rate().max(f64::MIN_POSITIVE))
            .collect();
        (!ratios.is_empty()).then(|| median(&mut ratios))
    };
    println!();
    println!(
        "| concurrency | keepalive / hyper-util | keepalive / reqwest | keepalive / dedicated | (median of per-round ratios) |"
    );
    println!("|---:|---:|---:|---:|---|");
    for &c in &args.concurrencies {
        let show = |other| {
            paired(Kind::Keepalive, other, c).map_or_else(|| "-".to_string(), |r| format!("{r:.2}"))
        };
        println!(
            "| {} | {} | {} | {} | |",
            c,
            show(Kind::HyperUtil),
            show(Kind::Reqwest),
            show(Kind::Dedicated),
        );
    }

    drop(client_rt);
    server_rt.shutdown_timeout(Duration::from_secs(1));
}

/// The figures of one configuration over its rounds.
struct Summary {
    median: f64,
    min: f64,
    max: f64,
    cpu_us: f64,
    connections: u64,
    errors: u64,
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "-".to_string(),
    }
}

/// User and system CPU time used so far by the client runtime's threads, in clock ticks
/// (`/proc/self/task/*/stat`, fields 14 and 15; 100 per second on Linux). Coarse (10 ms), so
/// only meaningful over runs of a second or more; zeros where not readable.
fn client_ticks() -> (u64, u64) {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return (0, 0);
    };
    let (mut user, mut system) = (0, 0);
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // The name is in parentheses and may contain spaces: the fields follow the last ')'.
        let Some((name, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        if !name.ends_with("(bench-client") {
            continue;
        }
        // Fields after the name start at field 3 (state): utime and stime are 14 and 15.
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
        user += field(14).unwrap_or(0);
        system += field(15).unwrap_or(0);
    }
    (user, system)
}

/// Clock ticks (1/100 s) as microseconds per request.
fn ticks_per_request_us(ticks: u64, requests: u64) -> f64 {
    ticks as f64 * 1e4 / requests.max(1) as f64
}

/// CPU time used so far by the client runtime's threads (named `bench-client`), from
/// `/proc/self/task/*/schedstat` (nanoseconds on the CPU). Zero where that is not readable.
fn client_cpu() -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    let mut total = 0u64;
    for task in tasks.flatten() {
        let path = task.path();
        let is_client = std::fs::read_to_string(path.join("comm"))
            .is_ok_and(|comm| comm.trim() == "bench-client");
        if !is_client {
            continue;
        }
        if let Some(ns) = std::fs::read_to_string(path.join("schedstat"))
            .ok()
            .and_then(|s| {
                s.split_whitespace()
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
            })
        {
            total += ns;
        }
    }
    Duration::from_nanos(total)
}

fn humantime(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

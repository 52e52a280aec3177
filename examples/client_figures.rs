//! Client-side figures of the crate, each printed as one JSON line (loopback only, every loop
//! bounded in count and time):
//!
//! - `memory`: memory per idle pooled connection as the OS counts it (VmRSS, no trimming, read
//!   `--settle` after a burst of concurrent requests), for the crate's client, hyper-util's
//!   legacy client, reqwest and bare tokio `TcpStream`s (each sends the same one request). The
//!   server is this program re-executed as a child (`serve`), so only the client is in the
//!   measured process. Live heap, glibc's free bytes and the figure after `malloc_trim(0)`
//!   (not what an operator sees) stand beside it, labelled.
//! - `idle-race`: requests spaced by about the server's 1 s idle timeout, 20 workers each with
//!   its own client; counts the requests that fail because the server closed the connection
//!   as they were sent.
//! - `close-wait`: how long the client's socket stays in CLOSE_WAIT after the server closes an
//!   idle pooled connection.
//! - `short`: `Connection: close` requests; where TIME_WAIT lands (client or server).
//!
//! ```text
//! cargo build --release --example client_figures
//! target/release/examples/client_figures memory --connections 2000 --client keepalive
//! target/release/examples/client_figures idle-race --server plain --client hyper-util --spacing tight
//! target/release/examples/client_figures idle-race --server http://127.0.0.1:18080/ --label nginx
//! target/release/examples/client_figures close-wait
//! target/release/examples/client_figures short --connections 2000
//! ```

mod support;

use support::memory::counting::{Backend, ALLOCATOR_ENV};
use support::memory::{
    counting, listen, malloc_counters, malloc_info, pss_bytes, raise_nofile, rss_bytes,
    trimmed_rss_bytes, ChildGuard,
};

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::{BufRead as _, BufReader, Read as _};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use http::header::{HeaderValue, CONNECTION};
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use keepalive::client::{Client, ClientConfig, ClientStatsSnapshot, PoolCloseReason};
use keepalive::tcp_state::{self, Filter, TcpState};
use keepalive::ServerConfig;
use serde_json::{json, Value};
use support::parse_duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

#[derive(Parser, Debug)]
#[command(about = "client-side keep-alive figures (memory, idle race, CLOSE_WAIT, TIME_WAIT)")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// A plain hyper HTTP/1 server answering `/` and `/slow?ms=N` (the child of `memory`).
    /// Prints `listening on ADDR` first; exits when its standard input closes.
    Serve {
        #[arg(long, default_value = "127.0.0.1:0")]
        addr: SocketAddr,
    },
    /// Memory per idle pooled connection as the OS counts it (VmRSS, no trimming).
    Memory {
        /// Connections opened at once and then kept idle.
        #[arg(long, default_value_t = 2000)]
        connections: usize,
        #[arg(long, value_enum, default_value_t = MemClient::Keepalive)]
        client: MemClient,
        /// How long the server holds each request (so that all connections open at once).
        #[arg(long, default_value_t = 300)]
        slow_ms: u64,
        /// Connections of the warm-up round (a throwaway client, before the measure).
        #[arg(long, default_value_t = 16)]
        warmup: usize,
        /// How long after the last answer the memory is read.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        settle: Duration,
        /// Add the live allocations by size class and (glibc) `malloc_info` per arena to the
        /// result.
        #[arg(long)]
        heap_profile: bool,
        /// The allocator of the measured process, under the counting one: `system` (glibc's
        /// malloc), `jemalloc` or `mimalloc` (the program re-executes itself with
        /// `KEEPALIVE_ALLOCATOR` set; the child server keeps the system allocator).
        #[arg(long, value_enum, default_value_t = Backend::System)]
        allocator: Backend,
        /// The crate's client: `ClientConfig::park_after` (default: the crate's, 100 ms).
        #[arg(long, value_parser = parse_duration)]
        park_after: Option<Duration>,
    },
    /// The idle race: requests spaced by about the server's 1 s idle timeout.
    IdleRace {
        /// `keepalive` (the crate's serve, idle timeout 1 s), `plain` (hyper with a 1 s
        /// header read timeout) or an external `http://127.0.0.1:PORT/` URL (e.g. nginx).
        #[arg(long, default_value = "keepalive")]
        server: String,
        /// The name printed for an external server (default: its URL).
        #[arg(long)]
        label: Option<String>,
        #[arg(long, value_enum, default_value_t = RaceClient::Keepalive)]
        client: RaceClient,
        /// Requests in all (split among the workers).
        #[arg(long, default_value_t = 200)]
        requests: usize,
        /// Workers, each with its own client.
        #[arg(long, default_value_t = 20)]
        workers: usize,
        /// `random`: 0.9-1.1 s between a worker's requests; `tight`: 999-1003 ms.
        #[arg(long, value_enum, default_value_t = Spacing::Random)]
        spacing: Spacing,
    },
    /// How long the client's socket stays in CLOSE_WAIT after the server closes an idle one.
    CloseWait {
        #[arg(long, value_enum, default_value_t = RaceClient::Keepalive)]
        client: RaceClient,
        /// Repetitions (a new connection each).
        #[arg(long, default_value_t = 20)]
        repeat: usize,
        /// How long after answering the server closes.
        #[arg(long, default_value = "200ms", value_parser = parse_duration)]
        close_after: Duration,
    },
    /// `Connection: close` requests, one after another: where does TIME_WAIT land?
    Short {
        #[arg(long, default_value_t = 2000)]
        connections: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum MemClient {
    Keepalive,
    HyperUtil,
    Reqwest,
    Bare,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RaceClient {
    Keepalive,
    HyperUtil,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Spacing {
    Random,
    Tight,
}

#[global_allocator]
static ALLOCATOR: counting::Counting = counting::Counting;

fn main() {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Serve { addr } => serve_child(addr),
        Cmd::Memory {
            connections,
            client,
            slow_ms,
            warmup,
            settle,
            heap_profile,
            allocator,
            park_after,
        } => {
            if counting::backend() != allocator {
                reexec_with(allocator);
            }
            let _ = CLIENT_PARK_AFTER.set(park_after);
            memory(connections, client, slow_ms, warmup, settle, heap_profile)
        }
        Cmd::IdleRace {
            server,
            label,
            client,
            requests,
            workers,
            spacing,
        } => idle_race(&server, label, client, requests, workers, spacing),
        Cmd::CloseWait {
            client,
            repeat,
            close_after,
        } => close_wait(client, repeat, close_after),
        Cmd::Short { connections } => short(connections),
    }
}

// ---------------------------------------------------------------------------------------------
// Shared pieces

/// The clients compared, behind one `get`.
enum AnyClient {
    Keepalive(Client),
    HyperUtil(Box<hyper_util::client::legacy::Client<HttpConnector, Empty<Bytes>>>),
    Reqwest(reqwest::Client),
}

impl AnyClient {
    fn name(&self) -> &'static str {
        match self {
            AnyClient::Keepalive(_) => "keepalive",
            AnyClient::HyperUtil(_) => "hyper-util",
            AnyClient::Reqwest(_) => "reqwest",
        }
    }

    /// GET `uri` and read the body to its end; the error text has its whole chain.
    async fn get(&self, uri: &Uri) -> Result<Bytes, String> {
        match self {
            AnyClient::Keepalive(client) => {
                let request = Request::get(uri.clone())
                    .body(Empty::<Bytes>::new())
                    .map_err(|e| error_chain(&e))?;
                let response = client
                    .request(request)
                    .await
                    .map_err(|e| format!("request: {}", error_chain(&e)))?;
                let body = response
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| format!("body: {}", error_chain(&e)))?;
                Ok(body.to_bytes())
            }
            AnyClient::HyperUtil(client) => {
                let request = Request::get(uri.clone())
                    .body(Empty::<Bytes>::new())
                    .map_err(|e| error_chain(&e))?;
                let response = client
                    .request(request)
                    .await
                    .map_err(|e| format!("request: {}", error_chain(&e)))?;
                let body = response
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| format!("body: {}", error_chain(&e)))?;
                Ok(body.to_bytes())
            }
            AnyClient::Reqwest(client) => {
                let response = client
                    .get(uri.to_string())
                    .send()
                    .await
                    .map_err(|e| format!("request: {}", error_chain(&e)))?;
                response
                    .bytes()
                    .await
                    .map_err(|e| format!("body: {}", error_chain(&e)))
            }
        }
    }
}

/// An error and its sources, without repeating text a `Display` already includes.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(source) = next {
        let more = source.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        next = source.source();
    }
    text
}

/// The crate's client counters as JSON (the closes by reason name).
fn stats_json(s: &ClientStatsSnapshot) -> Value {
    let closed: BTreeMap<&str, u64> = PoolCloseReason::ALL
        .iter()
        .map(|&r| (r.name(), s.closed(r)))
        .filter(|&(_, n)| n > 0)
        .collect();
    json!({
        "opened": s.opened,
        "requests": s.requests,
        "reused": s.reused,
        "retries": s.retries,
        "closed": closed,
    })
}

fn sum_stats(all: &[ClientStatsSnapshot]) -> Value {
    let mut closed: BTreeMap<&str, u64> = BTreeMap::new();
    let (mut opened, mut requests, mut reused, mut retries) = (0, 0, 0, 0);
    for s in all {
        opened += s.opened;
        requests += s.requests;
        reused += s.reused;
        retries += s.retries;
        for &r in PoolCloseReason::ALL.iter() {
            if s.closed(r) > 0 {
                *closed.entry(r.name()).or_default() += s.closed(r);
            }
        }
    }
    json!({
        "opened": opened,
        "requests": requests,
        "reused": reused,
        "retries": retries,
        "closed": closed,
    })
}

fn runtime(workers: usize, name: &str) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name(name)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// `/` answers `hello, world!`; `/slow?ms=N` answers after N ms (at most 60 s).
async fn route(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = match req.uri().path() {
        "/slow" => {
            let ms = support::slow_ms(req.uri(), 60_000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Bytes::from(format!("slept {ms} ms"))
        }
        _ => Bytes::from_static(b"hello, world!"),
    };
    Ok(Response::new(Full::new(body)))
}

/// Plain hyper HTTP/1 on `listener`; `configure` sets the builder (timeouts).
async fn serve_plain_http1(
    listener: TcpListener,
    configure: impl Fn(&mut hyper::server::conn::http1::Builder),
) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    configure(&mut builder);
    let builder = Arc::new(builder);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        tokio::spawn(async move {
            let _ = builder
                .serve_connection(TokioIo::new(stream), hyper::service::service_fn(route))
                .await;
        });
    }
}

fn print_json(value: &Value) {
    println!("{value}");
}

// ---------------------------------------------------------------------------------------------
// serve (the child of `memory`)

fn serve_child(addr: SocketAddr) {
    // Exit when the parent goes away (its end of our stdin closes).
    std::thread::spawn(|| {
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        std::process::exit(0);
    });
    let rt = runtime(1, "child-server");
    rt.block_on(async {
        let listener = listen(addr).expect("bind");
        println!(
            "listening on {}",
            listener.local_addr().expect("local addr")
        );
        serve_plain_http1(listener, |_| {}).await;
    });
}

// ---------------------------------------------------------------------------------------------
// memory

/// Runs this program again, in this process, under `allocator` (chosen before the first
/// allocation, so only a new program image can change it).
fn reexec_with(allocator: Backend) -> ! {
    use std::os::unix::process::CommandExt as _;
    let exe = std::env::current_exe().expect("current_exe");
    let error = Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(ALLOCATOR_ENV, allocator.name())
        .exec();
    panic!("re-executing under {}: {error}", allocator.name());
}

fn spawn_child_server() -> (ChildGuard, SocketAddr) {
    let exe = std::env::current_exe().expect("current_exe");
    let mut child = Command::new(exe)
        .args(["serve", "--addr", "127.0.0.1:0"])
        .env_remove(ALLOCATOR_ENV)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the child server");
    let stdout = child.stdout.take().expect("child stdout");
    let guard = ChildGuard(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the child's first line");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line from the child: {line:?}"));
    (guard, addr)
}

/// `memory --park-after`, for the crate's client.
static CLIENT_PARK_AFTER: std::sync::OnceLock<Option<Duration>> = std::sync::OnceLock::new();

fn memory_client(kind: MemClient, connections: usize) -> Option<AnyClient> {
    let mut config = ClientConfig::new();
    if let Some(&Some(after)) = CLIENT_PARK_AFTER.get() {
        config = config.park_after(Some(after));
    }
    match kind {
        MemClient::Keepalive => Some(AnyClient::Keepalive(Client::new(
            config
                .max_idle_per_host(connections)
                .idle_timeout(Duration::from_secs(600)),
        ))),
        MemClient::HyperUtil => Some(AnyClient::HyperUtil(Box::new(
            hyper_util::client::legacy::Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(connections)
                .pool_idle_timeout(Duration::from_secs(600))
                .pool_timer(TokioTimer::new())
                .build_http(),
        ))),
        MemClient::Reqwest => Some(AnyClient::Reqwest(
            reqwest::Client::builder()
                .pool_max_idle_per_host(connections)
                .pool_idle_timeout(Duration::from_secs(600))
                .no_proxy()
                .build()
                .expect("reqwest client"),
        )),
        MemClient::Bare => None,
    }
}

/// `n` concurrent GETs of `uri`; the number that failed (first errors printed).
async fn concurrent_gets(client: &Arc<AnyClient>, uri: &Uri, n: usize) -> usize {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let client = client.clone();
        let uri = uri.clone();
        tasks.spawn(async move {
            tokio::time::timeout(Duration::from_secs(60), client.get(&uri))
                .await
                .unwrap_or_else(|_| Err("timed out".into()))
        });
    }
    let mut failed = 0;
    while let Some(result) = tasks.join_next().await {
        match result {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                failed += 1;
                if failed <= 3 {
                    eprintln!("request failed: {error}");
                }
            }
            Err(error) => {
                failed += 1;
                eprintln!("task failed: {error}");
            }
        }
    }
    failed
}

/// `n` bare tokio `TcpStream`s to `addr`, all connecting at once, each sending `GET {path}`
/// and reading the answer whole (the same burst the pooled clients make), then kept.
async fn bare_streams(addr: SocketAddr, path: &str, n: usize) -> Vec<TcpStream> {
    let request = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\n\r\n");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let request = request.clone();
        tasks.spawn(async move {
            let one = async {
                let mut stream = TcpStream::connect(addr).await?;
                stream.write_all(request.as_bytes()).await?;
                let mut head_and_body = Vec::with_capacity(256);
                let mut buf = [0u8; 256];
                // The child's answers end with their body: `hello, world!` or `slept N ms`.
                while !(head_and_body.ends_with(b"!") || head_and_body.ends_with(b" ms")) {
                    let read = stream.read(&mut buf).await?;
                    if read == 0 {
                        return Err(std::io::ErrorKind::UnexpectedEof.into());
                    }
                    head_and_body.extend_from_slice(&buf[..read]);
                }
                Ok::<_, std::io::Error>(stream)
            };
            tokio::time::timeout(Duration::from_secs(60), one).await
        });
    }
    let mut streams = Vec::with_capacity(n);
    while let Some(result) = tasks.join_next().await {
        match result {
            Ok(Ok(Ok(stream))) => streams.push(stream),
            Ok(Ok(Err(error))) => eprintln!("bare request failed: {error}"),
            Ok(Err(_)) => eprintln!("bare request timed out"),
            Err(error) => eprintln!("task failed: {error}"),
        }
    }
    streams
}

fn memory(
    connections: usize,
    kind: MemClient,
    slow_ms: u64,
    warmup: usize,
    settle: Duration,
    heap_profile: bool,
) {
    let soft = raise_nofile();
    let needed = 2 * connections as u64 + 100;
    match soft {
        Some(soft) if soft >= needed => {}
        Some(soft) => eprintln!(
            "warning: RLIMIT_NOFILE is {soft}, below the {needed} this run needs (2 x connections + 100)"
        ),
        None => eprintln!("warning: RLIMIT_NOFILE unknown"),
    }
    let (_child, addr) = spawn_child_server();
    let slow: Uri = format!("http://{addr}/slow?ms={slow_ms}")
        .parse()
        .expect("uri");
    let warm_uri: Uri = format!("http://{addr}/slow?ms=50").parse().expect("uri");
    // One thread: the figure is the connections', not the worker threads' arenas.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let client_name = match kind {
        MemClient::Keepalive => "keepalive",
        MemClient::HyperUtil => "hyper-util",
        MemClient::Reqwest => "reqwest",
        MemClient::Bare => "bare",
    };
    let result = rt.block_on(async {
        // Warm-up: a throwaway client (or streams) with a few connections, so that the
        // runtime's and the libraries' one-time allocations are not counted.
        match memory_client(kind, warmup) {
            Some(client) => {
                let client = Arc::new(client);
                concurrent_gets(&client, &warm_uri, warmup).await;
                let _ = client.get(&warm_uri).await;
            }
            None => drop(bare_streams(addr, "/slow?ms=50", warmup).await),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;

        let client = memory_client(kind, connections).map(Arc::new);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let rss_before = rss_bytes();
        let pss_before = pss_bytes();
        let heap_before = counting::live();
        let malloc_before = malloc_counters();
        let started = Instant::now();
        let (failed, held) = match &client {
            Some(client) => (concurrent_gets(client, &slow, connections).await, None),
            None => {
                let slow_path = format!("/slow?ms={slow_ms}");
                let streams = bare_streams(addr, &slow_path, connections).await;
                (connections - streams.len(), Some(streams))
            }
        };
        let took = started.elapsed();
        // The pools park their idle connections after 100 ms; read the memory `settle` after
        // the last answer, as an operator would look at an idle process.
        tokio::time::sleep(settle).await;
        let established = tcp_state::count(Filter::new().remote_port(addr.port()))
            .map(|c| c.established())
            .unwrap_or(0);
        let idle = match client.as_deref() {
            Some(AnyClient::Keepalive(c)) => Some(c.idle_connections(&slow)),
            _ => None,
        };
        let rss_after = rss_bytes();
        let pss_after = pss_bytes();
        let heap_after = counting::live();
        let malloc_after = malloc_counters();
        let classes = heap_profile.then(counting::classes);
        let arenas = heap_profile.then(|| {
            malloc_info()
                .iter()
                .map(|a| a.to_json())
                .collect::<Vec<_>>()
        });
        // Last: it changes what any later figure would see.
        let rss_trimmed = trimmed_rss_bytes();
        let opened = match client.as_deref() {
            Some(AnyClient::Keepalive(c)) => Some(c.stats().snapshot().opened),
            _ => None,
        };
        let per =
            |after: u64, before: u64| (after as i64 - before as i64) / connections.max(1) as i64;
        let value = json!({
            "client": client_name,
            "connections": connections,
            "settle_ms": settle.as_millis() as u64,
            "rss_before": rss_before,
            "rss_after": rss_after,
            "bytes_per_conn": per(rss_after, rss_before),
            "pss_per_conn": per(pss_after, pss_before),
            "heap_before": heap_before,
            "heap_after": heap_after,
            "heap_per_conn": per(heap_after as u64, heap_before as u64),
            "allocator": counting::backend().name(),
            "allocator_free_per_conn": per(malloc_after.free, malloc_before.free),
            "allocator_arena_per_conn": per(
                malloc_after.arena + malloc_after.mmap,
                malloc_before.arena + malloc_before.mmap
            ),
            "rss_after_trim": rss_trimmed.map(|(rss, _)| rss),
            "bytes_per_conn_after_trim": rss_trimmed.map(|(rss, _)| per(rss, rss_before)),
            "malloc_trim_us": rss_trimmed.map(|(_, took)| took.as_micros() as u64),
            "heap_classes": classes,
            "arenas": arenas,
            "established_client_sockets": established,
            "idle_in_pool": idle,
            "opened": opened,
            "failed": failed,
            "open_ms": took.as_millis() as u64,
        });
        drop(held);
        drop(client);
        value
    });
    print_json(&result);
}

// ---------------------------------------------------------------------------------------------
// idle-race

/// A tiny xorshift64 generator (no rand dependency).
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        XorShift(seed.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform in `lo..=hi` microseconds.
    fn micros(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_micros(lo + self.next() % (hi - lo + 1))
    }
}

fn race_client(kind: RaceClient) -> AnyClient {
    match kind {
        RaceClient::Keepalive => AnyClient::Keepalive(Client::new(ClientConfig::new())),
        RaceClient::HyperUtil => AnyClient::HyperUtil(Box::new(
            hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http(),
        )),
    }
}

fn idle_race(
    server: &str,
    label: Option<String>,
    kind: RaceClient,
    requests: usize,
    workers: usize,
    spacing: Spacing,
) {
    let workers = workers.clamp(1, 1000);
    let per_worker = requests.div_ceil(workers).min(1000);
    let server_rt = runtime(1, "race-server");
    let mut server_stats = None;
    let (uri, server_name): (Uri, String) = match server {
        "keepalive" => {
            let listener = server_rt
                .block_on(async { listen("127.0.0.1:0".parse().expect("addr")) })
                .expect("bind");
            let addr = listener.local_addr().expect("addr");
            let serve = keepalive::serve(listener, tower::service_fn(route))
                .config(ServerConfig::new().idle_timeout(Duration::from_secs(1)));
            server_stats = Some(serve.stats());
            server_rt.spawn(async move {
                let _ = serve.await;
            });
            (
                format!("http://{addr}/").parse().expect("uri"),
                "keepalive".into(),
            )
        }
        "plain" => {
            let listener = server_rt
                .block_on(async { listen("127.0.0.1:0".parse().expect("addr")) })
                .expect("bind");
            let addr = listener.local_addr().expect("addr");
            server_rt.spawn(serve_plain_http1(listener, |b| {
                b.timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(1));
            }));
            (
                format!("http://{addr}/").parse().expect("uri"),
                "plain".into(),
            )
        }
        url => {
            let uri: Uri = url.parse().unwrap_or_else(|_| {
                eprintln!("--server: keepalive, plain or an http:// URL, not {url:?}");
                std::process::exit(2)
            });
            let loopback = uri
                .host()
                .and_then(|h| h.parse::<std::net::IpAddr>().ok())
                .is_some_and(|ip| ip.is_loopback());
            if uri.scheme_str() != Some("http") || !loopback {
                eprintln!("--server URL must be http:// on a loopback address: {url}");
                std::process::exit(2);
            }
            (uri, label.unwrap_or_else(|| url.to_string()))
        }
    };

    let client_rt = runtime(2, "race-client");
    let (range_lo, range_hi) = match spacing {
        Spacing::Random => (900_000, 1_100_000),
        Spacing::Tight => (999_000, 1_003_000),
    };
    let started = Instant::now();
    let (sent, errors, stats) = client_rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for worker in 0..workers {
            let uri = uri.clone();
            let client = race_client(kind);
            tasks.spawn(async move {
                let mut rng = XorShift::new(worker as u64);
                let mut errors: Vec<String> = Vec::new();
                let mut sent = 0usize;
                for i in 0..per_worker {
                    if i > 0 {
                        tokio::time::sleep(rng.micros(range_lo, range_hi)).await;
                    }
                    sent += 1;
                    match tokio::time::timeout(Duration::from_secs(5), client.get(&uri)).await {
                        Ok(Ok(body)) if body.as_ref() == b"hello, world!" => {}
                        Ok(Ok(body)) => {
                            errors.push(format!("unexpected body of {} bytes", body.len()))
                        }
                        Ok(Err(error)) => errors.push(error),
                        Err(_) => errors.push("timed out (5 s)".into()),
                    }
                }
                let stats = match &client {
                    AnyClient::Keepalive(c) => Some(c.stats().snapshot()),
                    _ => None,
                };
                (sent, errors, stats)
            });
        }
        let limit = Duration::from_millis(per_worker as u64 * 1_200 + 10_000);
        let mut sent = 0;
        let mut errors: BTreeMap<String, usize> = BTreeMap::new();
        let mut stats = Vec::new();
        let deadline = tokio::time::Instant::now() + limit;
        while let Ok(Some(joined)) = tokio::time::timeout_at(deadline, tasks.join_next()).await {
            match joined {
                Ok((s, errs, st)) => {
                    sent += s;
                    for e in errs {
                        *errors.entry(e).or_default() += 1;
                    }
                    stats.extend(st);
                }
                Err(error) => *errors.entry(format!("worker failed: {error}")).or_default() += 1,
            }
        }
        if !tasks.is_empty() {
            *errors
                .entry("worker still running at the time limit".into())
                .or_default() += tasks.len();
            tasks.abort_all();
        }
        (sent, errors, stats)
    });
    let failures: usize = errors.values().sum();
    let mut value = json!({
        "server": server_name,
        "client": race_client_name(kind),
        "spacing": match spacing { Spacing::Random => "random", Spacing::Tight => "tight" },
        "requests": sent,
        "failures": failures,
        "errors": errors,
        "seconds": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    });
    if kind == RaceClient::Keepalive {
        value["client_stats"] = sum_stats(&stats);
    }
    if let Some(s) = server_stats {
        value["server_stats"] =
            serde_json::from_str(&s.snapshot().to_json()).unwrap_or(Value::Null);
    }
    print_json(&value);
    drop(client_rt);
    server_rt.shutdown_timeout(Duration::from_secs(1));
}

fn race_client_name(kind: RaceClient) -> &'static str {
    match kind {
        RaceClient::Keepalive => "keepalive",
        RaceClient::HyperUtil => "hyper-util",
    }
}

// ---------------------------------------------------------------------------------------------
// close-wait

/// A raw server: answers one request per connection with a keep-alive response, waits
/// `close_after`, then sends the instant just before it drops the stream.
async fn closing_server(
    listener: TcpListener,
    close_after: Duration,
    closed: tokio::sync::mpsc::UnboundedSender<Instant>,
) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let closed = closed.clone();
        tokio::spawn(async move {
            let mut buf = Vec::with_capacity(1024);
            let mut chunk = [0u8; 1024];
            let read_head = async {
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 64 * 1024 {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return false,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                true
            };
            if !matches!(
                tokio::time::timeout(Duration::from_secs(5), read_head).await,
                Ok(true)
            ) {
                return;
            }
            let response =
                b"HTTP/1.1 200 OK\r\ncontent-length: 13\r\ncontent-type: text/plain\r\n\r\nhello, world!";
            if stream.write_all(response).await.is_err() {
                return;
            }
            tokio::time::sleep(close_after).await;
            let _ = closed.send(Instant::now());
            drop(stream);
        });
    }
}

/// The inode of the IPv4 socket `local` -> port `remote_port`, from /proc/net/tcp (the
/// crate's parser does not keep the inode column).
fn socket_inode(local: SocketAddr, remote_port: u16) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let want_local = format!(":{:04X}", local.port());
    let want_remote = format!(":{remote_port:04X}");
    text.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let ok = fields.len() > 9
            && fields[1].ends_with(&want_local)
            && fields[2].ends_with(&want_remote);
        if ok {
            fields[9].parse().ok()
        } else {
            None
        }
    })
}

/// This process's descriptor of the socket with `inode`.
fn socket_fd(inode: u64) -> Option<std::path::PathBuf> {
    let want = format!("socket:[{inode}]");
    std::fs::read_dir("/proc/self/fd")
        .ok()?
        .flatten()
        .map(|entry| entry.path())
        .find(|path| std::fs::read_link(path).is_ok_and(|link| link.as_os_str() == want.as_str()))
}

/// One close-wait sample, in ms from the server's close.
struct CloseSample {
    /// The end of the first /proc/net/tcp read that no longer showed the client's socket in
    /// ESTABLISHED or CLOSE_WAIT (an upper bound).
    gone_ms: f64,
    /// The start of the last read that still showed it (a lower bound; 0 if none did, the
    /// socket was gone at the first read).
    last_seen_ms: f64,
    /// When the client's descriptor of the socket closed (polled every 100 us).
    fd_closed_ms: Option<f64>,
    /// How long the reads of /proc/net/tcp took (median).
    read_ms: f64,
}

fn close_wait(kind: RaceClient, repeat: usize, close_after: Duration) {
    let repeat = repeat.clamp(1, 1000);
    let server_rt = runtime(1, "cw-server");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let listener = server_rt
        .block_on(async { listen("127.0.0.1:0".parse().expect("addr")) })
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    server_rt.spawn(closing_server(listener, close_after, tx));
    let uri: Uri = format!("http://{addr}/").parse().expect("uri");
    let table_size = tcp_state::sockets().map(|s| s.len()).unwrap_or(0);
    if table_size > 1000 {
        eprintln!(
            "warning: /proc/net/tcp lists {table_size} sockets: each read is slow, which coarsens \
             the /proc figures (TIME_WAIT entries expire after 60 s)"
        );
    }
    let client_rt = runtime(1, "cw-client");
    let client = race_client(kind);
    let mut samples: Vec<CloseSample> = Vec::new();
    let mut problems: BTreeMap<String, usize> = BTreeMap::new();
    client_rt.block_on(async {
        for _ in 0..repeat {
            match tokio::time::timeout(Duration::from_secs(5), client.get(&uri)).await {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => {
                    *problems.entry(error).or_default() += 1;
                    continue;
                }
                Err(_) => {
                    *problems.entry("request timed out".into()).or_default() += 1;
                    continue;
                }
            }
            // The client's socket: remote port = the server's, ESTABLISHED (only one is).
            let mine = tcp_state::sockets().ok().and_then(|all| {
                let ours: Vec<_> = all
                    .into_iter()
                    .filter(|s| {
                        s.remote.port() == addr.port()
                            && s.local.port() != addr.port()
                            && s.state == TcpState::Established
                    })
                    .collect();
                (ours.len() == 1).then(|| ours[0].local)
            });
            let Some(local) = mine else {
                *problems
                    .entry("client socket not found (or more than one)".into())
                    .or_default() += 1;
                continue;
            };
            let fd = socket_inode(local, addr.port()).and_then(|inode| {
                let path = socket_fd(inode)?;
                let link = std::fs::read_link(&path).ok()?;
                Some((path, link))
            });
            let closed_at =
                match tokio::time::timeout(close_after + Duration::from_secs(5), rx.recv()).await {
                    Ok(Some(at)) => at,
                    _ => {
                        *problems
                            .entry("server close not reported".into())
                            .or_default() += 1;
                        continue;
                    }
                };
            let ms = move |at: Instant| at.saturating_duration_since(closed_at).as_secs_f64() * 1e3;
            // The descriptor, polled every 100 us (at most 3 s).
            let fd_watch = tokio::task::spawn_blocking(move || {
                let (path, link) = fd?;
                let limit = Instant::now() + Duration::from_secs(3);
                while Instant::now() < limit {
                    if std::fs::read_link(&path).map_or(true, |now| now != link) {
                        return Some(Instant::now());
                    }
                    std::thread::sleep(Duration::from_micros(100));
                }
                None
            });
            // /proc/net/tcp, polled every 1 ms (at most 3 s), until the socket has left
            // ESTABLISHED and CLOSE_WAIT.
            let table_watch = tokio::task::spawn_blocking(move || {
                let limit = Instant::now() + Duration::from_secs(3);
                let mut last_seen = None;
                let mut reads = Vec::new();
                while Instant::now() < limit {
                    let start = Instant::now();
                    let lingering = tcp_state::sockets().is_ok_and(|all| {
                        all.iter().any(|s| {
                            s.local == local
                                && s.remote.port() == addr.port()
                                && matches!(s.state, TcpState::Established | TcpState::CloseWait)
                        })
                    });
                    let end = Instant::now();
                    reads.push(end - start);
                    if !lingering {
                        reads.sort();
                        return Some((last_seen, end, reads[reads.len() / 2]));
                    }
                    last_seen = Some(start);
                    std::thread::sleep(Duration::from_millis(1));
                }
                None
            });
            let fd_closed = fd_watch.await.ok().flatten();
            match table_watch.await.ok().flatten() {
                Some((last_seen, gone, read)) => samples.push(CloseSample {
                    gone_ms: ms(gone),
                    last_seen_ms: last_seen.map_or(0.0, ms),
                    fd_closed_ms: fd_closed.map(ms),
                    read_ms: read.as_secs_f64() * 1e3,
                }),
                None => {
                    *problems
                        .entry("still ESTABLISHED/CLOSE_WAIT after 3 s".into())
                        .or_default() += 1
                }
            }
        }
    });
    let round = |v: f64| (v * 100.0).round() / 100.0;
    let stats = |mut values: Vec<f64>| -> (Option<f64>, Option<f64>) {
        values.sort_by(|a, b| a.total_cmp(b));
        (
            values.get(values.len() / 2).copied().map(round),
            values.last().copied().map(round),
        )
    };
    let (median, max) = stats(samples.iter().map(|s| s.gone_ms).collect());
    let (seen_median, seen_max) = stats(samples.iter().map(|s| s.last_seen_ms).collect());
    let (fd_median, fd_max) = stats(samples.iter().filter_map(|s| s.fd_closed_ms).collect());
    let (read_median, read_max) = stats(samples.iter().map(|s| s.read_ms).collect());
    let mut value = json!({
        "client": client.name(),
        "repeat": repeat,
        "measured": samples.len(),
        "median_ms": median,
        "max_ms": max,
        "gone_at_first_read": samples.iter().filter(|s| s.last_seen_ms == 0.0).count(),
        "last_seen_median_ms": seen_median,
        "last_seen_max_ms": seen_max,
        "fd_closed_median_ms": fd_median,
        "fd_closed_max_ms": fd_max,
        "fd_measured": samples.iter().filter(|s| s.fd_closed_ms.is_some()).count(),
        "proc_read_median_ms": read_median,
        "proc_read_max_ms": read_max,
        "proc_sockets_at_start": table_size,
        "samples_ms": samples.iter().map(|s| round(s.gone_ms)).collect::<Vec<_>>(),
        "problems": problems,
    });
    if let AnyClient::Keepalive(c) = &client {
        value["client_stats"] = stats_json(&c.stats().snapshot());
    }
    print_json(&value);
    drop(client);
    drop(client_rt);
    server_rt.shutdown_timeout(Duration::from_secs(1));
}

// ---------------------------------------------------------------------------------------------
// short

fn short(connections: usize) {
    let connections = connections.clamp(1, 10_000);
    let server_rt = runtime(1, "short-server");
    let listener = server_rt
        .block_on(async { listen("127.0.0.1:0".parse().expect("addr")) })
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let serve = keepalive::serve(listener, tower::service_fn(route));
    let server_stats = serve.stats();
    server_rt.spawn(async move {
        let _ = serve.await;
    });
    let uri: Uri = format!("http://{addr}/").parse().expect("uri");
    let client_rt = runtime(1, "short-client");
    let client = Client::new(ClientConfig::new());
    let started = Instant::now();
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    client_rt.block_on(async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        for _ in 0..connections {
            if tokio::time::Instant::now() >= deadline {
                *errors
                    .entry("time limit (120 s) reached".into())
                    .or_default() += 1;
                break;
            }
            let request = Request::get(uri.clone())
                .header(CONNECTION, HeaderValue::from_static("close"))
                .body(Empty::<Bytes>::new())
                .expect("request");
            let result = async {
                let response = client
                    .request(request)
                    .await
                    .map_err(|e| format!("request: {}", error_chain(&e)))?;
                response
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| format!("body: {}", error_chain(&e)))
            };
            match tokio::time::timeout(Duration::from_secs(5), result).await {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => *errors.entry(error).or_default() += 1,
                Err(_) => *errors.entry("timed out (5 s)".into()).or_default() += 1,
            }
        }
        // The server waits up to its linger (1 s) for the client's FIN; let every close end.
        tokio::time::sleep(Duration::from_millis(1500)).await;
    });
    let took = started.elapsed();
    let server_side = tcp_state::count(Filter::new().local_port(addr.port())).unwrap_or_default();
    let client_side = tcp_state::count(Filter::new().remote_port(addr.port())).unwrap_or_default();
    let pct = |n: usize| (n as f64 * 10_000.0 / connections as f64).round() / 100.0;
    let value = json!({
        "connections": connections,
        "server_time_wait": server_side.time_wait(),
        "server_time_wait_pct": pct(server_side.time_wait()),
        "client_time_wait": client_side.time_wait(),
        "client_time_wait_pct": pct(client_side.time_wait()),
        "server_sockets": server_side.to_string(),
        "client_sockets": client_side.to_string(),
        "errors": errors,
        "seconds": (took.as_secs_f64() * 10.0).round() / 10.0,
        "client_stats": stats_json(&client.stats().snapshot()),
        "server_stats": serde_json::from_str::<Value>(&server_stats.snapshot().to_json()).unwrap_or(Value::Null),
    });
    print_json(&value);
    drop(client);
    drop(client_rt);
    server_rt.shutdown_timeout(Duration::from_secs(1));
}

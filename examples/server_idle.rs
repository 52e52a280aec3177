//! What idle keep-alive connections cost a server, as the operating system counts it, and what
//! holding them costs its busy connections. Loopback only; every loop is bounded in count and
//! time.
//!
//! For each server (a bare tokio `TcpStream` per connection, the crate's `serve`, plain hyper
//! through hyper-util as `examples/server.rs --plain` runs it, and `axum::serve`), each arrival
//! pattern and each count N, this program:
//!
//! 1. starts the server as a child process (`serve`), with a counting allocator, its descriptor
//!    limit raised to the hard one;
//! 2. runs a short warm-up load from this process, then (unless `--load-secs 0`) the "none held"
//!    load: requests/s and latency percentiles over `--load-connections` connections;
//! 3. takes the server's baseline: VmRSS, PSS, live heap, glibc's counters (no trimming);
//! 4. starts another child (`hold`) that opens N connections from source addresses spread over
//!    127.0.0.0/8 (5,000 per address, a fresh /16 for each run so that no run meets the last
//!    one's TIME_WAIT ports), then
//!    - `burst`: connects all N first, then sends one `GET /` on every connection at once,
//!      then reads all the answers;
//!    - `trickle`: connects, sends one `GET /` and reads its answer, one connection after the
//!      other;
//!
//!    and then stays silent;
//! 5. measures the server again `--after` (default 5 s and 15 s) after the last answer, without
//!    trimming: (after - baseline) / N is the cost of one idle connection as the OS counts it.
//!    Last, the figure after `malloc_trim(0)`, labelled so (no server calls it);
//! 6. runs the same load with the N connections held ("held" figures).
//!
//! ```text
//! cargo build --release --example server_idle
//! target/release/examples/server_idle --connections 2000,10000 --servers bare,keepalive,plain --load-secs 0
//! target/release/examples/server_idle --connections 2000,max --patterns burst
//! ```
//!
//! `max` is min(20,000, the hard descriptor limit - 100). `--heap-profile` prints the live
//! allocations by size class and glibc's per-arena statistics (server's stderr) after the last
//! measure.

mod support;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use hdrhistogram::Histogram;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use keepalive::tcp_state::{self, Filter};
use keepalive::{ServerConfig, ServerStats};
use serde_json::{json, Value};
use support::memory::counting::{Backend, ALLOCATOR_ENV};
use support::memory::{
    counting, listen, malloc_counters, malloc_info, print_malloc_stats, pss_bytes, raise_nofile,
    rss_bytes, tcp_sockstat, trimmed_rss_bytes, ChildGuard,
};
use support::parse_duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

#[global_allocator]
static ALLOCATOR: counting::Counting = counting::Counting;

#[derive(Parser)]
#[command(about = "Memory per idle keep-alive connection on the server, and its cost to load")]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Idle connection counts, comma-separated; `max` = min(20000, hard descriptor limit - 100).
    #[arg(long, default_value = "2000,max", value_delimiter = ',')]
    connections: Vec<String>,
    /// Servers to measure, comma-separated.
    #[arg(
        long,
        value_enum,
        default_value = "bare,keepalive,plain,axum",
        value_delimiter = ','
    )]
    servers: Vec<Kind>,
    /// Connections of the keep-alive load.
    #[arg(long, default_value_t = 32)]
    load_connections: usize,
    /// Seconds of each load run (0: no load figures).
    #[arg(long, default_value_t = 2.0)]
    load_secs: f64,
    /// Run each server in a spawned task (accept loop on a worker thread) instead of on the
    /// main thread.
    #[arg(long)]
    spawned: bool,
    /// Load runs per phase (none held, N held); each phase reports the run with the median
    /// requests/s.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// How the N connections arrive, comma-separated: `burst` (all connected, then every
    /// request at once) or `trickle` (one connection after the other, each answered before the
    /// next connects).
    #[arg(
        long,
        value_enum,
        default_value = "burst,trickle",
        value_delimiter = ','
    )]
    patterns: Vec<Pattern>,
    /// When to read the server's memory after the last answer, comma-separated; the first is
    /// the headline (`rss_per_connection`).
    #[arg(long, default_value = "5s,15s", value_delimiter = ',', value_parser = parse_duration)]
    after: Vec<Duration>,
    /// After the last measure, print the server's live allocations by size class and (glibc)
    /// `malloc_info` per arena (as JSON, in the result), and the allocator's own statistics
    /// (on the server's stderr).
    #[arg(long)]
    heap_profile: bool,
    /// The servers' allocators, comma-separated, each under the counting allocator (the
    /// server child gets `KEEPALIVE_ALLOCATOR`): `system` (glibc's malloc), `jemalloc`,
    /// `mimalloc`. Every server and count is measured with each.
    #[arg(long, value_enum, default_value = "system", value_delimiter = ',')]
    allocator: Vec<Backend>,
    /// A command the server child is run under, split at spaces (e.g. `heaptrack -o
    /// /tmp/ht`): the server then ends by itself (its standard input closed) while the
    /// connections are still held, so a heap profiler's "leaked" list is what they hold.
    #[arg(long)]
    server_wrapper: Option<String>,
    /// The keepalive server's `ServerConfig::park_after` (default: the crate's, 100 ms).
    #[arg(long, value_parser = parse_duration)]
    park_after: Option<Duration>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Pattern {
    /// N connections opened first, then one request on every one at the same moment.
    Burst,
    /// One connection after the other: connect, request, answer, next.
    Trickle,
}

impl Pattern {
    fn name(self) -> &'static str {
        match self {
            Pattern::Burst => "burst",
            Pattern::Trickle => "trickle",
        }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// (child) Serve on `addr`; answer `measure` lines on stdin with a JSON line.
    Serve {
        #[arg(long, value_enum)]
        kind: Kind,
        #[arg(long, default_value = "127.0.0.1:0")]
        addr: SocketAddr,
        /// Run the server in a spawned task (its accept loop on a worker thread, sharing it
        /// with connection tasks) instead of on the main thread.
        #[arg(long)]
        spawned: bool,
        /// `ServerConfig::park_after` for the keepalive server.
        #[arg(long, value_parser = parse_duration)]
        park_after: Option<Duration>,
    },
    /// (child) Open `connections` to `addr`, one request each, then hold them until stdin closes.
    Hold {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        connections: usize,
        #[arg(long, value_enum, default_value_t = Pattern::Burst)]
        pattern: Pattern,
        /// Source addresses 127.K.x.y (5,000 connections each).
        #[arg(long, default_value_t = 10)]
        source_octet: u8,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Kind {
    /// A task per connection holding a bare tokio `TcpStream` (answers each read with a canned
    /// response): the floor.
    Bare,
    /// The crate's `serve`, default configuration (parks idle connections after 100 ms).
    Keepalive,
    /// hyper through hyper-util's auto builder (`examples/server.rs --plain`).
    Plain,
    /// `axum::serve` with a one-route `Router`.
    Axum,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Bare => "bare",
            Kind::Keepalive => "keepalive",
            Kind::Plain => "plain",
            Kind::Axum => "axum",
        }
    }
}

fn main() {
    let cli = Cli::parse();
    match cli.command {
        Some(Cmd::Serve {
            kind,
            addr,
            spawned,
            park_after,
        }) => serve_child(kind, addr, spawned, park_after),
        Some(Cmd::Hold {
            addr,
            connections,
            pattern,
            source_octet,
        }) => hold_child(addr, connections, pattern, source_octet),
        None => run(cli.run),
    }
}

// ---------------------------------------------------------------------------------------------
// serve (child)

const HELLO: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 13\r\n\r\nhello, world!";

async fn hello(_req: Request<Incoming>) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(
        b"hello, world!",
    ))))
}

fn serve_child(kind: Kind, addr: SocketAddr, spawned: bool, park_after: Option<Duration>) {
    raise_nofile();
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let listener = rt.block_on(async { listen(addr) }).expect("bind");
    println!("listening on {}", listener.local_addr().expect("addr"));
    let _ = std::io::stdout().flush();
    // Answers `measure` until the parent closes our stdin.
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            let Ok(line) = line else { break };
            let reply = match line.trim() {
                "measure" => {
                    let snapshot = SERVER_STATS
                        .get()
                        .map(ServerStats::snapshot)
                        .unwrap_or_default();
                    let malloc = malloc_counters();
                    json!({
                        "allocator": counting::backend().name(),
                        "heap": counting::live(),
                        "rss": rss_bytes(),
                        "pss": pss_bytes(),
                        "malloc_arena": malloc.arena + malloc.mmap,
                        "malloc_free": malloc.free,
                        "malloc_top_free": malloc.top_free,
                        "parked": snapshot.parked,
                        "active": snapshot.active,
                    })
                }
                "trim" => match trimmed_rss_bytes() {
                    Some((rss, took)) => json!({ "rss": rss, "trim_us": took.as_micros() as u64 }),
                    None => json!({ "rss": null }),
                },
                "profile" => {
                    print_malloc_stats();
                    json!({
                        "classes": counting::classes()
                            .into_iter()
                            .map(|(size, count, bytes)| json!([size, count, bytes]))
                            .collect::<Vec<_>>(),
                        "arenas": malloc_info().iter().map(|a| a.to_json()).collect::<Vec<_>>(),
                    })
                }
                _ => continue,
            };
            println!("{reply}");
            let _ = std::io::stdout().flush();
        }
        std::process::exit(0);
    });
    let serve = async move {
        match kind {
            Kind::Bare => loop {
                let Ok((stream, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                tokio::spawn(hold_bare(stream));
            },
            Kind::Keepalive => {
                let mut config = ServerConfig::default();
                if let Some(after) = park_after {
                    config = config.park_after(Some(after));
                }
                let server = keepalive::serve(listener, tower::service_fn(hello)).config(config);
                let _ = SERVER_STATS.set(server.stats());
                let _ = server.await;
            }
            Kind::Plain => {
                support::serve_plain(
                    listener,
                    || hyper::service::service_fn(hello),
                    std::future::pending(),
                )
                .await
            }
            Kind::Axum => {
                let app = axum::Router::new()
                    .route("/", axum::routing::get(|| async { "hello, world!" }));
                let _ = axum::serve(listener, app).await;
            }
        }
    };
    if spawned {
        let task = rt.spawn(serve);
        let _ = rt.block_on(task);
    } else {
        rt.block_on(serve);
    }
}

/// The crate's server counters, for `measure` (the other servers have none).
static SERVER_STATS: std::sync::OnceLock<ServerStats> = std::sync::OnceLock::new();

/// The floor: a task that holds the stream, answers whatever it reads with one canned
/// response, and ends at the peer's FIN. No buffer is kept across the wait.
async fn hold_bare(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    loop {
        if stream.readable().await.is_err() {
            return;
        }
        let mut buf = [0u8; 1024];
        match stream.try_read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {
                let _ = stream.try_write(HELLO);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// hold (child)

/// The source address of the `i`th held connection: 5,000 per address, 127.K.x.y from
/// 127.K.0.2, well inside the ephemeral port range of each.
fn source_of(octet: u8, i: usize) -> IpAddr {
    let a = i / 5_000;
    IpAddr::V4(Ipv4Addr::new(
        127,
        octet,
        (a / 250) as u8,
        2 + (a % 250) as u8,
    ))
}

fn hold_child(addr: SocketAddr, connections: usize, pattern: Pattern, octet: u8) {
    raise_nofile();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (held, failed) = rt.block_on(async move {
        match pattern {
            Pattern::Burst => burst(addr, connections, octet).await,
            Pattern::Trickle => {
                let mut held = Vec::with_capacity(connections);
                let mut failed = 0usize;
                for i in 0..connections {
                    let source = source_of(octet, i);
                    let one = async {
                        let mut stream = connect_from(source, addr).await?;
                        send_get(&mut stream).await?;
                        read_answer(&mut stream).await?;
                        Ok::<_, std::io::Error>(stream)
                    };
                    match tokio::time::timeout(Duration::from_secs(30), one).await {
                        Ok(Ok(stream)) => held.push(stream),
                        _ => failed += 1,
                    }
                }
                (held, failed)
            }
        }
    });
    println!("held {} failed {failed}", held.len());
    let _ = std::io::stdout().flush();
    // Hold until the parent closes our stdin; exiting closes them all.
    let mut sink = [0u8; 64];
    let mut stdin = std::io::stdin();
    while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
    drop(held);
}

/// All `connections` connected first (256 connects in flight), then a request written on
/// every one in one pass, then every answer read.
async fn burst(addr: SocketAddr, connections: usize, octet: u8) -> (Vec<TcpStream>, usize) {
    let limit = Arc::new(tokio::sync::Semaphore::new(256));
    let mut tasks = Vec::with_capacity(connections);
    for i in 0..connections {
        let permit = limit.clone().acquire_owned().await.expect("semaphore");
        let source = source_of(octet, i);
        tasks.push(tokio::spawn(async move {
            let result = tokio::time::timeout(Duration::from_secs(30), connect_from(source, addr));
            let result = result.await;
            drop(permit);
            result.ok().and_then(Result::ok)
        }));
    }
    let mut connected = Vec::with_capacity(connections);
    let mut failed = 0usize;
    for task in tasks {
        match task.await.ok().flatten() {
            Some(stream) => connected.push(stream),
            None => failed += 1,
        }
    }
    // The burst: every request written before any answer is read.
    let mut sent = Vec::with_capacity(connected.len());
    for mut stream in connected {
        match send_get(&mut stream).await {
            Ok(()) => sent.push(stream),
            Err(_) => failed += 1,
        }
    }
    let readers: Vec<_> = sent
        .into_iter()
        .map(|mut stream| {
            tokio::spawn(async move {
                let read = tokio::time::timeout(Duration::from_secs(30), read_answer(&mut stream));
                matches!(read.await, Ok(Ok(()))).then_some(stream)
            })
        })
        .collect();
    let mut held = Vec::with_capacity(readers.len());
    for reader in readers {
        match reader.await.ok().flatten() {
            Some(stream) => held.push(stream),
            None => failed += 1,
        }
    }
    (held, failed)
}

async fn connect_from(source: IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(addr).await
}

async fn send_get(stream: &mut TcpStream) -> std::io::Result<()> {
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: idle\r\n\r\n")
        .await
}

/// Reads one `hello, world!` answer whole.
async fn read_answer(stream: &mut TcpStream) -> std::io::Result<()> {
    let mut got = Vec::with_capacity(512);
    let mut buf = [0u8; 512];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        got.extend_from_slice(&buf[..n]);
        if got.ends_with(b"hello, world!") {
            return Ok(());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// run (the parent)

/// A child server and its control pipes.
struct ChildServer {
    guard: ChildGuard,
    addr: SocketAddr,
    control: Option<ChildStdin>,
    replies: BufReader<ChildStdout>,
}

impl ChildServer {
    fn start(
        kind: Kind,
        spawned: bool,
        allocator: Backend,
        wrapper: Option<&str>,
        park_after: Option<Duration>,
    ) -> ChildServer {
        let exe = std::env::current_exe().expect("current_exe");
        let mut words: Vec<String> = wrapper
            .unwrap_or("")
            .split_whitespace()
            .map(str::to_string)
            .collect();
        words.push(exe.to_string_lossy().into_owned());
        let mut child = Command::new(&words[0])
            .args(&words[1..])
            .args(["serve", "--kind", kind.name()])
            .args(spawned.then_some("--spawned"))
            .args(park_after.map(|a| format!("--park-after={}s", a.as_secs_f64())))
            .env(ALLOCATOR_ENV, allocator.name())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the server");
        let control = child.stdin.take().expect("stdin");
        let mut replies = BufReader::new(child.stdout.take().expect("stdout"));
        // A wrapper may print lines of its own first.
        let mut addr = None;
        for _ in 0..20 {
            let mut line = String::new();
            if replies.read_line(&mut line).expect("first line") == 0 {
                break;
            }
            addr = line
                .trim()
                .strip_prefix("listening on ")
                .and_then(|a| a.parse().ok());
            if addr.is_some() {
                break;
            }
        }
        ChildServer {
            guard: ChildGuard(child),
            addr: addr.expect("the server's `listening on` line"),
            control: Some(control),
            replies,
        }
    }

    /// Closes the server's standard input (it exits by itself) and waits for it, at most
    /// `limit`; the guard kills it after that.
    fn finish(mut self, limit: Duration) {
        drop(self.control.take());
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(_)) = self.guard.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends `command` (`measure`, `trim` or `profile`) and returns the server's JSON answer.
    fn ask(&mut self, command: &str) -> Value {
        let control = self.control.as_mut().expect("the server's stdin");
        writeln!(control, "{command}").expect("ask the server");
        let mut line = String::new();
        self.replies
            .read_line(&mut line)
            .expect("the server's answer");
        serde_json::from_str(&line).expect("a JSON line")
    }

    /// Waits (at most `deadline`) until the server holds exactly `n` connections by the
    /// kernel's table (established, or closing on its side).
    fn wait_for_connections(&self, n: usize, deadline: Duration) -> usize {
        let start = Instant::now();
        loop {
            let counts = tcp_state::count(
                Filter::new()
                    .local_ip(self.addr.ip())
                    .local_port(self.addr.port()),
            )
            .unwrap_or_default();
            let open = counts.established() as usize + counts.close_wait() as usize;
            if open == n || start.elapsed() > deadline {
                return open;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn run(args: RunArgs) {
    let hard = raise_nofile().unwrap_or(1024);
    let max = 20_000.min(hard.saturating_sub(100) as usize);
    let counts: Vec<usize> = args
        .connections
        .iter()
        .map(|c| {
            if c == "max" {
                max
            } else {
                c.parse().expect("a count or max")
            }
        })
        .collect();
    assert!(!args.after.is_empty(), "--after needs at least one time");
    let load_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut summary = Vec::new();
    let mut run_index = 0usize;
    for &allocator in &args.allocator {
        for &n in &counts {
            for &pattern in &args.patterns {
                for &kind in &args.servers {
                    // A fresh 127.K.0.0/16 of source addresses per run (K = 10..=249).
                    let octet = 10 + (run_index % 240) as u8;
                    run_index += 1;
                    let result = measure_one(kind, allocator, n, pattern, octet, &args, &load_rt);
                    println!("{result}");
                    summary.push(result);
                }
            }
        }
    }
    print_summary(&summary, &args.after);
}

fn measure_one(
    kind: Kind,
    allocator: Backend,
    n: usize,
    pattern: Pattern,
    octet: u8,
    args: &RunArgs,
    load_rt: &tokio::runtime::Runtime,
) -> Value {
    eprintln!(
        "== {} with {n} idle connections ({}, {})",
        kind.name(),
        pattern.name(),
        allocator.name()
    );
    let mut server = ChildServer::start(
        kind,
        args.spawned,
        allocator,
        args.server_wrapper.as_deref(),
        args.park_after,
    );
    let load_secs = Duration::from_secs_f64(args.load_secs);
    let addr = server.addr;
    let load = |rt: &tokio::runtime::Runtime, secs: Duration| {
        rt.block_on(keep_alive_load(addr, args.load_connections, secs))
    };
    let median_load = |rt: &tokio::runtime::Runtime| {
        let mut runs: Vec<Value> = (0..args.rounds.max(1))
            .map(|_| load(rt, load_secs))
            .collect();
        runs.sort_by(|a, b| {
            a["rps"]
                .as_f64()
                .partial_cmp(&b["rps"].as_f64())
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        runs.swap_remove(runs.len() / 2)
    };
    // Warm-up (allocator caches, lazily built state), then the "none held" load.
    let _ = load(load_rt, Duration::from_millis(500));
    let none = (!load_secs.is_zero()).then(|| median_load(load_rt));
    let open_before = server.wait_for_connections(0, Duration::from_secs(10));
    let before = server.ask("measure");
    assert_eq!(
        before["allocator"].as_str(),
        Some(allocator.name()),
        "the server runs under the allocator asked for"
    );
    let (_, sock_mem_before) = tcp_sockstat();

    let exe = std::env::current_exe().expect("current_exe");
    let started = Instant::now();
    let mut holder = Command::new(exe)
        .args(["hold", "--addr", &server.addr.to_string()])
        .args(["--connections", &n.to_string()])
        .args(["--pattern", pattern.name()])
        .args(["--source-octet", &octet.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the holder");
    let mut line = String::new();
    BufReader::new(holder.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the holder's report");
    // The holder reports once every answer is read: the last request was just served.
    let last_answer = Instant::now();
    let open_ms = (last_answer - started).as_millis() as u64;
    let field = |i: usize| -> usize {
        line.split_whitespace()
            .nth(i)
            .and_then(|h| h.parse().ok())
            .unwrap_or(0)
    };
    let (held, failed) = (field(1), field(3));
    let holder = ChildGuard(holder);
    let open = server.wait_for_connections(held, Duration::from_secs(10));

    let per = |after: &Value, field: &str| {
        let b = before[field].as_f64().unwrap_or(0.0);
        let a = after[field].as_f64().unwrap_or(0.0);
        ((a - b) / held.max(1) as f64).round()
    };
    let mut points = Vec::new();
    for &wait in &args.after {
        std::thread::sleep((last_answer + wait).saturating_duration_since(Instant::now()));
        let after = server.ask("measure");
        let (_, sock_mem) = tcp_sockstat();
        points.push(json!({
            "after_s": wait.as_secs_f64(),
            "rss_per_connection": per(&after, "rss"),
            "pss_per_connection": per(&after, "pss"),
            "heap_per_connection": per(&after, "heap"),
            "malloc_arena_per_connection": per(&after, "malloc_arena"),
            "malloc_free_per_connection": per(&after, "malloc_free"),
            "kernel_tcp_mem_per_connection":
                ((sock_mem as f64 - sock_mem_before as f64) / held.max(1) as f64).round(),
            "rss": after["rss"],
            "parked": after["parked"],
            "active": after["active"],
        }));
    }
    // The profile before the trim, which changes what glibc holds.
    let profile = args.heap_profile.then(|| server.ask("profile"));
    let trimmed = server.ask("trim");
    let with_held = (!load_secs.is_zero()).then(|| median_load(load_rt));
    // The server ends first, with the connections still held (a wrapper's heap profile then
    // lists what they hold).
    server.finish(Duration::from_secs(if args.server_wrapper.is_some() {
        120
    } else {
        5
    }));
    drop(holder);

    let first = &points[0];
    json!({
        "server": kind.name(),
        "allocator": allocator.name(),
        "pattern": pattern.name(),
        "connections": n,
        "held": held,
        "failed": failed,
        "server_open_before": open_before,
        "server_open": open,
        "open_ms": open_ms,
        "parked": first["parked"],
        "rss_before": before["rss"],
        "rss_per_connection": first["rss_per_connection"],
        "heap_per_connection": first["heap_per_connection"],
        "after": points,
        "rss_after_malloc_trim_per_connection":
            (!trimmed["rss"].is_null()).then(|| per(&trimmed, "rss")),
        "malloc_trim_us": trimmed["trim_us"],
        "heap_profile": profile,
        "load_none": none,
        "load_held": with_held,
    })
}

/// `connections` keep-alive connections, each sending GET / back to back for `secs`.
async fn keep_alive_load(addr: SocketAddr, connections: usize, secs: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + secs;
    let mut tasks = Vec::new();
    for _ in 0..connections {
        tasks.push(tokio::spawn(async move {
            let mut histogram = Histogram::<u64>::new(3).expect("histogram");
            let mut errors = 0u64;
            let mut conn_tasks = Vec::new();
            // A connection the server ends (`Connection: close`, its request limit) is replaced.
            'connections: while tokio::time::Instant::now() < deadline && errors < 100 {
                let Ok(stream) = TcpStream::connect(addr).await else {
                    errors += 1;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let Ok((mut sender, conn)) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
                else {
                    errors += 1;
                    continue;
                };
                conn_tasks.push(tokio::spawn(conn));
                while tokio::time::Instant::now() < deadline {
                    let request = Request::get("/")
                        .header(http::header::HOST, "load")
                        .body(Empty::<Bytes>::new())
                        .expect("request");
                    let start = Instant::now();
                    let Ok(response) = sender.send_request(request).await else {
                        errors += 1;
                        continue 'connections;
                    };
                    let closing = response
                        .headers()
                        .get(http::header::CONNECTION)
                        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
                    if response.into_body().collect().await.is_err() {
                        errors += 1;
                        continue 'connections;
                    }
                    let _ = histogram.record(start.elapsed().as_micros() as u64);
                    if closing {
                        continue 'connections;
                    }
                }
            }
            // Close them before returning: this runtime does not run the connection tasks
            // between loads, so a connection left to them stays open (and would be counted
            // in the next baseline). Their senders are gone; hyper ends each once idle.
            for connection in conn_tasks {
                let _ = tokio::time::timeout(Duration::from_secs(5), connection).await;
            }
            (histogram, errors)
        }));
    }
    let mut all = Histogram::<u64>::new(3).expect("histogram");
    let mut errors = 0;
    for task in tasks {
        if let Ok((histogram, e)) = task.await {
            let _ = all.add(&histogram);
            errors += e;
        }
    }
    json!({
        "rps": (all.len() as f64 / secs.as_secs_f64()).round(),
        "p50_us": all.value_at_quantile(0.5),
        "p99_us": all.value_at_quantile(0.99),
        "errors": errors,
    })
}

fn print_summary(results: &[Value], after: &[Duration]) {
    eprintln!();
    let mut head = format!(
        "{:<10} {:<9} {:<8} {:>6} {:>6}",
        "server", "allocator", "pattern", "conns", "held"
    );
    for wait in after {
        let s = format!("{}s", wait.as_secs_f64());
        head += &format!(" {:>12} {:>7}", format!("rss/conn@{s}"), "x bare");
    }
    head += &format!(
        " {:>10} {:>11} {:>10} {:>9} {:>9}",
        "heap/conn", "alloc free", "trimmed", "rps held", "p99 held"
    );
    eprintln!("{head}");
    for r in results {
        let bare = results.iter().find(|b| {
            b["server"] == "bare"
                && b["allocator"] == r["allocator"]
                && b["connections"] == r["connections"]
                && b["pattern"] == r["pattern"]
        });
        let number = |v: &Value| v.as_f64().map_or("-".to_string(), |v| format!("{v:.0}"));
        let mut row = format!(
            "{:<10} {:<9} {:<8} {:>6} {:>6}",
            r["server"].as_str().unwrap_or(""),
            r["allocator"].as_str().unwrap_or(""),
            r["pattern"].as_str().unwrap_or(""),
            number(&r["connections"]),
            number(&r["held"])
        );
        for (i, _) in after.iter().enumerate() {
            let rss = r["after"][i]["rss_per_connection"].as_f64().unwrap_or(0.0);
            let ratio = bare
                .and_then(|b| b["after"][i]["rss_per_connection"].as_f64())
                .map_or("-".to_string(), |b| format!("{:.2}", rss / b.max(1.0)));
            row += &format!(" {rss:>12} {ratio:>7}");
        }
        let ratio_of = |field: &str| {
            let none = r["load_none"][field].as_f64();
            let held = r["load_held"][field].as_f64();
            match (none, held) {
                (Some(n), Some(h)) if n > 0.0 => format!("{:.3}", h / n),
                _ => "-".to_string(),
            }
        };
        row += &format!(
            " {:>10} {:>11} {:>10} {:>9} {:>9}",
            number(&r["heap_per_connection"]),
            number(&r["after"][0]["malloc_free_per_connection"]),
            number(&r["rss_after_malloc_trim_per_connection"]),
            ratio_of("rps"),
            ratio_of("p99_us"),
        );
        eprintln!("{row}");
    }
    eprintln!(
        "(rss/conn: VmRSS of the server, its own process, no trimming, (after - before) / held, \
         bytes, that long after the last answer; x bare: over bare with the same allocator; \
         heap/conn: live heap by the counting allocator, at the first time; alloc free: bytes \
         the allocator holds free (glibc: mallinfo2 fordblks; jemalloc: resident - allocated; \
         mimalloc: committed - live), per connection; trimmed: VmRSS after malloc_trim(0) \
         (glibc only; not what an operator sees); rps held and p99 held: ratios with the idle \
         connections held / with none)"
    );
}

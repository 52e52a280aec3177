//! What idle keep-alive connections cost a server, and what holding them costs its busy
//! connections. Loopback only; every loop is bounded in count and time.
//!
//! For each server (a bare tokio `TcpStream` per connection, the crate's `serve`, plain hyper
//! through hyper-util as `examples/server.rs --plain` runs it, and `axum::serve`) and each count
//! N, this program:
//!
//! 1. starts the server as a child process (`serve`), with a counting allocator, its descriptor
//!    limit raised to the hard one;
//! 2. runs a keep-alive load from this process (warm-up, then the "none held" figures:
//!    requests/s and latency percentiles over `--load-connections` connections);
//! 3. takes the server's baseline: live heap and resident memory (after `malloc_trim`);
//! 4. starts another child (`hold`) that opens N connections from several loopback source
//!    addresses (127.0.0.2 and up, 10,000 each), sends one request on each, reads the answer and
//!    then stays silent;
//! 5. measures the server again: (after - baseline) / N is the cost of one idle connection;
//! 6. runs the same load with the N connections held ("held" figures).
//!
//! ```text
//! cargo build --release --example server_idle
//! target/release/examples/server_idle --connections 2000,max
//! target/release/examples/server_idle --servers keepalive,bare --connections 2000 --load-secs 0
//! ```
//!
//! `max` is min(20,000, the hard descriptor limit - 100).

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
use support::memory::{counting, listen, raise_nofile, trimmed_rss_bytes, ChildGuard};
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
    },
    /// (child) Open `connections` to `addr`, one request each, then hold them until stdin closes.
    Hold {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        connections: usize,
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
        }) => serve_child(kind, addr, spawned),
        Some(Cmd::Hold { addr, connections }) => hold_child(addr, connections),
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

fn serve_child(kind: Kind, addr: SocketAddr, spawned: bool) {
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
            if line.trim() == "measure" {
                let rss = trimmed_rss_bytes();
                let snapshot = SERVER_STATS
                    .get()
                    .map(ServerStats::snapshot)
                    .unwrap_or_default();
                println!(
                    "{}",
                    json!({
                        "heap": counting::live(),
                        "rss": rss,
                        "parked": snapshot.parked,
                        "active": snapshot.active,
                    })
                );
                let _ = std::io::stdout().flush();
            }
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
                let server = keepalive::serve(listener, tower::service_fn(hello))
                    .config(ServerConfig::default());
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

/// The source address of the `i`th held connection: 10,000 per address from 127.0.0.2, well
/// inside the ephemeral port range of each.
fn source_of(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (i / 10_000) as u8))
}

fn hold_child(addr: SocketAddr, connections: usize) {
    raise_nofile();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (held, failed) = rt.block_on(async move {
        let limit = Arc::new(tokio::sync::Semaphore::new(256));
        let mut tasks = Vec::with_capacity(connections);
        for i in 0..connections {
            let permit = limit.clone().acquire_owned().await.expect("semaphore");
            tasks.push(tokio::spawn(async move {
                let result = tokio::time::timeout(Duration::from_secs(30), open_one(addr, i)).await;
                drop(permit);
                result.ok().and_then(Result::ok)
            }));
        }
        let mut held = Vec::with_capacity(connections);
        let mut failed = 0usize;
        for task in tasks {
            match task.await.ok().flatten() {
                Some(stream) => held.push(stream),
                None => failed += 1,
            }
        }
        (held, failed)
    });
    println!("held {} failed {failed}", held.len());
    let _ = std::io::stdout().flush();
    // Hold until the parent closes our stdin; exiting closes them all.
    let mut sink = [0u8; 64];
    let mut stdin = std::io::stdin();
    while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
    drop(held);
}

/// One connection: connect from its source address, one GET, read the whole answer.
async fn open_one(addr: SocketAddr, i: usize) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source_of(i), 0))?;
    let mut stream = socket.connect(addr).await?;
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: idle\r\n\r\n")
        .await?;
    let mut got = Vec::with_capacity(512);
    let mut buf = [0u8; 512];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        got.extend_from_slice(&buf[..n]);
        if got.ends_with(b"hello, world!") {
            return Ok(stream);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// run (the parent)

/// A child server and its control pipes.
struct ChildServer {
    _guard: ChildGuard,
    addr: SocketAddr,
    control: ChildStdin,
    replies: BufReader<ChildStdout>,
}

impl ChildServer {
    fn start(kind: Kind, spawned: bool) -> ChildServer {
        let exe = std::env::current_exe().expect("current_exe");
        let mut child = Command::new(exe)
            .args(["serve", "--kind", kind.name()])
            .args(spawned.then_some("--spawned"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the server");
        let control = child.stdin.take().expect("stdin");
        let mut replies = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        replies.read_line(&mut line).expect("first line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"));
        ChildServer {
            _guard: ChildGuard(child),
            addr,
            control,
            replies,
        }
    }

    fn measure(&mut self) -> Value {
        writeln!(self.control, "measure").expect("ask the server");
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
    let load_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut summary = Vec::new();
    for &n in &counts {
        for &kind in &args.servers {
            let result = measure_one(kind, n, &args, &load_rt);
            println!("{result}");
            summary.push(result);
        }
    }
    print_summary(&summary);
}

fn measure_one(kind: Kind, n: usize, args: &RunArgs, load_rt: &tokio::runtime::Runtime) -> Value {
    eprintln!("== {} with {n} idle connections", kind.name());
    let mut server = ChildServer::start(kind, args.spawned);
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
    server.wait_for_connections(0, Duration::from_secs(10));
    let before = server.measure();

    let exe = std::env::current_exe().expect("current_exe");
    let mut holder = Command::new(exe)
        .args(["hold", "--addr", &server.addr.to_string()])
        .args(["--connections", &n.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the holder");
    let mut line = String::new();
    BufReader::new(holder.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the holder's report");
    let held: usize = line
        .split_whitespace()
        .nth(1)
        .and_then(|h| h.parse().ok())
        .unwrap_or(0);
    let holder = ChildGuard(holder);
    let open = server.wait_for_connections(held, Duration::from_secs(10));
    // Settle: the crate's server parks connections idle for 100 ms; give every server the same.
    let settle_until = Instant::now() + Duration::from_secs(10);
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let parked = server.measure()["parked"].as_u64().unwrap_or(0) as usize;
        if kind != Kind::Keepalive || parked >= held || Instant::now() > settle_until {
            break;
        }
    }
    let after = server.measure();
    let with_held = (!load_secs.is_zero()).then(|| median_load(load_rt));
    drop(holder);

    let per = |field: &str| {
        let b = before[field].as_f64().unwrap_or(0.0);
        let a = after[field].as_f64().unwrap_or(0.0);
        (a - b) / held.max(1) as f64
    };
    json!({
        "server": kind.name(),
        "connections": n,
        "held": held,
        "server_open": open,
        "parked": after["parked"],
        "rss_per_connection": per("rss").round(),
        "heap_per_connection": per("heap").round(),
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
                tokio::spawn(conn);
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

fn print_summary(results: &[Value]) {
    eprintln!();
    eprintln!(
        "{:<10} {:>6} {:>6} {:>10} {:>8} {:>10} {:>10} {:>10}",
        "server", "conns", "held", "rss/conn", "x bare", "heap/conn", "rps held", "p99 held"
    );
    for r in results {
        let bare = results
            .iter()
            .find(|b| b["server"] == "bare" && b["connections"] == r["connections"])
            .and_then(|b| b["rss_per_connection"].as_f64());
        let rss = r["rss_per_connection"].as_f64().unwrap_or(0.0);
        let ratio = bare.map_or("-".to_string(), |b| format!("{:.2}", rss / b.max(1.0)));
        let ratio_of = |field: &str| {
            let none = r["load_none"][field].as_f64();
            let held = r["load_held"][field].as_f64();
            match (none, held) {
                (Some(n), Some(h)) if n > 0.0 => format!("{:.3}", h / n),
                _ => "-".to_string(),
            }
        };
        eprintln!(
            "{:<10} {:>6} {:>6} {:>10} {:>8} {:>10} {:>10} {:>10}",
            r["server"].as_str().unwrap_or(""),
            r["connections"],
            r["held"],
            rss,
            ratio,
            r["heap_per_connection"],
            ratio_of("rps"),
            ratio_of("p99_us"),
        );
    }
    eprintln!("(rps held and p99 held are ratios: with the idle connections held / with none)");
}

//! Short versus long connections: requests/s, latency percentiles and the TCP states each side
//! is left with, for a new connection per request (`Connection: close`) against the crate's
//! keep-alive pool.
//!
//! ```text
//! cargo run --release --example short_vs_long                       # built-in keepalive server
//! cargo run --release --example short_vs_long -- --server plain      # plain hyper-util server
//! cargo run --release --example short_vs_long -- --url http://127.0.0.1:8080/ --json
//! cargo run --release --features rustls --example short_vs_long -- --tls   # over TLS
//! ```

mod support;

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use http::header::{HeaderValue, CONNECTION};
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Bytes, Incoming};
use keepalive::client::{Client, ClientConfig, Connect};
use keepalive::tcp_state::{self, Filter, StateCounts, TcpState};
use keepalive::{KeepAliveLayer, ServerConfig};
use support::parse_duration;

#[derive(Parser, Debug)]
#[command(about = "short (a connection per request) versus long (keep-alive) connections")]
struct Args {
    /// Target URL (any HTTP/1.x server). Without it a built-in server runs on 127.0.0.1:0.
    #[arg(long)]
    url: Option<Uri>,
    /// The built-in server: the crate's serve and layer, or plain hyper-util.
    #[arg(long, value_enum, default_value_t = ServerKind::Keepalive)]
    server: ServerKind,
    /// Which modes to run: short, long, or both (short then long).
    #[arg(long, value_enum, default_value_t = Mode::Both)]
    mode: Mode,
    /// Requests per mode (the run stops at this or at --duration, whichever comes first).
    #[arg(long, default_value_t = 10_000)]
    requests: u64,
    /// Longest run per mode.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    duration: Duration,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Think time between a worker's requests.
    #[arg(long, default_value = "0ms", value_parser = parse_duration)]
    interval: Duration,
    /// One JSON object per mode per line on stdout (the header goes to stderr).
    #[arg(long)]
    json: bool,
    /// Write the latency distributions of the modes side by side as an SVG.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// HTTPS: the built-in server gets a self-signed certificate made at start and the client
    /// trusts it, so the figures include a TLS handshake per short connection (needs the
    /// feature `rustls`: `cargo run --release --features rustls --example short_vs_long -- --tls`).
    #[arg(long)]
    tls: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ServerKind {
    Keepalive,
    Plain,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Short,
    Long,
    Both,
}

/// What one mode measured.
struct ModeResult {
    mode: &'static str,
    requests: u64,
    errors: u64,
    elapsed: Duration,
    latency: Histogram<u64>,
    connections_opened: u64,
    server: StateDelta,
    client: StateDelta,
    /// How long the socket states took to settle after the run.
    settle: Settle,
    tls: bool,
}

#[derive(Default, Clone, Copy)]
struct StateDelta {
    time_wait: usize,
    close_wait: usize,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let tls = Tls::new(&args)?;
    let (target, server_name) = match &args.url {
        Some(url) => {
            if url.scheme_str() == Some("https") {
                return Err("https URLs are not supported (only the built-in server's certificate is trusted): use --tls without --url".into());
            }
            (url.clone(), "external")
        }
        None => {
            let addr = start_builtin_server(args.server, &tls)?;
            let name = match args.server {
                ServerKind::Keepalive => "keepalive",
                ServerKind::Plain => "plain",
            };
            let scheme = if args.tls { "https" } else { "http" };
            (format!("{scheme}://{addr}/").parse()?, name)
        }
    };
    let header = kernel_header(&target, server_name, &args);
    if args.json {
        eprint!("{header}");
    } else {
        print!("{header}");
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let modes: &[&'static str] = match args.mode {
        Mode::Short => &["short"],
        Mode::Long => &["long"],
        Mode::Both => &["short", "long"],
    };
    let mut results = Vec::new();
    for &mode in modes {
        let result = runtime.block_on(tls.run_mode(mode, &target, &args))?;
        if args.json {
            println!("{}", json_line(&result, server_name));
        }
        results.push(result);
    }
    if !args.json {
        print!("{}", table(&results));
    }
    if let Some(path) = &args.plot {
        std::fs::write(path, svg_plot(&results))?;
        if !args.json {
            println!("latency plot written to {}", path.display());
        }
    }
    Ok(())
}

/// The certificate of a `--tls` run (none without the feature `rustls`).
#[derive(Clone)]
struct Tls {
    #[cfg(feature = "rustls")]
    config: Option<support::tls::TestTls>,
}

impl Tls {
    fn new(args: &Args) -> Result<Tls, Box<dyn std::error::Error>> {
        #[cfg(feature = "rustls")]
        {
            Ok(Tls {
                config: args.tls.then(support::tls::TestTls::new),
            })
        }
        #[cfg(not(feature = "rustls"))]
        {
            if args.tls {
                return Err("--tls needs the feature rustls: cargo run --release --features rustls --example short_vs_long -- --tls".into());
            }
            Ok(Tls {})
        }
    }

    /// One mode with the client this run needs (TLS-capable or not).
    async fn run_mode(
        &self,
        mode: &'static str,
        target: &Uri,
        args: &Args,
    ) -> std::io::Result<ModeResult> {
        let config = ClientConfig::new()
            .max_idle_per_host(args.concurrency.max(1) * 2)
            .idle_timeout(Duration::from_secs(50));
        #[cfg(feature = "rustls")]
        if let Some(tls) = &self.config {
            let connector = keepalive::client::TlsConnector::new(&config, tls.client.clone());
            let client = Client::with_connector(config, connector);
            return run_mode(client, mode, target, args).await;
        }
        run_mode(Client::new(config), mode, target, args).await
    }
}

/// Starts the built-in server on its own runtime thread (one worker), on 127.0.0.1:0.
fn start_builtin_server(kind: ServerKind, tls: &Tls) -> std::io::Result<SocketAddr> {
    let tls = tls.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || {
        runtime.block_on(async move {
            let server = match kind {
                ServerKind::Keepalive => {
                    let service = tower::ServiceBuilder::new()
                        .layer(KeepAliveLayer::new())
                        .service_fn(hello);
                    keepalive::serve(listener, service).config(ServerConfig::new())
                }
                #[cfg(feature = "rustls")]
                ServerKind::Plain if tls.config.is_some() => {
                    let acceptor = tls.config.as_ref().map(|t| t.acceptor());
                    let acceptor = acceptor.expect("checked above");
                    support::tls::serve_plain_tls(listener, acceptor, || {
                        hyper::service::service_fn(hello)
                    })
                    .await;
                    return;
                }
                ServerKind::Plain => {
                    support::serve_plain(
                        listener,
                        || hyper::service::service_fn(hello),
                        std::future::pending(),
                    )
                    .await;
                    return;
                }
            };
            #[cfg(feature = "rustls")]
            if let Some(tls) = &tls.config {
                let _ = server.handshake(tls.acceptor()).await;
                return;
            }
            let _ = (server.await, &tls);
        });
    });
    Ok(addr)
}

async fn hello(_req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(
        b"hello, world!",
    ))))
}

/// The server's end (local port = the server's) and the clients' ends (remote port = the
/// server's) of connections to the target, as the kernel sees them.
fn kernel_sides(target: &Uri) -> Option<(StateCounts, StateCounts)> {
    let default = if target.scheme_str() == Some("https") {
        443
    } else {
        80
    };
    let port = target.port_u16().unwrap_or(default);
    let server = tcp_state::count(Filter::new().local_port(port)).ok()?;
    let client = tcp_state::count(Filter::new().remote_port(port)).ok()?;
    Some((server, client))
}

/// The longest wait for the sockets to settle after a run.
const SETTLE_DEADLINE: Duration = Duration::from_secs(5);

/// How the socket states settled after a run.
#[derive(Clone, Copy)]
struct Settle {
    /// From the pool's close to the read that counted.
    took: Duration,
    /// False when [`SETTLE_DEADLINE`] passed first (the counts are then the last read's).
    settled: bool,
}

/// Sockets in a state that moves on by itself within milliseconds on loopback: the peer's FIN
/// not handled yet (`CLOSE_WAIT`, then `LAST_ACK`) or this end's FIN not answered yet.
fn transient(counts: &StateCounts) -> usize {
    [
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::FinWait1,
        TcpState::FinWait2,
        TcpState::Closing,
    ]
    .iter()
    .map(|&state| counts.get(state))
    .sum()
}

/// Reads both sides' socket states every 10 ms until they have settled: the clients' ends hold
/// no more `ESTABLISHED` sockets than before the run, neither side holds more transient ones
/// ([`transient`]) than before, and two consecutive reads agree. Gives up after
/// [`SETTLE_DEADLINE`] and returns the last read.
///
/// The built-in server shares this process, so right after the pool closes it may not have
/// handled the clients' FINs yet: counting then would show those sockets in `CLOSE_WAIT`.
async fn settle(
    target: &Uri,
    before: Option<&(StateCounts, StateCounts)>,
) -> (Option<(StateCounts, StateCounts)>, Settle) {
    let started = Instant::now();
    let quiet = |sides: &(StateCounts, StateCounts)| {
        let (server, client) = sides;
        let (was_server, was_client) = before.map_or((0, 0), |(s, c)| (transient(s), transient(c)));
        client.established() <= before.map_or(0, |b| b.1.established())
            && transient(server) <= was_server
            && transient(client) <= was_client
    };
    let mut last = kernel_sides(target);
    loop {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let now = kernel_sides(target);
        let settled = match (&last, &now) {
            (Some(last), Some(now)) => last == now && quiet(now),
            // No socket table (not Linux): nothing to wait for.
            _ => true,
        };
        if settled || started.elapsed() >= SETTLE_DEADLINE {
            let took = started.elapsed();
            return (now, Settle { took, settled });
        }
        last = now;
    }
}

async fn run_mode<C: Connect>(
    client: Client<C>,
    mode: &'static str,
    target: &Uri,
    args: &Args,
) -> std::io::Result<ModeResult> {
    let short = mode == "short";
    let before = kernel_sides(target);
    let issued = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + args.duration;
    let progress = tokio::spawn(show_progress(mode, done.clone(), args.requests, started));
    let mut workers = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let (client, target, issued, done) =
            (client.clone(), target.clone(), issued.clone(), done.clone());
        let (limit, interval) = (args.requests, args.interval);
        workers.push(tokio::spawn(async move {
            let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
                .expect("valid histogram bounds");
            let mut errors = 0u64;
            let mut first = true;
            while issued.fetch_add(1, Ordering::Relaxed) < limit && Instant::now() < deadline {
                if !first && !interval.is_zero() {
                    tokio::time::sleep(interval).await;
                }
                first = false;
                let mut request = Request::get(target.clone())
                    .body(Empty::<Bytes>::new())
                    .expect("valid request");
                if short {
                    request
                        .headers_mut()
                        .insert(CONNECTION, HeaderValue::from_static("close"));
                }
                let sent = Instant::now();
                let outcome = match client.request(request).await {
                    Ok(response) => response.into_body().collect().await.is_ok(),
                    Err(_) => false,
                };
                if outcome {
                    let micros = sent.elapsed().as_micros().max(1) as u64;
                    let _ = latency.record(micros.min(60_000_000));
                } else {
                    errors += 1;
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            (latency, errors)
        }));
    }
    let mut latency =
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds");
    let mut errors = 0;
    for worker in workers {
        let (histogram, worker_errors) = worker.await.expect("worker panicked");
        latency.add(histogram).expect("same bounds");
        errors += worker_errors;
    }
    let elapsed = started.elapsed();
    progress.abort();
    let connections_opened = client.stats().snapshot().opened;
    // Close the pool (the client's FIN first), then count once both sides have settled.
    drop(client);
    let (after, settle) = settle(target, before.as_ref()).await;
    let delta = |b: Option<&StateCounts>, a: Option<&StateCounts>| match (b, a) {
        (Some(b), Some(a)) => StateDelta {
            time_wait: a.time_wait().saturating_sub(b.time_wait()),
            close_wait: a.close_wait(),
        },
        _ => StateDelta::default(),
    };
    Ok(ModeResult {
        mode,
        requests: latency.len() + errors,
        errors,
        elapsed,
        latency,
        connections_opened,
        server: delta(before.as_ref().map(|b| &b.0), after.as_ref().map(|a| &a.0)),
        client: delta(before.as_ref().map(|b| &b.1), after.as_ref().map(|a| &a.1)),
        settle,
        tls: target.scheme_str() == Some("https"),
    })
}

/// A progress line on stderr once a run has lasted 2 s.
async fn show_progress(mode: &'static str, done: Arc<AtomicU64>, total: u64, started: Instant) {
    tokio::time::sleep(Duration::from_secs(2)).await;
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {pos}/{len} requests ({per_sec})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(mode);
    let _finish = scopeguard(bar.clone());
    loop {
        bar.set_position(done.load(Ordering::Relaxed));
        let _ = started;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Clears the progress line when the task is aborted.
fn scopeguard(bar: indicatif::ProgressBar) -> impl Drop {
    struct Clear(indicatif::ProgressBar);
    impl Drop for Clear {
        fn drop(&mut self) {
            self.0.finish_and_clear();
        }
    }
    Clear(bar)
}

fn read_sysctl(name: &str) -> String {
    std::fs::read_to_string(format!("/proc/sys/{}", name.replace('.', "/")))
        .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "n/a".into())
}

/// The kernel settings that decide these figures, each with what it means here.
fn kernel_header(target: &Uri, server: &str, args: &Args) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "short vs long against {target} (server: {server}), concurrency {}, up to {} requests or {:?} per mode, think time {:?}",
        args.concurrency, args.requests, args.duration, args.interval
    );
    let settings = [
        ("net.ipv4.tcp_fin_timeout", "seconds an orphaned socket may stay in FIN_WAIT2 (TIME_WAIT itself is fixed at 60 s on Linux)"),
        ("net.ipv4.tcp_tw_reuse", "0 off, 1 on, 2 loopback only: new outgoing connections may reuse TIME_WAIT ports, so long loopback runs undercount TIME_WAIT"),
        ("net.ipv4.ip_local_port_range", "ephemeral ports: a short connection holds one for 60 s in TIME_WAIT on the side that closed first"),
        ("net.ipv4.tcp_keepalive_time", "kernel default idle time before keepalive probes (the crate sets its own per socket)"),
        ("net.ipv4.tcp_keepalive_intvl", "kernel default seconds between keepalive probes"),
        ("net.ipv4.tcp_keepalive_probes", "kernel default unanswered probes before a connection is dropped"),
        ("net.core.somaxconn", "cap on the accept backlog: short connections need a deep one"),
    ];
    for (name, meaning) in settings {
        let _ = writeln!(out, "  {name} = {}: {meaning}", read_sysctl(name));
    }
    let _ = writeln!(
        out,
        "  net.ipv4.tcp_tw_recycle: removed in Linux 4.12 (it broke clients behind NAT); old advice to turn it on no longer applies"
    );
    out
}

fn rps(result: &ModeResult) -> f64 {
    let secs = result.elapsed.as_secs_f64();
    if secs > 0.0 {
        (result.requests - result.errors) as f64 / secs
    } else {
        0.0
    }
}

fn table(results: &[ModeResult]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{:<6} {:>9} {:>6} {:>10} {:>9} {:>9} {:>9} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "mode",
        "requests",
        "errors",
        "req/s",
        "p50",
        "p99",
        "p99.9",
        "conns",
        "TW srv",
        "TW cli",
        "CW srv",
        "CW cli",
        "settle"
    );
    for r in results {
        let us = |q: f64| format!("{}us", r.latency.value_at_quantile(q));
        let _ = writeln!(
            out,
            "{:<6} {:>9} {:>6} {:>10.0} {:>9} {:>9} {:>9} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8}",
            r.mode,
            r.requests,
            r.errors,
            rps(r),
            us(0.5),
            us(0.99),
            us(0.999),
            r.connections_opened,
            r.server.time_wait,
            r.client.time_wait,
            r.server.close_wait,
            r.client.close_wait,
            settle_text(&r.settle)
        );
    }
    if let [short, long] = results {
        if rps(short) > 0.0 {
            let _ = writeln!(out, "long/short: {:.1}x requests/s", rps(long) / rps(short));
        }
    }
    let _ = writeln!(
        out,
        "TW/CW = TIME_WAIT/CLOSE_WAIT sockets per side after the run (server side: local port = the server's)"
    );
    let _ = writeln!(
        out,
        "counted once settled: both sides' states unchanged between two reads 10 ms apart, no ESTABLISHED client socket and no CLOSE_WAIT/FIN_WAIT/LAST_ACK/CLOSING left beyond those before the run (at most {} s); settle = the time that took after the pool closed (\"!\" = not settled by then, last read shown)",
        SETTLE_DEADLINE.as_secs()
    );
    out
}

/// `12ms`, or `5000ms!` when the states had not settled by the deadline.
fn settle_text(settle: &Settle) -> String {
    let mark = if settle.settled { "" } else { "!" };
    format!("{}ms{mark}", settle.took.as_millis())
}

fn json_line(r: &ModeResult, server: &str) -> String {
    serde_json::json!({
        "mode": r.mode,
        "server": server,
        "requests": r.requests,
        "errors": r.errors,
        "rps": (rps(r) * 10.0).round() / 10.0,
        "p50_us": r.latency.value_at_quantile(0.5),
        "p99_us": r.latency.value_at_quantile(0.99),
        "p999_us": r.latency.value_at_quantile(0.999),
        "connections_opened": r.connections_opened,
        "time_wait_server": r.server.time_wait,
        "time_wait_client": r.client.time_wait,
        "close_wait": r.server.close_wait + r.client.close_wait,
        "close_wait_server": r.server.close_wait,
        "close_wait_client": r.client.close_wait,
        "elapsed_s": r.elapsed.as_secs_f64(),
        "tls": r.tls,
        "settle_ms": (r.settle.took.as_secs_f64() * 1e4).round() / 10.0,
        "settled": r.settle.settled,
    })
    .to_string()
}

/// The latency distributions of the modes as a percentile plot in the HdrHistogram style (a
/// small hand-written SVG): percentile on x on a log(1/(1-p)) scale from 0 to 99.99 %, so
/// that 90, 99, 99.9 and 99.99 % are evenly spaced and the tails get room; latency on y
/// (log scale); the legend above the plot area, clear of the curves.
fn svg_plot(results: &[ModeResult]) -> String {
    const W: f64 = 760.0;
    const H: f64 = 480.0;
    const LEFT: f64 = 80.0;
    const RIGHT: f64 = 30.0;
    const BOTTOM: f64 = 60.0;
    const COLORS: [&str; 2] = ["#d62728", "#1f77b4"];
    // The plot area starts below the title and one legend line per mode.
    let top = 44.0 + 18.0 * results.len() as f64 + 12.0;
    // x: t = log10(1/(1-p)), 0 (p = 0) to 4 (p = 99.99 %).
    const T_MAX: f64 = 4.0;
    let x = |t: f64| LEFT + t / T_MAX * (W - LEFT - RIGHT);
    let quantile = |t: f64| 1.0 - 10f64.powf(-t);
    let max_us = results
        .iter()
        .map(|r| r.latency.value_at_quantile(quantile(T_MAX)))
        .max()
        .unwrap_or(10)
        .max(2) as f64;
    let min_us = results
        .iter()
        .map(|r| r.latency.min().max(1))
        .min()
        .unwrap_or(1) as f64;
    let lo = min_us.log10().floor();
    // The top: the first 1, 2 or 5 of a decade at or above the largest latency drawn.
    let top_decade = 10f64.powf(max_us.log10().floor());
    let top_us = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|step| step * top_decade)
        .find(|&us| us >= max_us)
        .unwrap_or(10.0 * top_decade);
    let hi = top_us.log10().max(lo + 1.0);
    let y = |us: f64| H - BOTTOM - (us.max(1.0).log10() - lo) / (hi - lo) * (H - BOTTOM - top);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">latency by percentile, short vs long</text>\n",
        W / 2.0
    );
    // Horizontal grid and latency labels at 1, 2 and 5 of each decade.
    let mut decade = lo;
    while decade < hi + 0.5 {
        for step in [1.0, 2.0, 5.0] {
            let us = step * 10f64.powf(decade);
            if us.log10() > hi + 1e-9 {
                break;
            }
            let label = if us >= 1000.0 {
                format!("{} ms", us / 1000.0)
            } else {
                format!("{us} us")
            };
            let (stroke, weight) = if step == 1.0 {
                ("#bbbbbb", "1")
            } else {
                ("#e4e4e4", "1")
            };
            let _ = writeln!(
                svg,
                "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" stroke=\"{stroke}\" stroke-width=\"{weight}\"/>\n\
                 <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{label}</text>",
                W - RIGHT,
                LEFT - 6.0,
                y(us) + 4.0,
                y = y(us),
            );
        }
        decade += 1.0;
    }
    // Vertical grid and percentile labels at 0, 90, 99, 99.9 and 99.99 %.
    for (t, label) in [
        (0.0, "0%"),
        (1.0, "90%"),
        (2.0, "99%"),
        (3.0, "99.9%"),
        (4.0, "99.99%"),
    ] {
        let _ = writeln!(
            svg,
            "<line x1=\"{x:.1}\" y1=\"{top}\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"#bbbbbb\"/>\n\
             <text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{label}</text>",
            H - BOTTOM,
            H - BOTTOM + 18.0,
            x = x(t),
        );
    }
    let _ = writeln!(
        svg,
        "<rect x=\"{LEFT}\" y=\"{top}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"black\"/>\n\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">percentile (log scale of 1/(1-p))</text>\n\
         <text transform=\"translate(16 {:.1}) rotate(-90)\" text-anchor=\"middle\">latency (log scale)</text>",
        W - LEFT - RIGHT,
        H - BOTTOM - top,
        (LEFT + W - RIGHT) / 2.0,
        H - BOTTOM + 40.0,
        (top + H - BOTTOM) / 2.0,
    );
    for (i, r) in results.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let mut points = String::new();
        for step in 0..=400 {
            let t = f64::from(step) / 100.0;
            let us = r.latency.value_at_quantile(quantile(t)) as f64;
            let _ = write!(points, "{:.1},{:.1} ", x(t), y(us));
        }
        let legend_y = 44.0 + 18.0 * i as f64;
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{points}\"/>\n\
             <line x1=\"{LEFT}\" y1=\"{:.1}\" x2=\"{}\" y2=\"{:.1}\" stroke=\"{color}\" stroke-width=\"2\"/>\n\
             <text x=\"{}\" y=\"{legend_y}\" fill=\"{color}\">{}: p50 {} us, p99 {} us, p99.9 {} us, max {} us; {:.0} req/s, {} requests</text>",
            legend_y - 4.0,
            LEFT + 24.0,
            legend_y - 4.0,
            LEFT + 30.0,
            r.mode,
            r.latency.value_at_quantile(0.5),
            r.latency.value_at_quantile(0.99),
            r.latency.value_at_quantile(0.999),
            r.latency.max(),
            rps(r),
            r.latency.len(),
        );
    }
    svg.push_str("</svg>\n");
    svg
}

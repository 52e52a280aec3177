//! The demo server: `GET /`, `GET /slow?ms=N` and `GET /stats`, served by the crate's `serve`
//! (or by plain hyper-util with `--plain`, for comparison).
//!
//! ```text
//! cargo run --release --example server -- --addr 127.0.0.1:3000 --idle-timeout 60s
//! ```
//! The first line on stdout is `listening on <addr>`. SIGTERM or Ctrl-C starts a graceful
//! shutdown; the process exits when it is done.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use keepalive::{ServerConfig, ServerStats};
use support::{parse_duration, shutdown_signal};

#[derive(Parser, Debug)]
#[command(about = "keep-alive demo server")]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:3000")]
    addr: SocketAddr,
    /// Idle time allowed between requests.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// How long after the advertised idle timeout an idle connection is closed (default: the
    /// crate's).
    #[arg(long, value_parser = parse_duration)]
    idle_grace: Option<Duration>,
    /// Time allowed for a request head, from its first byte.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    header_timeout: Duration,
    /// Requests served per connection.
    #[arg(long, default_value_t = 1000)]
    max_requests: u32,
    /// Longest wait for the client's FIN after a final response.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    linger: Duration,
    /// Shortest wait for the client's FIN after a final response (default: the crate's).
    #[arg(long, value_parser = parse_duration)]
    linger_floor: Option<Duration>,
    /// How many smoothed RTTs to wait for the client's FIN (default: the crate's).
    #[arg(long)]
    linger_rtt_factor: Option<u32>,
    /// Maximum connection age.
    #[arg(long, default_value = "3600s", value_parser = parse_duration)]
    max_age: Duration,
    /// Connections served at once (accepting waits beyond it).
    #[arg(long)]
    max_connections: Option<usize>,
    /// Grace window for idle connections during a graceful shutdown.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    drain_grace: Duration,
    /// Deadline of a graceful shutdown before connections are closed by force.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    shutdown_timeout: Duration,
    /// Reset (instead of FIN) idle connections that time out.
    #[arg(long)]
    abortive_idle_close: bool,
    /// Idle time after which a keep-alive connection is parked as the bare socket
    /// (`off` never parks).
    #[arg(long, default_value = "100ms", value_parser = parse_park_after)]
    park_after: ParkAfter,
    /// Serve with plain hyper-util instead (no keep-alive policy), for comparison.
    #[arg(long)]
    plain: bool,
    /// Serve HTTPS with a self-signed certificate made at start (for localhost, 127.0.0.1,
    /// ::1; try `curl -k`). Needs the feature `rustls`.
    #[arg(long)]
    tls: bool,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    println!("listening on {}", listener.local_addr()?);

    if args.plain {
        return serve_plain(listener).await;
    }

    let mut config = ServerConfig::new()
        .idle_timeout(args.idle_timeout)
        .header_timeout(args.header_timeout)
        .max_requests(args.max_requests)
        .linger(args.linger)
        .max_age(args.max_age)
        .max_connections(args.max_connections)
        .drain_grace(args.drain_grace)
        .shutdown_timeout(args.shutdown_timeout)
        .abortive_idle_close(args.abortive_idle_close)
        .park_after(args.park_after.0);
    if let Some(grace) = args.idle_grace {
        config = config.idle_grace(grace);
    }
    if let Some(floor) = args.linger_floor {
        config = config.linger_floor(floor);
    }
    if let Some(factor) = args.linger_rtt_factor {
        config = config.linger_rtt_factor(factor);
    }
    let stats_slot: Arc<std::sync::OnceLock<ServerStats>> = Arc::default();
    let slot = stats_slot.clone();
    let app = tower::service_fn(move |req: Request<Incoming>| {
        let stats = (req.uri().path() == "/stats")
            .then(|| slot.get().map(|s| s.snapshot().to_json()))
            .flatten();
        async move { Ok::<_, Infallible>(route(req, stats).await) }
    });
    let server = keepalive::serve(listener, app).config(config);
    let stats = server.stats();
    let _ = stats_slot.set(stats.clone());
    if args.tls {
        #[cfg(feature = "rustls")]
        {
            let tls = support::tls::TestTls::new();
            server
                .handshake(tls.acceptor())
                .with_graceful_shutdown(shutdown_signal())
                .await?;
        }
        #[cfg(not(feature = "rustls"))]
        {
            drop(server);
            eprintln!("--tls needs the feature rustls: cargo run --features rustls --example server -- --tls");
            std::process::exit(2);
        }
    } else {
        server.with_graceful_shutdown(shutdown_signal()).await?;
    }
    let s = stats.snapshot();
    eprintln!(
        "shut down: forced={} drained={} {}",
        s.closed(keepalive::CloseReason::Forced),
        s.closed(keepalive::CloseReason::Drain),
        s.to_json()
    );
    Ok(())
}

/// The demo routes. `stats` is the JSON for `/stats`.
async fn route(req: Request<Incoming>, stats: Option<String>) -> Response<Full<Bytes>> {
    let text = |status: StatusCode, body: String| {
        Response::builder()
            .status(status)
            .header("content-type", "text/plain")
            .body(Full::new(Bytes::from(body)))
            .expect("static response parts")
    };
    match req.uri().path() {
        "/" => text(StatusCode::OK, "hello, world!".into()),
        "/slow" => {
            let ms = support::slow_ms(req.uri(), 600_000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            text(StatusCode::OK, format!("slept {ms} ms"))
        }
        "/stats" => Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(stats.unwrap_or_else(|| "{}".into()))))
            .expect("static response parts"),
        _ => text(StatusCode::NOT_FOUND, "not found".into()),
    }
}

/// The same routes with plain hyper-util (auto HTTP/1 + HTTP/2, as `axum::serve` does) and
/// its graceful shutdown: no idle timeout, no keep-alive policy.
async fn serve_plain(listener: tokio::net::TcpListener) -> std::io::Result<()> {
    let accepted = Arc::new(AtomicU64::new(0));
    let requests = Arc::new(AtomicU64::new(0));
    let service_for = || {
        accepted.fetch_add(1, Ordering::Relaxed);
        let (accepted, requests) = (accepted.clone(), requests.clone());
        hyper::service::service_fn(move |req: Request<Incoming>| {
            requests.fetch_add(1, Ordering::Relaxed);
            let json = (req.uri().path() == "/stats").then(|| {
                format!(
                    "{{\"accepted\":{},\"requests\":{}}}",
                    accepted.load(Ordering::Relaxed),
                    requests.load(Ordering::Relaxed)
                )
            });
            async move { Ok::<_, Infallible>(route(req, json).await) }
        })
    };
    support::serve_plain(listener, service_for, shutdown_signal()).await;
    Ok(())
}

/// `--park-after`: a duration, or never.
#[derive(Clone, Copy, Debug)]
struct ParkAfter(Option<Duration>);

/// `off`, or a duration.
fn parse_park_after(text: &str) -> Result<ParkAfter, String> {
    if text.trim() == "off" {
        return Ok(ParkAfter(None));
    }
    parse_duration(text).map(|d| ParkAfter(Some(d)))
}

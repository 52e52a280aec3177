//! Soak: a bounded run of mixed traffic against the crate's server through the crate's client,
//! after which nothing has grown and nothing is lost.
//!
//! The mix, from 8 workers chosen at random per step (a seeded xorshift, so a run can be
//! repeated): keep-alive GETs, slow GETs, POSTs with a body, streamed responses dropped after
//! their first chunk, requests aborted by the client after a random delay (the handler is then
//! dropped on the server), short raw connections with `Connection: close`, and idle gaps that
//! cross the server's idle timeout (300 ms, not advertised, so the server closes idle
//! connections under the client: the idle race, with its retries and `StaleNotRetried` errors).
//! The server also ends each connection after 50 requests.
//!
//! Length: 10 s by default; `KEEPALIVE_SOAK_SECS=N` runs N seconds. Every step is bounded in
//! time; the loop is bounded by the duration and by a step count.
//!
//! What it proves, comparing a baseline taken after a 1 s warm-up round (once both ends are
//! quiet: no connection open) with the same measures at the end (quiet again):
//!
//! - nothing is lost: every request got its response or a typed error, none hung (each has a
//!   15 s bound), and the client never waited for a pool place (`PoolTimeout`) nor failed to
//!   connect;
//! - descriptors of this process: at most 4 more than the baseline;
//! - CLOSE_WAIT sockets on the test's address: none, on either end;
//! - resident memory (`VmRSS`): at most 16 MiB more than the baseline (room for allocator
//!   caches; it bounds a leak to about 20 KiB per connection over the ~800 connections of a
//!   10 s run, tighter over longer runs);
//! - pool sizes: no idle connection left, and every place of the per-host limit (16) is back:
//!   a burst of 16 concurrent slow requests is served on 16 connections at once;
//! - the server: no connection active or idle.
//!
//! The figures are printed as one JSON line (RELIABILITY.md records one run).

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Request;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Bytes;
use keepalive::client::{Client, ClientConfig, ErrorKind};
use keepalive::ServerConfig;
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const WORKERS: u64 = 8;
const MAX_PER_HOST: usize = 16;
/// A bound on any one step: a request that takes longer is lost.
const STEP_BOUND: Duration = Duration::from_secs(15);

/// Outcomes of every step, by kind.
#[derive(Default)]
struct Tally {
    attempts: AtomicU64,
    ok: AtomicU64,
    aborted: AtomicU64,
    short_connections: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Tally {
    fn error(&self, kind: String) {
        *self.errors.lock().unwrap().entry(kind).or_default() += 1;
    }

    fn errors(&self) -> BTreeMap<String, u64> {
        self.errors.lock().unwrap().clone()
    }
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// One step of the mix.
async fn step(client: &Client, addr: std::net::SocketAddr, tally: &Tally, rng: &mut u64) {
    let choice = xorshift(rng) % 100;
    let base = format!("http://{addr}");
    let outcome: Result<(), String> = match choice {
        // Keep-alive GETs.
        0..=39 => get_body(client, format!("{base}/")).await,
        // Slow GETs.
        40..=54 => get_body(client, format!("{base}/slow?ms={}", xorshift(rng) % 50)).await,
        // POSTs with a body (not retried when they meet a connection the server closed).
        55..=64 => {
            let body = Bytes::from(vec![b'p'; (xorshift(rng) % 4096) as usize]);
            let request = Request::post(format!("{base}/echo"))
                .body(Full::new(body.clone()))
                .unwrap();
            match client.request(request).await {
                Err(e) => Err(format!("client: {:?}", e.kind())),
                Ok(response) => match response.into_body().collect().await {
                    Ok(echo) => {
                        assert_eq!(echo.to_bytes(), body, "the echo differs from the body sent");
                        Ok(())
                    }
                    Err(e) => Err(format!("body: {e}")),
                },
            }
        }
        // A streamed response dropped after its first chunk (the connection is in doubt).
        65..=71 => {
            let request = Request::get(format!("{base}/stream"))
                .body(Empty::<Bytes>::new())
                .unwrap();
            match client.request(request).await {
                Err(e) => Err(format!("client: {:?}", e.kind())),
                Ok(response) => {
                    let mut body = response.into_body();
                    match body.frame().await {
                        Some(Err(e)) => Err(format!("body: {e}")),
                        _ => {
                            tally.aborted.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                    }
                }
            }
        }
        // A request aborted by the client after a random delay.
        72..=81 => {
            let wait = Duration::from_millis(xorshift(rng) % 60);
            let url = format!("{base}/slow?ms={}", xorshift(rng) % 100);
            match tokio::time::timeout(wait, get_body(client, url)).await {
                Ok(result) => result,
                Err(_) => {
                    tally.aborted.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
        // A short raw connection.
        82..=91 => {
            tally.short_connections.fetch_add(1, Ordering::Relaxed);
            short_connection(addr).await
        }
        // An idle gap, sometimes past the server's idle timeout (part of the scenario).
        _ => {
            tokio::time::sleep(Duration::from_millis(xorshift(rng) % 450)).await;
            return;
        }
    };
    tally.attempts.fetch_add(1, Ordering::Relaxed);
    match outcome {
        Ok(()) => {
            tally.ok.fetch_add(1, Ordering::Relaxed);
        }
        Err(kind) => tally.error(kind),
    }
}

async fn get_body(client: &Client, url: String) -> Result<(), String> {
    let request = Request::get(url).body(Empty::<Bytes>::new()).unwrap();
    match client.request(request).await {
        Err(e) => Err(format!("client: {:?}", e.kind())),
        Ok(response) => {
            assert_eq!(response.status(), 200);
            response
                .into_body()
                .collect()
                .await
                .map(|_| ())
                .map_err(|e| format!("body: {e}"))
        }
    }
}

async fn short_connection(addr: std::net::SocketAddr) -> Result<(), String> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("raw connect: {:?}", e.kind()))?;
    stream
        .write_all(get("/", "Connection: close\r\n").as_bytes())
        .await
        .map_err(|e| format!("raw write: {:?}", e.kind()))?;
    let response = read_response(&mut stream, &mut Vec::new())
        .await
        .map_err(|e| format!("raw read: {:?}", e.kind()))?;
    assert_eq!(response.status, 200);
    Ok(())
}

/// Runs the mix for `duration` (at most 200,000 steps per worker); panics on a lost request.
async fn run_mix(
    client: &Client,
    addr: std::net::SocketAddr,
    tally: &Arc<Tally>,
    duration: Duration,
    seed: u64,
) {
    let deadline = tokio::time::Instant::now() + duration;
    let workers: Vec<_> = (0..WORKERS)
        .map(|worker| {
            let (client, tally) = (client.clone(), tally.clone());
            tokio::spawn(async move {
                let mut rng = seed ^ (worker + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                for _ in 0..200_000 {
                    if tokio::time::Instant::now() >= deadline {
                        break;
                    }
                    tokio::time::timeout(STEP_BOUND, step(&client, addr, &tally, &mut rng))
                        .await
                        .expect("a request neither answered nor failed: lost");
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
}

/// What is measured before and after.
#[derive(Debug, Clone, Copy)]
struct Measure {
    fds: usize,
    close_wait: usize,
    rss_kib: u64,
    pool_idle: usize,
}

fn measure(server: &TestServer, client: &Client) -> Measure {
    let fds = std::fs::read_dir("/proc/self/fd").unwrap().count();
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    let uri: http::Uri = format!("http://{}/", server.addr).parse().unwrap();
    Measure {
        fds,
        close_wait: server.server_side().close_wait() + server.client_side().close_wait(),
        rss_kib,
        pool_idle: client.idle_connections(&uri),
    }
}

/// Waits until both ends are quiet: no server connection, nothing pooled.
async fn quiesce(server: &TestServer, client: &Client) {
    let uri: http::Uri = format!("http://{}/", server.addr).parse().unwrap();
    wait_until("both ends are quiet", Duration::from_secs(15), || {
        let s = server.stats.snapshot();
        s.active == 0 && client.idle_connections(&uri) == 0
    })
    .await;
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_mixed_traffic_leaves_nothing_behind() {
    let secs: u64 = std::env::var("KEEPALIVE_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let config = ServerConfig::new()
        .idle_timeout(Duration::from_millis(300))
        .max_requests(50);
    let server = TestServer::start(config).await;
    let client = Client::new(
        ClientConfig::new()
            .max_per_host(Some(MAX_PER_HOST))
            .pool_wait_timeout(Duration::from_secs(10)),
    );

    // Warm-up round, then the baseline once both ends are quiet.
    let warm_up = Arc::new(Tally::default());
    run_mix(&client, server.addr, &warm_up, Duration::from_secs(1), 1).await;
    quiesce(&server, &client).await;
    let before = measure(&server, &client);
    let server_before = server.stats.snapshot();
    let client_before = client.stats().snapshot();

    let tally = Arc::new(Tally::default());
    let started = std::time::Instant::now();
    run_mix(&client, server.addr, &tally, Duration::from_secs(secs), 2).await;
    let ran = started.elapsed();
    quiesce(&server, &client).await;
    wait_until("no CLOSE_WAIT on either end", SOON, || {
        server.server_side().close_wait() + server.client_side().close_wait() == 0
    })
    .await;
    let after = measure(&server, &client);
    let server_after = server.stats.snapshot();
    let client_after = client.stats().snapshot();

    let errors = tally.errors();
    let attempts = tally.attempts.load(Ordering::Relaxed);
    let ok = tally.ok.load(Ordering::Relaxed);
    let failed: u64 = errors.values().sum();
    let opened = client_after.opened - client_before.opened;
    let short = tally.short_connections.load(Ordering::Relaxed);
    println!(
        "{{\"seconds\":{:.1},\"requests\":{attempts},\"ok\":{ok},\"aborted_by_client\":{},\"errors\":{},\"error_kinds\":{:?},\"client_connections\":{opened},\"short_connections\":{short},\"server_accepted\":{},\"server_requests\":{},\"retries\":{},\"fds\":[{},{}],\"close_wait\":[{},{}],\"rss_kib\":[{},{}],\"pool_idle\":[{},{}]}}",
        ran.as_secs_f64(),
        tally.aborted.load(Ordering::Relaxed),
        failed,
        errors,
        server_after.accepted - server_before.accepted,
        server_after.requests - server_before.requests,
        client_after.retries - client_before.retries,
        before.fds,
        after.fds,
        before.close_wait,
        after.close_wait,
        before.rss_kib,
        after.rss_kib,
        before.pool_idle,
        after.pool_idle,
    );
    println!("server: {}", server_after.to_json());
    println!("client: {}", client_after.to_json());

    // Nothing lost: every attempt got its response or a typed error (a hang panics above).
    assert_eq!(ok + failed, attempts);
    assert!(ok > 0);
    for kind in errors.keys() {
        assert_ne!(
            kind,
            &format!("client: {:?}", ErrorKind::PoolTimeout),
            "{errors:?}"
        );
        assert_ne!(
            kind,
            &format!("client: {:?}", ErrorKind::Connect),
            "{errors:?}"
        );
        assert!(!kind.starts_with("raw connect"), "{errors:?}");
    }
    // Nothing grows.
    assert!(
        after.fds <= before.fds + 4,
        "descriptors grew: {before:?} -> {after:?}"
    );
    assert_eq!(after.close_wait, 0, "{after:?}");
    assert!(
        after.rss_kib <= before.rss_kib + 16 * 1024,
        "resident memory grew: {before:?} -> {after:?}"
    );
    assert_eq!(after.pool_idle, 0, "{after:?}");
    let s = server.stats.snapshot();
    assert_eq!((s.active, s.idle), (0, 0), "{}", s.to_json());

    // Every pool place is back: 16 slow requests at once run on 16 connections at once.
    let opened_before_burst = client.stats().snapshot().opened;
    let burst: Vec<_> = (0..MAX_PER_HOST)
        .map(|_| {
            let client = client.clone();
            let url = format!("http://{}/slow?ms=300", server.addr);
            tokio::spawn(async move { get_body(&client, url).await })
        })
        .collect();
    for request in burst {
        within("a burst request", request)
            .await
            .unwrap()
            .expect("the burst is served");
    }
    assert_eq!(
        client.stats().snapshot().opened - opened_before_burst,
        MAX_PER_HOST as u64,
        "every place of the per-host limit came back"
    );
}

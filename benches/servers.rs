//! The server side end to end on loopback: the crate's `serve` (with its layer) against plain
//! hyper-util and `axum::serve`, under the same keep-alive load from in-process clients
//! (dedicated hyper HTTP/1 connections, each looping requests).
//!
//! ```text
//! cargo bench --bench servers                 # 3 interleaved rounds of 3 s per server
//! cargo bench --bench servers -- --quick      # a smoke run for CI
//! ```
//!
//! Each server runs on its own runtime thread (one worker), the clients on another (one
//! worker): the 2 cores are split the same way for all.

#![allow(missing_docs)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Server {
    Keepalive,
    HyperUtil,
    Axum,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Keepalive => "keepalive::serve + layer",
            Server::HyperUtil => "hyper-util (plain)",
            Server::Axum => "axum::serve",
        }
    }
}

async fn hello(_req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(
        b"hello, world!",
    ))))
}

/// Starts `server` on its own runtime thread; returns its address.
fn start(server: Server) -> SocketAddr {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        runtime.block_on(async move {
            match server {
                Server::Keepalive => {
                    let service = tower::ServiceBuilder::new()
                        .layer(keepalive::KeepAliveLayer::new())
                        .service_fn(hello);
                    let config = keepalive::ServerConfig::new().max_requests(u32::MAX);
                    let _ = keepalive::serve(listener, service).config(config).await;
                }
                Server::HyperUtil => loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(async move {
                        let builder = hyper_util::server::conn::auto::Builder::new(
                            hyper_util::rt::TokioExecutor::new(),
                        );
                        let _ = builder
                            .serve_connection(
                                TokioIo::new(stream),
                                hyper::service::service_fn(hello),
                            )
                            .await;
                    });
                },
                Server::Axum => {
                    let app = axum::Router::new()
                        .route("/", axum::routing::get(|| async { "hello, world!" }));
                    let _ = axum::serve(listener, app).await;
                }
            }
        });
    });
    addr
}

/// `connections` dedicated HTTP/1 connections looping GET / for `duration`; requests/s.
async fn load(addr: SocketAddr, connections: usize, duration: Duration) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (done, stop) = (done.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
                    .await
                    .unwrap();
            tokio::spawn(conn);
            while !stop.load(Ordering::Relaxed) {
                let request = Request::get("/")
                    .header("host", "bench")
                    .body(Empty::new())
                    .unwrap();
                let response = sender.send_request(request).await.unwrap();
                response.into_body().collect().await.unwrap();
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await; // warm-up
    let start_count = done.load(Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(duration).await;
    let count = done.load(Ordering::Relaxed) - start_count;
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    count as f64 / elapsed.as_secs_f64()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (rounds, duration) = if quick {
        (1, Duration::from_millis(300))
    } else {
        (3, Duration::from_secs(3))
    };
    let servers = [Server::Keepalive, Server::HyperUtil, Server::Axum];
    let addrs: Vec<SocketAddr> = servers.iter().map(|&s| start(s)).collect();
    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    println!("servers, keep-alive load from dedicated hyper connections, {rounds} round(s) of {duration:?}");
    for connections in [1usize, 32] {
        let mut results: Vec<Vec<f64>> = vec![Vec::new(); servers.len()];
        for _ in 0..rounds {
            for (i, &addr) in addrs.iter().enumerate() {
                results[i].push(client.block_on(load(addr, connections, duration)));
            }
        }
        let medians: Vec<f64> = results.iter_mut().map(|r| median(r)).collect();
        println!("\nconcurrency {connections}");
        println!(
            "{:<28} {:>12} {:>18}",
            "server", "req/s", "ratio to hyper-util"
        );
        for (i, server) in servers.iter().enumerate() {
            println!(
                "{:<28} {:>12.0} {:>18.3}",
                server.name(),
                medians[i],
                medians[i] / medians[1]
            );
        }
    }
}

//! The pool's hot path: checkout and return of an idle connection, uncontended and with 32
//! tasks at once, against hyper-util's public pool (`client::pool::cache`) doing the same.
//! (hyper-util's legacy pool behind its `Client` is private; the end-to-end comparison with
//! that client is in `benches/clients.rs`.)
//!
//! Ours does more per return: it arms an event-driven watch for the server's FIN on the idle
//! connection (a small task), which hyper-util's cache does not.
//!
//! ```text
//! cargo bench --bench pool
//! ```

#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use keepalive::client::{Checkout, Pool, PoolConfig, Reuse};
use tokio::net::{TcpListener, TcpStream};
use tower::{Service, ServiceExt};

/// Connected client streams (the server ends are kept open in `held`).
async fn streams(n: usize) -> (Vec<TcpStream>, Vec<TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut clients = Vec::new();
    let mut held = Vec::new();
    for _ in 0..n {
        clients.push(TcpStream::connect(addr).await.unwrap());
        held.push(listener.accept().await.unwrap().0);
    }
    (clients, held)
}

/// Hands out prepared streams, once each: the hyper-util cache is filled through it.
#[derive(Clone)]
struct Prepared(Arc<Mutex<Vec<TcpStream>>>);

impl Service<()> for Prepared {
    type Response = TcpStream;
    type Error = Infallible;
    type Future = Ready<Result<TcpStream, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: ()) -> Self::Future {
        let stream = self.0.lock().unwrap().pop();
        ready(Ok(
            stream.expect("the cache was filled: a checkout never misses")
        ))
    }
}

/// Runs `tasks` tasks each doing `per_task` checkout+return cycles of `cycle`; total time.
async fn contended<F, Fut>(tasks: usize, per_task: u64, cycle: F) -> Duration
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let cycle = cycle.clone();
            tokio::spawn(async move {
                for _ in 0..per_task {
                    cycle().await;
                }
            })
        })
        .collect();
    for handle in handles {
        handle.await.unwrap();
    }
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("pool checkout+return");

    for &tasks in &[1usize, 32] {
        // keepalive::client::Pool
        let (clients, _held_ours) = rt.block_on(streams(tasks));
        let pool: Pool<u8, TcpStream> = rt.block_on(async {
            let pool = Pool::new(PoolConfig::new().max_idle_per_key(64));
            for stream in clients {
                pool.put(0, stream, Reuse::default());
            }
            pool
        });
        group.bench_function(format!("keepalive/{tasks} tasks"), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let pool = pool.clone();
                async move {
                    let per_task = (iters / tasks as u64).max(1);
                    let elapsed = contended(tasks, per_task, move || {
                        let pool = pool.clone();
                        async move {
                            match pool.checkout_or_slot(&0).await.unwrap() {
                                Checkout::Reused(pooled) => {
                                    let (io, history) = pooled.into_parts();
                                    pool.put_back(0, io, history, Reuse::default());
                                }
                                _ => panic!("the pool was pre-filled"),
                            }
                        }
                    })
                    .await;
                    elapsed / (per_task * tasks as u64) as u32 * iters as u32
                }
            })
        });

        // hyper-util's client::pool::cache
        let (clients, _held_theirs) = rt.block_on(streams(tasks));
        let cache = rt.block_on(async {
            let mut cache = hyper_util::client::pool::cache::builder()
                .build(Prepared(Arc::new(Mutex::new(clients))));
            let mut out = Vec::new();
            for _ in 0..tasks {
                out.push(cache.ready().await.unwrap().call(()).await.unwrap());
            }
            drop(out); // all back in the cache
            cache
        });
        group.bench_function(format!("hyper-util cache/{tasks} tasks"), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let cache = cache.clone();
                async move {
                    let per_task = (iters / tasks as u64).max(1);
                    let elapsed = contended(tasks, per_task, move || {
                        let mut cache = cache.clone();
                        async move {
                            let cached = cache.ready().await.unwrap().call(()).await.unwrap();
                            drop(cached);
                        }
                    })
                    .await;
                    elapsed / (per_task * tasks as u64) as u32 * iters as u32
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

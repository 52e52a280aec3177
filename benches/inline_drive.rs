//! A diagnostic for the client's design: what does it cost to drive hyper's HTTP/1 client
//! connection from the request's own task (as the crate's `Client` does), with a fresh hyper
//! state per request (what a pool of bare sockets implies) or kept across requests, against
//! the usual shape (one task per connection, `SendRequest` from the request task)?
//!
//! ```text
//! cargo bench --bench inline_drive
//! ```
//!
//! One hyper server on its own one-worker runtime; N tasks on another, each with its own
//! connection, loop GET / for 2 s per mode, three rounds.

#![allow(missing_docs)]
use http::Request;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::{Connection, SendRequest};
use hyper_util::rt::TokioIo;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

async fn hello(
    _r: Request<Incoming>,
) -> Result<http::Response<Full<Bytes>>, std::convert::Infallible> {
    Ok(http::Response::new(Full::new(Bytes::from_static(
        b"hello, world!",
    ))))
}

fn server() -> SocketAddr {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let l = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        rt.block_on(async move {
            loop {
                let (s, _) = l.accept().await.unwrap();
                let _ = s.set_nodelay(true);
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(s), hyper::service::service_fn(hello))
                        .await;
                });
            }
        })
    });
    addr
}

/// One GET driven from this task: hyper's connection is polled alongside the response and
/// its body, as the crate's client does.
async fn get_inline(tx: &mut SendRequest<Empty<Bytes>>, conn: &mut Conn) {
    poll_fn(|cx| {
        let _ = conn.poll_without_shutdown(cx);
        tx.poll_ready(cx)
    })
    .await
    .unwrap();
    let req = Request::get("/")
        .header("host", "x")
        .body(Empty::new())
        .unwrap();
    let mut fut = std::pin::pin!(tx.send_request(req));
    let resp = poll_fn(|cx| {
        let _ = conn.poll_without_shutdown(cx);
        fut.as_mut().poll(cx)
    })
    .await
    .unwrap();
    let mut body = resp.into_body();
    while poll_fn(|cx| {
        let _ = conn.poll_without_shutdown(cx);
        std::pin::Pin::new(&mut body).poll_frame(cx)
    })
    .await
    .is_some()
    {}
}

type Conn = Connection<TokioIo<TcpStream>, Empty<Bytes>>;

/// One request on a bare socket: a fresh hyper state, driven inline, then the socket back.
async fn one_inline_fresh(io: TcpStream) -> TcpStream {
    let (mut tx, mut conn) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(io))
            .await
            .unwrap();
    get_inline(&mut tx, &mut conn).await;
    drop(tx);
    poll_fn(|cx| conn.poll_without_shutdown(cx)).await.unwrap();
    conn.into_parts().io.into_inner()
}

use http_body::Body;
use std::future::Future;

/// Requests/s of `c` tasks for `d`. Mode 0: inline, fresh state per request; 1: a task per
/// connection (dedicated); 2: inline, state kept.
async fn run(addr: SocketAddr, c: usize, d: Duration, mode: u8) -> f64 {
    let end = Instant::now() + d;
    let mut tasks = vec![];
    for _ in 0..c {
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            let s = TcpStream::connect(addr).await.unwrap();
            s.set_nodelay(true).unwrap();
            if mode == 0 {
                let mut io = s;
                while Instant::now() < end {
                    io = one_inline_fresh(io).await;
                    n += 1;
                }
            } else if mode == 2 {
                let (mut tx, mut conn) =
                    hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(s))
                        .await
                        .unwrap();
                while Instant::now() < end {
                    get_inline(&mut tx, &mut conn).await;
                    n += 1;
                }
            } else {
                let (mut tx, conn) =
                    hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(s))
                        .await
                        .unwrap();
                tokio::spawn(conn);
                while Instant::now() < end {
                    tx.ready().await.unwrap();
                    let r = tx
                        .send_request(
                            Request::get("/")
                                .header("host", "x")
                                .body(Empty::new())
                                .unwrap(),
                        )
                        .await
                        .unwrap();
                    r.into_body().collect().await.unwrap();
                    n += 1;
                }
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total as f64 / d.as_secs_f64()
}

fn main() {
    let addr = server();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    for c in [1usize, 32] {
        for round in 0..3 {
            let a = rt.block_on(run(addr, c, Duration::from_secs(2), 0));
            let k = rt.block_on(run(addr, c, Duration::from_secs(2), 2));
            let b = rt.block_on(run(addr, c, Duration::from_secs(2), 1));
            println!("c={c} round {round}: inline+fresh {a:.0}  inline+kept {k:.0}  dedicated conn task {b:.0}  fresh/ded {:.2} kept/ded {:.2}", a / b, k / b);
        }
    }
}

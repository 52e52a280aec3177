//! CPU that a client spends on a large response head trickled a byte per write: the crate's
//! client against hyper's client connection, in the same run. A head parsed anew after every
//! read costs time quadratic in its size; one scanned once costs linear time.
//!
//! ```text
//! cargo bench --bench trickle                 # a 252 KiB head, 3 rounds per client
//! cargo bench --bench trickle -- --quick      # a 16 KiB head, 1 round (CI smoke)
//! ```
//!
//! The trickling server runs on its own thread; the client's CPU is its thread's CPU time
//! (`CLOCK_THREAD_CPUTIME_ID`), so the server's writes are not counted.

#![allow(missing_docs)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use keepalive::client::{Client, ClientConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A response head of about `size` bytes in 60 header lines, then an empty body.
fn head(size: usize) -> Vec<u8> {
    let mut head = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n".to_vec();
    let line = size / 60;
    for i in 0..60 {
        head.extend_from_slice(format!("x-h{i:02}: ").as_bytes());
        head.extend(std::iter::repeat_n(b'v', line.saturating_sub(10)));
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// A server on its own thread that answers each connection's first request with `head`, one
/// byte per write.
fn trickle_server(head: Vec<u8>) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            while let Ok((mut stream, _)) = listener.accept().await {
                stream.set_nodelay(true).unwrap();
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request).await;
                for byte in &head {
                    if stream.write_all(std::slice::from_ref(byte)).await.is_err() {
                        break;
                    }
                }
                let mut rest = [0u8; 64];
                while matches!(stream.read(&mut rest).await, Ok(n) if n > 0) {}
            }
        });
    });
    addr
}

#[cfg(target_os = "linux")]
fn thread_cpu() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    #[allow(unsafe_code)] // clock_gettime writes only into the timespec given
    unsafe {
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now);
    }
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

#[cfg(not(target_os = "linux"))]
fn thread_cpu() -> Duration {
    Duration::ZERO
}

async fn crate_client(addr: SocketAddr) {
    let client = Client::new(ClientConfig::new());
    let request = http::Request::get(format!("http://{addr}/"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = client.request(request).await.expect("the crate's client");
    response.into_body().collect().await.unwrap();
}

async fn hyper_client(addr: SocketAddr) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let request = http::Request::get("/")
        .header("host", addr.to_string())
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = send.send_request(request).await.expect("hyper's client");
    response.into_body().collect().await.unwrap();
}

fn main() {
    let quick = std::env::args().any(|arg| arg == "--quick");
    let (size, rounds) = if quick {
        (16 * 1024, 1)
    } else {
        (252 * 1024, 3)
    };
    let head = head(size);
    let addr = trickle_server(head.clone());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "a {} byte response head, one byte per server write",
        head.len()
    );
    for round in 1..=rounds {
        let mut cpu = [Duration::ZERO; 2];
        for (i, name) in ["keepalive::client", "hyper client conn"]
            .iter()
            .enumerate()
        {
            let (start, wall) = (thread_cpu(), Instant::now());
            runtime.block_on(async {
                match i {
                    0 => crate_client(addr).await,
                    _ => hyper_client(addr).await,
                }
            });
            cpu[i] = thread_cpu() - start;
            println!(
                "round {round}: {name:<18} client CPU {:>8.1} ms, wall {:>8.1} ms",
                cpu[i].as_secs_f64() * 1e3,
                wall.elapsed().as_secs_f64() * 1e3
            );
        }
        println!(
            "round {round}: CPU ratio keepalive/hyper {:.2}",
            cpu[0].as_secs_f64() / cpu[1].as_secs_f64().max(1e-9)
        );
    }
}

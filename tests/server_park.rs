//! Idle keep-alive connections are parked (hyper's HTTP state dropped, the bare socket kept)
//! and rebuilt by their next request without losing or reordering a byte. A parked connection
//! still notices the client's FIN at once, still times out, still drains on shutdown, and can
//! still be upgraded; a connection hyper still owes bytes to is never taken apart.
//!
//! The sleeps here are idle gaps longer than `park_after` (the scenario), never waits for an
//! outcome: those go through `wait_until`/`within`.

mod support;

use std::convert::Infallible;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use keepalive::{CloseReason, ServerConfig};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PARK_AFTER: Duration = Duration::from_millis(30);

/// An idle gap that lets a connection park (many times `PARK_AFTER`).
const IDLE_GAP: Duration = Duration::from_millis(300);

fn parking() -> ServerConfig {
    patient().park_after(Some(PARK_AFTER))
}

#[tokio::test]
async fn idle_connection_is_parked_and_its_next_request_rebuilds_it() {
    let server = TestServer::start(parking()).await;
    let mut stream = server.connect().await;
    for round in 1..=3u64 {
        let response = request(&mut stream, &get("/", "")).await;
        assert_eq!(response.status, 200);
        assert_eq!(response.body, b"hello, world!");
        assert!(!response.says_close());
        wait_until("the idle connection is parked", SOON, || {
            server.stats.snapshot().parked == 1
        })
        .await;
        let stats = server.stats.snapshot();
        assert_eq!(stats.unparked, round, "and once for the first request");
        assert_eq!(stats.accepted, 1, "one connection throughout");
    }
    // A request with a body, after the park.
    let response = request(
        &mut stream,
        "POST /echo HTTP/1.1\r\nHost: t\r\ncontent-length: 11\r\n\r\nhello again",
    )
    .await;
    assert_eq!(response.body, b"hello again");
    let stats = server.stats.snapshot();
    assert_eq!(stats.unparked, 4);
    assert_eq!(stats.requests, 4);
}

#[tokio::test]
async fn http10_keep_alive_survives_the_park() {
    let server = TestServer::start(parking()).await;
    let mut stream = server.connect().await;
    let raw = "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    let first = request(&mut stream, raw).await;
    assert_eq!(first.header("connection"), Some("keep-alive"));
    wait_until("parked", SOON, || server.stats.snapshot().parked == 1).await;
    let second = request(&mut stream, raw).await;
    assert_eq!(second.status, 200);
    assert_eq!(second.version, "HTTP/1.0");
    assert_eq!(second.header("connection"), Some("keep-alive"));
    assert_eq!(server.stats.snapshot().unparked, 2);
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn client_fin_on_a_parked_connection_is_noticed_at_once() {
    let server = TestServer::start(parking().idle_timeout(Duration::from_secs(60))).await;
    let mut stream = server.connect().await;
    request(&mut stream, &get("/", "")).await;
    wait_until("parked", SOON, || server.stats.snapshot().parked == 1).await;
    drop(stream);
    wait_until("the server closed the parked connection", SOON, || {
        server.stats.snapshot().closed(CloseReason::PeerFin) == 1
    })
    .await;
    let stats = server.stats.snapshot();
    assert_eq!(stats.parked, 0);
    assert_eq!(stats.client_closed_first, 1);
    wait_until("no CLOSE_WAIT on the server", SOON, || {
        server.server_side().close_wait() == 0
    })
    .await;
}

#[tokio::test]
async fn parked_connection_still_times_out() {
    let server = TestServer::start(parking().idle_timeout(Duration::from_millis(400))).await;
    let mut stream = server.connect().await;
    request(&mut stream, &get("/", "")).await;
    wait_until("parked", SOON, || server.stats.snapshot().parked == 1).await;
    expect_eof(&mut stream).await;
    let stats = server.stats.snapshot();
    assert_eq!(stats.closed(CloseReason::IdleTimeout), 1);
    assert_eq!(stats.parked, 0);
    assert_eq!(stats.unparked, 1, "the first request unparked it");
}

#[tokio::test]
async fn partial_pipelined_head_is_kept_across_the_park_point() {
    let server = TestServer::start(parking()).await;
    let mut stream = server.connect().await;
    // One whole request and the first half of the next one, in one write.
    let second = "POST /echo HTTP/1.1\r\nHost: t\r\ncontent-length: 6\r\n\r\nsecond";
    let (head, tail) = second.split_at(20);
    stream
        .write_all(format!("{}{head}", get("/", "")).as_bytes())
        .await
        .unwrap();
    let mut leftover = Vec::new();
    let first = within("first response", read_response(&mut stream, &mut leftover))
        .await
        .unwrap();
    assert_eq!(first.body, b"hello, world!");
    // Idle long enough for the park timer to fire while hyper holds half a head.
    tokio::time::sleep(IDLE_GAP).await;
    stream.write_all(tail.as_bytes()).await.unwrap();
    let response = within("second response", read_response(&mut stream, &mut leftover))
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"second");
    assert_eq!(server.stats.snapshot().requests, 2);
}

/// A 4 MiB body the client does not read for a while: hyper still owes most of it when the
/// park timer fires, so the connection must not be taken apart.
#[tokio::test]
async fn response_still_being_written_is_never_parked() {
    const SIZE: usize = 4 * 1024 * 1024;
    let service = tower::service_fn(|_req: Request<Incoming>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(vec![7u8; SIZE]))))
    });
    let server = TestServer::start_with(parking(), service).await;
    let mut stream = server.connect().await;
    stream.write_all(get("/", "").as_bytes()).await.unwrap();
    tokio::time::sleep(IDLE_GAP).await;
    let mut leftover = Vec::new();
    let response = within(
        "the big response",
        read_response(&mut stream, &mut leftover),
    )
    .await
    .unwrap();
    assert_eq!(response.body.len(), SIZE);
    assert!(response.body.iter().all(|&b| b == 7));
    let again = within("a second request", read_response_after(&mut stream)).await;
    assert_eq!(again.body.len(), SIZE);
}

async fn read_response_after(stream: &mut tokio::net::TcpStream) -> RawResponse {
    stream.write_all(get("/", "").as_bytes()).await.unwrap();
    let mut leftover = Vec::new();
    read_response(stream, &mut leftover).await.unwrap()
}

#[tokio::test]
async fn parked_connections_are_drained_on_shutdown() {
    let config = parking().drain_grace(Duration::from_secs(2));
    let mut server = TestServer::start(config).await;
    let mut late = server.connect().await;
    let mut silent = server.connect().await;
    request(&mut late, &get("/", "")).await;
    request(&mut silent, &get("/", "")).await;
    wait_until("both parked", SOON, || server.stats.snapshot().parked == 2).await;
    server.begin_shutdown();
    // A request that was on its way is answered, with a close.
    let response = within("late request", async {
        late.write_all(get("/", "").as_bytes()).await.unwrap();
        let mut leftover = Vec::new();
        read_response(&mut late, &mut leftover).await.unwrap()
    })
    .await;
    assert_eq!(response.status, 200);
    assert!(response.says_close());
    drop(late);
    // The silent one is closed when the grace ends (2 s), within a generous deadline.
    let rest = tokio::time::timeout(Duration::from_secs(20), silent.read(&mut [0u8; 64]))
        .await
        .expect("the silent parked connection was not closed")
        .unwrap();
    assert_eq!(rest, 0);
    within("the server ends", &mut server.task)
        .await
        .unwrap()
        .unwrap();
    let stats = server.stats.snapshot();
    // One answered with `Connection: close`, one closed when the grace ended.
    assert_eq!(stats.closed(CloseReason::Drain), 2);
    assert_eq!(stats.closed(CloseReason::Forced), 0);
    assert_eq!(stats.parked, 0);
}

/// `Upgrade: echo` answered with 101, then the connection echoes bytes.
async fn upgrade_service(
    mut req: Request<Incoming>,
) -> Result<Response<BoxBody<Bytes, Infallible>>, Infallible> {
    if !req.headers().contains_key(http::header::UPGRADE) {
        return Ok(Response::new(Full::new(Bytes::from("plain")).boxed()));
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            let mut io = TokioIo::new(upgraded);
            let mut buf = [0u8; 64];
            while let Ok(n) = io.read(&mut buf).await {
                if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    });
    let mut response = Response::new(Empty::new().boxed());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    response
        .headers_mut()
        .insert(http::header::UPGRADE, "echo".parse().unwrap());
    response
        .headers_mut()
        .insert(http::header::CONNECTION, "upgrade".parse().unwrap());
    Ok(response)
}

#[tokio::test]
async fn parked_connection_can_still_be_upgraded() {
    let server = TestServer::start_with(parking(), tower::service_fn(upgrade_service)).await;
    let mut stream = server.connect().await;
    assert_eq!(request(&mut stream, &get("/", "")).await.body, b"plain");
    wait_until("parked", SOON, || server.stats.snapshot().parked == 1).await;
    stream
        .write_all(get("/", "Connection: upgrade\r\nUpgrade: echo\r\n").as_bytes())
        .await
        .unwrap();
    let mut leftover = Vec::new();
    let response = within("101", read_response(&mut stream, &mut leftover))
        .await
        .unwrap();
    assert_eq!(response.status, 101);
    assert!(leftover.is_empty());
    stream.write_all(b"ping through the upgrade").await.unwrap();
    let mut echoed = vec![0u8; b"ping through the upgrade".len()];
    within("echo", stream.read_exact(&mut echoed))
        .await
        .unwrap();
    assert_eq!(echoed, b"ping through the upgrade");
    assert_eq!(server.stats.snapshot().unparked, 2);
}

#[tokio::test]
async fn parking_can_be_turned_off() {
    let server = TestServer::start(patient().park_after(None)).await;
    let mut stream = server.connect().await;
    request(&mut stream, &get("/", "")).await;
    tokio::time::sleep(IDLE_GAP).await;
    assert_eq!(server.stats.snapshot().parked, 0);
    assert_eq!(request(&mut stream, &get("/", "")).await.status, 200);
    assert_eq!(server.stats.snapshot().unparked, 0);
}

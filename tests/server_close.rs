//! Client-first close: after a final `Connection: close` response the server waits for the
//! client's FIN, so TIME_WAIT lands on the client (checked in /proc/net/tcp), and what still
//! arrives is read and discarded so the close never becomes a reset.

mod support;

use std::time::Duration;

use keepalive::{CloseReason, ServerConfig};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CONNECTIONS: usize = 40;

async fn short_connections(server: &TestServer, raw: &str) {
    for _ in 0..CONNECTIONS {
        let mut stream = server.connect().await;
        let response = request(&mut stream, raw).await;
        assert_eq!(response.status, 200);
        assert!(response.says_close());
        // Like curl: close once the response is complete.
        drop(stream);
    }
    wait_until("every connection closed", SOON, || {
        server.stats.snapshot().closed_total() == CONNECTIONS as u64
    })
    .await;
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn connection_close_puts_time_wait_on_the_client() {
    let server = TestServer::start(patient()).await;
    short_connections(&server, &get("/", "Connection: close\r\n")).await;
    wait_until("the client side holds TIME_WAIT", SOON, || {
        server.client_side().time_wait() == CONNECTIONS
    })
    .await;
    let server_side = server.server_side();
    assert_eq!(server_side.time_wait(), 0, "server side: {server_side}");
    assert_eq!(server_side.close_wait(), 0, "server side: {server_side}");
    let stats = server.stats.snapshot();
    assert_eq!(stats.client_closed_first, CONNECTIONS as u64);
    assert_eq!(stats.closed(CloseReason::ClientClose), CONNECTIONS as u64);
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn http10_without_keep_alive_puts_time_wait_on_the_client() {
    let server = TestServer::start(patient()).await;
    short_connections(&server, "GET / HTTP/1.0\r\n\r\n").await;
    wait_until("the client side holds TIME_WAIT", SOON, || {
        server.client_side().time_wait() == CONNECTIONS
    })
    .await;
    assert_eq!(server.server_side().time_wait(), 0);
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn max_requests_close_puts_time_wait_on_the_client() {
    let server = TestServer::start(patient().max_requests(2)).await;
    for _ in 0..10 {
        let mut stream = server.connect().await;
        assert!(!request(&mut stream, &get("/", "")).await.says_close());
        assert!(request(&mut stream, &get("/", "")).await.says_close());
    }
    wait_until("ten closes for max requests", SOON, || {
        server.stats.snapshot().closed(CloseReason::MaxRequests) == 10
    })
    .await;
    wait_until("TIME_WAIT on the client", SOON, || {
        server.client_side().time_wait() == 10
    })
    .await;
    assert_eq!(server.server_side().time_wait(), 0);
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn curl_closes_first_when_present() {
    if curl_version().is_none() {
        eprintln!("curl not installed: skipped");
        return;
    }
    let server = TestServer::start(patient()).await;
    let url = format!("http://{}/", server.addr);
    for args in [&["--http1.0"][..], &["-H", "Connection: close"][..]] {
        for _ in 0..10 {
            let out = run_curl(&[args, &[url.as_str()]].concat()).await;
            assert_eq!(out, b"hello, world!");
        }
    }
    wait_until("twenty connections closed", SOON, || {
        server.stats.snapshot().closed_total() == 20
    })
    .await;
    let stats = server.stats.snapshot();
    assert_eq!(stats.client_closed_first, 20, "{}", stats.to_json());
    assert_eq!(server.server_side().time_wait(), 0);
}

#[tokio::test]
async fn unread_request_body_and_late_requests_never_turn_into_a_reset() {
    // A large body the handler never reads, with Connection: close, and a request after it.
    let body = vec![b'x'; 200 * 1024];
    let server = TestServer::start(patient()).await;
    let stream = server.connect().await;
    let head = format!(
        "POST / HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let read_half = {
        let (mut read_half, mut write_half) = stream.into_split();
        let body = body.clone();
        let writer = tokio::spawn(async move {
            write_half.write_all(head.as_bytes()).await?;
            write_half.write_all(&body).await?;
            write_half.write_all(get("/", "").as_bytes()).await?;
            Ok::<_, std::io::Error>(write_half)
        });
        let mut received = Vec::new();
        let read = within("the response", async {
            let mut buf = [0u8; 4096];
            loop {
                let n = read_half.read(&mut buf).await?;
                received.extend_from_slice(&buf[..n]);
                if n == 0 || find_end(&received) {
                    return Ok::<_, std::io::Error>(());
                }
            }
        })
        .await;
        read.expect("no reset while the response is read");
        let text = String::from_utf8_lossy(&received);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.ends_with("hello, world!"), "{text}");
        let write_half = within("the body is sent in full", writer).await.unwrap();
        write_half.expect("the server kept reading: no reset while sending");
        read_half
    };
    drop(read_half);
    wait_until("closed", SOON, || {
        server.stats.snapshot().closed_total() == 1
    })
    .await;
    assert_eq!(server.stats.snapshot().client_closed_first, 1);
}

fn find_end(received: &[u8]) -> bool {
    received.ends_with(b"hello, world!")
}

#[tokio::test]
async fn client_that_waits_for_the_server_close_is_not_stalled() {
    // Like ab without -k: read until the server closes. The linger ends after a few RTTs
    // (the floor), far below the 1 s linger limit.
    let config = ServerConfig::new().linger(Duration::from_secs(30));
    let server = TestServer::start(config).await;
    let mut stream = server.connect().await;
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let rest = expect_eof(&mut stream).await;
    assert!(String::from_utf8_lossy(&rest).ends_with("hello, world!"));
    wait_until("counted", SOON, || {
        server.stats.snapshot().linger_timeouts == 1
    })
    .await;
    assert_eq!(server.stats.snapshot().server_closed_first, 1);
}

/// A client address that has closed first every time gets the whole linger, not the short
/// RTT-based wait: on a busy machine (here: a client that takes 400 ms to close, twice the
/// floor) it still closes first.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_client_known_to_close_first_gets_the_time_it_takes_to_close() {
    let config = ServerConfig::new()
        .linger_floor(Duration::from_millis(200))
        .linger(Duration::from_secs(5));
    let server = TestServer::start(config).await;
    // It closes promptly at first (well within the 200 ms short wait)...
    for _ in 0..CONNECTIONS {
        let mut stream = server.connect().await;
        let response = request(&mut stream, &get("/", "Connection: close\r\n")).await;
        assert!(response.says_close());
        drop(stream);
    }
    wait_until("the prompt closes are counted", SOON, || {
        server.stats.snapshot().closed_total() == CONNECTIONS as u64
    })
    .await;
    assert_eq!(
        server.stats.snapshot().client_closed_first,
        CONNECTIONS as u64
    );
    // ...then is slow to close: it reads the response, then stays silent for a real gap.
    let mut stream = server.connect().await;
    let response = request(&mut stream, &get("/", "Connection: close\r\n")).await;
    assert!(response.says_close());
    tokio::time::sleep(Duration::from_millis(400)).await;
    drop(stream);
    wait_until("the slow close is counted", SOON, || {
        server.stats.snapshot().closed_total() == CONNECTIONS as u64 + 1
    })
    .await;
    let stats = server.stats.snapshot();
    assert_eq!(stats.server_closed_first, 0, "{}", stats.to_json());
    assert_eq!(stats.linger_timeouts, 0);
}

//! The idle timeout, the header timeout (counted from a head's first byte, so it does not cut
//! the idle gap), and the connection limit.

mod support;

use std::time::Duration;

use keepalive::{CloseReason, ServerConfig};
use support::*;
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn idle_connection_is_closed_after_the_idle_timeout() {
    let config = ServerConfig::new().idle_timeout(Duration::from_millis(300));
    let server = TestServer::start(config).await;
    let mut stream = server.connect().await;
    let response = request(&mut stream, &get("/", "")).await;
    // Shorter than a second: not advertised as timeout=0.
    assert_eq!(response.header("keep-alive"), Some("max=999"));
    expect_eof(&mut stream).await;
    wait_until("counted as an idle timeout", SOON, || {
        server.stats.snapshot().closed(CloseReason::IdleTimeout) == 1
    })
    .await;
    let stats = server.stats.snapshot();
    assert_eq!(
        stats.server_closed_first, 1,
        "an idle timeout is a server-first close"
    );
    assert_eq!(stats.idle, 0);
}

#[tokio::test]
async fn header_timeout_does_not_cut_the_idle_gap() {
    let config = ServerConfig::new()
        .idle_timeout(Duration::from_secs(20))
        .header_timeout(Duration::from_millis(200));
    let server = TestServer::start(config).await;
    let mut stream = server.connect().await;
    assert_eq!(request(&mut stream, &get("/", "")).await.status, 200);
    wait_until("the connection is idle", SOON, || {
        server.stats.snapshot().idle == 1
    })
    .await;
    // A real idle gap of several header timeouts.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let again = request(&mut stream, &get("/", "")).await;
    assert_eq!(
        again.status, 200,
        "the idle gap is governed by the idle timeout only"
    );
    assert_eq!(server.stats.snapshot().accepted, 1);
}

#[tokio::test]
async fn slow_head_gets_408_and_a_close() {
    let config = ServerConfig::new()
        .idle_timeout(Duration::from_secs(20))
        .header_timeout(Duration::from_millis(200));
    let server = TestServer::start(config).await;
    let mut stream = server.connect().await;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: sl")
        .await
        .unwrap();
    let rest = expect_eof(&mut stream).await;
    let text = String::from_utf8_lossy(&rest);
    assert!(text.starts_with("HTTP/1.1 408"), "{text:?}");
    wait_until("counted as a header timeout", SOON, || {
        server.stats.snapshot().closed(CloseReason::HeaderTimeout) == 1
    })
    .await;
}

#[tokio::test]
async fn abortive_idle_close_leaves_no_time_wait_on_the_server() {
    let config = ServerConfig::new()
        .idle_timeout(Duration::from_millis(200))
        .abortive_idle_close(true);
    let server = TestServer::start(config).await;
    let mut stream = server.connect().await;
    assert_eq!(request(&mut stream, &get("/", "")).await.status, 200);
    // The server resets the connection: the client reads an error or EOF.
    let mut buf = [0u8; 16];
    let read = within(
        "the reset",
        tokio::io::AsyncReadExt::read(&mut stream, &mut buf),
    )
    .await;
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    wait_until("counted as an idle timeout", SOON, || {
        server.stats.snapshot().closed(CloseReason::IdleTimeout) == 1
    })
    .await;
    drop(stream);
    let server_side = server.server_side();
    assert_eq!(server_side.time_wait(), 0, "{server_side}");
    assert_eq!(server.client_side().time_wait(), 0);
}

#[tokio::test]
async fn max_connections_makes_accept_wait() {
    let server = TestServer::start(ServerConfig::new().max_connections(Some(1))).await;
    let mut first = server.connect().await;
    assert_eq!(request(&mut first, &get("/", "")).await.status, 200);

    // The second connection completes in the kernel's backlog but is not served yet.
    let mut second = server.connect().await;
    second.write_all(get("/", "").as_bytes()).await.unwrap();
    let mut leftover = Vec::new();
    let early = tokio::time::timeout(
        Duration::from_millis(300),
        read_response(&mut second, &mut leftover),
    )
    .await;
    assert!(early.is_err(), "served beyond the connection limit");
    assert_eq!(server.stats.snapshot().accepted, 1);

    drop(first);
    let response = within(
        "served once the first left",
        read_response(&mut second, &mut leftover),
    )
    .await
    .unwrap();
    assert_eq!(response.status, 200);
}

/// The body timeout only times a body that is still arriving: a handler that takes longer than
/// the idle timeout, after its whole request (with a body) has arrived, while the client
/// silently waits, is answered.
#[tokio::test]
async fn a_slow_handler_after_a_complete_body_is_not_timed_out() {
    let server =
        TestServer::start(ServerConfig::new().idle_timeout(Duration::from_millis(300))).await;
    let mut stream = server.connect().await;
    let response = within(
        "the slow answer",
        request(
            &mut stream,
            "POST /slow?ms=1200 HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
        ),
    )
    .await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"slow done");
    let stats = server.stats.snapshot();
    assert_eq!(stats.closed(CloseReason::BodyTimeout), 0);
    assert_eq!(stats.handlers_dropped, 0);
}

/// A client that honours `Keep-Alive: timeout=` reuses the connection at the advertised value
/// (here a little after it, as a loaded client would): the server enforces the idle timeout
/// `idle_grace` later, so the request is served, not reset.
#[tokio::test]
async fn a_request_sent_at_the_advertised_idle_timeout_is_served() {
    let config = ServerConfig::new().idle_timeout(Duration::from_secs(1));
    let server = TestServer::start(config).await;
    let mut stream = server.connect().await;
    let response = request(&mut stream, &get("/", "")).await;
    assert_eq!(response.header("keep-alive"), Some("timeout=1, max=999"));
    // The real idle gap: the advertised second, and a fifth of the grace window past it.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    stream.write_all(get("/", "").as_bytes()).await.unwrap();
    let mut leftover = Vec::new();
    let again = within("the answer", read_response(&mut stream, &mut leftover)).await;
    let again = again.expect("the request at the advertised timeout was lost");
    assert_eq!(again.status, 200);
    assert_eq!(server.stats.snapshot().closed(CloseReason::IdleTimeout), 0);
}

/// When the idle timer fires, the server looks once more: part of a request that has already
/// arrived (here a head pipelined behind the previous request, so hyper holds it and the
/// connection looked idle) is timed by the header timeout instead, and its request is served
/// with `Connection: close`, not reset.
#[tokio::test]
async fn part_of_a_request_there_when_the_idle_timer_fires_is_served_with_close() {
    let config = ServerConfig::new()
        .idle_timeout(Duration::from_millis(300))
        .park_after(None);
    let server = TestServer::start(config).await;
    let mut stream = server.connect().await;
    let sent = format!("{}GET /second HTTP/1.1\r\nHost: t", get("/", ""));
    stream.write_all(sent.as_bytes()).await.unwrap();
    let mut leftover = Vec::new();
    let first = within(
        "the first answer",
        read_response(&mut stream, &mut leftover),
    )
    .await
    .unwrap();
    assert_eq!(first.status, 200);
    wait_until("the connection looks idle", SOON, || {
        server.stats.snapshot().idle == 1
    })
    .await;
    // The idle timer fires: the server finds the partial head instead of closing.
    wait_until("the idle deadline has been looked at", SOON, || {
        server.stats.snapshot().idle == 0
    })
    .await;
    stream.write_all(b"\r\n\r\n").await.unwrap();
    let second = within(
        "the second answer",
        read_response(&mut stream, &mut leftover),
    )
    .await;
    let second = second.expect("the request already arriving at the idle timeout was lost");
    assert_eq!(second.status, 200);
    assert!(second.says_close(), "{second:?}");
    expect_eof(&mut stream).await;
    wait_until("counted as an idle timeout", SOON, || {
        server.stats.snapshot().closed(CloseReason::IdleTimeout) == 1
    })
    .await;
}

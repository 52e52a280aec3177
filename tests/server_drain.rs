//! Graceful shutdown: requests in flight finish with `Connection: close`, idle connections get
//! the drain grace for a request already on its way, silent ones are closed when it ends, new
//! connections are refused, and handlers that outlast the shutdown timeout are closed by force.
//!
//! The tests run on tokio's current-thread runtime (the `#[tokio::test]` default): once the
//! test sees the server's listener gone, the server task has also told every connection to
//! drain and each connection task has run with that news, because they all share the one
//! thread and were woken before the test's own poll timer.

mod support;

use std::time::Duration;

use keepalive::tcp_state::TcpState;
use keepalive::{CloseReason, ServerConfig};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Waits until the server's listening socket is gone (the accept loop has ended and the drain
/// has started), then checks that a new connection is refused.
async fn wait_for_listener_gone(server: &TestServer) {
    wait_until("the server's listener is closed", SOON, || {
        server.server_side().get(TcpState::Listen) == 0
    })
    .await;
    let refused = within(
        "a connect to the closed listener",
        TcpStream::connect(server.addr),
    )
    .await;
    match refused {
        Ok(_) => panic!("a new connection was accepted after the shutdown began"),
        Err(e) => assert_eq!(
            e.kind(),
            std::io::ErrorKind::ConnectionRefused,
            "unexpected connect error: {e}"
        ),
    }
}

/// Awaits the server task (it must end by itself, without the test closing anything more).
async fn server_finishes(server: &mut TestServer) {
    let result = within("the server task finishes", &mut server.task).await;
    result
        .expect("the server task panicked")
        .expect("the server returned an error");
}

#[tokio::test]
async fn request_in_flight_is_answered_with_close_then_the_server_ends() {
    let mut server = TestServer::start(ServerConfig::new()).await;
    let mut stream = server.connect().await;
    // Long enough that the shutdown certainly reaches the connection while the handler runs
    // (on one thread that takes microseconds; the margin is for a busy machine).
    stream
        .write_all(get("/slow?ms=1000", "").as_bytes())
        .await
        .unwrap();
    wait_until("the handler runs", SOON, || {
        server.stats.snapshot().requests == 1
    })
    .await;

    server.begin_shutdown();
    wait_for_listener_gone(&server).await;
    assert!(
        !server.task.is_finished(),
        "the server must wait for the request in flight"
    );

    let mut leftover = Vec::new();
    let response = within(
        "the response in flight",
        read_response(&mut stream, &mut leftover),
    )
    .await
    .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"slow done");
    assert!(
        response.says_close(),
        "a response decided while draining closes: {response:?}"
    );
    assert_eq!(response.header("keep-alive"), None);
    assert!(leftover.is_empty());
    expect_eof(&mut stream).await;

    server_finishes(&mut server).await;
    let stats = server.stats.snapshot();
    assert_eq!(stats.requests, 1);
    assert_eq!(stats.closed(CloseReason::Drain), 1, "{}", stats.to_json());
    assert_eq!(stats.closed(CloseReason::Forced), 0);
    assert_eq!(stats.closed_total(), 1);
    assert_eq!(stats.active, 0);
}

#[tokio::test]
async fn request_on_an_idle_connection_within_the_grace_is_answered_and_new_connections_are_refused(
) {
    let config = ServerConfig::new().drain_grace(Duration::from_secs(2));
    let mut server = TestServer::start(config).await;
    let mut stream = server.connect().await;
    let first = request(&mut stream, &get("/", "")).await;
    assert_eq!(first.status, 200);
    assert!(!first.says_close());
    wait_until("the connection is idle", SOON, || {
        server.stats.snapshot().idle == 1
    })
    .await;

    server.begin_shutdown();
    // Also (e): from here a new connect is refused.
    wait_for_listener_gone(&server).await;

    // The idle connection is still open within the grace: a request on its way is answered.
    let second = within("the request within the grace", async {
        request(&mut stream, &get("/", "")).await
    })
    .await;
    assert_eq!(second.status, 200);
    assert_eq!(second.body, b"hello, world!");
    assert!(
        second.says_close(),
        "the last response of a draining connection says close: {second:?}"
    );
    assert_eq!(second.header("keep-alive"), None);
    expect_eof(&mut stream).await;
    drop(stream);

    server_finishes(&mut server).await;
    let stats = server.stats.snapshot();
    assert_eq!(stats.accepted, 1, "{}", stats.to_json());
    assert_eq!(stats.requests, 2);
    assert_eq!(stats.closed(CloseReason::Drain), 1, "{}", stats.to_json());
    assert_eq!(stats.closed(CloseReason::Forced), 0);
    assert_eq!(stats.closed_total(), 1);
}

#[tokio::test]
async fn silent_idle_connections_are_closed_when_the_grace_ends() {
    let config = ServerConfig::new().drain_grace(Duration::from_millis(300));
    let mut server = TestServer::start(config).await;
    // One connection that was used and went idle, one that never sent anything.
    let mut used = server.connect().await;
    assert_eq!(request(&mut used, &get("/", "")).await.status, 200);
    let mut fresh = server.connect().await;
    wait_until("both connections are accepted and idle", SOON, || {
        let s = server.stats.snapshot();
        s.accepted == 2 && s.idle == 2
    })
    .await;

    server.begin_shutdown();
    wait_for_listener_gone(&server).await;

    // Both stay silent: the server closes them (a FIN, not a reset) when the grace ends, long
    // before the default 60 s idle timeout or 30 s shutdown timeout.
    let rest = expect_eof(&mut used).await;
    assert!(rest.is_empty(), "no bytes before the close: {rest:?}");
    let rest = expect_eof(&mut fresh).await;
    assert!(rest.is_empty(), "no bytes before the close: {rest:?}");

    server_finishes(&mut server).await;
    let stats = server.stats.snapshot();
    assert_eq!(stats.closed(CloseReason::Drain), 2, "{}", stats.to_json());
    assert_eq!(stats.closed(CloseReason::Forced), 0);
    assert_eq!(stats.closed(CloseReason::IdleTimeout), 0);
    assert_eq!(stats.closed_total(), 2);
    assert_eq!(stats.requests, 1);
}

#[tokio::test]
async fn handler_longer_than_the_shutdown_timeout_is_closed_by_force() {
    let config = ServerConfig::new().shutdown_timeout(Duration::from_millis(300));
    let mut server = TestServer::start(config).await;
    let mut stream = server.connect().await;
    stream
        .write_all(get("/slow?ms=20000", "").as_bytes())
        .await
        .unwrap();
    wait_until("the handler runs", SOON, || {
        server.stats.snapshot().requests == 1
    })
    .await;

    server.begin_shutdown();
    // Far less than the 20 s handler: the server gives up on it.
    server_finishes(&mut server).await;
    let stats = server.stats.snapshot();
    assert_eq!(stats.closed(CloseReason::Forced), 1, "{}", stats.to_json());
    assert_eq!(stats.closed(CloseReason::Drain), 0);
    assert_eq!(stats.closed_total(), 1);
    assert_eq!(stats.active, 0);

    // The client gets no response, only the close (a FIN or a reset).
    let mut received = Vec::new();
    let outcome = within("the forced close reaches the client", async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(n) => received.extend_from_slice(&buf[..n]),
                Err(e) => return Err(e),
            }
        }
    })
    .await;
    if let Err(e) = outcome {
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset,
            "unexpected error: {e}"
        );
    }
    assert!(
        received.is_empty(),
        "no response for a forced close: {:?}",
        String::from_utf8_lossy(&received)
    );
}

//! TLS on both ends (feature `rustls`): the server's keep-alive, parking, FIN watch and
//! client-first close work under TLS; a client's `close_notify` counts as its close; a
//! handshake that fails or stalls is closed and counted. The client's TLS connections are
//! pooled, survive TLS 1.3 session tickets, and are evicted when the server closes them.
//!
//! The sleeps here are idle gaps of the scenarios (past `park_after`), never waits for an
//! outcome: those go through `wait_until`/`within`.
#![cfg(feature = "rustls")]

mod support;

use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use keepalive::client::{Client, ClientConfig, PoolCloseReason, TlsConnector};
use keepalive::CloseReason;
use support::tls::TestTls;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;

const PARK_AFTER: Duration = Duration::from_millis(30);
const IDLE_GAP: Duration = Duration::from_millis(300);

/// One connection closed, its TIME_WAIT on the client's side only (Linux: /proc or netlink).
#[cfg(target_os = "linux")]
fn time_wait_is_the_clients(server: &TestServer) {
    assert_eq!(
        server.server_side().time_wait(),
        0,
        "TIME_WAIT is not the server's"
    );
    assert_eq!(
        server.client_side().time_wait(),
        1,
        "TIME_WAIT is the client's"
    );
}

/// Reads to the end of a TLS stream and expects a clean end (the server's close_notify) with no
/// bytes before it.
async fn expect_tls_end(stream: &mut TlsStream<TcpStream>, what: &str) {
    let mut rest = Vec::new();
    let result = within(what, stream.read_to_end(&mut rest)).await;
    assert!(result.is_ok(), "{what}: {result:?}");
    assert!(rest.is_empty(), "{what}: {} unexpected bytes", rest.len());
}

async fn tls_connect(server: &TestServer, tls: &TestTls) -> TlsStream<TcpStream> {
    let tcp = server.connect().await;
    let name = ServerName::from(server.addr.ip());
    within("the TLS handshake", tls.connector().connect(name, tcp))
        .await
        .expect("handshake")
}

#[tokio::test]
async fn keep_alive_over_tls_survives_parking() {
    let (server, tls) = TestServer::start_tls(patient().park_after(Some(PARK_AFTER))).await;
    let mut stream = tls_connect(&server, &tls).await;
    for round in 1..=3u64 {
        let response = request(&mut stream, &get("/", "")).await;
        assert_eq!(response.status, 200);
        assert_eq!(response.body, b"hello, world!");
        assert!(!response.says_close());
        assert!(response.header("keep-alive").is_some());
        wait_until("the idle TLS connection is parked", SOON, || {
            server.stats.snapshot().parked == 1
        })
        .await;
        let stats = server.stats.snapshot();
        assert_eq!(stats.unparked, round - 1);
        assert_eq!(stats.accepted, 1, "one connection throughout");
    }
    // A body after a park, and pipelined requests.
    let response = request(
        &mut stream,
        "POST /echo HTTP/1.1\r\nHost: t\r\ncontent-length: 11\r\n\r\nhello again",
    )
    .await;
    assert_eq!(response.body, b"hello again");
    let two = format!("{}{}", get("/", ""), get("/stream", ""));
    stream.write_all(two.as_bytes()).await.unwrap();
    let mut leftover = Vec::new();
    let first = read_response(&mut stream, &mut leftover).await.unwrap();
    let second = read_response(&mut stream, &mut leftover).await.unwrap();
    assert_eq!(first.body, b"hello, world!");
    assert_eq!(second.body, b"one two three");
    assert_eq!(server.stats.snapshot().requests, 6);
}

/// The decrypted half of a pipelined head that hyper holds when the park timer fires is handed
/// back (under TLS it cannot go back to the socket) and read first: nothing lost.
#[tokio::test]
async fn partial_pipelined_head_under_tls_is_kept_across_the_park_point() {
    let (server, tls) = TestServer::start_tls(patient().park_after(Some(PARK_AFTER))).await;
    let mut stream = tls_connect(&server, &tls).await;
    let second = "POST /echo HTTP/1.1\r\nHost: t\r\ncontent-length: 6\r\n\r\nsecond";
    let (head, tail) = second.split_at(20);
    stream
        .write_all(format!("{}{head}", get("/", "")).as_bytes())
        .await
        .unwrap();
    stream.flush().await.unwrap();
    let mut leftover = Vec::new();
    let first = within("first response", read_response(&mut stream, &mut leftover))
        .await
        .unwrap();
    assert_eq!(first.body, b"hello, world!");
    // Idle long enough for the park timer to fire while hyper holds half a head (the
    // scenario's gap, not a wait for an outcome).
    tokio::time::sleep(IDLE_GAP).await;
    stream.write_all(tail.as_bytes()).await.unwrap();
    stream.flush().await.unwrap();
    let response = within("second response", read_response(&mut stream, &mut leftover))
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"second");
    assert_eq!(server.stats.snapshot().requests, 2);
}

#[tokio::test]
async fn close_notify_from_the_client_counts_as_its_close() {
    // A short wait for the client's FIN: this client never sends one.
    let config = patient().linger(Duration::from_millis(200));
    let (server, tls) = TestServer::start_tls(config).await;
    let mut stream = tls_connect(&server, &tls).await;
    assert_eq!(request(&mut stream, &get("/", "")).await.status, 200);
    // close_notify alone, the TCP connection left open.
    stream.get_mut().1.send_close_notify();
    stream.flush().await.unwrap();
    // The server answers with its own close_notify, then closes after its wait for our FIN.
    expect_tls_end(&mut stream, "the server's close_notify").await;
    wait_until("the connection is closed", SOON, || {
        server.stats.snapshot().active == 0
    })
    .await;
    let stats = server.stats.snapshot();
    assert_eq!(stats.closed(CloseReason::PeerFin), 1, "{}", stats.to_json());
    assert_eq!(stats.client_closed_first, 1);
    drop(stream);
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn client_fin_under_tls_drops_the_handler_and_leaves_no_close_wait() {
    let (server, tls) = TestServer::start_tls(patient()).await;
    let mut stream = tls_connect(&server, &tls).await;
    stream
        .write_all(get("/slow?ms=20000", "").as_bytes())
        .await
        .unwrap();
    stream.flush().await.unwrap();
    wait_until("the handler runs", SOON, || {
        server.stats.snapshot().requests == 1
    })
    .await;
    // The TCP FIN without a close_notify (a client that just goes away). A shutdown, not a
    // drop: the session tickets the client never read would turn a close into a reset.
    stream.get_mut().0.shutdown().await.unwrap();
    wait_until("the handler is dropped", SOON, || {
        server.stats.snapshot().handlers_dropped == 1
    })
    .await;
    wait_until("no CLOSE_WAIT on the server", SOON, || {
        let side = server.server_side();
        side.close_wait() == 0 && side.established() == 0
    })
    .await;
    let stats = server.stats.snapshot();
    assert_eq!(stats.closed(CloseReason::PeerFin), 1, "{}", stats.to_json());
    drop(stream);
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn connection_close_under_tls_leaves_time_wait_on_the_client() {
    let (server, tls) = TestServer::start_tls(patient()).await;
    let mut stream = tls_connect(&server, &tls).await;
    let response = request(&mut stream, &get("/close", "")).await;
    assert!(response.says_close());
    // As a client does on `Connection: close`: read to the end (the server's close_notify),
    // then close.
    expect_tls_end(&mut stream, "the server's close_notify").await;
    let (tcp, _) = stream.into_inner();
    drop(tcp);
    wait_until("the server's socket is gone", SOON, || {
        let side = server.server_side();
        side.total() == 1
    })
    .await;
    let stats = server.stats.snapshot();
    assert_eq!(stats.closed(CloseReason::ServiceClose), 1);
    assert_eq!(stats.client_closed_first, 1, "{}", stats.to_json());
    time_wait_is_the_clients(&server);
}

/// Under TLS an idle timeout need not leave TIME_WAIT on the server: the server sends its
/// close_notify, the client answers by closing, and the server closes after the client's FIN.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn idle_timeout_under_tls_lets_the_client_close_first() {
    let config = patient().idle_timeout(Duration::from_millis(300));
    let (server, tls) = TestServer::start_tls(config).await;
    let mut stream = tls_connect(&server, &tls).await;
    assert_eq!(request(&mut stream, &get("/", "")).await.status, 200);
    // As a client's idle watch does: the server's close_notify (EOF) ends the connection.
    expect_tls_end(&mut stream, "the server's close_notify").await;
    stream.get_mut().0.shutdown().await.unwrap();
    wait_until("the server closes", SOON, || {
        server.stats.snapshot().active == 0
    })
    .await;
    let stats = server.stats.snapshot();
    assert_eq!(
        stats.closed(CloseReason::IdleTimeout),
        1,
        "{}",
        stats.to_json()
    );
    assert_eq!(stats.client_closed_first, 1, "{}", stats.to_json());
    drop(stream);
    wait_until("the server's socket is gone", SOON, || {
        server.server_side().total() == 1
    })
    .await;
    time_wait_is_the_clients(&server);
}

#[tokio::test]
async fn a_failed_or_stalled_handshake_is_closed_and_counted() {
    // Long enough for a real handshake on a busy machine, short enough for the silent client.
    let config = patient().header_timeout(Duration::from_secs(1));
    let (server, tls) = TestServer::start_tls(config).await;
    // Plain HTTP to the TLS port: the handshake fails, nothing is served.
    let mut plain = server.connect().await;
    plain.write_all(get("/", "").as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let _ = within("the server closes", plain.read_to_end(&mut buf)).await;
    assert!(!buf.starts_with(b"HTTP/"), "no HTTP answer on a TLS port");
    // A client that connects and says nothing: closed at the header timeout.
    let mut silent = server.connect().await;
    let _ = within("the server closes", silent.read_to_end(&mut buf)).await;
    wait_until("both closed", SOON, || server.stats.snapshot().active == 0).await;
    let stats = server.stats.snapshot();
    assert_eq!(
        stats.closed(CloseReason::Handshake),
        2,
        "{}",
        stats.to_json()
    );
    assert_eq!(stats.requests, 0);
    // The server still serves TLS.
    let mut stream = tls_connect(&server, &tls).await;
    assert_eq!(request(&mut stream, &get("/", "")).await.status, 200);
}

/// A malformed request over TLS gets hyper's 400 (encrypted) and a close; the server serves
/// the next connection.
#[tokio::test]
async fn malformed_request_over_tls_gets_a_400_and_a_close() {
    let (server, tls) = TestServer::start_tls(patient()).await;
    let mut stream = tls_connect(&server, &tls).await;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nbad header line\r\n\r\n")
        .await
        .unwrap();
    stream.flush().await.unwrap();
    let mut leftover = Vec::new();
    let response = within("the 400", read_response(&mut stream, &mut leftover))
        .await
        .unwrap();
    assert_eq!(response.status, 400);
    expect_tls_end(&mut stream, "the close").await;
    wait_until("closed", SOON, || server.stats.snapshot().active == 0).await;
    assert_eq!(server.stats.snapshot().closed(CloseReason::Error), 1);
    let mut next = tls_connect(&server, &tls).await;
    assert_eq!(request(&mut next, &get("/", "")).await.status, 200);
}

fn tls_client(tls: &TestTls, config: ClientConfig) -> Client<TlsConnector> {
    Client::with_connector(
        config.clone(),
        TlsConnector::new(&config, tls.client.clone()),
    )
}

async fn client_get(client: &Client<TlsConnector>, uri: &str) -> Bytes {
    let request = http::Request::get(uri).body(Empty::<Bytes>::new()).unwrap();
    let response = within("the response", client.request(request))
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    within("the body", response.into_body().collect())
        .await
        .expect("body")
        .to_bytes()
}

#[tokio::test]
async fn client_pools_tls_connections_and_evicts_them_when_the_server_closes() {
    let (server, tls) = TestServer::start_tls(
        patient()
            .park_after(Some(PARK_AFTER))
            .idle_timeout(Duration::from_millis(1500)),
    )
    .await;
    // The client does not close before the server here: it must notice the server's close.
    let config = ClientConfig::new()
        .honour_server_keep_alive(false)
        .park_after(Some(PARK_AFTER));
    let client = tls_client(&tls, config);
    let uri = format!("https://{}:{}/", server.addr.ip(), server.addr.port());
    assert_eq!(client_get(&client, &uri).await, "hello, world!");
    // Idle past both sides' park_after (the session tickets have arrived by then).
    tokio::time::sleep(IDLE_GAP).await;
    assert_eq!(client.idle_connections(&uri.parse().unwrap()), 1);
    assert_eq!(client_get(&client, &uri).await, "hello, world!");
    let stats = client.stats().snapshot();
    assert_eq!(stats.opened, 1, "{}", stats.to_json());
    assert_eq!(stats.reused, 1);
    assert_eq!(server.stats.snapshot().accepted, 1);
    // The server closes the idle connection at its idle timeout: evicted at once.
    wait_until("the server closes the idle connection", SOON, || {
        server.stats.snapshot().closed(CloseReason::IdleTimeout) == 1
    })
    .await;
    wait_until("the client evicts it", SOON, || {
        client.idle_connections(&uri.parse().unwrap()) == 0
    })
    .await;
    let stats = client.stats().snapshot();
    assert_eq!(
        stats.closed(PoolCloseReason::ServerFin),
        1,
        "{}",
        stats.to_json()
    );
    assert_eq!(
        (stats.open, stats.idle),
        (0, 0),
        "gauges: {}",
        stats.to_json()
    );
    #[cfg(target_os = "linux")]
    wait_until("no CLOSE_WAIT on the client", SOON, || {
        server.client_side().close_wait() == 0
    })
    .await;
}

/// curl (OpenSSL, or whatever TLS library it was built with) as a real TLS peer: it reuses
/// one connection for two URLs, and when it exits the server sees the client close first.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn curl_over_tls_reuses_the_connection_and_closes_first() {
    if !curl_version().is_some_and(|v| v.contains("SSL")) {
        eprintln!("skipped: no curl with TLS");
        return;
    }
    let (server, _tls) = TestServer::start_tls(patient()).await;
    let url = format!("https://{}/", server.addr);
    let out = run_curl(&["-k", &url, &url]).await;
    assert_eq!(out, b"hello, world!hello, world!");
    wait_until("curl's connection closed", SOON, || {
        server.stats.snapshot().active == 0
    })
    .await;
    let stats = server.stats.snapshot();
    assert_eq!(stats.accepted, 1, "one connection for both URLs");
    assert_eq!(stats.requests, 2);
    assert_eq!(stats.closed(CloseReason::PeerFin), 1, "{}", stats.to_json());
    assert_eq!(stats.client_closed_first, 1);
    wait_until("no CLOSE_WAIT on the server", SOON, || {
        server.server_side().close_wait() == 0
    })
    .await;
    assert_eq!(
        server.server_side().time_wait(),
        0,
        "TIME_WAIT is not the server's"
    );
}

//! Keep-alive reuse, HTTP/1.0 negotiation, the advertised `Keep-Alive: timeout=, max=`, and
//! the limits that end a connection after a response.

mod support;

use std::time::Duration;

use keepalive::{CloseReason, ServerConfig};
use support::*;
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn http11_connection_is_reused_and_advertises_its_budget() {
    let server = TestServer::start(patient().max_requests(3)).await;
    let mut stream = server.connect().await;

    let first = request(&mut stream, &get("/", "")).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.body, b"hello, world!");
    assert_eq!(first.header("keep-alive"), Some("timeout=60, max=2"));
    assert!(!first.says_close());

    let second = request(&mut stream, &get("/", "")).await;
    assert_eq!(second.header("keep-alive"), Some("timeout=60, max=1"));

    let third = request(&mut stream, &get("/", "")).await;
    assert!(
        third.says_close(),
        "the last allowed request closes: {third:?}"
    );
    assert_eq!(third.header("keep-alive"), None);
    assert_eq!(third.header("content-length"), Some("13"));
    // A client that closes once it has read a `Connection: close` response closes first.
    drop(stream);

    wait_until("the connection is counted closed", SOON, || {
        server.stats.snapshot().closed(CloseReason::MaxRequests) == 1
    })
    .await;
    let stats = server.stats.snapshot();
    assert_eq!(stats.accepted, 1, "three requests on one connection");
    assert_eq!(stats.requests, 3);
    assert_eq!(stats.client_closed_first, 1);
}

#[tokio::test]
async fn http10_keeps_alive_only_when_asked() {
    let server = TestServer::start(ServerConfig::new()).await;

    let mut stream = server.connect().await;
    let ask = "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    let first = request(&mut stream, ask).await;
    assert_eq!(first.version, "HTTP/1.0");
    assert_eq!(first.header("connection"), Some("keep-alive"));
    assert_eq!(first.header("keep-alive"), Some("timeout=60, max=999"));
    let second = request(&mut stream, ask).await;
    assert_eq!(second.header("connection"), Some("keep-alive"));
    assert_eq!(second.body, b"hello, world!");
    drop(stream);

    let mut plain = server.connect().await;
    let response = request(&mut plain, "GET / HTTP/1.0\r\n\r\n").await;
    assert!(response.says_close());
    assert_eq!(response.header("content-length"), Some("13"));
    expect_eof(&mut plain).await;
    drop(plain);

    wait_until("both connections closed", SOON, || {
        server.stats.snapshot().closed_total() == 2
    })
    .await;
    let stats = server.stats.snapshot();
    assert_eq!(stats.accepted, 2);
    assert_eq!(stats.closed(CloseReason::ClientClose), 1);
    assert_eq!(stats.closed(CloseReason::PeerFin), 1);
}

/// Every `Connection` line of a raw response head, in order (a response says one thing).
fn connection_lines(raw: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(raw);
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    head.split("\r\n")
        .filter_map(|line| line.split_once(':'))
        .filter(|(name, _)| name.trim().eq_ignore_ascii_case("connection"))
        .map(|(_, value)| value.trim().to_ascii_lowercase())
        .collect()
}

/// Reads one response to a GET (a `Content-Length` body) and returns its raw bytes.
async fn raw_response(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut raw = Vec::new();
    within("a response", async {
        loop {
            let mut chunk = [0u8; 1024];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed before the response ended: {raw:?}");
            raw.extend_from_slice(&chunk[..n]);
            if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
                let length: usize = head
                    .split("\r\n")
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                if raw.len() >= end + 4 + length {
                    return;
                }
            }
        }
    })
    .await;
    raw
}

#[tokio::test]
async fn http10_keep_alive_last_allowed_response_says_close_only() {
    let server = TestServer::start(patient().max_requests(3)).await;
    let mut stream = server.connect().await;
    let ask = b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    for _ in 0..2 {
        stream.write_all(ask).await.unwrap();
        let raw = raw_response(&mut stream).await;
        assert_eq!(connection_lines(&raw), ["keep-alive"]);
    }
    stream.write_all(ask).await.unwrap();
    let raw = raw_response(&mut stream).await;
    assert_eq!(
        connection_lines(&raw),
        ["close"],
        "{}",
        String::from_utf8_lossy(&raw)
    );
    assert!(!String::from_utf8_lossy(&raw)
        .to_ascii_lowercase()
        .contains("keep-alive:"));
    expect_eof(&mut stream).await;
    drop(stream);
    wait_until("closed at its request limit", SOON, || {
        server.stats.snapshot().closed(CloseReason::MaxRequests) == 1
    })
    .await;
}

#[tokio::test]
async fn advertised_timeout_is_the_smaller_of_idle_and_age_left() {
    let config = ServerConfig::new()
        .idle_timeout(Duration::from_secs(30))
        .max_age(Duration::from_secs(12));
    let server = TestServer::start(config).await;
    let mut stream = server.connect().await;
    let response = request(&mut stream, &get("/", "")).await;
    let advertised = response.header("keep-alive").unwrap().to_string();
    // 12 s of age minus the time the request took: 11 (or 12 on a fast machine), never 30.
    assert!(
        advertised == "timeout=11, max=999" || advertised == "timeout=12, max=999",
        "{advertised}"
    );
}

#[tokio::test]
async fn less_than_a_second_of_age_left_closes_instead_of_advertising_zero() {
    let server = TestServer::start(ServerConfig::new().max_age(Duration::from_millis(900))).await;
    let mut stream = server.connect().await;
    let response = request(&mut stream, &get("/", "")).await;
    assert!(response.says_close());
    assert_eq!(response.header("keep-alive"), None);
    expect_eof(&mut stream).await;
    wait_until("closed for its age", SOON, || {
        server.stats.snapshot().closed(CloseReason::MaxAge) == 1
    })
    .await;
}

#[tokio::test]
async fn client_connection_close_and_service_close_end_the_connection() {
    let server = TestServer::start(ServerConfig::new()).await;
    let mut stream = server.connect().await;
    let response = request(&mut stream, &get("/", "Connection: close\r\n")).await;
    assert!(response.says_close());
    expect_eof(&mut stream).await;

    let mut stream = server.connect().await;
    let response = request(&mut stream, &get("/close", "")).await;
    assert!(response.says_close());
    assert_eq!(response.header("keep-alive"), None);
    expect_eof(&mut stream).await;

    wait_until("both closes counted", SOON, || {
        let s = server.stats.snapshot();
        s.closed(CloseReason::ClientClose) == 1 && s.closed(CloseReason::ServiceClose) == 1
    })
    .await;
}

#[tokio::test]
async fn http10_body_without_length_is_ended_by_the_close() {
    let server = TestServer::start(ServerConfig::new()).await;
    let mut stream = server.connect().await;
    stream
        .write_all(b"GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .await
        .unwrap();
    let mut leftover = Vec::new();
    let response = within(
        "close-delimited response",
        read_response(&mut stream, &mut leftover),
    )
    .await
    .unwrap();
    assert!(response.says_close(), "{response:?}");
    assert_eq!(response.body, b"one two three");
    wait_until("counted as a body delimited by the close", SOON, || {
        server.stats.snapshot().closed(CloseReason::BodyUntilClose) == 1
    })
    .await;

    // HTTP/1.1 streams the same body chunked and keeps the connection.
    let mut stream = server.connect().await;
    let response = request(&mut stream, &get("/stream", "")).await;
    assert_eq!(response.header("transfer-encoding"), Some("chunked"));
    assert_eq!(response.body, b"one two three");
    assert!(!response.says_close());
    let again = request(&mut stream, &get("/", "")).await;
    assert_eq!(again.status, 200);
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let server = TestServer::start(ServerConfig::new()).await;
    let mut stream = server.connect().await;
    let pipelined = format!(
        "{}{}{}",
        get("/slow?ms=50", ""),
        get("/echo", "Content-Length: 5\r\n").replace("\r\n\r\n", "\r\n\r\nhello"),
        get("/", "")
    );
    stream.write_all(pipelined.as_bytes()).await.unwrap();
    let mut leftover = Vec::new();
    let bodies: Vec<Vec<u8>> = within("three pipelined responses", async {
        let mut bodies = Vec::new();
        for _ in 0..3 {
            bodies.push(
                read_response(&mut stream, &mut leftover)
                    .await
                    .unwrap()
                    .body,
            );
        }
        bodies
    })
    .await;
    assert_eq!(
        bodies,
        vec![
            b"slow done".to_vec(),
            b"hello".to_vec(),
            b"hello, world!".to_vec()
        ]
    );
    assert_eq!(server.stats.snapshot().handlers_dropped, 0);
}

#[tokio::test]
async fn malformed_requests_get_400_and_a_close_and_others_are_still_served() {
    let server = TestServer::start(ServerConfig::new()).await;
    for garbage in [
        &b"\x00\x01\x02garbage\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
    ] {
        let mut stream = server.connect().await;
        stream.write_all(garbage).await.unwrap();
        let mut leftover = Vec::new();
        let response = within("the 400", read_response(&mut stream, &mut leftover))
            .await
            .unwrap();
        assert_eq!(
            response.status,
            400,
            "{:?}",
            String::from_utf8_lossy(garbage)
        );
        expect_eof(&mut stream).await;
    }
    let mut stream = server.connect().await;
    assert_eq!(request(&mut stream, &get("/", "")).await.status, 200);
}

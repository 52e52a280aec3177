//! The client's retry of a request that hit a stale pooled connection: retried once on a new
//! connection when it failed before any response byte, is idempotent and its body can be
//! replayed; otherwise the error says why it was not.
//!
//! The server here is a small scripted raw HTTP/1 server, so that a connection can be made to
//! fail at exactly the moment a test needs.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http::{Method, Request};
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Bytes, Frame};
use keepalive::client::{Client, ClientConfig, ErrorKind};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// One request as the raw server read it.
#[derive(Debug, Clone)]
struct Seen {
    /// Which connection (0, 1, ... in accept order).
    conn: usize,
    /// Which request on that connection (0 is the first).
    index: usize,
    method: String,
    path: String,
    /// Names and values, lowercased, in the order sent.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// What the raw server does with a request it has read in full.
#[derive(Debug, Clone, Copy)]
enum Action {
    /// Answers `200 ok` with a length and keeps the connection.
    Answer,
    /// Closes the connection without writing a byte (the request was read in full, so the
    /// close is a clean FIN, not a reset).
    CloseSilently,
    /// Writes a head announcing 100 bytes of body, 10 of them, then closes.
    Truncate,
    /// Writes the first bytes of a status line, then closes.
    PartialHead,
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
const TRUNCATED: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789";
const PARTIAL_HEAD: &[u8] = b"HTTP/1.1 200";

type Script = Arc<dyn Fn(&Seen) -> Action + Send + Sync>;

/// A raw HTTP/1 server on its own loopback address that logs every request it reads and
/// follows `script` for each.
struct RawServer {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl RawServer {
    async fn start(script: impl Fn(&Seen) -> Action + Send + Sync + 'static) -> RawServer {
        let script: Script = Arc::new(script);
        let listener = TcpListener::bind((unique_loopback(), 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let task = tokio::spawn(async move {
            let mut conn = 0;
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_conn(stream, conn, script.clone(), log.clone()));
                conn += 1;
            }
        });
        RawServer { addr, seen, task }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn count(&self, method: &str) -> usize {
        self.seen().iter().filter(|s| s.method == method).count()
    }

    fn connections(&self) -> usize {
        self.seen().iter().map(|s| s.conn + 1).max().unwrap_or(0)
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_conn(
    mut stream: TcpStream,
    conn: usize,
    script: Script,
    log: Arc<Mutex<Vec<Seen>>>,
) {
    let mut buf = Vec::new();
    let mut index = 0;
    while let Some((method, path, headers, body)) = read_request(&mut stream, &mut buf).await {
        let seen = Seen {
            conn,
            index,
            method,
            path,
            headers,
            body,
        };
        index += 1;
        let action = script(&seen);
        log.lock().unwrap().push(seen);
        match action {
            Action::Answer => {
                if stream.write_all(OK).await.is_err() {
                    return;
                }
            }
            Action::CloseSilently => return,
            Action::Truncate => {
                let _ = stream.write_all(TRUNCATED).await;
                return;
            }
            Action::PartialHead => {
                let _ = stream.write_all(PARTIAL_HEAD).await;
                return;
            }
        }
    }
}

/// Method, path, headers and body of a request read in full.
type RequestRead = (String, String, Vec<(String, String)>, Vec<u8>);

/// Reads one request (head, then a Content-Length or chunked body); `None` at EOF or on a
/// malformed request.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<RequestRead> {
    let head_end = loop {
        if let Some(pos) = find(buf, b"\r\n\r\n") {
            break pos + 4;
        }
        fill(stream, buf).await?;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    buf.drain(..head_end);
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_string();
    let path = request_line.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_ascii_lowercase()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        while buf.len() < len {
            fill(stream, buf).await?;
        }
        body = buf.drain(..len).collect();
    } else if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        loop {
            let line_end = loop {
                if let Some(pos) = find(buf, b"\r\n") {
                    break pos;
                }
                fill(stream, buf).await?;
            };
            let size_text = String::from_utf8_lossy(&buf[..line_end]).to_string();
            let size_text = size_text.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16).ok()?;
            buf.drain(..line_end + 2);
            if size == 0 {
                // Trailers (none expected), up to the empty line.
                loop {
                    let end = loop {
                        if let Some(pos) = find(buf, b"\r\n") {
                            break pos;
                        }
                        fill(stream, buf).await?;
                    };
                    buf.drain(..end + 2);
                    if end == 0 {
                        break;
                    }
                }
                break;
            }
            while buf.len() < size + 2 {
                fill(stream, buf).await?;
            }
            body.extend(buf.drain(..size));
            buf.drain(..2);
        }
    }
    Some((method, path, headers, body))
}

async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 4096];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => None,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Some(())
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Answers the first request on each connection and closes on the second without a byte: the
/// second request always finds its (reused) connection stale.
async fn second_request_finds_it_closed() -> RawServer {
    RawServer::start(|seen| {
        if seen.index == 0 {
            Action::Answer
        } else {
            Action::CloseSilently
        }
    })
    .await
}

/// A GET that makes the client open one connection and leave it idle in the pool.
async fn warm_up(client: &Client, server: &RawServer) {
    let response = within(
        "the first request",
        client.request(
            Request::get(server.url("/"))
                .body(Empty::<Bytes>::new())
                .unwrap(),
        ),
    )
    .await
    .expect("the first request succeeds");
    assert_eq!(response.status(), 200);
    let body = within("the first body", response.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(body, "ok");
    let uri: http::Uri = server.url("/").parse().unwrap();
    wait_until("the connection is back in the pool", SOON, || {
        client.idle_connections(&uri) == 1
    })
    .await;
}

#[tokio::test]
async fn idempotent_get_on_a_stale_connection_is_retried_on_a_new_one() {
    let server = second_request_finds_it_closed().await;
    let client = Client::new(ClientConfig::new());
    warm_up(&client, &server).await;

    let response = within(
        "the second request",
        client.request(
            Request::get(server.url("/again"))
                .header("x-trace", "abc")
                .header("accept", "text/plain")
                .body(Empty::<Bytes>::new())
                .unwrap(),
        ),
    )
    .await
    .expect("the retried GET succeeds");
    assert_eq!(response.status(), 200);
    let body = within("the second body", response.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(body, "ok");

    let stats = client.stats().snapshot();
    assert_eq!(stats.retries, 1, "{}", stats.to_json());
    assert_eq!(stats.opened, 2, "{}", stats.to_json());
    assert_eq!(
        stats.closed(keepalive::client::PoolCloseReason::Stale),
        1,
        "the dead reused connection is counted as stale: {}",
        stats.to_json()
    );
    assert_eq!(
        stats.requests,
        3,
        "two requests, one retry: {}",
        stats.to_json()
    );
    assert_eq!(stats.reused, 1, "{}", stats.to_json());

    // The server saw the GET twice: on the stale connection, then first on a new one.
    let again: Vec<_> = server
        .seen()
        .into_iter()
        .filter(|s| s.path == "/again")
        .collect();
    assert_eq!(again.len(), 2, "{again:?}");
    assert_eq!((again[0].conn, again[0].index), (0, 1));
    assert_eq!((again[1].conn, again[1].index), (1, 0));
    assert_eq!(server.connections(), 2);
    // Both attempts carried what the caller set, and exactly one Host (the client's own).
    let host = server.addr.to_string();
    for attempt in &again {
        let value = |name: &str| -> Vec<&str> {
            attempt
                .headers
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .collect()
        };
        assert_eq!(value("x-trace"), ["abc"], "{attempt:?}");
        assert_eq!(value("accept"), ["text/plain"], "{attempt:?}");
        assert_eq!(value("host"), [host.as_str()], "{attempt:?}");
    }
}

#[tokio::test]
async fn post_on_a_stale_connection_is_not_retried() {
    let server = second_request_finds_it_closed().await;
    let client = Client::new(ClientConfig::new());
    warm_up(&client, &server).await;

    let result = within(
        "the POST",
        client.request(
            Request::post(server.url("/submit"))
                .body(Full::new(Bytes::from_static(b"order #1")))
                .unwrap(),
        ),
    )
    .await;
    let error = result.expect_err("a POST that hit a stale connection fails");
    assert!(
        matches!(error.kind(), ErrorKind::StaleNotRetried(_)),
        "{:?}: {error}",
        error.kind()
    );
    let message = error.to_string();
    assert!(message.contains("not idempotent"), "{message}");

    let stats = client.stats().snapshot();
    assert_eq!(stats.retries, 0, "{}", stats.to_json());
    assert_eq!(stats.opened, 1, "no new connection: {}", stats.to_json());
    // The server read the POST, with its body, exactly once.
    let posts: Vec<_> = server
        .seen()
        .into_iter()
        .filter(|s| s.method == "POST")
        .collect();
    assert_eq!(posts.len(), 1, "{posts:?}");
    assert_eq!(posts[0].body, b"order #1");
    assert_eq!(server.count("GET"), 1);
    assert_eq!(server.connections(), 1);
}

/// A request body of unknown length: two chunks from a stream, no exact size hint.
fn streaming_body() -> impl http_body::Body<Data = Bytes, Error = Infallible> + Send + 'static {
    StreamBody::new(futures_util::stream::iter([
        Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"first,"))),
        Ok(Frame::data(Bytes::from_static(b"second"))),
    ]))
}

#[tokio::test]
async fn put_with_a_streaming_body_is_not_retried() {
    let server = second_request_finds_it_closed().await;
    let client = Client::new(ClientConfig::new());
    warm_up(&client, &server).await;

    let body = streaming_body();
    assert!(
        http_body::Body::size_hint(&body).exact().is_none(),
        "the test needs a body of unknown length"
    );
    let result = within(
        "the streaming PUT",
        client.request(
            Request::builder()
                .method(Method::PUT)
                .uri(server.url("/doc"))
                .body(body)
                .unwrap(),
        ),
    )
    .await;
    let error = result.expect_err("a streaming PUT that hit a stale connection fails");
    assert!(
        matches!(error.kind(), ErrorKind::StaleNotRetried(_)),
        "{:?}: {error}",
        error.kind()
    );
    let message = error.to_string();
    assert!(message.contains("cannot be replayed"), "{message}");

    let stats = client.stats().snapshot();
    assert_eq!(stats.retries, 0, "{}", stats.to_json());
    assert_eq!(stats.opened, 1, "{}", stats.to_json());
    let puts: Vec<_> = server
        .seen()
        .into_iter()
        .filter(|s| s.method == "PUT")
        .collect();
    assert_eq!(puts.len(), 1, "{puts:?}");
    assert_eq!(puts[0].body, b"first,second");
}

#[tokio::test]
async fn put_with_a_small_full_body_is_replayed_on_a_new_connection() {
    let server = second_request_finds_it_closed().await;
    let client = Client::new(ClientConfig::new());
    warm_up(&client, &server).await;

    // 48 KiB: several TCP segments, still within the default replay buffer of 64 KiB.
    let payload: Bytes = (0..48 * 1024).map(|i| (i % 251) as u8).collect();
    let response = within(
        "the PUT",
        client.request(
            Request::put(server.url("/doc"))
                .body(Full::new(payload.clone()))
                .unwrap(),
        ),
    )
    .await
    .expect("the replayed PUT succeeds");
    assert_eq!(response.status(), 200);
    let body = within("the PUT's response body", response.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(body, "ok");

    let stats = client.stats().snapshot();
    assert_eq!(stats.retries, 1, "{}", stats.to_json());
    assert_eq!(stats.opened, 2, "{}", stats.to_json());
    let puts: Vec<_> = server
        .seen()
        .into_iter()
        .filter(|s| s.method == "PUT")
        .collect();
    assert_eq!(puts.len(), 2, "sent on the stale connection, then replayed");
    assert_eq!(
        (puts[1].conn, puts[1].index),
        (1, 0),
        "on the new connection"
    );
    assert!(
        puts.iter().all(|p| p.body == payload),
        "the full body both times: {:?}",
        puts.iter().map(|p| p.body.len()).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn failure_after_part_of_the_response_is_not_retried() {
    let server = RawServer::start(|seen| {
        if seen.index == 0 {
            Action::Answer
        } else {
            Action::Truncate
        }
    })
    .await;
    let client = Client::new(ClientConfig::new());
    warm_up(&client, &server).await;

    let outcome = within("the truncated GET", async {
        let response = client
            .request(
                Request::get(server.url("/cut"))
                    .body(Empty::<Bytes>::new())
                    .unwrap(),
            )
            .await
            .map_err(|e| format!("request: {e}"))?;
        response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .map_err(|e| format!("body: {e}"))
    })
    .await;
    let error = outcome.expect_err("a response cut short is an error");

    let uri: http::Uri = server.url("/").parse().unwrap();
    let stats = client.stats().snapshot();
    assert_eq!(stats.retries, 0, "{error}: {}", stats.to_json());
    assert_eq!(stats.opened, 1, "{error}: {}", stats.to_json());
    assert_eq!(stats.requests, 2, "{error}: {}", stats.to_json());
    assert_eq!(
        client.idle_connections(&uri),
        0,
        "the broken connection is gone"
    );
    assert_eq!(server.count("GET"), 2, "the GET was sent once: {error}");
    assert_eq!(server.connections(), 1);
}

#[tokio::test]
async fn failure_after_part_of_the_head_is_not_retried() {
    // Some response bytes arrived, but not a whole head: the request may have been processed,
    // so it fails with a plain request error, not a retry (nor `StaleNotRetried`).
    let server = RawServer::start(|seen| {
        if seen.index == 0 {
            Action::Answer
        } else {
            Action::PartialHead
        }
    })
    .await;
    let client = Client::new(ClientConfig::new());
    warm_up(&client, &server).await;

    let result = within(
        "the GET cut inside the head",
        client.request(
            Request::get(server.url("/cut"))
                .body(Empty::<Bytes>::new())
                .unwrap(),
        ),
    )
    .await;
    let error = result.expect_err("a head cut short is an error");
    assert_eq!(error.kind(), &ErrorKind::Request, "{error}");

    let stats = client.stats().snapshot();
    assert_eq!(stats.retries, 0, "{error}: {}", stats.to_json());
    assert_eq!(stats.opened, 1, "{error}: {}", stats.to_json());
    assert_eq!(server.count("GET"), 2, "the GET was sent once: {error}");
}

#[tokio::test]
async fn retries_turned_off_or_a_body_over_the_replay_buffer_are_not_retried() {
    let server = second_request_finds_it_closed().await;
    let client = Client::new(ClientConfig::new().retry_stale_requests(false));
    warm_up(&client, &server).await;
    let error = within(
        "the GET without retries",
        client.request(
            Request::get(server.url("/again"))
                .body(Empty::<Bytes>::new())
                .unwrap(),
        ),
    )
    .await
    .expect_err("without retries a stale GET fails");
    assert!(
        matches!(error.kind(), ErrorKind::StaleNotRetried(_)),
        "{:?}: {error}",
        error.kind()
    );
    assert!(error.to_string().contains("turned off"), "{error}");
    assert_eq!(client.stats().snapshot().retries, 0);

    // A body with an exact size over the replay buffer is streamed, not buffered.
    let client = Client::new(ClientConfig::new().replay_buffer(1024));
    warm_up(&client, &server).await;
    let payload = Bytes::from(vec![b'x'; 4096]);
    let error = within(
        "the PUT over the replay buffer",
        client.request(
            Request::put(server.url("/doc"))
                .body(Full::new(payload.clone()))
                .unwrap(),
        ),
    )
    .await
    .expect_err("a body too big to replay is not retried");
    assert!(
        matches!(error.kind(), ErrorKind::StaleNotRetried(_)),
        "{:?}: {error}",
        error.kind()
    );
    assert!(error.to_string().contains("cannot be replayed"), "{error}");
    assert_eq!(client.stats().snapshot().retries, 0);
    let puts: Vec<_> = server
        .seen()
        .into_iter()
        .filter(|s| s.method == "PUT")
        .collect();
    assert_eq!(puts.len(), 1);
    assert_eq!(puts[0].body, payload, "the whole body was streamed once");
}

#[tokio::test]
async fn the_retry_goes_to_a_new_connection_even_with_more_idle_ones_pooled() {
    // The module docs promise the retry runs "on a new connection". With two idle connections
    // that are both stale (as after a server restart, before their FINs are seen), a retry
    // that took the other pooled connection would fail again.
    let server = second_request_finds_it_closed().await;
    let client = Client::new(ClientConfig::new());
    let uri: http::Uri = server.url("/").parse().unwrap();
    let (a, b) = within("two concurrent requests", async {
        tokio::join!(
            client.request(
                Request::get(server.url("/a"))
                    .body(Empty::<Bytes>::new())
                    .unwrap()
            ),
            client.request(
                Request::get(server.url("/b"))
                    .body(Empty::<Bytes>::new())
                    .unwrap()
            ),
        )
    })
    .await;
    for response in [a.unwrap(), b.unwrap()] {
        let body = within("a body", response.into_body().collect())
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(body, "ok");
    }
    wait_until("two idle connections", SOON, || {
        client.idle_connections(&uri) == 2
    })
    .await;
    assert_eq!(client.stats().snapshot().opened, 2);

    let result = within(
        "the GET on a stale connection",
        client.request(
            Request::get(server.url("/again"))
                .body(Empty::<Bytes>::new())
                .unwrap(),
        ),
    )
    .await;
    let stats = client.stats().snapshot();
    let response = result.unwrap_or_else(|e| {
        panic!(
            "the retried GET fails ({:?}: {e}); requests seen: {:?}; {}",
            e.kind(),
            server.seen(),
            stats.to_json()
        )
    });
    assert_eq!(response.status(), 200);
    assert_eq!(stats.retries, 1, "{}", stats.to_json());
    assert_eq!(stats.opened, 3, "the retry opened a new connection");
}

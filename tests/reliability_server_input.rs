//! Bad input on the server: every malformed or hostile request gets a clear 4xx or a close,
//! never a panic, and the server keeps serving everyone else.
//!
//! Each case runs on its own server (own loopback address) beside a bystander: a keep-alive
//! connection opened before the case, which must still be answered after it, as must a fresh
//! connection. After each case the attacker's connection is gone from the server (its active
//! count is back to the bystander alone) and no server socket is left in CLOSE_WAIT.
//!
//! Cases: garbage request lines, binary noise, a 2 MiB head, 5,000 header lines, a 2 MiB URI,
//! invalid, negative, listed and duplicated Content-Length, invalid and unsupported
//! Transfer-Encoding, invalid chunked bodies, request smuggling (Content-Length with
//! Transfer-Encoding, in both orders: the smuggled request is never served), garbage after a
//! good request on a kept-alive connection, slowloris heads (a byte every 0.5 s: 408 and a close
//! within the header timeout, while others are served), and resets in the middle of a request
//! head, a request body, a running handler and a response body.
//!
//! A body that stops arriving is the one case the server does not end: it is an ignored test
//! here, with the bug described in its ignore reason and in RELIABILITY.md.

mod support;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use keepalive::{CloseReason, ServerConfig};
use support::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The header timeout of every server here.
const HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// Size of the `/big` response: far more than loopback socket buffers hold, so a reset can
/// land in the middle of it.
const BIG_BODY: usize = 32 * 1024 * 1024;

/// What the service saw: the paths it was called with, in order, and how many `/hold` handlers
/// were dropped before they finished.
#[derive(Debug, Clone, Default)]
struct Seen {
    paths: Arc<Mutex<Vec<String>>>,
    holds_dropped: Arc<AtomicUsize>,
}

impl Seen {
    fn paths(&self) -> Vec<String> {
        self.paths.lock().unwrap().clone()
    }

    fn saw(&self, path: &str) -> bool {
        self.paths().iter().any(|p| p == path)
    }
}

/// Counts a `/hold` handler dropped before it finished.
struct HoldGuard(Arc<AtomicUsize>);

impl Drop for HoldGuard {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// The support routes, plus `/big` (a 32 MiB body streamed in 64 KiB chunks) and `/hold` (a
/// handler that never finishes by itself and counts its drop), recording every path the
/// service is called with.
fn service(
    seen: Seen,
) -> impl tower::Service<
    Request<Incoming>,
    Response = Response<BoxBody<Bytes, Infallible>>,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    tower::service_fn(move |req: Request<Incoming>| {
        seen.paths
            .lock()
            .unwrap()
            .push(req.uri().path().to_string());
        let holds_dropped = seen.holds_dropped.clone();
        async move {
            match req.uri().path() {
                "/big" => {
                    let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
                    let chunks = futures_util::stream::iter(
                        (0..BIG_BODY / chunk.len())
                            .map(move |_| Ok::<_, Infallible>(Frame::data(chunk.clone()))),
                    );
                    Ok(Response::new(StreamBody::new(chunks).boxed()))
                }
                "/hold" => {
                    let _guard = HoldGuard(holds_dropped);
                    std::future::pending::<()>().await;
                    unreachable!("a pending future never completes")
                }
                _ => routes(req).await,
            }
        }
    })
}

/// A server with the routes above and a bystander connection that has been served once.
struct Scene {
    server: TestServer,
    seen: Seen,
    bystander: TcpStream,
}

impl Scene {
    async fn start() -> Scene {
        Self::start_with(ServerConfig::new().header_timeout(HEADER_TIMEOUT)).await
    }

    async fn start_with(config: ServerConfig) -> Scene {
        let seen = Seen::default();
        let server = TestServer::start_with(config, service(seen.clone())).await;
        let mut bystander = server.connect().await;
        let hello = within("the bystander's first request", async {
            request(&mut bystander, &get("/", "")).await
        })
        .await;
        assert_eq!(hello.status, 200);
        Scene {
            server,
            seen,
            bystander,
        }
    }

    /// After a case: the attacker's connection is gone without CLOSE_WAIT, the bystander and
    /// a fresh connection are served, and the server task is still running.
    async fn still_serving(&mut self, case: &str) {
        wait_until(&format!("{case}: only the bystander left"), SOON, || {
            self.server.stats.snapshot().active == 1
        })
        .await;
        wait_until(
            &format!("{case}: no CLOSE_WAIT on the server"),
            SOON,
            || self.server.server_side().close_wait() == 0,
        )
        .await;
        let again = within(&format!("{case}: the bystander is served"), async {
            request(&mut self.bystander, &get("/", "")).await
        })
        .await;
        assert_eq!(again.status, 200, "{case}");
        let mut fresh = self.server.connect().await;
        let response = within(&format!("{case}: a fresh connection is served"), async {
            request(&mut fresh, &get("/", "")).await
        })
        .await;
        assert_eq!(response.status, 200, "{case}");
        assert!(!self.server.task.is_finished(), "{case}: the server ended");
    }
}

/// How a connection ended, seen from the client.
#[derive(Debug)]
struct Ending {
    /// Everything received before the end.
    received: Vec<u8>,
    /// Reset (an error) rather than a clean EOF.
    reset: bool,
}

impl Ending {
    /// The status of the first response received, if any.
    fn status(&self) -> Option<u16> {
        let text = String::from_utf8_lossy(&self.received);
        let line = text.lines().next()?;
        line.strip_prefix("HTTP/1.1 ")
            .or_else(|| line.strip_prefix("HTTP/1.0 "))?
            .get(..3)?
            .parse()
            .ok()
    }

    /// How many responses started (status lines at the start of the stream or after a body).
    fn responses(&self) -> usize {
        let text = String::from_utf8_lossy(&self.received);
        text.matches("HTTP/1.1 ").count()
    }
}

/// Reads until the server closes (EOF or reset); panics if it does not within [`SOON`].
async fn read_to_end(stream: &mut (impl AsyncRead + Unpin), what: &str) -> Ending {
    let mut received = Vec::new();
    let reset = within(what, async {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => return false,
                Ok(n) => received.extend_from_slice(&buf[..n]),
                Err(_) => return true,
            }
        }
    })
    .await;
    Ending { received, reset }
}

/// Sends `bytes` (from another task, so a server that answers before reading everything is
/// heard at once) and reads until the server closes.
async fn send_and_read(server: &TestServer, bytes: Vec<u8>, case: &str) -> Ending {
    let stream = server.connect().await;
    let (mut reader, mut writer) = stream.into_split();
    let writing = tokio::spawn(async move {
        // The server may close (even reset) before taking everything: not an error here.
        let _ = writer.write_all(&bytes).await;
        writer
    });
    let ending = read_to_end(&mut reader, &format!("{case}: the server closes")).await;
    let writer = within(&format!("{case}: the writer ends"), writing)
        .await
        .unwrap();
    drop(writer.reunite(reader));
    ending
}

/// The expected outcome of a malformed request.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Rejected before the service: this status, `Connection: close`, then the close. A head
    /// too large to read may turn into a reset before the status arrives; the status is
    /// checked whenever bytes arrived.
    Rejected(u16),
    /// The head was valid, so the service ran (a body error cannot be answered with a 4xx any
    /// more): at most one response, then the close.
    ClosedAfterOneResponse,
}

fn cases() -> Vec<(&'static str, Vec<u8>, Expect)> {
    let noise: Vec<u8> = (0..64 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let huge_header = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Fill: {}\r\n\r\n",
        "a".repeat(2 * 1024 * 1024)
    );
    let many_headers: String = (0..5000).map(|i| format!("X-H{i}: v\r\n")).collect();
    let huge_uri = format!(
        "GET /{} HTTP/1.1\r\nHost: x\r\n\r\n",
        "u".repeat(2 * 1024 * 1024)
    );
    let post = |headers: &str, body: &str| {
        format!("POST /echo HTTP/1.1\r\nHost: x\r\n{headers}\r\n{body}").into_bytes()
    };
    use Expect::*;
    vec![
        (
            "a garbage request line",
            b"HELLO THERE\r\n\r\n".to_vec(),
            Rejected(400),
        ),
        (
            "a request line without a version",
            b"GET /\r\n\r\n".to_vec(),
            Rejected(400),
        ),
        (
            "a method with control bytes",
            b"G\x01T / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            Rejected(400),
        ),
        ("binary noise", noise, Rejected(400)),
        ("NUL bytes", vec![0u8; 4096], Rejected(400)),
        (
            "a header line without a colon",
            b"GET / HTTP/1.1\r\nHost x\r\n\r\n".to_vec(),
            Rejected(400),
        ),
        (
            "a space before the colon",
            b"GET / HTTP/1.1\r\nHost : x\r\n\r\n".to_vec(),
            Rejected(400),
        ),
        (
            "a NUL in a header value",
            b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n".to_vec(),
            Rejected(400),
        ),
        ("a 2 MiB header", huge_header.into_bytes(), Rejected(431)),
        (
            "5,000 header lines",
            format!("GET / HTTP/1.1\r\nHost: x\r\n{many_headers}\r\n").into_bytes(),
            Rejected(431),
        ),
        ("a 2 MiB URI", huge_uri.into_bytes(), Rejected(431)),
        (
            "a non-numeric Content-Length",
            post("Content-Length: abc\r\n", "hello"),
            Rejected(400),
        ),
        (
            "a negative Content-Length",
            post("Content-Length: -5\r\n", "hello"),
            Rejected(400),
        ),
        (
            "an overflowing Content-Length",
            post("Content-Length: 99999999999999999999999\r\n", "hello"),
            Rejected(400),
        ),
        (
            "two different Content-Lengths",
            post("Content-Length: 5\r\nContent-Length: 6\r\n", "hello!"),
            Rejected(400),
        ),
        (
            "a listed Content-Length",
            post("Content-Length: 5, 6\r\n", "hello!"),
            Rejected(400),
        ),
        (
            "an unsupported Transfer-Encoding",
            post("Transfer-Encoding: gzip\r\n", "hello"),
            Rejected(400),
        ),
        (
            "chunked not last",
            post(
                "Transfer-Encoding: chunked, gzip\r\n",
                "5\r\nhello\r\n0\r\n\r\n",
            ),
            Rejected(400),
        ),
        (
            "Transfer-Encoding on HTTP/1.0",
            b"POST /echo HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                .to_vec(),
            Rejected(400),
        ),
        (
            "a chunk size that is not hex",
            post("Transfer-Encoding: chunked\r\n", "zz\r\nhello\r\n0\r\n\r\n"),
            ClosedAfterOneResponse,
        ),
        (
            "a chunk longer than its size",
            post("Transfer-Encoding: chunked\r\n", "2\r\nhello\r\n0\r\n\r\n"),
            ClosedAfterOneResponse,
        ),
        (
            "an overflowing chunk size",
            post(
                "Transfer-Encoding: chunked\r\n",
                "ffffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
            ),
            ClosedAfterOneResponse,
        ),
        (
            "a chunk without its CRLF",
            post("Transfer-Encoding: chunked\r\n", "5\r\nhelloXX0\r\n\r\n"),
            ClosedAfterOneResponse,
        ),
    ]
}

#[tokio::test]
async fn malformed_requests_get_a_4xx_or_a_close_and_others_are_still_served() {
    for (case, bytes, expect) in cases() {
        let mut scene = Scene::start().await;
        let ending = send_and_read(&scene.server, bytes, case).await;
        let text =
            String::from_utf8_lossy(&ending.received[..ending.received.len().min(200)]).to_string();
        match expect {
            Expect::Rejected(status) => {
                if !(ending.reset && ending.received.is_empty()) {
                    assert_eq!(ending.status(), Some(status), "{case}: {text:?}");
                    assert!(
                        text.to_ascii_lowercase().contains("connection: close"),
                        "{case}: {text:?}"
                    );
                }
                assert_eq!(
                    scene.seen.paths().len(),
                    1,
                    "{case}: the service must not run for a rejected head: {:?}",
                    scene.seen.paths()
                );
                wait_until(&format!("{case}: counted as an error"), SOON, || {
                    scene.server.stats.snapshot().closed(CloseReason::Error) == 1
                })
                .await;
            }
            Expect::ClosedAfterOneResponse => {
                assert!(ending.responses() <= 1, "{case}: {text:?}");
            }
        }
        scene.still_serving(case).await;
        println!(
            "{case}: {} ({} bytes{})",
            ending
                .status()
                .map_or("no response".to_string(), |s| s.to_string()),
            ending.received.len(),
            if ending.reset { ", reset" } else { "" }
        );
    }
}

#[tokio::test]
async fn garbage_after_a_good_request_on_a_kept_connection_gets_400_and_a_close() {
    let mut scene = Scene::start().await;
    let mut stream = scene.server.connect().await;
    let ok = within("the good request", request(&mut stream, &get("/", ""))).await;
    assert_eq!(ok.status, 200);
    assert!(!ok.says_close());
    stream
        .write_all(b"\x16\x03\x01\x02\x00garbage\r\n\r\n")
        .await
        .unwrap();
    let ending = read_to_end(&mut stream, "the close after garbage").await;
    assert_eq!(ending.status(), Some(400), "{ending:?}");
    scene.still_serving("garbage on a kept connection").await;
}

/// RFC 9112 6.3: a request with both Content-Length and Transfer-Encoding is read as chunked
/// and the connection MUST be closed after the response. Bytes after the chunked body, which
/// a front end that believed the Content-Length would have taken as part of this request,
/// must never be served as a request of their own.
#[tokio::test]
async fn smuggling_with_content_length_and_transfer_encoding_is_closed_after_one_response() {
    for (case, headers) in [
        (
            "Content-Length then Transfer-Encoding",
            "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
        ),
        (
            "Transfer-Encoding then Content-Length",
            "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n",
        ),
    ] {
        let mut scene = Scene::start().await;
        let attack = format!(
            "POST /echo HTTP/1.1\r\nHost: x\r\n{headers}\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
        );
        let ending = send_and_read(&scene.server, attack.into_bytes(), case).await;
        let text = String::from_utf8_lossy(&ending.received).to_string();
        assert!(ending.responses() <= 1, "{case}: {text:?}");
        if ending.status().is_some() {
            assert!(
                text.to_ascii_lowercase().contains("connection: close"),
                "{case}: the response must announce the close: {text:?}"
            );
        }
        assert!(
            !scene.seen.saw("/smuggled"),
            "{case}: the smuggled request was served: {:?}",
            scene.seen.paths()
        );
        scene.still_serving(case).await;
    }
}

/// The close after a smuggling attempt is hyper's decision, made outside the crate's policy:
/// the crate counts it as if the client had asked to close and still advertises keep-alive in
/// the same response.
#[tokio::test]
async fn a_close_hyper_decides_is_not_counted_as_the_clients_and_advertises_no_keep_alive() {
    let mut scene = Scene::start().await;
    let attack = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    let ending = send_and_read(&scene.server, attack.as_bytes().to_vec(), "CL+TE").await;
    let text = String::from_utf8_lossy(&ending.received).to_ascii_lowercase();
    assert!(text.contains("connection: close"), "{text:?}");
    assert!(
        !text.contains("keep-alive:"),
        "a response followed by the close advertises keep-alive: {text:?}"
    );
    scene.still_serving("CL+TE").await;
    let stats = scene.server.stats.snapshot();
    assert_eq!(
        stats.closed(CloseReason::ClientClose),
        0,
        "the client asked nothing: {}",
        stats.to_json()
    );
}

/// Slowloris: heads dribbled one byte every 0.5 s from many connections at once. Each gets 408
/// and a close once the header timeout (2 s) has passed since its first byte, long before its
/// head could complete; meanwhile the bystander keeps being served.
#[tokio::test]
async fn slowloris_heads_get_408_within_the_header_timeout_while_others_are_served() {
    const LORISES: usize = 16;
    let mut scene = Scene::start().await;
    // 200 bytes at 2 per second would take 100 s.
    let head = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: {}\r\n\r\n",
        "s".repeat(160)
    );
    let mut tasks = Vec::new();
    for _ in 0..LORISES {
        let mut stream = scene.server.connect().await;
        let head = head.clone().into_bytes();
        tasks.push(tokio::spawn(async move {
            let mut sent = 0;
            let mut received = Vec::new();
            for byte in &head {
                if stream.write_all(&[*byte]).await.is_err() {
                    break;
                }
                sent += 1;
                // The gap between bytes, during which the server may answer and close.
                let mut buf = [0u8; 1024];
                match tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf)).await
                {
                    Ok(Ok(0)) | Ok(Err(_)) => break,
                    Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
                    Err(_) => {}
                }
            }
            let ending = read_to_end(&mut stream, "a slowloris is closed").await;
            received.extend_from_slice(&ending.received);
            (
                sent,
                String::from_utf8_lossy(&received).to_string(),
                head.len(),
            )
        }));
    }
    // The bystander is served while the lorises dribble.
    for _ in 0..5 {
        let response = within("the bystander during the slowloris", async {
            request(&mut scene.bystander, &get("/", "")).await
        })
        .await;
        assert_eq!(response.status, 200);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for task in tasks {
        // Each loris ends within the header timeout plus generous slack (the test's own gap
        // of 0.5 s bounds how fast it notices).
        let (sent, received, len) = tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("a slowloris was not closed")
            .unwrap();
        assert!(
            received.starts_with("HTTP/1.1 408"),
            "a slowloris gets 408: {received:?}"
        );
        assert!(
            sent < len / 2,
            "closed after {sent} of {len} bytes: the header timeout did not hold"
        );
    }
    assert_eq!(
        scene
            .server
            .stats
            .snapshot()
            .closed(CloseReason::HeaderTimeout),
        LORISES as u64
    );
    assert_eq!(
        scene.seen.paths().len(),
        1 + 5,
        "no slowloris reached the service"
    );
    scene.still_serving("slowloris").await;
}

/// A request body that stops arriving: the head is complete, so the header timeout no longer
/// applies, and the handler waits on the body. Silence longer than the idle timeout while the
/// body is incomplete ends it with a 408 (the handler had not answered) and a close.
#[tokio::test]
async fn a_body_that_stops_arriving_is_closed() {
    let config = ServerConfig::new()
        .header_timeout(Duration::from_secs(1))
        .idle_timeout(Duration::from_secs(2));
    let scene = Scene::start_with(config).await;
    let mut stream = scene.server.connect().await;
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        .await
        .unwrap();
    // Well past the idle timeout: the server must have given up by then.
    let mut received = Vec::new();
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the connection is still open after 10 s");
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 408"), "{text:?}");
    wait_until("the stalled connection is counted", SOON, || {
        scene
            .server
            .stats
            .snapshot()
            .closed(CloseReason::BodyTimeout)
            == 1
    })
    .await;
    let stats = scene.server.stats.snapshot();
    assert_eq!(stats.handlers_dropped, 1, "{}", stats.to_json());
    wait_until("no CLOSE_WAIT on the server", SOON, || {
        scene.server.server_side().close_wait() == 0
    })
    .await;
    // The bystander idled out with the 2 s idle timeout; a fresh connection is served.
    let mut fresh = scene.server.connect().await;
    let response = within("a fresh connection is served", async {
        request(&mut fresh, &get("/", "")).await
    })
    .await;
    assert_eq!(response.status, 200);
}

/// A body that keeps arriving, slower than the idle timeout in total but never silent that
/// long, is served.
#[tokio::test]
async fn a_slow_body_that_keeps_arriving_is_served() {
    let config = ServerConfig::new().idle_timeout(Duration::from_millis(800));
    let scene = Scene::start_with(config).await;
    let mut stream = scene.server.connect().await;
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\n")
        .await
        .unwrap();
    // Six bytes 300 ms apart (a real gap of the scenario): 1.8 s in all.
    for byte in b"abcdef" {
        tokio::time::sleep(Duration::from_millis(300)).await;
        stream.write_all(&[*byte]).await.unwrap();
    }
    let mut leftover = Vec::new();
    let response = within("the echo", read_response(&mut stream, &mut leftover))
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"abcdef");
    assert_eq!(
        scene
            .server
            .stats
            .snapshot()
            .closed(CloseReason::BodyTimeout),
        0
    );
}

/// Resets (SO_LINGER 0, then close) at each stage of a request: the server notices, ends the
/// connection (dropping a running handler), keeps no socket, and serves the next client.
#[tokio::test]
async fn resets_in_the_middle_of_a_request_or_a_response_end_the_connection_cleanly() {
    let mut scene = Scene::start().await;

    // 1. In the middle of the head.
    let accepted = scene.server.stats.snapshot().accepted;
    let mut stream = scene.server.connect().await;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Half: ")
        .await
        .unwrap();
    wait_until("the head started (only the bystander idle)", SOON, || {
        let s = scene.server.stats.snapshot();
        s.accepted == accepted + 1 && s.idle == 1
    })
    .await;
    reset(stream);
    scene.still_serving("a reset inside the head").await;

    // 2. In the middle of the body, while the handler reads it.
    let mut stream = scene.server.connect().await;
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789")
        .await
        .unwrap();
    wait_until("the echo handler runs", SOON, || scene.seen.saw("/echo")).await;
    reset(stream);
    scene.still_serving("a reset inside the request body").await;

    // 3. While a handler runs: it is dropped.
    reset_a_running_handler(&scene).await;
    scene.still_serving("a reset while the handler runs").await;

    // 4. In the middle of a 32 MiB response.
    let mut stream = scene.server.connect().await;
    stream.write_all(get("/big", "").as_bytes()).await.unwrap();
    let mut got = 0;
    let mut buf = vec![0u8; 64 * 1024];
    within("the first 256 KiB of the response", async {
        while got < 256 * 1024 {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "the response ended early");
            got += n;
        }
    })
    .await;
    reset(stream);
    scene
        .still_serving("a reset inside the response body")
        .await;

    let stats = scene.server.stats.snapshot();
    assert_eq!(
        stats.closed(CloseReason::Error),
        4,
        "every reset ends its connection as an error: {}",
        stats.to_json()
    );
}

/// Starts a `/hold` handler, resets its connection, and waits until the handler is dropped.
async fn reset_a_running_handler(scene: &Scene) {
    let mut stream = scene.server.connect().await;
    stream.write_all(get("/hold", "").as_bytes()).await.unwrap();
    wait_until("the handler runs", SOON, || scene.seen.saw("/hold")).await;
    reset(stream);
    wait_until("the handler is dropped", SOON, || {
        scene.seen.holds_dropped.load(Ordering::SeqCst) == 1
    })
    .await;
}

/// Closes `stream` with a reset (SO_LINGER 0).
fn reset(stream: TcpStream) {
    keepalive::socket::set_abortive_close(&stream).unwrap();
    drop(stream);
}

/// A handler dropped because the client reset the connection is dropped (the test above), but
/// the counter of handlers dropped because the client left misses it.
#[tokio::test]
async fn a_handler_dropped_by_a_reset_is_counted() {
    let scene = Scene::start().await;
    reset_a_running_handler(&scene).await;
    wait_until("the connection is closed", SOON, || {
        scene.server.stats.snapshot().active == 1
    })
    .await;
    let stats = scene.server.stats.snapshot();
    assert_eq!(stats.handlers_dropped, 1, "{}", stats.to_json());
}

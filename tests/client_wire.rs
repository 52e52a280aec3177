//! The client's HTTP/1 wire behaviour end to end, over real sockets on loopback: request
//! bodies streamed chunked (with trailers) or sent with their exact Content-Length, large
//! Content-Length, chunked and close-delimited responses, response trailers, interim (1xx)
//! responses, heads and bodies split into single bytes, an early answer to a request whose
//! body the server never reads, a Content-Length that disagrees with the body streamed, and
//! HEAD. The peers are a hyper 1.x HTTP/1 server (a `service_fn` that records what it read)
//! and scripted raw tokio servers where the exact bytes matter.

mod support;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::stream;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Body, Bytes, Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use keepalive::client::{Client, ClientConfig, ErrorKind, PoolCloseReason};
use support::raw::{ok, RawServer, Reply};
use support::{unique_loopback, wait_until, within, SOON};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MIB: usize = 1024 * 1024;

/// `len` bytes of a pattern that does not repeat at any power-of-two period.
fn pattern(len: usize) -> Bytes {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// A request body of unknown length: these frames, in order.
fn streamed(frames: Vec<Frame<Bytes>>) -> impl Body<Data = Bytes, Error = Infallible> + Send {
    StreamBody::new(stream::iter(frames.into_iter().map(Ok)))
}

/// `whole` cut into data frames of these sizes.
fn cut(whole: &Bytes, sizes: &[usize]) -> Vec<Frame<Bytes>> {
    let ends = sizes
        .iter()
        .scan(0, |end, n| Some(std::mem::replace(end, *end + n)..*end));
    ends.map(|range| Frame::data(whole.slice(range))).collect()
}

/// A server on a loopback address of its own: `serve` runs in a task for each connection;
/// the connections accepted are counted. (Its tasks end with the test's runtime.)
async fn listen<F, Fut>(serve: F) -> (SocketAddr, Arc<AtomicUsize>)
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind((unique_loopback(), 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(stream));
        }
    });
    (addr, accepted)
}

/// A request as the hyper server read it (body to its end, trailers included).
struct Received {
    method: Method,
    headers: HeaderMap,
    body: Bytes,
    trailers: Option<HeaderMap>,
}

/// A hyper 1.x HTTP/1 server: `/reject` answers 413 without reading the request body; any
/// other request is read whole and recorded, then `/len/N` answers N pattern bytes with a
/// Content-Length, `/chunks/N` N pattern bytes streamed in 4093-byte frames (chunked), and
/// the rest `ok`.
struct HyperServer {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    received: Arc<Mutex<Vec<Received>>>,
}

type HyperReply = Response<BoxBody<Bytes, Infallible>>;

fn status(status: StatusCode, text: &'static str) -> HyperReply {
    let mut response = Response::new(Full::new(Bytes::from(text)).boxed());
    *response.status_mut() = status;
    response
}

async fn handle(
    request: Request<Incoming>,
    log: Arc<Mutex<Vec<Received>>>,
) -> Result<HyperReply, Infallible> {
    let path = request.uri().path().to_owned();
    if path == "/reject" {
        return Ok(status(StatusCode::PAYLOAD_TOO_LARGE, "too large"));
    }
    let (parts, body) = request.into_parts();
    let Ok(collected) = body.collect().await else {
        return Ok(status(StatusCode::BAD_REQUEST, "bad body"));
    };
    log.lock().unwrap().push(Received {
        method: parts.method,
        headers: parts.headers,
        trailers: collected.trailers().cloned(),
        body: collected.to_bytes(),
    });
    let size = |prefix: &str| path.strip_prefix(prefix).and_then(|n| n.parse().ok());
    Ok(if let Some(n) = size("/len/") {
        Response::builder()
            .header("content-length", n)
            .body(Full::new(pattern(n)).boxed())
            .unwrap()
    } else if let Some(n) = size("/chunks/") {
        let data = pattern(n);
        let frames = (0..n)
            .step_by(4093)
            .map(move |at| Ok(Frame::data(data.slice(at..(at + 4093).min(n)))));
        Response::new(StreamBody::new(stream::iter(frames)).boxed())
    } else {
        status(StatusCode::OK, "ok")
    })
}

impl HyperServer {
    async fn start() -> HyperServer {
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        let (addr, accepted) = listen(move |stream| {
            let log = log.clone();
            let service = service_fn(move |request| handle(request, log.clone()));
            async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            }
        })
        .await;
        HyperServer {
            addr,
            accepted,
            received,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The last request the server read whole.
    fn last(&self) -> Received {
        let mut received = self.received.lock().unwrap();
        received.pop().expect("no request recorded")
    }
}

/// A response read to its end.
struct Got {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    trailers: Option<HeaderMap>,
}

/// Sends `request` and reads its response to the end; panics on any error or after [`SOON`].
async fn fetch<B>(client: &Client, request: Request<B>) -> Got
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<keepalive::BoxError>,
{
    let response = within("the response head", client.request(request))
        .await
        .unwrap_or_else(|e| panic!("the request failed: {e}"));
    let (parts, body) = response.into_parts();
    let collected = within("the response body", body.collect())
        .await
        .unwrap_or_else(|e| panic!("the response body failed: {e}"));
    Got {
        status: parts.status,
        headers: parts.headers,
        trailers: collected.trailers().cloned(),
        body: collected.to_bytes(),
    }
}

fn get(url: &str) -> Request<Empty<Bytes>> {
    Request::get(url).body(Empty::new()).unwrap()
}

fn post<B>(url: &str, body: B) -> Request<B> {
    Request::post(url).body(body).unwrap()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.to_str().unwrap())
}

/// The (Content-Length, Transfer-Encoding) of a head.
fn framing(headers: &HeaderMap) -> (Option<String>, Option<String>) {
    let get = |name| header(headers, name).map(str::to_owned);
    (get("content-length"), get("transfer-encoding"))
}

/// A streamed body of unknown length (frames above and below 8 KiB, an empty frame in the
/// middle) is sent chunked and arrives intact; the empty frame does not end it early.
#[tokio::test]
async fn a_streamed_body_of_unknown_length_is_sent_chunked_and_arrives_intact() {
    let server = HyperServer::start().await;
    let client = Client::new(ClientConfig::new());
    let sizes = [100, 20_000, 0, 9_000, 70_000, 5];
    let whole = pattern(sizes.iter().sum());
    let request = post(&server.url("/record"), streamed(cut(&whole, &sizes)));
    let got = fetch(&client, request).await;
    assert_eq!((got.status, &got.body[..]), (StatusCode::OK, &b"ok"[..]));
    let seen = server.last();
    assert_eq!(framing(&seen.headers), (None, Some("chunked".into())));
    assert_eq!(seen.body.len(), whole.len());
    assert!(seen.body == whole, "the body arrived altered");
    assert_eq!(seen.trailers, None);
}

/// A `Frame::trailers` at the end of a streamed request body, its fields declared in the
/// request's `Trailer` header, reaches the server as the chunked body's trailer section, and
/// the connection serves the next request.
#[tokio::test]
async fn request_trailers_reach_the_server() {
    let server = HyperServer::start().await;
    let client = Client::new(ClientConfig::new());
    let mut trailers = HeaderMap::new();
    trailers.insert("x-checksum", "abc".parse().unwrap());
    trailers.insert("x-count", "2".parse().unwrap());
    let data = pattern(30_010);
    let mut frames = cut(&data, &[30_000, 10]);
    frames.push(Frame::trailers(trailers.clone()));
    let request = Request::post(server.url("/record"))
        .header("trailer", "x-checksum, X-Count")
        .body(streamed(frames))
        .unwrap();
    assert_eq!(fetch(&client, request).await.status, StatusCode::OK);
    let seen = server.last();
    assert!(seen.body == data, "the body arrived altered");
    assert_eq!(seen.trailers.as_ref(), Some(&trailers));

    assert_eq!(fetch(&client, get(&server.url("/"))).await.body, "ok");
    assert_eq!(client.stats().snapshot().opened, 1);
    assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
}

/// Only trailer fields that the request's `Trailer` header declares go out, and never one
/// that RFC 9110 6.5.1 forbids in trailers (framing, routing, authentication, control),
/// declared or not; without a `Trailer` header none do (hyper's encoder does the same).
#[tokio::test]
async fn only_declared_and_allowed_request_trailers_are_sent() {
    let server = HyperServer::start().await;
    let client = Client::new(ClientConfig::new());
    let mut trailers = HeaderMap::new();
    for (name, value) in [
        ("x-checksum", "abc"),
        ("x-undeclared", "1"),
        ("content-length", "5"),
        ("transfer-encoding", "gzip"),
        ("host", "evil.test"),
        ("authorization", "Bearer x"),
        ("connection", "close"),
    ] {
        trailers.insert(name, value.parse().unwrap());
    }
    let declared = "x-checksum, content-length, transfer-encoding, host, authorization, connection";
    for trailer_header in [Some(declared), None] {
        let mut frames = cut(&pattern(100), &[100]);
        frames.push(Frame::trailers(trailers.clone()));
        let mut request = Request::post(server.url("/record"));
        if let Some(value) = trailer_header {
            request = request.header("trailer", value);
        }
        let request = request.body(streamed(frames)).unwrap();
        assert_eq!(fetch(&client, request).await.status, StatusCode::OK);
        let seen = server.last();
        assert_eq!(seen.body, pattern(100));
        let names: Vec<String> = seen
            .trailers
            .iter()
            .flat_map(|t| t.keys().map(|k| k.as_str().to_owned()))
            .collect();
        let expected: &[&str] = if trailer_header.is_some() {
            &["x-checksum"]
        } else {
            &[]
        };
        assert_eq!(names, expected, "Trailer: {trailer_header:?}");
    }
    // The connection stayed in sync: one connection for both requests and one more.
    assert_eq!(fetch(&client, get(&server.url("/"))).await.body, "ok");
    assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
}

/// A body whose size hint is exact (`Full`) goes with a Content-Length of that size, never
/// chunked, whichever way the client sends it: streamed as it is (a POST, not replayable;
/// a PUT larger than the 64 KiB replay buffer) or held for a replay (a small PUT).
/// (It failed while the streamed body went through http-body-util's `map_frame`, which loses
/// the size hint.)
#[tokio::test]
async fn a_body_of_exact_size_is_sent_with_its_content_length() {
    let server = HyperServer::start().await;
    let client = Client::new(ClientConfig::new());
    let (mut framed, mut expected) = (Vec::new(), Vec::new());
    let methods = [Method::POST, Method::PUT, Method::PUT];
    for (method, len) in methods.into_iter().zip([50_000, 5, 100_000]) {
        let (case, body) = (format!("{method} {len}"), pattern(len));
        let request = Request::builder()
            .method(method.clone())
            .uri(server.url("/record"))
            .body(Full::new(body.clone()))
            .unwrap();
        assert_eq!(fetch(&client, request).await.status, StatusCode::OK);
        let seen = server.last();
        assert_eq!(seen.method, method);
        assert!(seen.body == body, "{case}: the body arrived altered");
        framed.push((case.clone(), framing(&seen.headers)));
        expected.push((case, (Some(len.to_string()), None)));
    }
    // (request, Content-Length, Transfer-Encoding) as the server read them.
    assert_eq!(framed, expected);
}

/// An empty body: a POST says `content-length: 0` (a POST is expected to have a body), a GET
/// says nothing about a body at all.
#[tokio::test]
async fn an_empty_body_carries_content_length_zero_only_where_a_body_is_expected() {
    let server = HyperServer::start().await;
    let client = Client::new(ClientConfig::new());
    let request = post(&server.url("/record"), Empty::<Bytes>::new());
    assert_eq!(fetch(&client, request).await.status, StatusCode::OK);
    let seen = server.last();
    assert_eq!(framing(&seen.headers), (Some("0".into()), None));

    assert_eq!(
        fetch(&client, get(&server.url("/record"))).await.status,
        StatusCode::OK
    );
    let seen = server.last();
    assert_eq!(seen.method, Method::GET);
    assert_eq!(framing(&seen.headers), (None, None));
}

/// 1 MiB bodies, with a Content-Length and chunked (hundreds of chunks) in turn, arrive
/// byte-exact, and one connection carries them all.
#[tokio::test]
async fn large_responses_are_exact_and_the_connection_reused() {
    let server = HyperServer::start().await;
    let client = Client::new(ClientConfig::new());
    let expected = pattern(MIB);
    for round in 0..6 {
        let (path, framing, value) = match round % 2 {
            0 => ("len", "content-length", "1048576"),
            _ => ("chunks", "transfer-encoding", "chunked"),
        };
        let got = fetch(&client, get(&server.url(&format!("/{path}/{MIB}")))).await;
        assert_eq!(header(&got.headers, framing), Some(value));
        assert_eq!(got.body.len(), MIB, "{path}");
        assert!(got.body == expected, "{path}: the body arrived altered");
        assert_eq!(got.trailers, None);
    }
    let stats = client.stats().snapshot();
    assert_eq!((stats.opened, stats.requests, stats.reused), (1, 6, 5));
    assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
}

/// A raw server that answers `first` to the first request of a connection, `next` after.
async fn first_then_next(first: &'static [u8]) -> RawServer {
    RawServer::start(move |_, index| match index {
        0 => Reply::Send(first.to_vec()),
        _ => Reply::Send(ok("next")),
    })
    .await
}

/// A chunked response's trailer section comes out as the body's trailers frame (not as
/// headers), and the connection is reused after it.
#[tokio::test]
async fn response_trailers_come_out_as_a_trailers_frame() {
    let server = first_then_next(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-checksum\r\n\r\n\
          5\r\nhello\r\n6\r\n world\r\n0\r\nx-checksum: abc\r\nx-other: 1\r\n\r\n",
    )
    .await;
    let client = Client::new(ClientConfig::new());
    let got = fetch(&client, get(&server.url("/trailers"))).await;
    assert_eq!(got.body, "hello world");
    let trailers = got.trailers.expect("no trailers frame");
    assert_eq!(header(&trailers, "x-checksum"), Some("abc"));
    assert_eq!(header(&trailers, "x-other"), Some("1"));
    assert_eq!(header(&got.headers, "x-checksum"), None);

    assert_eq!(fetch(&client, get(&server.url("/next"))).await.body, "next");
    let last = server.seen().pop().unwrap();
    assert_eq!((last.conn, last.index), (0, 1), "not reused");
    assert_eq!(client.stats().snapshot().opened, 1);
}

/// `100 Continue` and `103 Early Hints` (with a header) before the final response are skipped:
/// the caller gets the final response, without the interim headers, and the connection is
/// reused.
#[tokio::test]
async fn interim_responses_are_skipped_for_the_final_one() {
    let server = first_then_next(
        b"HTTP/1.1 100 Continue\r\n\r\n\
          HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n\
          HTTP/1.1 201 Created\r\nX-Final: yes\r\nContent-Length: 5\r\n\r\nfinal",
    )
    .await;
    let client = Client::new(ClientConfig::new());
    let got = fetch(&client, get(&server.url("/interim"))).await;
    assert_eq!(got.status, StatusCode::CREATED);
    assert_eq!(got.body, "final");
    assert_eq!(header(&got.headers, "x-final"), Some("yes"));
    assert_eq!(header(&got.headers, "link"), None);

    assert_eq!(fetch(&client, get(&server.url("/next"))).await.body, "next");
    assert_eq!(client.stats().snapshot().opened, 1);
}

/// An HTTP/1.1 response with neither Content-Length nor chunked ends at the server's close:
/// the body is complete, the connection is closed (no CLOSE_WAIT), the next request opens a
/// new one.
#[tokio::test]
async fn a_close_delimited_body_is_complete_and_its_connection_not_reused() {
    let body = pattern(300_000);
    let response = [
        &b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n"[..],
        &body,
    ]
    .concat();
    let server = RawServer::start(move |conn, _| match conn {
        0 => Reply::SendClose(response.clone()),
        _ => Reply::Send(ok("second")),
    })
    .await;
    let client = Client::new(ClientConfig::new());
    let got = fetch(&client, get(&server.url("/close"))).await;
    assert_eq!(got.body.len(), body.len());
    assert!(got.body == body, "the body arrived altered");
    server.no_client_close_wait("close-delimited").await;

    let got = fetch(&client, get(&server.url("/next"))).await;
    assert_eq!(got.body, "second");
    let stats = client.stats().snapshot();
    assert_eq!(stats.opened, 2);
    assert_eq!(stats.closed(PoolCloseReason::ServerClose), 1);
}

/// A raw server that answers the requests of a connection with `responses` in order, each
/// written one byte per write (no Nagle, each flushed, the task yielding in between); counts
/// the connections it accepted.
async fn trickle_server(responses: Vec<Vec<u8>>) -> (SocketAddr, Arc<AtomicUsize>) {
    listen(move |mut stream| {
        let responses = responses.clone();
        async move {
            stream.set_nodelay(true).unwrap();
            let (mut buf, mut chunk) = (Vec::new(), [0u8; 4096]);
            for response in responses {
                // A bodiless request: its head is all there is to read.
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                buf.clear();
                for byte in response {
                    if stream.write_all(&[byte]).await.is_err() || stream.flush().await.is_err() {
                        return;
                    }
                    tokio::task::yield_now().await;
                }
            }
            while matches!(stream.read(&mut chunk).await, Ok(n) if n > 0) {}
        }
    })
    .await
}

/// Responses arriving one byte at a time are read right: a head after an interim response,
/// with a Content-Length body; a chunked body with an extension on a size line, a one-byte
/// chunk and trailers. The connection is reused throughout.
#[tokio::test]
async fn responses_split_into_single_bytes_are_read_right() {
    let first = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nX-Long: abcdefghijklmnopq\r\n\
                  Content-Length: 11\r\n\r\nhello world"
        .to_vec();
    let second = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                   5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nx-checksum: abc\r\n\r\n"
        .to_vec();
    let (addr, accepted) = trickle_server(vec![first, second, ok("again")]).await;
    let (client, url) = (Client::new(ClientConfig::new()), format!("http://{addr}/"));
    let got = fetch(&client, get(&url)).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(header(&got.headers, "x-long"), Some("abcdefghijklmnopq"));
    assert_eq!((got.body, got.trailers), (Bytes::from("hello world"), None));

    let got = fetch(&client, get(&url)).await;
    assert_eq!(got.body, "hello world");
    let trailers = got.trailers.expect("no trailers frame");
    assert_eq!(header(&trailers, "x-checksum"), Some("abc"));

    assert_eq!(fetch(&client, get(&url)).await.body, "again");
    assert_eq!(client.stats().snapshot().opened, 1);
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

/// A server that answers 413 without reading a large streamed request body (64 MiB, far more
/// than the socket buffers hold): the client returns the 413 (no error, no hang) and does not
/// reuse that connection, whose request was never all sent.
#[tokio::test]
async fn an_early_response_to_an_unread_body_is_returned_and_its_connection_not_reused() {
    let server = HyperServer::start().await;
    let client = Client::new(ClientConfig::new());
    let chunk = Bytes::from(vec![7u8; 64 * 1024]);
    let frames = (0..1024).map(move |_| Ok::<_, Infallible>(Frame::data(chunk.clone())));
    let request = post(
        &server.url("/reject"),
        StreamBody::new(stream::iter(frames)),
    );
    let got = fetch(&client, request).await;
    assert_eq!(got.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(got.body, "too large");
    let uri = server.url("/").parse().unwrap();
    assert_eq!(client.idle_connections(&uri), 0, "the connection went back");

    assert_eq!(fetch(&client, get(&server.url("/"))).await.body, "ok");
    let stats = client.stats().snapshot();
    assert_eq!(stats.opened, 2, "{}", stats.to_json());
    assert_eq!(server.accepted.load(Ordering::SeqCst), 2);
}

/// A raw server that answers nothing: it reads each connection to its end (the client's
/// close) and keeps the bytes.
async fn recorder() -> (SocketAddr, Arc<Mutex<Vec<Vec<u8>>>>) {
    let conns = Arc::new(Mutex::new(Vec::new()));
    let log = conns.clone();
    let (addr, _) = listen(move |mut stream| {
        let log = log.clone();
        async move {
            let mut all = Vec::new();
            let _ = stream.read_to_end(&mut all).await;
            log.lock().unwrap().push(all);
        }
    })
    .await;
    (addr, conns)
}

/// A user-set Content-Length that the streamed body does not match (shorter, longer) fails
/// the request with an error and closes the connection: the server never gets more body bytes
/// than announced, nor anything after them, and nothing hangs. A `Full` body of another
/// length than the header's fails too.
#[tokio::test]
async fn a_content_length_the_body_does_not_match_fails_the_request() {
    // (announced, the sizes of the two frames streamed)
    let cases = [(100_000, [30_000, 30_000]), (40_000, [30_000, 30_000])];
    for (announced, sizes) in cases {
        let case = format!("Content-Length {announced}, body {sizes:?}");
        let (addr, conns) = recorder().await;
        let client = Client::new(ClientConfig::new());
        let all = pattern(sizes.iter().sum());
        let frames = cut(&all, &sizes);
        let request = Request::post(format!("http://{addr}/"))
            .header("content-length", announced)
            .body(streamed(frames))
            .unwrap();
        let error = within(&case, client.request(request))
            .await
            .expect_err(&case);
        assert_eq!(error.kind(), &ErrorKind::Request, "{case}: {error}");
        let message = support::chain(&error);
        assert!(message.contains("Content-Length"), "{case}: {message}");
        wait_until(&format!("{case}: the client closes"), SOON, || {
            conns.lock().unwrap().len() == 1
        })
        .await;
        let sent = conns.lock().unwrap().pop().unwrap();
        let end = sent.windows(4).position(|w| w == b"\r\n\r\n");
        let end = end.unwrap_or_else(|| panic!("{case}: no request head sent")) + 4;
        let head = String::from_utf8_lossy(&sent[..end]).to_ascii_lowercase();
        let length = format!("content-length: {announced}");
        let framed = head.contains(&length) && !head.contains("transfer-encoding");
        assert!(framed, "{case}: {head}");
        let body = &sent[end..];
        assert!(body.len() < announced, "{case}: {} bytes sent", body.len());
        assert!(all.starts_with(body), "{case}: bytes not of the body sent");
        let closed = client.stats().snapshot().closed(PoolCloseReason::Error);
        assert_eq!(closed, 1, "{case}");
    }

    let (addr, _) = recorder().await;
    let client = Client::new(ClientConfig::new());
    let request = Request::post(format!("http://{addr}/"))
        .header("content-length", "20")
        .body(Full::new(pattern(10)))
        .unwrap();
    let error = within("an exact body", client.request(request))
        .await
        .expect_err("an exact body of the wrong length");
    assert_eq!(error.kind(), &ErrorKind::Request, "{error}");
}

/// A HEAD response's Content-Length: 100 announces no body: the client's body is empty, and
/// the connection is reused for a GET that gets its 100 bytes.
#[tokio::test]
async fn a_head_response_has_no_body_and_the_connection_is_reused() {
    let server = HyperServer::start().await;
    let client = Client::new(ClientConfig::new());
    let url = server.url("/len/100");
    let head = Request::head(&url).body(Empty::<Bytes>::new()).unwrap();
    let got = fetch(&client, head).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(header(&got.headers, "content-length"), Some("100"));
    assert!(got.body.is_empty(), "{} body bytes", got.body.len());

    let got = fetch(&client, get(&url)).await;
    assert!(got.body == pattern(100), "{:?}", got.body);
    let stats = client.stats().snapshot();
    assert_eq!((stats.opened, stats.reused), (1, 1));
    assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
}

/// An HTTP/1.0 request asks for keep-alive, and its connection is reused when the server
/// agrees; one that carries a Connection header of the caller's without keep-alive gets none
/// added, so it ends with its response (HTTP/1.0's default), even when the server answers
/// HTTP/1.1 without `close`.
#[tokio::test]
async fn an_http10_request_is_kept_alive_only_when_it_asks() {
    let server = RawServer::start(|conn, index| Reply::Send(ok(&format!("{conn}-{index}")))).await;
    let client = Client::new(ClientConfig::new());
    let http10 = |path: &str, connection: Option<&str>| {
        let mut request = Request::get(server.url(path)).version(http::Version::HTTP_10);
        if let Some(value) = connection {
            request = request.header(http::header::CONNECTION, value);
        }
        request.body(Empty::<Bytes>::new()).unwrap()
    };
    // The raw server answers HTTP/1.1 without `close`: only the request decides.
    assert_eq!(fetch(&client, http10("/a", None)).await.body, "0-0");
    assert_eq!(fetch(&client, http10("/b", Some("te"))).await.body, "0-1");
    assert_eq!(fetch(&client, http10("/c", None)).await.body, "1-0");
    let stats = client.stats().snapshot();
    assert_eq!(stats.opened, 2);
    assert_eq!(stats.closed(PoolCloseReason::ClientClose), 1);
}

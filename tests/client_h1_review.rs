//! The client's own HTTP/1 (`src/client/{h1,exchange,body,conn}.rs`) on scenarios a review
//! found it got wrong at first, over real sockets on loopback. (hyper's client connection, run
//! through the same scenarios during the review, behaved as these tests expect.)
//!
//! - A response head that comes while the request body is still streaming does not end the
//!   request body: a server that answers as it reads (an echo, any full-duplex stream) gets
//!   the rest while the response is read.
//! - While the request body is pending, what was written is flushed, so bytes a buffering
//!   transport accepted (a `BufWriter`, or tokio-rustls' queued records under backpressure)
//!   do not wait for the next frame.
//! - A 2xx response to CONNECT, even with `Content-Length: 0`, never puts the (now tunnelled)
//!   connection back in the pool.
//! - A URI with a query and no path (`http://h?x=1`) is sent as `GET /?x=1 HTTP/1.1`.
//! - A CONNECT request's authority-form target never carries the URI's userinfo.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;

use futures_util::stream;
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::{Body, Bytes, Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use keepalive::client::{Client, ClientConfig};
use support::raw::{ok, RawServer, Reply};
use support::{unique_loopback, within};
use tokio::io::{AsyncReadExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

/// A request body the test feeds frame by frame; it ends when the sender is dropped.
fn fed_body() -> (
    mpsc::Sender<Bytes>,
    impl Body<Data = Bytes, Error = Infallible> + Send + 'static,
) {
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let frames = stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|data| (Ok::<_, Infallible>(Frame::data(data)), rx))
    });
    (tx, StreamBody::new(frames))
}

/// A hyper HTTP/1 server whose every response is the request's own body, streamed back as it
/// arrives (the head goes out at once).
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind((unique_loopback(), 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = service_fn(|request: Request<Incoming>| async move {
                Ok::<_, Infallible>(Response::new(request.into_body()))
            });
            tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
        }
    });
    addr
}

/// Full duplex: the server answers while it reads, so its response head comes while the
/// request body is still streaming. The client must go on sending the body (RFC 9112 9.5: a
/// client stops only when the response says the server does not want the body and is
/// closing), or the response never ends.
///
/// Before the fix: the `Exchange` returns the response as soon as its head is parsed,
/// and with it drops its `Sender` and the caller's body: the second frame cannot be sent (the
/// channel is closed) and the echo would wait for it forever.
#[tokio::test]
async fn a_response_head_before_the_request_body_ends_does_not_stop_the_body() {
    let addr = echo_server().await;
    let client = Client::new(ClientConfig::new());
    let (tx, body) = fed_body();
    tx.send(Bytes::from_static(b"first ")).await.unwrap();
    let request = Request::post(format!("http://{addr}/echo"))
        .body(body)
        .unwrap();
    let response = within("the response head", client.request(request))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        tx.send(Bytes::from_static(b"second")).await.is_ok(),
        "the client dropped the request body when the response head came"
    );
    drop(tx);
    let echoed = within("the echoed body", response.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(echoed, "first second");
}

/// A raw server that tells when it has read `expect` (the request head and the first body
/// frame), and then holds the connection.
async fn waits_for(expect: &'static [u8]) -> (SocketAddr, oneshot::Receiver<()>) {
    let listener = TcpListener::bind((unique_loopback(), 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (seen_tx, seen_rx) = oneshot::channel();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        while !got.windows(expect.len()).any(|w| w == expect) {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
        let _ = seen_tx.send(());
        while matches!(stream.read(&mut chunk).await, Ok(n) if n > 0) {}
    });
    (addr, seen_rx)
}

/// A connector whose sockets buffer writes until flushed (`tokio::io::BufWriter`), as a TLS
/// stream does with the records it could not write yet.
fn buffering_connector(
    addr: SocketAddr,
) -> impl keepalive::client::Connect<Response = BufWriter<TcpStream>> {
    tower::service_fn(move |_: Uri| async move {
        Ok::<_, std::io::Error>(BufWriter::new(TcpStream::connect(addr).await?))
    })
}

/// While the request body has nothing more for now, what was written of the request must be
/// flushed: the server may need it before the caller produces the next frame.
///
/// Before the fix: `Sender::poll_send` flushes only once the body has ended
/// (`Sending::Flush`); with the body pending it returns `Pending` after `poll_write`, so the
/// head and first frame stay in the transport's buffer and the server never sees them.
#[tokio::test]
async fn a_pending_request_body_does_not_hold_back_what_was_written() {
    let (addr, seen) = waits_for(b"first").await;
    let client = Client::with_connector(ClientConfig::new(), buffering_connector(addr));
    let (tx, body) = fed_body();
    tx.send(Bytes::from_static(b"first")).await.unwrap();
    let request = Request::post(format!("http://{addr}/upload"))
        .body(body)
        .unwrap();
    let pending = tokio::spawn(client.request(request));
    within("the server reads the request head and first frame", seen)
        .await
        .unwrap();
    pending.abort();
    drop(tx);
}

/// A 2xx response to CONNECT makes the connection a tunnel right after its head, whatever
/// Content-Length it carries (RFC 9110 9.3.6: the client MUST ignore it; RFC 9112 6.3 rule 2):
/// it must never go back to the pool, where the next request would be written into the
/// tunnel.
///
/// Before the fix: `parse_response_head` frames it by its `Content-Length: 0` and
/// `AfterResponse::decide` reuses it.
#[tokio::test]
async fn a_connect_tunnel_is_never_pooled() {
    let server = RawServer::start(|_, index| match index {
        0 => Reply::Send(
            b"HTTP/1.1 200 Connection Established\r\nContent-Length: 0\r\n\r\n".to_vec(),
        ),
        _ => Reply::Send(ok("next")),
    })
    .await;
    let client = Client::new(ClientConfig::new());
    let uri: Uri = server.url("/").parse().unwrap();
    let request = Request::connect(format!("http://{}", server.addr))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = within("the CONNECT response", client.request(request))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    drop(response);
    assert_eq!(
        client.idle_connections(&uri),
        0,
        "the tunnelled connection went back to the pool"
    );
}

/// `http://host?query` (no path) must go out as `GET /?query`: the origin form starts with a
/// slash (RFC 9112 3.2.1; hyper's client writes `/?query`).
///
/// Before the fix: `encode_request_head` writes `path_and_query().as_str()`, which is
/// `?x=1` here, and the hyper server answers 400.
#[tokio::test]
async fn a_uri_with_a_query_and_no_path_is_sent_in_origin_form() {
    let addr = echo_server().await;
    let client = Client::new(ClientConfig::new());
    let request = Request::get(format!("http://{addr}?x=1"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = within("the response", client.request(request))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

/// CONNECT's target is authority form, `host:port` (RFC 9112 3.2.3): never the URI's userinfo
/// (which `Host` leaves out already).
///
/// Before the fix: `encode_request_head` writes `uri.authority()` whole for CONNECT.
#[tokio::test]
async fn a_connect_target_carries_no_userinfo() {
    let server = RawServer::start(|_, _| {
        Reply::SendClose(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n".to_vec())
    })
    .await;
    let client = Client::new(ClientConfig::new());
    let request = Request::connect(format!("http://user:secret@{}", server.addr))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = within("the CONNECT response", client.request(request))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(server.seen()[0].path, server.addr.to_string());
}

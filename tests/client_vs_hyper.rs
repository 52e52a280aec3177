//! The crate's client against hyper's client connection over the same response bytes: a
//! property test of the HTTP/1 response reading (RFC 9112) on both, and the list of where they
//! differ on purpose.
//!
//! Each case is a generated response to GET or HEAD: interim (1xx) responses before the final
//! one, HTTP/1.0 or 1.1, statuses with and without a body (204, 304, and any status answering
//! HEAD), `Connection` and `Keep-Alive` lines, a body framed by `Content-Length` (plain,
//! zero-padded, a list of equal values, two equal lines), by chunked coding (sizes in either
//! case or zero-padded past 16 digits, chunk extensions, trailers) or by the close, small or
//! past the first read buffers, and at most one fault (a bad chunk-size line, a chunk longer
//! than its size or without its CR LF, no last chunk, differing, invalid or 24-digit
//! `Content-Length`, both framings at once, a bad status line, obs-fold, a space before a
//! colon, a NUL, bare LF line ends, a cut anywhere, bytes after the response, random bytes).
//! A scripted server on loopback reads each client's request head and writes the bytes in the
//! generated pieces; after each piece it waits (up to [`DRAIN_DEADLINE`]) until the client has
//! read it (its receive queue, asked of `sock_diag`, is empty), so a split is a real split of
//! what the client reads. Both clients run at once, each against its own server.
//!
//! What is compared, for the request and its response:
//! - success or failure, and where: the head, or the body;
//! - the status, the header fields, the body bytes and the trailer fields;
//! - **whether the connection may be reused**, observed the same way for both: once the
//!   server has written (and the client read) all the bytes of the case, a second request is
//!   sent: for the crate's client, on the same `Client` (a pooled connection goes first);
//!   for hyper, on the same `SendRequest` once `ready()` says it can take one (it fails once
//!   hyper has closed the connection). The connection was reused when the server read that
//!   second request on the first connection, and then its answer (`next`) must come back
//!   whole (never bytes the server sent unasked: RFC 9112 6.3 forbids reading them as a
//!   response). After a failed exchange, "reused" is the crate keeping the connection idle in
//!   its pool, or hyper's `ready()` succeeding: neither may.
//!
//! When the server closes after the response (a body delimited by the close, a cut, or a
//! coin flip), reuse is not compared: its FIN races the second request.
//!
//! Fault-free cases are also checked against what RFC 9112 says (the generator knows the
//! status and body it meant). Where the two clients differ on purpose (RFC 9112 allows both
//! readings, or hyper's is the one that strays), the case is a named [`Known`] difference,
//! each with its reason: the crate's side is asserted, hyper's is not. A
//! separate test ([`every_split_of_fixed_responses`]) splits a few fixed responses at every
//! byte; another ([`the_known_differences_are_real`]) shows each known difference on one
//! fixed case, hyper's side included, so that an exclusion that no longer holds is noticed.
//!
//! Not generated: a 101 (a switch of protocols nobody asked for: hyper hands the connection
//! to an upgrade, the crate closes it; neither reads on), and requests other than GET and
//! HEAD.
//!
//! `KEEPALIVE_PROPTEST_CASES=N` sets the number of generated cases (default 256); see
//! BENCHMARKS.md for a long run.
#![cfg(target_os = "linux")]

mod support;

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::header::HOST;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use keepalive::client::{Client, ClientConfig};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The longest any one step of a case (a response head, a body, `ready()`) may take before
/// it counts as hung. Nothing correct comes near it; a hang costs this much once. (A case
/// whose clients disagree after a hang or a stalled piece is run again, up to [`RETRIES`]
/// times: a machine stalled by other work must not fail the test.)
const STEP_DEADLINE: Duration = Duration::from_secs(10);

/// Runs more of a case whose disagreement may be the machine's doing; see [`STEP_DEADLINE`].
const RETRIES: usize = 2;

/// The longest the server waits for a client to read a piece before it writes the next one
/// (then the split may merge with the next piece: only the split is lost, not the case).
const DRAIN_DEADLINE: Duration = Duration::from_secs(2);

/// The answer to any request after the case's own: the second request's proof of reuse.
const NEXT: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext";

// ---------------------------------------------------------------------------------------
// Kernel queues: the pacing of the pieces.
// ---------------------------------------------------------------------------------------

/// The bytes the client's end of the connection (`client` to `server`) has received and not
/// read, asked of the kernel's `sock_diag` (a lookup of that one socket, not a walk of every
/// socket as /proc/net/tcp costs); `None` when that end is gone or no longer established.
fn unread(client: SocketAddr, server: SocketAddr) -> Option<u32> {
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const NLM_F_REQUEST: u16 = 1;
    const NLMSG_ERROR: u16 = 2;
    const ESTABLISHED: u8 = 1;
    const HEADER: usize = 16;
    let (SocketAddr::V4(client), SocketAddr::V4(server)) = (client, server) else {
        return None;
    };
    // nlmsghdr, then inet_diag_req_v2: family, protocol, extensions, pad, states, then the
    // socket id: ports and addresses in network order, the interface, no cookie.
    let mut request = Vec::with_capacity(72);
    request.extend_from_slice(&72u32.to_ne_bytes());
    request.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    request.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    request.extend_from_slice(&1u32.to_ne_bytes());
    request.extend_from_slice(&0u32.to_ne_bytes());
    request.extend_from_slice(&[libc::AF_INET as u8, libc::IPPROTO_TCP as u8, 0, 0]);
    request.extend_from_slice(&(1u32 << ESTABLISHED).to_ne_bytes());
    request.extend_from_slice(&client.port().to_be_bytes());
    request.extend_from_slice(&server.port().to_be_bytes());
    for ip in [client.ip(), server.ip()] {
        request.extend_from_slice(&ip.octets());
        request.extend_from_slice(&[0; 12]);
    }
    request.extend_from_slice(&0u32.to_ne_bytes());
    request.extend_from_slice(&[0xff; 8]);
    let socket = socket2::Socket::new(
        socket2::Domain::from(libc::AF_NETLINK),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::from(libc::NETLINK_SOCK_DIAG)),
    )
    .ok()?;
    socket.send(&request).ok()?;
    let mut answer = [0u8; 512];
    let n = std::io::Read::read(&mut &socket, &mut answer).ok()?;
    let answer = &answer[..n];
    // An error (ENOENT: no such socket), or inet_diag_msg: family, state, timer,
    // retransmits, the id (48 bytes), expires, then the receive queue.
    let kind = u16::from_ne_bytes(answer.get(4..6)?.try_into().ok()?);
    if kind == NLMSG_ERROR || *answer.get(HEADER + 1)? != ESTABLISHED {
        return None;
    }
    let at = HEADER + 4 + 48 + 4;
    Some(u32::from_ne_bytes(answer.get(at..at + 4)?.try_into().ok()?))
}

/// Whether the client has read everything that arrived from the server (or its end is
/// gone). On loopback what the server writes is in the client's receive queue by the time the
/// write returns, so this is "the client read what was written". (The server's
/// unacknowledged bytes are no sign: a delayed ACK holds them for up to 200 ms.)
fn drained(server: SocketAddr, client: SocketAddr) -> bool {
    unread(client, server).is_none_or(|n| n == 0)
}

/// Waits until [`drained`], up to [`DRAIN_DEADLINE`]; false if it never was.
async fn wait_drained(server: SocketAddr, client: SocketAddr) -> bool {
    let start = Instant::now();
    loop {
        if drained(server, client) {
            return true;
        }
        if start.elapsed() > DRAIN_DEADLINE {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

// ---------------------------------------------------------------------------------------
// The scripted server.
// ---------------------------------------------------------------------------------------

/// A loopback server that answers the first request of its first connection with the case's
/// pieces, and every other request with [`NEXT`].
struct ScriptServer {
    addr: SocketAddr,
    /// (connection, request on it) of every request head read, both counted from 0.
    seen: Arc<Mutex<Vec<(usize, usize)>>>,
    /// True once the case's bytes are all written and read (or the client left).
    written: watch::Receiver<bool>,
    /// Pieces the client did not read within [`DRAIN_DEADLINE`].
    stalls: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ScriptServer {
    fn drop(&mut self) {
        // (The connections' tasks are in a JoinSet inside: aborted with it.)
        self.task.abort();
    }
}

impl ScriptServer {
    async fn start(pieces: Vec<Vec<u8>>, close_after: bool) -> ScriptServer {
        let listener = TcpListener::bind((support::unique_loopback(), 0))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stalls = Arc::new(AtomicUsize::new(0));
        let (written_tx, written) = watch::channel(false);
        let script = Arc::new(Script {
            pieces,
            close_after,
            seen: seen.clone(),
            stalls: stalls.clone(),
            written: written_tx,
        });
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            let mut conn = 0;
            while let Ok((stream, peer)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                // No TIME_WAIT left behind by a long run.
                let _ = keepalive::socket::set_abortive_close(&stream);
                connections.spawn(serve(stream, addr, peer, conn, script.clone()));
                conn += 1;
            }
        });
        ScriptServer {
            addr,
            seen,
            written,
            stalls,
            task,
        }
    }

    /// Whether the server read a second request on the first connection.
    fn reused(&self) -> bool {
        self.seen.lock().unwrap().contains(&(0, 1))
    }

    /// Waits until the case's bytes are all out and read (up to [`STEP_DEADLINE`]).
    async fn wait_written(&self) {
        let mut written = self.written.clone();
        let _ = tokio::time::timeout(STEP_DEADLINE, written.wait_for(|done| *done)).await;
    }
}

struct Script {
    pieces: Vec<Vec<u8>>,
    close_after: bool,
    seen: Arc<Mutex<Vec<(usize, usize)>>>,
    stalls: Arc<AtomicUsize>,
    written: watch::Sender<bool>,
}

async fn serve(
    mut stream: TcpStream,
    local: SocketAddr,
    peer: SocketAddr,
    conn: usize,
    script: Arc<Script>,
) {
    let mut buf = Vec::new();
    let mut index = 0;
    while read_request_head(&mut stream, &mut buf).await {
        script.seen.lock().unwrap().push((conn, index));
        if conn == 0 && index == 0 {
            for piece in &script.pieces {
                if stream.write_all(piece).await.is_err() {
                    break;
                }
                if !wait_drained(local, peer).await {
                    script.stalls.fetch_add(1, Ordering::Relaxed);
                }
            }
            if script.close_after {
                let _ = stream.shutdown().await;
                script.written.send_replace(true);
                let mut sink = [0u8; 1024];
                while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
                return;
            }
            script.written.send_replace(true);
        } else if stream.write_all(NEXT).await.is_err() {
            return;
        }
        index += 1;
    }
    if conn == 0 {
        script.written.send_replace(true);
    }
}

/// Reads up to the end of a request head (the clients send no request body); false once the
/// client has left.
async fn read_request_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.drain(..end + 4);
            return true;
        }
        let mut chunk = [0u8; 2048];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

// ---------------------------------------------------------------------------------------
// What a client made of the bytes.
// ---------------------------------------------------------------------------------------

type Fields = Vec<(String, Vec<u8>)>;

fn fields(map: &HeaderMap) -> Fields {
    map.iter()
        .map(|(name, value)| (name.as_str().to_string(), value.as_bytes().to_vec()))
        .collect()
}

/// How reading a response body ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum BodyEnd {
    Complete { data: Vec<u8>, trailers: Fields },
    Failed,
    Hung,
}

/// What the first request got.
#[derive(Debug, Clone, PartialEq, Eq)]
enum First {
    /// No response head (an error).
    HeadFailed,
    /// No response head within [`STEP_DEADLINE`].
    Hung,
    Response {
        status: u16,
        headers: Fields,
        body: BodyEnd,
    },
}

impl First {
    fn complete(&self) -> bool {
        matches!(
            self,
            First::Response {
                body: BodyEnd::Complete { .. },
                ..
            }
        )
    }

    /// The same without the header fields (what the RFC model predicts).
    fn without_headers(&self) -> First {
        match self {
            First::Response { status, body, .. } => First::Response {
                status: *status,
                headers: Vec::new(),
                body: body.clone(),
            },
            other => other.clone(),
        }
    }
}

/// Whether the connection was reused; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reuse {
    /// Not compared: the server closed after the response.
    NotChecked,
    No,
    Yes,
    /// The second request went on the first connection and did not get `next` back, or a
    /// client that did not reuse failed it on a new one.
    Broken(String),
    /// hyper's `ready()` neither succeeded nor failed within [`STEP_DEADLINE`].
    Hung,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Observed {
    first: First,
    reuse: Reuse,
}

async fn step<F: std::future::Future>(f: F) -> Option<F::Output> {
    tokio::time::timeout(STEP_DEADLINE, f).await.ok()
}

async fn read_body<B>(body: B) -> BodyEnd
where
    B: http_body::Body,
{
    match step(body.collect()).await {
        None => BodyEnd::Hung,
        Some(Err(_)) => BodyEnd::Failed,
        Some(Ok(collected)) => {
            let trailers = collected.trailers().map(fields).unwrap_or_default();
            BodyEnd::Complete {
                data: collected.to_bytes().to_vec(),
                trailers,
            }
        }
    }
}

/// What the second request's answer says of reuse (`on_first`: the server read it on the
/// first connection).
fn second_answer(on_first: bool, answer: Option<Result<Vec<u8>, String>>) -> Reuse {
    match (on_first, answer) {
        (true, Some(Ok(body))) if body == b"next" => Reuse::Yes,
        (true, other) => Reuse::Broken(format!("reused, then {other:?}")),
        (false, _) => Reuse::No,
    }
}

fn request(method: Method, uri: &str) -> Request<Empty<Bytes>> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header(HOST, "test")
        .body(Empty::new())
        .unwrap()
}

/// Runs the case on the crate's client.
async fn run_crate(server: &ScriptServer, method: Method, close_after: bool) -> Observed {
    let addr = server.addr;
    let connector = tower::service_fn(move |_uri: http::Uri| async move {
        let stream = TcpStream::connect(addr).await?;
        keepalive::socket::set_abortive_close(&stream)?;
        Ok::<_, std::io::Error>(stream)
    });
    let client = Client::with_connector(ClientConfig::new(), connector);
    let url = format!("http://{addr}/");
    let first = match step(client.request(request(method, &url))).await {
        None => First::Hung,
        Some(Err(_)) => First::HeadFailed,
        Some(Ok(response)) => {
            let (parts, body) = response.into_parts();
            First::Response {
                status: parts.status.as_u16(),
                headers: fields(&parts.headers),
                body: read_body(body).await,
            }
        }
    };
    let reuse = if !first.complete() {
        match client.idle_connections(&url.parse().unwrap()) {
            0 => Reuse::No,
            _ => Reuse::Yes,
        }
    } else if close_after {
        Reuse::NotChecked
    } else {
        server.wait_written().await;
        let answer = step(async {
            let response = client
                .request(request(Method::GET, &url))
                .await
                .map_err(|e| e.to_string())?;
            let body = response.into_body().collect().await;
            body.map(|b| b.to_bytes().to_vec())
                .map_err(|e| e.to_string())
        })
        .await;
        let on_first = server.reused();
        match second_answer(on_first, answer.clone()) {
            // A client that did not reuse must still have answered on a new connection.
            Reuse::No if !matches!(&answer, Some(Ok(body)) if body == b"next") => {
                Reuse::Broken(format!("not reused, then {answer:?}"))
            }
            reuse => reuse,
        }
    };
    Observed { first, reuse }
}

/// Runs the case on hyper's HTTP/1 client connection.
async fn run_hyper(server: &ScriptServer, method: Method, close_after: bool) -> Observed {
    let stream = TcpStream::connect(server.addr).await.unwrap();
    keepalive::socket::set_abortive_close(&stream).unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let connection = tokio::spawn(connection);
    let first = match step(sender.send_request(request(method, "/"))).await {
        None => First::Hung,
        Some(Err(_)) => First::HeadFailed,
        Some(Ok(response)) => {
            let (parts, body) = response.into_parts();
            First::Response {
                status: parts.status.as_u16(),
                headers: fields(&parts.headers),
                body: read_body(body).await,
            }
        }
    };
    let reuse = if !first.complete() {
        match step(sender.ready()).await {
            None => Reuse::Hung,
            Some(Err(_)) => Reuse::No,
            Some(Ok(())) => Reuse::Yes,
        }
    } else if close_after {
        Reuse::NotChecked
    } else {
        server.wait_written().await;
        match step(sender.ready()).await {
            None => Reuse::Hung,
            Some(Err(_)) => Reuse::No,
            Some(Ok(())) => {
                let answer = step(async {
                    let response = sender
                        .send_request(request(Method::GET, "/"))
                        .await
                        .map_err(|e| e.to_string())?;
                    let body = response.into_body().collect().await;
                    body.map(|b| b.to_bytes().to_vec())
                        .map_err(|e| e.to_string())
                })
                .await;
                second_answer(server.reused(), answer)
            }
        }
    };
    connection.abort();
    Observed { first, reuse }
}

// ---------------------------------------------------------------------------------------
// Generated responses.
// ---------------------------------------------------------------------------------------

/// How a `Content-Length` is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LengthForm {
    Plain,
    /// With this many leading zeros (`0005`): still one valid length (RFC 9110 8.6).
    Zeros(usize),
    /// `5, 5`: a list of equal values, which a recipient may read as one (RFC 9110 8.6).
    List,
    /// Two equal lines.
    TwoLines,
}

/// How a chunk size is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SizeForm {
    Lower,
    Upper,
    /// With this many leading zeros.
    Zeros(usize),
}

/// How `Transfer-Encoding` says chunked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkedForm {
    Chunked,
    MixedCase,
    /// `gzip, chunked` (the body is read chunked and handed out as it is).
    AfterGzip,
    /// `gzip` and `chunked` on two lines.
    TwoLines,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Framing {
    Length {
        body: Vec<u8>,
        form: LengthForm,
    },
    Chunked {
        /// Each chunk's data (never empty) and extensions.
        chunks: Vec<(Vec<u8>, &'static str)>,
        last_extension: &'static str,
        trailers: Vec<(&'static str, String)>,
        size: SizeForm,
        coding: ChunkedForm,
    },
    /// No framing header (or `Transfer-Encoding: gzip`): the body ends with the close.
    Close {
        body: Vec<u8>,
        gzip: bool,
    },
}

/// At most one thing wrong with a case.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fault {
    /// The first chunk's size line is this instead.
    ChunkSizeLine(&'static str),
    /// The first chunk's data is one byte longer than its size.
    ChunkOverrun,
    /// The first chunk's data is not followed by CR LF.
    ChunkWithoutCrlf,
    /// The last chunk never comes (the server closes).
    NoLastChunk,
    /// The trailer section's lines end with a bare LF.
    BareLfTrailers,
    /// A second `Content-Length` line with another value.
    DifferingLengths,
    /// The `Content-Length` value is this.
    InvalidLength(&'static str),
    /// The `Content-Length` value has more than 19 digits, all leading zeros but its own.
    LongLength,
    /// A `Content-Length` beside chunked.
    BothFramings,
    /// `Transfer-Encoding: chunked, ` (an empty list element: RFC 9110 5.6.1).
    EmptyListElement,
    /// The final status line is this.
    StatusLine(&'static str),
    /// A header line folded onto the next (obs-fold, RFC 9112 5.2).
    ObsFold,
    /// `X-Bad : v` (RFC 9112 5.1: no whitespace between a field name and its colon).
    SpaceBeforeColon,
    /// A NUL in a header value.
    NulInValue,
    /// A header line without a colon.
    NoColon,
    /// Bare LF line ends throughout the heads (RFC 9112 2.2: a recipient may accept them).
    BareLfHead,
    /// The bytes end at this offset (modulo their length + 1) and the server closes.
    Cut(u32),
    /// These bytes follow the response.
    After(&'static [u8]),
    /// The bytes are these instead (after `HTTP/1.1 200 OK` CR LF, when `true`).
    Noise(Vec<u8>, bool),
}

#[derive(Debug, Clone)]
struct Case {
    head_request: bool,
    /// Interim responses before the final one: HTTP/1.0, status, extra header line.
    interim: Vec<(bool, u16, &'static str)>,
    http10: bool,
    status: u16,
    reason: &'static [u8],
    connection: Vec<&'static str>,
    keep_alive: Option<&'static str>,
    noise: Vec<String>,
    framing: Framing,
    fault: Option<Fault>,
    /// The server closes after the bytes (forced for a body delimited by the close).
    close_after: bool,
    splits: Vec<Index>,
}

impl Case {
    /// A response to HEAD, a 204 or a 304: no body, whatever the head says.
    fn bodiless(&self) -> bool {
        self.head_request || self.status == 204 || self.status == 304
    }

    fn chunked(&self) -> bool {
        matches!(self.framing, Framing::Chunked { .. })
    }

    fn transfer_encoding(&self) -> bool {
        matches!(
            self.framing,
            Framing::Chunked { .. } | Framing::Close { gzip: true, .. }
        )
    }

    fn content_length(&self) -> bool {
        matches!(self.framing, Framing::Length { .. }) || self.fault == Some(Fault::BothFramings)
    }

    fn method(&self) -> Method {
        if self.head_request {
            Method::HEAD
        } else {
            Method::GET
        }
    }

    /// Whether `fault` means anything for this case (a chunk fault needs a chunked body).
    fn applies(&self, fault: &Fault) -> bool {
        let chunks = match &self.framing {
            Framing::Chunked { chunks, .. } if !self.bodiless() => Some(chunks.len()),
            _ => None,
        };
        match fault {
            Fault::ChunkSizeLine(_) | Fault::ChunkOverrun | Fault::ChunkWithoutCrlf => {
                chunks.is_some_and(|n| n > 0)
            }
            Fault::NoLastChunk => chunks.is_some(),
            Fault::BareLfTrailers => matches!(
                &self.framing,
                Framing::Chunked { trailers, .. } if !trailers.is_empty() && !self.bodiless()
            ),
            Fault::DifferingLengths | Fault::InvalidLength(_) | Fault::LongLength => {
                matches!(self.framing, Framing::Length { .. })
            }
            Fault::BothFramings | Fault::EmptyListElement => self.chunked(),
            _ => true,
        }
    }

    /// The bytes the server writes, whole.
    fn render(&self) -> Vec<u8> {
        let eol: &[u8] = if self.fault == Some(Fault::BareLfHead) {
            b"\n"
        } else {
            b"\r\n"
        };
        let mut out = Vec::new();
        let line = |out: &mut Vec<u8>, text: &[u8]| {
            out.extend_from_slice(text);
            out.extend_from_slice(eol);
        };
        for (http10, status, extra) in &self.interim {
            let version = if *http10 { "1.0" } else { "1.1" };
            line(
                &mut out,
                format!("HTTP/{version} {status} Interim").as_bytes(),
            );
            if !extra.is_empty() {
                line(&mut out, extra.as_bytes());
            }
            line(&mut out, b"");
        }
        match &self.fault {
            Some(Fault::StatusLine(status_line)) => line(&mut out, status_line.as_bytes()),
            _ => {
                let version = if self.http10 { "1.0" } else { "1.1" };
                let mut status_line = format!("HTTP/{version} {} ", self.status).into_bytes();
                status_line.extend_from_slice(self.reason);
                line(&mut out, &status_line);
            }
        }
        for value in &self.connection {
            line(&mut out, format!("Connection: {value}").as_bytes());
        }
        if let Some(value) = self.keep_alive {
            line(&mut out, format!("Keep-Alive: {value}").as_bytes());
        }
        for (i, value) in self.noise.iter().enumerate() {
            line(&mut out, format!("X-Noise-{i}: {value}").as_bytes());
        }
        match &self.fault {
            Some(Fault::ObsFold) => {
                line(&mut out, b"X-Folded: first");
                line(&mut out, b" second");
            }
            Some(Fault::SpaceBeforeColon) => line(&mut out, b"X-Bad : v"),
            Some(Fault::NulInValue) => line(&mut out, b"X-Nul: a\0b"),
            Some(Fault::NoColon) => line(&mut out, b"this line has no colon"),
            _ => {}
        }
        let mut body = Vec::new();
        match &self.framing {
            Framing::Length { body: data, form } => {
                let n = data.len();
                let value = match (&self.fault, form) {
                    (Some(Fault::InvalidLength(value)), _) => value.to_string(),
                    (Some(Fault::LongLength), _) => format!("{n:0>24}"),
                    (_, LengthForm::Plain | LengthForm::TwoLines) => n.to_string(),
                    (_, LengthForm::Zeros(zeros)) => format!("{}{n}", "0".repeat(*zeros)),
                    (_, LengthForm::List) => format!("{n}, {n}"),
                };
                line(&mut out, format!("Content-Length: {value}").as_bytes());
                if *form == LengthForm::TwoLines {
                    line(&mut out, format!("Content-Length: {value}").as_bytes());
                }
                if self.fault == Some(Fault::DifferingLengths) {
                    line(&mut out, format!("Content-Length: {}", n + 1).as_bytes());
                }
                body.extend_from_slice(data);
            }
            Framing::Chunked {
                chunks,
                last_extension,
                trailers,
                size,
                coding,
            } => {
                match (&self.fault, coding) {
                    (Some(Fault::EmptyListElement), _) => {
                        line(&mut out, b"Transfer-Encoding: chunked, ")
                    }
                    (_, ChunkedForm::Chunked) => line(&mut out, b"Transfer-Encoding: chunked"),
                    (_, ChunkedForm::MixedCase) => line(&mut out, b"Transfer-Encoding: ChunKed"),
                    (_, ChunkedForm::AfterGzip) => {
                        line(&mut out, b"Transfer-Encoding: gzip, chunked")
                    }
                    (_, ChunkedForm::TwoLines) => {
                        line(&mut out, b"Transfer-Encoding: gzip");
                        line(&mut out, b"Transfer-Encoding: chunked");
                    }
                }
                if self.fault == Some(Fault::BothFramings) {
                    let total: usize = chunks.iter().map(|(data, _)| data.len()).sum();
                    line(&mut out, format!("Content-Length: {total}").as_bytes());
                }
                let size_line = |n: usize| match size {
                    SizeForm::Lower => format!("{n:x}"),
                    SizeForm::Upper => format!("{n:X}"),
                    SizeForm::Zeros(zeros) => format!("{}{n:x}", "0".repeat(*zeros)),
                };
                for (i, (data, extension)) in chunks.iter().enumerate() {
                    let first = i == 0;
                    match &self.fault {
                        Some(Fault::ChunkSizeLine(bad)) if first => {
                            body.extend_from_slice(bad.as_bytes())
                        }
                        _ => {
                            body.extend_from_slice(size_line(data.len()).as_bytes());
                            body.extend_from_slice(extension.as_bytes());
                        }
                    }
                    body.extend_from_slice(b"\r\n");
                    body.extend_from_slice(data);
                    if first && self.fault == Some(Fault::ChunkOverrun) {
                        body.push(b'!');
                    }
                    if !(first && self.fault == Some(Fault::ChunkWithoutCrlf)) {
                        body.extend_from_slice(b"\r\n");
                    }
                }
                if self.fault != Some(Fault::NoLastChunk) {
                    let trailer_eol: &[u8] = if self.fault == Some(Fault::BareLfTrailers) {
                        b"\n"
                    } else {
                        b"\r\n"
                    };
                    body.extend_from_slice(size_line(0).as_bytes());
                    body.extend_from_slice(last_extension.as_bytes());
                    body.extend_from_slice(b"\r\n");
                    for (name, value) in trailers {
                        body.extend_from_slice(format!("{name}: {value}").as_bytes());
                        body.extend_from_slice(trailer_eol);
                    }
                    body.extend_from_slice(trailer_eol);
                }
            }
            Framing::Close { body: data, gzip } => {
                if *gzip {
                    line(&mut out, b"Transfer-Encoding: gzip");
                }
                body.extend_from_slice(data);
            }
        }
        line(&mut out, b"");
        if !self.bodiless() {
            out.extend_from_slice(&body);
        }
        match &self.fault {
            Some(Fault::Noise(noise, after_status)) => {
                out.clear();
                if *after_status {
                    out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
                }
                out.extend_from_slice(noise);
            }
            Some(Fault::After(extra)) => out.extend_from_slice(extra),
            Some(Fault::Cut(at)) => out.truncate(*at as usize % (out.len() + 1)),
            _ => {}
        }
        out
    }

    /// The bytes in the pieces the server writes them in.
    fn pieces(&self) -> Vec<Vec<u8>> {
        let bytes = self.render();
        let mut at: Vec<usize> = self
            .splits
            .iter()
            .map(|split| split.index(bytes.len().max(1)))
            .filter(|&at| at > 0)
            .collect();
        at.sort_unstable();
        at.dedup();
        split_at(&bytes, &at)
    }

    /// What RFC 9112 says the crate's client makes of a case without a fault.
    fn expected(&self) -> Observed {
        let te = self.transfer_encoding();
        let first = if te && self.http10 && !self.bodiless() {
            // RFC 9112 6.1: Transfer-Encoding in HTTP/1.0 is faulty framing.
            First::HeadFailed
        } else {
            let body = match (&self.framing, self.bodiless()) {
                (_, true) => BodyEnd::Complete {
                    data: Vec::new(),
                    trailers: Vec::new(),
                },
                (Framing::Length { body, .. } | Framing::Close { body, .. }, false) => {
                    BodyEnd::Complete {
                        data: body.clone(),
                        trailers: Vec::new(),
                    }
                }
                (
                    Framing::Chunked {
                        chunks, trailers, ..
                    },
                    false,
                ) => BodyEnd::Complete {
                    data: chunks.iter().flat_map(|(data, _)| data.clone()).collect(),
                    trailers: trailers
                        .iter()
                        .map(|(name, value)| (name.to_string(), value.as_bytes().to_vec()))
                        .collect(),
                },
            };
            First::Response {
                status: self.status,
                headers: Vec::new(),
                body,
            }
        };
        let reuse = if !first.complete() {
            Reuse::No
        } else if self.close_after {
            Reuse::NotChecked
        } else {
            let tokens = || {
                self.connection
                    .iter()
                    .flat_map(|value| value.split(','))
                    .map(|token| token.trim().to_ascii_lowercase())
            };
            let close = tokens().any(|t| t == "close");
            let keep_alive = tokens().any(|t| t == "keep-alive");
            let persistent = if self.http10 {
                keep_alive && !close
            } else {
                !close
            };
            let delimited_by_close =
                !self.bodiless() && matches!(self.framing, Framing::Close { .. });
            // The crate's own reading of the known differences.
            let faulty_framing = te && (self.content_length() || self.http10);
            let retired = self.keep_alive.is_some_and(retires);
            if persistent && !delimited_by_close && !faulty_framing && !retired {
                Reuse::Yes
            } else {
                Reuse::No
            }
        };
        Observed { first, reuse }
    }

    /// The known difference this case falls under, if any.
    fn known(&self) -> Option<Known> {
        if matches!(self.fault, Some(Fault::StatusLine(_) | Fault::Noise(..))) {
            // (Not the status line the rest of the case describes.)
            return None;
        }
        let te = self.transfer_encoding();
        if self.fault == Some(Fault::ObsFold) {
            return Some(Known::ObsFold);
        }
        if self.fault == Some(Fault::EmptyListElement) && !self.http10 && !self.bodiless() {
            return Some(Known::EmptyListElementInTransferEncoding);
        }
        if self.fault == Some(Fault::BareLfTrailers) && !self.http10 {
            return Some(Known::BareLfInTrailers);
        }
        if te && self.http10 && self.bodiless() {
            return Some(Known::Http10BodilessWithTransferEncoding);
        }
        if te && self.content_length() && (!self.http10 || self.bodiless()) {
            return Some(Known::BothFramings);
        }
        if self.keep_alive.is_some_and(retires) {
            return Some(Known::KeepAliveHint);
        }
        None
    }
}

/// Whether a `Keep-Alive` value makes the crate's client retire the connection at once.
fn retires(value: &str) -> bool {
    value == "max=0" || value.starts_with("timeout=0")
}

fn split_at(bytes: &[u8], at: &[usize]) -> Vec<Vec<u8>> {
    let mut pieces = Vec::new();
    let mut from = 0;
    for &to in at {
        if to > from && to < bytes.len() {
            pieces.push(bytes[from..to].to_vec());
            from = to;
        }
    }
    pieces.push(bytes[from..].to_vec());
    pieces
}

/// Where the two clients may differ, each with its reason. The crate's side is asserted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    /// `Content-Length` beside `Transfer-Encoding` (RFC 9112 6.3, rule 3): chunked wins for
    /// both, and the message "ought to be handled as an error" (a response-splitting attempt):
    /// the crate returns the response and never reuses the connection; hyper reuses it.
    BothFramings,
    /// An HTTP/1.0 response without a body (to HEAD, 204, 304) that carries
    /// `Transfer-Encoding`: RFC 9112 6.1 says to treat such a message as faulty framing and
    /// close the connection after it. Both return the response (it has no body to misread);
    /// the crate then closes the connection, hyper reuses it when `Connection: keep-alive`
    /// says so (hyper's side is the deviation here). With a body, both refuse the head.
    Http10BodilessWithTransferEncoding,
    /// `Keep-Alive: max=0` or `timeout=0`: the server says it will take no other request
    /// (the header is advisory, RFC 2068 19.7.1.1, and RFC 9112 9.5 lets either side close an
    /// idle connection at any time). The crate retires the connection; hyper ignores the
    /// header.
    KeepAliveHint,
    /// `Transfer-Encoding: chunked, `: a recipient must ignore empty list elements (RFC 9110
    /// 5.6.1), so chunked is the last coding and the body is chunked. The crate decodes it;
    /// hyper takes the last element (empty) as a coding that is not chunked, reads the body
    /// until the close and hands out the chunk framing as data.
    EmptyListElementInTransferEncoding,
    /// Trailer lines (and the blank line after them) ended by a bare LF: a recipient MAY
    /// recognize a single LF as a line terminator (RFC 9112 2.2). The crate does, in the
    /// trailers as in the head (both clients accept a bare LF in the head); hyper's chunked
    /// decoder waits for CR LF, so its body ends only when the server closes (as an error).
    BareLfInTrailers,
    /// A header line folded onto the next (obs-fold): a user agent MUST replace each obs-fold
    /// with spaces before interpreting the value (RFC 9112 5.2). The crate does; hyper refuses
    /// the head (unless built with `allow_obsolete_multiline_headers_in_responses`).
    ObsFold,
}

impl fmt::Display for Known {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

// ---------------------------------------------------------------------------------------
// Strategies.
// ---------------------------------------------------------------------------------------

fn small_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => prop::collection::vec(any::<u8>(), 0..48),
        // Past the crate's first read buffer (8 KiB) and hyper's first read.
        1 => prop::collection::vec(any::<u8>(), 8000..20000),
    ]
}

fn extension() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "",
        "",
        ";a",
        ";name=value",
        ";q=\"quoted ; string\"",
        " ;a=b",
        "\t;a;b=c",
        " ",
    ])
}

fn framing() -> impl Strategy<Value = Framing> {
    let length = (
        small_body(),
        prop_oneof![
            4 => Just(LengthForm::Plain),
            1 => (1usize..4).prop_map(LengthForm::Zeros),
            1 => Just(LengthForm::List),
            1 => Just(LengthForm::TwoLines),
        ],
    )
        .prop_map(|(body, form)| Framing::Length { body, form });
    let chunk = (
        prop_oneof![
            6 => prop::collection::vec(any::<u8>(), 1..24),
            1 => prop::collection::vec(any::<u8>(), 4000..12000),
        ],
        extension(),
    );
    let trailer = (
        prop::sample::select(vec!["x-checksum", "x-trailer", "server-timing"]),
        "[!-~][ -~]{0,16}[!-~]",
    );
    let chunked = (
        prop::collection::vec(chunk, 0..5),
        extension(),
        prop::collection::vec(trailer, 0..3),
        prop_oneof![
            3 => Just(SizeForm::Lower),
            1 => Just(SizeForm::Upper),
            1 => (1usize..4).prop_map(SizeForm::Zeros),
            // Longer than any 64-bit size: the digits that count are few (RFC 9112 7.1).
            1 => (16usize..20).prop_map(SizeForm::Zeros),
        ],
        prop_oneof![
            4 => Just(ChunkedForm::Chunked),
            1 => Just(ChunkedForm::MixedCase),
            1 => Just(ChunkedForm::AfterGzip),
            1 => Just(ChunkedForm::TwoLines),
        ],
    )
        .prop_map(
            |(chunks, last_extension, trailers, size, coding)| Framing::Chunked {
                chunks,
                last_extension,
                trailers,
                size,
                coding,
            },
        );
    let close = (small_body(), prop::bool::weighted(0.2))
        .prop_map(|(body, gzip)| Framing::Close { body, gzip });
    prop_oneof![3 => length, 3 => chunked, 1 => close]
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        prop::sample::select(vec![
            "5 junk",
            "zz",
            "-5",
            "0x5",
            "5\t5",
            "",
            " 5",
            "5;a\nb",
            "5\n",
            "fffffffffffffffff1",
            "1_0",
            "+5",
        ])
        .prop_map(Fault::ChunkSizeLine),
        Just(Fault::ChunkOverrun),
        Just(Fault::ChunkWithoutCrlf),
        Just(Fault::NoLastChunk),
        Just(Fault::BareLfTrailers),
        Just(Fault::DifferingLengths),
        prop::sample::select(vec![
            "abc",
            "-1",
            "+5",
            "5 5",
            "",
            "0x10",
            "1e3",
            "5,",
            "99999999999999999999999"
        ])
        .prop_map(Fault::InvalidLength),
        Just(Fault::LongLength),
        Just(Fault::BothFramings),
        Just(Fault::EmptyListElement),
        prop::sample::select(vec![
            "HTTP/1.1 2000 OK",
            "HTTP/1.2 200 OK",
            "HTTP/2 200 OK",
            "HTTP/1.1 20 OK",
            "HTTP/1.1 200OK",
            "ICY 200 OK",
            "http/1.1 200 OK",
            "HTTP/1.1 099 Low",
            " HTTP/1.1 200 OK",
            "HTTP/1.1 200",
            "garbage",
        ])
        .prop_map(Fault::StatusLine),
        Just(Fault::ObsFold),
        Just(Fault::SpaceBeforeColon),
        Just(Fault::NulInValue),
        Just(Fault::NoColon),
        Just(Fault::BareLfHead),
        any::<u32>().prop_map(Fault::Cut),
        prop::sample::select(vec![
            &b"junk"[..],
            b"\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nevil!",
        ])
        .prop_map(Fault::After),
        (prop::collection::vec(any::<u8>(), 0..64), any::<bool>())
            .prop_map(|(noise, after_status)| Fault::Noise(noise, after_status)),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    let interim = (
        prop::bool::weighted(0.3),
        prop::sample::select(vec![100u16, 102, 103, 150]),
        prop::sample::select(vec![
            "",
            "Link: </style.css>; rel=preload",
            "Content-Length: 7",
        ]),
    );
    let head = (
        prop::bool::weighted(0.2),
        prop::collection::vec(interim, 0..3),
        prop::bool::weighted(0.3),
        prop::sample::select(vec![
            200u16, 200, 200, 201, 204, 206, 299, 304, 404, 500, 599, 999,
        ]),
        prop::sample::select(vec![&b"OK"[..], b"", b"Some Reason", b"Caf\xe9"]),
    );
    let connection = prop::collection::vec(
        prop::sample::select(vec![
            "close",
            "keep-alive",
            "Keep-Alive",
            "Close",
            "x-custom, keep-alive",
            "keep-alive, close",
            "upgrade",
        ]),
        0..3,
    );
    let keep_alive = prop::option::weighted(
        0.3,
        prop::sample::select(vec![
            "timeout=5",
            "timeout=30, max=100",
            "max=0",
            "timeout=0",
            "nonsense",
        ]),
    );
    let noise = prop::collection::vec("[!-~]([ -~]{0,20}[!-~])?", 0..3);
    (
        head,
        connection,
        keep_alive,
        noise,
        framing(),
        prop::option::weighted(0.35, fault()),
        prop::bool::weighted(0.3),
        prop::collection::vec(any::<Index>(), 0..6),
    )
        .prop_map(
            |(
                (head_request, interim, http10, status, reason),
                connection,
                keep_alive,
                noise,
                framing,
                fault,
                close_after,
                splits,
            )| {
                let mut case = Case {
                    head_request,
                    interim,
                    http10,
                    status,
                    reason,
                    connection,
                    keep_alive,
                    noise,
                    framing,
                    fault: None,
                    close_after,
                    splits,
                };
                case.fault = fault.filter(|fault| case.applies(fault));
                // The server must close where the body (as the generator meant it, or as a
                // client may read it) ends only with the close.
                case.close_after |= (!case.bodiless()
                    && matches!(case.framing, Framing::Close { .. }))
                    || matches!(
                        case.fault,
                        Some(
                            Fault::Cut(_)
                                | Fault::NoLastChunk
                                | Fault::EmptyListElement
                                | Fault::BareLfTrailers
                                // (The status read may say there is a body where the
                                // generator meant none.)
                                | Fault::StatusLine(_)
                                | Fault::Noise(..)
                        )
                    );
                case
            },
        )
}

// ---------------------------------------------------------------------------------------
// Running and judging a case.
// ---------------------------------------------------------------------------------------

/// Both clients' views of the same pieces.
/// (Also the pieces each client left unread for [`DRAIN_DEADLINE`].)
async fn observe(
    pieces: Vec<Vec<u8>>,
    method: Method,
    close_after: bool,
) -> (Observed, Observed, (usize, usize)) {
    let crate_server = ScriptServer::start(pieces.clone(), close_after).await;
    let hyper_server = ScriptServer::start(pieces, close_after).await;
    let (ours, theirs) = tokio::join!(
        run_crate(&crate_server, method.clone(), close_after),
        run_hyper(&hyper_server, method, close_after),
    );
    let stalls = (
        crate_server.stalls.load(Ordering::Relaxed),
        hyper_server.stalls.load(Ordering::Relaxed),
    );
    (ours, theirs, stalls)
}

/// Checks what the two clients made of `case`; the reason they should not have, if any.
fn judge(case: &Case, ours: &Observed, theirs: &Observed) -> Result<(), String> {
    for (who, observed) in [("crate", ours), ("hyper", theirs)] {
        if let Reuse::Broken(why) = &observed.reuse {
            return Err(format!("{who}: the second request: {why}"));
        }
    }
    match case.known() {
        None => {
            if ours != theirs {
                return Err("the clients disagree".into());
            }
        }
        Some(
            Known::BothFramings | Known::Http10BodilessWithTransferEncoding | Known::KeepAliveHint,
        ) => {
            if ours.first != theirs.first {
                return Err("the clients disagree on the response".into());
            }
            if ours.reuse == Reuse::Yes {
                return Err("the crate reused the connection".into());
            }
        }
        Some(
            Known::EmptyListElementInTransferEncoding | Known::BareLfInTrailers | Known::ObsFold,
        ) => {
            let expected = case.expected();
            if ours.first.without_headers() != expected.first {
                return Err(format!(
                    "the crate did not read the chunked body: expected {:?}",
                    expected.first
                ));
            }
        }
    }
    if case.fault.is_none() {
        let expected = case.expected();
        if ours.first.without_headers() != expected.first || ours.reuse != expected.reuse {
            return Err(format!(
                "the crate differs from RFC 9112: expected {expected:?}"
            ));
        }
    }
    Ok(())
}

/// A short name of what a client made of a case, for the run's tally.
fn outcome(observed: &Observed) -> String {
    let first = match &observed.first {
        First::HeadFailed => "head failed",
        First::Hung => "head hung",
        First::Response { body, .. } => match body {
            BodyEnd::Complete { .. } => "complete",
            BodyEnd::Failed => "body failed",
            BodyEnd::Hung => "body hung",
        },
    };
    let reuse = match &observed.reuse {
        Reuse::NotChecked => "server closed",
        Reuse::No => "not reused",
        Reuse::Yes => "reused",
        Reuse::Broken(_) => "broken",
        Reuse::Hung => "hung",
    };
    format!("{first}, {reuse}")
}

/// Bytes as a Rust-like string literal (printable ASCII kept).
fn escaped(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

fn report(
    case: &Case,
    pieces: &[Vec<u8>],
    ours: &Observed,
    theirs: &Observed,
    why: &str,
) -> String {
    let pieces: Vec<String> = pieces.iter().map(|piece| escaped(piece)).collect();
    format!(
        "{why}\n  method: {}\n  close after: {}\n  known: {:?}\n  pieces: {pieces:?}\n  crate: {ours:?}\n  hyper: {theirs:?}\n  case: {case:?}",
        case.method(),
        case.close_after,
        case.known(),
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Cases to generate: `KEEPALIVE_PROPTEST_CASES`, or a number that keeps this file well under
/// a minute on two slow cores.
fn cases() -> u32 {
    std::env::var("KEEPALIVE_PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(256)
}

/// The property: see the module docs.
#[test]
fn the_crate_reads_responses_as_hyper_does() {
    let rt = runtime();
    let config = ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        // (A shrink step is a whole exchange over loopback: kept few.)
        max_shrink_iters: 256,
        ..ProptestConfig::default()
    };
    let started = Instant::now();
    let stalls = AtomicUsize::new(0);
    let run = AtomicUsize::new(0);
    let retried = AtomicUsize::new(0);
    let outcomes = Mutex::new(std::collections::BTreeMap::<String, usize>::new());
    let known = Mutex::new(std::collections::BTreeMap::<String, usize>::new());
    let mut runner = TestRunner::new(config);
    let result = runner.run(&case(), |case| {
        let pieces = case.pieces();
        let mut attempt = 0;
        let (ours, theirs, stalled) = loop {
            let (ours, theirs, stalled) =
                rt.block_on(observe(pieces.clone(), case.method(), case.close_after));
            let timing = stalled != (0, 0)
                || outcome(&ours).contains("hung")
                || outcome(&theirs).contains("hung");
            if attempt == RETRIES || !timing || judge(&case, &ours, &theirs).is_ok() {
                break (ours, theirs, stalled);
            }
            attempt += 1;
            retried.fetch_add(1, Ordering::Relaxed);
        };
        run.fetch_add(1, Ordering::Relaxed);
        stalls.fetch_add(stalled.0 + stalled.1, Ordering::Relaxed);
        if let Some(k) = case.known() {
            *known.lock().unwrap().entry(k.to_string()).or_default() += 1;
        }
        *outcomes.lock().unwrap().entry(outcome(&ours)).or_default() += 1;
        judge(&case, &ours, &theirs).map_err(|why| {
            let why = format!(
                "{why} (pieces unread for {DRAIN_DEADLINE:?}: crate {}, hyper {})",
                stalled.0, stalled.1
            );
            TestCaseError::fail(report(&case, &pieces, &ours, &theirs, &why))
        })
    });
    eprintln!(
        "client_vs_hyper: {} cases of {} run (shrinking included) in {:.1} s; known differences met: {:?}; pieces not read within {:?}: {}; cases run again after a hang or a stall: {}; the crate's outcomes: {:?}",
        run.load(Ordering::Relaxed),
        cases(),
        started.elapsed().as_secs_f64(),
        known.lock().unwrap(),
        DRAIN_DEADLINE,
        stalls.load(Ordering::Relaxed),
        retried.load(Ordering::Relaxed),
        outcomes.lock().unwrap(),
    );
    if let Err(error) = result {
        panic!("{error}");
    }
}

/// What a fixed response should give the crate's client.
struct Fixed {
    name: &'static str,
    method: Method,
    bytes: &'static [u8],
    close_after: bool,
    status: u16,
    body: &'static [u8],
    trailers: &'static [(&'static str, &'static str)],
    reuse: Reuse,
}

impl Fixed {
    fn expected_first(&self) -> First {
        First::Response {
            status: self.status,
            headers: Vec::new(),
            body: BodyEnd::Complete {
                data: self.body.to_vec(),
                trailers: self
                    .trailers
                    .iter()
                    .map(|(name, value)| (name.to_string(), value.as_bytes().to_vec()))
                    .collect(),
            },
        }
    }
}

/// A few responses split in two at every byte (each piece read by the client before the
/// next is written): both clients read each split the same, and as RFC 9112 says.
#[test]
fn every_split_of_fixed_responses() {
    let fixed = [
        Fixed {
            name: "interim, then chunked with extensions and trailers",
            method: Method::GET,
            bytes: b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nKeep-Alive: timeout=5\r\n\r\n5;a=b\r\nhello\r\n7 ;q=\"x ;y\"\r\n, world\r\n0;last\r\nx-checksum: 1\r\nserver-timing: a;dur=2\r\n\r\n",
            close_after: false,
            status: 200,
            body: b"hello, world",
            trailers: &[("x-checksum", "1"), ("server-timing", "a;dur=2")],
            reuse: Reuse::Yes,
        },
        Fixed {
            name: "Content-Length",
            method: Method::GET,
            bytes: b"HTTP/1.1 201 Created\r\nContent-Length: 13\r\nX-A: b\r\n\r\nhello, world!",
            close_after: false,
            status: 201,
            body: b"hello, world!",
            trailers: &[],
            reuse: Reuse::Yes,
        },
        Fixed {
            name: "HTTP/1.0 keep-alive with a Content-Length",
            method: Method::GET,
            bytes: b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
            close_after: false,
            status: 200,
            body: b"ok",
            trailers: &[],
            reuse: Reuse::Yes,
        },
        Fixed {
            name: "HTTP/1.0, delimited by the close",
            method: Method::GET,
            bytes: b"HTTP/1.0 200 OK\r\nServer: x\r\n\r\nuntil the close",
            close_after: true,
            status: 200,
            body: b"until the close",
            trailers: &[],
            reuse: Reuse::NotChecked,
        },
        Fixed {
            name: "HEAD with a Content-Length",
            method: Method::HEAD,
            bytes: b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n",
            close_after: false,
            status: 200,
            body: b"",
            trailers: &[],
            reuse: Reuse::Yes,
        },
        Fixed {
            name: "304 saying chunked, Connection: close",
            method: Method::GET,
            bytes: b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
            close_after: false,
            status: 304,
            body: b"",
            trailers: &[],
            reuse: Reuse::No,
        },
    ];
    let rt = runtime();
    for fixed in &fixed {
        for at in 1..fixed.bytes.len() {
            let pieces = split_at(fixed.bytes, &[at]);
            let (ours, theirs, _) = rt.block_on(observe(
                pieces.clone(),
                fixed.method.clone(),
                fixed.close_after,
            ));
            let pieces: Vec<String> = pieces.iter().map(|piece| escaped(piece)).collect();
            let context = format!(
                "{}, split at {at}: {pieces:?}\n  crate: {ours:?}\n  hyper: {theirs:?}",
                fixed.name
            );
            assert_eq!(ours, theirs, "{context}");
            assert_eq!(
                ours.first.without_headers(),
                fixed.expected_first(),
                "{context}"
            );
            assert_eq!(ours.reuse, fixed.reuse, "{context}");
        }
    }
    // One that fails wherever it is split: `5 junk` is no chunk size (RFC 9112 7.1).
    let junk: &[u8] =
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5 junk\r\nhello\r\n0\r\n\r\n";
    for at in 1..junk.len() {
        let pieces = split_at(junk, &[at]);
        let (ours, theirs, _) = rt.block_on(observe(pieces, Method::GET, false));
        assert_eq!(ours, theirs, "split at {at}");
        assert!(
            matches!(
                &ours.first,
                First::Response {
                    status: 200,
                    body: BodyEnd::Failed,
                    ..
                }
            ),
            "split at {at}: {ours:?}"
        );
        assert_eq!(ours.reuse, Reuse::No, "split at {at}");
    }
}

/// Each [`Known`] difference on one fixed response: the crate's side as the exclusion says,
/// and hyper's side as it is today, so that an exclusion that no longer holds is noticed.
#[test]
fn the_known_differences_are_real() {
    let rt = runtime();
    let run = |method: Method, bytes: &[u8], close_after: bool| {
        let (ours, theirs, _) = rt.block_on(observe(vec![bytes.to_vec()], method, close_after));
        (ours, theirs)
    };
    let complete = |status: u16, data: &[u8], trailers: Fields| First::Response {
        status,
        headers: Vec::new(),
        body: BodyEnd::Complete {
            data: data.to_vec(),
            trailers,
        },
    };

    // Known::BothFramings
    let (ours, theirs) = run(
        Method::GET,
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        false,
    );
    assert_eq!(ours.first, theirs.first);
    assert_eq!(
        ours.first.without_headers(),
        complete(200, b"hello", vec![])
    );
    assert_eq!((ours.reuse, theirs.reuse), (Reuse::No, Reuse::Yes));

    // Known::Http10BodilessWithTransferEncoding
    let (ours, theirs) = run(
        Method::HEAD,
        b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n",
        false,
    );
    assert_eq!(ours.first, theirs.first);
    assert_eq!(ours.first.without_headers(), complete(200, b"", vec![]));
    assert_eq!((ours.reuse, theirs.reuse), (Reuse::No, Reuse::Yes));

    // Known::KeepAliveHint
    for hint in ["max=0", "timeout=0"] {
        let bytes = format!("HTTP/1.1 200 OK\r\nKeep-Alive: {hint}\r\nContent-Length: 2\r\n\r\nok");
        let (ours, theirs) = run(Method::GET, bytes.as_bytes(), false);
        assert_eq!(ours.first, theirs.first, "{hint}");
        assert_eq!(
            ours.first.without_headers(),
            complete(200, b"ok", vec![]),
            "{hint}"
        );
        assert_eq!(
            (ours.reuse, theirs.reuse),
            (Reuse::No, Reuse::Yes),
            "{hint}"
        );
    }

    // Known::EmptyListElementInTransferEncoding
    let (ours, theirs) = run(
        Method::GET,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, \r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        true,
    );
    assert_eq!(
        ours.first.without_headers(),
        complete(200, b"hello", vec![])
    );
    assert_eq!(
        theirs.first.without_headers(),
        complete(200, b"5\r\nhello\r\n0\r\n\r\n", vec![])
    );

    // Known::ObsFold
    let (ours, theirs) = run(
        Method::GET,
        b"HTTP/1.1 200 OK\r\nX-Folded: first\r\n second\r\nContent-Length: 2\r\n\r\nok",
        false,
    );
    assert_eq!(ours.first.without_headers(), complete(200, b"ok", vec![]));
    let First::Response { headers, .. } = &ours.first else {
        panic!("{ours:?}")
    };
    assert!(
        headers.contains(&("x-folded".into(), b"first second".to_vec())),
        "{headers:?}"
    );
    assert_eq!(theirs.first, First::HeadFailed);

    // Known::BareLfInTrailers
    let (ours, theirs) = run(
        Method::GET,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nx-t: 1\n\n",
        true,
    );
    assert_eq!(
        ours.first.without_headers(),
        complete(200, b"hello", vec![("x-t".into(), b"1".to_vec())])
    );
    assert!(
        matches!(
            theirs.first,
            First::Response {
                body: BodyEnd::Failed,
                ..
            }
        ),
        "{theirs:?}"
    );
}

/// The pacing's instrument: the kernel's count of bytes a client has not read yet.
#[test]
fn unread_bytes_are_seen() {
    runtime().block_on(async {
        let listener = TcpListener::bind((support::unique_loopback(), 0))
            .await
            .unwrap();
        let server_addr = listener.local_addr().unwrap();
        let mut client = TcpStream::connect(server_addr).await.unwrap();
        let (mut server, client_addr) = listener.accept().await.unwrap();
        assert_eq!(unread(client_addr, server_addr), Some(0));
        server.write_all(b"twelve bytes").await.unwrap();
        support::wait_until("the bytes arrive", support::SOON, || {
            unread(client_addr, server_addr) == Some(12)
        })
        .await;
        assert!(!drained(server_addr, client_addr));
        let mut buf = [0u8; 12];
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(unread(client_addr, server_addr), Some(0));
        assert!(drained(server_addr, client_addr));
        keepalive::socket::set_abortive_close(&client).unwrap();
        drop(client);
        assert_eq!(unread(client_addr, server_addr), None);
    });
}

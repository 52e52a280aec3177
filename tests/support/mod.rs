//! Shared helpers for the integration tests: a test server on its own loopback address, a raw
//! HTTP/1 client over tokio streams, and waiting for a condition with a deadline.
#![allow(dead_code, unreachable_pub)] // each test file uses a different part

pub mod raw;
#[cfg(feature = "rustls")]
#[path = "../../examples/support/tls.rs"]
pub mod tls;

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use keepalive::tcp_state::{self, Filter, StateCounts};
use keepalive::{ServerConfig, ServerStats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Generous bound for anything that should happen "at once" on a busy 2-core machine.
pub const SOON: Duration = Duration::from_secs(5);

/// A server configuration whose wait for the client's FIN holds on a busy 2-core CI machine,
/// where a client process may not run for several milliseconds. Tests that count who closed
/// first use it; the default floor is a tuning measured in BENCHMARKS.md, not asserted here.
pub fn patient() -> ServerConfig {
    ServerConfig::new().linger_floor(Duration::from_millis(500))
}

/// A loopback address of its own for each test (127.0.0.2, 127.0.0.3, ...), so socket-state
/// counts of one test never see another's sockets. Offset by the test binary's hash so test
/// files running at the same time do not share addresses either.
pub fn unique_loopback() -> IpAddr {
    static NEXT: AtomicU8 = AtomicU8::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let exe = std::env::current_exe().unwrap_or_default();
    let name = exe.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let salt = name
        .bytes()
        .fold(7u8, |h, b| h.wrapping_mul(31).wrapping_add(b));
    IpAddr::V4(Ipv4Addr::new(127, 1 + (salt % 200), 0, 2 + (n % 250)))
}

/// Waits until `check` returns true, polling every 5 ms; panics with `what` after `deadline`.
pub async fn wait_until(what: &str, deadline: Duration, mut check: impl FnMut() -> bool) {
    let start = tokio::time::Instant::now();
    loop {
        if check() {
            return;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The demo routes: `/` says hello, `/slow?ms=N` sleeps first, `/echo` returns the body,
/// `/close` answers with `Connection: close`, `/stream` streams a body of unknown length.
pub async fn routes(
    req: Request<Incoming>,
) -> Result<Response<http_body_util::combinators::BoxBody<Bytes, Infallible>>, Infallible> {
    let full = |s: Bytes| Full::new(s).boxed();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    Ok(match path.as_str() {
        "/slow" => {
            let ms: u64 = query
                .strip_prefix("ms=")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Response::new(full(Bytes::from("slow done")))
        }
        "/echo" => {
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            Response::new(full(body))
        }
        "/close" => Response::builder()
            .header("connection", "close")
            .body(full(Bytes::from("bye")))
            .unwrap(),
        "/stream" => {
            let chunks = futures_util::stream::iter(
                ["one ", "two ", "three"]
                    .map(|c| Ok::<_, Infallible>(hyper::body::Frame::data(Bytes::from(c)))),
            );
            Response::new(http_body_util::StreamBody::new(chunks).boxed())
        }
        _ => Response::new(full(Bytes::from("hello, world!"))),
    })
}

/// A running test server.
pub struct TestServer {
    pub addr: SocketAddr,
    pub stats: ServerStats,
    shutdown: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<std::io::Result<()>>,
}

impl TestServer {
    /// Serves [`routes`] with `config` on a fresh loopback address.
    pub async fn start(config: ServerConfig) -> TestServer {
        Self::start_with(config, tower::service_fn(routes)).await
    }

    /// Serves `service` with `config` on a fresh loopback address.
    pub async fn start_with<S: keepalive::server::HttpService>(
        config: ServerConfig,
        service: S,
    ) -> TestServer {
        Self::start_handshake(config, service, keepalive::server::Cleartext).await
    }

    /// Serves [`routes`] over TLS with a fresh self-signed certificate valid for the server's
    /// address; returns the configurations that trust it too.
    #[cfg(feature = "rustls")]
    pub async fn start_tls(config: ServerConfig) -> (TestServer, tls::TestTls) {
        let listener = TcpListener::bind((unique_loopback(), 0)).await.unwrap();
        let ip = listener.local_addr().unwrap().ip().to_string();
        let tls = tls::TestTls::with_names(&[ip]);
        let server =
            Self::serve_on(listener, config, tower::service_fn(routes), tls.acceptor()).await;
        (server, tls)
    }

    /// Serves `service` with `config`, each connection through `handshake` first.
    pub async fn start_handshake<S, H>(config: ServerConfig, service: S, handshake: H) -> TestServer
    where
        S: keepalive::server::HttpService,
        H: keepalive::server::Handshake,
    {
        let listener = TcpListener::bind((unique_loopback(), 0)).await.unwrap();
        Self::serve_on(listener, config, service, handshake).await
    }

    async fn serve_on<S, H>(
        listener: TcpListener,
        config: ServerConfig,
        service: S,
        handshake: H,
    ) -> TestServer
    where
        S: keepalive::server::HttpService,
        H: keepalive::server::Handshake,
    {
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let server = keepalive::serve(listener, service)
            .handshake(handshake)
            .config(config)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            });
        let stats = server.stats();
        let task = tokio::spawn(server.into_future());
        TestServer {
            addr,
            stats,
            shutdown: Some(tx),
            task,
        }
    }

    /// Starts a graceful shutdown (the server task ends when it is done).
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// The kernel's view of the server's end of its connections (and its listener).
    pub fn server_side(&self) -> StateCounts {
        tcp_state::count(
            Filter::new()
                .local_ip(self.addr.ip())
                .local_port(self.addr.port()),
        )
        .unwrap()
    }

    /// The kernel's view of the clients' ends of connections to the server.
    pub fn client_side(&self) -> StateCounts {
        tcp_state::count(
            Filter::new()
                .remote_ip(self.addr.ip())
                .remote_port(self.addr.port()),
        )
        .unwrap()
    }

    pub async fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        stream
    }
}

use std::future::IntoFuture;

/// A parsed HTTP/1 response.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn says_close(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.to_ascii_lowercase().contains("close"))
    }
}

/// Reads one response from `stream` (Content-Length, chunked, or until close), keeping any
/// bytes after it in `leftover`.
pub async fn read_response(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
    leftover: &mut Vec<u8>,
) -> std::io::Result<RawResponse> {
    let head_end = loop {
        if let Some(pos) = find(leftover, b"\r\n\r\n") {
            break pos + 4;
        }
        read_more(stream, leftover).await?;
    };
    let head = String::from_utf8_lossy(&leftover[..head_end]).to_string();
    leftover.drain(..head_end);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("").to_string();
    let status: u16 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut response = RawResponse {
        status,
        version,
        headers,
        body: Vec::new(),
    };
    if let Some(len) = response
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        while leftover.len() < len {
            read_more(stream, leftover).await?;
        }
        response.body = leftover.drain(..len).collect();
    } else if response
        .header("transfer-encoding")
        .is_some_and(|v| v.contains("chunked"))
    {
        loop {
            let line_end = loop {
                if let Some(pos) = find(leftover, b"\r\n") {
                    break pos;
                }
                read_more(stream, leftover).await?;
            };
            let size =
                usize::from_str_radix(String::from_utf8_lossy(&leftover[..line_end]).trim(), 16)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            leftover.drain(..line_end + 2);
            while leftover.len() < size + 2 {
                read_more(stream, leftover).await?;
            }
            response.body.extend(leftover.drain(..size));
            leftover.drain(..2);
            if size == 0 {
                break;
            }
        }
    } else if response.status != 204 && response.status != 304 && response.status != 101 {
        // Delimited by the close.
        loop {
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            leftover.extend_from_slice(&buf[..n]);
        }
        response.body = std::mem::take(leftover);
    }
    Ok(response)
}

async fn read_more(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
    buf: &mut Vec<u8>,
) -> std::io::Result<()> {
    let mut chunk = [0u8; 4096];
    let n = stream.read(&mut chunk).await?;
    if n == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed before the response ended",
        ));
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Sends one request and reads its response.
pub async fn request(
    stream: &mut (impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin),
    raw: &str,
) -> RawResponse {
    stream.write_all(raw.as_bytes()).await.unwrap();
    let mut leftover = Vec::new();
    let response = read_response(stream, &mut leftover).await.unwrap();
    assert!(leftover.is_empty(), "unexpected bytes after the response");
    response
}

/// `GET path` in HTTP/1.1 with extra header lines.
pub fn get(path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n{extra}\r\n")
}

/// Waits for the peer to close `stream` (EOF), reading and discarding anything first.
pub async fn expect_eof(stream: &mut (impl tokio::io::AsyncRead + Unpin)) -> Vec<u8> {
    let mut rest = Vec::new();
    let result = tokio::time::timeout(SOON, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(n) => rest.extend_from_slice(&buf[..n]),
                Err(e) => return Err(e),
            }
        }
    })
    .await;
    match result {
        Ok(Ok(())) => rest,
        Ok(Err(e)) => panic!("expected a clean close, got {e}"),
        Err(_) => panic!("the server did not close within {SOON:?}"),
    }
}

/// Sends a GET with the crate's client, expects a 200, and reads the body to its end.
pub async fn fetch_ok<C: keepalive::client::Connect>(
    client: &keepalive::client::Client<C>,
    url: &str,
) -> Bytes {
    let request = Request::get(url)
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let response = within("a request", client.request(request))
        .await
        .unwrap_or_else(|e| panic!("GET {url} failed: {e}"));
    assert_eq!(response.status(), 200);
    within("a response body", response.into_body().collect())
        .await
        .unwrap()
        .to_bytes()
}

/// curl's `--version` text, or `None` when curl is not installed: tests that drive curl say
/// they are skipped then (the tests need only the Rust toolchain).
pub fn curl_version() -> Option<String> {
    let output = std::process::Command::new("curl")
        .arg("--version")
        .output()
        .ok()?;
    assert!(output.status.success(), "curl is installed but broken");
    Some(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs curl quietly (errors still shown, 10 s at most) with `args`; panics with its stderr
/// unless it succeeds; returns what it printed.
pub async fn run_curl(args: &[&str]) -> Vec<u8> {
    let out = tokio::process::Command::new("curl")
        .args(["-s", "-S", "--max-time", "10"])
        .args(args)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs `f` with a timeout of [`SOON`], panicking with `what` if it does not finish.
pub async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(SOON, f)
        .await
        .unwrap_or_else(|_| panic!("timed out after {SOON:?}: {what}"))
}

/// An error and its sources, `: `-separated, as error reporters (anyhow, eyre) print them.
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(source) = next {
        text.push_str(": ");
        text.push_str(&source.to_string());
        next = source.source();
    }
    text
}

//! A scripted raw HTTP/1 server for client tests: each response can be exactly as broken as
//! a test needs, and the test can see which connection and which request on it each answer
//! went to.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use keepalive::tcp_state::{self, Filter};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::unique_loopback;

/// What the raw server does with one request.
#[derive(Clone)]
pub enum Reply {
    /// Writes these bytes and reads the next request.
    Send(Vec<u8>),
    /// Writes these bytes, then closes (a FIN).
    SendClose(Vec<u8>),
    /// Writes these bytes, then resets the connection.
    SendReset(Vec<u8>),
    /// Writes these bytes, then holds the connection open until the client leaves.
    SendHold(Vec<u8>),
    /// Writes the first bytes; once `go` is notified writes the second (nobody asked for
    /// them), then reads on.
    SendThenLater(Vec<u8>, Vec<u8>, Arc<Notify>),
    /// Writes the first bytes; once `go` is notified writes the second, then closes (a FIN).
    SendThenClose(Vec<u8>, Vec<u8>, Arc<Notify>),
}

/// One request as the raw server read it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub conn: usize,
    pub index: usize,
    pub path: String,
    /// The request head as it came, request line and header lines.
    pub head: String,
}

/// A scripted raw HTTP/1 server: `script(conn, index)` says how to answer request `index` of
/// connection `conn` (both counted from 0).
pub struct RawServer {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Connections ended on the server's side: the client left (EOF or reset seen while
    /// reading), or the script closed it.
    pub ended: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl RawServer {
    pub async fn start(
        script: impl Fn(usize, usize) -> Reply + Send + Sync + 'static,
    ) -> RawServer {
        let script = Arc::new(script);
        let listener = TcpListener::bind((unique_loopback(), 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let ended = Arc::new(AtomicUsize::new(0));
        let (log, left) = (seen.clone(), ended.clone());
        let task = tokio::spawn(async move {
            let mut conn = 0;
            while let Ok((stream, _)) = listener.accept().await {
                let (script, log, left) = (script.clone(), log.clone(), left.clone());
                tokio::spawn(async move {
                    serve_raw(stream, conn, &*script, log).await;
                    left.fetch_add(1, Ordering::SeqCst);
                });
                conn += 1;
            }
        });
        RawServer {
            addr,
            seen,
            ended,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits (up to [`SOON`](super::SOON)) until the client keeps no socket to this server in CLOSE_WAIT.
    pub async fn no_client_close_wait(&self, case: &str) {
        super::wait_until(
            &format!("{case}: no CLOSE_WAIT on the client"),
            super::SOON,
            || self.client_close_wait() == 0,
        )
        .await;
    }

    /// The client's sockets to this server in CLOSE_WAIT.
    pub fn client_close_wait(&self) -> usize {
        tcp_state::count(
            Filter::new()
                .remote_ip(self.addr.ip())
                .remote_port(self.addr.port()),
        )
        .unwrap()
        .close_wait()
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves one connection until the client leaves or the script ends it.
async fn serve_raw(
    mut stream: TcpStream,
    conn: usize,
    script: &(dyn Fn(usize, usize) -> Reply + Send + Sync),
    log: Arc<Mutex<Vec<Seen>>>,
) {
    let mut buf = Vec::new();
    let mut index = 0;
    while let Some((path, head)) = read_request(&mut stream, &mut buf).await {
        log.lock().unwrap().push(Seen {
            conn,
            index,
            path,
            head,
        });
        let reply = script(conn, index);
        index += 1;
        match reply {
            Reply::Send(bytes) => {
                if stream.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            Reply::SendClose(bytes) => {
                let _ = stream.write_all(&bytes).await;
                return;
            }
            Reply::SendReset(bytes) => {
                let _ = stream.write_all(&bytes).await;
                keepalive::socket::set_abortive_close(&stream).unwrap();
                return;
            }
            Reply::SendHold(bytes) => {
                let _ = stream.write_all(&bytes).await;
                let mut sink = [0u8; 1024];
                while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
                return;
            }
            Reply::SendThenLater(first, later, go) => {
                if stream.write_all(&first).await.is_err() {
                    return;
                }
                go.notified().await;
                if stream.write_all(&later).await.is_err() {
                    return;
                }
            }
            Reply::SendThenClose(first, later, go) => {
                if stream.write_all(&first).await.is_err() {
                    return;
                }
                go.notified().await;
                let _ = stream.write_all(&later).await;
                return;
            }
        }
    }
}

/// Reads one request head and its Content-Length body; the path and the head, or `None` once
/// the client has left.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(String, String)> {
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    buf.drain(..head_end);
    let path = head.split(' ').nth(1).unwrap_or("").to_string();
    let length = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    while buf.len() < length {
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    buf.drain(..length);
    Some((path, head))
}

/// A well-formed keep-alive response with `body`.
pub fn ok(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A well-formed keep-alive response with extra header lines.
pub fn ok_with(headers: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

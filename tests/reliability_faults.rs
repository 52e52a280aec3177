//! Faults: what real networks and real machines do to a connection, on both ends.
//!
//! - Descriptor exhaustion: the demo server (`examples/server.rs`) in a child process under
//!   `RLIMIT_NOFILE` 128, with 300 clients connecting and holding on. It stays up, does not spin
//!   (its CPU time from `/proc/<pid>/stat`, not wall time), and once the first clients leave it
//!   serves every client that was still waiting, then a fresh one, then drains on SIGTERM.
//! - The peer killed or reset at each stage, both ways. A server whose client connects and
//!   leaves, sends a request and leaves, leaves mid-response or while idle (with a FIN, with a
//!   reset, or as a killed curl process) ends the connection and keeps no socket in CLOSE_WAIT.
//!   A client whose server resets or closes at connect, after the request, inside the head,
//!   mid-body or while the connection is idle in the pool gets a typed error (or, idle, the
//!   connection is evicted), keeps no socket in CLOSE_WAIT and serves the next request on a new
//!   connection. A pooled connection whose FIN arrived before the pool's watcher could run is
//!   never handed out.
//! - Graceful shutdown under load: every request a handler saw got its response, every other
//!   request got a typed error, and what had to be forced is reported (and only that).
//! - Pool exhaustion: with a per-host limit, waiters get a connection in the order they asked
//!   or a `PoolTimeout` error, the pool's places all come back, and a retry never hides an idle
//!   connection.

mod support;

use std::convert::Infallible;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Bytes, Incoming};
use keepalive::client::{Client, ClientConfig, ErrorKind, Pool, PoolCloseReason, PoolConfig};
use keepalive::tcp_state::{self, Filter, TcpState};
use keepalive::{CloseReason, ServerConfig};
use support::raw::*;
use support::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// The path of a built example (cargo builds the examples for `cargo test`; a filtered run may
/// not, so build it then).
fn example(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let path = dir.join("examples").join(name);
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["build", "--example", name])
            .status()
            .unwrap();
        assert!(status.success());
    }
    path
}

/// CPU time (user + system) of process `pid` in clock ticks, from `/proc/<pid>/stat`.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Open descriptors of process `pid`.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Clock ticks per second of `/proc/<pid>/stat` (the kernel's `USER_HZ`, 100 in practice).
const CLOCK_TICKS_PER_SECOND: u64 = 100;

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_under_rlimit_nofile_128_with_300_clients_stays_up_without_spinning_and_serves_them_all(
) {
    const CLIENTS: usize = 300;
    let ip = unique_loopback();
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 128 && exec \"$0\" \"$@\"")
        .arg(example("server"))
        .args(["--addr", &format!("{ip}:0")])
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = within("the server's first line", lines.next_line())
        .await
        .unwrap()
        .unwrap_or_default();
    let addr: std::net::SocketAddr = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first line: {first:?}"))
        .parse()
        .unwrap();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let nofile = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    assert!(nofile.split_whitespace().any(|w| w == "128"), "{nofile}");

    // 300 clients: each connects, asks once, and holds its connection until told to leave.
    // Past the server's table (about 120) and its listen backlog (128) the kernel drops their
    // SYNs and they retry, as on a real network.
    let served = Arc::new(AtomicUsize::new(0));
    let leave = Arc::new(Notify::new());
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (served, leave) = (served.clone(), leave.clone());
        clients.push(tokio::spawn(async move {
            let left = leave.notified();
            let mut stream =
                tokio::time::timeout(Duration::from_secs(60), TcpStream::connect(addr))
                    .await
                    .map_err(|_| "connect timed out".to_string())?
                    .map_err(|e| format!("connect: {e}"))?;
            stream
                .write_all(get("/", "").as_bytes())
                .await
                .map_err(|e| format!("write: {e}"))?;
            let mut leftover = Vec::new();
            let response = read_response(&mut stream, &mut leftover)
                .await
                .map_err(|e| format!("read: {e}"))?;
            assert_eq!(response.status, 200);
            served.fetch_add(1, Ordering::SeqCst);
            left.await;
            Ok::<(), String>(())
        }));
    }
    // The server fills its table (about 120 of the clients), then accept fails.
    wait_until(
        "the server's descriptor table is full",
        Duration::from_secs(20),
        || open_fds(pid) >= 120,
    )
    .await;
    wait_until("some clients are served", SOON, || {
        served.load(Ordering::SeqCst) >= 64
    })
    .await;

    // A real window of 1 s out of descriptors: a server retrying accept at once would burn it.
    let ticks_before = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cpu_ms = (cpu_ticks(pid) - ticks_before) * 1000 / CLOCK_TICKS_PER_SECOND;
    let held = served.load(Ordering::SeqCst);
    println!("out of descriptors: {held} clients served and holding, {} descriptors open, {cpu_ms} ms of CPU in 1 s", open_fds(pid));
    assert!(
        cpu_ms < 500,
        "the server spins while out of descriptors: {cpu_ms} ms of CPU in 1 s"
    );
    assert!(
        held < CLIENTS,
        "the limit did not bite: all {held} served at once"
    );
    assert!(child.try_wait().unwrap().is_none(), "the server exited");

    // The holders leave: every waiting client is served as descriptors free up.
    let (served_first, waiting) = (held, CLIENTS - held);
    let leave_all = async {
        loop {
            leave.notify_waiters();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let all = async {
        let mut failures = Vec::new();
        for client in clients {
            if let Err(error) = client.await.unwrap() {
                failures.push(error);
            }
        }
        failures
    };
    let failures = tokio::select! {
        failures = all => failures,
        () = leave_all => unreachable!(),
        () = tokio::time::sleep(Duration::from_secs(45)) => panic!(
            "not every client was served: {} of {CLIENTS}", served.load(Ordering::SeqCst)
        ),
    };
    assert!(failures.is_empty(), "clients lost: {failures:?}");
    assert_eq!(served.load(Ordering::SeqCst), CLIENTS);
    println!("{served_first} served at first, {waiting} waited and were served once descriptors freed up");

    // And a fresh client is served.
    let mut fresh = TcpStream::connect(addr).await.unwrap();
    let response = within("a fresh client", request(&mut fresh, &get("/", ""))).await;
    assert_eq!(response.status, 200);
    let stats = within("the stats", request(&mut fresh, &get("/stats", ""))).await;
    let json: serde_json::Value = serde_json::from_slice(&stats.body).unwrap();
    println!("server stats: {json}");
    assert_eq!(json["accepted"].as_u64(), Some(CLIENTS as u64 + 1));
    assert!(json["accept_errors"].as_u64().unwrap() >= 1, "{json}");
    drop(fresh);

    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = within("the server drains and exits", child.wait())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
}

/// Closes `stream` with a reset (SO_LINGER 0).
fn reset(stream: TcpStream) {
    keepalive::socket::set_abortive_close(&stream).unwrap();
    drop(stream);
}

/// How a test peer leaves.
#[derive(Debug, Clone, Copy)]
enum Leave {
    Fin,
    Reset,
}

fn leave(stream: TcpStream, how: Leave) {
    match how {
        Leave::Fin => drop(stream),
        Leave::Reset => reset(stream),
    }
}

/// A service with the support routes plus `/big` (32 MiB streamed) and `/hold` (never ends).
fn fault_service() -> impl tower::Service<
    Request<Incoming>,
    Response = Response<http_body_util::combinators::BoxBody<Bytes, Infallible>>,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    tower::service_fn(|req: Request<Incoming>| async move {
        match req.uri().path() {
            "/big" => {
                let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
                let chunks =
                    futures_util::stream::iter((0..512).map(move |_| {
                        Ok::<_, Infallible>(hyper::body::Frame::data(chunk.clone()))
                    }));
                Ok(Response::new(
                    http_body_util::StreamBody::new(chunks).boxed(),
                ))
            }
            "/hold" => std::future::pending().await,
            _ => routes(req).await,
        }
    })
}

/// The server side of each stage: the client leaves (FIN or reset) after connecting, after
/// sending a request whose handler runs, in the middle of the response, and while idle.
#[tokio::test]
async fn server_ends_each_connection_its_client_left_at_any_stage_with_no_close_wait() {
    for how in [Leave::Fin, Leave::Reset] {
        let server = TestServer::start_with(ServerConfig::new(), fault_service()).await;
        let mut closed = 0;
        let check = |stage: &str, closed: u64| {
            let stage = format!("{how:?} {stage}");
            let server = &server;
            async move {
                wait_until(
                    &format!("{stage}: the server ended the connection"),
                    SOON,
                    || server.stats.snapshot().closed_total() == closed,
                )
                .await;
                wait_until(
                    &format!("{stage}: no CLOSE_WAIT, nothing left"),
                    SOON,
                    || {
                        let side = server.server_side();
                        side.close_wait() == 0 && side.established() == 0
                    },
                )
                .await;
                let mut fresh = server.connect().await;
                let ok = within(&stage, request(&mut fresh, &get("/", ""))).await;
                assert_eq!(ok.status, 200, "{stage}");
                drop(fresh);
                wait_until(
                    &format!("{stage}: the check's connection ends"),
                    SOON,
                    || server.stats.snapshot().closed_total() == closed + 1,
                )
                .await;
            }
        };

        // Connect, then leave without a byte.
        let stream = server.connect().await;
        wait_until("accepted", SOON, || server.stats.snapshot().active == 1).await;
        leave(stream, how);
        closed += 1;
        check("after connecting", closed).await;
        closed += 1;

        // A request whose handler runs.
        let mut stream = server.connect().await;
        stream.write_all(get("/hold", "").as_bytes()).await.unwrap();
        let requests = server.stats.snapshot().requests;
        wait_until("the handler runs", SOON, || {
            server.stats.snapshot().requests == requests + 1
        })
        .await;
        leave(stream, how);
        closed += 1;
        check("with the request sent", closed).await;
        closed += 1;

        // In the middle of a 32 MiB response.
        let mut stream = server.connect().await;
        stream.write_all(get("/big", "").as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let n = within("the response starts", stream.read(&mut buf))
            .await
            .unwrap();
        assert!(n > 0);
        leave(stream, how);
        closed += 1;
        check("mid-response", closed).await;
        closed += 1;

        // Idle between requests.
        let mut stream = server.connect().await;
        assert_eq!(
            within("a request", request(&mut stream, &get("/", "")))
                .await
                .status,
            200
        );
        wait_until("idle", SOON, || server.stats.snapshot().idle == 1).await;
        leave(stream, how);
        closed += 1;
        check("idle", closed).await;

        // Four stages and four checks: each ended by its client (a FIN with unread data in
        // the client's buffer turns into a reset, counted as an error), none by a timeout.
        let stats = server.stats.snapshot();
        println!("{how:?}: {}", stats.to_json());
        assert_eq!(
            stats.closed(CloseReason::PeerFin) + stats.closed(CloseReason::Error),
            8,
            "{how:?}: {}",
            stats.to_json()
        );
    }
}

/// A client process killed (SIGKILL) while its handler runs and while it reads a response:
/// the kernel closes its sockets, and the server notices at once.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn server_notices_a_killed_client_process() {
    if curl_version().is_none() {
        println!("skipped: no curl");
        return;
    }
    let server = TestServer::start_with(ServerConfig::new(), fault_service()).await;
    for (stage, path, extra) in [
        ("while its handler runs", "/hold", &[][..]),
        (
            "while it reads a response",
            "/big",
            &["--limit-rate", "64k"][..],
        ),
    ] {
        let closed = server.stats.snapshot().closed_total();
        let mut curl = tokio::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null"])
            .args(extra)
            .arg(format!("http://{}{path}", server.addr))
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        wait_until(&format!("{stage}: curl is connected"), SOON, || {
            server.stats.snapshot().requests > 0 && server.stats.snapshot().active == 1
        })
        .await;
        curl.kill().await.unwrap();
        wait_until(
            &format!("{stage}: the server ended the connection"),
            SOON,
            || server.stats.snapshot().closed_total() == closed + 1,
        )
        .await;
        wait_until(&format!("{stage}: no CLOSE_WAIT"), SOON, || {
            let side = server.server_side();
            side.close_wait() == 0 && side.established() == 0
        })
        .await;
    }
    let stats = server.stats.snapshot();
    assert_eq!(stats.active, 0, "{}", stats.to_json());
    println!("killed curl: {}", stats.to_json());
}

/// The client side of each stage: the server leaves (FIN or reset) after accepting, after
/// reading the request, inside the response head, mid-body, and while the connection is idle
/// in the pool.
#[tokio::test]
async fn client_gets_a_typed_error_at_each_stage_the_server_leaves_and_keeps_no_close_wait() {
    let head = b"HTTP/1.1 200".to_vec();
    let mid_body = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789".to_vec();
    for (stage, reply) in [
        (
            "FIN after reading the request",
            Reply::SendClose(Vec::new()),
        ),
        (
            "reset after reading the request",
            Reply::SendReset(Vec::new()),
        ),
        ("FIN inside the head", Reply::SendClose(head.clone())),
        ("reset inside the head", Reply::SendReset(head)),
        ("FIN mid-body", Reply::SendClose(mid_body.clone())),
        ("reset mid-body", Reply::SendReset(mid_body)),
    ] {
        let server = RawServer::start(move |conn, _| {
            if conn == 0 {
                reply.clone()
            } else {
                Reply::Send(ok("fine"))
            }
        })
        .await;
        let client = Client::new(ClientConfig::new());
        let outcome = within(stage, async {
            match client
                .request(
                    Request::get(server.url("/"))
                        .body(Empty::<Bytes>::new())
                        .unwrap(),
                )
                .await
            {
                Err(error) => Err(format!("request error {:?}: {error}", error.kind())),
                Ok(response) => match response.into_body().collect().await {
                    Ok(body) => Ok(body.to_bytes()),
                    Err(error) => Err(format!("body error: {error}")),
                },
            }
        })
        .await;
        let error = outcome.expect_err(stage);
        println!("{stage}: {error}");
        if !stage.contains("mid-body") {
            assert!(error.contains("request error Request"), "{stage}: {error}");
        }
        server.no_client_close_wait(stage).await;
        assert_eq!(
            client.stats().snapshot().closed(PoolCloseReason::Error),
            1,
            "{stage}"
        );
        let next = within(
            stage,
            client.request(
                Request::get(server.url("/"))
                    .body(Empty::<Bytes>::new())
                    .unwrap(),
            ),
        )
        .await
        .unwrap();
        assert_eq!(
            within(stage, next.into_body().collect())
                .await
                .unwrap()
                .to_bytes(),
            "fine"
        );
        assert_eq!(client.stats().snapshot().opened, 2, "{stage}");
    }

    // At connect: nobody listens any more.
    let listener = std::net::TcpListener::bind((unique_loopback(), 0)).unwrap();
    let gone = listener.local_addr().unwrap();
    drop(listener);
    let error = failed_get(&format!("http://{gone}/"), "a refused connect").await;
    assert_eq!(error.kind(), &ErrorKind::Connect, "{error}");

    // Accepted, then reset before a byte: the request fails on a fresh connection.
    let listener = tokio::net::TcpListener::bind((unique_loopback(), 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let resetter = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        reset(stream);
    });
    let error = failed_get(&format!("http://{addr}/"), "a reset at connect").await;
    assert!(
        matches!(error.kind(), ErrorKind::Request | ErrorKind::Connect),
        "{error}"
    );
    resetter.await.unwrap();
}

/// Idle in the pool: the server closes (FIN) or resets an idle pooled connection; the pool
/// evicts it at once, keeps no CLOSE_WAIT, and the next request opens a new connection.
#[tokio::test]
async fn client_evicts_an_idle_connection_its_server_left() {
    for how in [Leave::Fin, Leave::Reset] {
        let held: Arc<Mutex<Option<TcpStream>>> = Arc::default();
        let listener = tokio::net::TcpListener::bind((unique_loopback(), 0))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let slot = held.clone();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = stream.read(&mut chunk).await.unwrap();
                    buf.extend_from_slice(&chunk[..n]);
                }
                stream.write_all(&ok("fine")).await.unwrap();
                *slot.lock().unwrap() = Some(stream);
            }
        });
        let client = Client::new(ClientConfig::new());
        let url = format!("http://{addr}/");
        let uri: http::Uri = url.parse().unwrap();
        assert_eq!(fetch_ok(&client, &url).await, "fine");
        wait_until("idle in the pool", SOON, || {
            client.idle_connections(&uri) == 1
        })
        .await;
        wait_until("the server holds it", SOON, || {
            held.lock().unwrap().is_some()
        })
        .await;
        let stream = held.lock().unwrap().take().unwrap();
        leave(stream, how);
        let reason = match how {
            Leave::Fin => PoolCloseReason::ServerFin,
            Leave::Reset => PoolCloseReason::Error,
        };
        wait_until(&format!("{how:?}: evicted"), SOON, || {
            client.stats().snapshot().closed(reason) == 1
        })
        .await;
        assert_eq!(client.idle_connections(&uri), 0);
        let counts =
            tcp_state::count(Filter::new().remote_ip(addr.ip()).remote_port(addr.port())).unwrap();
        assert_eq!(counts.close_wait(), 0, "{how:?}: {counts}");
        assert_eq!(fetch_ok(&client, &url).await, "fine");
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            2,
            "{how:?}: a new connection"
        );
        task.abort();
    }
}

/// A pooled connection whose server's FIN has reached the runtime while the pool's watcher
/// has not run yet: the checkout must not hand it out.
///
/// The order is the current-thread runtime's: the test waits for the FIN in the kernel without
/// yielding (a blocking wait on the kernel's table), then yields once; the runtime turns its
/// IO driver (the socket is readable, the watcher is woken and queued) and polls the test's own
/// future first, before any task it woke.
#[tokio::test]
async fn a_fin_the_watcher_has_not_seen_yet_keeps_the_connection_from_being_handed_out() {
    let listener = std::net::TcpListener::bind((unique_loopback(), 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let client_side = TcpStream::connect(addr).await.unwrap();
    let local = client_side.local_addr().unwrap();
    let (server_side, _) = listener.accept().unwrap();
    let pool: Pool<u8, TcpStream> = Pool::new(PoolConfig::new());
    pool.put(1, client_side, Default::default());
    drop(server_side);
    let deadline = std::time::Instant::now() + SOON;
    loop {
        let counts =
            tcp_state::count(Filter::new().local_ip(local.ip()).local_port(local.port())).unwrap();
        if counts.get(TcpState::CloseWait) == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no FIN: {counts}");
        std::thread::sleep(Duration::from_millis(5));
    }
    tokio::task::yield_now().await;
    let checkout = pool
        .checkout(&1)
        .now_or_never()
        .expect("a checkout with an idle connection does not wait");
    assert!(
        matches!(checkout, Ok(None)),
        "a dead connection was handed out: {checkout:?}"
    );
    assert_eq!(
        pool.stats().snapshot().closed(PoolCloseReason::ServerFin),
        1
    );
    assert_eq!(pool.idle_count(&1), 0);
}

/// Graceful shutdown in the middle of a load of keep-alive clients and short connections:
/// every request a handler saw was answered (except the one handler that outlived the shutdown
/// timeout, which is reported as forced), every other request got a typed error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_under_load_loses_no_accepted_request() {
    let config = ServerConfig::new()
        .shutdown_timeout(Duration::from_secs(2))
        .drain_grace(Duration::from_millis(500));
    let mut server = TestServer::start(config).await;
    let ok = Arc::new(AtomicU64::new(0));
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let sent = Arc::new(AtomicU64::new(0));
    let client = Client::new(ClientConfig::new());
    let mut workers = Vec::new();
    for worker in 0..12 {
        let (ok, errors, sent, client) = (ok.clone(), errors.clone(), sent.clone(), client.clone());
        let addr = server.addr;
        workers.push(tokio::spawn(async move {
            // Bounded: at most 2,000 requests or until the first error after the shutdown.
            for i in 0..2000u32 {
                sent.fetch_add(1, Ordering::SeqCst);
                let result = if worker % 3 == 0 {
                    // A short connection per request.
                    match TcpStream::connect(addr).await {
                        Err(e) => Err(format!("connect: {:?}", e.kind())),
                        Ok(mut stream) => {
                            let raw = get(&format!("/slow?ms={}", i % 20), "Connection: close\r\n");
                            match stream.write_all(raw.as_bytes()).await {
                                Err(e) => Err(format!("write: {:?}", e.kind())),
                                Ok(()) => read_response(&mut stream, &mut Vec::new())
                                    .await
                                    .map(|r| r.status)
                                    .map_err(|e| format!("read: {:?}", e.kind())),
                            }
                        }
                    }
                } else {
                    let url = format!("http://{addr}/slow?ms={}", i % 20);
                    match client
                        .request(Request::get(url).body(Empty::<Bytes>::new()).unwrap())
                        .await
                    {
                        Err(e) => Err(format!("client: {:?}", e.kind())),
                        Ok(response) => {
                            let status = response.status().as_u16();
                            response
                                .into_body()
                                .collect()
                                .await
                                .map(|_| status)
                                .map_err(|e| format!("body: {e}"))
                        }
                    }
                };
                match result {
                    Ok(200) => {
                        ok.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(other) => panic!("status {other}"),
                    Err(e) => {
                        errors.lock().unwrap().push(e);
                        return;
                    }
                }
            }
        }));
    }
    // One handler that outlives the shutdown timeout: it is the forced one.
    let mut long = server.connect().await;
    long.write_all(get("/slow?ms=60000", "").as_bytes())
        .await
        .unwrap();
    wait_until("the load runs", SOON, || ok.load(Ordering::SeqCst) >= 200).await;
    server.begin_shutdown();
    let done = within("the server finishes", &mut server.task).await;
    done.unwrap().unwrap();
    for worker in workers {
        within("a worker ends", worker).await.unwrap();
    }
    let mut rest = Vec::new();
    let long_outcome = within("the forced connection ends", long.read_to_end(&mut rest)).await;
    assert!(
        rest.is_empty(),
        "the forced request got no response: {:?}",
        String::from_utf8_lossy(&rest)
    );
    drop(long_outcome);

    let stats = server.stats.snapshot();
    let errors = errors.lock().unwrap().clone();
    println!(
        "shutdown under load: {} requests sent, {} answered, {} typed errors {:?}, server: {}",
        sent.load(Ordering::SeqCst),
        ok.load(Ordering::SeqCst),
        errors.len(),
        errors,
        stats.to_json()
    );
    assert_eq!(
        stats.closed(CloseReason::Forced),
        1,
        "only the long handler is forced: {}",
        stats.to_json()
    );
    assert_eq!(
        stats.requests,
        ok.load(Ordering::SeqCst) + 1,
        "every request a handler saw was answered, but the forced one: {}",
        stats.to_json()
    );
    assert_eq!(stats.active, 0);
}

/// A handler for the pool tests: records the order requests reach it (`/n?id=K`) and takes
/// `ms` milliseconds.
fn ordered_service(
    order: Arc<Mutex<Vec<u32>>>,
) -> impl tower::Service<
    Request<Incoming>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    tower::service_fn(move |req: Request<Incoming>| {
        let order = order.clone();
        async move {
            let query = req.uri().query().unwrap_or("");
            let param = |name: &str| {
                query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix(name))
                    .and_then(|v| v.parse::<u32>().ok())
                    .unwrap_or(0)
            };
            order.lock().unwrap().push(param("id="));
            tokio::time::sleep(Duration::from_millis(u64::from(param("ms=")))).await;
            Ok(Response::new(Full::new(Bytes::from("done"))))
        }
    })
}

/// A GET of `url` by a fresh client, which must fail; its error.
async fn failed_get(url: &str, what: &str) -> keepalive::client::Error {
    let client = Client::new(ClientConfig::new());
    within(
        what,
        client.request(Request::get(url).body(Empty::<Bytes>::new()).unwrap()),
    )
    .await
    .unwrap_err()
}

/// GET `url` on a task of its own; the whole body, or the panic of a failed request.
fn spawn_get(client: &Client, url: String) -> tokio::task::JoinHandle<Bytes> {
    let client = client.clone();
    tokio::spawn(async move {
        let response = client
            .request(Request::get(url).body(Empty::<Bytes>::new()).unwrap())
            .await
            .unwrap();
        response.into_body().collect().await.unwrap().to_bytes()
    })
}

/// With one connection per host, 12 requests queue: they reach the server one at a time, in
/// the order they asked, on that one connection.
#[tokio::test]
async fn pool_waiters_get_the_connection_in_the_order_they_asked() {
    let order = Arc::new(Mutex::new(Vec::new()));
    let server = TestServer::start_with(ServerConfig::new(), ordered_service(order.clone())).await;
    let client = Client::new(ClientConfig::new().max_per_host(Some(1)));
    let mut tasks = Vec::new();
    // On this current-thread runtime spawned tasks first run in the order they were spawned,
    // so they join the queue in that order.
    for id in 0..12u32 {
        tasks.push(spawn_get(
            &client,
            format!("http://{}/n?id={id}&ms=20", server.addr),
        ));
    }
    for task in tasks {
        assert_eq!(within("a queued request", task).await.unwrap(), "done");
    }
    assert_eq!(*order.lock().unwrap(), (0..12).collect::<Vec<_>>());
    let stats = client.stats().snapshot();
    assert_eq!(stats.opened, 1, "{}", stats.to_json());
    assert_eq!(server.stats.snapshot().accepted, 1);
}

/// With two connections per host held by slow requests, waiters with a short wait timeout get
/// `PoolTimeout`; once the slow ones finish, every place is back: a burst is served on at most
/// two connections.
#[tokio::test]
async fn pool_waiters_time_out_with_a_typed_error_and_every_place_comes_back() {
    let order = Arc::new(Mutex::new(Vec::new()));
    let server = TestServer::start_with(ServerConfig::new(), ordered_service(order.clone())).await;
    let client = Client::new(
        ClientConfig::new()
            .max_per_host(Some(2))
            .pool_wait_timeout(Duration::from_millis(200)),
    );
    let slow: Vec<_> = (0..2)
        .map(|id| spawn_get(&client, format!("http://{}/n?id={id}&ms=1500", server.addr)))
        .collect();
    wait_until("both slow requests run", SOON, || {
        order.lock().unwrap().len() == 2
    })
    .await;
    let waiters: Vec<_> = (10..16)
        .map(|id| {
            let client = client.clone();
            let url = format!("http://{}/n?id={id}", server.addr);
            tokio::spawn(async move {
                client
                    .request(Request::get(url).body(Empty::<Bytes>::new()).unwrap())
                    .await
                    .map(|_| ())
            })
        })
        .collect();
    for waiter in waiters {
        let error = within("a waiter", waiter).await.unwrap().unwrap_err();
        assert_eq!(error.kind(), &ErrorKind::PoolTimeout, "{error}");
    }
    for task in slow {
        assert_eq!(within("a slow request", task).await.unwrap(), "done");
    }
    // Every place is back: a burst of 20 is served, on the same two connections.
    let burst: Vec<_> = (100..120)
        .map(|id| spawn_get(&client, format!("http://{}/n?id={id}", server.addr)))
        .collect();
    for task in burst {
        assert_eq!(within("a burst request", task).await.unwrap(), "done");
    }
    let stats = client.stats().snapshot();
    assert_eq!(stats.opened, 2, "{}", stats.to_json());
    assert_eq!(server.stats.snapshot().accepted, 2);
}

/// A retry after a stale connection opens a new connection but leaves the other idle
/// connections in the pool (it used to take one out of the idle list and strand it, open and
/// holding its place, until its idle timeout).
#[tokio::test]
async fn a_retry_leaves_the_other_idle_connections_in_the_pool() {
    // Every connection answers its first request and closes silently on its second.
    let server = RawServer::start(|conn, index| {
        if index == 0 {
            Reply::Send(ok(&format!("{conn}")))
        } else {
            Reply::SendClose(Vec::new())
        }
    })
    .await;
    let client = Client::new(ClientConfig::new().max_per_host(Some(3)));
    let uri: http::Uri = server.url("/").parse().unwrap();
    let get_body = |path: &str| {
        let client = client.clone();
        let url = server.url(path);
        async move {
            let response = client
                .request(Request::get(url).body(Empty::<Bytes>::new()).unwrap())
                .await
                .unwrap();
            response.into_body().collect().await.unwrap().to_bytes()
        }
    };
    let (a, b) = within("two at once", async {
        tokio::join!(get_body("/a"), get_body("/b"))
    })
    .await;
    assert_ne!(a, b);
    wait_until("two idle", SOON, || client.idle_connections(&uri) == 2).await;
    // This one takes the newest idle connection, finds it stale (its second request), retries
    // on a new connection.
    let c = within("the retried request", get_body("/c")).await;
    assert_eq!(c, "2");
    assert_eq!(client.stats().snapshot().retries, 1);
    wait_until(
        "the untouched idle connection and the new one are pooled",
        SOON,
        || client.idle_connections(&uri) == 2,
    )
    .await;
}

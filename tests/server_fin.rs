//! The client's FIN is noticed at once, idle or while a handler runs (also behind pipelined
//! requests). A client that has no complete request waiting behind the running one has left:
//! the handler is dropped. Requests complete before the FIN are answered, then the connection
//! closes. Either way the server's socket leaves no CLOSE_WAIT.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use keepalive::{CloseReason, ServerConfig};
use support::*;
use tokio::io::AsyncWriteExt;

/// A handler that sleeps for `ms` and counts how many times it was dropped unfinished.
fn slow_service(
    dropped: Arc<AtomicUsize>,
) -> impl tower::Service<
    Request<Incoming>,
    Response = Response<Full<Bytes>>,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone {
    tower::service_fn(move |req: Request<Incoming>| {
        let dropped = dropped.clone();
        async move {
            struct Guard(Arc<AtomicUsize>, bool);
            impl Drop for Guard {
                fn drop(&mut self) {
                    if !self.1 {
                        self.0.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
            let mut guard = Guard(dropped, false);
            let ms: u64 = req
                .uri()
                .query()
                .and_then(|q| q.strip_prefix("ms="))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            guard.1 = true;
            Ok(Response::new(Full::new(Bytes::from("done"))))
        }
    })
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn client_leaving_mid_handler_drops_it_and_leaves_no_close_wait() {
    let dropped = Arc::new(AtomicUsize::new(0));
    let server = TestServer::start_with(ServerConfig::new(), slow_service(dropped.clone())).await;
    let mut stream = server.connect().await;
    stream
        .write_all(get("/?ms=5000", "").as_bytes())
        .await
        .unwrap();
    wait_until("the handler runs", SOON, || {
        server.stats.snapshot().requests == 1
    })
    .await;
    drop(stream);
    wait_until("the handler is dropped", SOON, || {
        dropped.load(Ordering::SeqCst) == 1
    })
    .await;
    wait_until("the server socket is gone", SOON, || {
        let s = server.server_side();
        s.close_wait() == 0 && s.established() == 0
    })
    .await;
    let stats = server.stats.snapshot();
    assert_eq!(stats.handlers_dropped, 1);
    assert_eq!(stats.closed(CloseReason::PeerFin), 1);
    assert_eq!(stats.client_closed_first, 1);
}

/// Reads responses until the server closes; returns their bodies.
async fn responses_until_close(stream: &mut tokio::net::TcpStream) -> Vec<Vec<u8>> {
    let mut bodies = Vec::new();
    let mut leftover = Vec::new();
    within("the responses and the close", async {
        loop {
            match read_response(stream, &mut leftover).await {
                Ok(response) => bodies.push(response.body),
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return,
                Err(e) => panic!("after {} responses: {e}", bodies.len()),
            }
        }
    })
    .await;
    assert!(leftover.is_empty(), "a partial response: {leftover:?}");
    bodies
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_half_closing_client_gets_every_request_it_sent_before_its_fin_answered() {
    // The case (1 ms and 2 ms handlers), then one where the FIN surely arrives while
    // the first handler runs.
    for (first, second) in [(1, 2), (300, 300)] {
        let dropped = Arc::new(AtomicUsize::new(0));
        let server =
            TestServer::start_with(ServerConfig::new(), slow_service(dropped.clone())).await;
        let mut stream = server.connect().await;
        let pipelined = format!(
            "{}{}",
            get(&format!("/slow?ms={first}"), ""),
            get(&format!("/slow?ms={second}"), "")
        );
        stream.write_all(pipelined.as_bytes()).await.unwrap();
        stream.shutdown().await.unwrap();
        let bodies = responses_until_close(&mut stream).await;
        assert_eq!(bodies, [b"done", b"done"], "ms={first},{second}");
        wait_until("no CLOSE_WAIT on the server", SOON, || {
            let s = server.server_side();
            s.close_wait() == 0 && s.established() == 0
        })
        .await;
        wait_until("the close is counted", SOON, || {
            server.stats.snapshot().closed_total() == 1
        })
        .await;
        let stats = server.stats.snapshot();
        assert_eq!(stats.requests, 2);
        assert_eq!(stats.handlers_dropped, 0);
        assert_eq!(dropped.load(Ordering::SeqCst), 0);
        assert_eq!(stats.closed(CloseReason::PeerFin), 1, "{}", stats.to_json());
    }
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_fin_behind_part_of_a_request_ends_the_connection_after_the_complete_ones() {
    let dropped = Arc::new(AtomicUsize::new(0));
    let server = TestServer::start_with(ServerConfig::new(), slow_service(dropped.clone())).await;
    let mut stream = server.connect().await;
    let sent = format!("{}GET /?ms=0 HTTP/1.1\r\nHo", get("/?ms=300", ""));
    stream.write_all(sent.as_bytes()).await.unwrap();
    stream.shutdown().await.unwrap();
    let bodies = responses_until_close(&mut stream).await;
    assert_eq!(bodies, [b"done"]);
    wait_until("no CLOSE_WAIT on the server", SOON, || {
        let s = server.server_side();
        s.close_wait() == 0 && s.established() == 0
    })
    .await;
    assert_eq!(server.stats.snapshot().requests, 1);
    assert_eq!(dropped.load(Ordering::SeqCst), 0);
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_client_gone_behind_pipelined_requests_leaves_no_close_wait() {
    let dropped = Arc::new(AtomicUsize::new(0));
    let server = TestServer::start_with(ServerConfig::new(), slow_service(dropped.clone())).await;
    let mut stream = server.connect().await;
    // A slow request, two more pipelined behind it, then the client closes its socket: to the
    // server a FIN like a half-close, so the requests are served until the client's reset to
    // the first response says nobody reads them.
    let pipelined = format!("{}{}{}", get("/?ms=300", ""), get("/", ""), get("/", ""));
    stream.write_all(pipelined.as_bytes()).await.unwrap();
    wait_until("the handler runs", SOON, || {
        server.stats.snapshot().requests == 1
    })
    .await;
    drop(stream);
    wait_until("no CLOSE_WAIT on the server", SOON, || {
        let s = server.server_side();
        s.close_wait() == 0 && s.established() == 0
    })
    .await;
    wait_until("the close is counted", SOON, || {
        server.stats.snapshot().closed_total() == 1
    })
    .await;
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        0,
        "the first request was complete before the FIN: answered"
    );
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn idle_client_leaving_is_noticed_at_once() {
    let server = TestServer::start(ServerConfig::new()).await;
    let mut streams = Vec::new();
    for _ in 0..20 {
        let mut stream = server.connect().await;
        assert_eq!(request(&mut stream, &get("/", "")).await.status, 200);
        streams.push(stream);
    }
    wait_until("all idle", SOON, || server.stats.snapshot().idle == 20).await;
    drop(streams);
    wait_until("all closed by peer FIN", SOON, || {
        server.stats.snapshot().closed(CloseReason::PeerFin) == 20
    })
    .await;
    wait_until("no CLOSE_WAIT on the server", SOON, || {
        let s = server.server_side();
        s.close_wait() == 0 && s.established() == 0
    })
    .await;
    assert_eq!(server.stats.snapshot().idle, 0);
}

/// CPU time of this process in clock ticks (utime + stime from /proc/self/stat).
#[cfg(target_os = "linux")]
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of the whole line are the 12th and 13th after the name.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_pipelined_bytes_cost_no_cpu_and_are_not_lost() {
    let dropped = Arc::new(AtomicUsize::new(0));
    let server = TestServer::start_with(ServerConfig::new(), slow_service(dropped.clone())).await;
    let mut stream = server.connect().await;
    let pipelined = format!("{}{}", get("/?ms=1500", ""), get("/", ""));
    stream.write_all(pipelined.as_bytes()).await.unwrap();
    wait_until("the handler runs", SOON, || {
        server.stats.snapshot().requests == 1
    })
    .await;
    // While the slow handler runs, the second request sits unread: a watcher that spun on
    // readiness would burn a whole core for the whole window.
    let before = cpu_ticks();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let used = cpu_ticks() - before;
    // Ticks are 10 ms: a spinning loop would show about 100.
    assert!(used < 50, "used {used} ticks while idle-waiting");
    let mut leftover = Vec::new();
    let first = within("first response", read_response(&mut stream, &mut leftover))
        .await
        .unwrap();
    let second = within("second response", read_response(&mut stream, &mut leftover))
        .await
        .unwrap();
    assert_eq!(first.body, b"done");
    assert_eq!(second.body, b"done");
    assert_eq!(dropped.load(Ordering::SeqCst), 0);
}

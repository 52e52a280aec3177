//! The client learns the idle limit of a server that advertises none, from the server's own
//! closes, and then closes idle connections first. The server here is plain hyper 1.x with a
//! `header_read_timeout` (which hyper also runs on idle keep-alive connections) and no
//! `Keep-Alive` header: the same silence as Go's `http.Server` with an `IdleTimeout`,
//! lighttpd or aiohttp. Who holds the TIME_WAIT is read from the kernel.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Bytes;
use hyper_util::rt::{TokioIo, TokioTimer};
use keepalive::client::{Client, ClientConfig, PoolCloseReason};
use keepalive::tcp_state::{self, Filter};
use support::{unique_loopback, wait_until, within};

/// The server's idle limit: long enough that the client's margin (a quarter, 0.5 s) is wide
/// on a busy machine.
const SERVER_IDLE: Duration = Duration::from_secs(2);

/// Plain hyper on its own loopback address, closing connections idle for [`SERVER_IDLE`].
/// The first `hold` requests are answered only once all of them have arrived (so they take
/// as many connections).
async fn silent_server(hold: usize) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind((unique_loopback(), 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let barrier = Arc::new(tokio::sync::Barrier::new(hold.max(1)));
    let held = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (barrier, held) = (barrier.clone(), held.clone());
            let service =
                hyper::service::service_fn(move |_req: Request<hyper::body::Incoming>| {
                    let (barrier, held) = (barrier.clone(), held.clone());
                    async move {
                        if held.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < hold {
                            barrier.wait().await;
                        }
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    }
                });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(SERVER_IDLE)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

async fn fetch(client: &Client, url: &str) {
    let request = Request::get(url).body(Empty::<Bytes>::new()).unwrap();
    let response = within(url, client.request(request))
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let body = within(url, response.into_body().collect()).await.unwrap();
    assert_eq!(body.to_bytes(), "ok");
}

/// TIME_WAIT sockets on the server's side (local end = the server) and the client's.
fn time_wait(server: SocketAddr) -> (usize, usize) {
    let server_side = tcp_state::count(
        Filter::new()
            .local_ip(server.ip())
            .local_port(server.port()),
    )
    .unwrap();
    let client_side = tcp_state::count(
        Filter::new()
            .remote_ip(server.ip())
            .remote_port(server.port()),
    )
    .unwrap();
    (server_side.time_wait(), client_side.time_wait())
}

fn closed(client: &Client, reason: PoolCloseReason) -> u64 {
    client.stats().snapshot().closed(reason)
}

/// The first idle close is the server's (it said nothing of its limit); the client learns
/// about 2 s from it, and the next connection's idle period ends on the client's side, a
/// margin before the server's: one TIME_WAIT on each side. With learning off, the server
/// closes both (two TIME_WAIT on the server's side, none on the client's).
#[tokio::test]
async fn a_silent_servers_idle_limit_is_learned_from_its_first_close() {
    for learn in [true, false] {
        let server = silent_server(0).await;
        let url = format!("http://{server}/");
        let client = Client::new(ClientConfig::new().learn_server_idle_limits(learn));
        fetch(&client, &url).await;
        wait_until(
            "the server closes the idle connection",
            3 * SERVER_IDLE,
            || closed(&client, PoolCloseReason::ServerFin) == 1,
        )
        .await;
        let learned = client.learned_idle_limit(&url.parse().unwrap());
        if learn {
            let learned = learned.expect("a learned limit");
            assert!(
                learned >= Duration::from_secs(1) && learned <= SERVER_IDLE * 2,
                "learned {learned:?} for a server limit of {SERVER_IDLE:?}"
            );
        } else {
            assert_eq!(learned, None);
        }

        fetch(&client, &url).await;
        assert_eq!(client.stats().snapshot().opened, 2);
        wait_until("the second connection is closed", 3 * SERVER_IDLE, || {
            client.idle_connections(&url.parse().unwrap()) == 0
        })
        .await;
        let stats = client.stats().snapshot();
        let (server_tw, client_tw) = time_wait(server);
        if learn {
            assert_eq!(
                stats.closed(PoolCloseReason::LearnedTimeout),
                1,
                "{}",
                stats.to_json()
            );
            assert_eq!(stats.closed(PoolCloseReason::ServerFin), 1);
            assert_eq!((server_tw, client_tw), (1, 1), "TIME_WAIT (server, client)");
        } else {
            assert_eq!(stats.closed(PoolCloseReason::LearnedTimeout), 0);
            assert_eq!(
                stats.closed(PoolCloseReason::ServerFin),
                2,
                "{}",
                stats.to_json()
            );
            assert_eq!((server_tw, client_tw), (2, 0), "TIME_WAIT (server, client)");
        }
    }
}

/// Two connections go idle half a second apart. The server closes the first: what it teaches
/// moves the second one's deadline forward at once, and the client closes it before the
/// server would.
#[tokio::test]
async fn what_one_close_teaches_applies_to_connections_already_idle() {
    let server = silent_server(2).await;
    let url = format!("http://{server}/");
    let client = Client::new(ClientConfig::new());
    // Two at once: two connections.
    tokio::join!(fetch(&client, &url), fetch(&client, &url));
    assert_eq!(client.stats().snapshot().opened, 2);
    // (A real idle gap: the second connection's idle period starts half a second later.)
    tokio::time::sleep(Duration::from_millis(500)).await;
    fetch(&client, &url).await;
    assert_eq!(client.stats().snapshot().opened, 2);
    wait_until("both idle connections are closed", 3 * SERVER_IDLE, || {
        client.idle_connections(&url.parse().unwrap()) == 0
    })
    .await;
    let stats = client.stats().snapshot();
    assert_eq!(
        stats.closed(PoolCloseReason::ServerFin),
        1,
        "{}",
        stats.to_json()
    );
    assert_eq!(
        stats.closed(PoolCloseReason::LearnedTimeout),
        1,
        "{}",
        stats.to_json()
    );
    assert_eq!(time_wait(server), (1, 1), "TIME_WAIT (server, client)");
}

/// The race the FIN watch cannot see: the server drops a connection just as the client reuses
/// it (lighttpd, which checks its idle timers once a second, does this at a gap between its
/// checks). The retried request succeeds, and the failure teaches the client the idle time
/// the server did not keep: the next connection is closed by the client before it.
#[tokio::test]
async fn a_stale_reuse_teaches_the_idle_limit_too() {
    use support::raw::{ok, RawServer, Reply};
    let server = RawServer::start(|conn, index| match (conn, index) {
        (0, 1) => Reply::SendReset(Vec::new()),
        _ => Reply::Send(ok("ok")),
    })
    .await;
    let url = server.url("/");
    let client = Client::new(ClientConfig::new());
    fetch(&client, &url).await;
    // (A real idle gap, past the 1 s below which closes teach nothing.)
    tokio::time::sleep(Duration::from_millis(1300)).await;
    fetch(&client, &url).await;
    let stats = client.stats().snapshot();
    assert_eq!(
        (
            stats.opened,
            stats.retries,
            stats.closed(PoolCloseReason::Stale)
        ),
        (2, 1, 1),
        "{}",
        stats.to_json()
    );
    let learned = client
        .learned_idle_limit(&url.parse().unwrap())
        .expect("a limit learned from the stale reuse");
    assert!(
        learned >= Duration::from_millis(1300) && learned < Duration::from_secs(3),
        "learned {learned:?}"
    );
    wait_until(
        "the client closes the new connection first",
        3 * SERVER_IDLE,
        || closed(&client, PoolCloseReason::LearnedTimeout) == 1,
    )
    .await;
    assert_eq!(client.idle_connections(&url.parse().unwrap()), 0);
}

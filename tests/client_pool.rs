//! The client's pool against real servers: reuse, limits, honouring the server's `Connection`
//! and `Keep-Alive` headers, and the idle FIN watch (checked in the kernel's table).

mod support;

use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use keepalive::client::{Client, ClientConfig, PoolCloseReason};
use keepalive::{CloseReason, ServerConfig};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

async fn get_ok(client: &Client, uri: &http::Uri) -> Bytes {
    let request = http::Request::get(uri.clone())
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = within("the response", client.request(request))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    within("the body", response.into_body().collect())
        .await
        .unwrap()
        .to_bytes()
}

fn uri(server: &TestServer, path: &str) -> http::Uri {
    format!("http://{}{}", server.addr, path).parse().unwrap()
}

#[tokio::test]
async fn sequential_requests_reuse_one_connection() {
    let server = TestServer::start(ServerConfig::new()).await;
    let client = Client::new(ClientConfig::new());
    let uri = uri(&server, "/");
    for _ in 0..20 {
        assert_eq!(get_ok(&client, &uri).await, "hello, world!");
    }
    let stats = client.stats().snapshot();
    assert_eq!(stats.opened, 1);
    assert_eq!(stats.requests, 20);
    assert_eq!(stats.reused, 19);
    assert_eq!(client.idle_connections(&uri), 1);
    assert_eq!(server.stats.snapshot().accepted, 1);
}

#[tokio::test]
async fn concurrency_never_opens_more_connections_than_tasks() {
    let server = TestServer::start(ServerConfig::new()).await;
    let client = Client::new(ClientConfig::new());
    let uri = uri(&server, "/");
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (client, uri) = (client.clone(), uri.clone());
            tokio::spawn(async move {
                for _ in 0..20 {
                    get_ok(&client, &uri).await;
                }
            })
        })
        .collect();
    for task in tasks {
        within("a worker", task).await.unwrap();
    }
    let stats = client.stats().snapshot();
    assert_eq!(stats.requests, 640);
    assert!(stats.opened <= 32, "opened {}", stats.opened);
    assert!(server.stats.snapshot().accepted <= 32);
}

#[tokio::test]
async fn max_per_host_makes_requests_wait_in_order() {
    let server = TestServer::start(ServerConfig::new()).await;
    let client = Client::new(ClientConfig::new().max_per_host(Some(2)));
    let uri = uri(&server, "/slow?ms=50");
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (client, uri) = (client.clone(), uri.clone());
            tokio::spawn(async move { get_ok(&client, &uri).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(within("a request", task).await.unwrap(), "slow done");
    }
    assert_eq!(client.stats().snapshot().opened, 2);

    // A wait longer than the pool's wait timeout is an error, not a hang.
    let client = Client::new(
        ClientConfig::new()
            .max_per_host(Some(1))
            .pool_wait_timeout(Duration::from_millis(100)),
    );
    let slow = uri
        .clone()
        .to_string()
        .replace("ms=50", "ms=2000")
        .parse()
        .unwrap();
    let first = {
        let client = client.clone();
        tokio::spawn(async move { get_ok(&client, &slow).await })
    };
    wait_until("the first request holds the connection", SOON, || {
        client.stats().snapshot().requests == 1
    })
    .await;
    let request = http::Request::get(uri.clone())
        .body(Empty::<Bytes>::new())
        .unwrap();
    let error = within("the pool timeout", client.request(request))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), &keepalive::client::ErrorKind::PoolTimeout);
    within("the first request", first).await.unwrap();
}

#[tokio::test]
async fn server_connection_close_is_honoured() {
    let server = TestServer::start(patient()).await;
    let client = Client::new(ClientConfig::new());
    for _ in 0..3 {
        assert_eq!(get_ok(&client, &uri(&server, "/close")).await, "bye");
    }
    let stats = client.stats().snapshot();
    assert_eq!(stats.opened, 3, "a closed connection is never reused");
    assert_eq!(stats.closed(PoolCloseReason::ServerClose), 3);
    wait_until("the server counts three closes", SOON, || {
        server.stats.snapshot().closed(CloseReason::ServiceClose) == 3
    })
    .await;
    // The client closed as soon as it had read the response: TIME_WAIT is on the client.
    assert_eq!(server.stats.snapshot().client_closed_first, 3);
}

#[tokio::test]
async fn server_keep_alive_max_is_honoured() {
    let server = TestServer::start(patient().max_requests(3)).await;
    let client = Client::new(ClientConfig::new());
    let uri = uri(&server, "/");
    for _ in 0..9 {
        get_ok(&client, &uri).await;
    }
    let stats = client.stats().snapshot();
    assert_eq!(stats.opened, 3, "three connections of three requests each");
    // The client retires the connection after `max=1` before the server has to say close... or
    // on the server's `Connection: close`; either way the client closes first.
    wait_until("three connections closed", SOON, || {
        server.stats.snapshot().closed_total() == 3
    })
    .await;
    assert_eq!(server.stats.snapshot().client_closed_first, 3);
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn idle_connection_is_closed_before_the_servers_advertised_timeout() {
    let server = TestServer::start(ServerConfig::new().idle_timeout(Duration::from_secs(2))).await;
    let client = Client::new(ClientConfig::new());
    let uri = uri(&server, "/");
    get_ok(&client, &uri).await;
    assert_eq!(client.idle_connections(&uri), 1);
    // timeout=2 advertised: the client closes at 2 s - 0.5 s, before the server would.
    wait_until("the client closes its idle connection", SOON, || {
        client.idle_connections(&uri) == 0
    })
    .await;
    assert_eq!(
        client
            .stats()
            .snapshot()
            .closed(PoolCloseReason::ServerTimeout),
        1
    );
    wait_until("the server sees the client's FIN", SOON, || {
        server.stats.snapshot().closed(CloseReason::PeerFin) == 1
    })
    .await;
    assert_eq!(server.stats.snapshot().closed(CloseReason::IdleTimeout), 0);
    wait_until("TIME_WAIT on the client", SOON, || {
        server.client_side().time_wait() == 1
    })
    .await;
    assert_eq!(server.server_side().time_wait(), 0);
}

#[tokio::test]
async fn pool_idle_timeout_and_max_requests_and_lifetime() {
    let server = TestServer::start(ServerConfig::new()).await;
    let uri = uri(&server, "/");

    let client = Client::new(ClientConfig::new().idle_timeout(Duration::from_millis(200)));
    get_ok(&client, &uri).await;
    wait_until("closed after the pool's idle timeout", SOON, || {
        client
            .stats()
            .snapshot()
            .closed(PoolCloseReason::IdleTimeout)
            == 1
    })
    .await;
    assert_eq!(client.idle_connections(&uri), 0);

    let client = Client::new(ClientConfig::new().max_requests(Some(2)));
    for _ in 0..6 {
        get_ok(&client, &uri).await;
    }
    assert_eq!(client.stats().snapshot().opened, 3);
    assert_eq!(
        client
            .stats()
            .snapshot()
            .closed(PoolCloseReason::MaxRequests),
        3
    );

    let client = Client::new(ClientConfig::new().max_lifetime(Some(Duration::from_millis(300))));
    get_ok(&client, &uri).await;
    wait_until("closed at its lifetime", SOON, || {
        client
            .stats()
            .snapshot()
            .closed(PoolCloseReason::MaxLifetime)
            == 1
    })
    .await;
    get_ok(&client, &uri).await;
    assert_eq!(client.stats().snapshot().opened, 2);
}

#[tokio::test]
async fn max_idle_per_host_closes_the_surplus() {
    let server = TestServer::start(ServerConfig::new()).await;
    let client = Client::new(ClientConfig::new().max_idle_per_host(2));
    let uri = uri(&server, "/slow?ms=100");
    let tasks: Vec<_> = (0..5)
        .map(|_| {
            let (client, uri) = (client.clone(), uri.clone());
            tokio::spawn(async move { get_ok(&client, &uri).await })
        })
        .collect();
    for task in tasks {
        within("a request", task).await.unwrap();
    }
    assert_eq!(client.idle_connections(&uri), 2);
    assert_eq!(
        client
            .stats()
            .snapshot()
            .closed(PoolCloseReason::TooManyIdle),
        client.stats().snapshot().opened - 2
    );
}

/// A raw server: answers every request with a keep-alive 200, and after `close_after`
/// requests on a connection does `then` to it.
async fn raw_server(
    close_after: usize,
    then: &'static str,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind((unique_loopback(), 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut served = 0;
                loop {
                    let mut chunk = [0u8; 1024];
                    let n = match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        stream
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                            .await
                            .unwrap();
                        served += 1;
                        if served == close_after {
                            match then {
                                "close" => return,
                                "byte" => {
                                    let _ = stream.write_all(b"!").await;
                                    // Keep it open: the client must close it.
                                    let _ = stream.read(&mut chunk).await;
                                    return;
                                }
                                _ => {}
                            }
                        }
                    }
                }
            });
        }
    });
    (addr, task)
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn server_fin_on_an_idle_connection_evicts_it_at_once() {
    let (addr, _server) = raw_server(1, "close").await;
    let client = Client::new(ClientConfig::new());
    let uri: http::Uri = format!("http://{addr}/").parse().unwrap();
    assert_eq!(get_ok(&client, &uri).await, "ok");
    wait_until("evicted on the server's FIN", SOON, || {
        client.stats().snapshot().closed(PoolCloseReason::ServerFin) == 1
    })
    .await;
    assert_eq!(client.idle_connections(&uri), 0);
    let filter = keepalive::tcp_state::Filter::new()
        .remote_ip(addr.ip())
        .remote_port(addr.port());
    wait_until("no CLOSE_WAIT on the client", SOON, || {
        keepalive::tcp_state::count(filter).unwrap().close_wait() == 0
    })
    .await;
    // The next request simply opens a new connection.
    assert_eq!(get_ok(&client, &uri).await, "ok");
    assert_eq!(client.stats().snapshot().opened, 2);
    assert_eq!(client.stats().snapshot().retries, 0);
}

#[tokio::test]
async fn unexpected_byte_on_an_idle_connection_evicts_it() {
    let (addr, _server) = raw_server(1, "byte").await;
    let client = Client::new(ClientConfig::new());
    let uri: http::Uri = format!("http://{addr}/").parse().unwrap();
    assert_eq!(get_ok(&client, &uri).await, "ok");
    wait_until("evicted", SOON, || {
        let s = client.stats().snapshot();
        s.closed(PoolCloseReason::UnexpectedData) == 1
    })
    .await;
    assert_eq!(client.idle_connections(&uri), 0);
    assert_eq!(get_ok(&client, &uri).await, "ok");
    assert_eq!(client.stats().snapshot().opened, 2);
}

#[tokio::test]
async fn http10_requests_ask_for_keep_alive_and_are_reused() {
    let server = TestServer::start(ServerConfig::new()).await;
    let client = Client::new(ClientConfig::new());
    let uri = uri(&server, "/");
    for _ in 0..3 {
        let request = http::Request::get(uri.clone())
            .version(http::Version::HTTP_10)
            .body(Empty::<Bytes>::new())
            .unwrap();
        let response = client.request(request).await.unwrap();
        assert_eq!(response.headers()["connection"], "keep-alive");
        response.into_body().collect().await.unwrap();
    }
    assert_eq!(client.stats().snapshot().opened, 1);
}

#[tokio::test]
async fn parked_connections_are_reused_and_still_watched() {
    let server = TestServer::start(ServerConfig::new()).await;
    let client = Client::new(ClientConfig::new().park_after(Some(Duration::from_millis(50))));
    let uri = uri(&server, "/");
    get_ok(&client, &uri).await;
    // A real idle gap past park_after: the connection is parked as the bare socket.
    tokio::time::sleep(Duration::from_millis(300)).await;
    get_ok(&client, &uri).await;
    let stats = client.stats().snapshot();
    assert_eq!(
        stats.opened,
        1,
        "the parked connection was reused: {}",
        stats.to_json()
    );
    assert_eq!(stats.reused, 1);

    // A server FIN on a parked connection still evicts it at once.
    let (addr, _raw) = raw_server(1, "close").await;
    let raw_uri: http::Uri = format!("http://{addr}/").parse().unwrap();
    let client = Client::new(ClientConfig::new().park_after(Some(Duration::from_millis(1))));
    get_ok(&client, &raw_uri).await;
    wait_until("evicted on the server's FIN", SOON, || {
        client.stats().snapshot().closed(PoolCloseReason::ServerFin) == 1
    })
    .await;
    assert_eq!(client.idle_connections(&raw_uri), 0);
}

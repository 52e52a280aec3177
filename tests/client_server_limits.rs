//! The client and the server's own word on keep-alive, against scripted raw servers on
//! loopback: `Keep-Alive: timeout=` is an idle limit (every response restarts it), and
//! HTTP/1.1 requests carry the `keep-alive` token that Apache httpd waits for before it
//! advertises its limits.

mod support;

use std::time::Duration;

use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use keepalive::client::{Client, ClientConfig, PoolCloseReason};
use support::raw::{ok, ok_with, RawServer, Reply};
use support::{wait_until, within};

async fn fetch(client: &Client, url: &str, connection: Option<&str>) -> Bytes {
    let mut request = Request::get(url);
    if let Some(value) = connection {
        request = request.header(http::header::CONNECTION, value);
    }
    let request = request.body(Empty::<Bytes>::new()).unwrap();
    let response = within(url, client.request(request))
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    within(url, response.into_body().collect())
        .await
        .unwrap()
        .to_bytes()
}

/// A server that advertises `timeout=2` (the client keeps it idle 1.5 s at most) is sent a
/// request every 400 ms for about 2.8 s: one connection serves them all, since the limit is
/// counted from each response. (While `timeout=` was taken as a lifetime, the connection was
/// closed 1.5 s after its first response, busy or not.) Once the requests stop, the client
/// closes the idle connection itself before the server's 2 s.
#[tokio::test]
async fn keep_alive_timeout_is_an_idle_limit_not_a_lifetime() {
    let server =
        RawServer::start(|_, _| Reply::Send(ok_with("Keep-Alive: timeout=2\r\n", "ok"))).await;
    let client = Client::new(ClientConfig::new());
    let url = server.url("/");
    for i in 0..8 {
        if i > 0 {
            // (A real idle gap between requests, shorter than the limit.)
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        assert_eq!(fetch(&client, &url, None).await, "ok");
    }
    let stats = client.stats().snapshot();
    assert_eq!((stats.opened, stats.reused), (1, 7), "{}", stats.to_json());
    assert_eq!(stats.closed(PoolCloseReason::ServerTimeout), 0);
    wait_until(
        "the client closes the idle connection",
        Duration::from_secs(5),
        || {
            client
                .stats()
                .snapshot()
                .closed(PoolCloseReason::ServerTimeout)
                == 1
        },
    )
    .await;
    assert_eq!(client.idle_connections(&url.parse().unwrap()), 0);
}

/// HTTP/1.1 requests carry `Connection: keep-alive` by default, none with
/// `announce_keep_alive(false)`, and a caller's own `Connection` header is left as it is.
#[tokio::test]
async fn http11_requests_announce_keep_alive() {
    let server = RawServer::start(|_, _| Reply::Send(ok("ok"))).await;
    let url = server.url("/");
    let announcing = Client::new(ClientConfig::new());
    fetch(&announcing, &url, None).await;
    fetch(&announcing, &url, Some("te")).await;
    let quiet = Client::new(ClientConfig::new().announce_keep_alive(false));
    fetch(&quiet, &url, None).await;
    let connection_lines: Vec<Vec<String>> = server
        .seen()
        .iter()
        .map(|seen| {
            seen.head
                .lines()
                .map(str::to_ascii_lowercase)
                .filter(|line| line.starts_with("connection:"))
                .collect()
        })
        .collect();
    assert_eq!(
        connection_lines,
        [
            vec!["connection: keep-alive".to_owned()],
            vec!["connection: te".to_owned()],
            vec![],
        ]
    );
}

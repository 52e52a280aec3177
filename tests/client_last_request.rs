//! The last request a server allows on a connection (the one after `Keep-Alive: max=1`, which
//! the server answers with `Connection: close`): who closes, and what it costs, on the wire.
//! A scripted server that behaves like Apache httpd (it counts `max=` down and closes at once
//! after its close answer) and the crate's own server (which waits for the client's FIN), with
//! the kernel's socket states read to see which side holds TIME_WAIT.
// (Most tests read the kernel's socket states: Linux only.)
#![cfg_attr(not(target_os = "linux"), allow(unused_imports, dead_code))]

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use keepalive::client::{Client, ClientConfig, LastAllowedRequest, PoolCloseReason};
use keepalive::tcp_state::{self, Filter, StateCounts};
use support::raw::{ok_with, RawServer, Reply};
use support::{fetch_ok, patient, wait_until, within, TestServer, SOON};
use tokio::sync::Notify;

/// Apache's countdown for `MaxKeepAliveRequests 2`: `max=2`, `max=1`, then `Connection: close`.
fn apache_like(index: usize) -> Option<Reply> {
    match index {
        0 => Some(Reply::Send(ok_with(
            "Keep-Alive: timeout=5, max=2\r\n",
            "ok",
        ))),
        1 => Some(Reply::Send(ok_with(
            "Keep-Alive: timeout=5, max=1\r\n",
            "ok",
        ))),
        _ => None,
    }
}

const CLOSE_HEAD: &str = "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n";

/// Sends the request a `Reply::SendThenClose(CLOSE_HEAD, "ok", go)` answers: its head comes
/// first, its body with the server's FIN once `go` is notified, so the FIN is in before the
/// client is done with the connection (the server closed first).
async fn close_answer_after_its_fin(client: &Client, url: &str, server: &RawServer, go: &Notify) {
    let request = Request::get(url).body(Empty::<Bytes>::new()).unwrap();
    let response = within("the close answer", client.request(request))
        .await
        .unwrap();
    go.notify_one();
    wait_until("the server's FIN at the client", SOON, || {
        server.client_close_wait() == 1
    })
    .await;
    let body = within("its body", response.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(body, "ok");
}

/// Requests the raw server saw on each connection, in connection order.
fn per_connection(server: &RawServer) -> Vec<usize> {
    let mut counts = BTreeMap::new();
    for seen in server.seen() {
        *counts.entry(seen.conn).or_insert(0) += 1;
    }
    counts.into_values().collect()
}

/// The server's ends of its connections (local address = the server's).
#[cfg(target_os = "linux")]
fn server_side(addr: std::net::SocketAddr) -> StateCounts {
    tcp_state::count(Filter::new().local_ip(addr.ip()).local_port(addr.port())).unwrap()
}

/// The client's ends of its connections to `addr`.
#[cfg(target_os = "linux")]
fn client_side(addr: std::net::SocketAddr) -> StateCounts {
    tcp_state::count(Filter::new().remote_ip(addr.ip()).remote_port(addr.port())).unwrap()
}

/// By default the client sends the last allowed request until it sees the host close first
/// after its `Connection: close` answer (the server's FIN there before the client's close);
/// from then on it closes after `max=1` itself. The first connection is made to show the
/// server closing first (its FIN is in before the client reads the close answer's body); the
/// next two carry two requests each, and the client closes them first: TIME_WAIT on the server
/// for the first connection only. (Before: every connection was sent its third request, and
/// the server closed first each time.)
#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_default_closes_before_a_host_seen_closing_first() {
    let go = Arc::new(Notify::new());
    let release = go.clone();
    let server = RawServer::start(move |conn, index| {
        apache_like(index).unwrap_or_else(|| {
            if conn == 0 {
                Reply::SendThenClose(CLOSE_HEAD.into(), b"ok".to_vec(), release.clone())
            } else {
                Reply::SendClose(format!("{CLOSE_HEAD}ok").into_bytes())
            }
        })
    })
    .await;
    let client = Client::new(ClientConfig::new());
    let url = server.url("/");
    for _ in 0..2 {
        assert_eq!(fetch_ok(&client, &url).await, "ok");
    }
    close_answer_after_its_fin(&client, &url, &server, &go).await;
    for _ in 0..4 {
        assert_eq!(fetch_ok(&client, &url).await, "ok");
    }
    assert_eq!(per_connection(&server), [3, 2, 2]);
    let stats = client.stats().snapshot();
    assert_eq!(stats.opened, 3, "{}", stats.to_json());
    assert_eq!(stats.closed(PoolCloseReason::ServerClose), 1);
    assert_eq!(stats.closed(PoolCloseReason::MaxRequests), 2);
    wait_until("every connection closed on both sides", SOON, || {
        client_side(server.addr).time_wait() == 2 && server_side(server.addr).time_wait() == 1
    })
    .await;
    let (client_end, server_end) = (client_side(server.addr), server_side(server.addr));
    assert_eq!(client_end.time_wait(), 2, "client side: {client_end}");
    assert_eq!(server_end.time_wait(), 1, "server side: {server_end}");
}

/// Against the crate's own server, which waits for the client's FIN after its close answer,
/// the default never learns anything: every connection carries every request the server
/// allows (3 here), and TIME_WAIT is on the client for all of them.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_default_sends_the_last_request_to_a_server_that_lets_the_client_close_first() {
    let server = TestServer::start(patient().max_requests(3)).await;
    let client = Client::new(ClientConfig::new());
    let url = format!("http://{}/", server.addr);
    for _ in 0..9 {
        assert_eq!(fetch_ok(&client, &url).await, "hello, world!");
    }
    let stats = client.stats().snapshot();
    assert_eq!(stats.opened, 3, "{}", stats.to_json());
    assert_eq!(stats.closed(PoolCloseReason::ServerClose), 3);
    wait_until("three closes for max requests", SOON, || {
        server
            .stats
            .snapshot()
            .closed(keepalive::CloseReason::MaxRequests)
            == 3
    })
    .await;
    wait_until("TIME_WAIT on the client", SOON, || {
        server.client_side().time_wait() == 3
    })
    .await;
    assert_eq!(server.server_side().time_wait(), 0);
    assert_eq!(server.stats.snapshot().client_closed_first, 3);
}

/// An Apache-like server that closes at once after its close answer.
async fn closing_at_once() -> RawServer {
    RawServer::start(|_, index| {
        apache_like(index)
            .unwrap_or_else(|| Reply::SendClose(format!("{CLOSE_HEAD}ok").into_bytes()))
    })
    .await
}

/// `CloseInstead` never sends the request after `max=1`: two requests per connection here, the
/// client closes each connection first (its FIN while the server waits for a request), and
/// TIME_WAIT is on the client for all three.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn close_instead_leaves_time_wait_on_the_client() {
    let server = closing_at_once().await;
    let config = ClientConfig::new().last_allowed_request(LastAllowedRequest::CloseInstead);
    let client = Client::new(config);
    let url = server.url("/");
    for _ in 0..6 {
        assert_eq!(fetch_ok(&client, &url).await, "ok");
    }
    assert_eq!(per_connection(&server), [2, 2, 2]);
    let stats = client.stats().snapshot();
    assert_eq!(stats.opened, 3, "{}", stats.to_json());
    assert_eq!(stats.closed(PoolCloseReason::MaxRequests), 3);
    assert_eq!(stats.closed(PoolCloseReason::ServerClose), 0);
    wait_until("TIME_WAIT on the client for all three", SOON, || {
        client_side(server.addr).time_wait() == 3
    })
    .await;
    let server_end = server_side(server.addr);
    assert_eq!(server_end.time_wait(), 0, "server side: {server_end}");
}

/// `Send` sends every request the server allows, however the server closes: three per
/// connection here.
#[tokio::test]
async fn send_carries_every_allowed_request() {
    let server = closing_at_once().await;
    let client = Client::new(ClientConfig::new().last_allowed_request(LastAllowedRequest::Send));
    let url = server.url("/");
    for _ in 0..6 {
        assert_eq!(fetch_ok(&client, &url).await, "ok");
    }
    assert_eq!(per_connection(&server), [3, 3]);
    let stats = client.stats().snapshot();
    assert_eq!(stats.opened, 2, "{}", stats.to_json());
    assert_eq!(stats.closed(PoolCloseReason::ServerClose), 2);
    assert_eq!(stats.closed(PoolCloseReason::MaxRequests), 0);
}

/// What `CloseInstead` costs against the crate's own server (`max_requests(3)`): two requests
/// per connection instead of three, for TIME_WAIT that was on the client anyway.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn close_instead_costs_a_connection_in_three_against_the_crates_server() {
    let server = TestServer::start(patient().max_requests(3)).await;
    let config = ClientConfig::new().last_allowed_request(LastAllowedRequest::CloseInstead);
    let client = Client::new(config);
    let url = format!("http://{}/", server.addr);
    for _ in 0..9 {
        assert_eq!(fetch_ok(&client, &url).await, "hello, world!");
    }
    let stats = client.stats().snapshot();
    // 2 + 2 + 2 + 2 + 1: the fifth is still open.
    assert_eq!(stats.opened, 5, "{}", stats.to_json());
    assert_eq!(stats.closed(PoolCloseReason::MaxRequests), 4);
    assert_eq!(stats.closed(PoolCloseReason::ServerClose), 0);
    wait_until("TIME_WAIT on the client for the four closed", SOON, || {
        server.client_side().time_wait() == 4
    })
    .await;
    assert_eq!(server.server_side().time_wait(), 0);
}

/// A server that closes first after a request limit it never advertises (nginx's
/// `keepalive_requests`, lighttpd's `max-keep-alive-requests`): its third request on every
/// connection gets `Connection: close`, then its FIN. Seen twice at the same request number,
/// the limit is learned: the next connection carries two requests and the client closes it
/// first. (Before, every connection was sent its third request and the server closed first.)
#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_default_learns_a_request_limit_the_server_does_not_advertise() {
    let go = Arc::new(Notify::new());
    let release = go.clone();
    let server = RawServer::start(move |_, index| match index {
        0 | 1 => Reply::Send(support::raw::ok("ok")),
        _ => Reply::SendThenClose(CLOSE_HEAD.into(), b"ok".to_vec(), release.clone()),
    })
    .await;
    let client = Client::new(ClientConfig::new());
    let url = server.url("/");
    for closed in 1..=2 {
        for _ in 0..2 {
            assert_eq!(fetch_ok(&client, &url).await, "ok");
        }
        close_answer_after_its_fin(&client, &url, &server, &go).await;
        wait_until("the connection closed", SOON, || {
            client
                .stats()
                .snapshot()
                .closed(PoolCloseReason::ServerClose)
                == closed
        })
        .await;
    }
    for _ in 0..2 {
        assert_eq!(fetch_ok(&client, &url).await, "ok");
    }
    assert_eq!(per_connection(&server), [3, 3, 2]);
    let stats = client.stats().snapshot();
    assert_eq!(
        stats.closed(PoolCloseReason::MaxRequests),
        1,
        "{}",
        stats.to_json()
    );
    wait_until("the third connection closed by the client", SOON, || {
        client_side(server.addr).time_wait() == 1
    })
    .await;
    let server_end = server_side(server.addr);
    assert_eq!(server_end.time_wait(), 2, "server side: {server_end}");
}

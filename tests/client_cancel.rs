//! A request cancelled at any await point (while connecting, while waiting for a place at the
//! per-host limit, after a connection was handed to it but before it looked, while waiting
//! for the response head, while reading the body) gives its place back: later requests to the
//! host go through, and the counters account for every connection.

mod support;

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use keepalive::client::{Client, ClientConfig, Connect, PoolCloseReason};
use keepalive::ServerConfig;
use support::{within, TestServer};
use tokio::net::TcpStream;
use tokio::sync::watch;

fn get(url: &str) -> Request<Empty<Bytes>> {
    Request::get(url).body(Empty::new()).unwrap()
}

async fn fetch<C: Connect>(client: &Client<C>, url: &str) -> Bytes {
    let response = within(url, client.request(get(url)))
        .await
        .unwrap_or_else(|e| panic!("{url}: {}", support::chain(&e)));
    within(url, response.into_body().collect())
        .await
        .unwrap()
        .to_bytes()
}

/// A limit of two connections per host, and a pool wait short enough that a lost place shows
/// as a failure at once.
fn limited() -> ClientConfig {
    ClientConfig::new()
        .max_per_host(Some(2))
        .pool_wait_timeout(Duration::from_secs(2))
}

/// Polls `future` once, without a real waker: far enough to reach its first wait.
fn poll_once<F: Future>(future: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    future.poll(&mut Context::from_waker(Waker::noop()))
}

/// Two requests dropped while their connector is still connecting (it waits for a gate that
/// opens only later) leave both places of the host free: later requests get through.
#[tokio::test]
async fn requests_cancelled_while_connecting_give_their_places_back() {
    let server = TestServer::start(ServerConfig::new()).await;
    let addr = server.addr;
    let (open, gate) = watch::channel(false);
    let connects = Arc::new(AtomicUsize::new(0));
    let count = connects.clone();
    let connector = tower::service_fn(move |_uri: http::Uri| {
        let mut gate = gate.clone();
        count.fetch_add(1, Ordering::SeqCst);
        async move {
            let _ = gate.wait_for(|open| *open).await;
            TcpStream::connect(addr).await
        }
    });
    let client = Client::with_connector(limited(), connector);
    let url = format!("http://{addr}/");
    for _ in 0..2 {
        let cancelled =
            tokio::time::timeout(Duration::from_millis(100), client.request(get(&url))).await;
        assert!(
            cancelled.is_err(),
            "the connect cannot finish before the gate opens"
        );
    }
    assert_eq!(connects.load(Ordering::SeqCst), 2);
    open.send(true).unwrap();
    for _ in 0..3 {
        assert_eq!(fetch(&client, &url).await, "hello, world!");
    }
    let stats = client.stats().snapshot();
    assert_eq!(
        (stats.opened, stats.open, stats.idle),
        (1, 1, 1),
        "{}",
        stats.to_json()
    );
}

/// A request waiting at the limit is dropped: before anything was handed to it, and after a
/// connection was handed to it but before it looked. Neither keeps a place, and the connection
/// handed over goes to the next request.
#[tokio::test]
async fn a_waiter_dropped_before_or_after_its_hand_off_loses_nothing() {
    let server = TestServer::start(ServerConfig::new()).await;
    let client = Client::new(limited().max_per_host(Some(1)));
    let slow = format!("http://{}/slow?ms=300", server.addr);
    let url = format!("http://{}/", server.addr);

    // The one place is busy; a waiter registers, then is dropped before any hand-off.
    let busy = tokio::spawn({
        let client = client.clone();
        let slow = slow.clone();
        async move { fetch(&client, &slow).await }
    });
    support::wait_until("the slow request connected", support::SOON, || {
        client.stats().snapshot().opened == 1
    })
    .await;
    {
        let mut waiter = pin!(client.request(get(&url)));
        assert!(
            poll_once(waiter.as_mut()).is_pending(),
            "it must wait at the limit"
        );
    }
    // Another waiter gets the connection handed to it when the slow request ends, and is
    // dropped without looking.
    {
        let mut waiter = pin!(client.request(get(&url)));
        assert!(poll_once(waiter.as_mut()).is_pending());
        assert_eq!(within("the slow request", busy).await.unwrap(), "slow done");
        // (The hand-off happened when the slow response's body ended: the idle list is empty
        // since the connection went to the waiter.)
        assert_eq!(client.stats().snapshot().idle, 0);
    }
    // The connection the dropped waiter held went back: it serves the next request.
    assert_eq!(fetch(&client, &url).await, "hello, world!");
    let stats = client.stats().snapshot();
    assert_eq!((stats.opened, stats.reused), (1, 1), "{}", stats.to_json());
    assert_eq!((stats.open, stats.idle), (1, 1), "{}", stats.to_json());
}

/// A request dropped while waiting for its response head, and one whose body is dropped half
/// read, each close their connection as cancelled and free its place.
#[tokio::test]
async fn requests_cancelled_mid_exchange_close_as_cancelled_and_free_their_place() {
    let server = TestServer::start(ServerConfig::new()).await;
    let client = Client::new(limited().max_per_host(Some(1)));
    let slow = format!("http://{}/slow?ms=2000", server.addr);
    let stream = format!("http://{}/stream", server.addr);
    let url = format!("http://{}/", server.addr);

    let cancelled =
        tokio::time::timeout(Duration::from_millis(100), client.request(get(&slow))).await;
    assert!(
        cancelled.is_err(),
        "the slow response cannot come in 100 ms"
    );
    assert_eq!(fetch(&client, &url).await, "hello, world!");

    let response = within("stream", client.request(get(&stream)))
        .await
        .unwrap();
    let mut body = response.into_body();
    let first = within("first frame", body.frame()).await.unwrap().unwrap();
    assert!(first.is_data());
    drop(body);
    assert_eq!(fetch(&client, &url).await, "hello, world!");

    let stats = client.stats().snapshot();
    assert_eq!(
        stats.closed(PoolCloseReason::Canceled),
        2,
        "{}",
        stats.to_json()
    );
    assert_eq!((stats.opened, stats.open), (3, 1), "{}", stats.to_json());
}

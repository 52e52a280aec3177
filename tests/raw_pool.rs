//! The pool on its own, for non-HTTP connections: LIFO reuse and the idle FIN watch on bare
//! tokio streams, keyed by the user.

mod support;

use keepalive::client::{Checkout, Pool, PoolCloseReason, PoolConfig, Reuse};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A listener on a loopback address of its own that accepts and holds every connection.
async fn holder() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind((unique_loopback(), 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    (addr, task)
}

#[tokio::test]
async fn reuses_last_in_first_out() {
    let (addr, _accepted) = holder().await;
    let pool: Pool<&'static str, TcpStream> = Pool::new(PoolConfig::new());
    let first = TcpStream::connect(addr).await.unwrap();
    let second = TcpStream::connect(addr).await.unwrap();
    let (first_port, second_port) = (first.local_addr().unwrap(), second.local_addr().unwrap());
    pool.put("db", first, Reuse::default());
    pool.put("db", second, Reuse::default());
    assert_eq!(pool.idle_count(&"db"), 2);
    let Checkout::Reused(hot) = pool.checkout_or_slot(&"db").await.unwrap() else {
        panic!("an idle connection was there");
    };
    assert_eq!(hot.uses(), 1);
    let hot = hot.into_inner();
    assert_eq!(
        hot.local_addr().unwrap(),
        second_port,
        "the last returned comes first"
    );
    let next = pool.checkout(&"db").await.unwrap().unwrap().into_inner();
    assert_eq!(next.local_addr().unwrap(), first_port);
    assert!(pool.checkout(&"db").await.unwrap().is_none());
    assert!(pool.checkout(&"other").await.unwrap().is_none());
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn peer_closing_an_idle_stream_evicts_it_with_no_close_wait() {
    let listener = TcpListener::bind((unique_loopback(), 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let pool: Pool<u32, TcpStream> = Pool::new(PoolConfig::new());
    let mut client = TcpStream::connect(addr).await.unwrap();
    let (mut server, _) = listener.accept().await.unwrap();
    // One exchange, then the stream goes idle in the pool.
    client.write_all(b"PING\r\n").await.unwrap();
    let mut buf = [0u8; 6];
    server.read_exact(&mut buf).await.unwrap();
    server.write_all(b"PONG\r\n").await.unwrap();
    client.read_exact(&mut buf).await.unwrap();
    let client_addr = client.local_addr().unwrap();
    pool.put(7, client, Reuse::default());
    assert_eq!(pool.idle_count(&7), 1);

    drop(server);
    wait_until("evicted on the peer's FIN", SOON, || {
        pool.idle_count(&7) == 0
    })
    .await;
    assert_eq!(
        pool.stats().snapshot().closed(PoolCloseReason::ServerFin),
        1
    );
    wait_until("the client's socket left CLOSE_WAIT", SOON, || {
        !keepalive::tcp_state::sockets()
            .unwrap()
            .iter()
            .any(|s| s.local == client_addr && s.state == keepalive::tcp_state::TcpState::CloseWait)
    })
    .await;
}

async fn connected_pair(addr_ip: std::net::IpAddr) -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind((addr_ip, 0)).await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = listener.accept().await.unwrap();
    (client, server)
}

#[tokio::test]
async fn idle_timeout_holds_after_a_use_that_outlived_the_previous_deadline() {
    let pool: Pool<u8, TcpStream> =
        Pool::new(PoolConfig::new().idle_timeout(std::time::Duration::from_millis(200)));
    let (client, _server) = connected_pair(unique_loopback()).await;
    pool.put(1, client, Reuse::default());
    // Let the connection's watcher run once and set its timer for this idle period (the test
    // runtime is single-threaded: yielding runs the other ready tasks).
    for _ in 0..3 {
        tokio::task::yield_now().await;
    }
    let (io, history) = pool.checkout(&1).await.unwrap().unwrap().into_parts();
    // In use longer than the first idle period's deadline: the watcher's timer goes off then.
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    pool.put_back(1, io, history, Reuse::default());
    assert_eq!(pool.idle_count(&1), 1);
    wait_until("closed at the new idle deadline", SOON, || {
        pool.idle_count(&1) == 0
    })
    .await;
    assert_eq!(
        pool.stats().snapshot().closed(PoolCloseReason::IdleTimeout),
        1
    );
}

#[tokio::test]
async fn fin_is_seen_after_several_uses() {
    let pool: Pool<u8, TcpStream> = Pool::new(PoolConfig::new());
    let (client, server) = connected_pair(unique_loopback()).await;
    pool.put(1, client, Reuse::default());
    for _ in 0..5 {
        let (io, history) = pool.checkout(&1).await.unwrap().unwrap().into_parts();
        pool.put_back(1, io, history, Reuse::default());
    }
    drop(server);
    wait_until("evicted on the FIN", SOON, || pool.idle_count(&1) == 0).await;
    assert_eq!(
        pool.stats().snapshot().closed(PoolCloseReason::ServerFin),
        1
    );
}

/// With one place per key, a dropped `Slot` (a connect that never finished) and a dropped
/// `Pooled` (a connection taken and never returned) each give the place back, the second
/// counted closed as dropped; `discard` does the same for a connection that closed, counted
/// for its reason. (A dropped `Slot` kept its place for good before.)
#[tokio::test]
async fn dropped_slots_and_connections_give_their_place_back() {
    let (addr, _accepted) = holder().await;
    let config = PoolConfig::new()
        .max_per_key(Some(1))
        .wait_timeout(std::time::Duration::from_millis(500));
    let pool: Pool<u8, TcpStream> = Pool::new(config);
    for _ in 0..3 {
        let checkout = within("a slot", pool.checkout_or_slot(&1)).await;
        let Ok(Checkout::Open(slot)) = checkout else {
            panic!("the key's one place must be free");
        };
        drop(slot);
    }
    let Ok(Checkout::Open(slot)) = within("a slot", pool.checkout_or_slot(&1)).await else {
        panic!("the key's one place must be free");
    };
    let stream = TcpStream::connect(addr).await.unwrap();
    pool.put_back(1, stream, slot.into_history(), Reuse::default());
    let Ok(Checkout::Reused(pooled)) = within("the idle one", pool.checkout_or_slot(&1)).await
    else {
        panic!("the connection was idle");
    };
    drop(pooled);
    assert_eq!(pool.stats().snapshot().closed(PoolCloseReason::Dropped), 1);
    let Ok(Checkout::Open(slot)) = within("a slot", pool.checkout_or_slot(&1)).await else {
        panic!("the dropped connection's place must be free");
    };
    let history = slot.into_history::<TcpStream>();
    pool.discard(history, PoolCloseReason::Error);
    assert_eq!(pool.stats().snapshot().closed(PoolCloseReason::Error), 1);
    let Ok(Checkout::Open(_)) = within("a slot", pool.checkout_or_slot(&1)).await else {
        panic!("the discarded connection's place must be free");
    };
}

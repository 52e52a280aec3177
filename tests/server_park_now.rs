//! With `park_after`, a cleartext connection waits parked for its first request and parks in
//! the same poll right after its first response, without waiting for `park_after` (set to an
//! hour here, so only the immediate park can be seen).

mod support;

use std::time::Duration;

use keepalive::ServerConfig;
use support::*;
use tokio::io::AsyncWriteExt;

fn hour_long_parking() -> ServerConfig {
    patient()
        .idle_timeout(Duration::from_secs(3600))
        .park_after(Some(Duration::from_secs(3600)))
}

#[tokio::test]
async fn connection_parks_before_and_right_after_its_first_request() {
    let server = TestServer::start(hour_long_parking()).await;
    let mut stream = server.connect().await;
    wait_until("the silent new connection is parked", SOON, || {
        server.stats.snapshot().parked == 1
    })
    .await;
    let first = request(&mut stream, &get("/", "")).await;
    assert_eq!(first.status, 200);
    assert!(!first.says_close());
    wait_until("parked again right after the first response", SOON, || {
        let stats = server.stats.snapshot();
        stats.parked == 1 && stats.unparked == 1
    })
    .await;
    let second = request(&mut stream, &get("/", "")).await;
    assert_eq!(second.status, 200);
    let stats = server.stats.snapshot();
    assert_eq!(stats.accepted, 1, "one connection throughout");
    assert_eq!(stats.requests, 2);
    assert_eq!(stats.unparked, 2);
    stream.shutdown().await.unwrap();
}

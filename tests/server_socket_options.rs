//! Socket options on accepted sockets, checked in the kernel's table: the `SO_KEEPALIVE`
//! timer is armed with the configured idle time (or not at all when keepalive is off).

mod support;

use std::time::Duration;

use keepalive::tcp_state;
use keepalive::{ServerConfig, SocketOptions};
use support::*;

async fn server_keepalive_timer(options: SocketOptions) -> Option<Duration> {
    let server = TestServer::start(ServerConfig::new().socket_options(options)).await;
    let mut stream = server.connect().await;
    assert_eq!(request(&mut stream, &get("/", "")).await.status, 200);
    let client = stream.local_addr().unwrap();
    let entries = tcp_state::sockets().unwrap();
    let entry = entries
        .iter()
        .find(|e| e.local == server.addr && e.remote == client)
        .expect("the server's socket is in the kernel's table");
    entry.keepalive_timer
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn accepted_sockets_get_the_configured_keepalive() {
    let timer = server_keepalive_timer(
        SocketOptions::new()
            .keepalive_time(Duration::from_secs(42))
            .keepalive_interval(Duration::from_secs(7))
            .keepalive_retries(3),
    )
    .await
    .expect("SO_KEEPALIVE armed the keepalive timer");
    assert!(
        timer <= Duration::from_secs(42) && timer > Duration::from_secs(30),
        "timer {timer:?} does not match TCP_KEEPIDLE = 42 s"
    );
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn keepalive_off_arms_no_timer() {
    let timer = server_keepalive_timer(SocketOptions::new().keepalive(false)).await;
    assert_eq!(timer, None);
}

//! The client's errors as a reporter prints them: each level's `Display` says its own part
//! once, the cause is its `source()`; a connect or TLS failure names the host and port, and a
//! TLS failure is not called a TCP connect failure.

mod support;

use std::error::Error as _;
use std::time::Duration;

use http_body_util::Empty;
use hyper::body::Bytes;
use keepalive::client::{Client, ClientConfig, Connect, Error, ErrorKind};
use support::{chain, within};

async fn get<C: Connect>(client: &Client<C>, url: &str) -> Error {
    let request = http::Request::get(url).body(Empty::<Bytes>::new()).unwrap();
    within(url, client.request(request))
        .await
        .expect_err("the request must fail")
}

/// No level of the chain repeats the text of the one below it.
fn assert_each_part_once(error: &Error) {
    let mut level: &(dyn std::error::Error + 'static) = error;
    while let Some(source) = level.source() {
        let (outer, inner) = (level.to_string(), source.to_string());
        assert!(
            !outer.contains(&inner),
            "{outer:?} repeats its source {inner:?} (whole chain: {})",
            chain(error)
        );
        level = source;
    }
}

#[tokio::test]
async fn a_refused_connect_names_the_authority_and_says_its_cause_once() {
    // A port with nothing listening: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = Client::new(ClientConfig::new());
    let error = get(&client, &format!("http://127.0.0.1:{port}/")).await;
    assert_eq!(error.kind(), &ErrorKind::Connect, "{}", chain(&error));
    assert_eq!(
        error.to_string(),
        format!("connect to 127.0.0.1:{port} failed")
    );
    assert!(error.source().is_some(), "the cause is the source");
    assert!(
        chain(&error).to_ascii_lowercase().contains("refused"),
        "{}",
        chain(&error)
    );
    assert_each_part_once(&error);
}

#[tokio::test]
async fn a_pool_timeout_says_so_once() {
    // A server that accepts and never answers holds the one connection allowed.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            conns.push(stream);
        }
    });
    let client = Client::new(
        ClientConfig::new()
            .max_per_host(Some(1))
            .pool_wait_timeout(Duration::from_millis(200)),
    );
    let url = format!("http://{addr}/");
    let first = {
        let client = client.clone();
        let url = url.clone();
        tokio::spawn(async move { get(&client, &url).await })
    };
    // The first request holds the host's one place (connected, waiting for its answer).
    support::wait_until("the first request connected", support::SOON, || {
        client.stats().snapshot().opened == 1
    })
    .await;
    let error = get(&client, &url).await;
    assert_eq!(error.kind(), &ErrorKind::PoolTimeout, "{}", chain(&error));
    assert_eq!(
        error.to_string(),
        "timed out waiting for a pooled connection"
    );
    assert_each_part_once(&error);
    let whole = chain(&error);
    assert_eq!(whole.matches("timed out").count(), 1, "{whole}");
    first.abort();
    held.abort();
}

#[cfg(feature = "rustls")]
#[tokio::test]
async fn an_untrusted_certificate_is_a_tls_error_naming_the_host() {
    use keepalive::client::TlsConnector;
    use keepalive::ServerConfig;
    use std::sync::Arc;
    use tokio_rustls::rustls;

    let (server, _tls) = support::TestServer::start_tls(ServerConfig::new()).await;
    // A client that trusts no certificate at all.
    let untrusting = rustls::ClientConfig::builder()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let config = ClientConfig::new();
    let client = Client::with_connector(
        config.clone(),
        TlsConnector::new(&config, Arc::new(untrusting)),
    );
    let error = get(&client, &format!("https://{}/", server.addr)).await;
    assert_eq!(error.kind(), &ErrorKind::Tls, "{}", chain(&error));
    assert_eq!(
        error.to_string(),
        format!("TLS handshake with {} failed", server.addr)
    );
    assert!(!error.to_string().contains("tcp"), "{error}");
    let whole = chain(&error).to_ascii_lowercase();
    assert!(whole.contains("certificate"), "{whole}");
    assert_each_part_once(&error);
}

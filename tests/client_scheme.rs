//! The client never sends an `https` request in plaintext: without a TLS connector it refuses
//! before connecting, with an error that names TLS and the `rustls` feature; other schemes are
//! refused as invalid. Checked against a real listener on the URI's port: it must see no
//! connection at all.

use std::io::ErrorKind as IoErrorKind;
use std::net::TcpListener;

use http_body_util::Empty;
use hyper::body::Bytes;
use keepalive::client::{Client, ClientConfig, Connect, ErrorKind, TcpConnector};
use keepalive::SocketOptions;

/// A listener on 127.0.0.1 that a refused request must never reach.
fn bait() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    (listener, port)
}

/// No connection reached the listener. (A loopback connect completes in the kernel before
/// `connect` returns, so a connection made before the client's answer would be queued here.)
fn assert_untouched(listener: &TcpListener, case: &str) {
    match listener.accept() {
        Err(error) if error.kind() == IoErrorKind::WouldBlock => {}
        Err(error) => panic!("{case}: accept failed: {error}"),
        Ok((_, peer)) => panic!(
            "{case}: the request connected (from {peer}): it would have gone out in plaintext"
        ),
    }
}

async fn send<C: Connect>(client: &Client<C>, uri: String) -> keepalive::client::Error {
    let request = http::Request::get(uri)
        .header("authorization", "Bearer SECRET")
        .body(Empty::<Bytes>::new())
        .expect("request");
    // (A request that did connect waits for an answer the listener never gives.)
    let answer = tokio::time::timeout(std::time::Duration::from_secs(10), client.request(request))
        .await
        .expect("no answer: the request went out to the listener");
    match answer {
        Ok(response) => panic!("the request succeeded: {:?}", response.status()),
        Err(error) => error,
    }
}

fn assert_https_refusal(error: &keepalive::client::Error, case: &str) {
    assert_eq!(error.kind(), &ErrorKind::HttpsWithoutTls, "{case}: {error}");
    let message = error.to_string();
    assert!(message.contains("TLS"), "{case}: {message}");
    assert!(message.contains("rustls"), "{case}: {message}");
}

#[tokio::test]
async fn https_through_the_default_client_is_refused_before_connecting() {
    let (listener, port) = bait();
    let client = Client::new(ClientConfig::new());
    for uri in [
        format!("https://127.0.0.1:{port}/secret?token=SECRET"),
        format!("HTTPS://127.0.0.1:{port}/secret?token=SECRET"),
    ] {
        let error = send(&client, uri.clone()).await;
        assert_https_refusal(&error, &uri);
        assert_untouched(&listener, &uri);
    }
    let stats = client.stats().snapshot();
    assert_eq!(stats.opened, 0, "{stats:?}");
}

#[tokio::test]
async fn a_tcp_connector_given_to_with_connector_refuses_https_too() {
    let (listener, port) = bait();
    let connector = TcpConnector::new(SocketOptions::default(), None, None);
    let client = Client::with_connector(ClientConfig::new(), connector);
    let uri = format!("https://127.0.0.1:{port}/secret?token=SECRET");
    let error = send(&client, uri.clone()).await;
    assert_https_refusal(&error, &uri);
    assert_untouched(&listener, &uri);
    // The refused attempt gave its place back: a plain request to a real server still works
    // with a per-host limit of one.
    let client = Client::with_connector(
        ClientConfig::new().max_per_host(Some(1)),
        TcpConnector::new(SocketOptions::default(), None, None),
    );
    let error = send(&client, uri.clone()).await;
    assert_https_refusal(&error, "second client");
    let error = send(&client, uri).await;
    assert_https_refusal(&error, "second request at the limit");
    assert_untouched(&listener, "at the limit");
}

#[tokio::test]
async fn other_schemes_are_invalid_and_never_connect() {
    let (listener, port) = bait();
    let client = Client::new(ClientConfig::new());
    for uri in [
        format!("ftp://127.0.0.1:{port}/"),
        format!("ws://127.0.0.1:{port}/"),
        format!("unix://127.0.0.1:{port}/"),
        "/relative/only".to_owned(),
    ] {
        let error = send(&client, uri.clone()).await;
        assert_eq!(error.kind(), &ErrorKind::InvalidUri, "{uri}: {error}");
        assert_untouched(&listener, &uri);
    }
}

#[tokio::test]
async fn http_still_goes_through_the_tcp_connector() {
    // The refusal is for other schemes only: a plain http request reaches the listener.
    let (listener, port) = bait();
    let client = Client::new(ClientConfig::new());
    let request = http::Request::get(format!("http://127.0.0.1:{port}/"))
        .body(Empty::<Bytes>::new())
        .expect("request");
    let pending = tokio::spawn(async move { client.request(request).await.map(|_| ()) });
    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
    let accepted = tokio::time::timeout(std::time::Duration::from_secs(10), listener.accept())
        .await
        .expect("the http request never connected")
        .expect("accept");
    drop(accepted);
    let _ = pending.await;
}

#[cfg(feature = "rustls")]
#[tokio::test]
async fn a_tls_connector_over_an_enforcing_tcp_connector_refuses_instead_of_sending_plaintext() {
    use keepalive::client::TlsConnector;
    use std::sync::Arc;
    use tokio_rustls::rustls;

    let (listener, port) = bait();
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    // With the inner connector enforcing http, the TLS connector cannot even reach the port.
    let inner = TcpConnector::new(SocketOptions::default(), None, None);
    let client = Client::with_connector(
        ClientConfig::new(),
        TlsConnector::with_inner(inner, Arc::new(tls)),
    );
    let uri = format!("https://127.0.0.1:{port}/secret?token=SECRET");
    let error = send(&client, uri.clone()).await;
    assert_https_refusal(&error, &uri);
    assert_untouched(&listener, &uri);
}

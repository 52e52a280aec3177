//! Protocol upgrades through the crate's serve (a WebSocket with an axum `Router`), and
//! [`KeepAliveLayer`] both under a foreign server (hyper-util's auto builder, HTTP/1 and
//! HTTP/2) and under the crate's serve, where it steps aside.

mod support;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{Message as AxumMessage, WebSocket, WebSocketUpgrade};
use axum::routing::get as axum_get;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use keepalive::{CloseReason, KeepAliveLayer, ServerConfig};
use support::*;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tower::ServiceBuilder;

async fn echo(mut socket: WebSocket) {
    while let Some(Ok(message)) = socket.recv().await {
        if let AxumMessage::Text(text) = message {
            if socket.send(AxumMessage::Text(text)).await.is_err() {
                return;
            }
        }
    }
}

async fn send_and_expect_echo<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>, text: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    within("sending a message", ws.send(Message::text(text)))
        .await
        .unwrap();
    let reply = within("the echo", ws.next())
        .await
        .expect("the WebSocket ended instead of echoing")
        .expect("the WebSocket failed instead of echoing");
    assert_eq!(reply, Message::text(text));
}

#[tokio::test]
async fn websocket_upgrade_is_left_alone_by_idle_timeout_and_request_limit() {
    let router = axum::Router::new().route(
        "/ws",
        axum_get(|ws: WebSocketUpgrade| async move { ws.on_upgrade(echo) }),
    );
    let config = ServerConfig::new()
        .idle_timeout(Duration::from_millis(300))
        .max_requests(1);
    // `keepalive::serve(listener, router)` type-checks as is (no `map_request` needed).
    let server = TestServer::start_with(config, router).await;

    let stream = server.connect().await;
    let url = format!("ws://{}/ws", server.addr);
    let (mut ws, response) = within(
        "the WebSocket handshake",
        tokio_tungstenite::client_async(url, stream),
    )
    .await
    .expect("the WebSocket handshake failed");
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert!(
        response.headers().get("keep-alive").is_none(),
        "a 101 carries no Keep-Alive: {:?}",
        response.headers()
    );
    assert!(
        response.headers().get_all("connection").iter().all(|v| !v
            .to_str()
            .unwrap_or("")
            .to_ascii_lowercase()
            .contains("close")),
        "a 101 is not turned into a close: {:?}",
        response.headers()
    );

    // The driver hands the connection over: counted as upgraded, no longer active.
    wait_until("the upgraded connection is handed over", SOON, || {
        let s = server.stats.snapshot();
        s.closed(CloseReason::Upgraded) == 1 && s.active == 0
    })
    .await;

    send_and_expect_echo(&mut ws, "first").await;
    // A real idle gap, more than three times the idle timeout.
    tokio::time::sleep(Duration::from_secs(1)).await;
    send_and_expect_echo(&mut ws, "second").await;

    let stats = server.stats.snapshot();
    assert_eq!(stats.closed_total(), 1, "{}", stats.to_json());
    assert_eq!(stats.closed(CloseReason::IdleTimeout), 0);
    assert_eq!(stats.closed(CloseReason::MaxRequests), 0);
    assert_eq!(stats.requests, 1);

    within("closing the WebSocket", ws.close(None))
        .await
        .unwrap();
}

/// Serves `service` with hyper-util's auto builder (HTTP/1 and HTTP/2) on a fresh loopback
/// address; the accept loop ends when the returned handle is aborted.
async fn foreign_server<S>(service: S) -> (std::net::SocketAddr, JoinHandle<()>)
where
    S: tower::Service<Request<Incoming>, Response = Response<Full<Bytes>>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let listener = TcpListener::bind((unique_loopback(), 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let _ = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, task)
}

#[tokio::test]
async fn layer_under_a_foreign_server_advertises_and_leaves_http2_alone() {
    let service = ServiceBuilder::new()
        .layer(KeepAliveLayer::new().idle_timeout(Duration::from_secs(7)))
        .service_fn(|_req: Request<Incoming>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("hi"))))
        });
    let (addr, accept_loop) = foreign_server(service).await;

    // HTTP/1.1: the idle timeout it was given, and no `max=` (it cannot count requests).
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let response = within("an HTTP/1.1 response", request(&mut stream, &get("/", ""))).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("keep-alive"), Some("timeout=7"));
    assert!(!response.says_close());
    drop(stream);

    // HTTP/1.0 asking for keep-alive: answered in kind, and the connection is reused.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let ask = "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    for round in ["first", "second"] {
        let response = within("an HTTP/1.0 response", request(&mut stream, ask)).await;
        assert_eq!(response.status, 200, "{round}");
        assert_eq!(response.header("connection"), Some("keep-alive"), "{round}");
        assert_eq!(response.header("keep-alive"), Some("timeout=7"), "{round}");
        assert_eq!(response.body, b"hi", "{round}");
    }
    drop(stream);

    // HTTP/2 with prior knowledge: no connection-specific headers at all.
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = within(
        "the HTTP/2 handshake",
        hyper::client::conn::http2::handshake::<_, _, Empty<Bytes>>(
            TokioExecutor::new(),
            TokioIo::new(stream),
        ),
    )
    .await
    .unwrap();
    let connection_task = tokio::spawn(connection);
    let h2_request = Request::builder()
        .uri(format!("http://{addr}/"))
        .body(Empty::new())
        .unwrap();
    let response = within("an HTTP/2 response", sender.send_request(h2_request))
        .await
        .unwrap();
    assert_eq!(response.version(), Version::HTTP_2);
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers().get("connection").is_none(),
        "{:?}",
        response.headers()
    );
    assert!(
        response.headers().get("keep-alive").is_none(),
        "{:?}",
        response.headers()
    );
    let body = within("the HTTP/2 body", response.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(body, "hi");

    drop(sender);
    connection_task.abort();
    accept_loop.abort();
}

#[tokio::test]
async fn layer_steps_aside_under_the_crates_serve() {
    // What the layer itself left on each response, seen from just outside it.
    let seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let record = seen.clone();
    let service = ServiceBuilder::new()
        .map_response(move |response: Response<BoxBody<Bytes, Infallible>>| {
            let keep_alive = response
                .headers()
                .get("keep-alive")
                .map(|v| v.to_str().unwrap_or("?").to_string());
            record.lock().unwrap().push(keep_alive);
            response
        })
        .layer(KeepAliveLayer::new().idle_timeout(Duration::from_secs(7)))
        .service_fn(routes);
    let config = ServerConfig::new()
        .idle_timeout(Duration::from_secs(60))
        .max_requests(5);
    let server = TestServer::start_with(config, service).await;

    let mut stream = server.connect().await;
    let response = request(&mut stream, &get("/", "")).await;
    assert_eq!(response.status, 200);
    let keep_alive: Vec<&str> = response
        .headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("keep-alive"))
        .map(|(_, value)| value.as_str())
        .collect();
    assert_eq!(
        keep_alive,
        vec!["timeout=60, max=4"],
        "exactly one Keep-Alive, the serve's"
    );
    assert_eq!(
        *seen.lock().unwrap(),
        vec![None],
        "the layer added nothing under the crate's serve"
    );
}

#[tokio::test]
async fn layer_under_a_foreign_server_advertises_no_timeout_unless_told_one() {
    let service = ServiceBuilder::new()
        .layer(KeepAliveLayer::new())
        .service_fn(|_req: Request<Incoming>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("hi"))))
        });
    let (addr, accept_loop) = foreign_server(service).await;

    // hyper-util's builder with no timer (as `axum::serve` uses it) enforces no idle timeout:
    // nothing to advertise.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let response = within("an HTTP/1.1 response", request(&mut stream, &get("/", ""))).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("keep-alive"), None, "{response:?}");
    drop(stream);

    // HTTP/1.0 keep-alive is still answered in kind, without a timeout.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let ask = "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    let response = within("an HTTP/1.0 response", request(&mut stream, ask)).await;
    assert_eq!(response.header("connection"), Some("keep-alive"));
    assert_eq!(response.header("keep-alive"), None, "{response:?}");
    accept_loop.abort();
}

#[tokio::test]
async fn layer_under_a_foreign_graceful_shutdown_never_says_keep_alive_with_close() {
    // A handler held until the test has started hyper's graceful shutdown, so the response is
    // written after it (as a request in flight during `axum::serve`'s drain).
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let release_rx = Arc::new(Mutex::new(Some(release_rx)));
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let started_tx = Arc::new(Mutex::new(Some(started_tx)));
    let service = ServiceBuilder::new()
        .layer(KeepAliveLayer::new())
        .service_fn(move |_req: Request<Incoming>| {
            let release = release_rx.lock().unwrap().take();
            if let Some(started) = started_tx.lock().unwrap().take() {
                let _ = started.send(());
            }
            async move {
                if let Some(release) = release {
                    let _ = release.await;
                }
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("hi"))))
            }
        });
    let listener = TcpListener::bind((unique_loopback(), 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (drain_tx, drain_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        let conn =
            builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let mut conn = std::pin::pin!(conn);
        tokio::select! {
            result = conn.as_mut() => return result.is_ok(),
            _ = drain_rx => conn.as_mut().graceful_shutdown(),
        }
        let _ = release_tx.send(());
        conn.await.is_ok()
    });

    let mut stream = TcpStream::connect(addr).await.unwrap();
    use tokio::io::AsyncWriteExt;
    stream.write_all(get("/", "").as_bytes()).await.unwrap();
    within("the handler runs", started_rx).await.unwrap();
    drain_tx.send(()).unwrap();
    let mut leftover = Vec::new();
    let response = within("the response", read_response(&mut stream, &mut leftover))
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    assert!(response.says_close(), "{response:?}");
    assert_eq!(response.header("keep-alive"), None, "{response:?}");
    expect_eof(&mut stream).await;
    assert!(within("the connection ends", server).await.unwrap());
}

//! The client's connections over their life: a canceled exchange never goes back to the pool,
//! dropping the client closes its idle connections (its FIN first), names that resolve to
//! loopback connect, connect errors are reported as such, and the client works as a
//! `tower::Service` for any body.

mod support;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response, Uri};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Bytes;
use keepalive::client::{Client, ClientConfig, ErrorKind, PoolCloseReason};
use keepalive::ServerConfig;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tower::ServiceExt;

fn get(url: &str) -> Request<Empty<Bytes>> {
    Request::get(url).body(Empty::new()).unwrap()
}

/// A raw server: `/partial` gets a head announcing 100 bytes and only 50 of them, then the
/// connection stays open until the client leaves (counted in `left`); anything else gets
/// `200 ok`, keep-alive.
struct PartialServer {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    left: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl PartialServer {
    async fn start() -> PartialServer {
        let listener = TcpListener::bind((unique_loopback(), 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let left = Arc::new(AtomicUsize::new(0));
        let (count, gone) = (accepted.clone(), left.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve_partial(stream, gone.clone()));
            }
        });
        PartialServer {
            addr,
            accepted,
            left,
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for PartialServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_partial(mut stream: TcpStream, left: Arc<AtomicUsize>) {
    let mut buf = Vec::new();
    loop {
        // Request heads only: the client sends GETs without a body here.
        let head_end = loop {
            if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break pos + 4;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head: Vec<u8> = buf.drain(..head_end).collect();
        if head.starts_with(b"GET /partial ") {
            let mut response = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n".to_vec();
            response.extend_from_slice(&[b'p'; 50]);
            if stream.write_all(&response).await.is_err() {
                return;
            }
            // Wait for the client to give up on the rest.
            let mut chunk = [0u8; 4096];
            loop {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            left.fetch_add(1, Ordering::SeqCst);
            return;
        }
        if stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .await
            .is_err()
        {
            return;
        }
    }
}

#[tokio::test]
async fn dropping_a_response_body_before_its_end_closes_the_connection() {
    let server = PartialServer::start().await;
    let client = Client::new(ClientConfig::new());
    let uri: Uri = server.url("/").parse().unwrap();

    let response = within(
        "the partial response",
        client.request(get(&server.url("/partial"))),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let frame = within("the first bytes of the body", body.frame())
        .await
        .expect("a frame")
        .expect("the first bytes arrive");
    let data = frame.into_data().unwrap();
    assert!(!data.is_empty() && data.len() <= 50, "{} bytes", data.len());
    drop(body);

    let stats = client.stats().snapshot();
    assert_eq!(
        stats.closed(PoolCloseReason::Canceled),
        1,
        "{}",
        stats.to_json()
    );
    assert_eq!(client.idle_connections(&uri), 0);
    wait_until("the server sees the client leave", SOON, || {
        server.left.load(Ordering::SeqCst) == 1
    })
    .await;

    assert_eq!(fetch_ok(&client, &server.url("/")).await, "ok");
    let stats = client.stats().snapshot();
    assert_eq!(stats.opened, 2, "{}", stats.to_json());
    assert_eq!(stats.reused, 0, "{}", stats.to_json());
    assert_eq!(server.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_body_read_to_its_last_byte_returns_the_connection_without_a_final_poll() {
    // The counterpart of the cancellation above: a caller that stops once `is_end_stream`
    // says the body is complete (and never polls for the end) has not canceled anything.
    let server = TestServer::start(ServerConfig::new()).await;
    let client = Client::new(ClientConfig::new());
    let base = format!("http://{}", server.addr);
    let uri: Uri = base.parse().unwrap();
    for _ in 0..3 {
        let response = within("a request", client.request(get(&format!("{base}/"))))
            .await
            .unwrap();
        let mut body = response.into_body();
        let mut got = Vec::new();
        while !http_body::Body::is_end_stream(&body) {
            let frame = within("a frame", body.frame())
                .await
                .expect("the body has not ended")
                .unwrap();
            got.extend_from_slice(&frame.into_data().unwrap());
        }
        drop(body);
        assert_eq!(got, b"hello, world!");
        assert_eq!(client.idle_connections(&uri), 1);
    }
    let stats = client.stats().snapshot();
    assert_eq!(stats.opened, 1, "{}", stats.to_json());
    assert_eq!(stats.reused, 2, "{}", stats.to_json());
    assert_eq!(stats.closed_total(), 0, "{}", stats.to_json());
}

#[tokio::test]
async fn dropping_the_request_future_while_waiting_closes_the_connection() {
    let server = TestServer::start(ServerConfig::new()).await;
    let client = Client::new(ClientConfig::new());
    let base = format!("http://{}", server.addr);
    let uri: Uri = base.parse().unwrap();

    // One idle connection, which the slow request then reuses.
    assert_eq!(
        fetch_ok(&client, &format!("{base}/")).await,
        "hello, world!"
    );
    wait_until("the connection is pooled", SOON, || {
        client.idle_connections(&uri) == 1
    })
    .await;

    let slow = client.request(get(&format!("{base}/slow?ms=5000")));
    let gave_up = tokio::time::timeout(Duration::from_millis(200), slow).await;
    assert!(gave_up.is_err(), "the slow request cannot answer in 200 ms");

    let stats = client.stats().snapshot();
    assert_eq!(stats.reused, 1, "{}", stats.to_json());
    assert_eq!(
        stats.closed(PoolCloseReason::Canceled),
        1,
        "{}",
        stats.to_json()
    );
    assert_eq!(client.idle_connections(&uri), 0);
    wait_until("the server drops the abandoned handler", SOON, || {
        server.stats.snapshot().handlers_dropped == 1
    })
    .await;

    assert_eq!(
        fetch_ok(&client, &format!("{base}/")).await,
        "hello, world!"
    );
    let stats = client.stats().snapshot();
    assert_eq!(stats.opened, 2, "a new connection: {}", stats.to_json());
    assert_eq!(server.stats.snapshot().accepted, 2);
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn dropping_the_client_closes_idle_connections_with_its_fin_first() {
    use keepalive::CloseReason;

    let server = TestServer::start(patient()).await;
    let client = Client::new(ClientConfig::new());
    let base = format!("http://{}", server.addr);
    let uri: Uri = base.parse().unwrap();

    // Five at once, each long enough that none can reuse another's connection.
    let url = format!("{base}/slow?ms=200");
    let bodies = within(
        "five concurrent requests",
        futures_util::future::join_all((0..5).map(|_| async {
            let response = client.request(get(&url)).await.unwrap();
            response.into_body().collect().await.unwrap().to_bytes()
        })),
    )
    .await;
    assert!(bodies.iter().all(|b| b == "slow done"), "{bodies:?}");
    wait_until("five idle connections", SOON, || {
        client.idle_connections(&uri) == 5
    })
    .await;
    let stats = client.stats().snapshot();
    assert_eq!(stats.opened, 5);
    assert_eq!(
        (stats.open, stats.idle),
        (5, 5),
        "gauges: {}",
        stats.to_json()
    );
    assert_eq!(server.server_side().established(), 5);

    let other = client.clone();
    let counters = client.stats().clone();
    drop(client);
    assert_eq!(
        other.idle_connections(&uri),
        5,
        "a clone keeps the pool alive"
    );
    drop(other);
    let stats = counters.snapshot();
    assert_eq!(
        (stats.open, stats.idle),
        (0, 0),
        "gauges: {}",
        stats.to_json()
    );
    assert_eq!(stats.closed(PoolCloseReason::Dropped), 5);

    wait_until("the server sees five client FINs", SOON, || {
        server.stats.snapshot().closed(CloseReason::PeerFin) == 5
    })
    .await;
    wait_until("five TIME_WAIT on the client side", SOON, || {
        server.client_side().time_wait() == 5
    })
    .await;
    let stats = server.stats.snapshot();
    assert_eq!(stats.client_closed_first, 5, "{}", stats.to_json());
    assert_eq!(server.server_side().time_wait(), 0);
    assert_eq!(server.client_side().close_wait(), 0);
}

#[tokio::test]
async fn localhost_reaches_a_server_on_127_0_0_1() {
    // localhost may resolve to ::1 first; the connector must then fall back to 127.0.0.1.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = keepalive::serve(listener, tower::service_fn(routes));
    let stats = server.stats();
    let task = tokio::spawn(std::future::IntoFuture::into_future(server));

    let client = Client::new(ClientConfig::new());
    let url = format!("http://localhost:{port}/");
    assert_eq!(fetch_ok(&client, &url).await, "hello, world!");
    assert_eq!(fetch_ok(&client, &url).await, "hello, world!");
    let client_stats = client.stats().snapshot();
    assert_eq!(client_stats.opened, 1, "{}", client_stats.to_json());
    assert_eq!(client_stats.reused, 1, "{}", client_stats.to_json());
    assert_eq!(stats.snapshot().requests, 2);
    task.abort();
}

/// A loopback address and port with nothing listening.
async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind((unique_loopback(), 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

#[tokio::test]
async fn a_refused_connect_is_a_connect_error_and_gives_its_place_back() {
    let addr = closed_port().await;
    // One connection per host at most: a place not given back would make the second
    // request wait for the pool instead of trying to connect.
    let client = Client::new(
        ClientConfig::new()
            .max_per_host(Some(1))
            .pool_wait_timeout(Duration::from_secs(2)),
    );
    for attempt in 1..=2u64 {
        let error = within(
            "a refused connect",
            client.request(get(&format!("http://{addr}/"))),
        )
        .await
        .expect_err("nothing listens there");
        assert_eq!(error.kind(), &ErrorKind::Connect, "{error}");
        let stats = client.stats().snapshot();
        assert_eq!(stats.opened, 0, "{}", stats.to_json());
        assert_eq!(stats.open, 0, "a failed connect is never open");
        assert_eq!(
            stats.closed(PoolCloseReason::Error),
            attempt,
            "{}",
            stats.to_json()
        );
    }
}

#[tokio::test]
async fn an_overall_connect_timeout_is_a_connect_error() {
    let server = TestServer::start(ServerConfig::new()).await;
    let client =
        Client::new(ClientConfig::new().connect_overall_timeout(Some(Duration::from_nanos(1))));
    let result = within(
        "a connect with a 1 ns budget",
        client.request(get(&format!("http://{}/", server.addr))),
    )
    .await;
    // The timer's granularity is a millisecond, so a loopback connect may still win the race;
    // when it does not, the error must be a connect error that says it timed out.
    match result {
        Ok(response) => assert_eq!(response.status(), 200),
        Err(error) => {
            assert_eq!(error.kind(), &ErrorKind::Connect, "{error}");
            assert!(support::chain(&error).contains("timed out"), "{error}");
            assert_eq!(client.stats().snapshot().opened, 0);
        }
    }
}

/// A listener whose accept queue is full (backlog 1, filled with connections that are never accepted): the
/// kernel drops further SYNs, so a connect to it hangs until a timeout ends it.
#[cfg(target_os = "linux")]
async fn unanswered_listener() -> (tokio::net::TcpListener, Vec<TcpStream>) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((unique_loopback(), 0).into()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut queued = Vec::new();
    // Fill the queue: connects complete (without an accept) until it is full.
    loop {
        match tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => queued.push(stream),
            Ok(Err(e)) => panic!("filling the accept queue: {e}"),
            Err(_) => break,
        }
        assert!(queued.len() < 16, "the accept queue never filled");
    }
    (listener, queued)
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_connect_that_gets_no_answer_times_out_as_a_connect_error() {
    let (listener, _queued) = unanswered_listener().await;
    let url = format!("http://{}/", listener.local_addr().unwrap());

    // The overall budget.
    let client = Client::new(
        ClientConfig::new()
            .connect_timeout(None)
            .connect_overall_timeout(Some(Duration::from_millis(300))),
    );
    let error = within(
        "a connect past its overall timeout",
        client.request(get(&url)),
    )
    .await
    .expect_err("the SYN is never answered");
    assert_eq!(error.kind(), &ErrorKind::Connect, "{error}");
    assert!(support::chain(&error).contains("timed out"), "{error}");
    let stats = client.stats().snapshot();
    assert_eq!(stats.opened, 0, "{}", stats.to_json());
    assert_eq!(
        stats.closed(PoolCloseReason::Error),
        1,
        "{}",
        stats.to_json()
    );

    // The per-attempt budget.
    let client = Client::new(
        ClientConfig::new()
            .connect_timeout(Some(Duration::from_millis(300)))
            .connect_overall_timeout(None),
    );
    let error = within(
        "a connect past its attempt timeout",
        client.request(get(&url)),
    )
    .await
    .expect_err("the SYN is never answered");
    assert_eq!(error.kind(), &ErrorKind::Connect, "{error}");
    // hyper-util's message is only "tcp connect error"; the timeout is in the source chain.
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&error);
    let mut timed_out = false;
    while let Some(cause) = source {
        timed_out |= cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::TimedOut);
        source = cause.source();
    }
    assert!(
        timed_out,
        "an io::ErrorKind::TimedOut in the chain: {error:?}"
    );
}

#[tokio::test]
async fn the_client_is_a_tower_service_for_any_body() {
    let server = TestServer::start(ServerConfig::new()).await;
    let client = Client::new(ClientConfig::new());
    let request = Request::post(format!("http://{}/echo", server.addr))
        .body(Full::new(Bytes::from_static(b"echo me, please")))
        .unwrap();
    let response = within("a oneshot POST", client.clone().oneshot(request))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = within("the echo", response.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(body, "echo me, please");
}

#[tokio::test]
async fn the_client_under_a_concurrency_limit_serves_many_tasks() {
    let server = TestServer::start(ServerConfig::new()).await;
    let client = Client::new(ClientConfig::new());
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));

    // The client as a tower service, reading each body to the end inside the exchange, and
    // counting how many exchanges run at once.
    let counted = {
        let (client, in_flight, most) = (client.clone(), in_flight.clone(), most.clone());
        tower::service_fn(move |request: Request<Full<Bytes>>| {
            let (client, in_flight, most) = (client.clone(), in_flight.clone(), most.clone());
            async move {
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                let result = async {
                    let response = client.oneshot(request).await?;
                    let (parts, body) = response.into_parts();
                    let bytes = body.collect().await?.to_bytes();
                    Ok::<_, keepalive::BoxError>(Response::from_parts(parts, bytes))
                }
                .await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                result
            }
        })
    };
    let service = tower::ServiceBuilder::new()
        .layer_fn(|inner| ConcurrencyLimit::new(inner, 2))
        .service(counted);

    let next = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (service, next) = (service.clone(), next.clone());
            let url = format!("http://{}/echo", server.addr);
            tokio::spawn(async move {
                let mut done = 0;
                loop {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    if n >= 20 {
                        return done;
                    }
                    let sent = format!("request {n}");
                    let request = Request::post(&url)
                        .body(Full::new(Bytes::from(sent.clone())))
                        .unwrap();
                    let response = service
                        .clone()
                        .oneshot(request)
                        .await
                        .unwrap_or_else(|e| panic!("request {n} failed: {e}"));
                    assert_eq!(response.status(), 200);
                    assert_eq!(response.into_body(), sent);
                    done += 1;
                }
            })
        })
        .collect();
    let mut done = 0;
    for task in tasks {
        done += within("a task's requests", task).await.unwrap();
    }
    assert_eq!(done, 20);

    assert!(most.load(Ordering::SeqCst) <= 2, "at most two at once");
    let stats = client.stats().snapshot();
    assert_eq!(stats.requests, 20, "{}", stats.to_json());
    assert!(
        stats.opened <= 2,
        "two at a time reuse at most two connections: {}",
        stats.to_json()
    );
    assert_eq!(stats.retries, 0, "{}", stats.to_json());
    assert_eq!(server.stats.snapshot().requests, 20);
}

/// tower's `ConcurrencyLimit` needs its `limit` feature, which the dev-dependencies do not
/// turn on; this is the same idea on a tokio semaphore: `poll_ready` waits for a permit,
/// which the response future holds until it resolves.
struct ConcurrencyLimit<S> {
    inner: S,
    semaphore: Arc<Semaphore>,
    acquiring: Option<Pin<Box<dyn Future<Output = OwnedSemaphorePermit> + Send>>>,
    permit: Option<OwnedSemaphorePermit>,
}

impl<S> ConcurrencyLimit<S> {
    fn new(inner: S, max: usize) -> Self {
        ConcurrencyLimit {
            inner,
            semaphore: Arc::new(Semaphore::new(max)),
            acquiring: None,
            permit: None,
        }
    }
}

impl<S: Clone> Clone for ConcurrencyLimit<S> {
    fn clone(&self) -> Self {
        ConcurrencyLimit {
            inner: self.inner.clone(),
            semaphore: self.semaphore.clone(),
            acquiring: None,
            permit: None,
        }
    }
}

impl<S, R> tower::Service<R> for ConcurrencyLimit<S>
where
    S: tower::Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        if self.permit.is_none() {
            let semaphore = self.semaphore.clone();
            let acquiring = self.acquiring.get_or_insert_with(|| {
                Box::pin(async move { semaphore.acquire_owned().await.expect("never closed") })
            });
            let permit = std::task::ready!(acquiring.as_mut().poll(cx));
            self.acquiring = None;
            self.permit = Some(permit);
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let permit = self.permit.take().expect("poll_ready first");
        let response = self.inner.call(request);
        Box::pin(async move {
            let result = response.await;
            drop(permit);
            result
        })
    }
}

/// `Host` carries the URI's host and port, never its userinfo (RFC 9112, section 3.2), on a
/// new connection and on a reused one.
#[tokio::test]
async fn host_header_leaves_out_the_userinfo() {
    let service = tower::service_fn(|req: Request<hyper::body::Incoming>| async move {
        let host = req
            .headers()
            .get(http::header::HOST)
            .map(|h| h.as_bytes().to_vec())
            .unwrap_or_default();
        Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(host))))
    });
    let server = TestServer::start_with(ServerConfig::new(), service).await;
    let client = Client::new(ClientConfig::new());
    let url = format!("http://user:secret@{}/", server.addr);
    for round in 0..2 {
        let body = fetch_ok(&client, &url).await;
        assert_eq!(body, server.addr.to_string(), "round {round}");
    }
    assert_eq!(client.stats().snapshot().reused, 1);
}

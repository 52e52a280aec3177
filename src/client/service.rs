use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::Uri;
use http::{Method, Request, Response, Version};
use http_body::Body;
use http_body_util::BodyExt;
use hyper::body::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::Instrument;

use super::config::ClientConfig;
use super::conn::ClientConn;
use super::connector::{is_https, NotHttp, TcpConnector};
use super::error::{Error, ErrorKind};
use super::h1::exchange::{Exchange, Failure, RequestHead};
use super::h1::req_body::ReqBody;
use super::h1::response_body::ResponseBody;
use super::key::PoolKey;
use super::lease::Lease;
use super::pool::{Checkout, CheckoutNow, History, HostId, Pool};
use super::stats::ClientStats;
use crate::header::connection_has;
use crate::BoxError;

/// A connector the [`Client`] can use: any cloneable `tower::Service<Uri>` returning a tokio
/// `AsyncRead + AsyncWrite` (TCP, TLS, a Unix socket). Implemented for every such service; it
/// only names the bounds once.
pub trait Connect:
    tower_service::Service<
        Uri,
        Response: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        Error: Into<BoxError>,
        Future: Send,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<C> Connect for C
where
    C: tower_service::Service<Uri> + Clone + Send + Sync + 'static,
    C::Response: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    C::Error: Into<BoxError>,
    C::Future: Send,
{
}

/// An HTTP/1 client with a keep-alive pool that closes idle connections before the server
/// would, notices a server's FIN on an idle connection at once, and retries idempotent
/// requests that hit a stale connection. A `tower::Service<http::Request<B>>` for any body.
///
/// ```no_run
/// use http_body_util::{BodyExt, Empty};
/// use hyper::body::Bytes;
/// use keepalive::client::{Client, ClientConfig};
/// use tower::ServiceExt;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let client = Client::new(ClientConfig::new());
/// let request = http::Request::get("http://127.0.0.1:3000/").body(Empty::<Bytes>::new())?;
/// let response = client.clone().oneshot(request).await?;
/// let body = response.into_body().collect().await?.to_bytes();
/// println!("{body:?} {}", client.stats().snapshot().to_json());
/// # Ok(())
/// # }
/// ```
pub struct Client<C = TcpConnector>
where
    C: Connect,
{
    inner: Arc<Inner<C>>,
}

struct Inner<C>
where
    C: Connect,
{
    connector: C,
    /// The connector is known to have no TLS (`Client::new`): an `https` request is refused
    /// before the pool is asked. (Any `TcpConnector` also refuses it itself.)
    plaintext_only: bool,
    pool: Pool<PoolKey, ClientConn<C::Response>>,
    config: ClientConfig,
    stats: ClientStats,
}

impl<C> Clone for Client<C>
where
    C: Connect,
{
    fn clone(&self) -> Self {
        Client {
            inner: self.inner.clone(),
        }
    }
}

impl<C> std::fmt::Debug for Client<C>
where
    C: Connect,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.inner.config)
            .finish()
    }
}

impl Client<TcpConnector> {
    /// A client with the default connector (plain TCP through hyper-util's `HttpConnector`).
    ///
    /// It has no TLS: an `https` request fails with [`ErrorKind::HttpsWithoutTls`] before
    /// anything is connected or sent. For https, build with the feature `rustls` and use
    /// `Client::with_connector(config, TlsConnector::new(..))`.
    pub fn new(config: ClientConfig) -> Self {
        let connector = TcpConnector::new(
            config.socket,
            config.connect_timeout,
            config.connect_overall_timeout,
        );
        let mut client = Self::with_connector(config, connector);
        if let Some(inner) = Arc::get_mut(&mut client.inner) {
            inner.plaintext_only = true;
        }
        client
    }
}

impl<C> Client<C>
where
    C: Connect,
{
    /// A client with a connector of your own (TLS, a proxy, a Unix socket): any
    /// `tower::Service<Uri>` returning a tokio `AsyncRead + AsyncWrite`.
    ///
    /// # Security
    /// The client writes each request on whatever stream the connector returns for its URI:
    /// **securing `https` is the connector's job**, and the client cannot check it. A
    /// [`TcpConnector`] refuses `https` (unless told otherwise, for a TLS connector that wraps
    /// it); a connector of your own must either secure `https` or refuse it.
    pub fn with_connector(config: ClientConfig, connector: C) -> Self {
        let stats = ClientStats::default();
        Client {
            inner: Arc::new(Inner {
                connector,
                plaintext_only: false,
                pool: Pool::with_stats(config.pool.clone(), stats.clone()),
                config,
                stats,
            }),
        }
    }

    /// The client's counters.
    pub fn stats(&self) -> &ClientStats {
        &self.inner.stats
    }

    /// Idle connections pooled for the host of `uri`.
    pub fn idle_connections(&self, uri: &Uri) -> usize {
        PoolKey::of(uri).map_or(0, |key| self.inner.pool.idle_count(&key))
    }

    /// The idle limit learned for the host of `uri` from the server's own closes of idle
    /// connections, when it advertises none (see [`ClientConfig::learn_server_idle_limits`]).
    pub fn learned_idle_limit(&self, uri: &Uri) -> Option<Duration> {
        PoolKey::of(uri).and_then(|key| self.inner.pool.learned_idle_limit(&key))
    }

    /// Sends a request (the same as `Service::call`, without the box). The future does not
    /// borrow the client.
    pub fn request<B>(
        &self,
        request: Request<B>,
    ) -> impl Future<Output = Result<Response<ResponseBody>, Error>> + Send + 'static
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        // (When nothing listens, the span is `Span::none()`: entering it at every poll costs
        // next to nothing.)
        let span = request_span(&request).unwrap_or_else(tracing::Span::none);
        send(self.inner.clone(), request).instrument(span)
    }
}

impl<C, B> tower_service::Service<Request<B>> for Client<C>
where
    C: Connect,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody>;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        Box::pin(self.request(request))
    }
}

/// A `tracing` span per request, `None` when nothing listens at the debug level. (Checked
/// first: with tracing's `log` feature on, making a span nobody listens to still formats its
/// fields for `log`.)
fn request_span<B>(request: &Request<B>) -> Option<tracing::Span> {
    use tracing::level_filters::{LevelFilter, STATIC_MAX_LEVEL};
    if tracing::Level::DEBUG > STATIC_MAX_LEVEL || tracing::Level::DEBUG > LevelFilter::current() {
        return None;
    }
    let span = tracing::debug_span!("request", method = %request.method(), uri = %request.uri());
    (!span.is_disabled()).then_some(span)
}

/// Why a failed request on a reused connection may not be retried, if it may not.
fn not_replayable(method: &Method) -> Option<&'static str> {
    match *method {
        Method::GET
        | Method::HEAD
        | Method::OPTIONS
        | Method::TRACE
        | Method::PUT
        | Method::DELETE => None,
        _ => Some("the method is not idempotent"),
    }
}

/// Sends a request: the work before the first wait is done here, so that the future keeps
/// only what it needs (not the request and its parts both).
fn send<C, B>(
    inner: Arc<Inner<C>>,
    request: Request<B>,
) -> impl Future<Output = Result<Response<ResponseBody>, Error>> + Send + 'static
where
    C: Connect,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let (mut parts, body) = request.into_parts();
    // (Moved out, not copied: the head is written from the parts and this URI.)
    let uri = std::mem::take(&mut parts.uri);
    // (An HTTP/1.0 request with a Connection header of the caller's that does not ask for
    // keep-alive gets none added: its connection ends with the response.)
    let asked_close = connection_has(&parts.headers, "close")
        || (parts.version == Version::HTTP_10
            && parts.headers.contains_key(http::header::CONNECTION)
            && !connection_has(&parts.headers, "keep-alive"));
    // (An async block, not an async fn: the block uses what it captured in place, where an
    // async fn would keep a second copy of its arguments. And the values used only until the
    // request is sent live in a scope that ends there, so the future has no room for them
    // while it waits for the response.)
    async move {
        if inner.plaintext_only && is_https(&uri) {
            return Err(Error::kind_only(ErrorKind::HttpsWithoutTls));
        }
        // Make the body replayable when a retry could be allowed.
        let mut why_not = if inner.config.retry_stale {
            not_replayable(&parts.method)
        } else {
            Some("retries are turned off")
        };
        let replay;
        let (host, exchange, retry_head, reused) = {
            let body = if body.is_end_stream() {
                // (No frame at all: sent as nothing, and replayed as nothing.)
                replay = Some(Bytes::new());
                ReqBody::Empty
            } else if why_not.is_some() {
                replay = None;
                ReqBody::stream(body)
            } else if body
                .size_hint()
                .exact()
                .is_some_and(|n| n <= inner.config.replay_buffer as u64)
            {
                // (Boxed: it allocates anyway, and the usual request keeps a small future.)
                let bytes = Box::pin(body.collect())
                    .await
                    .map_err(|e| Error::new(ErrorKind::RequestBody, e))?
                    .to_bytes();
                replay = Some(bytes.clone());
                ReqBody::full(bytes)
            } else {
                why_not = Some("the body cannot be replayed");
                replay = None;
                ReqBody::stream(body)
            };

            // The key is made only when the URI is not that of the last key looked up.
            let Some((host, checkout)) = inner.pool.take_or_slot_for(
                |last| last.is_key_of(&uri),
                || PoolKey::of(&uri),
                true,
            ) else {
                return Err(Error::kind_only(ErrorKind::InvalidUri));
            };
            let (conn, history, reused) = match checkout {
                Ok(Checkout::Reused(pooled)) => {
                    let (io, history) = pooled.into_parts();
                    (io, history, true)
                }
                // (No future for a checkout that does not wait or connect.)
                other => Box::pin(open_or_wait(&inner, &uri, other)).await?,
            };
            // A copy of the head is kept only when a retry could follow: a reused connection
            // and a replayable request.
            let retry_head = (reused && why_not.is_none()).then(|| RetryHead::of(&parts));
            inner.stats.request(reused);
            let head = RequestHead {
                method: &parts.method,
                uri: &uri,
                version: parts.version,
                headers: &parts.headers,
                announce_keep_alive: inner.config.announce_keep_alive,
            };
            let exchange =
                exchange_on(&inner, reused, host, conn, history, head, body, asked_close)?;
            (host, exchange, retry_head, reused)
        };
        let Failure { error, stale } = match exchange.await {
            Ok(response) => return Ok(response),
            Err(failure) => failure,
        };
        if !(reused && stale) {
            return Err(request_error(error));
        }
        if let Some(why) = why_not {
            return Err(Error::new(ErrorKind::StaleNotRetried(why), error));
        }
        let (Some(head), Some(replay)) = (retry_head, replay) else {
            return Err(request_error(error));
        };
        tracing::debug!(%error, "stale pooled connection; retrying on a new one");
        inner.stats.retry();
        // (Boxed: a retry is rare, and its state would otherwise sit in every request's
        // future.)
        Box::pin(retry(inner, host, uri, head, replay, asked_close)).await
    }
}

/// The error of a failed attempt: the client's own error when it is one already (a failed
/// request body), otherwise a request error with `error` as its source.
fn request_error(error: BoxError) -> Error {
    match error.downcast::<Error>() {
        Ok(error) => *error,
        Err(error) => Error::new(ErrorKind::Request, error),
    }
}

/// The second and last attempt of a request that met a stale pooled connection: on a new
/// connection (others pooled may be as stale as the first).
async fn retry<C>(
    inner: Arc<Inner<C>>,
    host: HostId,
    uri: Uri,
    head: RetryHead,
    replay: Bytes,
    asked_close: bool,
) -> Result<Response<ResponseBody>, Error>
where
    C: Connect,
{
    let checkout = inner.pool.take_or_slot_at(host, false);
    let (conn, history, reused) = open_or_wait(&inner, &uri, checkout).await?;
    inner.stats.request(reused);
    let none = http::HeaderMap::new();
    let request_head = RequestHead {
        method: &head.method,
        uri: &uri,
        version: head.version,
        headers: head.headers.as_deref().unwrap_or(&none),
        announce_keep_alive: inner.config.announce_keep_alive,
    };
    let body = ReqBody::full(replay);
    exchange_on(
        &inner,
        reused,
        host,
        conn,
        history,
        request_head,
        body,
        asked_close,
    )?
    .await
    .map_err(|failure| request_error(failure.error))
}

/// What [`Pool::take_or_slot`] gives for a client connection.
type CheckoutOrTurn<T> = CheckoutNow<PoolKey, ClientConn<T>>;

/// A connection to send a request on, its history, and whether it was reused.
type Opened<T> = (ClientConn<T>, History<ClientConn<T>>, bool);

/// What a checkout that found no idle connection leads to: the wait for a turn at the per-key
/// limit, then a new connection (or one handed over by another request).
async fn open_or_wait<C>(
    inner: &Inner<C>,
    uri: &Uri,
    checkout: CheckoutOrTurn<C::Response>,
) -> Result<Opened<C::Response>, Error>
where
    C: Connect,
{
    let checkout = match checkout {
        Ok(checkout) => checkout,
        Err(turn) => inner
            .pool
            .wait_turn(turn)
            .await
            .map_err(|_| Error::kind_only(ErrorKind::PoolTimeout))?,
    };
    match checkout {
        Checkout::Reused(pooled) => {
            let (io, history) = pooled.into_parts();
            Ok((io, history, true))
        }
        Checkout::Open(slot) => {
            let mut connector = inner.connector.clone();
            let connected = async {
                poll_fn(|cx| connector.poll_ready(cx)).await?;
                connector.call(uri.clone()).await
            }
            .await;
            match connected {
                Ok(io) => {
                    inner.stats.opened();
                    Ok((ClientConn::Bare(io), slot.into_history(), false))
                }
                Err(error) => {
                    inner.pool.connect_failed(slot);
                    Err(connect_error(error.into(), uri))
                }
            }
        }
    }
}

/// The client's error for a connector's: the refusal of https without TLS, a TLS handshake
/// failure, or a connect failure, the last two naming the host and port.
fn connect_error(error: BoxError, uri: &Uri) -> Error {
    if error.is::<NotHttp>() {
        return Error::kind_only(ErrorKind::HttpsWithoutTls);
    }
    #[cfg(feature = "rustls")]
    let error = match error.downcast::<super::tls::HandshakeFailed>() {
        Ok(failed) => return Error::new(ErrorKind::Tls, failed.0).with_authority(uri.authority()),
        Err(error) => error,
    };
    Error::new(ErrorKind::Connect, error).with_authority(uri.authority())
}

/// The exchange of a request on a connection taken from the pool.
#[allow(clippy::too_many_arguments)]
fn exchange_on<C>(
    inner: &Arc<Inner<C>>,
    reused: bool,
    host: HostId,
    conn: ClientConn<C::Response>,
    history: History<ClientConn<C::Response>>,
    head: RequestHead<'_>,
    body: ReqBody,
    asked_close: bool,
) -> Result<Exchange<C::Response>, Error>
where
    C: Connect,
{
    let lease = Lease::new(
        inner.pool.clone(),
        host,
        history,
        inner.config.keep_alive_margin,
        inner.config.honour_server_keep_alive,
        inner.config.last_allowed_request,
    );
    let Some(wire) = conn.into_wire() else {
        unreachable!("the pool never hands out a moved connection");
    };
    Exchange::start(wire, lease, head, body, reused, asked_close)
}

/// A copy of a request's head for a retry. Empty headers (the usual case) are not copied.
struct RetryHead {
    method: Method,
    version: Version,
    /// (Boxed: the copy allocates anyway, and every request's future has room for this.)
    headers: Option<Box<http::HeaderMap>>,
}

impl RetryHead {
    fn of(parts: &http::request::Parts) -> Self {
        RetryHead {
            method: parts.method.clone(),
            version: parts.version,
            headers: (!parts.headers.is_empty()).then(|| Box::new(parts.headers.clone())),
        }
    }
}

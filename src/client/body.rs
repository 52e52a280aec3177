//! Request and response bodies of the client, and the driver that runs a hyper connection from
//! inside them: no task per connection; the connection goes back to the pool, with hyper's
//! state, the moment the response ends.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{HeaderValue, CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt;
use hyper::body::{Buf as _, Bytes, Incoming};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::conn::{ClientConn, Hot, IdleSignal};
use super::pool::{History, HostId, Pool, Reuse};
use super::service::PoolKey;
use super::stats::PoolCloseReason;
use crate::header::{KeepAliveParams, KEEP_ALIVE};

/// The request body as sent on a pooled connection (one type, whatever the caller's body):
/// none, bytes kept for a replay, or the caller's stream, boxed. Only a stream costs an
/// allocation.
pub(crate) enum ReqBody {
    Empty,
    /// Taken when sent.
    Full(Option<Bytes>),
    Stream(UnsyncBoxBody<Bytes, crate::BoxError>),
}

impl ReqBody {
    /// The caller's body, streamed.
    pub(crate) fn stream<B>(body: B) -> Self
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<crate::BoxError>,
    {
        ReqBody::Stream(
            body.map_frame(|frame| frame.map_data(|mut data| data.copy_to_bytes(data.remaining())))
                .map_err(Into::into)
                .boxed_unsync(),
        )
    }

    /// Bytes held in full (a body kept for a replay).
    pub(crate) fn full(bytes: Bytes) -> Self {
        if bytes.is_empty() {
            ReqBody::Empty
        } else {
            ReqBody::Full(Some(bytes))
        }
    }
}

impl std::fmt::Debug for ReqBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ReqBody::Empty => "ReqBody::Empty",
            ReqBody::Full(_) => "ReqBody::Full",
            ReqBody::Stream(_) => "ReqBody::Stream",
        })
    }
}

impl Body for ReqBody {
    type Data = Bytes;
    type Error = crate::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            ReqBody::Empty => Poll::Ready(None),
            ReqBody::Full(bytes) => Poll::Ready(
                bytes
                    .take()
                    .filter(|bytes| !bytes.is_empty())
                    .map(|bytes| Ok(Frame::data(bytes))),
            ),
            ReqBody::Stream(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ReqBody::Empty => true,
            ReqBody::Full(bytes) => bytes.as_ref().is_none_or(Bytes::is_empty),
            ReqBody::Stream(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReqBody::Empty => SizeHint::with_exact(0),
            ReqBody::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |bytes| bytes.len() as u64))
            }
            ReqBody::Stream(body) => body.size_hint(),
        }
    }
}

/// Whether and how the connection may be reused, decided from the response head.
#[derive(Debug, Clone, Copy)]
pub(crate) enum AfterResponse {
    Reuse { keep_alive: KeepAliveParams },
    Close(PoolCloseReason),
}

impl AfterResponse {
    /// `head_request`: the request was `HEAD` (its response has no body, whatever its headers
    /// say).
    pub(crate) fn decide(
        request_asked_close: bool,
        head_request: bool,
        version: Version,
        status: http::StatusCode,
        headers: &HeaderMap,
    ) -> Self {
        if request_asked_close {
            return AfterResponse::Close(PoolCloseReason::ClientClose);
        }
        if status == http::StatusCode::SWITCHING_PROTOCOLS {
            return AfterResponse::Close(PoolCloseReason::ServerClose);
        }
        // One pass over the response's header names for everything below (a lookup per
        // header name hashed it each time); the values of the few names that matter are
        // looked up then (most responses have none of them but Content-Length).
        let mut transfer_encoding = None;
        let mut content_length = false;
        let (mut close, mut keep_alive_token) = (false, false);
        let mut keep_alive = KeepAliveParams::default();
        for name in headers.keys() {
            if name == CONTENT_LENGTH {
                content_length = true;
            } else if name == TRANSFER_ENCODING {
                transfer_encoding = headers.get_all(TRANSFER_ENCODING).iter().next_back();
            } else if name == CONNECTION {
                for value in headers.get_all(CONNECTION) {
                    for token in value.as_bytes().split(|&b| b == b',') {
                        let token = token.trim_ascii();
                        close |= token.eq_ignore_ascii_case(b"close");
                        keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
                    }
                }
            } else if name == KEEP_ALIVE {
                for value in headers.get_all(KEEP_ALIVE) {
                    keep_alive.merge(KeepAliveParams::parse(value.as_bytes()));
                }
            }
        }
        // RFC 9112 6.3: both framings at once may be a response-splitting attempt and "ought
        // to be handled as an error"; hyper reads it as chunked, the connection is not reused.
        if transfer_encoding.is_some() && content_length {
            return AfterResponse::Close(PoolCloseReason::Error);
        }
        let close = match version {
            Version::HTTP_11 => close,
            Version::HTTP_10 => !keep_alive_token || close,
            _ => true,
        };
        if close || delimited_by_close(head_request, status, transfer_encoding, content_length) {
            return AfterResponse::Close(PoolCloseReason::ServerClose);
        }
        AfterResponse::Reuse { keep_alive }
    }
}

/// Whether the response body ends only with the connection (RFC 9112 6.3: no Content-Length
/// and no chunked Transfer-Encoding on a response that has a body): such a connection can never
/// carry another response, whatever `Connection: keep-alive` says.
fn delimited_by_close(
    head_request: bool,
    status: http::StatusCode,
    last_transfer_encoding: Option<&HeaderValue>,
    content_length: bool,
) -> bool {
    let bodiless = head_request
        || status.is_informational()
        || status == http::StatusCode::NO_CONTENT
        || status == http::StatusCode::NOT_MODIFIED;
    if bodiless {
        return false;
    }
    if let Some(last) = last_transfer_encoding {
        // A coding other than chunked last: hyper reads until the close.
        let chunked = last
            .as_bytes()
            .rsplit(|&b| b == b',')
            .next()
            .is_some_and(|coding| coding.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        return !chunked;
    }
    !content_length
}

/// Runs one hyper connection for the request and response, and gives the socket back.
pub(crate) trait Drive: Send {
    /// Drives reading and writing; `Ready(Err)` when the connection failed: it is dropped
    /// then, and the caller says why with [`close`](Drive::close) once the body has told
    /// whether it was complete. `Ready(Ok)` when there is nothing left to drive (hyper's
    /// connection ended): the body alone tells what follows, and nothing here will wake the
    /// task. `Pending` registers the task for what hyper waits on.
    fn poll_drive(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), hyper::Error>>;
    /// Closes the connection for `reason` (counted once).
    fn close(&mut self, reason: PoolCloseReason);
    /// The response ended: returns the connection to the pool with hyper's state (or closes
    /// it). The driver's own allocation goes with the connection, for its next request.
    fn finish(self: Box<Self>);
    /// The identity of the connection's idle signal ([`IdleSignal::id`]), 0 if none.
    fn signal_id(&self) -> usize;
}

/// See [`Drive`].
pub(crate) struct Driver<T>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// hyper's state and the socket, boxed once per connection and handed back and forth
    /// with the pool without moving it.
    pub(crate) hot: Option<Box<Hot<T>>>,
    /// `None` only while the driver is kept for reuse in [`Hot::spare`] (a pool handle there
    /// would keep the pool alive through its own idle connection).
    pub(crate) pool: Option<Pool<PoolKey, ClientConn<T>>>,
    /// The host's place in the pool; `None` once the connection went back or was closed.
    pub(crate) host: Option<HostId>,
    pub(crate) history: Option<History<ClientConn<T>>>,
    pub(crate) after: AfterResponse,
    pub(crate) margin: Option<Duration>,
    pub(crate) honour_server: bool,
    /// hyper's connection has ended without an error (the server's FIN): whatever the
    /// response said, it cannot be reused, and polling it again would never wake anyone.
    pub(crate) ended: bool,
}

impl<T> std::fmt::Debug for Driver<T>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("after", &self.after)
            .finish()
    }
}

impl<T> Driver<T>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// The driver for a request on `hot`: the one its previous request used, if kept.
    pub(crate) fn for_request(
        mut hot: Box<Hot<T>>,
        pool: Pool<PoolKey, ClientConn<T>>,
        host: HostId,
        history: History<ClientConn<T>>,
        margin: Option<Duration>,
        honour_server: bool,
    ) -> Box<Self> {
        let spare = hot.spare.take();
        let fields = Driver {
            hot: Some(hot),
            pool: Some(pool),
            host: Some(host),
            history: Some(history),
            after: AfterResponse::Close(PoolCloseReason::Canceled),
            margin,
            honour_server,
            ended: false,
        };
        match spare {
            Some(mut driver) => {
                // (Emptied when it was kept: nothing is dropped here.)
                *driver = fields;
                driver
            }
            None => Box::new(fields),
        }
    }

    pub(crate) fn close_with(&mut self, reason: PoolCloseReason) {
        self.hot = None;
        if let (Some(host), Some(pool)) = (self.host.take(), self.pool.as_ref()) {
            tracing::debug!(reason = reason.name(), "closing client connection");
            pool.discard_at(host, reason);
        }
    }

    fn reuse_hint(&self, keep_alive: KeepAliveParams) -> Reuse {
        if !self.honour_server {
            return Reuse::default();
        }
        let close_by = keep_alive.timeout.map(|timeout| {
            let margin = self
                .margin
                .unwrap_or_else(|| (timeout / 4).min(Duration::from_secs(1)));
            Instant::now() + timeout.saturating_sub(margin)
        });
        Reuse {
            close_by,
            uses_left: keep_alive.max,
        }
    }
}

impl<T> Drive for Driver<T>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn poll_drive(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), hyper::Error>> {
        let Some(hot) = self.hot.as_mut().filter(|_| !self.ended) else {
            return Poll::Ready(Ok(()));
        };
        match hot.poll_conn(cx) {
            Poll::Ready(Err(error)) => {
                self.hot = None;
                Poll::Ready(Err(error))
            }
            // Done without an error while the sender lives: the connection closed. The body
            // may still be complete (a body delimited by the close, or a FIN right after it);
            // the connection is not reused.
            Poll::Ready(Ok(())) => {
                self.ended = true;
                Poll::Ready(Ok(()))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn close(&mut self, reason: PoolCloseReason) {
        self.close_with(reason);
    }

    fn signal_id(&self) -> usize {
        self.hot
            .as_ref()
            .map_or(0, |hot| IdleSignal::id(&hot.signal))
    }

    fn finish(mut self: Box<Self>) {
        if self.host.is_none() {
            return;
        }
        let keep_alive = match self.after {
            AfterResponse::Close(reason) => {
                self.close_with(reason);
                return;
            }
            AfterResponse::Reuse { .. } if self.ended => {
                self.close_with(PoolCloseReason::ServerFin);
                return;
            }
            AfterResponse::Reuse { keep_alive } => keep_alive,
        };
        if self.hot.is_none() || self.history.is_none() || self.pool.is_none() {
            // (Dropped as it is: the drop gives the host's place back.)
            return;
        }
        let reuse = self.reuse_hint(keep_alive);
        let (Some(mut hot), Some(host), Some(history), Some(pool)) = (
            self.hot.take(),
            self.host.take(),
            self.history.take(),
            self.pool.take(),
        ) else {
            unreachable!("all four checked just above");
        };
        // hyper's state stays with the socket (hot) until the pool parks it, and this
        // allocation with it, emptied, for the next request's driver.
        hot.spare = Some(self);
        pool.put_back_at(host, ClientConn::Hot(hot), history, reuse);
    }
}

impl<T> Drop for Driver<T>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn drop(&mut self) {
        if let (Some(host), Some(pool)) = (self.host.take(), self.pool.as_ref()) {
            // Dropped before the response ended: the connection is in doubt.
            pool.discard_at(host, PoolCloseReason::Canceled);
        }
    }
}

/// The body of a [`Client`](super::Client) response. Reading it to the end returns the
/// connection to the pool; dropping it earlier closes the connection.
pub struct ResponseBody {
    incoming: Incoming,
    driver: Option<Box<dyn Drive>>,
    /// The driver's [`Drive::signal_id`].
    signal: usize,
    /// The connection failed while the body was read; the body decides what it means.
    failed: bool,
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("pooled", &self.driver.is_some())
            .finish()
    }
}

impl ResponseBody {
    pub(crate) fn new(incoming: Incoming, driver: Option<Box<dyn Drive>>) -> Self {
        let signal = driver.as_ref().map_or(0, |driver| driver.signal_id());
        ResponseBody {
            incoming,
            driver,
            signal,
            failed: false,
        }
    }

    /// The response ended: the connection goes back to the pool (or is closed).
    pub(crate) fn finish(&mut self) {
        if let Some(driver) = self.driver.take() {
            driver.finish();
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        // All of a body with a length was read and the connection went back with its last
        // frame: hyper's body would only say that it ended (such a body has no trailers),
        // after a pass over its channels.
        if this.driver.is_none() && !this.failed && this.incoming.is_end_stream() {
            return Poll::Ready(None);
        }
        // hyper hands the body over only while this task drives its connection, so the body
        // is polled without registering the task (a wake-up from that hand-over would only
        // poll everything again at once); the connection's own registration (the socket)
        // wakes the task when something can progress. What hyper has already handed over
        // needs no pass of its dispatcher (a small body arrives with the head).
        let mut noop = Context::from_waker(std::task::Waker::noop());
        let mut driving = this.driver.is_some() && !this.failed;
        let mut driven = false;
        loop {
            let body_cx = if driving { &mut noop } else { &mut *cx };
            let incoming = &mut this.incoming;
            let polled = if this.signal != 0 {
                IdleSignal::body_polled(this.signal, || Pin::new(incoming).poll_frame(body_cx))
            } else {
                Pin::new(incoming).poll_frame(body_cx)
            };
            let frame = match polled {
                Poll::Pending if driving && !driven => {
                    driven = true;
                    if let Some(driver) = this.driver.as_mut() {
                        match driver.poll_drive(cx) {
                            Poll::Pending => {}
                            // Nothing left to drive: the body registers the task itself.
                            Poll::Ready(Ok(())) => driving = false,
                            Poll::Ready(Err(error)) => {
                                // The connection is gone. hyper hands a failure inside the
                                // body to the body itself, so the body below reports it, or
                                // ends cleanly if it was complete (then what failed was bytes
                                // the server sent after it).
                                tracing::debug!(%error, "client connection failed");
                                this.failed = true;
                                driving = false;
                            }
                        }
                    }
                    continue;
                }
                frame => frame,
            };
            return match frame {
                Poll::Ready(None) => {
                    if this.failed {
                        if let Some(mut driver) = this.driver.take() {
                            driver.close(PoolCloseReason::UnexpectedData);
                        }
                    }
                    this.finish();
                    Poll::Ready(None)
                }
                Poll::Ready(Some(Ok(frame))) => {
                    if this.incoming.is_end_stream() && !this.failed {
                        this.finish();
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                Poll::Ready(Some(Err(error))) => {
                    if let Some(mut driver) = this.driver.take() {
                        driver.close(PoolCloseReason::Error);
                    }
                    Poll::Ready(Some(Err(error)))
                }
                Poll::Pending => Poll::Pending,
            };
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        if self.driver.is_some() && self.incoming.is_end_stream() && !self.failed {
            self.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    fn decide(
        head: bool,
        version: Version,
        status: u16,
        headers: &[(&str, &str)],
    ) -> AfterResponse {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        AfterResponse::decide(
            false,
            head,
            version,
            StatusCode::from_u16(status).unwrap(),
            &map,
        )
    }

    fn reused(after: AfterResponse) -> bool {
        matches!(after, AfterResponse::Reuse { .. })
    }

    #[test]
    fn a_body_delimited_by_the_close_is_never_reused() {
        let v11 = Version::HTTP_11;
        assert!(!reused(decide(false, v11, 200, &[])));
        assert!(!reused(decide(
            false,
            Version::HTTP_10,
            200,
            &[("connection", "keep-alive")]
        )));
        assert!(!reused(decide(
            false,
            v11,
            200,
            &[("transfer-encoding", "gzip")]
        )));
        assert!(!reused(decide(
            false,
            v11,
            200,
            &[("transfer-encoding", "chunked, gzip")]
        )));
        assert!(reused(decide(false, v11, 200, &[("content-length", "2")])));
        assert!(reused(decide(
            false,
            v11,
            200,
            &[("transfer-encoding", "gzip, chunked")]
        )));
        assert!(reused(decide(
            false,
            v11,
            200,
            &[
                ("transfer-encoding", "gzip"),
                ("transfer-encoding", "Chunked")
            ]
        )));
        // No body, whatever the headers say.
        assert!(reused(decide(true, v11, 200, &[])));
        assert!(reused(decide(false, v11, 204, &[])));
        assert!(reused(decide(false, v11, 304, &[])));
    }

    #[test]
    fn both_framings_at_once_are_not_reused() {
        let after = decide(
            false,
            Version::HTTP_11,
            200,
            &[("content-length", "3"), ("transfer-encoding", "chunked")],
        );
        assert!(matches!(
            after,
            AfterResponse::Close(PoolCloseReason::Error)
        ));
    }
}

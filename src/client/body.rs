//! Request and response bodies of the client, and the lease that gives a connection back to
//! the pool: no task per connection; the connection goes back the moment its response ends
//! (with the head, when the whole body came with it).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt;
use hyper::body::{Buf as _, Bytes};
use tokio::io::{AsyncRead, AsyncWrite};

use super::conn::{ClientConn, Wire};
use super::error::{Error, ErrorKind};
use super::exchange::{SendError, Sender};
use super::h1::{Chunk, ChunkedDecoder, ProtocolError, RespFraming};
use super::key::PoolKey;
use super::last_request::LastAllowedRequest;
use super::pool::{History, HostId, Pool, Reuse};
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
        ReqBody::Stream(IntoBytes { body }.boxed_unsync())
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

pin_project_lite::pin_project! {
    /// The caller's body with its data as `Bytes` and its error boxed. (Not `map_frame`: that
    /// loses the body's size hint, and with it the Content-Length of a body of known size.)
    struct IntoBytes<B> {
        #[pin]
        body: B,
    }
}

impl<B> Body for IntoBytes<B>
where
    B: Body,
    B::Error: Into<crate::BoxError>,
{
    type Data = Bytes;
    type Error = crate::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.project().body.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(
                frame.map_data(|mut data| data.copy_to_bytes(data.remaining()))
            ))),
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
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
    /// From the response head and how its body is framed.
    pub(crate) fn decide(
        request_asked_close: bool,
        version: Version,
        status: http::StatusCode,
        headers: &HeaderMap,
        framing: RespFraming,
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
        let (mut transfer_encoding, mut content_length) = (false, false);
        let (mut close, mut keep_alive_token) = (false, false);
        let mut keep_alive = KeepAliveParams::default();
        for name in headers.keys() {
            if name == CONTENT_LENGTH {
                content_length = true;
            } else if name == TRANSFER_ENCODING {
                transfer_encoding = true;
            } else if name == CONNECTION {
                for value in headers.get_all(CONNECTION) {
                    for token in crate::header::list_items(value.as_bytes()) {
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
        // to be handled as an error"; it is read as chunked, the connection is not reused.
        // RFC 9112 6.1: Transfer-Encoding in an HTTP/1.0 message is faulty framing; the
        // connection is closed after it (a bodiless response to HEAD, or a 204 or 304, is still
        // returned).
        if transfer_encoding && (content_length || version == Version::HTTP_10) {
            return AfterResponse::Close(PoolCloseReason::Error);
        }
        let close = !crate::header::persists(version, close, keep_alive_token).unwrap_or(false);
        // A body delimited by the close can never be followed by another response, whatever
        // `Connection: keep-alive` says.
        if close || framing == RespFraming::Close {
            return AfterResponse::Close(PoolCloseReason::ServerClose);
        }
        AfterResponse::Reuse { keep_alive }
    }
}

/// A connection taken from the pool for one request: gives it back (or closes it) when the
/// response ends; dropped before, it closes it as canceled.
pub(crate) struct Lease<T>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    pool: Pool<PoolKey, ClientConn<T>>,
    /// The host's place in the pool; `None` once the connection went back or was closed.
    host: Option<HostId>,
    history: Option<History<ClientConn<T>>>,
    margin: Option<Duration>,
    honour_server: bool,
    last_request: LastAllowedRequest,
}

impl<T> Lease<T>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    pub(crate) fn new(
        pool: Pool<PoolKey, ClientConn<T>>,
        host: HostId,
        history: History<ClientConn<T>>,
        margin: Option<Duration>,
        honour_server: bool,
        last_request: LastAllowedRequest,
    ) -> Self {
        Lease {
            pool,
            host: Some(host),
            history: Some(history),
            margin,
            honour_server,
            last_request,
        }
    }

    /// Closes the connection (the caller drops it) for `reason`, counted once.
    pub(crate) fn close(&mut self, reason: PoolCloseReason) {
        if let Some(history) = self.history.take() {
            tracing::debug!(reason = reason.name(), "closing client connection");
            self.pool.discard(history, reason);
        }
    }

    /// The response ended: the connection goes back to the pool, or is closed, as `after`
    /// says.
    pub(crate) fn give_back(&mut self, wire: Wire<T>, after: AfterResponse) {
        let keep_alive = match after {
            AfterResponse::Close(reason) => {
                if reason == PoolCloseReason::ServerClose {
                    self.learn_who_closes(&wire);
                }
                return self.close(reason);
            }
            AfterResponse::Reuse { keep_alive } => keep_alive,
        };
        // Bytes after the response's end: nobody asked for them (and they must never be
        // read as the next request's answer).
        if !wire.buffered().is_empty() {
            return self.close(PoolCloseReason::UnexpectedData);
        }
        let reuse = self.reuse_hint(keep_alive);
        if let (Some(host), Some(history)) = (self.host.take(), self.history.take()) {
            self.pool
                .put_back_at(host, ClientConn::Hot(wire), history, reuse);
        }
    }

    fn reuse_hint(&self, keep_alive: KeepAliveParams) -> Reuse {
        if !self.honour_server {
            return Reuse::default();
        }
        let idle_limit = keep_alive.timeout.map(|timeout| {
            let margin = self
                .margin
                .unwrap_or_else(|| (timeout / 4).min(Duration::from_secs(1)));
            timeout.saturating_sub(margin)
        });
        // `max=1`: the next request is the last the server allows.
        let uses_left = match keep_alive.max {
            Some(1) if self.close_instead_of_last_request() => Some(0),
            max => max,
        };
        Reuse {
            idle_limit,
            uses_left,
        }
    }

    /// Whether to close rather than send the last request the server allows.
    fn close_instead_of_last_request(&self) -> bool {
        match self.last_request {
            LastAllowedRequest::Send => false,
            LastAllowedRequest::CloseInstead => true,
            LastAllowedRequest::Learn => self.host.is_some_and(|host| self.pool.closes_first(host)),
        }
    }

    /// A `Connection: close` answer came: under [`LastAllowedRequest::Learn`], a host whose
    /// FIN is in already (it closes first, and keeps the TIME_WAIT) is remembered.
    fn learn_who_closes(&self, wire: &Wire<T>) {
        let Some(host) = self.host else { return };
        if self.last_request == LastAllowedRequest::Learn
            && super::last_request::server_closed_first(&wire.io)
        {
            let request = self
                .history
                .as_ref()
                .map_or(1, |h| h.uses().saturating_add(1));
            tracing::debug!(
                request,
                "the server closed first after its close answer: learned"
            );
            self.pool.learn_closes_first(host, request);
        }
    }
}

impl<T> Drop for Lease<T>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn drop(&mut self) {
        // Dropped before the response ended: the connection is in doubt.
        self.close(PoolCloseReason::Canceled);
    }
}

/// A response body still on its connection, read frame by frame (type-erased over the
/// connection type).
trait ReadBody: Send {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>>;
    fn is_end_stream(&self) -> bool;
    fn size_hint(&self) -> SizeHint;
}

#[derive(Debug)]
enum Reading {
    /// This many bytes left.
    Length(u64),
    Chunked(ChunkedDecoder),
    /// Until the server's FIN.
    Close,
    /// Ended (the connection went back, or was closed).
    Done,
    /// Failed (reported at the next poll).
    Failed(ProtocolError),
}

/// See [`ReadBody`].
pub(crate) struct Streaming<T>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    wire: Option<Wire<T>>,
    lease: Lease<T>,
    reading: Reading,
    after: AfterResponse,
    /// Trailers read with the body's last data (returned as its last frame).
    trailers: Option<HeaderMap>,
    /// The rest of the request, when the response came before its end: sent while the body
    /// is read.
    upload: Option<Sender>,
}

impl<T> Streaming<T>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    pub(crate) fn new(
        wire: Wire<T>,
        lease: Lease<T>,
        framing: RespFraming,
        after: AfterResponse,
        upload: Option<Sender>,
    ) -> Self {
        Streaming {
            wire: Some(wire),
            lease,
            reading: match framing {
                RespFraming::Length(n) => Reading::Length(n),
                RespFraming::Chunked => Reading::Chunked(ChunkedDecoder::default()),
                RespFraming::Close => Reading::Close,
            },
            after,
            trailers: None,
            upload,
        }
    }

    /// The body ended: the connection goes back (or is closed).
    fn end(&mut self) {
        self.reading = Reading::Done;
        if self.upload.take().is_some() {
            // The response ended before the request: the rest of it will never go out.
            self.after = AfterResponse::Close(PoolCloseReason::Canceled);
        }
        if let Some(wire) = self.wire.take() {
            self.lease.give_back(wire, self.after);
        }
    }

    fn fail(
        &mut self,
        error: impl Into<crate::BoxError>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        self.reading = Reading::Done;
        self.wire = None;
        self.lease.close(PoolCloseReason::Error);
        Poll::Ready(Some(Err(Error::new(ErrorKind::ResponseBody, error))))
    }
}

/// The connection closed before the body's end.
const CUT: ProtocolError = ProtocolError("the connection closed before the response body's end");

impl<T> ReadBody for Streaming<T>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        if let (Some(upload), Some(wire)) = (self.upload.as_mut(), self.wire.as_mut()) {
            match upload.poll_send(wire, cx) {
                Poll::Ready(Ok(())) => self.upload = None,
                // The response may still end: it is read on, and the connection not reused.
                Poll::Ready(Err(SendError::Io(error))) => {
                    tracing::debug!(%error, "sending the rest of the request failed");
                    self.upload = None;
                    self.after = AfterResponse::Close(PoolCloseReason::Error);
                }
                // The request cannot be completed: the server would wait for its rest.
                Poll::Ready(Err(error)) => {
                    self.upload = None;
                    return self.fail(error.into_box());
                }
                Poll::Pending => {}
            }
        }
        loop {
            if let Reading::Failed(error) = &self.reading {
                let error = error.clone();
                return self.fail(error);
            }
            let Some(wire) = self.wire.as_mut() else {
                return Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))));
            };
            match &mut self.reading {
                Reading::Length(left) => {
                    if !wire.buffered().is_empty() {
                        let data = wire.take(usize::try_from(*left).unwrap_or(usize::MAX));
                        *left -= data.len() as u64;
                        if *left == 0 {
                            self.end();
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                Reading::Chunked(decoder) => match decoder.decode(wire.buffered(), false) {
                    Err(error) => return self.fail(error),
                    Ok((used, Chunk::Data(range))) => {
                        let data = Bytes::copy_from_slice(&wire.buffered()[range]);
                        wire.consume(used);
                        // What follows a chunk's end may be the body's end already here:
                        // then the connection goes back with this frame.
                        if !decoder.in_data() {
                            match decoder.decode(wire.buffered(), true) {
                                Ok((used, Chunk::End)) => {
                                    wire.consume(used);
                                    self.end();
                                }
                                Ok((used, Chunk::Trailers(trailers))) => {
                                    wire.consume(used);
                                    self.trailers = Some(trailers);
                                    self.end();
                                }
                                Ok((used, _)) => wire.consume(used),
                                Err(error) => self.reading = Reading::Failed(error),
                            }
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    Ok((used, Chunk::Trailers(trailers))) => {
                        wire.consume(used);
                        self.end();
                        return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                    }
                    Ok((used, Chunk::End)) => {
                        wire.consume(used);
                        self.end();
                        return Poll::Ready(None);
                    }
                    Ok((used, Chunk::More)) => wire.consume(used),
                },
                Reading::Close => {
                    if !wire.buffered().is_empty() {
                        let data = wire.take(usize::MAX);
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                Reading::Done | Reading::Failed(_) => return Poll::Ready(None),
            }
            match wire.poll_fill(cx) {
                Poll::Ready(Ok(0)) => {
                    if matches!(self.reading, Reading::Close) {
                        self.end();
                        return Poll::Ready(None);
                    }
                    return self.fail(CUT);
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(error)) => return self.fail(error),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.wire.is_none() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match self.reading {
            Reading::Length(left) => SizeHint::with_exact(left),
            Reading::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

/// The body of a [`Client`](super::Client) response. Reading it to the end returns the
/// connection to the pool; dropping it earlier closes the connection. (A small body that came
/// with its head is read already, and its connection back in the pool.)
pub struct ResponseBody {
    kind: Kind,
}

enum Kind {
    /// All of it (taken when read).
    Full(Option<Bytes>),
    Streaming(Box<dyn ReadBody>),
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("streaming", &matches!(self.kind, Kind::Streaming(_)))
            .finish()
    }
}

impl ResponseBody {
    /// A body read whole with its head.
    pub(crate) fn full(bytes: Bytes) -> Self {
        ResponseBody {
            kind: Kind::Full((!bytes.is_empty()).then_some(bytes)),
        }
    }

    /// A body still to read from its connection.
    pub(crate) fn streaming<T>(streaming: Streaming<T>) -> Self
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        ResponseBody {
            kind: Kind::Streaming(Box::new(streaming)),
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        match &mut self.kind {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|bytes| Ok(Frame::data(bytes)))),
            Kind::Streaming(body) => body.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Streaming(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Streaming(body) => body.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::h1::{parse_response_head, Parsed};

    fn decide(head: bool, version: &str, status: u16, headers: &[(&str, &str)]) -> AfterResponse {
        let mut text = format!("HTTP/{version} {status} X\r\n");
        for (name, value) in headers {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        text.push_str("\r\n");
        let Ok(Some(Parsed::Head(parsed))) = parse_response_head(text.as_bytes(), head) else {
            panic!("{text}");
        };
        AfterResponse::decide(
            false,
            parsed.parts.version,
            parsed.parts.status,
            &parsed.parts.headers,
            parsed.framing,
        )
    }

    fn reused(after: AfterResponse) -> bool {
        matches!(after, AfterResponse::Reuse { .. })
    }

    #[test]
    fn a_body_delimited_by_the_close_is_never_reused() {
        assert!(!reused(decide(false, "1.1", 200, &[])));
        assert!(!reused(decide(
            false,
            "1.0",
            200,
            &[("connection", "keep-alive")]
        )));
        assert!(reused(decide(
            false,
            "1.0",
            200,
            &[("connection", "keep-alive"), ("content-length", "0")]
        )));
        assert!(!reused(decide(
            false,
            "1.1",
            200,
            &[("transfer-encoding", "gzip")]
        )));
        assert!(!reused(decide(
            false,
            "1.1",
            200,
            &[("transfer-encoding", "chunked, gzip")]
        )));
        assert!(reused(decide(
            false,
            "1.1",
            200,
            &[("content-length", "2")]
        )));
        assert!(reused(decide(
            false,
            "1.1",
            200,
            &[("transfer-encoding", "gzip, chunked")]
        )));
        assert!(reused(decide(
            false,
            "1.1",
            200,
            &[
                ("transfer-encoding", "gzip"),
                ("transfer-encoding", "Chunked")
            ]
        )));
        // No body, whatever the headers say.
        assert!(reused(decide(true, "1.1", 200, &[])));
        assert!(reused(decide(false, "1.1", 204, &[])));
        assert!(reused(decide(false, "1.1", 304, &[])));
        assert!(!reused(decide(
            false,
            "1.1",
            200,
            &[("connection", "close"), ("content-length", "2")]
        )));
    }

    #[test]
    fn both_framings_at_once_are_not_reused() {
        let after = decide(
            false,
            "1.1",
            200,
            &[("content-length", "3"), ("transfer-encoding", "chunked")],
        );
        assert!(matches!(
            after,
            AfterResponse::Close(PoolCloseReason::Error)
        ));
    }
}

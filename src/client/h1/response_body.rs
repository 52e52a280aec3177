//! The body of a client response: read whole with its head, or still on its connection and
//! read frame by frame, the connection going back the moment the body ends.

use std::pin::Pin;
use std::task::{Context, Poll};

use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};

use super::after_response::AfterResponse;
use super::send::{SendError, Sender};
use super::wire::{Chunk, ChunkedDecoder, ProtocolError, RespFraming};
use crate::client::conn::Wire;
use crate::client::error::{Error, ErrorKind};
use crate::client::lease::Lease;
use crate::client::stats::PoolCloseReason;

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

/// The body of a [`Client`](crate::client::Client) response. Reading it to the end returns the
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

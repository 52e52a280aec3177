//! Writing a request on its connection: the encoded head, then the body in its framing (the
//! rest of it while the response is read, when the response comes first), then a flush.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::header::{HeaderValue, TRAILER};
use http::HeaderMap;
use http_body::Body;
use hyper::body::{Buf as _, Bytes};
use tokio::io::{AsyncRead, AsyncWrite};

use super::req_body::ReqBody;
use super::wire::{self, ProtocolError, ReqFraming};
use crate::client::conn::Wire;
use crate::client::error::{Error, ErrorKind};
use crate::BoxError;

/// Body data up to this size is copied into the write buffer (one write with what precedes
/// it); larger data is written from its own bytes.
const COPY_BELOW: usize = 8 * 1024;

/// The write buffer is flushed once it holds this much.
const WRITE_BATCH: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sending {
    Body,
    Flush,
    Done,
}

/// What writing the request failed on.
pub(crate) enum SendError {
    Io(io::Error),
    /// The caller's body failed.
    Body(BoxError),
    /// The body does not match its framing.
    Framing(ProtocolError),
}

impl SendError {
    /// As the error of a response body whose request could not be completed.
    pub(crate) fn into_box(self) -> BoxError {
        match self {
            SendError::Io(error) => error.into(),
            SendError::Body(error) => Error::new(ErrorKind::RequestBody, error).into(),
            SendError::Framing(error) => error.into(),
        }
    }
}

/// Writes the request: the encoded head, the body in its framing, a flush. Moves to the
/// response body when the response head comes before the request body's end (a server that
/// answers while it reads, such as an echo), so that the rest is sent while the response is
/// read.
pub(crate) struct Sender {
    body: ReqBody,
    framing: ReqFraming,
    /// Body bytes still to send with a length.
    left: u64,
    /// A large data frame, written after the write buffer; CR LF follows it when chunked.
    current: Bytes,
    crlf_after: bool,
    trailers: Option<HeaderMap>,
    /// The request's `Trailer` header values: the trailer fields it may send.
    declared_trailers: Vec<HeaderValue>,
    state: Sending,
}

impl Sender {
    /// Sends `body` in `framing`; the trailer fields it may send are those named by the
    /// request's `Trailer` header (`headers`).
    pub(crate) fn new(body: ReqBody, framing: ReqFraming, headers: &HeaderMap) -> Self {
        Sender {
            body,
            framing,
            left: match framing {
                ReqFraming::Length(n) => n,
                ReqFraming::Chunked => 0,
            },
            current: Bytes::new(),
            crlf_after: false,
            trailers: None,
            // (No allocation without a `Trailer` header, the usual request.)
            declared_trailers: match framing {
                ReqFraming::Chunked => headers.get_all(TRAILER).iter().cloned().collect(),
                ReqFraming::Length(_) => Vec::new(),
            },
            state: Sending::Body,
        }
    }

    /// Whether the whole request is written and flushed.
    pub(crate) fn is_done(&self) -> bool {
        self.state == Sending::Done
    }

    /// A sender with nothing left to send.
    pub(crate) fn done() -> Self {
        Sender {
            body: ReqBody::Empty,
            framing: ReqFraming::Length(0),
            left: 0,
            current: Bytes::new(),
            crlf_after: false,
            trailers: None,
            declared_trailers: Vec::new(),
            state: Sending::Done,
        }
    }

    fn push_data<T>(&mut self, wire: &mut Wire<T>, data: Bytes) -> Result<(), SendError> {
        if data.is_empty() {
            // (An empty chunk would end a chunked body.)
            return Ok(());
        }
        let write = &mut wire.buf.write;
        match self.framing {
            ReqFraming::Length(_) => {
                if data.len() as u64 > self.left {
                    return Err(SendError::Framing(ProtocolError(
                        "the request body is longer than its Content-Length",
                    )));
                }
                self.left -= data.len() as u64;
            }
            ReqFraming::Chunked => {
                wire::push_chunk_size(write, data.len());
            }
        }
        if data.len() < COPY_BELOW {
            write.extend_from_slice(&data);
            if self.framing == ReqFraming::Chunked {
                write.extend_from_slice(b"\r\n");
            }
        } else {
            self.current = data;
            self.crlf_after = self.framing == ReqFraming::Chunked;
        }
        Ok(())
    }

    fn end_body<T>(&mut self, wire: &mut Wire<T>) -> Result<(), SendError> {
        match self.framing {
            ReqFraming::Length(_) if self.left > 0 => Err(SendError::Framing(ProtocolError(
                "the request body is shorter than its Content-Length",
            ))),
            ReqFraming::Length(_) => Ok(()),
            ReqFraming::Chunked => {
                let write = &mut wire.buf.write;
                write.extend_from_slice(b"0\r\n");
                if let Some(trailers) = &self.trailers {
                    wire::push_trailers(write, trailers, &self.declared_trailers);
                }
                write.extend_from_slice(b"\r\n");
                Ok(())
            }
        }
    }

    /// Writes what it can; `Ready(Ok)` once the whole request is written and flushed.
    pub(crate) fn poll_send<T>(
        &mut self,
        wire: &mut Wire<T>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), SendError>>
    where
        T: AsyncRead + AsyncWrite + Unpin,
    {
        loop {
            // Body frames are gathered while little is buffered, so that a small body goes in
            // one write with the head.
            let mut body_pending = false;
            while self.state == Sending::Body
                && self.current.is_empty()
                && wire.buf.write.len() - wire.buf.written < WRITE_BATCH
            {
                match Pin::new(&mut self.body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                        Ok(data) => self.push_data(wire, data)?,
                        Err(frame) => {
                            if let Ok(trailers) = frame.into_trailers() {
                                self.trailers = Some(trailers);
                            }
                        }
                    },
                    Poll::Ready(Some(Err(error))) => {
                        return Poll::Ready(Err(SendError::Body(error)))
                    }
                    Poll::Ready(None) => {
                        self.end_body(wire)?;
                        self.state = Sending::Flush;
                    }
                    Poll::Pending => {
                        body_pending = true;
                        break;
                    }
                }
            }
            match wire.poll_write_buffered(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(error)) => return Poll::Ready(Err(SendError::Io(error))),
                Poll::Pending => return Poll::Pending,
            }
            while !self.current.is_empty() {
                match Pin::new(&mut wire.io).poll_write(cx, &self.current) {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(SendError::Io(io::ErrorKind::WriteZero.into())))
                    }
                    Poll::Ready(Ok(n)) => self.current.advance(n),
                    Poll::Ready(Err(error)) => return Poll::Ready(Err(SendError::Io(error))),
                    Poll::Pending => return Poll::Pending,
                }
            }
            if self.crlf_after {
                self.crlf_after = false;
                wire.buf.write.extend_from_slice(b"\r\n");
                continue;
            }
            match self.state {
                Sending::Flush => match Pin::new(&mut wire.io).poll_flush(cx) {
                    Poll::Ready(Ok(())) => {
                        self.state = Sending::Done;
                        return Poll::Ready(Ok(()));
                    }
                    Poll::Ready(Err(error)) => return Poll::Ready(Err(SendError::Io(error))),
                    Poll::Pending => return Poll::Pending,
                },
                Sending::Done => return Poll::Ready(Ok(())),
                // What was written may sit in a buffering transport (TLS) until flushed: it
                // is flushed before the wait for the body's next frame.
                Sending::Body if body_pending => {
                    return match Pin::new(&mut wire.io).poll_flush(cx) {
                        Poll::Ready(Err(error)) => Poll::Ready(Err(SendError::Io(error))),
                        _ => Poll::Pending,
                    };
                }
                Sending::Body => {}
            }
        }
    }
}

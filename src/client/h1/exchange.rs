//! One request and its response head on a pooled connection: the request written (head, then
//! body), the response read while it is, and the connection handed to the response body, or
//! straight back to the pool when the whole body came with the head.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderMap, Method, Response, Uri, Version};
use http_body::Body;
use tokio::io::{AsyncRead, AsyncWrite};

use super::after_response::AfterResponse;
use super::req_body::ReqBody;
use super::response_body::{ResponseBody, Streaming};
use super::send::{SendError, Sender};
use super::wire::{self, BodyLength, Parsed, ProtocolError, RespFraming};
use crate::client::conn::Wire;
use crate::client::error::{Error, ErrorKind};
use crate::client::lease::Lease;
use crate::client::stats::PoolCloseReason;
use crate::BoxError;

/// A failed attempt; `stale` when no response byte had arrived.
pub(crate) struct Failure {
    pub(crate) error: BoxError,
    pub(crate) stale: bool,
}

/// The connection ended with the request unanswered.
const CLOSED_BEFORE_RESPONSE: ProtocolError =
    ProtocolError("connection closed by the server before a response");

const TOO_MANY_INTERIM: ProtocolError =
    ProtocolError("the server sent too many interim (1xx) responses");

const CLOSED_IN_HEAD: ProtocolError =
    ProtocolError("connection closed by the server in the middle of the response head");

/// The head of the request being sent.
pub(crate) struct RequestHead<'a> {
    pub(crate) method: &'a Method,
    pub(crate) uri: &'a Uri,
    pub(crate) version: Version,
    pub(crate) headers: &'a HeaderMap,
    /// An HTTP/1.1 request carries `Connection: keep-alive` when the caller set no
    /// `Connection` header ([`ClientConfig::announce_keep_alive`](super::ClientConfig::announce_keep_alive)).
    pub(crate) announce_keep_alive: bool,
}

/// Interim (1xx) responses skipped before a final one, at most.
const MAX_INTERIM: u8 = 32;

/// See the module docs. Dropped before its response head, it closes the connection.
pub(crate) struct Exchange<T>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    wire: Option<Wire<T>>,
    lease: Option<Lease<T>>,
    sender: Sender,
    /// Writing the request failed; reported unless a response arrives anyway.
    send_error: Option<SendError>,
    /// A response byte has arrived (a failure from here on may have been processed).
    received: bool,
    /// Interim responses skipped so far.
    interim: u8,
    /// Where the search for the response head's end stopped.
    head_end: wire::SectionEnd,
    reused: bool,
    asked_close: bool,
    head_request: bool,
    connect: bool,
}

impl<T> Exchange<T>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Encodes the request's head on `wire`; nothing is written until polled. A request that
    /// cannot be sent as it is fails here (the connection goes back unused).
    pub(crate) fn start(
        mut wire: Wire<T>,
        mut lease: Lease<T>,
        head: RequestHead<'_>,
        body: ReqBody,
        reused: bool,
        asked_close: bool,
    ) -> Result<Self, Error> {
        // (What the body's own `Body` impl says of itself.)
        let length = if body.is_end_stream() {
            BodyLength::Empty
        } else {
            body.size_hint()
                .exact()
                .map_or(BodyLength::Unknown, BodyLength::Exact)
        };
        let encoded = wire::encode_request_head(
            &mut wire.buf.write,
            head.method,
            head.uri,
            head.version,
            head.headers,
            length,
            head.announce_keep_alive,
        );
        let framing = match encoded {
            Ok(framing) => framing,
            Err(error) => {
                wire.buf.write.clear();
                lease.give_back(
                    wire,
                    AfterResponse::Reuse {
                        keep_alive: Default::default(),
                    },
                );
                return Err(Error::new(ErrorKind::Request, error));
            }
        };
        Ok(Exchange {
            wire: Some(wire),
            lease: Some(lease),
            sender: Sender::new(body, framing, head.headers),
            send_error: None,
            received: false,
            interim: 0,
            head_end: wire::SectionEnd::default(),
            reused,
            asked_close,
            head_request: *head.method == Method::HEAD,
            connect: *head.method == Method::CONNECT,
        })
    }

    /// The attempt failed: the connection is closed.
    fn fail(&mut self, error: BoxError) -> Poll<Result<Response<ResponseBody>, Failure>> {
        let stale = !self.received;
        self.wire = None;
        if let Some(mut lease) = self.lease.take() {
            // A reused connection that failed before any response byte was dead on arrival
            // (the server closed it while it sat idle): counted apart from real errors.
            lease.close(if stale && self.reused {
                PoolCloseReason::Stale
            } else {
                PoolCloseReason::Error
            });
        }
        Poll::Ready(Err(Failure { error, stale }))
    }

    /// The request could not be written and no response came: the error to report.
    fn send_failure(&mut self, fallback: BoxError) -> BoxError {
        match self.send_error.take() {
            Some(SendError::Io(error)) => error.into(),
            Some(SendError::Body(error)) => {
                // The caller's body failed: not a stale connection, never retried.
                self.received = true;
                Error::new(ErrorKind::RequestBody, error).into()
            }
            Some(SendError::Framing(error)) => {
                self.received = true;
                error.into()
            }
            None => fallback,
        }
    }
}

impl<T> Future for Exchange<T>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Output = Result<Response<ResponseBody>, Failure>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some(wire) = this.wire.as_mut() else {
            unreachable!("an exchange is not polled after it is done");
        };
        if !this.sender.is_done() && this.send_error.is_none() {
            match this.sender.poll_send(wire, cx) {
                // The socket failed: what the server answered before (if anything) still
                // decides; the failure is reported if nothing is there.
                Poll::Ready(Err(error @ SendError::Io(_))) => this.send_error = Some(error),
                // The request cannot be completed (the server would wait for the rest).
                Poll::Ready(Err(error)) => {
                    this.send_error = Some(error);
                    let error = this.send_failure(CLOSED_BEFORE_RESPONSE.into());
                    return this.fail(error);
                }
                Poll::Ready(Ok(())) | Poll::Pending => {}
            }
        }
        // The response is read while the request is still being written too: an early
        // answer, or a reset.
        let head = loop {
            let buffered = wire.buffered();
            if !buffered.is_empty()
                && (this.head_end.should_parse(buffered) || buffered.len() >= wire::MAX_HEAD)
            {
                match wire::parse_response_head(buffered, this.head_request) {
                    Ok(Some(Parsed::Interim(len))) => {
                        wire.consume(len);
                        this.head_end = wire::SectionEnd::default();
                        this.interim += 1;
                        if this.interim > MAX_INTERIM {
                            return this.fail(TOO_MANY_INTERIM.into());
                        }
                        continue;
                    }
                    Ok(Some(Parsed::Head(head))) => {
                        wire.consume(head.len);
                        break head;
                    }
                    Ok(None) => {}
                    Err(error) => return this.fail(error.into()),
                }
            }
            match wire.poll_fill(cx) {
                Poll::Ready(Ok(0)) => {
                    let fallback = if this.received {
                        CLOSED_IN_HEAD
                    } else {
                        CLOSED_BEFORE_RESPONSE
                    };
                    let error = this.send_failure(fallback.into());
                    return this.fail(error);
                }
                Poll::Ready(Ok(_)) => this.received = true,
                Poll::Ready(Err(error)) => {
                    let error = this.send_failure(error.into());
                    return this.fail(error);
                }
                // The socket failed for writing and no answer is there: none will come.
                Poll::Pending if this.send_error.is_some() => {
                    let error = this.send_failure(CLOSED_BEFORE_RESPONSE.into());
                    return this.fail(error);
                }
                Poll::Pending => return Poll::Pending,
            }
        };

        let (Some(mut wire), Some(mut lease)) = (this.wire.take(), this.lease.take()) else {
            unreachable!("taken only here and in fail");
        };
        let mut framing = head.framing;
        let mut after = AfterResponse::decide(
            this.asked_close,
            head.parts.version,
            head.parts.status,
            &head.parts.headers,
            framing,
        );
        if this.connect && head.parts.status.is_success() {
            // A tunnel from here on (RFC 9110 9.3.6: its framing headers mean nothing), which
            // this client does not carry: never pooled.
            framing = RespFraming::Length(0);
            after = AfterResponse::Close(PoolCloseReason::ServerClose);
        }
        // Answered before the request was all sent. The rest still goes out while the
        // response is read (RFC 9112 9.5), unless the server closes anyway or the socket
        // failed; then what is left never goes out and the connection is not reused.
        let mut upload = None;
        if !this.sender.is_done() {
            match after {
                AfterResponse::Reuse { .. } if this.send_error.is_none() => {
                    upload = Some(std::mem::replace(&mut this.sender, Sender::done()));
                }
                AfterResponse::Reuse { .. } => {
                    after = AfterResponse::Close(PoolCloseReason::Error);
                }
                AfterResponse::Close(_) => {}
            }
        }
        let body = match framing {
            RespFraming::Length(n) if wire.buffered().len() as u64 >= n => {
                // The whole body came with the head: the connection goes back now (or is
                // closed, if the request is not all sent: nobody would send the rest).
                if upload.is_some() {
                    after = AfterResponse::Close(PoolCloseReason::Canceled);
                }
                let data = wire.take(n as usize);
                lease.give_back(wire, after);
                ResponseBody::full(data)
            }
            framing => ResponseBody::streaming(Streaming::new(wire, lease, framing, after, upload)),
        };
        Poll::Ready(Ok(Response::from_parts(head.parts, body)))
    }
}

//! The request body as a pooled connection sends it: one type whatever the caller's body.

use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt;
use hyper::body::{Buf as _, Bytes};

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

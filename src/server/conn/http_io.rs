//! The stream as hyper reads it: the handshake's stream (the socket itself for plain HTTP),
//! with the request bytes observed for the connection's timers, and bytes handed back when
//! hyper's state is taken apart.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::state::Shared;

/// See the module docs. Reads see the HTTP bytes (after TLS), so the header timeout starts at
/// a head's first byte and a body's progress is counted in request bytes, whatever the
/// encryption; an end of the stream (the client's FIN, or its TLS `close_notify`) counts as
/// the client's close.
#[derive(Debug)]
pub(crate) struct HttpIo<T> {
    inner: T,
    shared: Arc<Shared>,
}

impl<T> HttpIo<T> {
    pub(crate) fn new(inner: T, shared: Arc<Shared>) -> Self {
        HttpIo { inner, shared }
    }

    /// Hands back bytes hyper had read but not parsed (the start of a pipelined head), so
    /// the next reader gets them first.
    pub(crate) fn unread(&mut self, bytes: &[u8]) {
        self.shared.unread(bytes);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for HttpIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        // Under TLS, bytes handed back wait here (in plain HTTP they went back to the socket's
        // read-ahead, below).
        if this.shared.cleartext || !this.shared.take_unread(buf) {
            ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        }
        let read = &buf.filled()[before..];
        if !read.is_empty() {
            this.shared.delivered(read);
        } else if buf.remaining() > 0 {
            if this.shared.hold_eof(cx) {
                return Poll::Pending;
            }
            this.shared.stream_ended();
        }
        Poll::Ready(Ok(()))
    }
}

delegate_async_write!(impl<T> for HttpIo<T> => inner where T: AsyncWrite + Unpin);

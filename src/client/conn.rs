//! A client connection as the pool keeps it: hot (hyper's HTTP/1 state kept, for reuse within
//! moments) or parked (the bare socket, once idle for the pool's `park_after`).

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::task::{Context, Poll};

use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Bytes;
use hyper::client::conn::http1::{Connection, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use super::io::CountingIo;
use super::pool::Idle;
use super::stats::PoolCloseReason;
use crate::BoxError;

/// The request body type of pooled connections (one type, whatever the caller's body).
pub(crate) type ReqBody = UnsyncBoxBody<Bytes, BoxError>;

/// hyper's HTTP/1 client connection over a pooled socket.
pub(crate) type Http1<T> = Connection<TokioIo<CountingIo<T>>, ReqBody>;

/// See the module docs.
pub(crate) enum ClientConn<T>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// The bare socket: a request builds hyper's state on it.
    Bare(T),
    /// hyper's state kept: the next request goes straight out. Boxed, so a parked
    /// connection does not pay for the size of hyper's state.
    Hot(Box<Hot<T>>),
    /// Moved out (transient).
    Gone,
}

/// hyper's state kept with its socket.
pub(crate) struct Hot<T>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    pub(crate) tx: SendRequest<ReqBody>,
    pub(crate) conn: Http1<T>,
    /// Bytes read on the socket so far (to tell whether a failure saw any response).
    pub(crate) read: Arc<AtomicU64>,
}

impl<T> std::fmt::Debug for ClientConn<T>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ClientConn::Bare(_) => "ClientConn::Bare",
            ClientConn::Hot(_) => "ClientConn::Hot",
            ClientConn::Gone => "ClientConn::Gone",
        })
    }
}

/// What a hyper error on an idle connection means for the pool.
fn idle_error_reason(error: &hyper::Error) -> PoolCloseReason {
    let io = std::error::Error::source(error).and_then(|s| s.downcast_ref::<std::io::Error>());
    if let Some(io) = io {
        if io.kind() == std::io::ErrorKind::UnexpectedEof {
            // The server's FIN without a TLS close_notify.
            return PoolCloseReason::ServerFin;
        }
        PoolCloseReason::Error
    } else {
        // A protocol error while nothing was asked: bytes the server sent on its own.
        PoolCloseReason::UnexpectedData
    }
}

impl<T> Idle for ClientConn<T>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<PoolCloseReason> {
        match self {
            ClientConn::Bare(io) => Idle::poll_idle(io, cx),
            // hyper reads an idle connection itself: EOF ends it, any byte is an error.
            ClientConn::Hot(hot) => match hot.conn.poll_without_shutdown(cx) {
                Poll::Ready(Ok(())) => Poll::Ready(PoolCloseReason::ServerFin),
                Poll::Ready(Err(error)) => Poll::Ready(idle_error_reason(&error)),
                Poll::Pending => Poll::Pending,
            },
            ClientConn::Gone => Poll::Ready(PoolCloseReason::Error),
        }
    }

    fn park(&mut self) -> Result<(), PoolCloseReason> {
        let ClientConn::Hot(hot) = std::mem::replace(self, ClientConn::Gone) else {
            return Ok(());
        };
        let Hot { tx, mut conn, .. } = *hot;
        // Without its sender an idle hyper connection is done at once and gives its socket back.
        drop(tx);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match conn.poll_without_shutdown(&mut cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(error)) => return Err(idle_error_reason(&error)),
            Poll::Pending => return Err(PoolCloseReason::Error),
        }
        let parts = conn.into_parts();
        if !parts.read_buf.is_empty() {
            return Err(PoolCloseReason::UnexpectedData);
        }
        *self = ClientConn::Bare(parts.io.into_inner().inner);
        Ok(())
    }

    fn parks(&self) -> bool {
        matches!(self, ClientConn::Hot(_))
    }
}

//! A client connection as the pool keeps it: hot (the socket with its read and write buffers,
//! for reuse within moments) or parked (the bare socket, once idle for the pool's
//! `park_after`). No HTTP state lives between requests: a connection that comes back has read
//! its response to the end, so its buffers are empty.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::h1::wire::MAX_HEAD;
use super::pool::Idle;
use super::stats::PoolCloseReason;

/// The read buffer's first size: a usual response head and a small body in one read.
const READ_BUFFER: usize = 8 * 1024;

/// See the module docs.
pub(crate) enum ClientConn<T> {
    /// The bare socket: a request gives it buffers.
    Bare(T),
    /// The socket with its buffers: the next request goes straight out.
    Hot(Wire<T>),
    /// Moved out (transient).
    Gone,
}

impl<T> ClientConn<T> {
    /// The connection with its buffers, ready for a request.
    pub(crate) fn into_wire(self) -> Option<Wire<T>> {
        match self {
            ClientConn::Hot(wire) => Some(wire),
            ClientConn::Bare(io) => Some(Wire::new(io)),
            ClientConn::Gone => None,
        }
    }
}

/// A socket and the buffers a request and its response go through.
pub(crate) struct Wire<T> {
    pub(crate) io: T,
    pub(crate) buf: Box<Buffers>,
}

/// What a [`Wire`] has read and not yet consumed (`read[start..end]`), and what it has to
/// write (`write[written..]`).
pub(crate) struct Buffers {
    read: Vec<u8>,
    start: usize,
    end: usize,
    pub(crate) write: Vec<u8>,
    pub(crate) written: usize,
}

impl<T> Wire<T> {
    pub(crate) fn new(io: T) -> Self {
        Wire {
            io,
            buf: Box::new(Buffers {
                read: vec![0; READ_BUFFER],
                start: 0,
                end: 0,
                write: Vec::with_capacity(256),
                written: 0,
            }),
        }
    }

    /// The bytes read and not yet consumed.
    pub(crate) fn buffered(&self) -> &[u8] {
        &self.buf.read[self.buf.start..self.buf.end]
    }

    /// Consumes `n` buffered bytes.
    pub(crate) fn consume(&mut self, n: usize) {
        let buf = &mut *self.buf;
        buf.start = (buf.start + n).min(buf.end);
        if buf.start == buf.end {
            buf.start = 0;
            buf.end = 0;
        }
    }

    /// Takes `n` buffered bytes (at most what is buffered) as a frame of their own.
    pub(crate) fn take(&mut self, n: usize) -> hyper::body::Bytes {
        let n = n.min(self.buf.end - self.buf.start);
        let bytes = hyper::body::Bytes::copy_from_slice(&self.buffered()[..n]);
        self.consume(n);
        bytes
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Wire<T> {
    /// Reads more into the buffer (growing it, up to what a head may take, when it is full of
    /// unconsumed bytes): `Ready(Ok(0))` at the peer's FIN.
    pub(crate) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let buf = &mut *self.buf;
        if buf.end == buf.read.len() {
            if buf.start > 0 {
                buf.read.copy_within(buf.start..buf.end, 0);
                buf.end -= buf.start;
                buf.start = 0;
            } else if buf.read.len() <= MAX_HEAD {
                let len = buf.read.len() * 2;
                buf.read.resize(len, 0);
            } else {
                return Poll::Ready(Err(io::Error::other("the read buffer is full")));
            }
        }
        let mut read = ReadBuf::new(&mut buf.read[buf.end..]);
        match Pin::new(&mut self.io).poll_read(cx, &mut read) {
            Poll::Ready(Ok(())) => {
                let n = read.filled().len();
                buf.end += n;
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Writes what the write buffer holds; `Ready(Ok)` once it is all written (the buffer is
    /// emptied then).
    pub(crate) fn poll_write_buffered(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let buf = &mut *self.buf;
        while buf.written < buf.write.len() {
            match Pin::new(&mut self.io).poll_write(cx, &buf.write[buf.written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => buf.written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        buf.write.clear();
        buf.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<T> std::fmt::Debug for ClientConn<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ClientConn::Bare(_) => "ClientConn::Bare",
            ClientConn::Hot(_) => "ClientConn::Hot",
            ClientConn::Gone => "ClientConn::Gone",
        })
    }
}

/// A plain TCP socket is registered with the runtime again when it is parked, so that its
/// registration (tokio's per-socket readiness state, 256 bytes) is allocated then, next to the
/// other parked connections' registrations, instead of staying where it was made: among the
/// buffers of the connection's first request, freed since, where it alone would keep a page of
/// the heap resident (measured: 4.6 KB resident per idle connection after `malloc_trim`
/// without the move, 0.5 KB with it, `client_figures memory`). Other connection types are left as they are. `Err` when the
/// socket could not be registered again (it is closed then).
fn reregister<T: 'static>(io: T) -> Result<T, PoolCloseReason> {
    let mut io = Some(io);
    let any: &mut dyn std::any::Any = &mut io;
    if let Some(tcp) = any.downcast_mut::<Option<tokio::net::TcpStream>>() {
        let moved = tcp.take().and_then(|stream| {
            // Both steps close the socket when they fail.
            let std = stream.into_std().ok()?;
            tokio::net::TcpStream::from_std(std).ok()
        });
        *tcp = Some(moved.ok_or(PoolCloseReason::Error)?);
    }
    io.ok_or(PoolCloseReason::Error)
}

impl<T> Idle for ClientConn<T>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<PoolCloseReason> {
        match self {
            ClientConn::Bare(io) => Idle::poll_idle(io, cx),
            // (A connection comes back with its buffer empty; bytes in it were sent unasked.)
            ClientConn::Hot(wire) if !wire.buffered().is_empty() => {
                Poll::Ready(PoolCloseReason::UnexpectedData)
            }
            ClientConn::Hot(wire) => Idle::poll_idle(&mut wire.io, cx),
            ClientConn::Gone => Poll::Ready(PoolCloseReason::Error),
        }
    }

    fn park(&mut self) -> Result<(), PoolCloseReason> {
        let ClientConn::Hot(wire) = std::mem::replace(self, ClientConn::Gone) else {
            return Ok(());
        };
        if !wire.buffered().is_empty() {
            return Err(PoolCloseReason::UnexpectedData);
        }
        *self = ClientConn::Bare(reregister(wire.io)?);
        Ok(())
    }

    fn parks(&self) -> bool {
        matches!(self, ClientConn::Hot(_))
    }
}

//! "Has the peer sent its FIN?" without losing a byte.
//!
//! A FIN shows up as a read that returns zero bytes. Noticing it at once is what keeps sockets
//! out of CLOSE_WAIT: the side that got the FIN must close its own end, and it can only do so
//! once it knows.
//!
//! Two shapes of the same question live here:
//!
//! - [`idle_event`] for a connection nobody is using: it waits for readability and looks at one
//!   byte. Zero bytes is the peer's FIN; any byte is a protocol violation (nobody asked for it)
//!   on an idle client connection, or the next request on a parked server connection. It is
//!   event-driven: no timer, no CPU while nothing happens. Two modes: [`poll_idle_event`]
//!   peeks (a parked server connection, whose next byte must stay for hyper), and
//!   [`poll_idle_read`] reads the byte (any stream, TLS included, which cannot peek: for idle
//!   client connections in the pool, where a byte is never wanted).
//! - [`ReadAhead`] for a connection in use whose reader has stopped reading (a server whose
//!   handler runs while pipelined requests sit unread). It reads ahead into a small bounded
//!   buffer of its own so that a FIN queued behind those bytes becomes visible, and hands the
//!   bytes back to the real reader in order. Once the buffer is full it stops reading (and stops
//!   watching) until the reader drains it, so unread bytes never make it spin.

use std::future::poll_fn;
use std::io;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::TcpStream;

/// What happened on a connection that nobody was reading.
#[derive(Debug)]
#[non_exhaustive]
pub enum IdleEvent {
    /// The peer sent its FIN (a read returned zero bytes).
    PeerClosed,
    /// The peer sent bytes nobody asked for.
    UnexpectedData,
    /// The socket reported an error (for example a reset).
    Error(io::Error),
}

/// Polls for the next [`IdleEvent`] on an idle connection without consuming any byte.
///
/// Registers interest in readability, so the task is woken when the peer sends a FIN, data or
/// a reset. Only for connections that have no unread bytes: with bytes queued it reports
/// [`IdleEvent::UnexpectedData`] at once.
pub fn poll_idle_event(stream: &TcpStream, cx: &mut Context<'_>) -> Poll<IdleEvent> {
    let mut byte = [0u8; 1];
    let mut buf = ReadBuf::new(&mut byte);
    match ready!(stream.poll_peek(cx, &mut buf)) {
        Ok(0) => Poll::Ready(IdleEvent::PeerClosed),
        Ok(_) => Poll::Ready(IdleEvent::UnexpectedData),
        Err(error) => Poll::Ready(IdleEvent::Error(error)),
    }
}

/// Polls for the next [`IdleEvent`] on an idle stream of any kind by reading at most one byte
/// (a TLS stream cannot peek). The byte, if one came, is consumed: only for connections on
/// which any byte is a violation, such as idle pooled client connections. A TLS stream that
/// reports the peer's FIN without its `close_notify` (`UnexpectedEof`) counts as
/// [`IdleEvent::PeerClosed`].
pub fn poll_idle_read<R: AsyncRead + Unpin + ?Sized>(
    io: &mut R,
    cx: &mut Context<'_>,
) -> Poll<IdleEvent> {
    let mut byte = [0u8; 1];
    let mut buf = ReadBuf::new(&mut byte);
    match ready!(std::pin::Pin::new(io).poll_read(cx, &mut buf)) {
        Ok(()) if buf.filled().is_empty() => Poll::Ready(IdleEvent::PeerClosed),
        Ok(()) => Poll::Ready(IdleEvent::UnexpectedData),
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => {
            Poll::Ready(IdleEvent::PeerClosed)
        }
        Err(error) => Poll::Ready(IdleEvent::Error(error)),
    }
}

/// Waits for the next [`IdleEvent`] on an idle connection; see [`poll_idle_event`].
///
/// ```no_run
/// # async fn example(stream: tokio::net::TcpStream) {
/// use keepalive::fin::{idle_event, IdleEvent};
/// match idle_event(&stream).await {
///     IdleEvent::PeerClosed => { /* drop the stream now: no CLOSE_WAIT */ }
///     _ => { /* not reusable either */ }
/// }
/// # }
/// ```
pub async fn idle_event(stream: &TcpStream) -> IdleEvent {
    poll_fn(|cx| poll_idle_event(stream, cx)).await
}

/// One read from a shared `&TcpStream`, as tokio's own `TcpStream::poll_read` does it: a read
/// that returns less than asked for has drained the socket, so the readiness is cleared then
/// and the next read waits for the next event instead of costing a system call that would
/// only say "would block". (`try_io` clears readiness when its closure reports `WouldBlock`;
/// the bytes read are kept aside and returned.)
fn read_clearing(stream: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    use std::io::Read as _;
    let mut got = 0;
    let result = stream.try_io(tokio::io::Interest::READABLE, || {
        let n = (&*socket2::SockRef::from(stream)).read(buf)?;
        got = n;
        if n > 0 && n < buf.len() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    });
    match result {
        Err(error) if error.kind() == io::ErrorKind::WouldBlock && got > 0 => Ok(got),
        other => other,
    }
}

/// How much one [`ReadAhead::poll_read`] reads straight from the socket per call, as a power of
/// two: it starts at 4 KiB and adapts between 512 bytes and 64 KiB (doubling after a read that
/// filled it, halving after one that used less than half). Safe code must initialise what it
/// reads into, and a reader's buffer (hyper's) is uninitialised on every call, so the size
/// read is the size zeroed: small requests should not pay for zeroing 4 KiB, uploads should
/// not pay a system call per 4 KiB.
const DIRECT_READ_SHIFT: (u8, u8, u8) = (9, 12, 16);

/// How much one [`ReadAhead::poll_fill`] reads per system call.
const FILL_CHUNK: usize = 4 * 1024;

/// A bounded read-ahead buffer in front of a [`TcpStream`] that makes a peer's FIN visible even
/// while the real reader has stopped reading. See the [module docs](self).
#[derive(Debug)]
pub struct ReadAhead {
    buf: Vec<u8>,
    start: usize,
    limit: usize,
    eof: bool,
    /// log2 of the next direct read's size (see `DIRECT_READ_SHIFT`).
    direct_shift: u8,
    error: Option<io::Error>,
}

/// What [`ReadAhead::poll_fill`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// The peer's FIN is queued (behind whatever is buffered).
    PeerClosed,
    /// The socket reported an error; the next read returns it.
    Error,
    /// The buffer is full: watching resumes once the reader drains it.
    Full,
}

impl ReadAhead {
    /// An empty read-ahead that buffers at most `limit` bytes. No memory is allocated until
    /// bytes are actually read ahead.
    pub fn new(limit: usize) -> Self {
        ReadAhead {
            buf: Vec::new(),
            start: 0,
            limit: limit.max(1),
            eof: false,
            direct_shift: DIRECT_READ_SHIFT.1,
            error: None,
        }
    }

    /// Bytes read ahead and not yet handed to the reader.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Whether the peer's FIN has been seen (by a fill or a read).
    pub fn peer_closed(&self) -> bool {
        self.eof
    }

    /// Reads what the socket has into the buffer until the socket would block (then
    /// `Pending`, with the task registered for readability), the buffer is full, or the peer
    /// closed.
    pub fn poll_fill(&mut self, stream: &TcpStream, cx: &mut Context<'_>) -> Poll<Fill> {
        if self.eof {
            return Poll::Ready(Fill::PeerClosed);
        }
        if self.error.is_some() {
            return Poll::Ready(Fill::Error);
        }
        loop {
            let room = self.limit.saturating_sub(self.buffered());
            if room == 0 {
                return Poll::Ready(Fill::Full);
            }
            if let Err(error) = ready!(stream.poll_read_ready(cx)) {
                self.error = Some(error);
                return Poll::Ready(Fill::Error);
            }
            if self.start == self.buf.len() {
                self.buf.clear();
                self.start = 0;
            }
            let old_len = self.buf.len();
            self.buf.resize(old_len + room.min(FILL_CHUNK), 0);
            let result = stream.try_read(&mut self.buf[old_len..]);
            match result {
                Ok(0) => {
                    self.buf.truncate(old_len);
                    self.eof = true;
                    return Poll::Ready(Fill::PeerClosed);
                }
                Ok(n) => self.buf.truncate(old_len + n),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    self.buf.truncate(old_len);
                }
                Err(error) => {
                    self.buf.truncate(old_len);
                    self.error = Some(error);
                    return Poll::Ready(Fill::Error);
                }
            }
        }
    }

    /// Reads into `dst`: buffered bytes first, then the recorded FIN or error, then the socket.
    pub fn poll_read(
        &mut self,
        stream: &TcpStream,
        cx: &mut Context<'_>,
        dst: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.buffered() > 0 {
            let n = self.buffered().min(dst.remaining());
            dst.put_slice(&self.buf[self.start..self.start + n]);
            self.start += n;
            if self.start == self.buf.len() {
                self.release();
            }
            return Poll::Ready(Ok(()));
        }
        if let Some(error) = self.error.take() {
            return Poll::Ready(Err(error));
        }
        if self.eof {
            return Poll::Ready(Ok(()));
        }
        loop {
            ready!(stream.poll_read_ready(cx))?;
            // Safe code must initialise what it reads into; zeroing a reader's whole buffer
            // (hyper's may be hundreds of KiB) on every read costs more than the read, so
            // read an adaptive size at a time.
            let len = dst.remaining().min(1 << self.direct_shift);
            match read_clearing(stream, dst.initialize_unfilled_to(len)) {
                Ok(n) => {
                    let (min, _, max) = DIRECT_READ_SHIFT;
                    if n == len && len == 1 << self.direct_shift && self.direct_shift < max {
                        self.direct_shift += 1;
                    } else if n < len / 2 && self.direct_shift > min {
                        self.direct_shift -= 1;
                    }
                    if n == 0 {
                        self.eof = true;
                    }
                    dst.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                Err(error) => return Poll::Ready(Err(error)),
            }
        }
    }

    /// Puts bytes back in front of whatever is buffered: the next read returns them first.
    /// (For a reader that read more than it used and hands the rest back.)
    pub fn unread(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let mut buf = Vec::with_capacity(bytes.len() + self.buffered());
        buf.extend_from_slice(bytes);
        buf.extend_from_slice(&self.buf[self.start..]);
        self.buf = buf;
        self.start = 0;
    }

    /// Gives the buffer's memory back once it is drained.
    fn release(&mut self) {
        self.buf = Vec::new();
        self.start = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, server)
    }

    #[tokio::test]
    async fn idle_event_sees_fin_and_data() {
        let (client, server) = pair().await;
        drop(client);
        assert!(matches!(idle_event(&server).await, IdleEvent::PeerClosed));

        let (mut client, server) = pair().await;
        client.write_all(b"x").await.unwrap();
        assert!(matches!(
            idle_event(&server).await,
            IdleEvent::UnexpectedData
        ));
    }

    #[tokio::test]
    async fn read_ahead_sees_fin_behind_bytes_and_loses_none() {
        let (mut client, server) = pair().await;
        const PIPELINED: &[u8] = b"GET / HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n";
        client.write_all(PIPELINED).await.unwrap();
        client.shutdown().await.unwrap();
        let mut ahead = ReadAhead::new(1024);
        let fill = poll_fn(|cx| ahead.poll_fill(&server, cx)).await;
        assert_eq!(fill, Fill::PeerClosed);
        assert_eq!(ahead.buffered(), PIPELINED.len());
        let mut out = Vec::new();
        loop {
            let mut storage = [0u8; 7];
            let mut buf = ReadBuf::new(&mut storage);
            poll_fn(|cx| ahead.poll_read(&server, cx, &mut buf))
                .await
                .unwrap();
            if buf.filled().is_empty() {
                break;
            }
            out.extend_from_slice(buf.filled());
        }
        assert_eq!(out, PIPELINED);
    }

    #[tokio::test]
    async fn read_ahead_stops_when_full() {
        let (mut client, server) = pair().await;
        client.write_all(&[b'a'; 100]).await.unwrap();
        let mut ahead = ReadAhead::new(10);
        let fill = poll_fn(|cx| ahead.poll_fill(&server, cx)).await;
        assert_eq!(fill, Fill::Full);
        assert_eq!(ahead.buffered(), 10);
    }
}

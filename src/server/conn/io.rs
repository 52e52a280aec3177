//! The socket as the connection's stream sees it ([`ConnIo`]): reads through the read-ahead
//! the FIN watch fills, writes straight to the socket, and shutdown as the client-first close
//! (the linger: a bounded wait for the client's FIN).

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::peer_memory::Wait;
use super::state::{Linger, Phase, Shared};
use crate::socket;

/// One write to the socket once it is writable.
fn poll_write_with(
    stream: &TcpStream,
    cx: &mut Context<'_>,
    mut write: impl FnMut(&TcpStream) -> io::Result<usize>,
) -> Poll<io::Result<usize>> {
    loop {
        ready!(stream.poll_write_ready(cx))?;
        match write(stream) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            result => return Poll::Ready(result),
        }
    }
}

/// The socket as the connection's stream (TLS, or hyper directly) sees it: reads go through the
/// read-ahead (so nothing the FIN watch read is lost), writes go straight to the socket, and
/// shutdown is the client-first close.
#[derive(Debug)]
pub(crate) struct ConnIo {
    shared: Arc<Shared>,
}

impl ConnIo {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        ConnIo { shared }
    }

    pub(crate) fn stream(&self) -> &TcpStream {
        &self.shared.stream
    }
}

impl AsyncRead for ConnIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let shared = &*self.shared;
        let mut state = shared.lock();
        let before = buf.filled().len();
        let result = ready!(state.read_ahead.poll_read(&shared.stream, cx, buf));
        if result.is_ok() && buf.filled().len() == before && buf.remaining() > 0 {
            // The client's FIN (under TLS the stream above may report it as an error).
            state.stream_ended = true;
        }
        Poll::Ready(result)
    }
}

impl AsyncWrite for ConnIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let shared = &*self.shared;
        let result = poll_write_with(&shared.stream, cx, |s| s.try_write(buf));
        shared
            .write_pending
            .store(result.is_pending(), Ordering::Relaxed);
        result
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let shared = &*self.shared;
        let result = poll_write_with(&shared.stream, cx, |s| s.try_write_vectored(bufs));
        shared
            .write_pending
            .store(result.is_pending(), Ordering::Relaxed);
        result
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// The client-first close. hyper calls this after the final response is flushed. Instead
    /// of sending our FIN first (which would leave TIME_WAIT on the server), wait a short,
    /// bounded time for the client's FIN, reading and discarding whatever still arrives so an
    /// unread body never turns the close into a reset. Then return: the socket is closed when
    /// the connection is dropped, after the client's FIN if it came.
    ///
    /// Upgraded connections and bodies delimited by the close are shut down at once.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let shared = &*self.shared;
        let mut state = shared.lock();
        let wait = shared.ctx.config.linger;
        if state.phase == Phase::Upgraded || state.close_delimited || wait.is_zero() {
            return Poll::Ready(SockRef::from(&shared.stream).shutdown(std::net::Shutdown::Write));
        }
        if state.read_ahead.peer_closed() {
            return Poll::Ready(Ok(()));
        }
        if state.linger.is_none() {
            let wait = match shared.ctx.peers.wait(shared.peer) {
                Wait::Skip => {
                    shared.ctx.stats.linger_skipped();
                    return Poll::Ready(Ok(()));
                }
                Wait::Short => linger_wait(shared),
                Wait::Long => wait,
            };
            state.linger = Some(Linger {
                timer: Box::pin(tokio::time::sleep(wait)),
                discarded: 0,
            });
        }
        let state = &mut *state;
        let Some(linger) = state.linger.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let mut scratch = [0u8; 2048];
        loop {
            if state.read_ahead.peer_closed() {
                shared.ctx.peers.record(shared.peer, true);
                return Poll::Ready(Ok(()));
            }
            let mut buf = ReadBuf::new(&mut scratch);
            match state.read_ahead.poll_read(&shared.stream, cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => continue,
                Poll::Ready(Ok(())) => {
                    linger.discarded += buf.filled().len();
                    if linger.discarded > shared.ctx.config.linger_max_bytes {
                        shared.ctx.stats.linger_timeout();
                        return Poll::Ready(Ok(()));
                    }
                }
                // A reset: nothing left to wait for.
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Pending => {
                    ready!(linger.timer.as_mut().poll(cx));
                    shared.ctx.stats.linger_timeout();
                    shared.ctx.peers.record(shared.peer, false);
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }
}

/// The short wait for the client's FIN: its smoothed round-trip time times
/// `linger_rtt_factor`, within the linger floor and the linger.
fn linger_wait(shared: &Shared) -> Duration {
    let config = &shared.ctx.config;
    let rtt_based = socket::smoothed_rtt(&shared.stream)
        .map(|rtt| rtt.saturating_mul(config.linger_rtt_factor))
        .unwrap_or(config.linger);
    rtt_based.clamp(config.linger_floor.min(config.linger), config.linger)
}

//! hyper's side of a connection ([`Http`]): hyper's HTTP/1 connection, switched to one with
//! upgrades when a request may upgrade, or taken apart while the connection is parked (only
//! the socket and the service are kept) and rebuilt when the next request arrives.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWrite as _;

use super::context::ConnContext;
use super::http_io::HttpIo;
use super::parking::Stage;
use super::service::{ConnService, HttpService};
use super::state::Shared;
use crate::fin::{self, IdleEvent};

/// What polling a connection found.
pub(super) enum Event {
    Finished(Result<(), hyper::Error>),
    Timer,
    /// Bytes arrived on a parked connection.
    Unpark,
    /// An idle connection parks at once (see [`Shared::park_now`]).
    ParkNow,
    PeerGone,
    Stage(Stage),
}

/// The stream a [`Handshake`] made, as the driver needs it.
///
/// [`Handshake`]: super::handshake::Handshake
pub(super) trait Stream:
    tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static
{
}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> Stream for T {}

pub(super) type Io<T> = TokioIo<HttpIo<T>>;

/// hyper's side of a connection, or what is left of it while parked.
pub(super) enum Http<T, S: HttpService> {
    /// hyper's HTTP/1 connection, able to be taken apart (parked, or switched to upgrades).
    Plain(Box<http1::Connection<Io<T>, ConnService<S>>>),
    /// After a request that may upgrade: hyper's connection with upgrades on. Never parked.
    Upgrades(Pin<Box<http1::UpgradeableConnection<Io<T>, ConnService<S>>>>),
    /// Idle for a while: only the socket (inside the IO) and the service are kept; hyper's
    /// state with its buffers is rebuilt when the next request arrives.
    Parked { io: Io<T>, service: ConnService<S> },
    /// Between two of the above, never seen by a poll.
    Moving,
}

impl<T: Stream, S: HttpService> Http<T, S> {
    fn new(ctx: &ConnContext, io: Io<T>, service: ConnService<S>) -> Self {
        Http::Plain(Box::new(ctx.http1.serve_connection(io, service)))
    }

    /// Polls hyper, or the parked socket. `Pending` when nothing happened.
    pub(super) fn poll_event(&mut self, shared: &Shared, cx: &mut Context<'_>) -> Poll<Event> {
        loop {
            match self {
                Http::Plain(conn) => {
                    if let Poll::Ready(result) = Pin::new(&mut **conn).poll(cx) {
                        return Poll::Ready(Event::Finished(result));
                    }
                    // A request that may upgrade waits (without being answered) for this.
                    if shared.take_upgrade_wanted() {
                        let Http::Plain(conn) = std::mem::replace(self, Http::Moving) else {
                            unreachable!()
                        };
                        *self = Http::Upgrades(Box::pin(conn.with_upgrades()));
                        continue;
                    }
                }
                Http::Upgrades(conn) => {
                    if let Poll::Ready(result) = conn.as_mut().poll(cx) {
                        return Poll::Ready(Event::Finished(result));
                    }
                }
                Http::Parked { .. } => match fin::poll_idle_event(&shared.stream, cx) {
                    Poll::Ready(IdleEvent::UnexpectedData) => return Poll::Ready(Event::Unpark),
                    Poll::Ready(IdleEvent::PeerClosed) => {
                        shared.parked_peer_closed();
                        return Poll::Ready(Event::PeerGone);
                    }
                    Poll::Ready(IdleEvent::Error(_)) => return Poll::Ready(Event::PeerGone),
                    Poll::Pending => {}
                },
                Http::Moving => unreachable!("polled while moving"),
            }
            return Poll::Pending;
        }
    }

    /// Takes hyper's state apart, keeping the socket and the service. Bytes hyper read but
    /// had not parsed are handed back to the stream; then hyper is rebuilt at once instead
    /// (and this returns false).
    pub(super) fn park(&mut self, ctx: &ConnContext) -> bool {
        let Http::Plain(conn) = std::mem::replace(self, Http::Moving) else {
            unreachable!("only a plain connection is parked")
        };
        let mut parts = conn.into_parts();
        if parts.read_buf.is_empty() {
            ctx.stats.parked();
            tracing::trace!("parked");
            *self = Http::Parked {
                io: parts.io,
                service: parts.service,
            };
            true
        } else {
            parts.io.inner_mut().unread(&parts.read_buf);
            *self = Http::new(ctx, parts.io, parts.service);
            false
        }
    }

    /// Whether hyper holds bytes it read and has not parsed (part of a request pipelined behind
    /// the previous one): they are handed back to the stream and hyper's state is rebuilt
    /// around it (only for a plain connection that owes no bytes; otherwise false).
    pub(super) fn hand_back_unparsed(&mut self, shared: &Shared, ctx: &ConnContext) -> bool {
        if !self.is_plain() || shared.write_pending() {
            return false;
        }
        let Http::Plain(conn) = std::mem::replace(self, Http::Moving) else {
            unreachable!("checked above")
        };
        let mut parts = conn.into_parts();
        let unparsed = !parts.read_buf.is_empty();
        if unparsed {
            parts.io.inner_mut().unread(&parts.read_buf);
        }
        *self = Http::new(ctx, parts.io, parts.service);
        unparsed
    }

    /// The next request is arriving on a parked connection: rebuild hyper's state.
    pub(super) fn unpark(&mut self, ctx: &ConnContext) {
        ctx.stats.unparked(true);
        tracing::trace!("unparked");
        self.activate(ctx);
    }

    /// Builds hyper's state around the kept socket and service.
    pub(super) fn activate(&mut self, ctx: &ConnContext) {
        let Http::Parked { io, service } = std::mem::replace(self, Http::Moving) else {
            unreachable!("only a parked connection is activated")
        };
        *self = Http::new(ctx, io, service);
    }

    /// Closes an idle connection's stream gracefully: under TLS its `close_notify`, then the
    /// wait for the client's FIN, all within `limit`.
    pub(super) async fn close_notify(&mut self, limit: std::time::Duration) {
        let mut io = match std::mem::replace(self, Http::Moving) {
            Http::Parked { io, .. } => io,
            Http::Plain(conn) => conn.into_parts().io,
            other => {
                *self = other;
                return;
            }
        };
        let shutdown = poll_fn(|cx| Pin::new(io.inner_mut()).poll_shutdown(cx));
        let _ = tokio::time::timeout(limit, shutdown).await;
    }

    pub(super) fn is_plain(&self) -> bool {
        matches!(self, Http::Plain(_))
    }

    pub(super) fn is_parked(&self) -> bool {
        matches!(self, Http::Parked { .. })
    }
}

//! One task per connection: hyper's HTTP/1 state machine plus what hyper does not do (idle and
//! header timeouts, the FIN watch while a handler runs, the drain), and the accounting of how
//! the connection ended.

use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::{watch, OwnedSemaphorePermit};
use tokio::time::Instant;
use tracing::Instrument;

use super::context::ConnContext;
use super::handshake::{Handshake, ServerIo};
use super::http_io::HttpIo;
use super::hyper_side::{Event, Http, Stream};
use super::io::ConnIo;
use super::parking::{Parked, Stage};
use super::service::{ConnService, HttpService};
use super::state::{Phase, Shared};
use crate::fin::Fill;
use crate::server::connection_info::ConnectionInfo;
use crate::server::stats::CloseReason;

/// Starts serving one accepted connection, on a task of its own.
pub(crate) fn spawn_connection<S, H>(
    stream: TcpStream,
    peer: SocketAddr,
    service: S,
    handshake: &H,
    ctx: Arc<ConnContext>,
    stage: watch::Receiver<Stage>,
    permit: Option<OwnedSemaphorePermit>,
) where
    S: HttpService,
    H: Handshake,
{
    let accepted_at = std::time::Instant::now();
    let _ = ctx.config.socket.apply(&stream);
    let info = ConnectionInfo {
        peer_addr: peer,
        // getsockname on an accepted socket fails only if the socket is already gone; the
        // connection then ends at its first read.
        local_addr: stream
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0))),
        id: ctx.next_connection_id(),
        request_number: 0,
        accepted_at,
    };
    let shared = Arc::new(Shared::new(
        stream,
        peer.ip(),
        ctx.clone(),
        handshake.is_cleartext(),
    ));
    ctx.stats.connection_opened();
    let mut handshaking = handshake.handshake(ServerIo::new(ConnIo::new(shared.clone())));
    let service = ConnService::new(service, shared.clone(), info);
    let parts = ConnParts {
        shared,
        service,
        ctx,
        stage,
        permit,
    };
    if handshake.is_cleartext() {
        // No handshake to wait for: the task runs the connection itself, with no wrapper
        // around it (a parked connection's task stays small).
        let mut cx = Context::from_waker(Waker::noop());
        if let Poll::Ready(ready) = Pin::new(&mut handshaking).poll(&mut cx) {
            match ready {
                Ok(stream) => {
                    tokio::spawn(run(parts.into_conn(stream)));
                }
                Err(error) => parts.handshake_failed(Some(error)),
            }
            return;
        }
    }
    tokio::spawn(async move {
        let header_timeout = parts.ctx.config.header_timeout;
        match tokio::time::timeout(header_timeout, handshaking).await {
            Ok(Ok(stream)) => run(parts.into_conn(stream)).await,
            Ok(Err(error)) => parts.handshake_failed(Some(error)),
            Err(_) => parts.handshake_failed(None),
        }
    });
}

/// What a connection is made of before its handshake is done.
struct ConnParts<S> {
    shared: Arc<Shared>,
    service: ConnService<S>,
    ctx: Arc<ConnContext>,
    stage: watch::Receiver<Stage>,
    permit: Option<OwnedSemaphorePermit>,
}

impl<S: HttpService> ConnParts<S> {
    fn into_conn<T: Stream>(self, stream: T) -> Conn<T, S> {
        let ConnParts {
            shared,
            service,
            ctx,
            stage,
            permit,
        } = self;
        let io = TokioIo::new(HttpIo::new(stream, shared.clone()));
        // hyper's state (with its 8 KiB write buffer) is built by the connection's task, not
        // on the accepting thread: long-lived allocations made there are then not interleaved
        // with buffers that are freed when the connection parks.
        let http = Http::Parked { io, service };
        let current_stage = ctx.parking.stage();
        if current_stage >= Stage::Draining {
            shared.start_drain();
        }
        drop(ctx);
        Conn {
            shared,
            http,
            _alive: stage,
            current_stage,
            _permit: permit,
        }
    }

    /// The handshake failed (`Some`) or timed out.
    fn handshake_failed(self, error: Option<std::io::Error>) {
        let shared = &self.shared;
        if let Some(error) = error {
            tracing::debug!(parent: &shared.span(), %error, "handshake failed");
        }
        shared.finish();
        self.ctx
            .stats
            .connection_closed(CloseReason::Handshake, shared.peer_closed());
    }
}

/// A connection for its whole life, whichever task runs it.
struct Conn<T, S: HttpService> {
    /// Holds the server's context too (`shared.ctx`).
    shared: Arc<Shared>,
    http: Http<T, S>,
    /// A graceful shutdown waits for every receiver to be dropped: held until the connection is
    /// done (the stage itself is read from the server's [`ParkingLot`]).
    ///
    /// [`ParkingLot`]: super::parking::ParkingLot
    _alive: watch::Receiver<Stage>,
    current_stage: Stage,
    /// The server's `max_connections` slot, given back when the connection is done.
    _permit: Option<OwnedSemaphorePermit>,
}

/// What one run of [`Conn::step`] ended with.
enum Outcome {
    Closed(CloseReason),
    /// hyper's state was taken apart: the connection is parked.
    Parked,
    /// Bytes arrived on a parked connection: hyper's state is rebuilt.
    Unparked,
}

/// Serves the connection to its end. hyper's state lives in allocations of its own, made by
/// this task when a request arrives and freed when the connection parks, so a parked
/// connection holds only the socket, its timers and a few counters.
async fn run<T: Stream, S: HttpService>(mut conn: Conn<T, S>) {
    // A cleartext connection waits parked for its first request (most of a burst of new
    // connections send one, or none, a while later): hyper's state is built when bytes
    // arrive. Under TLS the stream may already hold decrypted bytes: hyper reads them.
    if conn.shared.cleartext && conn.shared.ctx.config.park_after.is_some() {
        conn.shared.ctx.stats.parked();
    } else {
        conn.http.activate(&conn.shared.ctx);
    }
    let reason = loop {
        let outcome = if conn.http.is_parked() {
            conn.park_wait().await
        } else {
            let span = conn.shared.span();
            Box::pin(conn.step()).instrument(span).await
        };
        match outcome {
            Outcome::Closed(reason) => break reason,
            Outcome::Parked | Outcome::Unparked => {}
        }
    };
    if conn.http.is_parked() {
        conn.shared.ctx.stats.unparked(false);
    }
    let config = &conn.shared.ctx.config;
    let idle_close = matches!(
        reason,
        CloseReason::IdleTimeout | CloseReason::MaxAge | CloseReason::Drain
    );
    if idle_close && !conn.shared.cleartext && !config.abortive_idle_close {
        // Under TLS the server can ask an idle client to close first: its close_notify, then
        // the usual bounded wait for the client's FIN. Boxed: a parked task stays small.
        Box::pin(conn.http.close_notify(config.linger)).await;
    }
    let shared = &conn.shared;
    shared.finish();
    let client_first = shared.peer_closed();
    tracing::debug!(parent: &shared.span(), reason = %reason, client_first, "connection closed");
    shared.ctx.stats.connection_closed(reason, client_first);
}

impl<T: Stream, S: HttpService> Conn<T, S> {
    /// Runs hyper and the timers until the connection ends or parks.
    async fn step(&mut self) -> Outcome {
        let Conn {
            shared,
            http,
            current_stage,
            ..
        } = self;
        let ctx = &shared.ctx;
        let park_after = ctx.config.park_after;
        // The shutdown is watched through the server's waker table: one registration per
        // activation, then an atomic load per poll (a watch-channel future would take a lock
        // shared with other connections on every poll).
        let mut lot = Parked::new(&ctx.parking);
        let mut registered: Option<Waker> = None;
        // One timer, re-armed lazily: only when a deadline comes *earlier* than the one it is
        // set for. A later deadline (the idle deadline moving on after each request) leaves it
        // alone; when it fires early the real deadline is checked and it is set again. So a
        // busy keep-alive connection touches the timer about once per idle timeout (or per
        // `park_after`), not once per request.
        let mut timer = pin!(tokio::time::sleep_until(Instant::now()));
        let mut armed: Option<Instant> = None;
        loop {
            let event = poll_fn(|cx| {
                if let Poll::Ready(event) = http.poll_event(shared, cx) {
                    return Poll::Ready(event);
                }
                let stage = lot.watch_cached(cx.waker(), &mut registered);
                if stage != *current_stage {
                    return Poll::Ready(Event::Stage(stage));
                }
                let parking = if http.is_plain() { park_after } else { None };
                if parking.is_some() && shared.park_now() {
                    return Poll::Ready(Event::ParkNow);
                }
                let (deadline, fin) = shared.poll_watch(cx, parking);
                if let Poll::Ready(Fill::PeerClosed | Fill::Error) = fin {
                    return Poll::Ready(Event::PeerGone);
                }
                if let Some(deadline) = deadline {
                    if armed.is_none_or(|at| deadline < at) {
                        armed = Some(deadline);
                        timer.as_mut().reset(deadline);
                    }
                }
                if armed.is_some() && timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Event::Timer);
                }
                Poll::Pending
            })
            .await;
            match event {
                Event::Finished(result) => return Outcome::Closed(finished_reason(shared, result)),
                Event::Timer => {
                    armed = None;
                    let now = Instant::now();
                    if let Some(reason) = shared.expired(now) {
                        if idle_reason(reason)
                            && (shared.request_waiting() || http.hand_back_unparsed(shared, ctx))
                        {
                            shared.last_call(reason);
                            continue;
                        }
                        return expired(shared, ctx, reason);
                    }
                    if let Some(after) = park_after {
                        if http.is_plain() && shared.parkable(now, after) && http.park(ctx) {
                            return Outcome::Parked;
                        }
                    }
                }
                Event::ParkNow => {
                    if http.park(ctx) {
                        return Outcome::Parked;
                    }
                }
                Event::PeerGone => return peer_gone(shared, ctx),
                Event::Stage(next) => {
                    if let Some(outcome) = stage_changed(shared, current_stage, next) {
                        return outcome;
                    }
                }
                Event::Unpark => unreachable!("hyper's state is active"),
            }
        }
    }

    /// Waits on a parked connection for its next request (then rebuilds hyper's state), the
    /// client's FIN, the idle deadline or a shutdown. Small on purpose: with the connection
    /// itself, this is all a parked connection's task holds (the shutdown is watched through
    /// the server's [`ParkingLot`], not a future of its own).
    ///
    /// [`ParkingLot`]: super::parking::ParkingLot
    async fn park_wait(&mut self) -> Outcome {
        let Conn {
            shared,
            http,
            current_stage,
            ..
        } = self;
        let ctx = &shared.ctx;
        let mut lot = Parked::new(&ctx.parking);
        let mut timer = pin!(tokio::time::sleep_until(Instant::now()));
        poll_fn(|cx| loop {
            let stage = lot.watch(cx.waker());
            if stage != *current_stage {
                if let Some(outcome) = stage_changed(shared, current_stage, stage) {
                    return Poll::Ready(outcome);
                }
            }
            match http.poll_event(shared, cx) {
                Poll::Ready(Event::Unpark) => {
                    http.unpark(ctx);
                    return Poll::Ready(Outcome::Unparked);
                }
                Poll::Ready(_) => return Poll::Ready(peer_gone(shared, ctx)),
                Poll::Pending => {}
            }
            let Some(deadline) = shared.idle_deadline() else {
                unreachable!("a parked connection is idle");
            };
            if timer.deadline() != deadline {
                timer.as_mut().reset(deadline);
            }
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if let Some(reason) = shared.expired(Instant::now()) {
                if shared.request_waiting() {
                    shared.last_call(reason);
                    http.unpark(ctx);
                    return Poll::Ready(Outcome::Unparked);
                }
                return Poll::Ready(expired(shared, ctx, reason));
            }
            // Fired before the deadline (it moved on): the next turn arms it again.
        })
        .await
    }
}

/// The shutdown moved on: drain, or close by force (an upgraded connection is left alone).
fn stage_changed(shared: &Shared, current: &mut Stage, next: Stage) -> Option<Outcome> {
    *current = next;
    match next {
        Stage::Running => None,
        Stage::Draining => {
            shared.start_drain();
            None
        }
        Stage::Forcing => {
            (shared.phase() != Phase::Upgraded).then_some(Outcome::Closed(CloseReason::Forced))
        }
    }
}

/// The deadlines of an idle connection (the idle timeout, its age, the drain's grace).
fn idle_reason(reason: CloseReason) -> bool {
    matches!(
        reason,
        CloseReason::IdleTimeout | CloseReason::MaxAge | CloseReason::Drain
    )
}

/// A deadline passed: close, with a 408 for an incomplete head or body or a reset if
/// configured.
fn expired(shared: &Shared, ctx: &ConnContext, reason: CloseReason) -> Outcome {
    // Under TLS the 408 would have to be encrypted by a stream hyper owns: just close.
    if reason == CloseReason::HeaderTimeout {
        // Best effort: the head is incomplete, hyper has written nothing.
        if shared.cleartext {
            let _ = shared.stream.try_write(REQUEST_TIMEOUT);
        }
    } else if reason == CloseReason::BodyTimeout {
        if shared.lock().handler_running {
            // The handler waits for the body and has not answered: nothing written yet.
            ctx.stats.handler_dropped();
            if shared.cleartext {
                let _ = shared.stream.try_write(REQUEST_TIMEOUT);
            }
        }
    } else if reason == CloseReason::IdleTimeout && ctx.config.abortive_idle_close {
        let _ = crate::socket::set_abortive_close(&shared.stream);
    }
    Outcome::Closed(reason)
}

/// The client's FIN (or a reset) arrived.
fn peer_gone(shared: &Shared, ctx: &ConnContext) -> Outcome {
    if shared.lock().handler_running {
        ctx.stats.handler_dropped();
    }
    Outcome::Closed(if shared.peer_closed() {
        CloseReason::PeerFin
    } else {
        CloseReason::Error
    })
}

const REQUEST_TIMEOUT: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";

fn finished_reason(shared: &Shared, result: Result<(), hyper::Error>) -> CloseReason {
    let state = shared.lock();
    if state.phase == Phase::Upgraded {
        return CloseReason::Upgraded;
    }
    if let Some(reason) = state.closing {
        return reason;
    }
    let handler_running = state.handler_running;
    drop(state);
    if shared.peer_closed() {
        if handler_running {
            shared.ctx.stats.handler_dropped();
        }
        return CloseReason::PeerFin;
    }
    match result {
        // hyper ended it on its own, after a response the policy meant to keep alive.
        Ok(()) => CloseReason::NotReusable,
        Err(error) => {
            tracing::debug!(%error, "connection error");
            if handler_running {
                // A reset (or another error) while a handler ran: the client is gone.
                shared.ctx.stats.handler_dropped();
            }
            CloseReason::Error
        }
    }
}

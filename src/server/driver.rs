//! One task per connection: hyper's HTTP/1 state machine plus what hyper does not do (idle and
//! header timeouts, the FIN watch while a handler runs, the drain), and the accounting of how
//! the connection ended.

use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper::server::conn::http1;

use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument;

use super::connection::{ConnIo, Phase, Shared};
use super::peer_memory::PeerMemory;
use super::policy::Policy;
use super::service::ConnService;
use super::HttpService;
use super::{CloseReason, ServerConfig, ServerStats};
use crate::fin::{self, Fill, IdleEvent};

/// Where a graceful shutdown is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Stage {
    Running,
    Draining,
    Forcing,
}

/// What the server hands each connection task.
#[derive(Debug)]
pub(crate) struct ConnContext {
    pub(crate) config: Arc<ServerConfig>,
    pub(crate) stats: ServerStats,
    pub(crate) http1: http1::Builder,
    pub(crate) policy: Policy,
    pub(crate) peers: PeerMemory,
}

impl ConnContext {
    pub(crate) fn new(config: ServerConfig, stats: ServerStats) -> Self {
        let mut http1 = http1::Builder::new();
        http1
            .keep_alive(true)
            // A FIN while a handler runs means the client left: drop the handler.
            .half_close(false)
            // Our own header timeout counts from a head's first byte instead.
            .header_read_timeout(None);
        let policy = Policy {
            idle_timeout: config.idle_timeout,
            advertise: config.advertise,
        };
        ConnContext {
            config: Arc::new(config),
            stats,
            http1,
            policy,
            peers: PeerMemory::default(),
        }
    }
}

enum Event {
    Finished(Result<(), hyper::Error>),
    Timer,
    /// Bytes arrived on a parked connection.
    Unpark,
    PeerGone,
    Stage(Stage),
}

/// Serves one accepted connection to its end.
pub(crate) async fn serve_connection<S>(
    stream: TcpStream,
    peer: SocketAddr,
    service: S,
    ctx: Arc<ConnContext>,
    stage: watch::Receiver<Stage>,
) where
    S: HttpService,
{
    let local_port = stream.local_addr().map(|a| a.port()).unwrap_or(0);
    let span = tracing::debug_span!("connection", %peer, local_port);
    async move {
        let _ = ctx.config.socket.apply(&stream);
        let shared = Arc::new(Shared::new(stream, peer.ip(), ctx.clone()));
        ctx.stats.connection_opened();
        let reason = drive(&shared, service, &ctx, stage.clone()).await;
        shared.finish();
        let client_first = shared.peer_closed();
        tracing::debug!(reason = %reason, client_first, "connection closed");
        ctx.stats.connection_closed(reason, client_first);
        // A graceful shutdown waits for every receiver: only now is this connection done.
        drop(stage);
    }
    .instrument(span)
    .await
}

type Io = TokioIo<ConnIo>;

/// hyper's side of a connection, or what is left of it while parked.
enum Http<S: HttpService> {
    /// hyper's HTTP/1 connection, able to be taken apart (parked, or switched to upgrades).
    Plain(Box<http1::Connection<Io, ConnService<S>>>),
    /// After a request that may upgrade: hyper's connection with upgrades on. Never parked.
    Upgrades(Pin<Box<http1::UpgradeableConnection<Io, ConnService<S>>>>),
    /// Idle for a while: only the socket (inside the IO) and the service are kept; hyper's
    /// state with its buffers is rebuilt when the next request arrives.
    Parked { io: Io, service: ConnService<S> },
    /// Between two of the above, never seen by a poll.
    Moving,
}

impl<S: HttpService> Http<S> {
    fn new(ctx: &ConnContext, io: Io, service: ConnService<S>) -> Self {
        Http::Plain(Box::new(ctx.http1.serve_connection(io, service)))
    }

    /// Polls hyper, or the parked socket. `Pending` when nothing happened.
    fn poll_event(&mut self, shared: &Shared, cx: &mut Context<'_>) -> Poll<Event> {
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
    /// had not parsed go back to the read-ahead; then hyper is rebuilt at once instead.
    fn park(&mut self, ctx: &ConnContext, shared: &Shared) {
        let Http::Plain(conn) = std::mem::replace(self, Http::Moving) else {
            unreachable!("only a plain connection is parked")
        };
        let parts = conn.into_parts();
        if parts.read_buf.is_empty() {
            ctx.stats.parked();
            tracing::trace!("parked");
            *self = Http::Parked {
                io: parts.io,
                service: parts.service,
            };
        } else {
            shared.unread(&parts.read_buf);
            *self = Http::new(ctx, parts.io, parts.service);
        }
    }

    /// The next request is arriving on a parked connection: rebuild hyper's state.
    fn unpark(&mut self, ctx: &ConnContext) {
        let Http::Parked { io, service } = std::mem::replace(self, Http::Moving) else {
            unreachable!("only a parked connection is unparked")
        };
        ctx.stats.unparked(true);
        tracing::trace!("unparked");
        *self = Http::new(ctx, io, service);
    }

    fn is_plain(&self) -> bool {
        matches!(self, Http::Plain(_))
    }

    fn is_parked(&self) -> bool {
        matches!(self, Http::Parked { .. })
    }
}

/// Runs hyper and the timers; returns why the connection ended. hyper's connection (and with
/// it the socket, once the last handle is gone) is dropped on return.
async fn drive<S>(
    shared: &Arc<Shared>,
    service: S,
    ctx: &ConnContext,
    mut stage: watch::Receiver<Stage>,
) -> CloseReason
where
    S: HttpService,
{
    let io = TokioIo::new(ConnIo::new(shared.clone()));
    let service = ConnService::new(service, shared.clone(), ctx.policy);
    let mut http = Http::new(ctx, io, service);
    let reason = drive_http(shared, &mut http, ctx, &mut stage).await;
    if http.is_parked() {
        ctx.stats.unparked(false);
    }
    reason
}

async fn drive_http<S>(
    shared: &Arc<Shared>,
    http: &mut Http<S>,
    ctx: &ConnContext,
    stage: &mut watch::Receiver<Stage>,
) -> CloseReason
where
    S: HttpService,
{
    let park_after = ctx.config.park_after;
    // One timer per connection, re-armed lazily: only when a deadline comes *earlier* than the
    // one it is set for. A later deadline (the idle deadline moving on after each request)
    // leaves it alone; when it fires early the real deadline is checked and it is set again.
    // So a busy keep-alive connection touches the timer about once per idle timeout (or per
    // `park_after`), not once per request.
    let mut timer = pin!(tokio::time::sleep_until(Instant::now()));
    let mut armed: Option<Instant> = None;
    let mut current_stage = *stage.borrow_and_update();
    if current_stage >= Stage::Draining {
        shared.start_drain();
    }
    loop {
        let event = {
            let watch_hyper = poll_fn(|cx| {
                if let Poll::Ready(event) = http.poll_event(shared, cx) {
                    return Poll::Ready(event);
                }
                let parking = if http.is_plain() { park_after } else { None };
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
            });
            tokio::select! {
                event = watch_hyper => event,
                changed = stage.changed(), if current_stage != Stage::Forcing => match changed {
                    Ok(()) => Event::Stage(*stage.borrow_and_update()),
                    // The server is gone without a shutdown: treat it as a force.
                    Err(_) => Event::Stage(Stage::Forcing),
                },
            }
        };
        match event {
            Event::Finished(result) => return finished_reason(shared, result),
            Event::Timer => {
                armed = None;
                let now = Instant::now();
                let Some(reason) = shared.expired(now) else {
                    if let Some(after) = park_after {
                        if http.is_plain() && shared.parkable(now, after) {
                            http.park(ctx, shared);
                        }
                    }
                    continue;
                };
                if reason == CloseReason::HeaderTimeout {
                    // Best effort: the head is incomplete, hyper has written nothing.
                    let _ = shared.stream.try_write(REQUEST_TIMEOUT);
                } else if reason == CloseReason::IdleTimeout && ctx.config.abortive_idle_close {
                    let _ = crate::socket::set_abortive_close(&shared.stream);
                }
                return reason;
            }
            Event::Unpark => http.unpark(ctx),
            Event::PeerGone => {
                if shared.lock().handler_running {
                    ctx.stats.handler_dropped();
                }
                return if shared.peer_closed() {
                    CloseReason::PeerFin
                } else {
                    CloseReason::Error
                };
            }
            Event::Stage(next) => {
                current_stage = next;
                match next {
                    Stage::Running => {}
                    Stage::Draining => shared.start_drain(),
                    Stage::Forcing => {
                        if shared.phase() != Phase::Upgraded {
                            return CloseReason::Forced;
                        }
                    }
                }
            }
        }
    }
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
        Ok(()) => CloseReason::ClientClose,
        Err(error) => {
            tracing::debug!(%error, "connection error");
            CloseReason::Error
        }
    }
}

//! One task per connection: hyper's HTTP/1 state machine plus what hyper does not do (idle and
//! header timeouts, the FIN watch while a handler runs, the drain), and the accounting of how
//! the connection ended.

use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;

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
use crate::fin::Fill;

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
    pub(crate) http1: hyper::server::conn::http1::Builder,
    pub(crate) policy: Policy,
    pub(crate) peers: PeerMemory,
}

impl ConnContext {
    pub(crate) fn new(config: ServerConfig, stats: ServerStats) -> Self {
        let mut http1 = hyper::server::conn::http1::Builder::new();
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
    let mut conn = pin!(ctx.http1.serve_connection(io, service).with_upgrades());
    // One timer per connection, re-armed lazily: only when a deadline comes *earlier* than the
    // one it is set for. A later deadline (the idle deadline moving on after each request)
    // leaves it alone; when it fires early the real deadline is checked and it is set again.
    // So a busy keep-alive connection touches the timer about once per idle timeout, not
    // once per request.
    let mut timer = pin!(tokio::time::sleep_until(Instant::now()));
    let mut armed: Option<Instant> = None;
    let mut current_stage = *stage.borrow_and_update();
    if current_stage >= Stage::Draining {
        shared.start_drain();
    }
    loop {
        let event = {
            let watch_hyper = poll_fn(|cx| {
                if let Poll::Ready(result) = conn.as_mut().poll(cx) {
                    return Poll::Ready(Event::Finished(result));
                }
                let (deadline, fin) = shared.poll_watch(cx);
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
                let Some(reason) = shared.expired(Instant::now()) else {
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

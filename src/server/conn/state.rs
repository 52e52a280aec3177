//! The state one server connection shares between its driver, its IO (what hyper reads and
//! writes, see `io`) and its per-connection service.
//!
//! Everything here is touched from the connection's own task only (hyper polls the service and
//! the IO inline), so the mutex is never contended; it is there so the pieces can be owned by
//! hyper and the driver at once without `unsafe`.
//!
//! Over 500 lines and kept whole: `Shared`'s methods are the transitions of one `State` under
//! its one lock, called from the service, the IO and the driver, and each reads and sets the
//! same fields (the phase, the read-ahead, the body's progress). Split by caller, a
//! transition would stand apart from the others it must agree with.

use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use socket2::SockRef;
use tokio::io::ReadBuf;
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use super::body_progress::BodyProgress;
use super::context::ConnContext;
use crate::fin::{Fill, ReadAhead};
use crate::server::policy::{Budget, Policy, RequestFacts, Verdict};
use crate::server::stats::CloseReason;

/// How much a busy connection reads ahead to watch for the client's FIN behind pipelined bytes.
const READ_AHEAD_LIMIT: usize = 64 * 1024;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Between requests: nothing of the next request has arrived.
    Idle {
        /// When the connection went idle (the park timer counts from here).
        since: Instant,
        deadline: Instant,
        reason: CloseReason,
    },
    /// Bytes of a request head arrived; the head must complete by the deadline.
    ReadingHead { deadline: Instant },
    /// A handler runs or its response is being written.
    Busy,
    /// The final response is decided; hyper writes it, then shuts the IO down (the linger).
    Closing,
    /// Handed over to a protocol upgrade: no timers, no FIN watch.
    Upgraded,
}

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) phase: Phase,
    pub(super) read_ahead: ReadAhead,
    requests: u32,
    pub(crate) closing: Option<CloseReason>,
    pub(super) close_delimited: bool,
    draining: bool,
    pub(super) linger: Option<Linger>,
    /// Whether the handler of the current request is still running (for the count of
    /// handlers dropped because the client left).
    pub(crate) handler_running: bool,
    /// hyper's connection supports upgrades (switched on for a request that may upgrade).
    upgrades_on: bool,
    /// The peer's FIN seen while the connection was parked (nobody reads then).
    parked_fin: bool,
    /// The stream under hyper ended (see [`Shared::stream_ended`]).
    pub(super) stream_ended: bool,
    /// Under TLS: decrypted bytes hyper had read but not parsed, handed back when its state
    /// was taken apart (see [`Shared::unread`]). Boxed: 8 bytes in every connection's state
    /// for what a few pipelining clients need.
    #[allow(clippy::box_collection)]
    unread: Option<Box<Vec<u8>>>,
    /// Whether the current request's body is still arriving.
    body: BodyProgress,
    /// The running request was parsed after the client's FIN arrived, so it was complete
    /// before it: it is answered, and hyper is not shown the end of the stream until then.
    after_fin: bool,
    /// hyper's read that found the end of the stream while such a request runs: woken when
    /// its response is done.
    eof_waker: Option<Waker>,
    /// An idle deadline passed with a request already arriving: it is served, and its
    /// response closes the connection for this reason.
    last_call: Option<CloseReason>,
}

/// The wait for the client's FIN after a final response (see `ConnIo`'s shutdown).
#[derive(Debug)]
pub(super) struct Linger {
    pub(super) timer: Pin<Box<Sleep>>,
    pub(super) discarded: usize,
}

/// What one connection shares; see the module docs.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) stream: TcpStream,
    pub(super) peer: IpAddr,
    state: Mutex<State>,
    pub(crate) ctx: Arc<ConnContext>,
    born: Instant,
    /// The last write hyper tried would have blocked: hyper still holds bytes to send, so its
    /// state must not be taken apart (parked). Set and read on the connection's task only.
    pub(super) write_pending: AtomicBool,
    /// A request that may upgrade the connection waits until the driver has switched hyper's
    /// connection to one that supports upgrades (see `driver`). Checked on every poll of the
    /// connection, so an atomic rather than under the lock.
    upgrade_wanted: AtomicBool,
    /// hyper's bytes are the socket's bytes (no TLS): a 408 can be written straight to the
    /// socket.
    pub(crate) cleartext: bool,
}

impl Shared {
    pub(crate) fn new(
        stream: TcpStream,
        peer: IpAddr,
        ctx: Arc<ConnContext>,
        cleartext: bool,
    ) -> Self {
        let born = Instant::now();
        let config = &ctx.config;
        ctx.stats.idle_changed(true);
        Shared {
            stream,
            peer,
            state: Mutex::new(State {
                phase: Phase::Idle {
                    since: born,
                    deadline: born + config.idle_timeout.min(config.max_age),
                    reason: CloseReason::IdleTimeout,
                },
                read_ahead: ReadAhead::new(READ_AHEAD_LIMIT),
                requests: 0,
                closing: None,
                close_delimited: false,
                draining: false,
                linger: None,
                handler_running: false,
                upgrades_on: false,
                parked_fin: false,
                stream_ended: false,
                unread: None,
                body: BodyProgress::default(),
                after_fin: false,
                eof_waker: None,
                last_call: None,
            }),
            ctx,
            born,
            write_pending: AtomicBool::new(false),
            upgrade_wanted: AtomicBool::new(false),
            cleartext,
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // Only this connection's task takes the lock and nothing panics while holding it, so
        // a poisoned lock still holds consistent state.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn set_phase(&self, state: &mut State, phase: Phase) {
        let was_idle = matches!(state.phase, Phase::Idle { .. });
        let is_idle = matches!(phase, Phase::Idle { .. });
        if was_idle != is_idle {
            self.ctx.stats.idle_changed(is_idle);
        }
        state.phase = phase;
    }

    /// The phase to enter when a connection becomes idle now.
    fn idle_phase(&self, state: &State, now: Instant) -> Phase {
        let config = &self.ctx.config;
        // The advertised timeout, then the grace (only advertised timeouts get one).
        let grace = if config.idle_timeout >= Duration::from_secs(1) {
            config.idle_grace
        } else {
            Duration::ZERO
        };
        let mut deadline = now + config.idle_timeout + grace;
        let mut reason = CloseReason::IdleTimeout;
        let age_deadline = self.born + config.max_age;
        if age_deadline < deadline {
            deadline = age_deadline;
            reason = CloseReason::MaxAge;
        }
        if state.draining {
            let grace = now + config.drain_grace;
            if grace < deadline {
                deadline = grace;
                reason = CloseReason::Drain;
            }
        }
        Phase::Idle {
            since: now,
            deadline,
            reason,
        }
    }

    /// hyper parsed a request head and calls the service.
    ///
    /// Returns whether the response must wait for upgrades to be switched on (the request may
    /// upgrade and hyper's connection does not support upgrades yet), and which request this
    /// is on the connection (from 1, counted across parking).
    pub(crate) fn request_started(&self, facts: &RequestFacts) -> (bool, u64) {
        let may_upgrade = facts.may_upgrade;
        let mut state = self.lock();
        state
            .body
            .request_started(facts.content_length, facts.chunked);
        state.after_fin = state.read_ahead.peer_closed() || state.stream_ended;
        state.requests = state.requests.saturating_add(1);
        state.handler_running = true;
        let hold = may_upgrade && !state.upgrades_on;
        if hold {
            self.upgrade_wanted.store(true, Ordering::Relaxed);
        }
        self.set_phase(&mut state, Phase::Busy);
        self.ctx.stats.request();
        (hold, u64::from(state.requests))
    }

    /// Whether hyper's connection supports upgrades now.
    pub(crate) fn upgrades_on(&self) -> bool {
        self.lock().upgrades_on
    }

    /// For the driver: whether a request waits for upgrades to be switched on. Clears the
    /// request and records that they are on (the driver switches at once).
    pub(crate) fn take_upgrade_wanted(&self) -> bool {
        if !self.upgrade_wanted.load(Ordering::Relaxed) {
            return false;
        }
        self.upgrade_wanted.store(false, Ordering::Relaxed);
        self.lock().upgrades_on = true;
        true
    }

    /// The service answered: decide keep-alive or close, and record it.
    pub(crate) fn decide(
        &self,
        policy: &Policy,
        facts: &RequestFacts,
        status: http::StatusCode,
        headers: &http::HeaderMap,
        body_length_known: bool,
    ) -> Verdict {
        let mut state = self.lock();
        state.handler_running = false;
        state.body.response_started();
        let budget = Budget {
            requests_left: Some(self.ctx.config.max_requests.saturating_sub(state.requests)),
            age_left: Some(
                (self.born + self.ctx.config.max_age).saturating_duration_since(Instant::now()),
            ),
            draining: state.draining,
        };
        let mut facts = *facts;
        facts.ambiguous_framing |= facts.chunked && state.body.saw_content_length();
        let verdict = match policy.decide(&facts, status, headers, body_length_known, budget) {
            Verdict::KeepAlive(_) if state.last_call.is_some() => Verdict::Close {
                reason: state.last_call.unwrap_or(CloseReason::IdleTimeout),
                until_close: false,
            },
            verdict => verdict,
        };
        match verdict {
            Verdict::PassThrough { upgrade: true } => {
                state.closing = Some(CloseReason::Upgraded);
                self.set_phase(&mut state, Phase::Upgraded);
            }
            Verdict::Close {
                reason,
                until_close,
            } => {
                state.closing = Some(reason);
                state.close_delimited = until_close;
            }
            _ => {}
        }
        verdict
    }

    /// The service failed: hyper closes the connection.
    pub(crate) fn service_failed(&self) {
        let mut state = self.lock();
        state.handler_running = false;
        state.closing.get_or_insert(CloseReason::Error);
        state.after_fin = false;
        if let Some(waker) = state.eof_waker.take() {
            waker.wake();
        }
    }

    /// The response body is done (or dropped): the connection goes idle, or to its close.
    pub(crate) fn response_finished(&self) {
        let mut state = self.lock();
        state.after_fin = false;
        if let Some(waker) = state.eof_waker.take() {
            waker.wake();
        }
        if state.phase != Phase::Busy {
            return;
        }
        let next = if state.closing.is_some() {
            Phase::Closing
        } else {
            self.idle_phase(&state, Instant::now())
        };
        self.set_phase(&mut state, next);
    }

    /// A graceful shutdown started: idle connections get the grace window, responses from
    /// now on say `Connection: close`.
    pub(crate) fn start_drain(&self) {
        let mut state = self.lock();
        state.draining = true;
        if let Phase::Idle { .. } = state.phase {
            let phase = self.idle_phase(&state, Instant::now());
            self.set_phase(&mut state, phase);
        }
    }

    /// One look at the connection for its driver, under one lock: the deadline it must wake
    /// up for, if any, and, while a handler runs, the watch for the client's FIN (hyper stops
    /// reading then): `Ready` when the FIN (or an error) is queued.
    ///
    /// With `park_after`, an idle connection's deadline is also the time to park it.
    pub(crate) fn poll_watch(
        &self,
        cx: &mut Context<'_>,
        park_after: Option<Duration>,
    ) -> (Option<Instant>, Poll<Fill>) {
        let mut state = self.lock();
        match state.phase {
            Phase::Idle {
                since, deadline, ..
            } => {
                let park = park_after.map_or(deadline, |after| since + after);
                (Some(deadline.min(park)), Poll::Pending)
            }
            Phase::ReadingHead { deadline } => (Some(deadline), Poll::Pending),
            Phase::Busy => {
                let state = &mut *state;
                let before = state.read_ahead.buffered();
                let fill = state.read_ahead.poll_fill(&self.stream, cx);
                if state.read_ahead.buffered() > before {
                    state.body.progressed();
                }
                let buffered = state.read_ahead.buffered();
                let timeout = self.ctx.config.idle_timeout;
                match fill {
                    // A full buffer: stop watching until hyper drains it (no spinning). The
                    // client is then held back by flow control, not silent: no body deadline.
                    Poll::Ready(Fill::Full) => (None, Poll::Pending),
                    // The client's FIN behind requests it sent before: they are answered (see
                    // `Shared::client_left`). The FIN stays recorded: no spinning.
                    Poll::Ready(Fill::PeerClosed) if !self.client_left(state) => {
                        (state.body.deadline(buffered, timeout), Poll::Pending)
                    }
                    other => (state.body.deadline(buffered, timeout), other),
                }
            }
            _ => (None, Poll::Pending),
        }
    }

    /// The client's FIN arrived while a handler runs: whether the client left (the handler is
    /// dropped and the connection closed at once) rather than half-closed behind requests it
    /// still wants answered.
    ///
    /// A request parsed after the FIN was complete before it and is answered; so is the
    /// running one when the client sent bytes after it (the next request, complete or not:
    /// hyper serves what is complete and then finds the end of the stream). When the end of
    /// the running request is not known (a chunked body, a head pipelined behind another), the
    /// decision is hyper's: it reads the end of the stream once its own buffer is empty, and
    /// ends the connection then.
    fn client_left(&self, state: &State) -> bool {
        if state.after_fin {
            return false;
        }
        let buffered = if self.cleartext {
            state.read_ahead.buffered()
        } else {
            // Under TLS the read-ahead holds records (perhaps the client's `close_notify`),
            // not requests.
            0
        };
        state.body.followed(buffered) == Some(false)
    }

    /// hyper's read found the end of the stream. While a request that was complete before the
    /// client's FIN runs, hyper must not see it yet (it would drop the handler): `true`, and
    /// `cx` is woken when the response is done.
    pub(crate) fn hold_eof(&self, cx: &mut Context<'_>) -> bool {
        let mut state = self.lock();
        if state.after_fin && state.phase == Phase::Busy {
            state.eof_waker = Some(cx.waker().clone());
            return true;
        }
        false
    }

    /// An idle deadline passed: whether bytes of a request wait in the socket or
    /// were read ahead, so the request is served rather than reset. Looks once per connection.
    pub(crate) fn request_waiting(&self) -> bool {
        let state = self.lock();
        if state.last_call.is_some() {
            return false;
        }
        if state.read_ahead.buffered() > 0 || state.unread.is_some() {
            return true;
        }
        let mut byte = [std::mem::MaybeUninit::<u8>::uninit(); 1];
        matches!(SockRef::from(&self.stream).peek(&mut byte), Ok(n) if n > 0)
    }

    /// A request is arriving although the idle deadline (`reason`) passed: it is served (its
    /// head within the header timeout), and its response closes the connection.
    pub(crate) fn last_call(&self, reason: CloseReason) {
        let mut state = self.lock();
        state.last_call = Some(reason);
        if let Phase::Idle { .. } = state.phase {
            let deadline = Instant::now() + self.ctx.config.header_timeout;
            self.set_phase(&mut state, Phase::ReadingHead { deadline });
        }
    }

    /// Whether hyper still holds bytes it could not write (its state must not be taken apart).
    pub(crate) fn write_pending(&self) -> bool {
        self.write_pending.load(Ordering::Relaxed)
    }

    /// What expired, if the phase's deadline has passed.
    pub(crate) fn expired(&self, now: Instant) -> Option<CloseReason> {
        let state = self.lock();
        match state.phase {
            Phase::Idle {
                deadline, reason, ..
            } if now >= deadline => Some(reason),
            Phase::ReadingHead { deadline } if now >= deadline => Some(CloseReason::HeaderTimeout),
            Phase::Busy => {
                let timeout = self.ctx.config.idle_timeout;
                let deadline = state.body.deadline(state.read_ahead.buffered(), timeout)?;
                (now >= deadline).then_some(CloseReason::BodyTimeout)
            }
            _ => None,
        }
    }

    /// The deadline of an idle connection.
    pub(crate) fn idle_deadline(&self) -> Option<Instant> {
        match self.lock().phase {
            Phase::Idle { deadline, .. } => Some(deadline),
            _ => None,
        }
    }

    /// Whether hyper's state can be taken apart and the connection parked: idle for
    /// `park_after`, nothing read ahead, nothing hyper still has to write.
    pub(crate) fn parkable(&self, now: Instant, park_after: Duration) -> bool {
        if self.write_pending.load(Ordering::Relaxed) {
            return false;
        }
        let state = self.lock();
        matches!(state.phase, Phase::Idle { since, .. } if now >= since + park_after)
            && state.read_ahead.buffered() == 0
            && state.unread.is_none()
            && state.linger.is_none()
            && !state.upgrades_on
    }

    /// Whether the connection parks in this poll, without waiting for `park_after`: idle
    /// right after its first response and nothing held (as for [`parkable`](Self::parkable)).
    /// A burst of new connections then does not keep a hyper state each until the timer's
    /// next tick, and the request buffers they free are not pinned between long-lived
    /// allocations made meanwhile (glibc gives back only the top of a heap).
    pub(crate) fn park_now(&self) -> bool {
        if self.write_pending.load(Ordering::Relaxed) {
            return false;
        }
        let state = self.lock();
        state.requests == 1
            && matches!(state.phase, Phase::Idle { .. })
            && state.read_ahead.buffered() == 0
            && state.unread.is_none()
            && state.linger.is_none()
            && !state.upgrades_on
    }

    /// Bytes of a request (after the TLS layer, if any) were handed to hyper: the first byte of
    /// a head starts the header timeout, and the body's progress is counted.
    pub(crate) fn delivered(&self, bytes: &[u8]) {
        let mut state = self.lock();
        let new_head = matches!(state.phase, Phase::Idle { .. });
        state.body.delivered(bytes, new_head);
        if new_head {
            let deadline = Instant::now() + self.ctx.config.header_timeout;
            self.set_phase(&mut state, Phase::ReadingHead { deadline });
        }
    }

    /// Hands back bytes hyper had read but not parsed (the start of a pipelined head), so the
    /// next reader gets them first: in front of the read-ahead in plain HTTP, in a buffer of
    /// their own under TLS (they are decrypted). From then on the head is timed by the header
    /// timeout.
    pub(crate) fn unread(&self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let mut state = self.lock();
        if self.cleartext {
            state.read_ahead.unread(bytes);
        } else {
            let unread = state.unread.get_or_insert_with(Box::default);
            unread.splice(0..0, bytes.iter().copied());
        }
        if let Phase::Idle { .. } = state.phase {
            let deadline = Instant::now() + self.ctx.config.header_timeout;
            self.set_phase(&mut state, Phase::ReadingHead { deadline });
        }
    }

    /// Moves bytes handed back under TLS into `buf`; false when there are none.
    pub(crate) fn take_unread(&self, buf: &mut ReadBuf<'_>) -> bool {
        let mut state = self.lock();
        let Some(unread) = state.unread.as_mut() else {
            return false;
        };
        let n = unread.len().min(buf.remaining());
        buf.put_slice(&unread[..n]);
        unread.drain(..n);
        if unread.is_empty() {
            state.unread = None;
        }
        true
    }

    /// The stream under hyper ended: the client's FIN, or (under TLS) its `close_notify`,
    /// which counts as the client's close too.
    pub(crate) fn stream_ended(&self) {
        let mut state = self.lock();
        state.stream_ended = true;
        if let Phase::Idle { .. } | Phase::ReadingHead { .. } = state.phase {
            // hyper closes now: no parking, no idle deadline during its close.
            self.set_phase(&mut state, Phase::Closing);
        }
    }

    /// The peer's FIN arrived while the connection was parked.
    pub(crate) fn parked_peer_closed(&self) {
        self.lock().parked_fin = true;
    }

    pub(crate) fn peer_closed(&self) -> bool {
        let state = self.lock();
        state.parked_fin || state.stream_ended || state.read_ahead.peer_closed()
    }

    pub(crate) fn phase(&self) -> Phase {
        self.lock().phase
    }

    /// The connection's tracing span, made on demand (a parked connection keeps none; the
    /// addresses are only looked up when the span is enabled).
    pub(crate) fn span(&self) -> tracing::Span {
        let addr = |a: io::Result<std::net::SocketAddr>| {
            a.map_or_else(|e| e.to_string(), |a| a.to_string())
        };
        tracing::debug_span!(
            "connection",
            peer = addr(self.stream.peer_addr()),
            local = addr(self.stream.local_addr())
        )
    }

    /// Leaves the idle gauge when the connection ends.
    pub(crate) fn finish(&self) {
        let mut state = self.lock();
        self.set_phase(&mut state, Phase::Closing);
    }
}

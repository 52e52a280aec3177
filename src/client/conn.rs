//! A client connection as the pool keeps it: hot (hyper's HTTP/1 state kept, for reuse within
//! moments) or parked (the bare socket, once idle for the pool's `park_after`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use hyper::client::conn::http1::{Connection, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use super::body::{Driver, ReqBody};
use super::io::CountingIo;
use super::pool::Idle;
use super::stats::PoolCloseReason;

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
    /// What hyper wakes while the connection sits idle in the pool.
    pub(crate) signal: Arc<IdleSignal>,
    pub(crate) signal_waker: Waker,
    /// hyper was last polled with `signal_waker` (its registrations are the signal's), with
    /// `woken` cleared just before: while nothing has woken it since, a poll now would only
    /// register the same waker again.
    signalled: bool,
    /// The `Host` header of its last request, reused by the next one to the same authority
    /// (no validation, copy and allocation of the value per request).
    pub(crate) host: Option<http::HeaderValue>,
    /// What `signal.watcher` holds, kept here too so that it is compared without the lock
    /// (only [`Idle::poll_idle`] sets it).
    watcher: Option<Waker>,
    /// The allocation of its last request's driver, emptied, for the next one.
    pub(crate) spare: Option<Box<Driver<T>>>,
}

impl<T> Hot<T>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    pub(crate) fn new(tx: SendRequest<ReqBody>, conn: Http1<T>, read: Arc<AtomicU64>) -> Self {
        let signal = Arc::new(IdleSignal {
            idle: AtomicBool::new(false),
            woken: AtomicBool::new(true),
            watcher: Mutex::new(None),
        });
        let signal_waker = Waker::from(signal.clone());
        Hot {
            tx,
            conn,
            read,
            signal,
            signal_waker,
            signalled: false,
            host: None,
            watcher: None,
            spare: None,
        }
    }

    /// Drives hyper's connection with the task's waker (its registrations become the task's).
    pub(crate) fn poll_conn(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), hyper::Error>> {
        self.signalled = false;
        self.conn.poll_without_shutdown(cx)
    }

    /// Drives hyper's connection without registering the task: its registrations become the
    /// connection's signal, which wakes nobody while it is in use and the pool's watcher once
    /// it is idle; a return to the pool right after needs no poll of its own then.
    pub(crate) fn poll_conn_signalled(&mut self) -> Poll<Result<(), hyper::Error>> {
        // Cleared before the poll: a wake-up from here on is recorded. (Already clear: the
        // store that cleared it orders this poll the same way, and a store now would only
        // cost a locked instruction.)
        if self.signal.woken.load(Ordering::SeqCst) {
            self.signal.woken.store(false, Ordering::SeqCst);
        }
        let mut signal_cx = Context::from_waker(&self.signal_waker);
        let polled = self.conn.poll_without_shutdown(&mut signal_cx);
        // Only a connection still waiting is registered; one that ended (a FIN with the
        // response) says so again when polled next.
        self.signalled = polled.is_pending();
        polled
    }
}

/// The waker hyper's state is polled with while the connection sits idle in the pool. A
/// wake-up reaches the pool's watcher only while the connection is idle: once it is handed out,
/// sending the next request wakes hyper's request channel, where this waker may still be
/// registered, and the watcher has nothing to do with it. It also records that something
/// happened since the connection was last polled idle, so a checkout can skip its look at a
/// connection nothing woke ([`Idle::quiet`]).
#[derive(Debug)]
pub(crate) struct IdleSignal {
    idle: AtomicBool,
    /// Set by every wake-up, and when the connection goes idle (not yet registered); cleared
    /// just before hyper is polled idle.
    woken: AtomicBool,
    watcher: Mutex<Option<Waker>>,
}

thread_local! {
    /// The signal (its address) of the connection whose response body this thread is
    /// polling now, if any (see [`IdleSignal::body_polled`]).
    static BODY_POLL: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

impl IdleSignal {
    /// An identity for [`body_polled`](Self::body_polled).
    pub(crate) fn id(signal: &Arc<IdleSignal>) -> usize {
        Arc::as_ptr(signal) as usize
    }

    /// Runs `poll` (a poll of the connection's response body) ignoring the wake-ups it causes
    /// itself on this thread: taking the body's data wakes hyper's body sender (registered
    /// with the signal), which only says that more of a body may be sent. Ignored, they leave
    /// the connection seen as not woken, so its return to the pool needs no poll. A wake-up
    /// from another thread (the socket's readiness) is recorded as ever.
    pub(crate) fn body_polled<R>(id: usize, poll: impl FnOnce() -> R) -> R {
        let before = BODY_POLL.with(|cell| cell.replace(id));
        let result = poll();
        BODY_POLL.with(|cell| cell.set(before));
        result
    }
}

impl std::task::Wake for IdleSignal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if BODY_POLL.with(|cell| cell.get()) == IdleSignal::id(self) {
            return;
        }
        if !self.woken.load(Ordering::SeqCst) {
            self.woken.store(true, Ordering::SeqCst);
        }
        if self.idle.load(Ordering::SeqCst) {
            let watcher = self
                .watcher
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone();
            if let Some(watcher) = watcher {
                watcher.wake();
            }
        }
    }
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

/// A plain TCP socket is registered with the runtime again when it is parked, so that its
/// registration (tokio's per-socket readiness state, 256 bytes) is allocated then, next to the
/// other parked connections' registrations, instead of staying where it was made: among the
/// buffers of the connection's first request, freed since, where it alone would keep a page of
/// the heap resident (measured: 4.6 KB resident per idle connection with it, 2.4 KB without,
/// `client_figures memory`). Other connection types are left as they are. `Err` when the
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
            // hyper reads an idle connection itself: EOF ends it, any byte is an error. It is
            // polled with the connection's signal, which passes wake-ups on to `cx` while the
            // connection is idle.
            ClientConn::Hot(hot) => {
                // (The lock only when the watcher changes: a connection returns to the same
                // group's watcher again and again.)
                if !hot
                    .watcher
                    .as_ref()
                    .is_some_and(|w| w.will_wake(cx.waker()))
                {
                    let waker = cx.waker().clone();
                    *hot.signal
                        .watcher
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(waker.clone());
                    hot.watcher = Some(waker);
                }
                // hyper's registrations are already the signal's and nothing woke it since
                // (checked after the watcher is set: a wake-up from here on reaches it), and
                // it waits for the next request: a poll would only register them again.
                if hot.signalled
                    && hot.signal.idle.load(Ordering::SeqCst)
                    && !hot.signal.woken.load(Ordering::SeqCst)
                    && hot.tx.is_ready()
                {
                    return Poll::Pending;
                }
                match hot.poll_conn_signalled() {
                    Poll::Ready(Ok(())) => Poll::Ready(PoolCloseReason::ServerFin),
                    Poll::Ready(Err(error)) => Poll::Ready(idle_error_reason(&error)),
                    Poll::Pending => Poll::Pending,
                }
            }
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
        *self = ClientConn::Bare(reregister(parts.io.into_inner().inner)?);
        Ok(())
    }

    fn parks(&self) -> bool {
        matches!(self, ClientConn::Hot(_))
    }

    fn set_idle(&mut self, idle: bool) {
        if let ClientConn::Hot(hot) = self {
            if idle && !hot.signalled {
                // Not registered yet: until it is polled idle, a checkout looks.
                hot.signal.woken.store(true, Ordering::SeqCst);
            }
            hot.signal.idle.store(idle, Ordering::SeqCst);
        }
    }

    fn quiet(&self) -> bool {
        match self {
            ClientConn::Hot(hot) => !hot.signal.woken.load(Ordering::SeqCst),
            _ => false,
        }
    }
}

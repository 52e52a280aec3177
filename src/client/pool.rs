//! A keyed pool of idle connections, generic over the connection, with an event-driven FIN
//! watch on every idle one.
//!
//! Idle connections are kept small: after [`PoolConfig::park_after`] a connection gives back
//! what it keeps only for quick reuse ([`Idle::park`]; the HTTP client drops hyper's state and
//! keeps the socket), leaving the connection itself plus a few timestamps. Each connection has one small watcher task for its whole life, started the
//! first time it is returned. While the connection is idle the watcher is registered for its
//! readability and reads at most one byte when woken: zero bytes is the server's FIN, any byte
//! is a protocol violation (nobody asked), an error is a reset; each evicts and closes the
//! connection at once, so nothing lingers in CLOSE_WAIT. The same task closes the connection
//! when its idle deadline passes (the client closes first, so TIME_WAIT stays on the client).
//!
//! The hot path schedules nothing: returning a connection registers the watcher's waker on the
//! socket from the returning task itself, and a checkout just takes the connection back. The
//! watcher runs only when the socket or its timer fires.
//!
//! Checkout is last-in, first-out per key: the most recently used connection is the one most
//! likely alive and warm.
//!
//! ```
//! use keepalive::client::{Pool, PoolConfig};
//! use tokio::net::TcpStream;
//!
//! # async fn run() -> std::io::Result<()> {
//! let pool: Pool<String, TcpStream> = Pool::new(PoolConfig::new());
//! let stream = match pool.checkout(&"db-1".to_string()).await {
//!     Ok(Some(idle)) => idle.into_inner(),
//!     _ => TcpStream::connect("127.0.0.1:5432").await?,
//! };
//! // ... use it, then give it back:
//! pool.put("db-1".to_string(), stream, keepalive::client::Reuse::default());
//! # Ok(())
//! # }
//! ```
//!
//! # Race window
//!
//! A connection can die between its checkout and its first write (the FIN is in flight). The
//! HTTP client retries idempotent requests that fail that way; raw users must do the same. A FIN
//! (or a byte) that arrived before the checkout is seen there, with one non-blocking look, even
//! when the watcher has not run since.

use std::collections::{HashMap, VecDeque};
use std::future::{poll_fn, Future as _};
use std::hash::Hash;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::stats::{ClientStats, PoolCloseReason};

/// Limits of a [`Pool`].
#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub(crate) max_idle_per_key: usize,
    pub(crate) max_per_key: Option<usize>,
    pub(crate) wait_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) max_lifetime: Option<Duration>,
    pub(crate) max_requests: Option<u32>,
    pub(crate) park_after: Option<Duration>,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            max_idle_per_key: 64,
            max_per_key: None,
            wait_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(50),
            max_lifetime: None,
            max_requests: None,
            park_after: Some(Duration::from_millis(100)),
        }
    }
}

impl PoolConfig {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Idle connections kept per key; more are closed when returned.
    ///
    /// Default is 64.
    pub fn max_idle_per_key(mut self, max: usize) -> Self {
        self.max_idle_per_key = max;
        self
    }

    /// Connections open per key (idle and in use). Past it, a checkout waits for one to come
    /// back or close, in order, up to [`wait_timeout`](Self::wait_timeout).
    ///
    /// Default is no limit.
    pub fn max_per_key(mut self, max: Option<usize>) -> Self {
        self.max_per_key = max.map(|m| m.max(1));
        self
    }

    /// How long a checkout waits when [`max_per_key`](Self::max_per_key) is reached.
    ///
    /// Default is 30 s.
    pub fn wait_timeout(mut self, timeout: Duration) -> Self {
        self.wait_timeout = timeout;
        self
    }

    /// How long a connection may stay idle before the pool closes it.
    ///
    /// Default is 50 s (below the common server default of 60 s).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// The longest a connection may live; it is closed when it next becomes idle past it.
    ///
    /// Default is no limit.
    pub fn max_lifetime(mut self, lifetime: Option<Duration>) -> Self {
        self.max_lifetime = lifetime;
        self
    }

    /// How long a connection stays idle before [`Idle::park`] may give back the memory it
    /// keeps for quick reuse (the HTTP client drops hyper's state and keeps the bare socket).
    /// `None` never parks.
    ///
    /// Default is 100 ms.
    pub fn park_after(mut self, after: Option<Duration>) -> Self {
        self.park_after = after;
        self
    }

    /// Uses of one connection before it is closed.
    ///
    /// Default is no limit.
    pub fn max_requests(mut self, max: Option<u32>) -> Self {
        self.max_requests = max.map(|m| m.max(1));
        self
    }
}

/// What is known about a connection when it is returned: how long it may still be reused.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reuse {
    /// Close it at this instant even if idle timeout says later (the server's advertised
    /// `Keep-Alive: timeout=` minus the margin).
    pub close_by: Option<Instant>,
    /// Uses left (the server's `Keep-Alive: max=`).
    pub uses_left: Option<u32>,
}

/// A connection taken out of a [`Pool`], with what the pool knows about it.
#[derive(Debug)]
pub struct Pooled<T> {
    io: T,
    history: History<T>,
}

/// What the pool knows about a connection (age, uses, the server's limits, its watcher),
/// carried while it is in use and handed back with [`Pool::put_back`]. Dropping it instead
/// (the connection is closed) stops the connection's watcher.
#[derive(Debug)]
pub struct History<T> {
    meta: Meta,
    watch: Option<Arc<Watch<T>>>,
}

impl<T> Drop for History<T> {
    fn drop(&mut self) {
        if let Some(watch) = self.watch.take() {
            watch.retire();
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Meta {
    created: Instant,
    uses: u32,
    close_by: Option<Instant>,
    uses_left: Option<u32>,
}

impl<T> Pooled<T> {
    /// The connection.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.io
    }

    /// Takes the connection out of the pool's care (its history is forgotten: a later
    /// [`Pool::put`] counts it as new).
    pub fn into_inner(self) -> T {
        let Pooled { io, history } = self;
        drop(history);
        io
    }

    /// The connection and its history, to hand back with [`Pool::put_back`].
    pub fn into_parts(self) -> (T, History<T>) {
        (self.io, self.history)
    }

    /// How many times it was used before.
    pub fn uses(&self) -> u32 {
        self.history.meta.uses
    }
}

/// One connection's idle state, shared by the pool and the connection's watcher task.
#[derive(Debug)]
struct Watch<T> {
    state: Mutex<WatchState<T>>,
}

#[derive(Debug)]
struct WatchState<T> {
    /// The parked connection, while it is idle.
    idle: Option<(T, Meta)>,
    /// When to give the idle connection's spare memory back ([`Idle::park`]), if not yet.
    park_at: Option<Instant>,
    /// When the current idle period ends, and why.
    deadline: Instant,
    reason: PoolCloseReason,
    /// The deadline the watcher's timer is set for (it may be earlier than `deadline`: the
    /// timer is moved only when a deadline comes earlier).
    armed: Option<Instant>,
    /// The watcher task's waker, once it has run.
    waker: Option<Waker>,
    /// The connection is gone: the watcher ends.
    retired: bool,
}

impl<T> Watch<T> {
    fn retire(&self) {
        let waker = {
            let mut state = lock(&self.state);
            state.retired = true;
            state.idle = None;
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// A connection the [`Pool`] can watch while it sits idle. Implemented for every tokio
/// `AsyncRead` (it reads at most one byte: zero bytes is the peer's FIN, any byte a protocol
/// violation, an error a reset); the HTTP client implements it for its own connections.
pub trait Idle: Send + 'static {
    /// Polls the idle connection, registering the task for what it waits on: `Ready` with the
    /// reason it must be closed now.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<PoolCloseReason>;

    /// The connection has been idle for [`PoolConfig::park_after`]: a chance to give back
    /// memory it holds only for quick reuse (a protocol codec, buffers). `Err` closes it
    /// instead. The default does nothing.
    fn park(&mut self) -> Result<(), PoolCloseReason> {
        Ok(())
    }

    /// Whether [`park`](Idle::park) would do anything now (so the pool sets no timer for it
    /// otherwise). The default says no.
    fn parks(&self) -> bool {
        false
    }
}

impl<T: AsyncRead + Unpin + Send + 'static> Idle for T {
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<PoolCloseReason> {
        let mut byte = [0u8; 1];
        let mut buf = ReadBuf::new(&mut byte);
        match Pin::new(self).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) if buf.filled().is_empty() => {
                Poll::Ready(PoolCloseReason::ServerFin)
            }
            Poll::Ready(Ok(())) => Poll::Ready(PoolCloseReason::UnexpectedData),
            // A TLS stream reports the server's FIN without a close_notify so.
            Poll::Ready(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                Poll::Ready(PoolCloseReason::ServerFin)
            }
            Poll::Ready(Err(_)) => Poll::Ready(PoolCloseReason::Error),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A pool of idle connections keyed by `K`, reused last-in first-out, each idle one kept bare
/// and watched for the peer's FIN (zero bytes), unexpected bytes or its deadline, any of which
/// closes it at once. Cheap to clone (shared). Dropping the last clone closes every idle
/// connection. See the [`client`](crate::client) module.
#[derive(Debug)]
pub struct Pool<K, T> {
    shared: Arc<Shared<K, T>>,
}

impl<K, T> Clone for Pool<K, T> {
    fn clone(&self) -> Self {
        Pool {
            shared: self.shared.clone(),
        }
    }
}

#[derive(Debug)]
struct Shared<K, T> {
    config: PoolConfig,
    stats: ClientStats,
    hosts: Mutex<HashMap<K, Host<T>>>,
}

#[derive(Debug)]
struct Host<T> {
    idle: Vec<Arc<Watch<T>>>,
    open: usize,
    waiters: VecDeque<oneshot::Sender<Handoff<T>>>,
}

impl<T> Default for Host<T> {
    fn default() -> Self {
        Host {
            idle: Vec::new(),
            open: 0,
            waiters: VecDeque::new(),
        }
    }
}

/// What a waiter gets: a connection, or the right to open one.
#[derive(Debug)]
enum Handoff<T> {
    Conn(T, History<T>),
    Open,
}

/// What a checkout found.
#[derive(Debug)]
#[non_exhaustive]
pub enum Checkout<T> {
    /// An idle connection to reuse.
    Reused(Pooled<T>),
    /// No idle connection: the caller may open a new one (it holds one of the key's slots,
    /// given back by [`Pool::put_back`] or [`Pool::discard`]).
    Open(Slot),
}

/// The right to open one connection for a key (see [`Checkout::Open`]).
#[derive(Debug)]
pub struct Slot {
    created: Instant,
}

impl Slot {
    /// The history of the connection opened with this slot.
    pub fn into_history<T>(self) -> History<T> {
        History {
            meta: Meta {
                created: self.created,
                uses: 0,
                close_by: None,
                uses_left: None,
            },
            watch: None,
        }
    }
}

/// A checkout waited longer than [`PoolConfig::wait_timeout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitTimeout;

impl std::fmt::Display for WaitTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("timed out waiting for a pooled connection")
    }
}

impl std::error::Error for WaitTimeout {}

fn lock<X>(mutex: &Mutex<X>) -> MutexGuard<'_, X> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<K, T> Pool<K, T>
where
    K: Eq + Hash + Clone + Send + 'static,
    T: Idle,
{
    /// An empty pool.
    pub fn new(config: PoolConfig) -> Self {
        Self::with_stats(config, ClientStats::default())
    }

    pub(crate) fn with_stats(config: PoolConfig, stats: ClientStats) -> Self {
        Pool {
            shared: Arc::new(Shared {
                config,
                stats,
                hosts: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The pool's counters.
    pub fn stats(&self) -> &ClientStats {
        &self.shared.stats
    }

    /// Idle connections for `key` now.
    pub fn idle_count(&self, key: &K) -> usize {
        lock(&self.shared.hosts)
            .get(key)
            .map_or(0, |host| host.idle.len())
    }

    /// Takes the most recently returned live connection for `key`, or a [`Slot`] to open a new
    /// one, waiting in order when [`PoolConfig::max_per_key`] is reached.
    pub async fn checkout_or_slot(&self, key: &K) -> Result<Checkout<T>, WaitTimeout> {
        self.checkout_inner(key, true).await
    }

    /// A [`Slot`] to open a new connection for `key`, never an idle one (a retry after a
    /// reused connection failed must not land on another that may be as stale). Waits like
    /// [`checkout_or_slot`](Self::checkout_or_slot) at the per-key limit, where a connection
    /// coming back may be handed over instead.
    pub async fn new_slot(&self, key: &K) -> Result<Checkout<T>, WaitTimeout> {
        self.checkout_inner(key, false).await
    }

    async fn checkout_inner(&self, key: &K, reuse_idle: bool) -> Result<Checkout<T>, WaitTimeout> {
        let waiter = {
            let mut hosts = lock(&self.shared.hosts);
            let host = host_entry(&mut hosts, key);
            // (A new slot leaves the idle connections where they are.)
            while let Some(watch) = if reuse_idle { host.idle.pop() } else { None } {
                let taken = lock(&watch.state).idle.take();
                let Some((mut io, meta)) = taken else {
                    // Its watcher closed it a moment ago and already gave back its place.
                    continue;
                };
                // A FIN or bytes may have arrived since the watcher last ran (it runs only
                // when scheduled): one look now, so a dead connection is never handed out.
                let mut cx = Context::from_waker(Waker::noop());
                if let Poll::Ready(reason) = io.poll_idle(&mut cx) {
                    watch.retire();
                    release_place(host);
                    self.shared.stats.closed(reason);
                    tracing::debug!(reason = reason.name(), "pooled connection dead at checkout");
                    drop(io);
                    continue;
                }
                let history = History {
                    meta,
                    watch: Some(watch),
                };
                return Ok(Checkout::Reused(Pooled { io, history }));
            }
            match self.shared.config.max_per_key {
                Some(max) if host.open >= max => {
                    let (tx, rx) = oneshot::channel();
                    host.waiters.push_back(tx);
                    rx
                }
                _ => {
                    host.open += 1;
                    return Ok(Checkout::Open(Slot {
                        created: Instant::now(),
                    }));
                }
            }
        };
        let mut waiter = waiter;
        match tokio::time::timeout(self.shared.config.wait_timeout, &mut waiter).await {
            Ok(Ok(Handoff::Conn(io, history))) => Ok(Checkout::Reused(Pooled { io, history })),
            Ok(Ok(Handoff::Open)) => Ok(Checkout::Open(Slot {
                created: Instant::now(),
            })),
            Ok(Err(_)) => Err(WaitTimeout),
            Err(_) => {
                // A handoff may have raced with the timeout: give it back.
                waiter.close();
                match waiter.try_recv() {
                    Ok(Handoff::Conn(io, history)) => {
                        self.park(key.clone(), io, history, Reuse::default(), false)
                    }
                    Ok(Handoff::Open) => {
                        if let Some(host) = lock(&self.shared.hosts).get_mut(key) {
                            release_place(host);
                        }
                    }
                    Err(_) => {}
                }
                Err(WaitTimeout)
            }
        }
    }

    /// Like [`checkout_or_slot`](Self::checkout_or_slot), for users that do not track slots:
    /// `Some` idle connection, or `None` (open a new one and [`put`](Self::put) it later).
    pub async fn checkout(&self, key: &K) -> Result<Option<Pooled<T>>, WaitTimeout> {
        match self.checkout_or_slot(key).await? {
            Checkout::Reused(pooled) => Ok(Some(pooled)),
            Checkout::Open(_) => Ok(None),
        }
    }

    /// Returns a connection after a use, with its [`History`] (from [`Pooled::into_parts`] or
    /// [`Slot::into_history`]), so age, uses, the server's limits and its watcher carry over.
    pub fn put_back(&self, key: K, io: T, history: History<T>, reuse: Reuse) {
        self.park(key, io, history, reuse, true);
    }

    /// Returns a connection without history (counted as new, used once).
    pub fn put(&self, key: K, io: T, reuse: Reuse) {
        let history = History {
            meta: Meta {
                created: Instant::now(),
                uses: 0,
                close_by: None,
                uses_left: None,
            },
            watch: None,
        };
        self.park(key, io, history, reuse, true);
    }

    /// Hands the connection to a waiter, or parks it idle under its watcher, or closes it.
    fn park(&self, key: K, io: T, mut history: History<T>, reuse: Reuse, used: bool) {
        let config = &self.shared.config;
        let now = Instant::now();
        let meta = &mut history.meta;
        if used {
            meta.uses = meta.uses.saturating_add(1);
        }
        if let Some(by) = reuse.close_by {
            meta.close_by = Some(meta.close_by.map_or(by, |old| old.min(by)));
        }
        if let Some(left) = reuse.uses_left {
            meta.uses_left = Some(meta.uses_left.map_or(left, |old| old.min(left)));
        } else if let (true, Some(left)) = (used, meta.uses_left) {
            meta.uses_left = Some(left.saturating_sub(1));
        }
        let mut deadline = now + config.idle_timeout;
        let mut reason = PoolCloseReason::IdleTimeout;
        if let Some(by) = meta.close_by {
            if by <= deadline {
                deadline = by;
                reason = PoolCloseReason::ServerTimeout;
            }
        }
        if let Some(lifetime) = config.max_lifetime {
            if meta.created + lifetime <= deadline {
                deadline = meta.created + lifetime;
                reason = PoolCloseReason::MaxLifetime;
            }
        }
        let retire = if config.max_requests.is_some_and(|max| meta.uses >= max)
            || meta.uses_left == Some(0)
        {
            Some(PoolCloseReason::MaxRequests)
        } else if deadline <= now {
            Some(reason)
        } else {
            None
        };

        let mut hosts = lock(&self.shared.hosts);
        let host = host_entry(&mut hosts, &key);
        if let Some(reason) = retire {
            release_place(host);
            drop(hosts);
            self.shared.stats.closed(reason);
            return;
        }
        // A waiter takes it directly, in order.
        let mut conn = Some((io, history));
        while let Some(waiter) = host.waiters.pop_front() {
            let (io, history) = conn.take().unwrap_or_else(|| unreachable!());
            match waiter.send(Handoff::Conn(io, history)) {
                Ok(()) => return,
                Err(Handoff::Conn(io, history)) => conn = Some((io, history)),
                Err(Handoff::Open) => unreachable!("only connections are sent here"),
            }
        }
        let Some((mut io, mut history)) = conn else {
            return;
        };
        if host.idle.len() >= config.max_idle_per_key {
            release_place(host);
            drop(hosts);
            self.shared.stats.closed(PoolCloseReason::TooManyIdle);
            return;
        }
        let (watch, first) = match history.watch.take() {
            Some(watch) => (watch, false),
            None => {
                let watch = Arc::new(Watch {
                    state: Mutex::new(WatchState {
                        idle: None,
                        park_at: None,
                        deadline,
                        reason,
                        armed: None,
                        waker: None,
                        retired: false,
                    }),
                });
                (watch, true)
            }
        };
        let meta = history.meta;
        drop(history);
        let wake = {
            let mut state = lock(&watch.state);
            // Register the watcher for the socket's readability from here: the watcher task
            // need not run for it. A FIN (or anything) already there closes it now.
            if let Some(waker) = state.waker.clone() {
                if let Poll::Ready(reason) = io.poll_idle(&mut Context::from_waker(&waker)) {
                    state.retired = true;
                    let waker = state.waker.take();
                    drop(state);
                    release_place(host);
                    drop(hosts);
                    self.shared.stats.closed(reason);
                    drop(io);
                    if let Some(waker) = waker {
                        waker.wake();
                    }
                    return;
                }
            }
            state.idle = Some((io, meta));
            state.deadline = deadline;
            state.reason = reason;
            let park_at = config
                .park_after
                .filter(|_| state.idle.as_ref().is_some_and(|(io, _)| io.parks()))
                .map(|after| now + after);
            state.park_at = park_at;
            // The watcher's timer only needs moving when this deadline is earlier, or when it
            // went off while the connection was in use (the watcher then left it alone).
            let due = park_at.map_or(deadline, |at| at.min(deadline));
            if state.armed.is_none_or(|armed| due < armed || armed <= now) {
                state.waker.clone()
            } else {
                None
            }
        };
        host.idle.push(watch.clone());
        drop(hosts);
        if first {
            tokio::spawn(watch_connection(Arc::downgrade(&self.shared), key, watch));
        } else if let Some(waker) = wake {
            waker.wake();
        }
    }
}

impl<K: Eq + Hash, T> Pool<K, T> {
    /// A connection of `key` closed instead of coming back (error, server said close): counts
    /// it and gives its place to the next waiter.
    pub fn discard(&self, key: &K, reason: PoolCloseReason) {
        self.shared.stats.closed(reason);
        let mut hosts = lock(&self.shared.hosts);
        if let Some(host) = hosts.get_mut(key) {
            release_place(host);
        }
    }
}

/// The host's entry, created if missing; the key is cloned only then (`entry` would clone it
/// on every call, and a key may own a string).
fn host_entry<'a, K: Eq + Hash + Clone, T>(
    hosts: &'a mut HashMap<K, Host<T>>,
    key: &K,
) -> &'a mut Host<T> {
    if !hosts.contains_key(key) {
        hosts.insert(key.clone(), Host::default());
    }
    hosts
        .get_mut(key)
        .unwrap_or_else(|| unreachable!("inserted above"))
}

/// A connection of the host closed: one more may be opened, by the first waiter if any.
fn release_place<T>(host: &mut Host<T>) {
    while let Some(waiter) = host.waiters.pop_front() {
        if waiter.send(Handoff::Open).is_ok() {
            return;
        }
    }
    host.open = host.open.saturating_sub(1);
}

/// Watches one connection for its whole life: while it is idle, for the server's FIN,
/// unexpected bytes or its deadline (then it evicts and closes it); while it is in use it just
/// sleeps. Ends when the connection is retired (closed by its user, or by the pool).
async fn watch_connection<K, T>(pool: Weak<Shared<K, T>>, key: K, watch: Arc<Watch<T>>)
where
    K: Eq + Hash,
    T: Idle,
{
    let mut timer = std::pin::pin!(tokio::time::sleep_until(Instant::now()));
    let reason = poll_fn(|cx| {
        let mut state = lock(&watch.state);
        if state.retired {
            return Poll::Ready(None);
        }
        if !state
            .waker
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            state.waker = Some(cx.waker().clone());
        }
        let state = &mut *state;
        let Some((io, _)) = state.idle.as_mut() else {
            // In use: nothing to watch until it comes back (the return wakes us if needed).
            return Poll::Pending;
        };
        if let Poll::Ready(reason) = io.poll_idle(cx) {
            return Poll::Ready(Some(reason));
        }
        loop {
            // The timer serves the park deadline first, then the close deadline.
            let due = match state.park_at {
                Some(park_at) if park_at < state.deadline => park_at,
                _ => state.deadline,
            };
            match state.armed {
                Some(armed) if armed <= due => {}
                _ => {
                    timer.as_mut().reset(due);
                    state.armed = Some(due);
                }
            }
            match timer.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) => {
                    state.armed = None;
                    let now = Instant::now();
                    if state.park_at.is_some_and(|at| now >= at) {
                        state.park_at = None;
                        let Some((io, _)) = state.idle.as_mut() else {
                            return Poll::Pending;
                        };
                        if let Err(reason) = io.park() {
                            return Poll::Ready(Some(reason));
                        }
                        // Watch what is left (the bare connection).
                        if let Poll::Ready(reason) = io.poll_idle(cx) {
                            return Poll::Ready(Some(reason));
                        }
                    }
                    if now >= state.deadline {
                        return Poll::Ready(Some(state.reason));
                    }
                    // Fired for an earlier idle period: move on to this one's deadlines.
                }
            }
        }
    })
    .await;
    let Some(reason) = reason else { return };
    let Some(shared) = pool.upgrade() else { return };
    let mut hosts = lock(&shared.hosts);
    let taken = {
        let mut state = lock(&watch.state);
        state.retired = true;
        state.idle.take()
    };
    // Only if a checkout has not taken it in the meantime.
    if let Some((io, _)) = taken {
        if let Some(host) = hosts.get_mut(&key) {
            host.idle.retain(|other| !Arc::ptr_eq(other, &watch));
            release_place(host);
        }
        drop(hosts);
        tracing::debug!(reason = reason.name(), "closing idle pooled connection");
        shared.stats.closed(reason);
        drop(io);
    }
}

impl<K, T> Drop for Shared<K, T> {
    /// Closes every idle connection (the client's FIN comes first) and ends their watchers.
    fn drop(&mut self) {
        let hosts = std::mem::take(&mut *lock(&self.hosts));
        for host in hosts.into_values() {
            for watch in host.idle {
                watch.retire();
            }
        }
    }
}

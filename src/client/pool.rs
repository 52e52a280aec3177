//! A keyed pool of idle connections, generic over the connection, with an event-driven FIN
//! watch on every idle one.
//!
//! Idle connections are kept small: after [`PoolConfig::park_after`] a connection gives back
//! what it keeps only for quick reuse ([`Idle::park`]; the HTTP client drops its buffers and
//! keeps the socket), leaving the connection itself plus a few timestamps. Idle connections sit
//! in a dense table (no allocation of their own), in groups of 64 places, each group watched by
//! one small task. While a connection is idle its group's task is registered for its
//! readability and reads at most one byte when woken: zero bytes is the server's FIN, any byte
//! is a protocol violation (nobody asked), an error is a reset; each evicts and closes the
//! connection at once, so nothing lingers in CLOSE_WAIT. The same task closes the connection
//! when its idle deadline passes (the client closes first, so TIME_WAIT stays on the client),
//! with one timer per group set for the group's earliest deadline.
//!
//! The hot path schedules nothing: returning a connection takes the pool's lock once and
//! registers the group task's waker on the socket from the returning task itself; a checkout
//! takes the lock once and the connection back. A group's task runs only when one of its
//! sockets or its timer fires, or when a return brings a deadline earlier than its timer's.
//!
//! A server that advertises no idle limit still has one. The FIN watch sees when the server
//! closes an idle connection, and after how long: the pool learns the limit per key from such
//! closes and then closes idle connections of that key a margin before it, so the next
//! TIME_WAIT is the client's ([`PoolConfig::learn_idle_limits`]).
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
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;

use tokio::io::AsyncRead;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::learned_idle::{IdlePlan, LearnedIdle};
use super::stats::{ClientStats, PoolCloseReason};
use crate::fin::IdleEvent;

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
    pub(crate) learn_idle_limits: bool,
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
            learn_idle_limits: true,
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
    /// keeps for quick reuse (the HTTP client drops its buffers and keeps the bare socket).
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

    /// Whether the pool learns, per key, the idle limit of a server that advertises none,
    /// from the idle connections it sees the server close (after 1 s of idleness or more),
    /// and from then on closes idle connections of that key a margin before it (a quarter of
    /// it, at most 1 s), so that the close and its TIME_WAIT stay on the client's side. A
    /// single early close (a restart, a drain) does not lower the estimate: a second must
    /// confirm it. It is forgotten 10 minutes after it was last confirmed, and every
    /// 2 minutes one connection is let idle past it, so that a raised server limit is found
    /// again. A limit the server advertises ([`Reuse::idle_limit`]) always comes first.
    /// Closes for it count as [`LearnedTimeout`](PoolCloseReason::LearnedTimeout).
    ///
    /// Default is on.
    pub fn learn_idle_limits(mut self, on: bool) -> Self {
        self.learn_idle_limits = on;
        self
    }
}

/// What is known about a connection when it is returned: how long it may still be reused.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reuse {
    /// The longest the connection may now sit idle, counted from this return, when that is
    /// shorter than the pool's idle timeout: the server's advertised `Keep-Alive: timeout=`
    /// minus a margin. It is an idle limit, not a lifetime: every return restarts it, and the
    /// last one given holds until a later return gives another. (It replaces 0.1's
    /// `close_by`, an instant that never moved, which closed busy connections.)
    pub idle_limit: Option<Duration>,
    /// Uses left (the server's `Keep-Alive: max=`).
    pub uses_left: Option<u32>,
}

/// A connection taken out of a [`Pool`], with what the pool knows about it.
#[derive(Debug)]
pub struct Pooled<T> {
    io: T,
    history: History<T>,
}

/// What the pool knows about a connection (age, uses, the server's limits), carried while it
/// is in use and handed back with [`Pool::put_back`] or [`Pool::discard`]. It holds the
/// connection's place among its key's [`max_per_key`](PoolConfig::max_per_key): dropped
/// instead, it gives the place back and counts the connection closed as
/// [`Dropped`](PoolCloseReason::Dropped), so a request cancelled at any point never blocks its
/// key.
pub struct History<T> {
    meta: Meta,
    /// The place it holds (`None` for a connection the pool did not count: [`Pool::put`]).
    place: Option<Place>,
    _conn: PhantomData<fn(T)>,
}

impl<T> std::fmt::Debug for History<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History")
            .field("uses", &self.meta.uses)
            .finish()
    }
}

impl<T> History<T> {
    fn new(meta: Meta, place: Option<Place>) -> Self {
        History {
            meta,
            place,
            _conn: PhantomData,
        }
    }

    /// How many times the connection was used before its current use.
    pub(crate) fn uses(&self) -> u32 {
        self.meta.uses
    }

    /// Hands its place on (to the idle list, a waiter, or a release): no longer given back
    /// on drop. `None` when it held none.
    fn take_place(&mut self) -> Option<usize> {
        self.place.take().map(Place::hand_on)
    }
}

/// A counted place of a key in the pool (a connection open, or being opened): given back on
/// drop unless handed on, so that nothing dropped (a cancelled request, a connect that never
/// finished, a hand-off nobody took) keeps it.
struct Place {
    pool: Option<Weak<dyn Release>>,
    host: usize,
    /// Counted as the connection's close when dropped (none for a place never opened).
    on_drop: Option<PoolCloseReason>,
}

impl Place {
    /// No longer given back on drop: the caller passes it on.
    fn hand_on(mut self) -> usize {
        self.pool = None;
        self.host
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        // (Never dropped with the pool's lock held: the pool's own code hands places on.)
        if let Some(pool) = self.pool.take().and_then(|pool| pool.upgrade()) {
            pool.release(self.host, self.on_drop);
        }
    }
}

impl std::fmt::Debug for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Place").field("host", &self.host).finish()
    }
}

/// What a dropped [`Place`] calls, type-erased over the pool's key and connection.
trait Release: Send + Sync {
    /// Gives back a place of the host at `h`, counting a close for `closed`.
    fn release(&self, h: usize, closed: Option<PoolCloseReason>);
}

impl<K: Send + 'static, T: Idle> Release for Shared<K, T> {
    fn release(&self, h: usize, closed: Option<PoolCloseReason>) {
        if let Some(reason) = closed {
            self.stats.closed(reason);
        }
        let mut state = lock(&self.state);
        if let Some(host) = state.hosts.get_mut(h) {
            release_place(host);
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Meta {
    created: Instant,
    uses: u32,
    /// The server's idle limit, as last given ([`Reuse::idle_limit`]).
    idle_limit: Option<Duration>,
    uses_left: Option<u32>,
    /// When its last idle period began (`None` for a new connection): a request that fails
    /// on it as stale tells how long the server kept it.
    idle_since: Option<Instant>,
}

impl Meta {
    fn new(created: Instant) -> Self {
        Meta {
            created,
            uses: 0,
            idle_limit: None,
            uses_left: None,
            idle_since: None,
        }
    }
}

impl<T> Pooled<T> {
    /// The connection.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.io
    }

    /// Takes the connection out of the pool's care: its place is given back (no close is
    /// counted) and its history forgotten; a later [`Pool::put`] counts it as new.
    pub fn into_inner(mut self) -> T {
        if let Some(mut place) = self.history.place.take() {
            place.on_drop = None;
        }
        self.io
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

    /// The pool marks the connection idle (`true`, when it keeps it) or in use (`false`, when
    /// it hands it out). The default ignores it.
    fn set_idle(&mut self, idle: bool) {
        let _ = idle;
    }

    /// Whether nothing has woken the connection since it was last polled idle (after
    /// [`set_idle(true)`](Idle::set_idle)): a look at it now would find nothing, and the
    /// checkout skips it. The default says no (the checkout always looks).
    fn quiet(&self) -> bool {
        false
    }
}

impl<T: AsyncRead + Unpin + Send + 'static> Idle for T {
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<PoolCloseReason> {
        // (The read mode of the one idle detector: a TLS stream cannot peek.)
        Poll::Ready(match ready!(crate::fin::poll_idle_read(self, cx)) {
            IdleEvent::PeerClosed => PoolCloseReason::ServerFin,
            IdleEvent::UnexpectedData => PoolCloseReason::UnexpectedData,
            _ => PoolCloseReason::Error,
        })
    }
}

/// A pool of idle connections keyed by `K`, reused last-in first-out, each idle one watched
/// for the peer's FIN (zero bytes), unexpected bytes or its deadline, any of which closes it at
/// once. Cheap to clone (shared). Dropping the last clone closes every idle connection. See
/// the [`client`](crate::client) module.
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

/// Idle connections watched by one task.
const GROUP: usize = 64;

#[derive(Debug)]
struct Shared<K, T> {
    config: PoolConfig,
    stats: ClientStats,
    state: Mutex<State<K, T>>,
}

/// Everything the pool holds, under one lock: a checkout or a return takes it once.
#[derive(Debug)]
struct State<K, T> {
    /// Key to its place in `hosts` (hosts are never removed).
    index: HashMap<K, usize>,
    /// The last key looked up, and its place.
    last: Option<(K, usize)>,
    hosts: Vec<Host<T>>,
    /// The idle connections, a dense table in groups of [`GROUP`], each group watched by one
    /// task. A place is taken while its connection is idle and freed at checkout.
    cells: Vec<Option<Cell<T>>>,
    /// Free places of `cells`, the most recently freed last.
    free: Vec<u32>,
    groups: Vec<Group>,
    /// Connections idle in `cells`.
    idle: u64,
}

/// An idle connection in its place.
#[derive(Debug)]
struct Cell<T> {
    io: T,
    meta: Meta,
    /// Index of its host in [`State::hosts`].
    host: u32,
    /// When it went idle.
    since: Instant,
    /// When the current idle period ends, and why.
    deadline: Instant,
    reason: PoolCloseReason,
    /// When to give the idle connection's spare memory back ([`Idle::park`]), if not yet.
    park_at: Option<Instant>,
}

impl<T> Cell<T> {
    /// The next time the group's task has something to do for it.
    fn due(&self) -> Instant {
        self.park_at
            .map_or(self.deadline, |at| at.min(self.deadline))
    }
}

/// One group's watcher.
#[derive(Debug, Default)]
struct Group {
    /// The group task's waker, once it has run.
    waker: Option<Waker>,
    /// The instant its timer is set for (`None`: no timer, or it went off).
    armed: Option<Instant>,
    /// Its task was spawned.
    started: bool,
}

#[derive(Debug)]
struct Host<T> {
    /// Places in [`State::cells`], the most recently returned last.
    idle: Vec<u32>,
    open: usize,
    waiters: VecDeque<oneshot::Sender<Handoff<T>>>,
    /// The server's idle limit as learned from its closes (it advertises none).
    learned: LearnedIdle,
    /// Seen closing first after a `Connection: close` answer ([`LastAllowedRequest`](super::LastAllowedRequest)).
    closes_first: bool,
    /// The request number of the last such answer (a server that does not advertise its
    /// request limit: nginx's `keepalive_requests`, lighttpd).
    closed_at_request: Option<u32>,
    /// Uses after which its connections are retired: one less than the request number seen
    /// answered with close twice in a row.
    retire_after: Option<u32>,
}

impl<T> Default for Host<T> {
    fn default() -> Self {
        Host {
            idle: Vec::new(),
            open: 0,
            waiters: VecDeque::new(),
            learned: LearnedIdle::default(),
            closes_first: false,
            closed_at_request: None,
            retire_after: None,
        }
    }
}

/// What a waiter gets: a connection, or the right to open one.
#[derive(Debug)]
enum Handoff<T> {
    /// A connection and what the pool knows of it (the place goes with it).
    Conn(T, Meta),
    /// A place to open a connection with.
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

/// A host of the pool by its place (hosts are never removed): for the crate's own client,
/// which then needs no key after the checkout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HostId(usize);

/// A host named by its key or by its place.
#[derive(Clone, Copy)]
enum HostRef<'a, K> {
    Key(&'a K),
    Id(HostId),
}

/// A checkout done at once, or the place in the queue where it waits.
pub(crate) type CheckoutNow<K, T> = Result<Checkout<T>, Turn<K, T>>;

/// A checkout's place in the queue of its key, at the per-key limit. Dropped (the checkout
/// cancelled, or timed out), it leaves the queue, and what was handed to it in the meantime
/// goes to the next waiter or the idle list.
pub(crate) struct Turn<K: Eq + Hash + Clone + Send + 'static, T: Idle> {
    rx: oneshot::Receiver<Handoff<T>>,
    pool: Weak<Shared<K, T>>,
    h: usize,
}

impl<K: Eq + Hash + Clone + Send + 'static, T: Idle> Drop for Turn<K, T> {
    fn drop(&mut self) {
        self.rx.close();
        let Ok(handoff) = self.rx.try_recv() else {
            return;
        };
        let Some(shared) = self.pool.upgrade() else {
            return;
        };
        let pool = Pool { shared };
        match handoff {
            Handoff::Conn(io, meta) => {
                let history = History::new(meta, Some(pool.place(self.h, None)));
                pool.park(
                    HostRef::Id(HostId(self.h)),
                    io,
                    history,
                    Reuse::default(),
                    false,
                );
            }
            Handoff::Open => pool.shared.release(self.h, None),
        }
    }
}

/// The right to open one connection for a key (see [`Checkout::Open`]): it holds one of the
/// key's places, given back when it is dropped unless [`into_history`](Self::into_history)
/// passed it on to the new connection.
#[derive(Debug)]
pub struct Slot {
    created: Instant,
    place: Place,
}

impl Slot {
    /// The history of the connection opened with this slot (its place goes with it).
    pub fn into_history<T>(mut self) -> History<T> {
        let place = Place {
            pool: self.place.pool.take(),
            host: self.place.host,
            on_drop: Some(PoolCloseReason::Dropped),
        };
        History::new(Meta::new(self.created), Some(place))
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

impl<K, T> State<K, T> {
    /// A pool with nothing in it.
    fn empty() -> Self {
        State {
            index: HashMap::new(),
            last: None,
            hosts: Vec::new(),
            cells: Vec::new(),
            free: Vec::new(),
            groups: Vec::new(),
            idle: 0,
        }
    }
}

impl<K: Eq + Hash, T> State<K, T> {
    /// The host's place, if it has one.
    fn find_host(&self, key: &K) -> Option<usize> {
        match &self.last {
            Some((last, index)) if last == key => Some(*index),
            _ => self.index.get(key).copied(),
        }
    }
}

impl<K: Eq + Hash + Clone, T> State<K, T> {
    /// The host's place, created if missing; the key is cloned only then. The last key looked
    /// up is compared first (a client usually talks to one host at a time), which spares
    /// hashing it.
    fn host_index(&mut self, key: &K) -> usize {
        if let Some((last, index)) = &self.last {
            if last == key {
                return *index;
            }
        }
        let index = match self.index.get(key) {
            Some(&index) => index,
            None => {
                let index = self.hosts.len();
                self.hosts.push(Host::default());
                self.index.insert(key.clone(), index);
                index
            }
        };
        self.last = Some((key.clone(), index));
        index
    }

    /// A free place in the table, growing it by a group when full.
    fn free_place(&mut self) -> usize {
        if let Some(place) = self.free.pop() {
            return place as usize;
        }
        let start = self.cells.len();
        self.cells.resize_with(start + GROUP, || None);
        self.groups.push(Group::default());
        // Lowest first.
        self.free
            .extend((start as u32 + 1..(start + GROUP) as u32).rev());
        start
    }

    /// Takes the connection out of its place and its host's idle list.
    fn evict(&mut self, place: usize) -> Option<Cell<T>> {
        let cell = self.cells.get_mut(place)?.take()?;
        self.free.push(place as u32);
        if let Some(host) = self.hosts.get_mut(cell.host as usize) {
            if let Some(at) = host.idle.iter().rposition(|&p| p as usize == place) {
                host.idle.remove(at);
            }
            release_place(host);
        }
        Some(cell)
    }
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
                state: Mutex::new(State::empty()),
            }),
        }
    }

    /// The pool's counters.
    pub fn stats(&self) -> &ClientStats {
        &self.shared.stats
    }

    /// Idle connections for `key` now.
    pub fn idle_count(&self, key: &K) -> usize {
        let state = lock(&self.shared.state);
        state
            .find_host(key)
            .and_then(|i| state.hosts.get(i))
            .map_or(0, |host| host.idle.len())
    }

    /// The idle limit learned for `key` from the server's closes, if one is in force (see
    /// [`PoolConfig::learn_idle_limits`]).
    pub fn learned_idle_limit(&self, key: &K) -> Option<Duration> {
        let mut state = lock(&self.shared.state);
        let i = state.find_host(key)?;
        state.hosts[i].learned.limit(Instant::now())
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
        match self.take_or_slot(key, reuse_idle) {
            Ok(checkout) => Ok(checkout),
            // The wait (with its timer) is boxed: the usual checkout, which never waits, then
            // keeps a small future.
            Err(turn) => Box::pin(self.wait(turn)).await,
        }
    }

    /// The checkout without its wait: an idle connection or a slot now, or the place in the
    /// queue of a checkout that must wait (see [`Pool::wait_turn`]). No future for the usual
    /// checkout.
    pub(crate) fn take_or_slot(&self, key: &K, reuse_idle: bool) -> CheckoutNow<K, T> {
        let mut guard = lock(&self.shared.state);
        let h = guard.host_index(key);
        self.take_at(guard, h, reuse_idle)
    }

    /// [`take_or_slot`](Self::take_or_slot) for a key that `same` recognises (tried on the
    /// key looked up last, which spares making the key: the usual case) or that `make` makes;
    /// `None` when `make` finds no key. Returns the key's [`HostId`] with the checkout: what
    /// follows (the return, a discard, a wait, a retry) names the host by it, without the key.
    pub(crate) fn take_or_slot_for(
        &self,
        same: impl FnOnce(&K) -> bool,
        make: impl FnOnce() -> Option<K>,
        reuse_idle: bool,
    ) -> Option<(HostId, CheckoutNow<K, T>)> {
        let mut guard = lock(&self.shared.state);
        let h = match &guard.last {
            Some((last, h)) if same(last) => *h,
            _ => {
                let key = make()?;
                guard.host_index(&key)
            }
        };
        Some((HostId(h), self.take_at(guard, h, reuse_idle)))
    }

    /// [`take_or_slot`](Self::take_or_slot) for a host named by its [`HostId`].
    pub(crate) fn take_or_slot_at(&self, host: HostId, reuse_idle: bool) -> CheckoutNow<K, T> {
        let guard = lock(&self.shared.state);
        self.take_at(guard, host.0, reuse_idle)
    }

    /// The checkout for the host at `h`, with the lock held.
    fn take_at(
        &self,
        mut guard: MutexGuard<'_, State<K, T>>,
        h: usize,
        reuse_idle: bool,
    ) -> CheckoutNow<K, T> {
        let mut dead = Vec::new();
        let waiter = {
            let state = &mut *guard;
            let mut found = None;
            // (A new slot leaves the idle connections where they are.)
            while let Some(place) = if reuse_idle {
                state.hosts[h].idle.pop()
            } else {
                None
            } {
                let Some(cell) = state.cells.get_mut(place as usize).and_then(Option::take) else {
                    continue;
                };
                state.free.push(place);
                state.idle = state.idle.saturating_sub(1);
                self.shared.stats.idle_changed(false, 1, state.idle);
                let Cell {
                    mut io,
                    mut meta,
                    since,
                    ..
                } = cell;
                // A FIN or bytes may have arrived since the watcher last ran (it runs only
                // when scheduled): one look now, so a dead connection is never handed out;
                // not needed when nothing has woken the connection since it was registered.
                let mut cx = Context::from_waker(Waker::noop());
                let looked = if io.quiet() {
                    Poll::Pending
                } else {
                    io.poll_idle(&mut cx)
                };
                io.set_idle(false);
                // (The clock is read only when there is something to learn: a close, or a
                // reuse that may be past a learned limit.)
                let learned = &mut state.hosts[h].learned;
                if self.shared.config.learn_idle_limits
                    && meta.idle_limit.is_none()
                    && (looked.is_ready() || learned.is_set())
                {
                    let now = Instant::now();
                    match looked {
                        Poll::Ready(PoolCloseReason::ServerFin) => {
                            learned.server_closed(now.saturating_duration_since(since), now);
                        }
                        Poll::Pending => {
                            learned.server_held(now.saturating_duration_since(since), now)
                        }
                        Poll::Ready(_) => {}
                    }
                }
                if let Poll::Ready(reason) = looked {
                    release_place(&mut state.hosts[h]);
                    self.shared.stats.closed(reason);
                    tracing::debug!(reason = reason.name(), "pooled connection dead at checkout");
                    dead.push(io);
                    continue;
                }
                meta.idle_since = Some(since);
                found = Some(Pooled {
                    io,
                    history: History::new(
                        meta,
                        Some(self.place(h, Some(PoolCloseReason::Dropped))),
                    ),
                });
                break;
            }
            if let Some(pooled) = found {
                drop(guard);
                drop(dead);
                return Ok(Checkout::Reused(pooled));
            }
            let host = &mut state.hosts[h];
            match self.shared.config.max_per_key {
                Some(max) if host.open >= max => {
                    let (tx, rx) = oneshot::channel();
                    host.waiters.push_back(tx);
                    rx
                }
                _ => {
                    host.open += 1;
                    drop(guard);
                    drop(dead);
                    return Ok(Checkout::Open(Slot {
                        created: Instant::now(),
                        place: self.place(h, None),
                    }));
                }
            }
        };
        drop(dead);
        Err(Turn {
            rx: waiter,
            pool: Arc::downgrade(&self.shared),
            h,
        })
    }

    /// A place of the host at `h`, given back to this pool if dropped.
    fn place(&self, h: usize, on_drop: Option<PoolCloseReason>) -> Place {
        let pool: Weak<dyn Release> = Arc::downgrade(&self.shared) as Weak<dyn Release>;
        Place {
            pool: Some(pool),
            host: h,
            on_drop,
        }
    }

    /// Waits for the turn [`take_or_slot`](Self::take_or_slot) gave.
    pub(crate) async fn wait_turn(&self, turn: Turn<K, T>) -> Result<Checkout<T>, WaitTimeout> {
        self.wait(turn).await
    }

    /// Waits at the per-key limit for a connection coming back or a place freed. (Dropped or
    /// timed out, the turn gives back whatever raced with it.)
    async fn wait(&self, mut turn: Turn<K, T>) -> Result<Checkout<T>, WaitTimeout> {
        let handoff = tokio::time::timeout(self.shared.config.wait_timeout, &mut turn.rx).await;
        match handoff {
            Ok(Ok(Handoff::Conn(io, meta))) => Ok(Checkout::Reused(Pooled {
                io,
                history: History::new(
                    meta,
                    Some(self.place(turn.h, Some(PoolCloseReason::Dropped))),
                ),
            })),
            Ok(Ok(Handoff::Open)) => Ok(Checkout::Open(Slot {
                created: Instant::now(),
                place: self.place(turn.h, None),
            })),
            Ok(Err(_)) | Err(_) => Err(WaitTimeout),
        }
    }

    /// Like [`checkout_or_slot`](Self::checkout_or_slot), for users that do not track slots:
    /// `Some` idle connection, or `None` (open a new one and [`put`](Self::put) it later).
    pub async fn checkout(&self, key: &K) -> Result<Option<Pooled<T>>, WaitTimeout> {
        match self.checkout_or_slot(key).await? {
            Checkout::Reused(pooled) => Ok(Some(pooled)),
            // (The slot's place is given back: [`put`](Self::put) counts the new connection.)
            Checkout::Open(_) => Ok(None),
        }
    }

    /// Returns a connection after a use, with its [`History`] (from [`Pooled::into_parts`] or
    /// [`Slot::into_history`]), so age, uses and the server's limits carry over.
    pub fn put_back(&self, key: K, io: T, history: History<T>, reuse: Reuse) {
        self.park(HostRef::Key(&key), io, history, reuse, true);
    }

    /// [`put_back`](Self::put_back) to a host named by its [`HostId`].
    pub(crate) fn put_back_at(&self, host: HostId, io: T, history: History<T>, reuse: Reuse) {
        self.park(HostRef::Id(host), io, history, reuse, true);
    }

    /// Returns a connection without history (counted as new, used once; it takes a place
    /// of its key even past [`max_per_key`](PoolConfig::max_per_key)).
    pub fn put(&self, key: K, io: T, reuse: Reuse) {
        let history = History::new(Meta::new(Instant::now()), None);
        self.park(HostRef::Key(&key), io, history, reuse, true);
    }

    /// Hands the connection to a waiter, or parks it idle in a place of the table, or closes
    /// it.
    fn park(&self, host: HostRef<'_, K>, io: T, mut history: History<T>, reuse: Reuse, used: bool) {
        let config = &self.shared.config;
        let now = Instant::now();
        // The place goes on with the connection (to a waiter, the idle list, or a release),
        // all under the lock below; one not counted yet is counted there.
        let counted = history.take_place().is_some();
        let mut meta = history.meta;
        // (A waiter that gets it directly finds it not idle at all.)
        meta.idle_since = None;
        if used {
            meta.uses = meta.uses.saturating_add(1);
        }
        if let Some(limit) = reuse.idle_limit {
            meta.idle_limit = Some(limit);
        }
        if let Some(left) = reuse.uses_left {
            meta.uses_left = Some(meta.uses_left.map_or(left, |old| old.min(left)));
        } else if let (true, Some(left)) = (used, meta.uses_left) {
            meta.uses_left = Some(left.saturating_sub(1));
        }
        let mut deadline = now + config.idle_timeout;
        let mut reason = PoolCloseReason::IdleTimeout;
        if let Some(limit) = meta.idle_limit {
            if limit <= config.idle_timeout {
                deadline = now + limit;
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

        let mut guard = lock(&self.shared.state);
        let state = &mut *guard;
        let h = match host {
            HostRef::Key(key) => state.host_index(key),
            HostRef::Id(HostId(h)) => h,
        };
        if !counted {
            state.hosts[h].open += 1;
        }
        // A server that advertises no idle limit: the one learned from its closes, if any.
        if config.learn_idle_limits && meta.idle_limit.is_none() && retire.is_none() {
            if let IdlePlan::CloseAfter(after) = state.hosts[h].learned.plan(now) {
                if now + after < deadline {
                    deadline = now + after;
                    reason = PoolCloseReason::LearnedTimeout;
                }
            }
        }
        let retire = retire.or_else(|| {
            let max = state.hosts[h].retire_after?;
            (meta.uses >= max).then_some(PoolCloseReason::MaxRequests)
        });
        let mut io = io;
        // Before a waiter gets it, the look a checkout gives an idle connection: bytes or a
        // FIN already there must not become the waiter's answer.
        let retire = retire.or_else(|| {
            if state.hosts[h].waiters.is_empty() {
                return None;
            }
            match io.poll_idle(&mut Context::from_waker(Waker::noop())) {
                Poll::Ready(reason) => Some(reason),
                Poll::Pending => None,
            }
        });
        if let Some(reason) = retire {
            release_place(&mut state.hosts[h]);
            drop(guard);
            self.shared.stats.closed(reason);
            drop(io);
            return;
        }
        // A waiter takes it directly, in order. (Checked before anything is moved: there is
        // usually none.)
        while let Some(waiter) = state.hosts[h].waiters.pop_front() {
            match waiter.send(Handoff::Conn(io, meta)) {
                Ok(()) => return,
                Err(Handoff::Conn(back, _)) => io = back,
                Err(Handoff::Open) => unreachable!("only connections are sent here"),
            }
        }
        if state.hosts[h].idle.len() >= config.max_idle_per_key {
            release_place(&mut state.hosts[h]);
            drop(guard);
            self.shared.stats.closed(PoolCloseReason::TooManyIdle);
            drop(io);
            return;
        }
        let place = state.free_place();
        let g = place / GROUP;
        let group = &mut state.groups[g];
        io.set_idle(true);
        // Register the group's watcher for the socket's readability from here: the watcher
        // need not run for it. A FIN (or anything) already there closes it now.
        if let Some(waker) = group.waker.as_ref() {
            if let Poll::Ready(reason) = io.poll_idle(&mut Context::from_waker(waker)) {
                state.free.push(place as u32);
                release_place(&mut state.hosts[h]);
                drop(guard);
                self.shared.stats.closed(reason);
                drop(io);
                return;
            }
        }
        let park_at = config
            .park_after
            .filter(|_| io.parks())
            .map(|after| now + after);
        let cell = Cell {
            io,
            meta,
            host: h as u32,
            since: now,
            deadline,
            reason,
            park_at,
        };
        let due = cell.due();
        state.cells[place] = Some(cell);
        state.hosts[h].idle.push(place as u32);
        state.idle += 1;
        self.shared.stats.idle_changed(true, 1, state.idle);
        // The group's timer only needs moving when this deadline is earlier, or when it went
        // off (or was never set).
        let spawn = !group.started;
        group.started = true;
        let wake = if spawn || group.armed.is_some_and(|armed| armed <= due) {
            None
        } else {
            group.waker.clone()
        };
        drop(guard);
        if spawn {
            tokio::spawn(watch_group(Arc::downgrade(&self.shared), g));
        } else if let Some(waker) = wake {
            waker.wake();
        }
    }
}

impl<K: Eq + Hash + Clone + Send + 'static, T: Idle> Pool<K, T> {
    /// A connect with `slot` failed: counted as closed by error, and its place goes to the
    /// next waiter.
    pub(crate) fn connect_failed(&self, slot: Slot) {
        self.shared.stats.connect_failed();
        drop(slot);
    }

    /// A connection closed instead of coming back (an error, the server said close): counts
    /// it for `reason` and gives its place to the next waiter.
    pub fn discard(&self, mut history: History<T>, reason: PoolCloseReason) {
        self.shared.stats.closed(reason);
        let Some(h) = history.take_place() else {
            return;
        };
        let meta = history.meta;
        if let (PoolCloseReason::Stale, true, None, Some(since)) = (
            reason,
            self.shared.config.learn_idle_limits,
            meta.idle_limit,
            meta.idle_since,
        ) {
            // The server closed it while it was idle, and the FIN watch could not see it in
            // time: a close after the idle time it had.
            let mut wake = Vec::new();
            let mut state = lock(&self.shared.state);
            release_place(&mut state.hosts[h]);
            let now = Instant::now();
            let idle = now.saturating_duration_since(since);
            if state.hosts[h].learned.server_closed(idle, now) {
                state.apply_learned(&[h], usize::MAX, &mut wake);
            }
            drop(state);
            for waker in wake {
                waker.wake();
            }
            return;
        }
        self.shared.release(h, None);
    }
}

/// What an idle connection closed for `reason` teaches of its server's idle limit (it
/// advertised none): whether the host's estimate changed.
fn learn_from_close<K, T>(
    state: &mut State<K, T>,
    cell: &Cell<T>,
    reason: PoolCloseReason,
    now: Instant,
) -> bool {
    let learned = &mut state.hosts[cell.host as usize].learned;
    let idle = now.saturating_duration_since(cell.since);
    match reason {
        PoolCloseReason::ServerFin => {
            let changed = learned.server_closed(idle, now);
            tracing::debug!(
                idle_ms = idle.as_millis() as u64,
                learned_ms = learned.limit(now).map(|l| l.as_millis() as u64),
                changed,
                "the server closed an idle connection"
            );
            changed
        }
        // It reached the pool's own limit with the server still holding it.
        PoolCloseReason::IdleTimeout => {
            learned.server_held(idle, now);
            false
        }
        _ => false,
    }
}

impl<K, T> State<K, T> {
    /// Brings the deadlines of the idle connections of `hosts` forward to their learned idle
    /// limit; the watchers of other groups than `g` whose connections moved are to be woken
    /// (their wakers are pushed on `wake`). Whether a connection of group `g` moved.
    fn apply_learned(&mut self, hosts: &[usize], g: usize, wake: &mut Vec<Waker>) -> bool {
        let now = Instant::now();
        let mut here = false;
        for &h in hosts {
            let Some(limit) = self.hosts[h].learned.limit(now) else {
                continue;
            };
            let after = limit.saturating_sub(super::learned_idle::margin(limit));
            for &place in &self.hosts[h].idle {
                let Some(Some(cell)) = self.cells.get_mut(place as usize) else {
                    continue;
                };
                let at = cell.since + after;
                if cell.meta.idle_limit.is_some() || at >= cell.deadline {
                    continue;
                }
                cell.deadline = at;
                cell.reason = PoolCloseReason::LearnedTimeout;
                let group = place as usize / GROUP;
                if group == g {
                    here = true;
                } else if let Some(waker) = self.groups[group].waker.clone() {
                    wake.push(waker);
                }
            }
        }
        here
    }
}

impl<K, T> Pool<K, T> {
    /// Whether the host was seen closing first after a `Connection: close` answer.
    pub(crate) fn closes_first(&self, host: HostId) -> bool {
        lock(&self.shared.state)
            .hosts
            .get(host.0)
            .is_some_and(|host| host.closes_first)
    }

    /// Remembers the host as one that closes first after its `Connection: close` answers,
    /// here to the request numbered `request` on its connection. The same number twice in a
    /// row is the server's request limit (one it does not advertise, as nginx's
    /// `keepalive_requests`): its connections are then retired one request before it, so that
    /// the client closes first.
    pub(crate) fn learn_closes_first(&self, host: HostId, request: u32) {
        if let Some(host) = lock(&self.shared.state).hosts.get_mut(host.0) {
            host.closes_first = true;
            if request >= 2 && host.closed_at_request == Some(request) {
                host.retire_after = Some(request - 1);
            }
            host.closed_at_request = Some(request);
        }
    }
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

/// Watches one group of the table's places: each idle connection there for the server's FIN,
/// unexpected bytes or its deadline (then it evicts and closes it), and parks the ones idle
/// for [`PoolConfig::park_after`]. Runs only when a socket of the group or its timer fires, or
/// a return brings an earlier deadline. Ends with the pool.
async fn watch_group<K, T>(pool: Weak<Shared<K, T>>, g: usize)
where
    K: Eq + Hash + Clone,
    T: Idle,
{
    let mut timer = std::pin::pin!(tokio::time::sleep_until(Instant::now()));
    poll_fn(|cx| {
        let Some(shared) = pool.upgrade() else {
            return Poll::Ready(());
        };
        let mut closing: Vec<(T, PoolCloseReason)> = Vec::new();
        let mut guard = lock(&shared.state);
        let state = &mut *guard;
        let Some(group) = state.groups.get_mut(g) else {
            return Poll::Ready(());
        };
        if !group
            .waker
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            group.waker = Some(cx.waker().clone());
        }
        let places = g * GROUP..(g + 1) * GROUP;
        let mut fired = false;
        let mut wake_groups: Vec<Waker> = Vec::new();
        loop {
            let now = Instant::now();
            let mut next: Option<Instant> = None;
            // Hosts whose learned idle limit changed with a close seen here.
            let mut relearned: Vec<usize> = Vec::new();
            for place in places.clone() {
                let Some(Some(cell)) = state.cells.get_mut(place) else {
                    continue;
                };
                let mut close = match cell.io.poll_idle(cx) {
                    Poll::Ready(reason) => Some(reason),
                    Poll::Pending if now >= cell.deadline => Some(cell.reason),
                    Poll::Pending => None,
                };
                if close.is_none() && cell.park_at.is_some_and(|at| now >= at) {
                    cell.park_at = None;
                    close = match cell.io.park() {
                        // Watch what is left (the bare connection).
                        Ok(()) => match cell.io.poll_idle(cx) {
                            Poll::Ready(reason) => Some(reason),
                            Poll::Pending => None,
                        },
                        Err(reason) => Some(reason),
                    };
                }
                match close {
                    Some(reason) => {
                        if let Some(cell) = state.evict(place) {
                            state.idle = state.idle.saturating_sub(1);
                            shared.stats.idle_changed(false, 1, state.idle);
                            if shared.config.learn_idle_limits
                                && cell.meta.idle_limit.is_none()
                                && learn_from_close(state, &cell, reason, now)
                            {
                                relearned.push(cell.host as usize);
                            }
                            closing.push((cell.io, reason));
                        }
                    }
                    None => {
                        let due = cell.due();
                        next = Some(next.map_or(due, |n| n.min(due)));
                    }
                }
            }
            if !relearned.is_empty() && state.apply_learned(&relearned, g, &mut wake_groups) {
                // A deadline of this group moved earlier: look again.
                continue;
            }
            let group = &mut state.groups[g];
            let Some(due) = next else {
                // No idle connection here now. Under load a returned connection is taken again
                // within microseconds, so a wake-up per return would mostly find nothing: the
                // timer stays set (a park delay ahead if it is not), and a return due later
                // needs no wake-up. Once it goes off with nothing to watch, the task sleeps
                // until a return wakes it.
                if fired {
                    group.armed = None;
                    break;
                }
                if group.armed.is_some_and(|armed| armed > now) {
                    break;
                }
                let quiet = shared
                    .config
                    .park_after
                    .map_or(shared.config.idle_timeout, |after| {
                        after.min(shared.config.idle_timeout)
                    });
                timer.as_mut().reset(now + quiet);
                group.armed = Some(now + quiet);
                if timer.as_mut().poll(cx).is_pending() {
                    break;
                }
                group.armed = None;
                break;
            };
            if group.armed != Some(due) {
                timer.as_mut().reset(due);
                group.armed = Some(due);
            }
            if timer.as_mut().poll(cx).is_pending() {
                break;
            }
            // It went off: look again.
            group.armed = None;
            fired = true;
        }
        drop(guard);
        for waker in wake_groups {
            waker.wake();
        }
        for (io, reason) in closing {
            tracing::debug!(reason = reason.name(), "closing idle pooled connection");
            shared.stats.closed(reason);
            drop(io);
        }
        Poll::Pending
    })
    .await;
}

impl<K, T> Drop for Shared<K, T> {
    /// Closes every idle connection (the client's FIN comes first) and ends the watchers.
    fn drop(&mut self) {
        let state = std::mem::replace(&mut *lock(&self.state), State::empty());
        let wakers: Vec<Waker> = state
            .groups
            .iter()
            .filter_map(|g| g.waker.clone())
            .collect();
        let idle = state.cells.iter().filter(|cell| cell.is_some()).count() as u64;
        drop(state);
        for _ in 0..idle {
            self.stats.closed(PoolCloseReason::Dropped);
        }
        self.stats.idle_changed(false, idle, 0);
        for waker in wakers {
            waker.wake();
        }
    }
}

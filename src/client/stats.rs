use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// Why the client closed a connection (or saw it closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PoolCloseReason {
    /// Idle longer than the pool's idle timeout.
    IdleTimeout,
    /// Closed a margin before the server's advertised `Keep-Alive: timeout=`.
    ServerTimeout,
    /// Closed a margin before the idle limit learned from the server's own closes of idle
    /// connections (a server that advertises none; see
    /// [`PoolConfig::learn_idle_limits`](super::PoolConfig::learn_idle_limits)).
    LearnedTimeout,
    /// The server's FIN arrived while the connection was idle.
    ServerFin,
    /// The server sent bytes on an idle connection (nobody asked for them).
    UnexpectedData,
    /// The server said `Connection: close` (or answered HTTP/1.0 without keep-alive).
    ServerClose,
    /// The request said `Connection: close`.
    ClientClose,
    /// The connection served its maximum number of requests (the pool's, or the server's
    /// `Keep-Alive: max=`, or all but the last the server allows: [`LastAllowedRequest`](super::LastAllowedRequest)).
    MaxRequests,
    /// The connection reached its maximum lifetime.
    MaxLifetime,
    /// More idle connections than the pool keeps for that host.
    TooManyIdle,
    /// A request or response body was dropped before its end: the connection is in doubt.
    Canceled,
    /// A reused connection failed before any response byte: the server had closed it while it
    /// was idle (the request is retried when it may be).
    Stale,
    /// An I/O or protocol error (a failed connect counts here too).
    Error,
    /// Idle in the pool when the client (its last clone) was dropped.
    Dropped,
}

impl PoolCloseReason {
    /// Every reason, in a fixed order.
    pub const ALL: [PoolCloseReason; 14] = [
        PoolCloseReason::IdleTimeout,
        PoolCloseReason::ServerTimeout,
        PoolCloseReason::LearnedTimeout,
        PoolCloseReason::ServerFin,
        PoolCloseReason::UnexpectedData,
        PoolCloseReason::ServerClose,
        PoolCloseReason::ClientClose,
        PoolCloseReason::MaxRequests,
        PoolCloseReason::MaxLifetime,
        PoolCloseReason::TooManyIdle,
        PoolCloseReason::Canceled,
        PoolCloseReason::Stale,
        PoolCloseReason::Error,
        PoolCloseReason::Dropped,
    ];

    /// A short snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            PoolCloseReason::IdleTimeout => "idle_timeout",
            PoolCloseReason::ServerTimeout => "server_timeout",
            PoolCloseReason::LearnedTimeout => "learned_timeout",
            PoolCloseReason::ServerFin => "server_fin",
            PoolCloseReason::UnexpectedData => "unexpected_data",
            PoolCloseReason::ServerClose => "server_close",
            PoolCloseReason::ClientClose => "client_close",
            PoolCloseReason::MaxRequests => "max_requests",
            PoolCloseReason::MaxLifetime => "max_lifetime",
            PoolCloseReason::TooManyIdle => "too_many_idle",
            PoolCloseReason::Canceled => "canceled",
            PoolCloseReason::Stale => "stale",
            PoolCloseReason::Error => "error",
            PoolCloseReason::Dropped => "dropped",
        }
    }
}

impl fmt::Display for PoolCloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Live counters of a client and its pool; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct ClientStats {
    inner: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    opened: AtomicU64,
    requests: AtomicU64,
    /// Requests sent on a connection not reused (the reused ones are the rest: one counter
    /// less to update per request).
    fresh: AtomicU64,
    retries: AtomicU64,
    closed: [AtomicU64; PoolCloseReason::ALL.len()],
    open: AtomicU64,
    idle: AtomicU64,
}

/// A copy of the client's counters; see [`ClientStats::snapshot`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientStatsSnapshot {
    /// Connections opened.
    pub opened: u64,
    /// Requests sent (retries included).
    pub requests: u64,
    /// Requests sent on a reused connection.
    pub reused: u64,
    /// Requests retried on a new connection after a reused one failed before any response.
    pub retries: u64,
    /// Connections closed, by reason, in the order of [`PoolCloseReason::ALL`].
    pub closed: [u64; PoolCloseReason::ALL.len()],
    /// Connections the client opened and has not closed yet (a gauge: in use or idle).
    pub open: u64,
    /// Connections idle in the pool (a gauge).
    pub idle: u64,
}

impl ClientStatsSnapshot {
    /// Connections closed for `reason`.
    pub fn closed(&self, reason: PoolCloseReason) -> u64 {
        self.closed[reason as usize]
    }

    /// All connections closed.
    pub fn closed_total(&self) -> u64 {
        self.closed.iter().sum()
    }

    /// The counters as one line of JSON.
    pub fn to_json(&self) -> String {
        let mut json = format!(
            "{{\"opened\":{},\"requests\":{},\"reused\":{},\"retries\":{},\"open\":{},\"idle\":{},\"closed\":{{",
            self.opened, self.requests, self.reused, self.retries, self.open, self.idle
        );
        for (i, reason) in PoolCloseReason::ALL.iter().enumerate() {
            if i > 0 {
                json.push(',');
            }
            json.push_str(&format!("\"{}\":{}", reason.name(), self.closed[i]));
        }
        json.push_str("}}");
        json
    }
}

impl ClientStats {
    /// Reads every counter.
    pub fn snapshot(&self) -> ClientStatsSnapshot {
        let c = &self.inner;
        ClientStatsSnapshot {
            opened: c.opened.load(Relaxed),
            reused: {
                // (`fresh` first: a request counted there is counted in `requests` already.)
                let fresh = c.fresh.load(Relaxed);
                c.requests.load(Relaxed).saturating_sub(fresh)
            },
            requests: c.requests.load(Relaxed),
            retries: c.retries.load(Relaxed),
            closed: std::array::from_fn(|i| c.closed[i].load(Relaxed)),
            open: c.open.load(Relaxed),
            idle: c.idle.load(Relaxed),
        }
    }

    pub(crate) fn opened(&self) {
        self.inner.opened.fetch_add(1, Relaxed);
        self.inner.open.fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        crate::export::client_opened();
    }

    pub(crate) fn request(&self, reused: bool) {
        if !reused {
            self.inner.fresh.fetch_add(1, Relaxed);
        }
        self.inner.requests.fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        crate::export::client_request(reused);
    }

    pub(crate) fn retry(&self) {
        self.inner.retries.fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        crate::export::client_retry();
    }

    /// A connection the client had opened was closed.
    pub(crate) fn closed(&self, reason: PoolCloseReason) {
        self.inner.closed[reason as usize].fetch_add(1, Relaxed);
        // Saturating: a pool used on its own (not through the client) counts closes of
        // connections its user opened.
        let was_open = self
            .inner
            .open
            .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
            .is_ok();
        #[cfg(feature = "metrics")]
        crate::export::client_closed(reason.name(), was_open);
        #[cfg(not(feature = "metrics"))]
        let _ = was_open;
    }

    /// A connect failed: counted as closed by error, with nothing to take from the open gauge.
    pub(crate) fn connect_failed(&self) {
        let reason = PoolCloseReason::Error;
        self.inner.closed[reason as usize].fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        crate::export::client_closed(reason.name(), false);
    }

    /// Connections went into the pool's idle set (`added`) or left it, `idle` being there
    /// now. (Called with the pool's lock held, which orders the calls: the gauge is stored,
    /// not updated, which costs no atomic read-modify-write per request.)
    pub(crate) fn idle_changed(&self, added: bool, count: u64, idle: u64) {
        if count == 0 {
            return;
        }
        self.inner.idle.store(idle, Relaxed);
        #[cfg(feature = "metrics")]
        crate::export::client_idle(if added { count as f64 } else { -(count as f64) });
        #[cfg(not(feature = "metrics"))]
        let _ = added;
    }
}

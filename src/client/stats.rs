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
    /// The server's FIN arrived while the connection was idle.
    ServerFin,
    /// The server sent bytes on an idle connection (nobody asked for them).
    UnexpectedData,
    /// The server said `Connection: close` (or answered HTTP/1.0 without keep-alive).
    ServerClose,
    /// The request said `Connection: close`.
    ClientClose,
    /// The connection served its maximum number of requests (the pool's, or the server's
    /// `Keep-Alive: max=`).
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
    /// An I/O or protocol error.
    Error,
}

impl PoolCloseReason {
    /// Every reason, in a fixed order.
    pub const ALL: [PoolCloseReason; 12] = [
        PoolCloseReason::IdleTimeout,
        PoolCloseReason::ServerTimeout,
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
    ];

    /// A short snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            PoolCloseReason::IdleTimeout => "idle_timeout",
            PoolCloseReason::ServerTimeout => "server_timeout",
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
    reused: AtomicU64,
    retries: AtomicU64,
    closed: [AtomicU64; PoolCloseReason::ALL.len()],
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
            "{{\"opened\":{},\"requests\":{},\"reused\":{},\"retries\":{},\"closed\":{{",
            self.opened, self.requests, self.reused, self.retries
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
            requests: c.requests.load(Relaxed),
            reused: c.reused.load(Relaxed),
            retries: c.retries.load(Relaxed),
            closed: std::array::from_fn(|i| c.closed[i].load(Relaxed)),
        }
    }

    pub(crate) fn opened(&self) {
        self.inner.opened.fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        crate::export::client_opened();
    }

    pub(crate) fn request(&self, reused: bool) {
        self.inner.requests.fetch_add(1, Relaxed);
        if reused {
            self.inner.reused.fetch_add(1, Relaxed);
        }
        #[cfg(feature = "metrics")]
        crate::export::client_request(reused);
    }

    pub(crate) fn retry(&self) {
        self.inner.retries.fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        crate::export::client_retry();
    }

    pub(crate) fn closed(&self, reason: PoolCloseReason) {
        self.inner.closed[reason as usize].fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        crate::export::client_closed(reason.name());
    }
}

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// Why a server connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// The client sent its FIN (idle, or while a handler ran).
    PeerFin,
    /// Nothing arrived within the idle timeout.
    IdleTimeout,
    /// A request head did not complete within the header timeout.
    HeaderTimeout,
    /// A request body stopped arriving: nothing for the idle timeout while it was incomplete
    /// (408 if the handler had not answered yet).
    BodyTimeout,
    /// The connection served its maximum number of requests.
    MaxRequests,
    /// The connection reached its maximum age.
    MaxAge,
    /// The client asked to close (`Connection: close`, or HTTP/1.0 without keep-alive).
    ClientClose,
    /// The service's response said `Connection: close`.
    ServiceClose,
    /// The response body had no length on HTTP/1.0, so the close ends it.
    BodyUntilClose,
    /// A graceful shutdown ended it.
    Drain,
    /// A graceful shutdown ran out of time and closed it by force.
    Forced,
    /// A protocol or I/O error (a malformed request gets a 400 first).
    Error,
    /// hyper could not reuse the connection after a response: a request framed by both
    /// `Content-Length` and `Transfer-Encoding`, an invalid body, or a body the handler left
    /// unread.
    NotReusable,
    /// The connection was handed over to a protocol upgrade (WebSocket, CONNECT); from then on
    /// its new owner runs and closes it, outside these counters.
    Upgraded,
    /// The handshake before HTTP (TLS) failed or did not finish within the header timeout.
    Handshake,
}

impl CloseReason {
    /// Every reason, in a fixed order.
    pub const ALL: [CloseReason; 15] = [
        CloseReason::PeerFin,
        CloseReason::IdleTimeout,
        CloseReason::HeaderTimeout,
        CloseReason::BodyTimeout,
        CloseReason::MaxRequests,
        CloseReason::MaxAge,
        CloseReason::ClientClose,
        CloseReason::ServiceClose,
        CloseReason::BodyUntilClose,
        CloseReason::Drain,
        CloseReason::Forced,
        CloseReason::Error,
        CloseReason::NotReusable,
        CloseReason::Upgraded,
        CloseReason::Handshake,
    ];

    /// A short snake_case name, as used in the JSON of the examples.
    pub fn name(self) -> &'static str {
        match self {
            CloseReason::PeerFin => "peer_fin",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::HeaderTimeout => "header_timeout",
            CloseReason::BodyTimeout => "body_timeout",
            CloseReason::MaxRequests => "max_requests",
            CloseReason::MaxAge => "max_age",
            CloseReason::ClientClose => "client_close",
            CloseReason::ServiceClose => "service_close",
            CloseReason::BodyUntilClose => "body_until_close",
            CloseReason::Drain => "drain",
            CloseReason::Forced => "forced",
            CloseReason::Error => "error",
            CloseReason::NotReusable => "not_reusable",
            CloseReason::Upgraded => "upgraded",
            CloseReason::Handshake => "handshake",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Live counters of a server, cheap to clone and read at run time.
///
/// ```
/// let stats = keepalive::ServerStats::default();
/// let snapshot = stats.snapshot();
/// assert_eq!(snapshot.accepted, 0);
/// ```
#[derive(Debug, Clone, Default)]
pub struct ServerStats {
    inner: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    active: AtomicU64,
    idle: AtomicU64,
    parked: AtomicU64,
    unparked: AtomicU64,
    requests: AtomicU64,
    closed: [AtomicU64; CloseReason::ALL.len()],
    handlers_dropped: AtomicU64,
    client_closed_first: AtomicU64,
    server_closed_first: AtomicU64,
    linger_timeouts: AtomicU64,
    linger_skipped: AtomicU64,
    accept_errors: AtomicU64,
}

/// A copy of the counters at one moment; see [`ServerStats::snapshot`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatsSnapshot {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections open now.
    pub active: u64,
    /// Connections open now and idle between requests.
    pub idle: u64,
    /// Idle connections open now that are parked: kept as the bare socket, without hyper's
    /// HTTP state (see [`ServerConfig::park_after`](crate::ServerConfig::park_after)).
    pub parked: u64,
    /// Times a parked connection got its next request and had its HTTP state rebuilt.
    pub unparked: u64,
    /// Requests answered (handlers called).
    pub requests: u64,
    /// Connections closed, by reason, in the order of [`CloseReason::ALL`].
    pub closed: [u64; CloseReason::ALL.len()],
    /// Handlers dropped because their client went away while they ran.
    pub handlers_dropped: u64,
    /// Connections where the client's FIN came first (TIME_WAIT on the client).
    pub client_closed_first: u64,
    /// Connections where the server closed first (TIME_WAIT, or a reset, on the server).
    pub server_closed_first: u64,
    /// Final responses after which the client's FIN did not come within the linger time.
    pub linger_timeouts: u64,
    /// Final responses after which the server closed at once, because the client's address
    /// was learned to wait for the server's close (see [`ServerConfig::linger`](crate::ServerConfig::linger)).
    pub linger_skipped: u64,
    /// Accept calls that failed (each is skipped, with a back-off for descriptor exhaustion).
    pub accept_errors: u64,
}

impl StatsSnapshot {
    /// Connections closed for `reason`.
    pub fn closed(&self, reason: CloseReason) -> u64 {
        self.closed[reason.index()]
    }

    /// All connections closed, whatever the reason.
    pub fn closed_total(&self) -> u64 {
        self.closed.iter().sum()
    }

    /// The counters as one line of JSON (no dependency needed to read them from a shell).
    pub fn to_json(&self) -> String {
        let mut json = format!(
            "{{\"accepted\":{},\"active\":{},\"idle\":{},\"parked\":{},\"unparked\":{},\"requests\":{},\"handlers_dropped\":{},\
             \"client_closed_first\":{},\"server_closed_first\":{},\"linger_timeouts\":{},\
             \"linger_skipped\":{},\"accept_errors\":{},\"closed\":{{",
            self.accepted,
            self.active,
            self.idle,
            self.parked,
            self.unparked,
            self.requests,
            self.handlers_dropped,
            self.client_closed_first,
            self.server_closed_first,
            self.linger_timeouts,
            self.linger_skipped,
            self.accept_errors
        );
        for (i, reason) in CloseReason::ALL.iter().enumerate() {
            if i > 0 {
                json.push(',');
            }
            json.push_str(&format!("\"{}\":{}", reason.name(), self.closed[i]));
        }
        json.push_str("}}");
        json
    }
}

impl ServerStats {
    /// Reads every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let c = &self.inner;
        StatsSnapshot {
            accepted: c.accepted.load(Relaxed),
            active: c.active.load(Relaxed),
            idle: c.idle.load(Relaxed),
            parked: c.parked.load(Relaxed),
            unparked: c.unparked.load(Relaxed),
            requests: c.requests.load(Relaxed),
            closed: std::array::from_fn(|i| c.closed[i].load(Relaxed)),
            handlers_dropped: c.handlers_dropped.load(Relaxed),
            client_closed_first: c.client_closed_first.load(Relaxed),
            server_closed_first: c.server_closed_first.load(Relaxed),
            linger_timeouts: c.linger_timeouts.load(Relaxed),
            linger_skipped: c.linger_skipped.load(Relaxed),
            accept_errors: c.accept_errors.load(Relaxed),
        }
    }

    pub(crate) fn connection_opened(&self) {
        self.inner.accepted.fetch_add(1, Relaxed);
        self.inner.active.fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        crate::export::server_opened();
    }

    pub(crate) fn connection_closed(&self, reason: CloseReason, client_first: bool) {
        let c = &self.inner;
        c.active.fetch_sub(1, Relaxed);
        c.closed[reason.index()].fetch_add(1, Relaxed);
        if client_first {
            c.client_closed_first.fetch_add(1, Relaxed);
        } else {
            c.server_closed_first.fetch_add(1, Relaxed);
        }
        #[cfg(feature = "metrics")]
        crate::export::server_closed(reason.name(), client_first);
    }

    pub(crate) fn request(&self) {
        self.inner.requests.fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        crate::export::server_request();
    }

    pub(crate) fn idle_changed(&self, idle: bool) {
        if idle {
            self.inner.idle.fetch_add(1, Relaxed);
        } else {
            self.inner.idle.fetch_sub(1, Relaxed);
        }
        #[cfg(feature = "metrics")]
        crate::export::server_idle(if idle { 1.0 } else { -1.0 });
    }

    pub(crate) fn parked(&self) {
        self.inner.parked.fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        crate::export::server_parked(1.0);
    }

    pub(crate) fn unparked(&self, rebuilt: bool) {
        self.inner.parked.fetch_sub(1, Relaxed);
        #[cfg(feature = "metrics")]
        crate::export::server_parked(-1.0);
        if rebuilt {
            self.inner.unparked.fetch_add(1, Relaxed);
            #[cfg(feature = "metrics")]
            crate::export::server_unparked();
        }
    }

    pub(crate) fn handler_dropped(&self) {
        self.inner.handlers_dropped.fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        crate::export::server_event("keepalive_server_handlers_dropped_total");
    }

    pub(crate) fn linger_timeout(&self) {
        self.inner.linger_timeouts.fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        crate::export::server_event("keepalive_server_linger_timeouts_total");
    }

    pub(crate) fn linger_skipped(&self) {
        self.inner.linger_skipped.fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        crate::export::server_event("keepalive_server_linger_skipped_total");
    }

    pub(crate) fn accept_error(&self) {
        self.inner.accept_errors.fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        crate::export::server_event("keepalive_server_accept_errors_total");
    }
}

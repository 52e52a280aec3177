use std::time::Duration;

use super::pool::PoolConfig;
use crate::SocketOptions;

/// How the [`Client`](super::Client) connects, pools and retries.
///
/// ```
/// use keepalive::client::ClientConfig;
/// use std::time::Duration;
///
/// let config = ClientConfig::new()
///     .idle_timeout(Duration::from_secs(20))
///     .max_idle_per_host(32);
/// # let _ = config;
/// ```
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub(crate) pool: PoolConfig,
    pub(crate) socket: SocketOptions,
    pub(crate) connect_timeout: Option<Duration>,
    pub(crate) connect_overall_timeout: Option<Duration>,
    pub(crate) keep_alive_margin: Option<Duration>,
    pub(crate) honour_server_keep_alive: bool,
    pub(crate) announce_keep_alive: bool,
    pub(crate) last_allowed_request: LastAllowedRequest,
    pub(crate) retry_stale: bool,
    pub(crate) replay_buffer: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            pool: PoolConfig::default(),
            socket: SocketOptions::default(),
            connect_timeout: Some(Duration::from_secs(10)),
            connect_overall_timeout: Some(Duration::from_secs(30)),
            keep_alive_margin: None,
            honour_server_keep_alive: true,
            announce_keep_alive: true,
            last_allowed_request: LastAllowedRequest::Learn,
            retry_stale: true,
            replay_buffer: 64 * 1024,
        }
    }
}

impl ClientConfig {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// How long a connection may stay idle in the pool.
    ///
    /// Default is 50 s (below the common server default of 60 s).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.pool = self.pool.idle_timeout(timeout);
        self
    }

    /// Idle connections kept per host (scheme, host and port).
    ///
    /// Default is 64.
    pub fn max_idle_per_host(mut self, max: usize) -> Self {
        self.pool = self.pool.max_idle_per_key(max);
        self
    }

    /// Connections open per host at once; past it requests wait, in order, for one to come
    /// back, up to [`pool_wait_timeout`](Self::pool_wait_timeout).
    ///
    /// Default is no limit.
    pub fn max_per_host(mut self, max: Option<usize>) -> Self {
        self.pool = self.pool.max_per_key(max);
        self
    }

    /// How long a request waits for a connection when [`max_per_host`](Self::max_per_host)
    /// is reached.
    ///
    /// Default is 30 s.
    pub fn pool_wait_timeout(mut self, timeout: Duration) -> Self {
        self.pool = self.pool.wait_timeout(timeout);
        self
    }

    /// The longest a connection is used; it is closed when it next becomes idle past it.
    ///
    /// Default is no limit.
    pub fn max_lifetime(mut self, lifetime: Option<Duration>) -> Self {
        self.pool = self.pool.max_lifetime(lifetime);
        self
    }

    /// Requests sent on one connection before it is closed.
    ///
    /// Default is no limit (the server's `Keep-Alive: max=` still applies).
    pub fn max_requests(mut self, max: Option<u32>) -> Self {
        self.pool = self.pool.max_requests(max);
        self
    }

    /// How long a returned connection keeps its read and write buffers (8 KB and more) for
    /// quick reuse before it is parked as the bare socket (about 0.4 KB of heap). `None` never
    /// parks.
    ///
    /// Default is 100 ms.
    pub fn park_after(mut self, after: Option<Duration>) -> Self {
        self.pool = self.pool.park_after(after);
        self
    }

    /// Socket options for every connection (through hyper-util's connector and socket2).
    ///
    /// Default is [`SocketOptions::default`]: keepalive 60 s / 10 s / 5, `TCP_NODELAY` on.
    pub fn socket_options(mut self, options: SocketOptions) -> Self {
        self.socket = options;
        self
    }

    /// Time allowed to connect to one address (shared out when a name resolves to several).
    ///
    /// Default is 10 s.
    pub fn connect_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Time allowed for the whole connect, name resolution and every address included.
    ///
    /// Default is 30 s.
    pub fn connect_overall_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.connect_overall_timeout = timeout;
        self
    }

    /// How long before the server's advertised `Keep-Alive: timeout=N` the client closes an
    /// idle connection. `None` uses `min(1 s, N / 4)`. `timeout=` is an idle limit: it is
    /// counted from the end of the last response, so a busy connection is never closed for it.
    ///
    /// Default is `None`.
    pub fn keep_alive_margin(mut self, margin: Option<Duration>) -> Self {
        self.keep_alive_margin = margin;
        self
    }

    /// Whether to honour the server's `Keep-Alive: timeout=` and `max=`.
    ///
    /// Default is on.
    pub fn honour_server_keep_alive(mut self, on: bool) -> Self {
        self.honour_server_keep_alive = on;
        self
    }

    /// Whether to learn, per host, the idle limit of a server that advertises none (Go's
    /// `http.Server`, lighttpd, aiohttp, uvicorn, most load balancers) from the idle
    /// connections the server closes, and then close idle connections a margin before it, so
    /// that their TIME_WAIT stays on the client. See
    /// [`PoolConfig::learn_idle_limits`] for how the estimate is kept.
    ///
    /// Default is on.
    pub fn learn_server_idle_limits(mut self, on: bool) -> Self {
        self.pool = self.pool.learn_idle_limits(on);
        self
    }

    /// Whether HTTP/1.1 requests carry `Connection: keep-alive` (unless the caller set a
    /// `Connection` header of its own). HTTP/1.1 does not need it to keep a connection, but
    /// Apache httpd, the most common server that advertises `Keep-Alive: timeout=, max=`,
    /// advertises only to requests that carry the token (as browsers send it); without it the
    /// client cannot learn Apache's limits. HTTP/1.0 requests always ask for keep-alive.
    ///
    /// Default is on.
    pub fn announce_keep_alive(mut self, on: bool) -> Self {
        self.announce_keep_alive = on;
        self
    }

    /// Whether to send the last request a server allows on a connection (after `Keep-Alive:
    /// max=1`), which it answers with `Connection: close`: see [`LastAllowedRequest`].
    /// Closing instead keeps TIME_WAIT off a server that closes first (Apache httpd) for one
    /// connection in M more; against a server that waits for the client's FIN it is pure loss.
    ///
    /// Default is [`LastAllowedRequest::Learn`]: sent until the host is seen closing first.
    pub fn last_allowed_request(mut self, policy: LastAllowedRequest) -> Self {
        self.last_allowed_request = policy;
        self
    }

    /// Retry once, on a new connection, an idempotent request with a replayable body that
    /// failed on a reused connection before any response byte arrived.
    ///
    /// Default is on.
    pub fn retry_stale_requests(mut self, on: bool) -> Self {
        self.retry_stale = on;
        self
    }

    /// The largest request body (with an exact size) buffered so that it can be replayed.
    ///
    /// Default is 64 KiB.
    pub fn replay_buffer(mut self, bytes: usize) -> Self {
        self.replay_buffer = bytes;
        self
    }
}

/// What the client does with the last request a server allows on a connection: the one after
/// a response that says `Keep-Alive: max=1`. The server answers it with `Connection: close`;
/// Apache httpd then closes at once, before the client, and keeps the connection's TIME_WAIT,
/// while the crate's own server waits for the client's FIN. Closing instead of sending it puts
/// TIME_WAIT on the client, at the cost of one request in every M+1 (`MaxKeepAliveRequests M`)
/// moved to a new connection. Against Apache with `MaxKeepAliveRequests 20`, sending it left
/// TIME_WAIT on Apache for 84 % of the connections, `Learn` for 1 in 5,520, with 5 % more
/// connections; against the crate's server `Learn` cost nothing and `CloseInstead` 5.3 % more
/// connections (BENCHMARKS.md, "Interop").
///
/// Set with [`ClientConfig::last_allowed_request`](super::ClientConfig::last_allowed_request).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LastAllowedRequest {
    /// Always send it: every connection carries every request the server allows.
    Send,
    /// Never send it: close the connection after the response that says `max=1`.
    CloseInstead,
    /// Send it until the host is seen closing first after a `Connection: close` answer (its
    /// FIN already in when the client closes, read from the kernel's `TCP_INFO`; Linux only,
    /// elsewhere this is [`Send`](Self::Send)); from then on close instead for that host.
    /// The host is remembered by the pool for the client's life.
    #[default]
    Learn,
}

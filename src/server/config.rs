use std::time::Duration;

use crate::socket::SocketOptions;

/// How the server treats its connections: limits, timeouts, socket options and the close.
///
/// Every setting has a default that suits a service behind the open internet or a load
/// balancer; see each setter.
///
/// ```
/// use keepalive::ServerConfig;
/// use std::time::Duration;
///
/// let config = ServerConfig::new()
///     .idle_timeout(Duration::from_secs(30))
///     .max_requests(100);
/// # let _ = config;
/// ```
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub(crate) idle_timeout: Duration,
    pub(crate) idle_grace: Duration,
    pub(crate) header_timeout: Duration,
    pub(crate) max_requests: u32,
    pub(crate) max_age: Duration,
    pub(crate) max_connections: Option<usize>,
    pub(crate) socket: SocketOptions,
    pub(crate) linger: Duration,
    pub(crate) linger_floor: Duration,
    pub(crate) linger_rtt_factor: u32,
    pub(crate) linger_max_bytes: usize,
    pub(crate) abortive_idle_close: bool,
    pub(crate) drain_grace: Duration,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) advertise: bool,
    pub(crate) park_after: Option<Duration>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            idle_timeout: Duration::from_secs(60),
            idle_grace: Duration::from_secs(1),
            header_timeout: Duration::from_secs(10),
            max_requests: 1000,
            max_age: Duration::from_secs(3600),
            max_connections: None,
            socket: SocketOptions::default(),
            linger: Duration::from_secs(1),
            linger_floor: DEFAULT_LINGER_FLOOR,
            linger_rtt_factor: 4,
            linger_max_bytes: 256 * 1024,
            abortive_idle_close: false,
            drain_grace: Duration::from_secs(1),
            shutdown_timeout: Duration::from_secs(30),
            advertise: true,
            park_after: Some(Duration::from_millis(100)),
        }
    }
}

/// The shortest wait for a client's FIN after a final response; see
/// [`ServerConfig::linger_floor`] for how it was chosen.
pub(crate) const DEFAULT_LINGER_FLOOR: Duration = Duration::from_millis(2);

impl ServerConfig {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// How long a keep-alive connection may sit between requests (from the end of a response
    /// to the first byte of the next request). Advertised to clients as `Keep-Alive: timeout=`;
    /// the server closes the connection [`idle_grace`](Self::idle_grace) later. A connection
    /// that never got a request is closed at the idle timeout itself.
    ///
    /// When the deadline comes, the server looks once more: if bytes of a request have arrived
    /// (even part of a head), the request is served with `Connection: close` (the head then
    /// has the header timeout to complete) instead of being reset.
    ///
    /// The same silence ends a request whose `Content-Length` body stops arriving (408,
    /// [`CloseReason::BodyTimeout`](crate::CloseReason::BodyTimeout)).
    ///
    /// Default is 60 s.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// How long after the advertised idle timeout an idle keep-alive connection is really
    /// closed, so that a client that honours `Keep-Alive: timeout=` and reuses the connection
    /// right at it (or, busy, a little after it) still finds it open. Clients that ignore the
    /// header (Python requests, Go's Transport, node's agent without `timeout`) then race the
    /// close only if they reuse a connection later than that; see `BENCHMARKS.md`. Not applied
    /// to idle timeouts under a second (they are not advertised). node's http server does the
    /// same (it closes a second after the `timeout=` it sends).
    ///
    /// Default is 1 s.
    pub fn idle_grace(mut self, grace: Duration) -> Self {
        self.idle_grace = grace;
        self
    }

    /// How long a request head may take, counted from its first byte (not from the previous
    /// response, unlike hyper's `header_read_timeout`). A head not complete in time gets
    /// `408 Request Timeout` and a close.
    ///
    /// Default is 10 s.
    pub fn header_timeout(mut self, timeout: Duration) -> Self {
        self.header_timeout = timeout;
        self
    }

    /// Requests served on one connection before it is closed (the last response says
    /// `Connection: close`). Advertised as `Keep-Alive: max=`. `0` is taken as `1`.
    ///
    /// Default is 1000.
    pub fn max_requests(mut self, max: u32) -> Self {
        self.max_requests = max.max(1);
        self
    }

    /// The longest a connection may live. A response with less than a second of age left
    /// carries `Connection: close`; an idle connection that reaches its age is closed.
    ///
    /// Default is 1 hour.
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = age;
        self
    }

    /// The most connections served at once. When reached, accepting waits (new clients queue in
    /// the listen backlog) instead of failing.
    ///
    /// Default is no limit.
    pub fn max_connections(mut self, max: Option<usize>) -> Self {
        self.max_connections = max;
        self
    }

    /// Socket options for every accepted socket.
    ///
    /// Default is [`SocketOptions::default`]: keepalive 60 s / 10 s / 5, `TCP_NODELAY` on.
    pub fn socket_options(mut self, options: SocketOptions) -> Self {
        self.socket = options;
        self
    }

    /// The longest the server waits for the client's FIN after a final `Connection: close`
    /// response before closing itself (client-first close, so TIME_WAIT lands on the client).
    /// The actual wait is `clamp(linger_rtt_factor x smoothed RTT, linger_floor, linger)`.
    /// `Duration::ZERO` turns the wait off (the server closes at once).
    ///
    /// Clients that wait for the server's close instead of closing (ab without `-k`) would pay
    /// the wait on every connection, so the server learns per client address how often it
    /// closes first (a moving average over its recent waits): below 10 % it closes at once for
    /// that address, still waiting on one close in sixteen to notice when the address closes
    /// first again. An address that closed first on its last 8 waits in a row gets the whole
    /// `linger` instead of the RTT-based wait (a busy machine may not run a closing client for
    /// tens of milliseconds; the wait ends at its FIN); one wait without its FIN puts it back
    /// on the short wait. Run clients of both kinds from different addresses: the first
    /// connections of a client that waits for the server's close, from an address just learned
    /// as closing first, wait the whole linger.
    ///
    /// Default is 1 s.
    pub fn linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// The shortest wait for the client's FIN after a final response, whatever the RTT.
    ///
    /// Clients that close after reading the response (curl, browsers, HTTP/1.1 clients told
    /// `Connection: close`) send their FIN within a fraction of a millisecond on loopback, but
    /// a busy machine may not run them for a millisecond or two; the timer's own granularity
    /// is a millisecond. The default is measured in `BENCHMARKS.md`.
    ///
    /// Default is 2 ms.
    pub fn linger_floor(mut self, floor: Duration) -> Self {
        self.linger_floor = floor;
        self
    }

    /// How many smoothed RTTs (`TCP_INFO`) to wait for the client's FIN, within
    /// [`linger_floor`](Self::linger_floor) and [`linger`](Self::linger).
    ///
    /// Default is 4.
    pub fn linger_rtt_factor(mut self, factor: u32) -> Self {
        self.linger_rtt_factor = factor;
        self
    }

    /// The most bytes read and discarded while waiting for the client's FIN (an unread request
    /// body, a request sent after the close). Past it the server closes.
    ///
    /// Default is 256 KiB.
    pub fn linger_max_bytes(mut self, max: usize) -> Self {
        self.linger_max_bytes = max;
        self
    }

    /// Close timed-out idle connections with a reset (`SO_LINGER` 0) instead of a FIN, so the
    /// server keeps no TIME_WAIT for them (like nginx's `reset_timedout_connection`).
    ///
    /// Default is off.
    pub fn abortive_idle_close(mut self, on: bool) -> Self {
        self.abortive_idle_close = on;
        self
    }

    /// During a graceful shutdown, how long an idle keep-alive connection is kept open in case
    /// a request is already on its way (it is answered with `Connection: close`). Connections
    /// that stay silent are closed when it ends.
    ///
    /// Default is 1 s.
    pub fn drain_grace(mut self, grace: Duration) -> Self {
        self.drain_grace = grace;
        self
    }

    /// How long a graceful shutdown waits for connections to finish before closing the rest
    /// by force.
    ///
    /// Default is 30 s.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// How long an idle keep-alive connection keeps hyper's HTTP/1 state (its read and write
    /// buffers, about 10 KB) before it is parked as the bare socket plus a few counters (about
    /// 1 KB in all). The next request rebuilds the state, losing no byte; a peer's FIN on a
    /// parked connection is still noticed at once. Connections that get their next request
    /// sooner never pay for the rebuild. `None` never parks.
    ///
    /// Default is 100 ms.
    pub fn park_after(mut self, after: Option<Duration>) -> Self {
        self.park_after = after;
        self
    }

    /// Whether keep-alive responses carry `Keep-Alive: timeout=T, max=M`.
    ///
    /// Default is on.
    pub fn advertise_keep_alive(mut self, on: bool) -> Self {
        self.advertise = on;
        self
    }
}

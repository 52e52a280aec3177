//! HTTP/1.0 and HTTP/1.1 keep-alive done right on both ends of the wire, for hyper 1.x, tower
//! and axum.
//!
//! Three failures come from who closes a TCP connection and when: TIME_WAIT piling up on
//! servers that close first, CLOSE_WAIT leaking when nobody notices the peer's FIN, and the
//! idle race where a client reuses a connection the server is just closing. This crate's
//! server keeps connections alive with real limits, notices a client's FIN at once, and when a
//! connection must end lets the client close first; its client never races the server and
//! never leaves CLOSE_WAIT.
//!
//! # Serving
//!
//! [`serve`] has the shape of `axum::serve`: give it a listener and any cloneable tower service
//! of `http::Request<hyper::body::Incoming>` (an axum `Router`, `tower::service_fn`, ...).
//!
//! ```no_run
//! use std::convert::Infallible;
//! use std::time::Duration;
//! use http::{Request, Response};
//! use hyper::body::Incoming;
//! use keepalive::ServerConfig;
//!
//! # async fn run() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! let app = tower::service_fn(|_req: Request<Incoming>| async {
//!     Ok::<_, Infallible>(Response::new(String::from("hello, world!")))
//! });
//! let server = keepalive::serve(listener, app).config(
//!     ServerConfig::new()
//!         .idle_timeout(Duration::from_secs(30))
//!         .max_requests(500),
//! );
//! let stats = server.stats(); // live counters
//! server
//!     .with_graceful_shutdown(async { let _ = tokio::signal::ctrl_c().await; })
//!     .await?;
//! println!("{}", stats.snapshot().to_json());
//! # Ok(())
//! # }
//! ```
//!
//! # The layer alone, or the crate's serve
//!
//! [`KeepAliveLayer`] works under any server, but one response can only say so much: limits
//! that span a connection need the code that owns the connection. Under axum's `Router` the
//! services are clones that share nothing per connection, so a per-connection `max=` cannot come
//! from a layer.
//!
//! | what | `KeepAliveLayer` under `axum::serve` / hyper-util | [`serve`] |
//! |---|---|---|
//! | HTTP/1.0 `Connection: keep-alive` answered in kind | yes | yes |
//! | `Keep-Alive: timeout=` | only the value you configure (none by default: `axum::serve` 0.8.9 enforces none) | from the real idle timeout and age left |
//! | `Keep-Alive: max=` | no | requests left on this connection |
//! | idle timeout separate from the header timeout | no | yes |
//! | max requests, max age per connection | no | yes |
//! | client FIN noticed while a handler runs, also behind pipelined requests | hyper only when nothing is pipelined | yes (requests complete before it are answered) |
//! | client-first close (TIME_WAIT on the client) | no | yes |
//! | `SO_KEEPALIVE` time/interval/retries, `TCP_NODELAY` | no | yes ([`SocketOptions`]) |
//! | graceful drain without losing requests on idle connections | no | yes |
//! | counters (closes by reason, who closed first) | no | yes ([`ServerStats`]) |
//! | HTTP/2 and upgrades untouched | yes | upgrades pass through (HTTP/1 only) |
//!
//! Under [`serve`] a `KeepAliveLayer` further in steps aside, so adding both is harmless.
//!
//! # When the server still closes first
//!
//! Each of these leaves TIME_WAIT (or, with [`ServerConfig::abortive_idle_close`], a reset)
//! on the server, and each is counted in [`StatsSnapshot::server_closed_first`] and by reason:
//!
//! - an idle connection reaches the idle timeout or its maximum age ([`CloseReason::IdleTimeout`],
//!   [`CloseReason::MaxAge`]); under TLS the client is asked to close first (see TLS below);
//! - a request head does not complete within the header timeout (408, [`CloseReason::HeaderTimeout`]);
//! - a request body (framed by `Content-Length`) stops arriving: silence longer than the idle
//!   timeout while it is incomplete (408 if the handler has not answered,
//!   [`CloseReason::BodyTimeout`]);
//! - a graceful shutdown closes a connection that stayed silent through the grace window
//!   ([`CloseReason::Drain`]) or closes the rest by force ([`CloseReason::Forced`]);
//! - a malformed request (400) or an I/O error ([`CloseReason::Error`]);
//! - hyper will not reuse the connection after a response: a request framed by both
//!   `Content-Length` and `Transfer-Encoding` (its response says `Connection: close`), an
//!   invalid body, a request body the handler left unread ([`CloseReason::NotReusable`]);
//! - a client that does not close within the linger wait after a final response: its address
//!   is then learned as one that waits for the server's close and gets a close at once (see
//!   [`ServerConfig::linger`]);
//! - an HTTP/1.0 body with no length, which only the close can end ([`CloseReason::BodyUntilClose`]);
//! - accept overload never closes: past [`ServerConfig::max_connections`] accepting waits.
//!
//! # A client's FIN while a handler runs
//!
//! The server sees the client's FIN at once, also behind pipelined requests. What the client
//! gets depends on what it sent before it:
//!
//! - Nothing after the running request (one request, then the FIN: the usual client that gave
//!   up): the client has left. The handler is dropped (counted in
//!   [`StatsSnapshot::handlers_dropped`]) and the socket is closed at once, no CLOSE_WAIT. A
//!   client that half-closes after a single request therefore gets no response unless the
//!   handler answers before the FIN is seen (as with hyper).
//! - More requests after the running one (pipelined, then the FIN): every request that was
//!   complete before the FIN is answered, in order, and the connection closes after the last
//!   ([`CloseReason::PeerFin`]); a request cut short by the FIN gets nothing. A client that
//!   closed its socket rather than half-closing it answers the first response with a reset,
//!   which ends the connection then.
//!
//! For comparison, plain hyper-util 0.1.21 (hyper 1.12, `half_close` off, the default) over
//! loopback answers all but the last of the pipelined requests: it drops the handler of the
//! last one when it reads the FIN with its buffer empty (recorded in `BENCHMARKS.md`).
//!
//! Under TLS only decrypted bytes count as requests after the running one.
//!
//! # Race windows
//!
//! - A request the client sends just as the server closes an idle connection (idle timeout,
//!   drain) is lost on the wire; clients avoid it by closing before the advertised
//!   `Keep-Alive: timeout=` and by retrying idempotent requests. The server narrows it: it
//!   closes an idle connection [`ServerConfig::idle_grace`] (1 s) after the advertised
//!   timeout, and when an idle deadline passes it looks once more, serving (with
//!   `Connection: close`) a request whose bytes have arrived. During a drain, idle
//!   connections get a grace window before they are closed. A request that arrives after the
//!   server's FIN is still lost.
//! - A partial request head already buffered when a response ends is timed by the idle timeout
//!   until the connection would park ([`ServerConfig::park_after`]), then by the header timeout.
//!
//! # What an idle connection costs
//!
//! A keep-alive connection idle for [`ServerConfig::park_after`] (100 ms) is parked: hyper's
//! HTTP/1 state and its buffers (about 17 KB) are freed, and the connection keeps the socket, one
//! timer, its counters and a small task, about 1 KB of live heap in all. The next request
//! rebuilds hyper's state; bytes hyper had read but not parsed are handed back first, so
//! nothing is lost or reordered. A parked connection still notices the client's FIN at once, still times out, and
//! still takes part in a graceful shutdown. A connection that gets its next request sooner
//! never parks, so a busy one pays nothing. A connection hyper still owes bytes to (a client not
//! reading its response) and an upgraded one are never parked.
//!
//! What the process keeps resident is more: glibc's allocator keeps the freed hyper state in
//! the worker threads' arenas and gives memory back to the kernel only from the top of a heap.
//! Measured as the OS counts it (the server's VmRSS in its own process, 5 s after the last
//! request, no `malloc_trim`; BENCHMARKS.md): 15.4 KB per idle connection after a burst of
//! 2,000 requests at once and 6.9 KB after a burst of 10,000 (a bare tokio `TcpStream`:
//! 1.0 KB; plain hyper-util: 17.3 and 17.4 KB), 5.7 and 2.5 KB when the connections arrive one
//! after the other.
//!
//! # TLS
//!
//! [`Serve::handshake`](server::Serve::handshake) runs a handshake on each accepted socket
//! before HTTP: `tokio_rustls::TlsAcceptor` with the feature `rustls`, or any
//! [`server::Handshake`]. The handshake wraps the crate's own socket ([`server::ServerIo`]), so
//! the FIN watch, the client-first close (the server's `close_notify`, then the wait for the
//! client's FIN) and parking all work under TLS, and the header timeout, body progress and
//! counters see the decrypted bytes. A client's `close_notify` counts as its close
//! ([`CloseReason::PeerFin`]). A handshake that fails or outlasts the header timeout is closed
//! and counted ([`CloseReason::Handshake`]). Under TLS a timed-out head or body gets no 408 (it
//! would need the TLS session hyper owns): the connection is closed.
//!
//! TLS also lets the server ask an idle client to close first, which plain TCP cannot: when an
//! idle connection reaches its idle timeout, its maximum age or the end of a drain's grace, the
//! server sends its `close_notify` and waits (as after a final response) for the client's FIN,
//! so TIME_WAIT lands on clients that close on `close_notify`, as curl, hyper-util with rustls
//! and this crate's client do.
//!
//! On the client, `client::TlsConnector` (feature `rustls`) runs rustls over the TCP
//! connector for `https` URIs; idle pooled TLS connections are watched like plain ones.
//!
//! # The client
//!
//! [`client::Client`] is the other end: a keep-alive pool that closes idle connections a
//! margin before the server's advertised `Keep-Alive: timeout=`, evicts an idle connection the
//! moment the server's FIN arrives, honours `Connection: close` and `Keep-Alive: max=`, and
//! retries once, on a new connection, an idempotent request that failed on a reused one before
//! any response byte. See the [`client`] module.
//!
//! # Modules
//!
//! - [`server`]: [`serve`], [`KeepAliveLayer`], [`ServerConfig`], [`ServerStats`],
//!   [`server::Handshake`] (TLS).
//! - [`client`]: [`client::Client`], [`client::Pool`] (also for non-HTTP connections).
//! - `export` (feature `metrics`): the counters of both sides through the `metrics` crate facade.
//! - [`socket`]: socket options shared by both sides.
//! - [`fin`]: noticing the peer's FIN without losing bytes.
//! - [`header`]: the `Connection` and `Keep-Alive` grammar.
//! - [`tcp_state`]: the kernel's view of TCP sockets (`/proc/net/tcp`), for tests, benchmarks
//!   and health checks.

#[macro_use]
mod delegate;

pub mod client;
#[cfg(feature = "metrics")]
pub mod export;
pub mod fin;
pub mod header;
pub mod server;
pub mod socket;
pub mod tcp_state;

pub use server::{
    serve, CloseReason, ConnectionInfo, KeepAliveLayer, ServerConfig, ServerStats, StatsSnapshot,
};
pub use socket::SocketOptions;

/// The boxed error type used where errors of several sources meet.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

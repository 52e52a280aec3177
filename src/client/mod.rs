//! The client side: [`Client`], an HTTP/1.0 and HTTP/1.1 client whose keep-alive pool never
//! races the server and never leaves CLOSE_WAIT, and the [`Pool`] under it, usable for any
//! connection.
//!
//! - The client speaks HTTP/1 itself (the head parsed with `httparse`, as hyper does): a
//!   connection holds no HTTP state between requests, a request needs no task or channel of
//!   its own, and a small response is read whole with its head, its connection back in the
//!   pool before the caller sees it.
//! - Connections are pooled by scheme, host and port and reused last-in first-out. A
//!   connection that comes back keeps its read and write buffers for quick reuse; once idle
//!   for [`PoolConfig::park_after`] (100 ms) it is parked as the bare socket (about 0.4 KB of
//!   live heap per idle connection; the process keeps 6.0 KB resident per connection after a
//!   burst of 2,000 concurrent requests, no `malloc_trim`: BENCHMARKS.md).
//! - The server is honoured: `Connection: close` ends the connection after that response, an
//!   HTTP/1.0 response without keep-alive is not reused, `Keep-Alive: timeout=N` makes the
//!   client close the idle connection a margin before N (so TIME_WAIT lands on the client and
//!   the idle race cannot happen), `Keep-Alive: max=M` caps its uses (and the last use is
//!   skipped for a host seen closing first after it: [`LastAllowedRequest`]).
//! - An idle connection's FIN (or any unexpected byte) evicts and closes it at once.
//! - A request that fails on a reused connection before any response byte is retried once on a
//!   new connection when it is idempotent and its body is replayable; otherwise the error says
//!   why it was not ([`ErrorKind::StaleNotRetried`]).
//! - Dropping a response body before its end closes its connection; dropping the last clone of
//!   the client closes its idle connections (the client's FIN first).

mod config;
mod conn;
mod connector;
mod error;
mod h1;
mod key;
mod last_request;
mod learned_idle;
mod lease;
mod pool;
mod service;
mod stats;
#[cfg(feature = "rustls")]
mod tls;

pub use config::{ClientConfig, LastAllowedRequest};
pub use connector::TcpConnector;
pub use error::{Error, ErrorKind};
pub use h1::response_body::ResponseBody;
pub use key::PoolKey;
pub use pool::{Checkout, History, Idle, Pool, PoolConfig, Pooled, Reuse, Slot, WaitTimeout};
pub use service::{Client, Connect};
pub use stats::{ClientStats, ClientStatsSnapshot, PoolCloseReason};
#[cfg(feature = "rustls")]
pub use tls::{MaybeTls, TlsConnector};

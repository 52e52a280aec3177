//! One server connection, from the accepted socket to its close.
//!
//! The files, each importing only files further down this list:
//!
//! - `driver`: the connection's task. `spawn_connection` applies the socket options and runs
//!   the handshake, then one loop waits for hyper, the timers, the client's FIN and the
//!   shutdown, and decides (and counts) how the connection ends.
//! - `handshake`: the public `Handshake` (TLS, or `Cleartext`) and `ServerIo`, the socket a
//!   handshake wraps.
//! - `hyper_side`: hyper's HTTP/1 connection, switched to upgrades, or taken apart while the
//!   connection is parked and rebuilt for the next request.
//! - `io`: `ConnIo`, the socket under the handshake: reads through the FIN watch's read-ahead,
//!   writes straight through, and shutdown as the client-first close (the linger).
//! - `http_io`: the handshake's stream as hyper reads it, each request byte noted for the
//!   header timeout and the body's progress.
//! - `service`: the user's service (`HttpService`) and `ConnService`, which hyper calls: it
//!   applies the keep-alive policy to each response and tracks its body (`TrackedBody`).
//! - `state`: `Shared`, what the pieces above share: the phase and its deadlines, the
//!   read-ahead, the counts; every change of phase happens there.
//! - `context`: `ConnContext`, what the server hands every connection.
//! - `body_progress`, `peer_memory`, `parking`: whether a request body still arrives, what the
//!   server remembers about each client address (for the linger), and where connections watch
//!   the shutdown's `Stage`.
//!
//! Request bytes flow up: socket, `io` (read-ahead), the handshake's stream (TLS decrypts),
//! `http_io`, hyper, `service`, the user's service. The response flows back down the same
//! way. Each piece tells `state` what it saw, and `driver` reads `state` to decide when
//! the connection parks, times out or ends.

mod body_progress;
mod context;
mod driver;
mod handshake;
mod http_io;
mod hyper_side;
mod io;
mod parking;
mod peer_memory;
mod service;
mod state;

pub use handshake::{Cleartext, Handshake, ServerIo};
pub use service::{HttpService, TrackedBody};

pub(crate) use context::ConnContext;
pub(crate) use driver::spawn_connection;
pub(crate) use parking::Stage;

//! One server connection, from the accepted socket to its close.

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

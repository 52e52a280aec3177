//! HTTP/1.0 and HTTP/1.1 keep-alive done right on both ends of the wire, for hyper 1.x, tower
//! and axum.
#![doc = "\n"]
//! A placeholder: the crate docs are written in README.md and included below once stable.

pub mod fin;
pub mod header;
pub mod server;
pub mod socket;
pub mod tcp_state;

pub use server::{serve, CloseReason, KeepAliveLayer, ServerConfig, ServerStats, StatsSnapshot};
pub use socket::SocketOptions;

/// The boxed error type used where errors of several sources meet.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

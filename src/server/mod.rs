//! The server side: [`serve`] for hyper and axum services, and [`KeepAliveLayer`] for any
//! HTTP/1 server.
//!
//! See the [crate docs](crate) for what each does, the table of what the layer can do on its
//! own, and every case where the server still closes first.

mod config;
mod conn;
mod connection_info;
mod hyper_service;
mod layer;
mod policy;
mod serve;
mod stats;

pub use config::ServerConfig;
pub use conn::{Cleartext, Handshake, HttpService, ServerIo, TrackedBody};
pub use connection_info::ConnectionInfo;
pub use hyper_service::HyperToTowerService;
pub use layer::{KeepAlive, KeepAliveLayer, ResponseFuture};
pub use serve::{serve, Serve, WithGracefulShutdown};
pub use stats::{CloseReason, ServerStats, StatsSnapshot};

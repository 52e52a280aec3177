//! The server side: [`serve`] for hyper and axum services, and [`KeepAliveLayer`] for any
//! HTTP/1 server.
//!
//! See the [crate docs](crate) for what each does, the table of what the layer can do on its
//! own, and every case where the server still closes first.

mod config;
mod conn;
mod layer;
mod policy;
mod serve;
mod stats;

pub use config::ServerConfig;
pub use conn::{Cleartext, Handshake, ServerIo, TrackedBody};

use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;

use crate::BoxError;

/// A tower service the crate's [`serve`] can run: any cloneable `Service` of
/// `http::Request<hyper::body::Incoming>` whose response body and errors can cross threads
/// (an axum `Router`, `tower::service_fn(...)`, a `ServiceBuilder` stack). Implemented for every
/// such service; it only names the bounds once.
pub trait HttpService:
    tower_service::Service<
        Request<Incoming>,
        Response = Response<Self::ResBody>,
        Error: Into<BoxError>,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
    /// The response body.
    type ResBody: Body<Data: Send, Error: Into<BoxError>> + Send + 'static;
}

impl<S, B> HttpService for S
where
    S: tower_service::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type ResBody = B;
}
pub use layer::{KeepAlive, KeepAliveLayer, ResponseFuture};
pub use serve::{serve, Serve, WithGracefulShutdown};
pub use stats::{CloseReason, ServerStats, StatsSnapshot};

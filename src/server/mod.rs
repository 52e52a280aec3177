//! The server side: [`serve`] for hyper and axum services, and [`KeepAliveLayer`] for any
//! HTTP/1 server.
//!
//! See the [crate docs](crate) for what each does, the table of what the layer can do on its
//! own, and every case where the server still closes first.

mod body_progress;
mod config;
mod connection;
mod driver;
mod handshake;
mod http_io;
mod hyper_service;
mod layer;
mod parking;
mod peer_memory;
mod policy;
mod serve;
mod service;
mod stats;

pub use config::ServerConfig;
pub use handshake::{Cleartext, Handshake, ServerIo};
pub use hyper_service::HyperToTowerService;

use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;

use crate::BoxError;

/// A tower service the crate's [`serve`] can run: any cloneable `Service` of
/// `http::Request<hyper::body::Incoming>` whose response body and errors can cross threads
/// (an axum `Router`, `tower::service_fn(...)`, a `ServiceBuilder` stack). Implemented for every
/// such service; it only names the bounds once.
///
/// [`serve`] states it, so a wrong argument is named where it is passed:
///
/// ```compile_fail,E0277
/// # async fn run(listener: tokio::net::TcpListener) {
/// #[derive(Clone)]
/// struct AppState;
/// let app: axum::Router<AppState> = axum::Router::new(); // no `.with_state(AppState)`
/// // error: `Router<AppState>` is not a service `keepalive::serve` can run
/// let _ = keepalive::serve(listener, app);
/// # }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a service `keepalive::serve` can run",
    label = "not a tower `Service<http::Request<hyper::body::Incoming>>`",
    note = "`serve` takes a cloneable tower service whose future is `Send + 'static` and whose response body is an `http_body::Body`",
    note = "a hyper service (`hyper::service::service_fn`) goes in `keepalive::server::HyperToTowerService::new(...)`",
    note = "an axum `Router<S>` with state needs `.with_state(state)` first; pass the `Router` itself, not `into_make_service()`"
)]
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
pub use service::TrackedBody;
pub use stats::{CloseReason, ServerStats, StatsSnapshot};

//! [`ConnectionInfo`]: the facts of the connection a request came on, in each request's
//! extensions.

use std::net::SocketAddr;
use std::time::Instant;

/// The connection a request came on. [`serve`](crate::server::serve) inserts one into every
/// request's extensions, whatever the service (tower, axum, or hyper through
/// [`HyperToTowerService`](crate::server::HyperToTowerService)):
///
/// ```
/// # use keepalive::server::ConnectionInfo;
/// # fn handler(request: http::Request<hyper::body::Incoming>) {
/// if let Some(info) = request.extensions().get::<ConnectionInfo>() {
///     println!("{} request {} from {}", info.id(), info.request_number(), info.peer_addr());
/// }
/// # }
/// ```
///
/// In an axum handler, take it as `axum::Extension<ConnectionInfo>`.
///
/// The addresses are TCP addresses: the server listens on TCP only for now (a Unix socket
/// listener comes with the crate's listener trait, and with it other kinds of address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionInfo {
    pub(crate) peer_addr: SocketAddr,
    pub(crate) local_addr: SocketAddr,
    pub(crate) id: u64,
    pub(crate) request_number: u64,
    pub(crate) accepted_at: Instant,
}

impl ConnectionInfo {
    /// The client's address (the far end of the socket).
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// The server's address on this connection (the near end of the socket; with a listener
    /// bound to `0.0.0.0`, the address the client reached).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The connection's id: unique among the connections of one `serve` call, increasing in
    /// the order they were accepted, starting at 1.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Which request this is on the connection, from 1; parking and unparking the connection
    /// do not restart the count.
    pub fn request_number(&self) -> u64 {
        self.request_number
    }

    /// When the server accepted the connection.
    pub fn accepted_at(&self) -> Instant {
        self.accepted_at
    }
}

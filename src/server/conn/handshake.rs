//! What runs between accepting a socket and serving HTTP on it: nothing for plain HTTP, a TLS
//! handshake for HTTPS. The handshake gets the crate's own socket ([`ServerIo`]), so socket
//! options, the FIN watch, the client-first close and idle parking work the same under TLS.

use std::future::{ready, Future, Ready};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::io::ConnIo;

/// Turns an accepted connection's socket into the stream hyper serves HTTP/1 on: a TLS
/// handshake, usually. Give it to [`Serve::handshake`](crate::server::Serve::handshake).
///
/// With the feature `rustls`, `tokio_rustls::TlsAcceptor` implements it. Any other TLS stack
/// can: wrap the given [`ServerIo`] in its stream. The handshake must finish within the
/// server's [`header_timeout`](crate::server::ServerConfig::header_timeout), or the connection
/// is closed ([`CloseReason::Handshake`](crate::server::CloseReason::Handshake)).
///
/// ```no_run
/// # #[cfg(feature = "rustls")]
/// # async fn run(tls: std::sync::Arc<tokio_rustls::rustls::ServerConfig>) -> std::io::Result<()> {
/// use std::convert::Infallible;
/// use http::{Request, Response};
/// use hyper::body::Incoming;
///
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3443").await?;
/// let app = tower::service_fn(|_req: Request<Incoming>| async {
///     Ok::<_, Infallible>(Response::new(String::from("hello over TLS")))
/// });
/// keepalive::serve(listener, app)
///     .handshake(tokio_rustls::TlsAcceptor::from(tls))
///     .await
/// # }
/// ```
pub trait Handshake: Clone + Send + Sync + 'static {
    /// The stream hyper reads requests from and writes responses to.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// The handshake in progress (`Unpin`: box an `async` block).
    type Future: Future<Output = io::Result<Self::Stream>> + Unpin + Send + 'static;

    /// Starts the handshake on a freshly accepted socket.
    fn handshake(&self, io: ServerIo) -> Self::Future;

    /// Whether the stream's bytes are the socket's bytes (no encryption). The server then
    /// answers a request head that timed out with a 408 written straight to the socket; under
    /// TLS it just closes. The default says no.
    fn is_cleartext(&self) -> bool {
        false
    }
}

/// Plain HTTP: the socket itself is the stream. The default of [`serve`](crate::server::serve).
#[derive(Debug, Clone, Copy, Default)]
pub struct Cleartext;

impl Handshake for Cleartext {
    type Stream = ServerIo;
    type Future = Ready<io::Result<ServerIo>>;

    fn handshake(&self, io: ServerIo) -> Self::Future {
        ready(Ok(io))
    }

    fn is_cleartext(&self) -> bool {
        true
    }
}

#[cfg(feature = "rustls")]
impl Handshake for tokio_rustls::TlsAcceptor {
    type Stream = tokio_rustls::server::TlsStream<ServerIo>;
    type Future = tokio_rustls::Accept<ServerIo>;

    fn handshake(&self, io: ServerIo) -> Self::Future {
        self.accept(io)
    }
}

/// An accepted socket as the crate's server keeps it: reads come through its read-ahead (the
/// FIN watch reads ahead while a handler runs, and nothing it read is lost), and shutdown is
/// the client-first close (it waits a bounded time for the client's FIN). A [`Handshake`]
/// wraps it in its stream.
#[derive(Debug)]
pub struct ServerIo {
    io: ConnIo,
}

impl ServerIo {
    pub(crate) fn new(io: ConnIo) -> Self {
        ServerIo { io }
    }

    /// The client's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.io.stream().peer_addr()
    }

    /// The local address the client connected to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.stream().local_addr()
    }
}

impl AsyncRead for ServerIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

delegate_async_write!(impl<> for ServerIo => io where ConnIo: AsyncWrite);

//! HTTPS through rustls (feature `rustls`): a connector that runs a TLS handshake over another
//! connector's socket for `https` URIs.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::ServerName;

use super::config::ClientConfig;
use super::connector::TcpConnector;
use crate::BoxError;

/// A connector for `https` (TLS through rustls) and `http` URIs: it connects with the inner
/// connector ([`TcpConnector`] by default) and, for `https`, runs a TLS handshake with the
/// URI's host as the server name. HTTP/1.1 is the only protocol it offers by ALPN.
///
/// Pooled TLS connections are watched like plain ones: the server's `close_notify` or FIN
/// evicts an idle one at once, and TLS records that carry no data (TLS 1.3 session tickets)
/// do not.
///
/// ```no_run
/// use std::sync::Arc;
/// use keepalive::client::{Client, ClientConfig, TlsConnector};
/// use tokio_rustls::rustls;
///
/// # fn roots() -> rustls::RootCertStore { rustls::RootCertStore::empty() }
/// let tls = rustls::ClientConfig::builder()
///     .with_root_certificates(roots())
///     .with_no_client_auth();
/// let config = ClientConfig::new();
/// let client = Client::with_connector(config.clone(), TlsConnector::new(&config, Arc::new(tls)));
/// ```
#[derive(Clone)]
pub struct TlsConnector<C = TcpConnector> {
    inner: C,
    tls: tokio_rustls::TlsConnector,
    handshake_timeout: Option<Duration>,
}

impl<C> std::fmt::Debug for TlsConnector<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConnector")
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

impl TlsConnector<TcpConnector> {
    /// TLS over the default TCP connector made from `config` (its socket options and connect
    /// timeouts; the overall connect timeout also bounds the TLS handshake).
    pub fn new(config: &ClientConfig, tls: Arc<rustls::ClientConfig>) -> Self {
        let tcp = TcpConnector::new(
            config.socket,
            config.connect_timeout,
            config.connect_overall_timeout,
        )
        .enforce_http(false);
        let mut connector = TlsConnector::with_inner(tcp, tls);
        connector.handshake_timeout = config.connect_overall_timeout;
        connector
    }
}

impl<C> TlsConnector<C> {
    /// TLS over a connector of your own (any `tower::Service<Uri>` returning a socket), which
    /// is called with the `https` URI itself: a [`TcpConnector`] must be given
    /// [`enforce_http(false)`](TcpConnector::enforce_http) for that, or it refuses.
    /// The handshake has no time limit of its own: see [`handshake_timeout`](Self::handshake_timeout).
    pub fn with_inner(inner: C, tls: Arc<rustls::ClientConfig>) -> Self {
        let mut tls = (*tls).clone();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        TlsConnector {
            inner,
            tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
            handshake_timeout: None,
        }
    }

    /// The longest a TLS handshake may take. Default: the client's overall connect timeout
    /// with [`TlsConnector::new`], none with [`TlsConnector::with_inner`].
    pub fn handshake_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.handshake_timeout = timeout;
        self
    }
}

impl<C> tower_service::Service<Uri> for TlsConnector<C>
where
    C: tower_service::Service<Uri>,
    C::Response: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    C::Error: Into<BoxError>,
    C::Future: Send + 'static,
{
    type Response = MaybeTls<C::Response>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let https = super::connector::is_https(&uri);
        let name = uri.host().map(|host| {
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned()
        });
        let connecting = self.inner.call(uri);
        let tls = self.tls.clone();
        let limit = self.handshake_timeout;
        Box::pin(async move {
            let io = connecting.await.map_err(Into::into)?;
            if !https {
                return Ok(MaybeTls::Plain(io));
            }
            let failed = |error: BoxError| BoxError::from(HandshakeFailed(error));
            let name = name.ok_or_else(|| failed("an https URI without a host".into()))?;
            let name = ServerName::try_from(name).map_err(|e| failed(e.into()))?;
            let handshake = tls.connect(name, io);
            let stream = match limit {
                Some(limit) => tokio::time::timeout(limit, handshake)
                    .await
                    .map_err(|_| failed("timed out".into()))?,
                None => handshake.await,
            }
            .map_err(|e| failed(e.into()))?;
            Ok(MaybeTls::Tls(Box::new(stream)))
        })
    }
}

/// A TLS handshake that failed, with its cause (the client reports it as
/// [`ErrorKind::Tls`](super::ErrorKind::Tls), the cause as its source).
#[derive(Debug)]
pub(crate) struct HandshakeFailed(pub(crate) BoxError);

impl std::fmt::Display for HandshakeFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TLS handshake failed")
    }
}

impl std::error::Error for HandshakeFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// A connection made by [`TlsConnector`]: TLS for `https`, the bare socket for `http`.
#[derive(Debug)]
pub enum MaybeTls<T> {
    /// `http`: the socket itself.
    Plain(T),
    /// `https`: rustls over the socket (boxed: a TLS session is large).
    Tls(Box<tokio_rustls::client::TlsStream<T>>),
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for MaybeTls<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(io) => Pin::new(io).poll_read(cx, buf),
            MaybeTls::Tls(io) => Pin::new(&mut **io).poll_read(cx, buf),
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for MaybeTls<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(io) => Pin::new(io).poll_write(cx, buf),
            MaybeTls::Tls(io) => Pin::new(&mut **io).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            MaybeTls::Tls(io) => Pin::new(&mut **io).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTls::Plain(io) => io.is_write_vectored(),
            MaybeTls::Tls(io) => io.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(io) => Pin::new(io).poll_flush(cx),
            MaybeTls::Tls(io) => Pin::new(&mut **io).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(io) => Pin::new(io).poll_shutdown(cx),
            MaybeTls::Tls(io) => Pin::new(&mut **io).poll_shutdown(cx),
        }
    }
}

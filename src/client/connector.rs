use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::net::TcpStream;

use crate::{BoxError, SocketOptions};

/// The default connector: hyper-util's `HttpConnector` (DNS, every resolved address tried with
/// Happy Eyeballs (RFC 8305), a connect timeout per attempt, socket options through socket2)
/// with an overall timeout on top. It yields the bare [`TcpStream`].
///
/// It carries no TLS, so by default it refuses every URI whose scheme is not `http`, before
/// connecting: an `https` request fails with [`ErrorKind::HttpsWithoutTls`](super::ErrorKind::HttpsWithoutTls)
/// and no byte of it leaves the process. A TLS connector that wraps this one turns that off
/// with [`enforce_http(false)`](Self::enforce_http), as `TlsConnector::new` (feature
/// `rustls`) does.
///
/// Any `tower::Service<Uri>` whose response is a tokio `AsyncRead + AsyncWrite` (a TLS
/// connector, a Unix socket) can take its place; see [`Client::with_connector`](super::Client::with_connector).
#[derive(Debug, Clone)]
pub struct TcpConnector {
    inner: HttpConnector,
    overall_timeout: Option<Duration>,
    enforce_http: bool,
}

impl TcpConnector {
    /// A connector with these socket options and timeouts. `attempt_timeout` is shared out
    /// across the addresses a name resolves to (hyper-util's rule); `overall_timeout` bounds
    /// the whole connect, resolution included.
    pub fn new(
        options: SocketOptions,
        attempt_timeout: Option<Duration>,
        overall_timeout: Option<Duration>,
    ) -> Self {
        let mut inner = HttpConnector::new();
        options.configure_connector(&mut inner);
        inner.set_connect_timeout(attempt_timeout);
        // (The scheme is checked here, in `call`, so that the refusal has an error type of
        // its own; hyper-util's check would only say "invalid URL".)
        inner.enforce_http(false);
        TcpConnector {
            inner,
            overall_timeout,
            enforce_http: true,
        }
    }

    /// Whether a URI whose scheme is not `http` is refused before connecting. Default is
    /// `true`. Turn it off only in a connector that wraps this one and secures `https`
    /// itself: with it off, this connector opens a plain TCP connection for any scheme.
    pub fn enforce_http(mut self, enforce: bool) -> Self {
        self.enforce_http = enforce;
        self
    }
}

/// The refusal of a [`TcpConnector`] that enforces http (the client turns it into
/// [`ErrorKind::HttpsWithoutTls`](super::ErrorKind::HttpsWithoutTls)).
#[derive(Debug)]
pub(crate) struct NotHttp;

impl std::fmt::Display for NotHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the connector carries no TLS and refuses every scheme but http")
    }
}

impl std::error::Error for NotHttp {}

/// Whether `uri`'s scheme is `http` (any case).
fn is_http(uri: &Uri) -> bool {
    uri.scheme_str()
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("http"))
}

/// Whether `uri`'s scheme is `https` (any case).
pub(crate) fn is_https(uri: &Uri) -> bool {
    uri.scheme_str()
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https"))
}

impl tower_service::Service<Uri> for TcpConnector {
    type Response = TcpStream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<TcpStream, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower_service::Service::<Uri>::poll_ready(&mut self.inner, cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        if self.enforce_http && !is_http(&uri) {
            return Box::pin(std::future::ready(Err(BoxError::from(NotHttp))));
        }
        let connecting = tower_service::Service::<Uri>::call(&mut self.inner, uri);
        let overall = self.overall_timeout;
        Box::pin(async move {
            let connected = match overall {
                Some(limit) => tokio::time::timeout(limit, connecting)
                    .await
                    .map_err(|_| BoxError::from("connect timed out"))?,
                None => connecting.await,
            };
            Ok(connected?.into_inner())
        })
    }
}

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
/// Any `tower::Service<Uri>` whose response is a tokio `AsyncRead + AsyncWrite` (a TLS
/// connector, a Unix socket) can take its place; see [`Client::with_connector`](super::Client::with_connector).
#[derive(Debug, Clone)]
pub struct TcpConnector {
    inner: HttpConnector,
    overall_timeout: Option<Duration>,
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
        // TLS connectors wrap this one and pass https through.
        inner.enforce_http(false);
        TcpConnector {
            inner,
            overall_timeout,
        }
    }
}

impl tower_service::Service<Uri> for TcpConnector {
    type Response = TcpStream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<TcpStream, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower_service::Service::<Uri>::poll_ready(&mut self.inner, cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
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

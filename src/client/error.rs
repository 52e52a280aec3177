use std::fmt;

use crate::BoxError;

/// An error of the [`Client`](super::Client).
///
/// Its `Display` says what failed at this level only (with the host for a connect or TLS
/// failure); the cause is its [`source`](std::error::Error::source), so that error reporters
/// such as anyhow and eyre print each part once.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    source: Option<BoxError>,
    /// The host and port a connect or TLS failure was with.
    authority: Option<http::uri::Authority>,
}

/// What went wrong; see [`Error::kind`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The URI has no scheme or host, or a scheme other than http/https.
    InvalidUri,
    /// An `https` request through a connector without TLS ([`Client::new`](super::Client::new),
    /// or a [`TcpConnector`](super::TcpConnector) that enforces http): refused before
    /// connecting, so nothing of it was sent. Build with the feature `rustls` and use
    /// `TlsConnector`, or a TLS connector of your own.
    HttpsWithoutTls,
    /// Opening a connection failed (resolution, refusal, timeout).
    Connect,
    /// The TLS handshake failed (an untrusted or invalid certificate, a protocol error, its
    /// time limit); from `TlsConnector` (feature `rustls`).
    Tls,
    /// No connection became free within the pool's wait timeout.
    PoolTimeout,
    /// Reading the request body to make it replayable failed.
    RequestBody,
    /// The request failed on a connection (I/O or protocol error) before its response head.
    Request,
    /// Reading the response body failed (I/O error, malformed framing, or the connection
    /// closed before the body's end).
    ResponseBody,
    /// The request failed on a reused connection before any response byte arrived, and was
    /// not retried for the reason given (it might have been processed).
    StaleNotRetried(&'static str),
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, source: impl Into<BoxError>) -> Self {
        Error {
            kind,
            source: Some(source.into()),
            authority: None,
        }
    }

    pub(crate) fn kind_only(kind: ErrorKind) -> Self {
        Error {
            kind,
            source: None,
            authority: None,
        }
    }

    /// Names the host and port that a connect or TLS failure was with.
    pub(crate) fn with_authority(mut self, authority: Option<&http::uri::Authority>) -> Self {
        self.authority = authority.cloned();
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // (Its own part only: the cause is `source()`, which reporters print after it.)
        match (&self.kind, &self.authority) {
            (ErrorKind::InvalidUri, _) => f.write_str("invalid request uri"),
            (ErrorKind::HttpsWithoutTls, _) => f.write_str(
                "https refused before connecting: the connector has no TLS \
                 (build with the feature `rustls` and use `client::TlsConnector`)",
            ),
            (ErrorKind::Connect, Some(authority)) => write!(f, "connect to {authority} failed"),
            (ErrorKind::Connect, None) => f.write_str("connect failed"),
            (ErrorKind::Tls, Some(authority)) => {
                write!(f, "TLS handshake with {authority} failed")
            }
            (ErrorKind::Tls, None) => f.write_str("TLS handshake failed"),
            (ErrorKind::PoolTimeout, _) => f.write_str("timed out waiting for a pooled connection"),
            (ErrorKind::RequestBody, _) => f.write_str("reading the request body failed"),
            (ErrorKind::Request, _) => f.write_str("request failed"),
            (ErrorKind::ResponseBody, _) => f.write_str("reading the response body failed"),
            (ErrorKind::StaleNotRetried(why), _) => write!(
                f,
                "request failed on a reused connection before any response; not retried: {why}"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|s| &**s as &(dyn std::error::Error + 'static))
    }
}

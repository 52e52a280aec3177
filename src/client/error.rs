use std::fmt;

use crate::BoxError;

/// An error of the [`Client`](super::Client).
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    source: Option<BoxError>,
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
        }
    }

    pub(crate) fn kind_only(kind: ErrorKind) -> Self {
        Error { kind, source: None }
    }

    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ErrorKind::InvalidUri => f.write_str("invalid request uri")?,
            ErrorKind::HttpsWithoutTls => f.write_str(
                "https refused before connecting: the connector has no TLS \
                 (build with the feature `rustls` and use `client::TlsConnector`)",
            )?,
            ErrorKind::Connect => f.write_str("tcp connect failed")?,
            ErrorKind::PoolTimeout => f.write_str("timed out waiting for a pooled connection")?,
            ErrorKind::RequestBody => f.write_str("reading the request body failed")?,
            ErrorKind::Request => f.write_str("request failed")?,
            ErrorKind::ResponseBody => f.write_str("reading the response body failed")?,
            ErrorKind::StaleNotRetried(why) => write!(
                f,
                "request failed on a reused connection before any response; not retried: {why}"
            )?,
        }
        // The whole chain: hyper-util's connect error, say, hides its cause (a timeout, a
        // refusal) one level down.
        let mut next = self
            .source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static));
        while let Some(source) = next {
            write!(f, ": {source}")?;
            next = source.source();
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|s| &**s as &(dyn std::error::Error + 'static))
    }
}

//! The lease on a pooled connection for one request: it gives the connection back to the pool
//! (or closes it) the moment the response ends, with no task per connection.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use super::config::LastAllowedRequest;
use super::conn::{ClientConn, Wire};
use super::h1::after_response::AfterResponse;
use super::key::PoolKey;
use super::pool::{History, HostId, Pool, Reuse};
use super::stats::PoolCloseReason;
use crate::header::KeepAliveParams;

/// A connection taken from the pool for one request: gives it back (or closes it) when the
/// response ends; dropped before, it closes it as canceled.
pub(crate) struct Lease<T>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    pool: Pool<PoolKey, ClientConn<T>>,
    /// The host's place in the pool; `None` once the connection went back or was closed.
    host: Option<HostId>,
    history: Option<History<ClientConn<T>>>,
    margin: Option<Duration>,
    honour_server: bool,
    last_request: LastAllowedRequest,
}

impl<T> Lease<T>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    pub(crate) fn new(
        pool: Pool<PoolKey, ClientConn<T>>,
        host: HostId,
        history: History<ClientConn<T>>,
        margin: Option<Duration>,
        honour_server: bool,
        last_request: LastAllowedRequest,
    ) -> Self {
        Lease {
            pool,
            host: Some(host),
            history: Some(history),
            margin,
            honour_server,
            last_request,
        }
    }

    /// Closes the connection (the caller drops it) for `reason`, counted once.
    pub(crate) fn close(&mut self, reason: PoolCloseReason) {
        if let Some(history) = self.history.take() {
            tracing::debug!(reason = reason.name(), "closing client connection");
            self.pool.discard(history, reason);
        }
    }

    /// The response ended: the connection goes back to the pool, or is closed, as `after`
    /// says.
    pub(crate) fn give_back(&mut self, wire: Wire<T>, after: AfterResponse) {
        let keep_alive = match after {
            AfterResponse::Close(reason) => {
                if reason == PoolCloseReason::ServerClose {
                    self.learn_who_closes(&wire);
                }
                return self.close(reason);
            }
            AfterResponse::Reuse { keep_alive } => keep_alive,
        };
        // Bytes after the response's end: nobody asked for them (and they must never be
        // read as the next request's answer).
        if !wire.buffered().is_empty() {
            return self.close(PoolCloseReason::UnexpectedData);
        }
        let reuse = self.reuse_hint(keep_alive);
        if let (Some(host), Some(history)) = (self.host.take(), self.history.take()) {
            self.pool
                .put_back_at(host, ClientConn::Hot(wire), history, reuse);
        }
    }

    fn reuse_hint(&self, keep_alive: KeepAliveParams) -> Reuse {
        if !self.honour_server {
            return Reuse::default();
        }
        let idle_limit = keep_alive.timeout.map(|timeout| {
            let margin = self
                .margin
                .unwrap_or_else(|| (timeout / 4).min(Duration::from_secs(1)));
            timeout.saturating_sub(margin)
        });
        // `max=1`: the next request is the last the server allows.
        let uses_left = match keep_alive.max {
            Some(1) if self.close_instead_of_last_request() => Some(0),
            max => max,
        };
        Reuse {
            idle_limit,
            uses_left,
        }
    }

    /// Whether to close rather than send the last request the server allows.
    fn close_instead_of_last_request(&self) -> bool {
        match self.last_request {
            LastAllowedRequest::Send => false,
            LastAllowedRequest::CloseInstead => true,
            LastAllowedRequest::Learn => self.host.is_some_and(|host| self.pool.closes_first(host)),
        }
    }

    /// A `Connection: close` answer came: under [`LastAllowedRequest::Learn`], a host whose
    /// FIN is in already (it closes first, and keeps the TIME_WAIT) is remembered.
    fn learn_who_closes(&self, wire: &Wire<T>) {
        let Some(host) = self.host else { return };
        if self.last_request == LastAllowedRequest::Learn
            && super::last_request::server_closed_first(&wire.io)
        {
            let request = self
                .history
                .as_ref()
                .map_or(1, |h| h.uses().saturating_add(1));
            tracing::debug!(
                request,
                "the server closed first after its close answer: learned"
            );
            self.pool.learn_closes_first(host, request);
        }
    }
}

impl<T> Drop for Lease<T>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn drop(&mut self) {
        // Dropped before the response ended: the connection is in doubt.
        self.close(PoolCloseReason::Canceled);
    }
}

use std::future::{Future, IntoFuture};
use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use super::config::ServerConfig;
use super::conn::{spawn_connection, Cleartext, ConnContext, Handshake, HttpService, Stage};
use super::stats::{CloseReason, ServerStats};

/// Serves `service` on `listener` with the keep-alive policy of [`ServerConfig`]: the drop-in
/// replacement for `axum::serve(listener, app)`.
///
/// `service` is any cloneable tower service of `http::Request<hyper::body::Incoming>`, such as
/// an axum `Router` or `tower::service_fn(...)`. It is cloned per request.
///
/// ```no_run
/// use std::convert::Infallible;
/// use http::{Request, Response};
/// use hyper::body::Incoming;
///
/// # async fn run() -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// let service = tower::service_fn(|_req: Request<Incoming>| async {
///     Ok::<_, Infallible>(Response::new(String::from("hello, world!")))
/// });
/// keepalive::serve(listener, service)
///     .with_graceful_shutdown(async { let _ = tokio::signal::ctrl_c().await; })
///     .await
/// # }
/// ```
pub fn serve<S: HttpService>(listener: TcpListener, service: S) -> Serve<S> {
    Serve {
        listener,
        service,
        config: ServerConfig::default(),
        stats: ServerStats::default(),
        handshake: Cleartext,
    }
}

/// A server that is ready to run; `.await` it. Made by [`serve`].
#[derive(Debug)]
#[must_use = "a server does nothing until awaited"]
pub struct Serve<S, H = Cleartext> {
    listener: TcpListener,
    service: S,
    config: ServerConfig,
    stats: ServerStats,
    handshake: H,
}

impl<S> Serve<S> {
    /// Runs a handshake on each accepted connection before serving HTTP on it: TLS, with
    /// `tokio_rustls::TlsAcceptor` (feature `rustls`) or any [`Handshake`]. Socket options,
    /// the FIN watch, the client-first close and idle parking all keep working; a TLS
    /// `close_notify` from the client counts as its close.
    ///
    /// Default: none (plain HTTP).
    pub fn handshake<H: Handshake>(self, handshake: H) -> Serve<S, H> {
        Serve {
            listener: self.listener,
            service: self.service,
            config: self.config,
            stats: self.stats,
            handshake,
        }
    }
}

impl<S, H> Serve<S, H> {
    /// Replaces the configuration.
    ///
    /// Default is [`ServerConfig::default`].
    pub fn config(mut self, config: ServerConfig) -> Self {
        self.config = config;
        self
    }

    /// The server's live counters (keep a clone to read them while it runs).
    pub fn stats(&self) -> ServerStats {
        self.stats.clone()
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Runs until `signal` completes, then shuts down gracefully: stops accepting, answers
    /// requests in flight with `Connection: close`, gives idle connections
    /// [`drain_grace`](ServerConfig::drain_grace) for a request already on its way, waits up
    /// to [`shutdown_timeout`](ServerConfig::shutdown_timeout) and then closes the rest by
    /// force (counted as [`CloseReason::Forced`](super::CloseReason::Forced)).
    pub fn with_graceful_shutdown<F>(self, signal: F) -> WithGracefulShutdown<S, F, H>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        WithGracefulShutdown {
            serve: self,
            signal,
        }
    }
}

/// A server with a shutdown signal; `.await` it. Made by [`Serve::with_graceful_shutdown`].
#[derive(Debug)]
#[must_use = "a server does nothing until awaited"]
pub struct WithGracefulShutdown<S, F, H = Cleartext> {
    serve: Serve<S, H>,
    signal: F,
}

impl<S, F, H> WithGracefulShutdown<S, F, H> {
    /// The server's live counters.
    pub fn stats(&self) -> ServerStats {
        self.serve.stats()
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.serve.local_addr()
    }
}

impl<S, H> IntoFuture for Serve<S, H>
where
    S: HttpService,
    H: Handshake,
{
    type Output = io::Result<()>;
    type IntoFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(run(self, std::future::pending()))
    }
}

impl<S, F, H> IntoFuture for WithGracefulShutdown<S, F, H>
where
    S: HttpService,
    F: Future<Output = ()> + Send + 'static,
    H: Handshake,
{
    type Output = io::Result<()>;
    type IntoFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(run(self.serve, self.signal))
    }
}

async fn run<S, F, H>(serve: Serve<S, H>, signal: F) -> io::Result<()>
where
    S: HttpService,
    F: Future<Output = ()> + Send + 'static,
    H: Handshake,
{
    let Serve {
        listener,
        service,
        config,
        stats,
        handshake,
    } = serve;
    let shutdown_timeout = config.shutdown_timeout;
    let limit = config
        .max_connections
        .map(|n| Arc::new(Semaphore::new(n.max(1))));
    let ctx = Arc::new(ConnContext::new(config, stats.clone()));
    let (stage_tx, stage_rx) = watch::channel(Stage::Running);
    let mut signal = pin!(signal);
    let mut backoff = AcceptBackoff::default();

    loop {
        let permit = match &limit {
            Some(limit) => tokio::select! {
                permit = limit.clone().acquire_owned() => permit.ok(),
                () = &mut signal => break,
            },
            None => None,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    stats.accept_error();
                    if let Some(pause) = backoff.after_error(&error) {
                        tokio::select! {
                            () = tokio::time::sleep(pause) => {}
                            () = &mut signal => break,
                        }
                    }
                    continue;
                }
            },
            () = &mut signal => break,
        };
        backoff.reset();
        let service = service.clone();
        let ctx = ctx.clone();
        let stage = stage_rx.clone();
        spawn_connection(stream, peer, service, &handshake, ctx, stage, permit);
    }

    drop(listener);
    drop(stage_rx);
    let before = stats.snapshot();
    tracing::info!(
        active = before.active,
        "graceful shutdown: draining connections"
    );
    ctx.parking.set_stage(Stage::Draining);
    let _ = stage_tx.send(Stage::Draining);
    if tokio::time::timeout(shutdown_timeout, stage_tx.closed())
        .await
        .is_err()
    {
        ctx.parking.set_stage(Stage::Forcing);
        let _ = stage_tx.send(Stage::Forcing);
        stage_tx.closed().await;
    }
    let forced = stats.snapshot().closed(CloseReason::Forced) - before.closed(CloseReason::Forced);
    tracing::info!(forced, "graceful shutdown done");
    Ok(())
}

/// Back-off after accept errors. Errors of one connection (reset or aborted before accept)
/// are skipped at once; running out of descriptors or memory pauses accepting, growing from
/// 5 ms to 500 ms, so the server neither spins nor exits and resumes as soon as descriptors
/// free up.
#[derive(Debug, Default)]
struct AcceptBackoff {
    next: Option<Duration>,
}

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(5);
    const MAX: Duration = Duration::from_millis(500);

    fn after_error(&mut self, error: &io::Error) -> Option<Duration> {
        use io::ErrorKind::*;
        if matches!(
            error.kind(),
            ConnectionRefused | ConnectionAborted | ConnectionReset | Interrupted
        ) {
            return None;
        }
        let pause = self.next.unwrap_or(Self::FIRST);
        self.next = Some((pause * 2).min(Self::MAX));
        tracing::warn!(%error, ?pause, "accept failed; pausing");
        Some(pause)
    }

    fn reset(&mut self) {
        self.next = None;
    }
}

//! hyper's own services (`hyper::service::service_fn`) for [`serve`](super::serve), which runs
//! tower services.

use std::task::{Context, Poll};

/// A hyper [`Service`](hyper::service::Service) (what `hyper::service::service_fn` makes) as a
/// tower one, so that [`serve`](super::serve) runs it: hyper's services take `&self` and are
/// always ready. The reverse of hyper-util's `TowerToHyperService`.
///
/// ```no_run
/// use std::convert::Infallible;
/// use http::{Request, Response};
/// use hyper::body::Incoming;
/// use keepalive::server::HyperToTowerService;
///
/// # async fn run() -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// let service = hyper::service::service_fn(|_req: Request<Incoming>| async {
///     Ok::<_, Infallible>(Response::new(String::from("hello, world!")))
/// });
/// keepalive::serve(listener, HyperToTowerService::new(service)).await
/// # }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct HyperToTowerService<S> {
    inner: S,
}

impl<S> HyperToTowerService<S> {
    /// Wraps a hyper service.
    pub fn new(inner: S) -> Self {
        HyperToTowerService { inner }
    }

    /// The hyper service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, R> tower_service::Service<R> for HyperToTowerService<S>
where
    S: hyper::service::Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: R) -> Self::Future {
        self.inner.call(request)
    }
}

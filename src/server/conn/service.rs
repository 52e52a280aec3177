//! The user's service as the crate's serve takes it ([`HttpService`]), and the per-connection
//! service the serve hands to hyper: it calls the user's tower service, applies the keep-alive
//! policy with the connection's own budget, and tracks when the response body is done.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use tower::util::Oneshot;
use tower::ServiceExt;

use super::state::Shared;
use crate::server::connection_info::ConnectionInfo;
use crate::server::policy::{RequestFacts, ServedByKeepalive};
use crate::BoxError;

/// A tower service the crate's [`serve`](crate::server::serve) can run: any cloneable `Service` of
/// `http::Request<hyper::body::Incoming>` whose response body and errors can cross threads
/// (an axum `Router`, `tower::service_fn(...)`, a `ServiceBuilder` stack). Implemented for every
/// such service; it only names the bounds once.
///
/// [`serve`](crate::server::serve) states it, so a wrong argument is named where it is passed:
///
/// ```compile_fail,E0277
/// # async fn run(listener: tokio::net::TcpListener) {
/// #[derive(Clone)]
/// struct AppState;
/// let app: axum::Router<AppState> = axum::Router::new(); // no `.with_state(AppState)`
/// // error: `Router<AppState>` is not a service `keepalive::serve` can run
/// let _ = keepalive::serve(listener, app);
/// # }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a service `keepalive::serve` can run",
    label = "not a tower `Service<http::Request<hyper::body::Incoming>>`",
    note = "`serve` takes a cloneable tower service whose future is `Send + 'static` and whose response body is an `http_body::Body`",
    note = "a hyper service (`hyper::service::service_fn`) goes in `keepalive::server::HyperToTowerService::new(...)`",
    note = "an axum `Router<S>` with state needs `.with_state(state)` first; pass the `Router` itself, not `into_make_service()`"
)]
pub trait HttpService:
    tower_service::Service<
        Request<Incoming>,
        Response = Response<Self::ResBody>,
        Error: Into<BoxError>,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
    /// The response body.
    type ResBody: Body<Data: Send, Error: Into<BoxError>> + Send + 'static;
}

impl<S, B> HttpService for S
where
    S: tower_service::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type ResBody = B;
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct ConnService<S> {
    inner: S,
    shared: Arc<Shared>,
    // Built once per connection; a small `Copy` struct rather than an `Arc`: each request gets
    // a copy with its own number, and the one allocation per request is the extension map's
    // own box (an `Arc` would need that box too).
    info: ConnectionInfo,
}

// hyper's connection must be movable (`Unpin`) to be taken apart when it is parked or switched
// to upgrades; nothing here is ever pinned through a `ConnService`, so it is `Unpin` whatever
// the user's service is.
impl<S> Unpin for ConnService<S> {}

impl<S> ConnService<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>, info: ConnectionInfo) -> Self {
        ConnService {
            inner,
            shared,
            info,
        }
    }
}

impl<S, ReqBody, ResBody> hyper::service::Service<Request<ReqBody>> for ConnService<S>
where
    S: tower::Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ResBody: Body,
{
    type Response = Response<TrackedBody<ResBody>>;
    type Error = S::Error;
    type Future = ConnResponseFuture<Oneshot<S, Request<ReqBody>>>;

    fn call(&self, mut request: Request<ReqBody>) -> Self::Future {
        let facts = RequestFacts::of(&request);
        let (hold_for_upgrades, request_number) = self.shared.request_started(&facts);
        request.extensions_mut().insert(ServedByKeepalive);
        request.extensions_mut().insert(ConnectionInfo {
            request_number,
            ..self.info
        });
        ConnResponseFuture {
            inner: self.inner.clone().oneshot(request),
            shared: Some(self.shared.clone()),
            facts,
            hold_for_upgrades,
        }
    }
}

pin_project! {
    /// The response future of [`ConnService`].
    #[derive(Debug)]
    #[must_use = "futures do nothing unless polled"]
    pub(crate) struct ConnResponseFuture<F> {
        #[pin]
        inner: F,
        shared: Option<Arc<Shared>>,
        facts: RequestFacts,
        // The request may upgrade: its response waits until hyper's connection supports
        // upgrades (the driver switches it over as soon as hyper returns to it).
        hold_for_upgrades: bool,
    }
}

impl<F, ResBody, E> Future for ConnResponseFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    ResBody: Body,
{
    type Output = Result<Response<TrackedBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if *this.hold_for_upgrades {
            if let Some(shared) = this.shared.as_ref() {
                if !shared.upgrades_on() {
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
            }
            *this.hold_for_upgrades = false;
        }
        let result = ready!(this.inner.poll(cx));
        let Some(shared) = this.shared.take() else {
            // Polled after completion: a contract violation by the caller.
            panic!("ConnResponseFuture polled after completion");
        };
        match result {
            Ok(response) => {
                let (mut parts, body) = response.into_parts();
                let length_known = body.size_hint().exact().is_some();
                let verdict = shared.decide(
                    &shared.ctx.policy,
                    this.facts,
                    parts.status,
                    &parts.headers,
                    length_known,
                );
                verdict.apply(this.facts.version, &mut parts);
                let body = TrackedBody {
                    inner: body,
                    guard: ResponseGuard(shared),
                };
                Poll::Ready(Ok(Response::from_parts(parts, body)))
            }
            Err(error) => {
                shared.service_failed();
                Poll::Ready(Err(error))
            }
        }
    }
}

/// Tells the connection its response is done when dropped (hyper drops the body once it has
/// written it, or when the connection ends).
#[derive(Debug)]
struct ResponseGuard(Arc<Shared>);

impl Drop for ResponseGuard {
    fn drop(&mut self) {
        self.0.response_finished();
    }
}

pin_project! {
    /// A response body that tells its connection when it is done.
    #[derive(Debug)]
    pub struct TrackedBody<B> {
        #[pin]
        inner: B,
        guard: ResponseGuard,
    }
}

impl<B: Body> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::policy::{Budget, Policy, RequestFacts, Verdict};
use super::service::ServedByKeepalive;

/// A tower layer that applies the keep-alive header policy under any HTTP/1 server.
///
/// Under a foreign server (`axum::serve`, hyper-util) it can only do what one response can
/// tell: answer HTTP/1.0 `Connection: keep-alive` requests in kind, and advertise
/// `Keep-Alive: timeout=` from the idle timeout you give it, which should be the one your
/// server really enforces (for hyper, its `header_read_timeout`). Per-connection limits
/// (`max=`, max requests, max age), the idle timeout itself, the FIN watch and the
/// client-first close need the crate's [`serve`](crate::serve); under it the layer steps aside
/// and the serve applies the full policy. See the crate docs for the table.
///
/// HTTP/2 requests and protocol upgrades pass through untouched.
///
/// ```
/// use keepalive::KeepAliveLayer;
/// use std::time::Duration;
/// use tower::ServiceBuilder;
///
/// let layer = KeepAliveLayer::new().idle_timeout(Duration::from_secs(30));
/// let service = ServiceBuilder::new()
///     .layer(layer)
///     .service_fn(|_req: http::Request<String>| async {
///         Ok::<_, std::convert::Infallible>(http::Response::new(String::from("hi")))
///     });
/// # let _ = service;
/// ```
#[derive(Debug, Clone, Copy)]
pub struct KeepAliveLayer {
    policy: Policy,
}

impl Default for KeepAliveLayer {
    fn default() -> Self {
        KeepAliveLayer {
            policy: Policy {
                idle_timeout: Duration::from_secs(30),
                advertise: true,
            },
        }
    }
}

impl KeepAliveLayer {
    /// A layer with the defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// The idle timeout to advertise as `Keep-Alive: timeout=`.
    ///
    /// Default is 30 s, hyper's default `header_read_timeout`, which is what ends an idle
    /// keep-alive connection under a plain hyper or axum server.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.policy.idle_timeout = timeout;
        self
    }

    /// Whether to send `Keep-Alive:` at all.
    ///
    /// Default is on.
    pub fn advertise_keep_alive(mut self, on: bool) -> Self {
        self.policy.advertise = on;
        self
    }
}

impl<S> Layer<S> for KeepAliveLayer {
    type Service = KeepAlive<S>;

    fn layer(&self, inner: S) -> Self::Service {
        KeepAlive {
            inner,
            policy: self.policy,
        }
    }
}

/// The service made by [`KeepAliveLayer`].
#[derive(Debug, Clone)]
pub struct KeepAlive<S> {
    inner: S,
    policy: Policy,
}

impl<S> KeepAlive<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for KeepAlive<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let facts = if request.extensions().get::<ServedByKeepalive>().is_some() {
            None
        } else {
            Some(RequestFacts::of(&request))
        };
        ResponseFuture {
            inner: self.inner.call(request),
            facts,
            policy: self.policy,
        }
    }
}

pin_project! {
    /// The response future of [`KeepAlive`].
    #[derive(Debug)]
    #[must_use = "futures do nothing unless polled"]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        facts: Option<RequestFacts>,
        policy: Policy,
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    ResBody: Body,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.inner.poll(cx))?;
        let Some(facts) = this.facts.take() else {
            return Poll::Ready(Ok(response));
        };
        let (mut head, body) = response.into_parts();
        let length_known = body.size_hint().exact().is_some();
        let budget = Budget {
            requests_left: None,
            age_left: None,
            draining: false,
        };
        let verdict: Verdict =
            this.policy
                .decide(&facts, head.status, &head.headers, length_known, budget);
        verdict.apply(facts.version, &mut head);
        Poll::Ready(Ok(Response::from_parts(head, body)))
    }
}

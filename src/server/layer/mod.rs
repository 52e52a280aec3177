use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::policy::{Budget, Policy, RequestFacts, ServedByKeepalive, Verdict};

/// A tower layer that applies the keep-alive header policy under any HTTP/1 server.
///
/// Under a foreign server (`axum::serve`, hyper-util) it can only do what one response can
/// tell: answer HTTP/1.0 `Connection: keep-alive` requests in kind, say `Connection: close`
/// (and no `Keep-Alive`) when the request or the service asks for the close, and advertise
/// `Keep-Alive: timeout=` only when you tell it the idle timeout your server really enforces
/// ([`idle_timeout`](Self::idle_timeout)). Per-connection limits (`max=`, max requests, max
/// age), the idle timeout itself, the FIN watch and the client-first close need the crate's
/// [`serve`](crate::serve); under it the layer steps aside and the serve applies the full
/// policy. See the crate docs for the table.
///
/// # What a foreign server enforces
///
/// As of axum 0.8.9, hyper 1.12 and hyper-util 0.1.21: `axum::serve` runs hyper-util's auto
/// builder without a timer, so it closes no idle connection at all, and by default the layer
/// advertises no timeout. hyper's HTTP/1 `header_read_timeout` (30 s by default) takes effect
/// only with a timer (`Builder::timer(TokioTimer::new())`); it then also ends idle keep-alive
/// connections (it starts after each response), so that is the value to give the layer.
///
/// During a foreign server's graceful shutdown, hyper itself adds `Connection: close` to the
/// responses it writes after the shutdown began, after the layer has run: with a timeout set,
/// such a response carries both headers (clients obey the close). With none set (the default)
/// it carries `Connection: close` alone.
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
                idle_timeout: None,
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

    /// The idle timeout to advertise as `Keep-Alive: timeout=` (whole seconds; under a second
    /// is not advertised). Give the one the server you run really enforces (see
    /// [What a foreign server enforces](Self#what-a-foreign-server-enforces)): a client that
    /// trusts a longer one reuses connections the server has closed.
    ///
    /// Default is none: no `timeout=` is advertised (`axum::serve` 0.8.9 enforces none).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.policy.idle_timeout = Some(timeout);
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

//! [`KeepAlive`], the service [`KeepAliveLayer`](super::KeepAliveLayer) makes: it notes the
//! request's facts on the way in (unless the crate's serve runs the connection) and hands the
//! response to [`ResponseFuture`].

use std::task::{Context, Poll};

use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use super::future::ResponseFuture;
use crate::server::policy::{Policy, RequestFacts, ServedByKeepalive};

/// The service made by [`KeepAliveLayer`](super::KeepAliveLayer).
#[derive(Debug, Clone)]
pub struct KeepAlive<S> {
    pub(super) inner: S,
    pub(super) policy: Policy,
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

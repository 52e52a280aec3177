//! The response future of [`KeepAlive`](super::KeepAlive): applies the keep-alive policy to
//! the response's headers.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::Response;
use http_body::Body;
use pin_project_lite::pin_project;

use crate::server::policy::{Budget, Policy, RequestFacts, Verdict};

pin_project! {
    /// The response future of [`KeepAlive`](super::KeepAlive).
    #[derive(Debug)]
    #[must_use = "futures do nothing unless polled"]
    pub struct ResponseFuture<F> {
        #[pin]
        pub(super) inner: F,
        pub(super) facts: Option<RequestFacts>,
        pub(super) policy: Policy,
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

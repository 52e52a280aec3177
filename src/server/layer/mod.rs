//! [`KeepAliveLayer`], as tower lays a middleware out: the layer here, the service it makes in
//! `service`, the service's response future in `future`.

mod future;
mod service;

pub use future::ResponseFuture;
pub use service::KeepAlive;

use std::time::Duration;

use tower_layer::Layer;

use super::policy::Policy;

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

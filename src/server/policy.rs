//! The keep-alive decision for one response: keep the connection (and what to advertise) or
//! close it (and why). Pure functions of the request, the response and the connection's
//! budget, shared by [`KeepAliveLayer`](super::KeepAliveLayer) and the crate's serve.

use std::time::Duration;

use http::header::{HeaderMap, HeaderValue, CONNECTION};
use http::{Method, Request, StatusCode, Version};

use super::stats::CloseReason;
use crate::header::{connection_has, persists, KeepAliveParams, KEEP_ALIVE};

/// Marks requests whose connection is run by the crate's serve, so a [`KeepAliveLayer`]
/// further in leaves the headers to the serve.
///
/// [`KeepAliveLayer`]: super::KeepAliveLayer
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServedByKeepalive;

/// What matters about a request for the keep-alive decision.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestFacts {
    pub(crate) version: Version,
    /// `Connection: close`, or HTTP/1.0 without `Connection: keep-alive`.
    pub(crate) wants_close: bool,
    pub(crate) is_connect: bool,
    pub(crate) is_head: bool,
    /// The request asks for a protocol upgrade (an `Upgrade` header, or CONNECT).
    pub(crate) may_upgrade: bool,
    /// The body's `Content-Length`, when that is how it is framed.
    pub(crate) content_length: Option<u64>,
    /// The body is framed by `Transfer-Encoding`.
    pub(crate) chunked: bool,
    /// Both `Content-Length` and `Transfer-Encoding`: hyper serves the request but will not
    /// reuse the connection (RFC 9112 section 6.3), so its response says close. (hyper drops
    /// the `Content-Length` from the parsed headers; the serve finds it in the raw head.)
    pub(crate) ambiguous_framing: bool,
}

impl RequestFacts {
    pub(crate) fn of<B>(request: &Request<B>) -> Self {
        let version = request.version();
        let headers = request.headers();
        let chunked = headers.contains_key(http::header::TRANSFER_ENCODING);
        let wants_close = match version {
            Version::HTTP_10 | Version::HTTP_11 => {
                let keep_alive =
                    version == Version::HTTP_10 && connection_has(headers, "keep-alive");
                persists(version, connection_has(headers, "close"), keep_alive) == Some(false)
            }
            _ => false,
        };
        RequestFacts {
            version,
            wants_close,
            is_connect: request.method() == Method::CONNECT,
            is_head: request.method() == Method::HEAD,
            may_upgrade: request.method() == Method::CONNECT
                || headers.contains_key(http::header::UPGRADE),
            content_length: if chunked {
                None
            } else {
                headers
                    .get(http::header::CONTENT_LENGTH)
                    .and_then(|v| crate::header::parse_decimal(v.as_bytes().trim_ascii()))
            },
            chunked,
            ambiguous_framing: chunked && headers.contains_key(http::header::CONTENT_LENGTH),
        }
    }

    fn is_http1(&self) -> bool {
        self.version == Version::HTTP_10 || self.version == Version::HTTP_11
    }
}

/// What is left of a connection's allowance after this response.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    /// Requests still accepted after this one (`None`: not tracked, as under a foreign server).
    pub(crate) requests_left: Option<u32>,
    /// Time left before the connection's maximum age (`None`: not tracked).
    pub(crate) age_left: Option<Duration>,
    pub(crate) draining: bool,
}

/// The outcome for one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Not ours to touch: HTTP/2, or a protocol upgrade (101, a successful CONNECT).
    PassThrough { upgrade: bool },
    /// Keep the connection; advertise these parameters.
    KeepAlive(KeepAliveParams),
    /// Close after this response. `until_close`: the body has no length, so the close
    /// itself ends it (HTTP/1.0) and the server must close at once.
    Close {
        reason: CloseReason,
        until_close: bool,
    },
}

/// The configuration the decision needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    /// The idle timeout known to be enforced (`None`: none known, none advertised).
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) advertise: bool,
}

const ONE_SECOND: Duration = Duration::from_secs(1);

impl Policy {
    pub(crate) fn decide(
        &self,
        facts: &RequestFacts,
        status: StatusCode,
        response_headers: &HeaderMap,
        body_length_known: bool,
        budget: Budget,
    ) -> Verdict {
        if !facts.is_http1() {
            return Verdict::PassThrough { upgrade: false };
        }
        if status == StatusCode::SWITCHING_PROTOCOLS || (facts.is_connect && status.is_success()) {
            return Verdict::PassThrough { upgrade: true };
        }
        let has_body = !(facts.is_head
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED);
        let until_close = facts.version == Version::HTTP_10 && has_body && !body_length_known;
        let close = |reason| Verdict::Close {
            reason,
            until_close,
        };
        if facts.ambiguous_framing {
            return close(CloseReason::NotReusable);
        }
        if facts.wants_close {
            return close(CloseReason::ClientClose);
        }
        if connection_has(response_headers, "close") {
            return close(CloseReason::ServiceClose);
        }
        if budget.draining {
            return close(CloseReason::Drain);
        }
        if budget.requests_left == Some(0) {
            return close(CloseReason::MaxRequests);
        }
        let mut timeout = self.idle_timeout;
        if let Some(age_left) = budget.age_left {
            if age_left < ONE_SECOND {
                return close(CloseReason::MaxAge);
            }
            timeout = timeout.map(|t| t.min(age_left));
        }
        if until_close {
            return close(CloseReason::BodyUntilClose);
        }
        if !self.advertise {
            return Verdict::KeepAlive(KeepAliveParams::default());
        }
        Verdict::KeepAlive(KeepAliveParams {
            // Never advertise `timeout=0`: clients read it as "do not reuse".
            timeout: timeout
                .filter(|&t| t >= ONE_SECOND)
                .map(|t| Duration::from_secs(t.as_secs())),
            max: budget.requests_left,
        })
    }
}

impl Verdict {
    /// Writes the verdict into the head of the response to a request of `version`.
    ///
    /// A close to an HTTP/1.0 request also marks the response HTTP/1.0 (hyper sends it as
    /// such anyway): hyper adds `Connection: keep-alive` to an HTTP/1.1 response to an
    /// HTTP/1.0 keep-alive request unless the response already says keep-alive, so it would
    /// send `close` and `keep-alive` together and keep the connection.
    pub(crate) fn apply(&self, version: Version, head: &mut http::response::Parts) {
        let headers = &mut head.headers;
        match self {
            Verdict::PassThrough { .. } => {}
            Verdict::KeepAlive(params) => {
                if version == Version::HTTP_10 {
                    headers.insert(CONNECTION, HeaderValue::from_static("keep-alive"));
                }
                if let Some(value) = params.to_header_value() {
                    headers.insert(KEEP_ALIVE, value);
                }
            }
            Verdict::Close { .. } => {
                headers.remove(KEEP_ALIVE);
                headers.insert(CONNECTION, HeaderValue::from_static("close"));
                if version == Version::HTTP_10 {
                    head.version = Version::HTTP_10;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(version: Version, connection: Option<&str>) -> RequestFacts {
        let mut builder = Request::builder().version(version);
        if let Some(c) = connection {
            builder = builder.header(CONNECTION, c);
        }
        RequestFacts::of(&builder.body(()).unwrap())
    }

    const POLICY: Policy = Policy {
        idle_timeout: Some(Duration::from_secs(60)),
        advertise: true,
    };

    fn budget(left: u32, age: u64) -> Budget {
        Budget {
            requests_left: Some(left),
            age_left: Some(Duration::from_millis(age)),
            draining: false,
        }
    }

    fn decide(f: RequestFacts, b: Budget) -> Verdict {
        POLICY.decide(&f, StatusCode::OK, &HeaderMap::new(), true, b)
    }

    #[test]
    fn advertises_min_of_idle_and_age_and_requests_left() {
        let v = decide(facts(Version::HTTP_11, None), budget(2, 10_500));
        assert_eq!(
            v,
            Verdict::KeepAlive(KeepAliveParams {
                timeout: Some(Duration::from_secs(10)),
                max: Some(2)
            })
        );
        let v = decide(facts(Version::HTTP_11, None), budget(2, 3_600_000));
        assert!(matches!(v, Verdict::KeepAlive(p) if p.timeout == Some(Duration::from_secs(60))));
    }

    #[test]
    fn closes_at_the_limits() {
        let close = |reason| Verdict::Close {
            reason,
            until_close: false,
        };
        assert_eq!(
            decide(facts(Version::HTTP_11, None), budget(0, 9_000)),
            close(CloseReason::MaxRequests)
        );
        assert_eq!(
            decide(facts(Version::HTTP_11, None), budget(5, 999)),
            close(CloseReason::MaxAge)
        );
        assert_eq!(
            decide(facts(Version::HTTP_11, Some("close")), budget(5, 9_000)),
            close(CloseReason::ClientClose)
        );
        assert_eq!(
            decide(facts(Version::HTTP_10, None), budget(5, 9_000)),
            close(CloseReason::ClientClose)
        );
        let mut b = budget(5, 9_000);
        b.draining = true;
        assert_eq!(
            decide(facts(Version::HTTP_11, None), b),
            close(CloseReason::Drain)
        );
    }

    #[test]
    fn http10_keep_alive_needs_a_length() {
        let f = facts(Version::HTTP_10, Some("Keep-Alive"));
        assert!(matches!(decide(f, budget(5, 9_000)), Verdict::KeepAlive(_)));
        let v = POLICY.decide(
            &f,
            StatusCode::OK,
            &HeaderMap::new(),
            false,
            budget(5, 9_000),
        );
        assert_eq!(
            v,
            Verdict::Close {
                reason: CloseReason::BodyUntilClose,
                until_close: true
            }
        );
        let (mut head, ()) = http::Response::new(()).into_parts();
        Verdict::KeepAlive(KeepAliveParams {
            timeout: Some(Duration::from_secs(5)),
            max: Some(1),
        })
        .apply(Version::HTTP_10, &mut head);
        assert_eq!(head.headers[CONNECTION], "keep-alive");
        assert_eq!(head.headers[KEEP_ALIVE], "timeout=5, max=1");
        Verdict::Close {
            reason: CloseReason::MaxRequests,
            until_close: false,
        }
        .apply(Version::HTTP_10, &mut head);
        assert_eq!(head.headers[CONNECTION], "close");
        assert!(!head.headers.contains_key(KEEP_ALIVE));
        assert_eq!(
            head.version,
            Version::HTTP_10,
            "so hyper adds no keep-alive"
        );
    }

    #[test]
    fn leaves_upgrades_and_http2_alone() {
        let f = facts(Version::HTTP_11, Some("upgrade"));
        let v = POLICY.decide(
            &f,
            StatusCode::SWITCHING_PROTOCOLS,
            &HeaderMap::new(),
            true,
            budget(0, 0),
        );
        assert_eq!(v, Verdict::PassThrough { upgrade: true });
        let v = decide(facts(Version::HTTP_2, None), budget(0, 0));
        assert_eq!(v, Verdict::PassThrough { upgrade: false });
    }

    #[test]
    fn sub_second_idle_timeout_is_not_advertised_as_zero() {
        let policy = Policy {
            idle_timeout: Some(Duration::from_millis(300)),
            advertise: true,
        };
        let v = policy.decide(
            &facts(Version::HTTP_11, None),
            StatusCode::OK,
            &HeaderMap::new(),
            true,
            budget(3, 9_000),
        );
        assert_eq!(
            v,
            Verdict::KeepAlive(KeepAliveParams {
                timeout: None,
                max: Some(3)
            })
        );
    }
}

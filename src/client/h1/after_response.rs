//! Whether a connection may be reused after a response, decided from the response head.

use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, Version};

use super::wire::RespFraming;
use crate::client::stats::PoolCloseReason;
use crate::header::{KeepAliveParams, KEEP_ALIVE};

/// Whether and how the connection may be reused, decided from the response head.
#[derive(Debug, Clone, Copy)]
pub(crate) enum AfterResponse {
    Reuse { keep_alive: KeepAliveParams },
    Close(PoolCloseReason),
}

impl AfterResponse {
    /// From the response head and how its body is framed.
    pub(crate) fn decide(
        request_asked_close: bool,
        version: Version,
        status: http::StatusCode,
        headers: &HeaderMap,
        framing: RespFraming,
    ) -> Self {
        if request_asked_close {
            return AfterResponse::Close(PoolCloseReason::ClientClose);
        }
        if status == http::StatusCode::SWITCHING_PROTOCOLS {
            return AfterResponse::Close(PoolCloseReason::ServerClose);
        }
        // One pass over the response's header names for everything below (a lookup per
        // header name hashed it each time); the values of the few names that matter are
        // looked up then (most responses have none of them but Content-Length).
        let (mut transfer_encoding, mut content_length) = (false, false);
        let (mut close, mut keep_alive_token) = (false, false);
        let mut keep_alive = KeepAliveParams::default();
        for name in headers.keys() {
            if name == CONTENT_LENGTH {
                content_length = true;
            } else if name == TRANSFER_ENCODING {
                transfer_encoding = true;
            } else if name == CONNECTION {
                for value in headers.get_all(CONNECTION) {
                    for token in crate::header::list_items(value.as_bytes()) {
                        close |= token.eq_ignore_ascii_case(b"close");
                        keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
                    }
                }
            } else if name == KEEP_ALIVE {
                for value in headers.get_all(KEEP_ALIVE) {
                    keep_alive.merge(KeepAliveParams::parse(value.as_bytes()));
                }
            }
        }
        // RFC 9112 6.3: both framings at once may be a response-splitting attempt and "ought
        // to be handled as an error"; it is read as chunked, the connection is not reused.
        // RFC 9112 6.1: Transfer-Encoding in an HTTP/1.0 message is faulty framing; the
        // connection is closed after it (a bodiless response to HEAD, or a 204 or 304, is still
        // returned).
        if transfer_encoding && (content_length || version == Version::HTTP_10) {
            return AfterResponse::Close(PoolCloseReason::Error);
        }
        let close = !crate::header::persists(version, close, keep_alive_token).unwrap_or(false);
        // A body delimited by the close can never be followed by another response, whatever
        // `Connection: keep-alive` says.
        if close || framing == RespFraming::Close {
            return AfterResponse::Close(PoolCloseReason::ServerClose);
        }
        AfterResponse::Reuse { keep_alive }
    }
}

#[cfg(test)]
mod tests {
    use super::super::wire::{parse_response_head, Parsed};
    use super::*;

    fn decide(head: bool, version: &str, status: u16, headers: &[(&str, &str)]) -> AfterResponse {
        let mut text = format!("HTTP/{version} {status} X\r\n");
        for (name, value) in headers {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        text.push_str("\r\n");
        let Ok(Some(Parsed::Head(parsed))) = parse_response_head(text.as_bytes(), head) else {
            panic!("{text}");
        };
        AfterResponse::decide(
            false,
            parsed.parts.version,
            parsed.parts.status,
            &parsed.parts.headers,
            parsed.framing,
        )
    }

    fn reused(after: AfterResponse) -> bool {
        matches!(after, AfterResponse::Reuse { .. })
    }

    #[test]
    fn a_body_delimited_by_the_close_is_never_reused() {
        assert!(!reused(decide(false, "1.1", 200, &[])));
        assert!(!reused(decide(
            false,
            "1.0",
            200,
            &[("connection", "keep-alive")]
        )));
        assert!(reused(decide(
            false,
            "1.0",
            200,
            &[("connection", "keep-alive"), ("content-length", "0")]
        )));
        assert!(!reused(decide(
            false,
            "1.1",
            200,
            &[("transfer-encoding", "gzip")]
        )));
        assert!(!reused(decide(
            false,
            "1.1",
            200,
            &[("transfer-encoding", "chunked, gzip")]
        )));
        assert!(reused(decide(
            false,
            "1.1",
            200,
            &[("content-length", "2")]
        )));
        assert!(reused(decide(
            false,
            "1.1",
            200,
            &[("transfer-encoding", "gzip, chunked")]
        )));
        assert!(reused(decide(
            false,
            "1.1",
            200,
            &[
                ("transfer-encoding", "gzip"),
                ("transfer-encoding", "Chunked")
            ]
        )));
        // No body, whatever the headers say.
        assert!(reused(decide(true, "1.1", 200, &[])));
        assert!(reused(decide(false, "1.1", 204, &[])));
        assert!(reused(decide(false, "1.1", 304, &[])));
        assert!(!reused(decide(
            false,
            "1.1",
            200,
            &[("connection", "close"), ("content-length", "2")]
        )));
    }

    #[test]
    fn both_framings_at_once_are_not_reused() {
        let after = decide(
            false,
            "1.1",
            200,
            &[("content-length", "3"), ("transfer-encoding", "chunked")],
        );
        assert!(matches!(
            after,
            AfterResponse::Close(PoolCloseReason::Error)
        ));
    }
}

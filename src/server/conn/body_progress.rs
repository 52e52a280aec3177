//! Whether a request body is still arriving, so that a body that stops arriving can be timed.
//!
//! hyper has no timeout for request bodies, and from the socket a client that stopped sending
//! its body looks like a client waiting for a slow handler. The difference is whether the body
//! is complete, so the connection counts the bytes it hands to hyper: while a request head
//! arrives it looks for the head's end (the first empty line), and when the request starts its
//! `Content-Length` says where the body ends. From then until the body has arrived, every byte
//! received counts as progress, and silence longer than the idle timeout closes the connection
//! ([`CloseReason::BodyTimeout`](crate::server::CloseReason::BodyTimeout)).
//!
//! It fails open: chunked bodies, and requests whose head was not seen from its first byte (one
//! pipelined behind another), are not timed. Once the response starts, the body no longer is.

use tokio::time::Instant;

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct BodyProgress {
    /// Bytes handed to hyper so far.
    delivered: u64,
    scan: Scan,
    /// Where the current request's body ends, while it may still be arriving.
    body_end: Option<u64>,
    last_progress: Option<Instant>,
    /// How much of `content-length:` the current head line has matched (`NO_MATCH`: none).
    line_match: u8,
    /// The head in view had a `Content-Length` line (hyper drops it from the parsed headers
    /// when `Transfer-Encoding` is there too).
    saw_content_length: bool,
    /// Where the running request ends (its head, then its `Content-Length` body), when its head
    /// was seen from its first byte and its body is not chunked.
    request_end: Option<u64>,
}

const CONTENT_LENGTH: &[u8] = b"content-length:";
const NO_MATCH: u8 = u8::MAX;

#[derive(Debug, Default, Clone, Copy)]
enum Scan {
    /// Not looking: no head is arriving, or it did not start in view.
    #[default]
    Off,
    /// Looking for the end of a head; the last bytes seen, newest lowest.
    Looking(u32),
    /// The head ends at this offset.
    Found(u64),
}

impl BodyProgress {
    /// `bytes` were handed to hyper; `new_head` when they are the first of a request head.
    pub(crate) fn delivered(&mut self, bytes: &[u8], new_head: bool) {
        if new_head {
            self.scan = Scan::Looking(0);
            self.line_match = NO_MATCH;
            self.saw_content_length = false;
        }
        if let Scan::Looking(window) = self.scan {
            self.scan = self.scan_head(bytes, window);
        }
        self.delivered += bytes.len() as u64;
        if self.body_end.is_some() && !bytes.is_empty() {
            self.last_progress = Some(Instant::now());
        }
    }

    /// Looks for the head's end (the first empty line: "\n\n" or "\n\r\n", whatever
    /// precedes it) and for a `Content-Length` line. Runs on every request head, so only
    /// newlines and the first bytes of each line get any work.
    fn scan_head(&mut self, bytes: &[u8], window: u32) -> Scan {
        // The byte `back` places before `bytes[i]`, from the previous reads when needed.
        let before = |i: usize, back: usize| -> u8 {
            if i >= back {
                bytes[i - back]
            } else {
                (window >> (8 * (back - i - 1))) as u8
            }
        };
        for (i, &byte) in bytes.iter().enumerate() {
            if byte == b'\n' {
                if before(i, 1) == b'\n' || (before(i, 1) == b'\r' && before(i, 2) == b'\n') {
                    return Scan::Found(self.delivered + i as u64 + 1);
                }
                self.line_match = 0;
            } else if usize::from(self.line_match) < CONTENT_LENGTH.len() {
                self.match_header_name(byte);
            }
        }
        let mut window = window;
        for &byte in bytes.iter().rev().take(3).rev() {
            window = (window << 8) | u32::from(byte);
        }
        Scan::Looking(window)
    }

    /// Follows `content-length:` at the start of a head line, case-insensitively (`byte` is not
    /// a newline).
    fn match_header_name(&mut self, byte: u8) {
        if let Some(&expected) = CONTENT_LENGTH.get(usize::from(self.line_match)) {
            if byte.to_ascii_lowercase() == expected {
                self.line_match += 1;
                if usize::from(self.line_match) == CONTENT_LENGTH.len() {
                    self.saw_content_length = true;
                }
            } else {
                self.line_match = NO_MATCH;
            }
        }
    }

    /// Whether the head just started had a `Content-Length` line (taken at the request's start).
    pub(crate) fn saw_content_length(&self) -> bool {
        self.saw_content_length
    }

    /// Bytes were read ahead from the socket while the body may be arriving.
    pub(crate) fn progressed(&mut self) {
        if self.body_end.is_some() {
            self.last_progress = Some(Instant::now());
        }
    }

    /// hyper parsed a request head and calls the service; `chunked`: its body is framed by
    /// `Transfer-Encoding`.
    pub(crate) fn request_started(&mut self, content_length: Option<u64>, chunked: bool) {
        if !matches!(self.scan, Scan::Found(_)) {
            // The head was not seen from its start: nothing known of its lines either.
            self.saw_content_length = false;
        }
        let scan = std::mem::take(&mut self.scan);
        self.request_end = match scan {
            Scan::Found(head_end) if !chunked => Some(head_end + content_length.unwrap_or(0)),
            _ => None,
        };
        self.body_end = match (scan, content_length) {
            (Scan::Found(head_end), Some(length)) if length > 0 => Some(head_end + length),
            _ => None,
        };
        self.last_progress = self.body_end.map(|_| Instant::now());
    }

    /// The response started: the body is no longer timed.
    pub(crate) fn response_started(&mut self) {
        self.body_end = None;
        self.last_progress = None;
    }

    /// Whether the client sent bytes after the running request (the start of another one):
    /// `buffered` bytes have been read from the socket and not yet handed to hyper. `None`
    /// when the request's end is not known (a chunked body, a head not seen from its start).
    pub(crate) fn followed(&self, buffered: usize) -> Option<bool> {
        let end = self.request_end?;
        Some(self.delivered + buffered as u64 > end)
    }

    /// When the body times out, if it is still arriving: `buffered` bytes have been read from
    /// the socket and not yet handed to hyper.
    pub(crate) fn deadline(
        &self,
        buffered: usize,
        timeout: std::time::Duration,
    ) -> Option<Instant> {
        let end = self.body_end?;
        if self.delivered + buffered as u64 >= end {
            return None;
        }
        Some(self.last_progress? + timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const T: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn a_content_length_body_is_timed_until_it_has_arrived() {
        let mut body = BodyProgress::default();
        body.delivered(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123", true);
        body.request_started(Some(10), false);
        assert!(body.deadline(0, T).is_some(), "6 bytes missing");
        assert!(body.deadline(6, T).is_none(), "the rest is read ahead");
        body.delivered(b"456789", false);
        assert!(body.deadline(0, T).is_none(), "complete");
    }

    #[tokio::test]
    async fn head_end_split_across_reads_and_bare_newlines_are_found() {
        let mut body = BodyProgress::default();
        body.delivered(b"POST / HTTP/1.1\r\nContent-Length: 3\r", true);
        body.delivered(b"\n\r", false);
        body.delivered(b"\nab", false);
        body.request_started(Some(3), false);
        assert!(body.deadline(0, T).is_some());
        body.delivered(b"c", false);
        assert!(body.deadline(0, T).is_none());

        let mut bare = BodyProgress::default();
        bare.delivered(b"POST / HTTP/1.1\nContent-Length: 2\n\nxy", true);
        bare.request_started(Some(2), false);
        assert!(bare.deadline(0, T).is_none(), "complete with bare newlines");
    }

    #[tokio::test]
    async fn fails_open_without_a_length_or_a_head_in_view() {
        let mut chunked = BodyProgress::default();
        chunked.delivered(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n",
            true,
        );
        chunked.request_started(None, true);
        assert!(chunked.deadline(0, T).is_none());

        let mut pipelined = BodyProgress::default();
        pipelined.delivered(b"POST / HTTP/1.1\r\nContent-Length: 9\r\n\r\n", false);
        pipelined.request_started(Some(9), false);
        assert!(
            pipelined.deadline(0, T).is_none(),
            "head not seen from its start"
        );
    }

    #[tokio::test]
    async fn a_content_length_line_is_noticed_in_any_case() {
        let mut body = BodyProgress::default();
        body.delivered(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConTent-LENGTH: 4\r\n\r\n",
            true,
        );
        body.request_started(None, true);
        assert!(body.saw_content_length());
        let mut plain = BodyProgress::default();
        plain.delivered(b"POST / HTTP/1.1\r\nX-Content-Length: 4\r\n\r\n", true);
        plain.request_started(None, false);
        assert!(!plain.saw_content_length(), "only at a line's start");
    }

    #[tokio::test]
    async fn knows_whether_bytes_follow_the_running_request() {
        let mut body = BodyProgress::default();
        body.delivered(b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n", true);
        body.request_started(None, false);
        assert_eq!(body.followed(0), Some(true), "a second request behind it");

        let mut alone = BodyProgress::default();
        alone.delivered(b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\nab", true);
        alone.request_started(Some(4), false);
        assert_eq!(alone.followed(2), Some(false), "its own body only");
        assert_eq!(alone.followed(3), Some(true));

        let mut chunked = BodyProgress::default();
        chunked.delivered(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            true,
        );
        chunked.request_started(None, true);
        assert_eq!(chunked.followed(9), None);
    }

    #[tokio::test]
    async fn the_response_ends_the_timing() {
        let mut body = BodyProgress::default();
        body.delivered(b"PUT / HTTP/1.1\r\nContent-Length: 100\r\n\r\n", true);
        body.request_started(Some(100), false);
        assert!(body.deadline(0, T).is_some());
        body.response_started();
        assert!(body.deadline(0, T).is_none());
    }
}

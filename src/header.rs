//! The `Connection` and `Keep-Alive` headers: the one place that knows their grammar.
//!
//! The server formats `Keep-Alive: timeout=T, max=M`; the client parses it. Parsing is
//! defensive: garbage, negative or absurd values and repeated parameters never panic and never
//! yield a value the peer did not clearly send (the first well-formed occurrence wins, values
//! that do not fit are dropped).
//!
//! ```
//! use http::HeaderMap;
//! use keepalive::header::KeepAliveParams;
//! use std::time::Duration;
//!
//! let mut headers = HeaderMap::new();
//! headers.insert("keep-alive", "timeout=5, max=100".parse().unwrap());
//! let params = KeepAliveParams::from_headers(&headers);
//! assert_eq!(params.timeout, Some(Duration::from_secs(5)));
//! assert_eq!(params.max, Some(100));
//! ```

use std::time::Duration;

use http::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION};

/// The `Keep-Alive` header's name.
pub const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");

/// The largest `timeout=` accepted, in seconds (a day); larger values are ignored as garbage.
const MAX_TIMEOUT_SECS: u64 = 24 * 60 * 60;

/// What a `Keep-Alive` header says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeepAliveParams {
    /// `timeout=N`: the sender keeps an idle connection open for about N seconds.
    pub timeout: Option<Duration>,
    /// `max=M`: the sender accepts at most M more requests on this connection.
    pub max: Option<u32>,
}

impl KeepAliveParams {
    /// Parses every `Keep-Alive` header in `headers`. The first well-formed value of each
    /// parameter wins; malformed ones are skipped.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let mut params = KeepAliveParams::default();
        for value in headers.get_all(KEEP_ALIVE) {
            params.merge(Self::parse(value.as_bytes()));
        }
        params
    }

    /// Parses one header value such as `timeout=5, max=1000`.
    pub fn parse(value: &[u8]) -> Self {
        let mut params = KeepAliveParams::default();
        for item in list_items(value) {
            let Some((name, val)) = split_param(item) else {
                continue;
            };
            if name.eq_ignore_ascii_case(b"timeout") && params.timeout.is_none() {
                params.timeout = parse_decimal(val)
                    .filter(|&secs| secs <= MAX_TIMEOUT_SECS)
                    .map(Duration::from_secs);
            } else if name.eq_ignore_ascii_case(b"max") && params.max.is_none() {
                params.max = parse_decimal(val).and_then(|m| u32::try_from(m).ok());
            }
        }
        params
    }

    /// Adds what `other` has and `self` has not (the first value wins).
    pub(crate) fn merge(&mut self, other: Self) {
        self.timeout = self.timeout.or(other.timeout);
        self.max = self.max.or(other.max);
    }

    /// Formats `timeout=T, max=M` (either part left out when `None`).
    pub fn to_header_value(&self) -> Option<HeaderValue> {
        // On every keep-alive response: formatted on the stack, one allocation (the value's).
        let mut text = [0u8; 48];
        let mut len = 0;
        let mut push = |bytes: &[u8]| {
            text[len..len + bytes.len()].copy_from_slice(bytes);
            len += bytes.len();
            len
        };
        let mut written = 0;
        if let Some(timeout) = self.timeout {
            push(b"timeout=");
            written = push(decimal(timeout.as_secs(), &mut [0u8; 20]));
        }
        if let Some(max) = self.max {
            if written > 0 {
                push(b", ");
            }
            push(b"max=");
            written = push(decimal(u64::from(max), &mut [0u8; 20]));
        }
        if written == 0 {
            return None;
        }
        HeaderValue::from_bytes(&text[..written]).ok()
    }
}

/// `n` in decimal, written at the end of `buf`.
pub(crate) fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[start..];
        }
    }
}

/// Splits `name=value` (optional whitespace, optional quotes around the value).
fn split_param(item: &[u8]) -> Option<(&[u8], &[u8])> {
    let eq = item.iter().position(|&b| b == b'=')?;
    let name = item[..eq].trim_ascii();
    let mut value = item[eq + 1..].trim_ascii();
    if value.len() >= 2 && value[0] == b'"' && value[value.len() - 1] == b'"' {
        value = &value[1..value.len() - 1];
    }
    Some((name, value))
}

/// Digits only (no sign, no spaces inside; leading zeros are digits like any other), `None`
/// past `u64::MAX`: the one decimal grammar of HTTP/1 (RFC 9110 `1*DIGIT`), for
/// `Content-Length`, chunk-free decimals, `Keep-Alive`'s parameters and ports alike.
pub(crate) fn parse_decimal(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, &d| {
        if !d.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// The items of a comma-separated header value (`Connection`, `Transfer-Encoding`, ...),
/// trimmed, the empty ones left out (RFC 9110 5.6.1).
pub(crate) fn list_items(value: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|item| !item.is_empty())
}

/// Whether an HTTP/1 message leaves its connection open, from its version and the `close` and
/// `keep-alive` tokens of its `Connection` header (RFC 9112 9.3): HTTP/1.1 persists unless it
/// says `close`, HTTP/1.0 only when it says `keep-alive` (and not `close`). `None` for other
/// versions. The one decision the server's policy (for requests) and the client (for
/// responses) both make.
pub(crate) fn persists(version: http::Version, close: bool, keep_alive: bool) -> Option<bool> {
    match version {
        http::Version::HTTP_11 => Some(!close),
        http::Version::HTTP_10 => Some(keep_alive && !close),
        _ => None,
    }
}

/// Whether any `Connection` header lists `token` (case-insensitive), e.g. `close` or
/// `keep-alive`.
pub fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    // (No hashing of the name for a map with nothing in it: most requests a client sends.)
    !headers.is_empty()
        && headers.get_all(CONNECTION).iter().any(|value| {
            list_items(value.as_bytes()).any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> KeepAliveParams {
        KeepAliveParams::parse(s.as_bytes())
    }

    #[test]
    fn parses_the_usual_forms() {
        assert_eq!(
            parse("timeout=5, max=1000").timeout,
            Some(Duration::from_secs(5))
        );
        assert_eq!(parse("timeout=5, max=1000").max, Some(1000));
        assert_eq!(parse("max=3").timeout, None);
        assert_eq!(
            parse(" Timeout = \"7\" ").timeout,
            Some(Duration::from_secs(7))
        );
        assert_eq!(parse("timeout=0").timeout, Some(Duration::ZERO));
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "timeout=-1",
            "timeout=abc",
            "timeout=1e3",
            "timeout=99999999999999999999999",
            "timeout=86401",
            "timeout",
            "=5",
            "timeout=",
            "timeout=+5",
            "timeout=5 5",
            "\u{0}\u{1}",
        ] {
            assert_eq!(parse(bad).timeout, None, "{bad:?}");
        }
        assert_eq!(parse("max=4294967296").max, None);
        assert_eq!(parse("max=-3").max, None);
    }

    #[test]
    fn first_well_formed_value_wins() {
        assert_eq!(
            parse("timeout=x, timeout=4, timeout=9").timeout,
            Some(Duration::from_secs(4))
        );
        let mut headers = HeaderMap::new();
        headers.append(KEEP_ALIVE, HeaderValue::from_static("max=2"));
        headers.append(KEEP_ALIVE, HeaderValue::from_static("timeout=3, max=9"));
        let params = KeepAliveParams::from_headers(&headers);
        assert_eq!(params.max, Some(2));
        assert_eq!(params.timeout, Some(Duration::from_secs(3)));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A small deterministic generator (xorshift) over bytes that matter to the grammar.
        let alphabet = b"timeoutmax=, \"0123456789-+\t\xff\x00;";
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            let mut bytes = Vec::new();
            let len = (state % 40) as usize;
            for _ in 0..len {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                bytes.push(alphabet[(state % alphabet.len() as u64) as usize]);
            }
            let params = KeepAliveParams::parse(&bytes);
            if let Some(t) = params.timeout {
                assert!(t.as_secs() <= MAX_TIMEOUT_SECS);
            }
        }
    }

    #[test]
    fn formats_and_round_trips() {
        let params = KeepAliveParams {
            timeout: Some(Duration::from_secs(60)),
            max: Some(999),
        };
        let value = params.to_header_value().unwrap();
        assert_eq!(value, "timeout=60, max=999");
        assert_eq!(KeepAliveParams::parse(value.as_bytes()), params);
        assert_eq!(KeepAliveParams::default().to_header_value(), None);
    }

    #[test]
    fn connection_tokens() {
        let mut headers = HeaderMap::new();
        headers.append(CONNECTION, HeaderValue::from_static("Upgrade, Keep-Alive"));
        assert!(connection_has(&headers, "keep-alive"));
        assert!(connection_has(&headers, "upgrade"));
        assert!(!connection_has(&headers, "close"));
        headers.append(CONNECTION, HeaderValue::from_static("close"));
        assert!(connection_has(&headers, "close"));
    }
}

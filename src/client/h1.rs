//! The HTTP/1 wire format of the client (RFC 9112), without I/O: a request head written into a
//! buffer, a response head parsed from one (with `httparse`), the framing of both bodies, and a
//! decoder of chunked response bodies.
//!
//! The client speaks HTTP/1 itself rather than through hyper's client connection: a pooled
//! connection then needs no codec state between requests (its socket and two buffers), a
//! request needs no channel to a dispatcher, and a small response is read whole with its head.

use std::mem::MaybeUninit;
use std::ops::Range;

use http::header::{HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{HeaderMap, Method, StatusCode, Uri, Version};
use hyper::body::Bytes;

/// Header lines in a response head (or a chunked body's trailers) at most.
pub(crate) const MAX_HEADERS: usize = 100;

/// Bytes in a response head (or a chunked body's trailers) at most.
pub(crate) const MAX_HEAD: usize = 256 * 1024;

/// Bytes in a chunk-size line (size, extensions) at most.
const MAX_CHUNK_LINE: usize = 4096;

/// A response the client cannot read: what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProtocolError(pub(crate) &'static str);

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for ProtocolError {}

/// How the request body goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReqFraming {
    /// Exactly this many bytes (`Content-Length`, or none for a bodiless request).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// What the client knows of a request body's length before sending it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyLength {
    /// No body at all.
    Empty,
    /// Exactly this many bytes.
    Exact(u64),
    /// Not known: streamed.
    Unknown,
}

/// Methods whose request without a body gets no `Content-Length: 0`.
fn bodiless_by_default(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET
            | Method::HEAD
            | Method::DELETE
            | Method::OPTIONS
            | Method::TRACE
            | Method::CONNECT
    )
}

/// Appends `value` in decimal.
fn push_decimal(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Appends a chunk-size line: `len` in hexadecimal, CR LF.
pub(crate) fn push_chunk_size(out: &mut Vec<u8>, mut len: usize) {
    let mut digits = [0u8; 16];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b"0123456789abcdef"[len & 0xf];
        len >>= 4;
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
    out.extend_from_slice(b"\r\n");
}

/// Whether the last coding of a `Transfer-Encoding` value is `chunked`.
fn last_coding_is_chunked(value: &[u8]) -> bool {
    value
        .rsplit(|&b| b == b',')
        .next()
        .is_some_and(|coding| coding.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

/// Parses a `Content-Length` value: a decimal, or a list of equal decimals.
fn parse_content_length(value: &[u8]) -> Option<u64> {
    let mut length = None;
    for item in value.split(|&b| b == b',') {
        let item = item.trim_ascii();
        if item.is_empty() || item.len() > 19 || !item.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = item
            .iter()
            .fold(0u64, |n, &digit| n * 10 + u64::from(digit - b'0'));
        match length {
            Some(previous) if previous != n => return None,
            _ => length = Some(n),
        }
    }
    length
}

/// Writes a request head into `out`: the request line (origin form; authority form for
/// CONNECT), `Host` from the URI when the headers have none (host and port, never the
/// userinfo), the caller's headers, the body's framing when the caller gave none, and on
/// HTTP/1.0 `Connection: keep-alive` unless the caller asked otherwise. Says how the body must
/// be framed.
pub(crate) fn encode_request_head(
    out: &mut Vec<u8>,
    method: &Method,
    uri: &Uri,
    version: Version,
    headers: &HeaderMap,
    body: BodyLength,
) -> Result<ReqFraming, ProtocolError> {
    let version_bytes: &[u8] = match version {
        Version::HTTP_11 => b" HTTP/1.1\r\n",
        Version::HTTP_10 => b" HTTP/1.0\r\n",
        _ => {
            return Err(ProtocolError(
                "only HTTP/1.0 and HTTP/1.1 requests can be sent",
            ))
        }
    };
    // What the caller's headers say (one pass; none for the usual empty map).
    let (mut has_host, mut has_connection) = (false, false);
    let mut content_length: Option<Option<u64>> = None;
    let mut transfer_encoding: Option<bool> = None;
    if !headers.is_empty() {
        for (name, value) in headers {
            if name == HOST {
                has_host = true;
            } else if name == CONTENT_LENGTH {
                let parsed = parse_content_length(value.as_bytes());
                content_length = Some(match content_length {
                    None => parsed,
                    Some(previous) if previous == parsed => parsed,
                    Some(_) => None,
                });
            } else if name == TRANSFER_ENCODING {
                transfer_encoding = Some(last_coding_is_chunked(value.as_bytes()));
            } else if name == CONNECTION {
                has_connection = true;
            }
        }
    }
    let framing = match (transfer_encoding, content_length) {
        (Some(_), _) if version != Version::HTTP_11 => {
            return Err(ProtocolError(
                "Transfer-Encoding cannot be sent on an HTTP/1.0 request",
            ))
        }
        (Some(_), _) => ReqFraming::Chunked,
        (None, Some(Some(n))) => {
            if let BodyLength::Exact(exact) = body {
                if exact != n {
                    return Err(ProtocolError(
                        "the request's Content-Length differs from its body's length",
                    ));
                }
            }
            ReqFraming::Length(n)
        }
        (None, Some(None)) => return Err(ProtocolError("the request's Content-Length is invalid")),
        (None, None) => {
            match body {
                BodyLength::Empty => ReqFraming::Length(0),
                BodyLength::Exact(n) => ReqFraming::Length(n),
                BodyLength::Unknown if version == Version::HTTP_11 => ReqFraming::Chunked,
                BodyLength::Unknown => return Err(ProtocolError(
                    "an HTTP/1.0 request body needs a known length (a size hint or Content-Length)",
                )),
            }
        }
    };

    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    if *method == Method::CONNECT {
        out.extend_from_slice(uri.authority().map_or("", |a| a.as_str()).as_bytes());
    } else {
        out.extend_from_slice(uri.path_and_query().map_or("/", |p| p.as_str()).as_bytes());
    }
    out.extend_from_slice(version_bytes);
    if !has_host {
        if let Some(authority) = uri.authority() {
            let host = authority
                .as_str()
                .rsplit_once('@')
                .map_or(authority.as_str(), |(_, host)| host);
            out.extend_from_slice(b"host: ");
            out.extend_from_slice(host.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    if !headers.is_empty() {
        for (name, value) in headers {
            // A chunked body's length is its chunks': a Content-Length beside it is dropped
            // (RFC 9112 6.2: a sender must not send both).
            if transfer_encoding.is_some() && name == CONTENT_LENGTH {
                continue;
            }
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    match (framing, transfer_encoding, content_length) {
        // The caller's Transfer-Encoding ends with another coding: chunked goes last.
        (ReqFraming::Chunked, Some(false), _) => {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n")
        }
        (ReqFraming::Chunked, None, _) => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        (ReqFraming::Length(0), None, None) if bodiless_by_default(method) => {}
        (ReqFraming::Length(n), None, None) => {
            out.extend_from_slice(b"content-length: ");
            push_decimal(out, n);
            out.extend_from_slice(b"\r\n");
        }
        _ => {}
    }
    if version == Version::HTTP_10 && !has_connection {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(framing)
}

/// How a response body is delimited (RFC 9112 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RespFraming {
    /// Exactly this many bytes (0 for a response that has no body).
    Length(u64),
    /// Chunked.
    Chunked,
    /// Until the server closes the connection.
    Close,
}

/// A parsed response head.
#[derive(Debug)]
pub(crate) struct ResponseHead {
    pub(crate) parts: http::response::Parts,
    pub(crate) framing: RespFraming,
    /// The bytes of the head in the buffer.
    pub(crate) len: usize,
}

/// What the start of a buffer holds.
#[derive(Debug)]
pub(crate) enum Parsed {
    /// An interim (1xx) response of this many bytes, to skip: the final one follows.
    Interim(usize),
    /// A final response head.
    Head(ResponseHead),
}

/// Parses the response head at the start of `buf`: `Ok(None)` while it is incomplete.
/// `head_request`: the request was `HEAD` (its response has no body, whatever it says).
pub(crate) fn parse_response_head(
    buf: &[u8],
    head_request: bool,
) -> Result<Option<Parsed>, ProtocolError> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buf,
        &mut slots,
    ) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            return Err(ProtocolError("the response head is too large"))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(ProtocolError("the response head has too many header lines"))
        }
        Err(httparse::Error::Version) => {
            return Err(ProtocolError("the response is not HTTP/1.0 or HTTP/1.1"))
        }
        Err(httparse::Error::Status) => {
            return Err(ProtocolError("the response's status line is invalid"))
        }
        Err(_) => return Err(ProtocolError("the response head is malformed")),
    };
    let version = match response.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let status = response
        .code
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or(ProtocolError("the response's status code is invalid"))?;
    if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
        return Ok(Some(Parsed::Interim(len)));
    }

    let mut headers = HeaderMap::with_capacity(response.headers.len());
    // The values share one copy of the head.
    let shared = Bytes::copy_from_slice(&buf[..len]);
    let base = buf.as_ptr() as usize;
    let mut content_length: Option<Option<u64>> = None;
    let mut chunked: Option<bool> = None;
    for header in response.headers.iter() {
        let name = HeaderName::from_bytes(header.name.as_bytes())
            .map_err(|_| ProtocolError("a response header name is invalid"))?;
        let start = header.value.as_ptr() as usize - base;
        let value = HeaderValue::from_maybe_shared(shared.slice(start..start + header.value.len()))
            .map_err(|_| ProtocolError("a response header value is invalid"))?;
        if name == CONTENT_LENGTH {
            let parsed = parse_content_length(header.value);
            content_length = Some(match content_length {
                None => parsed,
                Some(previous) if previous == parsed => parsed,
                Some(_) => None,
            });
        } else if name == TRANSFER_ENCODING {
            chunked = Some(last_coding_is_chunked(header.value));
        }
        headers.append(name, value);
    }

    let bodiless = head_request
        || status == StatusCode::SWITCHING_PROTOCOLS
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let framing = match (chunked, content_length) {
        (Some(_), _) if version == Version::HTTP_10 => {
            return Err(ProtocolError(
                "an HTTP/1.0 response with Transfer-Encoding cannot be framed",
            ))
        }
        _ if bodiless => RespFraming::Length(0),
        // (With a Content-Length beside it too: the connection is not reused then.)
        (Some(true), _) => RespFraming::Chunked,
        (Some(false), _) => RespFraming::Close,
        (None, Some(Some(n))) => RespFraming::Length(n),
        (None, Some(None)) => {
            return Err(ProtocolError("the response's Content-Length is invalid"))
        }
        (None, None) => RespFraming::Close,
    };

    let mut parts = http::Response::new(()).into_parts().0;
    parts.status = status;
    parts.version = version;
    parts.headers = headers;
    Ok(Some(Parsed::Head(ResponseHead {
        parts,
        framing,
        len,
    })))
}

/// What [`ChunkedDecoder::decode`] found.
#[derive(Debug, PartialEq)]
pub(crate) enum Chunk {
    /// Body bytes at this range of the input.
    Data(Range<usize>),
    /// The body ended with these trailers.
    Trailers(HeaderMap),
    /// The body ended (no trailers).
    End,
    /// More input is needed (or, when asked to stop there, a chunk's data begins).
    More,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// In the hex digits of a chunk size.
    Size,
    /// After the size, up to the line's end (whitespace, extensions).
    Extension,
    /// A CR was met on the size line: LF must follow.
    SizeLf,
    /// In a chunk's data.
    Data,
    /// After a chunk's data: CR LF must follow.
    DataCr,
    DataLf,
    /// After the last chunk: the trailer section.
    Trailers,
    Done,
}

/// Decodes a chunked body (RFC 9112 7.1) from the bytes it is given, in any pieces.
#[derive(Debug, Clone)]
pub(crate) struct ChunkedDecoder {
    state: ChunkState,
    /// The chunk size being read, then what is left of the chunk's data.
    size: u64,
    digits: u8,
    line: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder {
            state: ChunkState::Size,
            size: 0,
            digits: 0,
            line: 0,
        }
    }
}

impl ChunkedDecoder {
    /// Whether the next input byte is chunk data.
    pub(crate) fn in_data(&self) -> bool {
        self.state == ChunkState::Data
    }

    /// Reads what `input` holds up to the next piece of data, the body's end, or the input's
    /// end; returns the input bytes consumed and what was found. With `stop_at_data`, the
    /// start of a chunk's data is [`Chunk::More`] (nothing of it consumed).
    pub(crate) fn decode(
        &mut self,
        input: &[u8],
        stop_at_data: bool,
    ) -> Result<(usize, Chunk), ProtocolError> {
        let mut at = 0;
        loop {
            match self.state {
                ChunkState::Done => return Ok((at, Chunk::End)),
                ChunkState::Data => {
                    if stop_at_data || at == input.len() {
                        return Ok((at, Chunk::More));
                    }
                    let available = (input.len() - at) as u64;
                    let n = available.min(self.size) as usize;
                    self.size -= n as u64;
                    if self.size == 0 {
                        self.state = ChunkState::DataCr;
                    }
                    return Ok((at + n, Chunk::Data(at..at + n)));
                }
                ChunkState::Trailers => {
                    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
                    return match httparse::parse_headers(&input[at..], &mut slots) {
                        Ok(httparse::Status::Complete((len, fields))) => {
                            self.state = ChunkState::Done;
                            if fields.is_empty() {
                                return Ok((at + len, Chunk::End));
                            }
                            let mut trailers = HeaderMap::with_capacity(fields.len());
                            for field in fields.iter() {
                                let name = HeaderName::from_bytes(field.name.as_bytes())
                                    .map_err(|_| ProtocolError("a trailer name is invalid"))?;
                                let value = HeaderValue::from_bytes(field.value)
                                    .map_err(|_| ProtocolError("a trailer value is invalid"))?;
                                trailers.append(name, value);
                            }
                            Ok((at + len, Chunk::Trailers(trailers)))
                        }
                        Ok(httparse::Status::Partial) if input.len() - at >= MAX_HEAD => {
                            Err(ProtocolError("the chunked body's trailers are too large"))
                        }
                        Ok(httparse::Status::Partial) => Ok((at, Chunk::More)),
                        Err(_) => Err(ProtocolError("the chunked body's trailers are malformed")),
                    };
                }
                _ => {}
            }
            let Some(&byte) = input.get(at) else {
                return Ok((at, Chunk::More));
            };
            at += 1;
            match self.state {
                ChunkState::Size => {
                    self.line += 1;
                    match (byte as char).to_digit(16) {
                        Some(digit) => {
                            if self.digits == 16 {
                                return Err(ProtocolError("a chunk size overflows"));
                            }
                            self.digits += 1;
                            self.size = self.size << 4 | u64::from(digit);
                        }
                        None if self.digits == 0 => {
                            return Err(ProtocolError("a chunk size is not hexadecimal"))
                        }
                        None => match byte {
                            b'\r' => self.state = ChunkState::SizeLf,
                            b';' | b' ' | b'\t' => self.state = ChunkState::Extension,
                            _ => return Err(ProtocolError("a chunk size is not hexadecimal")),
                        },
                    }
                }
                ChunkState::Extension => {
                    self.line += 1;
                    if self.line > MAX_CHUNK_LINE {
                        return Err(ProtocolError("a chunk's extensions are too long"));
                    }
                    match byte {
                        b'\r' => self.state = ChunkState::SizeLf,
                        b'\n' => return Err(ProtocolError("a chunk size line ends without CR")),
                        _ => {}
                    }
                }
                ChunkState::SizeLf => {
                    if byte != b'\n' {
                        return Err(ProtocolError("a chunk size line ends without LF"));
                    }
                    self.line = 0;
                    self.digits = 0;
                    self.state = if self.size == 0 {
                        ChunkState::Trailers
                    } else {
                        ChunkState::Data
                    };
                }
                ChunkState::DataCr => {
                    if byte != b'\r' {
                        return Err(ProtocolError("a chunk is longer than its size"));
                    }
                    self.state = ChunkState::DataLf;
                }
                ChunkState::DataLf => {
                    if byte != b'\n' {
                        return Err(ProtocolError("a chunk is longer than its size"));
                    }
                    self.state = ChunkState::Size;
                }
                ChunkState::Data | ChunkState::Trailers | ChunkState::Done => {
                    unreachable!("handled above")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(
        method: Method,
        uri: &str,
        version: Version,
        headers: &[(&str, &str)],
        body: BodyLength,
    ) -> Result<(String, ReqFraming), ProtocolError> {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        let mut out = Vec::new();
        let framing = encode_request_head(
            &mut out,
            &method,
            &uri.parse().unwrap(),
            version,
            &map,
            body,
        )?;
        Ok((String::from_utf8(out).unwrap(), framing))
    }

    #[test]
    fn request_heads() {
        let (text, framing) = head(
            Method::GET,
            "http://u:p@example.com:8080/a?b=c",
            Version::HTTP_11,
            &[],
            BodyLength::Empty,
        )
        .unwrap();
        assert_eq!(
            text,
            "GET /a?b=c HTTP/1.1\r\nhost: example.com:8080\r\n\r\n"
        );
        assert_eq!(framing, ReqFraming::Length(0));

        let (text, _) = head(
            Method::POST,
            "http://h/",
            Version::HTTP_11,
            &[("x-a", "1")],
            BodyLength::Empty,
        )
        .unwrap();
        assert_eq!(
            text,
            "POST / HTTP/1.1\r\nhost: h\r\nx-a: 1\r\ncontent-length: 0\r\n\r\n"
        );

        let (text, framing) = head(
            Method::PUT,
            "http://h",
            Version::HTTP_11,
            &[("host", "other")],
            BodyLength::Unknown,
        )
        .unwrap();
        assert_eq!(
            text,
            "PUT / HTTP/1.1\r\nhost: other\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        assert_eq!(framing, ReqFraming::Chunked);

        let (text, framing) = head(
            Method::GET,
            "http://h/",
            Version::HTTP_10,
            &[],
            BodyLength::Exact(12345),
        )
        .unwrap();
        assert_eq!(
            text,
            "GET / HTTP/1.0\r\nhost: h\r\ncontent-length: 12345\r\nconnection: keep-alive\r\n\r\n"
        );
        assert_eq!(framing, ReqFraming::Length(12345));

        // The caller's framing is kept; a Content-Length beside chunked is dropped.
        let (text, framing) = head(
            Method::POST,
            "http://h/",
            Version::HTTP_11,
            &[("transfer-encoding", "gzip"), ("content-length", "3")],
            BodyLength::Exact(3),
        )
        .unwrap();
        assert_eq!(
            text,
            "POST / HTTP/1.1\r\nhost: h\r\ntransfer-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        assert_eq!(framing, ReqFraming::Chunked);
        let (_, framing) = head(
            Method::POST,
            "http://h/",
            Version::HTTP_11,
            &[("content-length", "7")],
            BodyLength::Unknown,
        )
        .unwrap();
        assert_eq!(framing, ReqFraming::Length(7));
    }

    #[test]
    fn bad_requests_are_refused_before_anything_is_sent() {
        for (version, headers, body) in [
            (Version::HTTP_10, vec![], BodyLength::Unknown),
            (
                Version::HTTP_10,
                vec![("transfer-encoding", "chunked")],
                BodyLength::Unknown,
            ),
            (Version::HTTP_2, vec![], BodyLength::Empty),
            (
                Version::HTTP_11,
                vec![("content-length", "x")],
                BodyLength::Unknown,
            ),
            (
                Version::HTTP_11,
                vec![("content-length", "3")],
                BodyLength::Exact(4),
            ),
            (
                Version::HTTP_11,
                vec![("content-length", "3"), ("content-length", "4")],
                BodyLength::Unknown,
            ),
        ] {
            assert!(
                head(Method::POST, "http://h/", version, &headers, body).is_err(),
                "{version:?} {headers:?} {body:?}"
            );
        }
    }

    fn parse(bytes: &[u8], head_request: bool) -> Result<Option<Parsed>, ProtocolError> {
        parse_response_head(bytes, head_request)
    }

    fn framing(bytes: &[u8]) -> RespFraming {
        match parse(bytes, false) {
            Ok(Some(Parsed::Head(head))) => head.framing,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn response_heads_and_their_framing() {
        let bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello";
        let Ok(Some(Parsed::Head(head))) = parse(bytes, false) else {
            panic!()
        };
        assert_eq!(head.len, bytes.len() - 5);
        assert_eq!(head.parts.status, StatusCode::OK);
        assert_eq!(head.parts.headers["x-a"], "b");
        assert_eq!(head.framing, RespFraming::Length(5));
        assert_eq!(
            framing(b"HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\n\r\n"),
            RespFraming::Length(5)
        );
        assert_eq!(
            framing(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            RespFraming::Chunked
        );
        assert_eq!(
            framing(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
            RespFraming::Close
        );
        assert_eq!(framing(b"HTTP/1.1 200 OK\r\n\r\n"), RespFraming::Close);
        assert_eq!(
            framing(b"HTTP/1.1 204 No Content\r\n\r\n"),
            RespFraming::Length(0)
        );
        assert_eq!(
            framing(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n"),
            RespFraming::Length(0)
        );
        let Ok(Some(Parsed::Head(head))) =
            parse(b"HTTP/1.0 200 OK\r\nContent-Length: 9\r\n\r\n", true)
        else {
            panic!()
        };
        assert_eq!(
            (head.framing, head.parts.version),
            (RespFraming::Length(0), Version::HTTP_10)
        );
        assert!(matches!(
            parse(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200", false),
            Ok(Some(Parsed::Interim(25)))
        ));
        assert!(matches!(
            parse(b"HTTP/1.1 200 OK\r\nContent-Le", false),
            Ok(None)
        ));
        for bad in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
            b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/2.0 200 OK\r\n\r\n",
            b"HTTP/1.1 20 OK\r\n\r\n",
            b"garbage\r\n\r\n",
        ] {
            assert!(
                parse(bad, false).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    /// Decodes `input` fed in pieces of `step` bytes; the body and trailers.
    fn decode_all(
        input: &[u8],
        step: usize,
    ) -> Result<(Vec<u8>, Option<HeaderMap>), ProtocolError> {
        let mut decoder = ChunkedDecoder::default();
        let mut buffered = Vec::new();
        let mut body = Vec::new();
        let mut fed = 0;
        loop {
            let (used, found) = decoder.decode(&buffered, false)?;
            let data = match &found {
                Chunk::Data(range) => Some(buffered[range.clone()].to_vec()),
                _ => None,
            };
            buffered.drain(..used);
            match found {
                Chunk::Data(_) => body.extend(data.unwrap()),
                Chunk::Trailers(trailers) => return Ok((body, Some(trailers))),
                Chunk::End => return Ok((body, None)),
                Chunk::More => {
                    if fed == input.len() {
                        return Err(ProtocolError("cut"));
                    }
                    let next = (fed + step).min(input.len());
                    buffered.extend_from_slice(&input[fed..next]);
                    fed = next;
                }
            }
        }
    }

    #[test]
    fn chunked_bodies_in_any_pieces() {
        let input = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nx-t: 1\r\n\r\n";
        for step in [1, 2, 3, 7, 100] {
            let (body, trailers) = decode_all(input, step).unwrap();
            assert_eq!(body, b"hello, world");
            assert_eq!(trailers.unwrap()["x-t"], "1");
        }
        assert_eq!(
            decode_all(b"A\r\n0123456789\r\n0\r\n\r\n", 4).unwrap(),
            (b"0123456789".to_vec(), None)
        );
        for bad in [
            &b"zz\r\nhello\r\n0\r\n\r\n"[..],
            b"2\r\nhello\r\n0\r\n\r\n",
            b"ffffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhello\r\n0\r\nbad trailer\r\n\r\n",
        ] {
            assert!(
                decode_all(bad, 3).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(decode_all(b"5\r\nhel", 2).is_err(), "cut");
    }
}

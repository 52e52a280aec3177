//! HTTP/1 on a pooled connection, the codec side of the client: what goes on the wire and how
//! one request and its response travel over it.
//!
//! - [`wire`]: the wire format without I/O (request heads encoded, response heads parsed,
//!   chunked bodies decoded).
//! - [`req_body`]: the request body as sent, one type whatever the caller's body.
//! - [`send`]: the request written on the connection, head then body.
//! - [`after_response`]: whether the connection may be reused, decided from the response head.
//! - [`response_body`]: the response body, read whole with its head or frame by frame.
//! - [`exchange`]: one request and its response head, tying the above together.
//!
//! Imports run one way: `exchange` takes from `response_body`, which takes from `send`,
//! `after_response` and the client's `lease`; all take from `wire`.

pub(crate) mod after_response;
pub(crate) mod exchange;
pub(crate) mod req_body;
pub(crate) mod response_body;
pub(crate) mod send;
pub(crate) mod wire;

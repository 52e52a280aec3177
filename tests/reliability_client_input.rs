//! Bad input on the client: every malformed or hostile response gives a typed error (a
//! `keepalive::client::Error` of kind `Request` for a bad head, of kind `ResponseBody` from the
//! body for a bad body), and a connection in doubt is never reused: the next request runs on a new
//! connection and gets its own response, never bytes left over from the bad one.
//!
//! The servers here are scripted raw tokio servers on their own loopback addresses, so each
//! response can be exactly as broken as a case needs: malformed status lines and headers,
//! invalid lengths, responses longer or shorter than their Content-Length, a server that closes
//! or resets mid-body or stalls, a response with both Content-Length and Transfer-Encoding, a
//! body delimited by the close, `Keep-Alive:` headers with garbage, negative, huge or repeated
//! values, and bytes sent on an idle pooled connection (hot and parked). Where the server
//! closes, the client's socket is checked for CLOSE_WAIT in the kernel's table.

mod support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use http::Request;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Bytes;
use keepalive::client::{Client, ClientConfig, ErrorKind, PoolCloseReason};
use support::raw::*;
use support::*;
use tokio::sync::Notify;

/// What a request ended with: its body, or the error and where it came from.
#[derive(Debug)]
enum Outcome {
    Body(Bytes),
    /// `client.request` failed.
    RequestError(ErrorKind, String),
    /// The response head came; reading its body failed.
    BodyError(String),
}

async fn fetch(client: &Client, url: &str) -> Outcome {
    fetch_request(
        client,
        Request::get(url).body(Empty::<Bytes>::new()).unwrap(),
    )
    .await
}

async fn fetch_request<B>(client: &Client, request: Request<B>) -> Outcome
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<keepalive::BoxError>,
{
    within("a request and its body", async {
        match client.request(request).await {
            Err(error) => Outcome::RequestError(error.kind().clone(), error.to_string()),
            Ok(response) => match response.into_body().collect().await {
                Ok(body) => Outcome::Body(body.to_bytes()),
                Err(error) => {
                    assert_eq!(error.kind(), &ErrorKind::ResponseBody, "{error}");
                    Outcome::BodyError(error.to_string())
                }
            },
        }
    })
    .await
}

/// The first request on each connection gets `bad`; every other request gets `ok(<conn>-<index>)`.
/// Answers on the same connection reveal a reuse.
async fn bad_first(bad: Reply) -> RawServer {
    RawServer::start(move |conn, index| {
        if index == 0 && conn == 0 {
            bad.clone()
        } else {
            Reply::Send(ok(&format!("{conn}-{index}")))
        }
    })
    .await
}

/// After a bad first response: the next request opens a new connection and gets that
/// connection's first answer (never one meant for the first connection, nor left-over bytes).
async fn next_request_is_on_a_new_connection(client: &Client, server: &RawServer, case: &str) {
    let next = fetch(client, &server.url("/next")).await;
    match next {
        Outcome::Body(body) => assert_eq!(
            body, "1-0",
            "{case}: the next request reused the connection in doubt"
        ),
        other => panic!("{case}: the next request failed: {other:?}"),
    }
    let seen = server.seen();
    let last = seen.last().unwrap();
    assert_eq!(
        (last.conn, last.index, last.path.as_str()),
        (1, 0, "/next"),
        "{case}: {seen:?}"
    );
    assert_eq!(client.stats().snapshot().opened, 2, "{case}");
}

#[tokio::test]
async fn malformed_response_heads_are_typed_request_errors_and_the_connection_is_not_reused() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("a garbage status line", b"HELLO THERE\r\n\r\n".to_vec()),
        ("a non-numeric status", b"HTTP/1.1 abc OK\r\nContent-Length: 0\r\n\r\n".to_vec()),
        ("a four-digit status", b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n".to_vec()),
        ("an unknown version", b"HTTP/7.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec()),
        ("binary noise", (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect()),
        ("a header without a colon", b"HTTP/1.1 200 OK\r\nBad Header\r\nContent-Length: 0\r\n\r\n".to_vec()),
        ("a NUL in a header value", b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 0\r\n\r\n".to_vec()),
        ("a 1 MiB header", format!("HTTP/1.1 200 OK\r\nX-Fill: {}\r\nContent-Length: 0\r\n\r\n", "a".repeat(1024 * 1024)).into_bytes()),
        ("5,000 header lines", format!("HTTP/1.1 200 OK\r\n{}Content-Length: 0\r\n\r\n", (0..5000).map(|i| format!("X-H{i}: v\r\n")).collect::<String>()).into_bytes()),
        ("a non-numeric Content-Length", b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\nok".to_vec()),
        ("a negative Content-Length", b"HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\nok".to_vec()),
        ("two different Content-Lengths", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!".to_vec()),
        ("an overflowing Content-Length", b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\nok".to_vec()),
        ("33 interim responses", format!("{}HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "HTTP/1.1 100 Continue\r\n\r\n".repeat(33)).into_bytes()),
        ("Transfer-Encoding on HTTP/1.0", b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n0\r\n\r\n".to_vec()),
    ];
    for (case, bytes) in cases {
        let server = bad_first(Reply::Send(bytes)).await;
        let client = Client::new(ClientConfig::new());
        match fetch(&client, &server.url("/bad")).await {
            Outcome::RequestError(kind, message) => {
                assert_eq!(kind, ErrorKind::Request, "{case}: {message}");
                println!("{case}: {message}");
            }
            other => panic!("{case}: expected a request error, got {other:?}"),
        }
        assert_eq!(
            client.stats().snapshot().closed(PoolCloseReason::Error),
            1,
            "{case}"
        );
        next_request_is_on_a_new_connection(&client, &server, case).await;
        wait_until(
            &format!("{case}: the client closed the bad connection"),
            SOON,
            || server.ended.load(Ordering::SeqCst) == 1,
        )
        .await;
    }
}

#[tokio::test]
async fn malformed_or_cut_bodies_are_typed_body_errors_and_the_connection_is_not_reused() {
    let cases: Vec<(&str, Reply)> = vec![
        ("a chunk size that is not hex", Reply::Send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n".to_vec())),
        ("a chunk longer than its size", Reply::Send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhello\r\n0\r\n\r\n".to_vec())),
        ("an overflowing chunk size", Reply::Send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\nhello\r\n0\r\n\r\n".to_vec())),
        ("shorter than its Content-Length, then a FIN", Reply::SendClose(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789".to_vec())),
        ("shorter than its Content-Length, then a reset", Reply::SendReset(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789".to_vec())),
        ("a chunked body cut by a FIN", Reply::SendClose(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n01234".to_vec())),
        ("a chunked body cut by a reset", Reply::SendReset(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n01234".to_vec())),
    ];
    for (case, bad) in cases {
        let server = bad_first(bad).await;
        let client = Client::new(ClientConfig::new());
        match fetch(&client, &server.url("/bad")).await {
            Outcome::BodyError(message) => println!("{case}: {message}"),
            other => panic!("{case}: expected a body error, got {other:?}"),
        }
        assert_eq!(
            client.stats().snapshot().closed(PoolCloseReason::Error),
            1,
            "{case}"
        );
        next_request_is_on_a_new_connection(&client, &server, case).await;
        server.no_client_close_wait(case).await;
    }
}

/// A response longer than its Content-Length: the body is exactly the announced length, and
/// what follows (here a whole fake response) never becomes the answer to the next request.
#[tokio::test]
async fn bytes_after_the_content_length_never_answer_the_next_request() {
    for (case, park_after, gap) in [
        ("taken at once", None, false),
        ("hot, after an idle gap", None, true),
        (
            "parked, after an idle gap",
            Some(Duration::from_millis(1)),
            true,
        ),
    ] {
        let bad = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nSMUGGLED".to_vec();
        let server = bad_first(Reply::Send(bad)).await;
        let client = Client::new(ClientConfig::new().park_after(park_after));
        match fetch(&client, &server.url("/bad")).await {
            Outcome::Body(body) => assert_eq!(body, "ok", "{case}"),
            Outcome::BodyError(message) => println!("{case}: body error {message}"),
            other => panic!("{case}: {other:?}"),
        }
        if gap {
            // An idle period (part of the scenario): the pool's watch has time to look.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let next = fetch(&client, &server.url("/next")).await;
        match next {
            Outcome::Body(body) => assert_eq!(body, "1-0", "{case}: answered with left-over bytes"),
            other => panic!("{case}: the next request failed: {other:?}"),
        }
        let stats = client.stats().snapshot();
        assert_eq!(stats.opened, 2, "{case}: {}", stats.to_json());
        println!("{case}: {}", stats.to_json());
    }
}

/// RFC 9112 6.3: a response with both Content-Length and Transfer-Encoding is read as chunked
/// and "ought to be handled as an error" (a response-splitting attempt): the connection is not
/// reused.
#[tokio::test]
async fn a_response_with_content_length_and_transfer_encoding_is_not_reused() {
    let bad = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_vec();
    let server = bad_first(Reply::Send(bad)).await;
    let client = Client::new(ClientConfig::new());
    match fetch(&client, &server.url("/bad")).await {
        Outcome::Body(body) => assert_eq!(body, "hello", "the chunked framing wins"),
        Outcome::BodyError(_) | Outcome::RequestError(..) => {}
    }
    next_request_is_on_a_new_connection(&client, &server, "CL and TE").await;
}

/// A connection the server has closed by the time the next request takes it from the pool,
/// before the pool's watch has looked: a body delimited by the close (no Content-Length, no
/// chunked; it cannot leave a reusable connection, whatever `Connection: keep-alive` says), or
/// a keep-alive response followed at once by the server's FIN. The next request, a POST that
/// may not be retried, must run on a new connection, not hang on the dead one nor fail as if
/// it had met a stale connection.
#[tokio::test]
async fn a_connection_closed_right_after_its_response_is_never_reused() {
    for (case, bad, first_body) in [
        (
            "HTTP/1.1 without a length",
            b"HTTP/1.1 200 OK\r\n\r\nuntil the close".to_vec(),
            "until the close",
        ),
        (
            "HTTP/1.0 keep-alive without a length",
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\nuntil the close".to_vec(),
            "until the close",
        ),
        ("keep-alive, then a FIN at once", ok("0-0"), "0-0"),
    ] {
        let server = bad_first(Reply::SendClose(bad)).await;
        let client = Client::new(ClientConfig::new());
        match fetch(&client, &server.url("/bad")).await {
            Outcome::Body(body) => assert_eq!(body, first_body, "{case}"),
            other => panic!("{case}: {other:?}"),
        }
        if first_body == "0-0" {
            // The FIN is in the client's socket (the server task has ended) before the next
            // request; whether the pool's watch has run is up to the scheduler.
            wait_until(&format!("{case}: the server closed"), SOON, || {
                server.ended.load(Ordering::SeqCst) == 1
            })
            .await;
        }
        let post = Request::post(server.url("/next"))
            .body(Full::new(Bytes::from_static(b"order")))
            .unwrap();
        match fetch_request(&client, post).await {
            Outcome::Body(body) => assert_eq!(body, "1-0", "{case}"),
            other => panic!("{case}: the POST after the close failed: {other:?}"),
        }
        let stats = client.stats().snapshot();
        assert_eq!(stats.retries, 0, "{case}: {}", stats.to_json());
        assert_eq!(
            stats.closed(PoolCloseReason::Stale),
            0,
            "{case}: {}",
            stats.to_json()
        );
        assert_eq!(stats.opened, 2, "{case}: {}", stats.to_json());
        server.no_client_close_wait(case).await;
    }
}

/// A response that stops arriving mid-body: the caller's own timeout drops the body, and the
/// connection in doubt is closed, never pooled.
#[tokio::test]
async fn a_stalled_body_dropped_by_a_timeout_closes_its_connection() {
    let server = bad_first(Reply::SendHold(
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789".to_vec(),
    ))
    .await;
    let client = Client::new(ClientConfig::new());
    let response = within(
        "the head",
        client.request(
            Request::get(server.url("/bad"))
                .body(Empty::<Bytes>::new())
                .unwrap(),
        ),
    )
    .await
    .unwrap();
    let body =
        tokio::time::timeout(Duration::from_millis(300), response.into_body().collect()).await;
    assert!(body.is_err(), "the body cannot complete: {body:?}");
    wait_until("the connection is closed as canceled", SOON, || {
        client.stats().snapshot().closed(PoolCloseReason::Canceled) == 1
    })
    .await;
    wait_until("the server sees the client leave", SOON, || {
        server.ended.load(Ordering::SeqCst) == 1
    })
    .await;
    next_request_is_on_a_new_connection(&client, &server, "a stalled body").await;
}

/// `Keep-Alive:` values a server should never send: garbage, negative and huge values are
/// ignored (the connection is reused as if there were none), repeated parameters take the first
/// well-formed value, and `max=0` or `timeout=0` end the connection after the response.
#[tokio::test]
async fn keep_alive_garbage_is_ignored_and_repeats_take_the_first_well_formed_value() {
    let reused = |headers: &'static str| (headers, true);
    let not_reused = |headers: &'static str| (headers, false);
    let cases = [
        reused("Keep-Alive: timeout=abc, max=xyz\r\n"),
        reused("Keep-Alive: timeout=-1, max=-5\r\n"),
        reused("Keep-Alive: timeout=99999999999999999999999, max=99999999999\r\n"),
        reused("Keep-Alive: timeout=86401\r\n"),
        reused("Keep-Alive: timeout=1e9, max=0x10\r\n"),
        reused("Keep-Alive: \t,,,=,=\"\",timeout, max\r\n"),
        reused("Keep-Alive: max=junk, max=5, max=0\r\n"),
        reused("Keep-Alive: timeout=30\r\nKeep-Alive: timeout=0\r\n"),
        not_reused("Keep-Alive: max=0\r\n"),
        not_reused("Keep-Alive: timeout=0\r\n"),
        not_reused("Keep-Alive: max=-1, max=0, max=7\r\n"),
        not_reused("Keep-Alive: max=0\r\nKeep-Alive: max=100\r\n"),
    ];
    for (headers, reuse) in cases {
        let server = RawServer::start(move |conn, index| {
            Reply::Send(ok_with(
                if index == 0 { headers } else { "" },
                &format!("{conn}-{index}"),
            ))
        })
        .await;
        let client = Client::new(ClientConfig::new());
        match fetch(&client, &server.url("/first")).await {
            Outcome::Body(body) => assert_eq!(body, "0-0", "{headers:?}"),
            other => panic!("{headers:?}: {other:?}"),
        }
        let second = fetch(&client, &server.url("/second")).await;
        let expected = if reuse { "0-1" } else { "1-0" };
        match second {
            Outcome::Body(body) => assert_eq!(body, expected, "{headers:?}"),
            other => panic!("{headers:?}: {other:?}"),
        }
    }
}

/// Bytes the server sends on an idle pooled connection (nobody asked): the connection is
/// evicted at once, hot or parked, counted as unexpected data, with no CLOSE_WAIT left, and the
/// next request opens a new connection.
#[tokio::test]
async fn bytes_on_an_idle_connection_evict_it() {
    for (case, park_after) in [("hot", None), ("parked", Some(Duration::from_millis(1)))] {
        let go = Arc::new(Notify::new());
        let signal = go.clone();
        let server = RawServer::start(move |conn, index| {
            if conn == 0 && index == 0 {
                Reply::SendThenLater(
                    ok("0-0"),
                    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nbogus".to_vec(),
                    signal.clone(),
                )
            } else {
                Reply::Send(ok(&format!("{conn}-{index}")))
            }
        })
        .await;
        let client = Client::new(ClientConfig::new().park_after(park_after));
        let uri: http::Uri = server.url("/").parse().unwrap();
        match fetch(&client, &server.url("/first")).await {
            Outcome::Body(body) => assert_eq!(body, "0-0", "{case}"),
            other => panic!("{case}: {other:?}"),
        }
        wait_until(&format!("{case}: idle in the pool"), SOON, || {
            client.idle_connections(&uri) == 1
        })
        .await;
        if park_after.is_some() {
            // An idle period past park_after (part of the scenario).
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        go.notify_one();
        wait_until(
            &format!("{case}: evicted for unexpected data"),
            SOON,
            || {
                client
                    .stats()
                    .snapshot()
                    .closed(PoolCloseReason::UnexpectedData)
                    == 1
            },
        )
        .await;
        assert_eq!(client.idle_connections(&uri), 0, "{case}");
        wait_until(
            &format!("{case}: the server sees the client leave"),
            SOON,
            || server.ended.load(Ordering::SeqCst) == 1,
        )
        .await;
        assert_eq!(server.client_close_wait(), 0, "{case}");
        next_request_is_on_a_new_connection(&client, &server, case).await;
    }
}

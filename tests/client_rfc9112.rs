//! The client at the edges of RFC 9112, against scripted raw servers on loopback: the `Host`
//! it sends, the chunk-size lines it accepts, and bodiless responses whose heads announce a
//! framing anyway.

mod support;

use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use keepalive::client::{Client, ClientConfig, ErrorKind, PoolCloseReason};
use support::raw::{ok, RawServer, Reply};
use support::within;

fn request(method: Method, url: &str) -> Request<Empty<Bytes>> {
    Request::builder()
        .method(method)
        .uri(url)
        .body(Empty::new())
        .unwrap()
}

/// The `host:` line of a request head, lowercased.
fn host_line(head: &str) -> String {
    head.lines()
        .find(|line| line.to_ascii_lowercase().starts_with("host:"))
        .unwrap_or_else(|| panic!("no Host in {head:?}"))
        .to_ascii_lowercase()
}

/// `Host` carries the port only when it is not the scheme's default (RFC 9110 7.2, as hyper
/// and browsers send it). The connector here ignores the URI's host and port and dials the
/// raw server, so that a URI can name port 80.
#[tokio::test]
async fn host_omits_the_schemes_default_port() {
    let server = RawServer::start(|_, _| Reply::Send(ok("ok"))).await;
    let addr = server.addr;
    let connector = tower::service_fn(move |_uri: http::Uri| async move {
        tokio::net::TcpStream::connect(addr).await
    });
    let client = Client::with_connector(ClientConfig::new(), connector);
    let cases = [
        ("http://example.test:80/a", "host: example.test"),
        ("http://example.test/b", "host: example.test"),
        ("http://example.test:8080/c", "host: example.test:8080"),
        ("http://example.test:800/d", "host: example.test:800"),
        ("http://user:pw@example.test:80/e", "host: example.test"),
        ("http://[::1]:80/f", "host: [::1]"),
        ("http://[::1]:8080/g", "host: [::1]:8080"),
    ];
    for (url, _) in cases {
        let response = within(url, client.request(request(Method::GET, url)))
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        within(url, response.into_body().collect()).await.unwrap();
    }
    let seen = server.seen();
    assert_eq!(seen.len(), cases.len());
    for ((url, expected), seen) in cases.iter().zip(&seen) {
        assert_eq!(host_line(&seen.head).trim_end(), *expected, "{url}");
    }
}

/// A chunk size may be followed only by whitespace and `;` extensions (RFC 9112 7.1.1):
/// `5 junk` fails the body and the connection is not reused; whitespace before an extension
/// or the line's end is read as it should be.
#[tokio::test]
async fn junk_after_a_chunk_size_fails_the_body() {
    let chunked = |size_line: &str| {
        format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{size_line}\r\nhello\r\n0\r\n\r\n")
            .into_bytes()
    };
    for bad in ["5 junk", "5\tjunk", "5 ;ok junk\u{1}", "5 5"] {
        let body = chunked(bad);
        let server = RawServer::start(move |conn, index| match (conn, index) {
            (0, 0) => Reply::Send(body.clone()),
            _ => Reply::Send(ok("next")),
        })
        .await;
        let client = Client::new(ClientConfig::new());
        let response = within(bad, client.request(request(Method::GET, &server.url("/"))))
            .await
            .unwrap_or_else(|e| panic!("{bad:?}: the head failed: {e}"));
        let read = within(bad, response.into_body().collect()).await;
        if bad == "5 ;ok junk\u{1}" {
            // (An extension may hold what it likes up to the line's end: not junk after the size.)
            assert!(read.is_ok(), "{bad:?}");
            continue;
        }
        let error = read.map(|_| ()).expect_err(bad);
        assert_eq!(error.kind(), &ErrorKind::ResponseBody, "{bad:?}: {error}");
        // The next request goes on a new connection.
        let response = within(bad, client.request(request(Method::GET, &server.url("/"))))
            .await
            .unwrap();
        within(bad, response.into_body().collect()).await.unwrap();
        let stats = client.stats().snapshot();
        assert_eq!((stats.opened, stats.reused), (2, 0), "{bad:?}");
    }
    for good in ["5 ", "5\t ", "5 ;name=value", "5\t;a;b=\"c d\""] {
        let body = chunked(good);
        let server = RawServer::start(move |_, index| match index {
            0 => Reply::Send(body.clone()),
            _ => Reply::Send(ok("next")),
        })
        .await;
        let client = Client::new(ClientConfig::new());
        for expected in ["hello", "next"] {
            let response = within(good, client.request(request(Method::GET, &server.url("/"))))
                .await
                .unwrap_or_else(|e| panic!("{good:?}: {e}"));
            let body = within(good, response.into_body().collect())
                .await
                .unwrap_or_else(|e| panic!("{good:?}: {e}"))
                .to_bytes();
            assert_eq!(body, expected, "{good:?}");
        }
        assert_eq!(client.stats().snapshot().reused, 1, "{good:?}");
    }
}

/// A response to HEAD, a 204 and a 304 have no body, whatever their head says: an HTTP/1.0
/// one that carries `Transfer-Encoding` (faulty framing, RFC 9112 6.1) is returned without a
/// body, and its connection is closed rather than reused.
#[tokio::test]
async fn a_bodiless_http10_response_with_transfer_encoding_is_returned_and_closed() {
    let cases = [
        (Method::HEAD, "200 OK", StatusCode::OK),
        (Method::GET, "204 No Content", StatusCode::NO_CONTENT),
        (Method::GET, "304 Not Modified", StatusCode::NOT_MODIFIED),
    ];
    for (method, status_line, status) in cases {
        let case = format!("{method} -> HTTP/1.0 {status_line}");
        let head = format!(
            "HTTP/1.0 {status_line}\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n"
        )
        .into_bytes();
        let server = RawServer::start(move |_, index| match index {
            0 => Reply::Send(head.clone()),
            _ => Reply::Send(ok("next")),
        })
        .await;
        let client = Client::new(ClientConfig::new());
        let response = within(
            &case,
            client.request(request(method.clone(), &server.url("/"))),
        )
        .await
        .unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_eq!(response.status(), status, "{case}");
        let body = within(&case, response.into_body().collect())
            .await
            .unwrap_or_else(|e| panic!("{case}: {e}"))
            .to_bytes();
        assert!(body.is_empty(), "{case}: {body:?}");
        let stats = client.stats().snapshot();
        assert_eq!(stats.closed(PoolCloseReason::Error), 1, "{case}: {stats:?}");
        assert_eq!(
            client.idle_connections(&server.url("/").parse().unwrap()),
            0,
            "{case}"
        );
    }
}

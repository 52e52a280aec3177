//! Every request `serve` runs carries the connection's facts in its extensions
//! (`ConnectionInfo`), whatever the service: a tower service, an axum handler, a hyper service.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;

use http::{Request, Response};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use keepalive::server::{ConnectionInfo, HyperToTowerService};
use keepalive::ServerConfig;
use support::{get, request, within, TestServer};
use tokio::net::TcpStream;

/// Answers with the connection's facts as `id peer local number`, or 500 without them.
async fn echo_info(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(match req.extensions().get::<ConnectionInfo>() {
        Some(info) => Response::new(Full::new(Bytes::from(describe(info)))),
        None => Response::builder()
            .status(500)
            .body(Full::new(Bytes::from("no ConnectionInfo")))
            .unwrap(),
    })
}

fn describe(info: &ConnectionInfo) -> String {
    assert!(info.accepted_at() <= std::time::Instant::now());
    format!(
        "{} {} {} {}",
        info.id(),
        info.peer_addr(),
        info.local_addr(),
        info.request_number()
    )
}

/// What the server said about one request.
#[derive(Debug)]
struct Seen {
    id: u64,
    peer: SocketAddr,
    local: SocketAddr,
    number: u64,
}

async fn ask(stream: &mut TcpStream) -> Seen {
    let response = within("response", request(stream, &get("/", ""))).await;
    let body = String::from_utf8(response.body).unwrap();
    assert_eq!(response.status, 200, "{body}");
    let fields: Vec<&str> = body.split(' ').collect();
    assert_eq!(fields.len(), 4, "{body}");
    Seen {
        id: fields[0].parse().unwrap(),
        peer: fields[1].parse().unwrap(),
        local: fields[2].parse().unwrap(),
        number: fields[3].parse().unwrap(),
    }
}

/// Two requests on one connection, one on a second connection.
async fn check(server: &TestServer) {
    let mut first = server.connect().await;
    let one = ask(&mut first).await;
    let two = ask(&mut first).await;
    assert_eq!((one.number, two.number), (1, 2));
    assert_eq!(one.id, two.id, "one connection, one id");
    assert_eq!(one.peer, first.local_addr().unwrap());
    assert_eq!(two.peer, first.local_addr().unwrap());
    assert_eq!(one.local, server.addr);
    assert_eq!(one.local, first.peer_addr().unwrap());

    let mut second = server.connect().await;
    let three = ask(&mut second).await;
    assert_eq!(three.number, 1, "the count is per connection");
    assert!(three.id > one.id, "a later connection gets a larger id");
    assert_eq!(three.peer, second.local_addr().unwrap());
}

#[tokio::test]
async fn a_tower_service_sees_the_connection_info() {
    let server = TestServer::start_with(ServerConfig::new(), tower::service_fn(echo_info)).await;
    check(&server).await;
}

#[tokio::test]
async fn a_hyper_service_sees_the_connection_info() {
    let service = HyperToTowerService::new(hyper::service::service_fn(echo_info));
    let server = TestServer::start_with(ServerConfig::new(), service).await;
    check(&server).await;
}

#[tokio::test]
async fn an_axum_handler_takes_the_connection_info_as_an_extension() {
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(
            |axum::Extension(info): axum::Extension<ConnectionInfo>| async move { describe(&info) },
        ),
    );
    let server = TestServer::start_with(ServerConfig::new(), app).await;
    check(&server).await;
}

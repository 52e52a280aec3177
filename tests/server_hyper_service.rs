//! A hyper service (`hyper::service::service_fn`, what a hyper user writes first) runs under
//! the crate's `serve` through `HyperToTowerService`, with the whole keep-alive policy.

mod support;

use keepalive::server::HyperToTowerService;
use keepalive::ServerConfig;
use support::{get, request, routes, within, TestServer};

#[tokio::test]
async fn a_hyper_service_fn_is_served_with_the_keep_alive_policy() {
    let service = HyperToTowerService::new(hyper::service::service_fn(routes));
    let server = TestServer::start_with(ServerConfig::new().max_requests(2), service).await;
    let mut stream = server.connect().await;
    let first = within("first response", request(&mut stream, &get("/", ""))).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.header("keep-alive"), Some("timeout=60, max=1"));
    assert!(!first.says_close());
    let second = within("second response", request(&mut stream, &get("/", ""))).await;
    assert_eq!(second.status, 200);
    assert!(second.says_close(), "the last allowed request says close");
    assert_eq!(first.body, second.body);
}

//! sizes
use http_body_util::Empty;
use hyper::body::Bytes;
use keepalive::client::{Client, ClientConfig};
fn main() {
    let client = Client::new(ClientConfig::new());
    let req = http::Request::get("http://127.0.0.1:1/")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let fut = client.request(req);
    println!("request future: {}", std::mem::size_of_val(&fut));
}
